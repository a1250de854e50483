"""The hand-off between reading and flow assembly: decoded packets as numpy columns.

A ``PacketBatch`` holds a bounded slice of one capture file, one value per packet in each column
(DESIGN.md principle 1: columns, never per-packet objects). Both engines produce it: the native
reader decodes the capture bytes itself (``decode.py``), the pyshark engine fills the same
columns from tshark's dissection. ``flows.py`` consumes it without knowing which engine ran.

Addresses are 128-bit, split into two ``uint64`` halves; IPv4 addresses are stored as
IPv4-mapped IPv6 (``::ffff:a.b.c.d``, RFC 4291 section 2.5.5.2) so that one key serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# Values of the ``l3`` column.
L3_NONE = 0  # not IP (ARP, LLDP, raw Wake-on-LAN EtherType 0x0842, ...) or undecodable
L3_IPV4 = 4
L3_IPV6 = 6

# Values of the ``frag`` column.
FRAG_NONE = 0
FRAG_FIRST = 1  # offset 0, more fragments follow: carries the transport header
FRAG_LATER = 2  # offset > 0: no transport header, belongs to the flow of its first fragment

# Bits of the ``tcp_flags`` column (RFC 9293 section 3.1, the low byte of the flags field).
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

BATCH_COLUMNS: dict[str, type] = {
    "frame": np.int64,  # 1-based frame number within its file, as Wireshark numbers frames
    "ts_ns": np.int64,  # capture time, nanoseconds since the Unix epoch
    "wire_len": np.uint32,  # original length on the wire (what tshark's byte counts sum)
    "l3": np.uint8,  # L3_NONE / L3_IPV4 / L3_IPV6
    "proto": np.uint8,  # IP protocol number of the transport (after IPv6 extension headers)
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "sport": np.uint16,  # 0 where the protocol has no ports
    "dport": np.uint16,
    "tcp_flags": np.uint8,
    "tcp_seq": np.uint32,
    "payload_off": np.int64,  # offset of the transport payload in ``buffer``
    "payload_len": np.uint32,  # transport payload length claimed by the IP header
    "payload_cap": np.uint32,  # how much of it is in ``buffer`` (caplen, padding removed)
    "l2_multicast": np.bool_,  # Ethernet destination has the group bit (broadcast/multicast)
    "frag": np.uint8,  # FRAG_NONE / FRAG_FIRST / FRAG_LATER
    "frag_id": np.uint32,  # IPv4 identification or IPv6 fragment header identification
}


# The columns the decoder fills, in the order the compiled kernels take them.
DECODED_COLUMNS = tuple(
    name for name in BATCH_COLUMNS if name not in ("frame", "ts_ns", "wire_len")
)


@dataclass
class PacketBatch:
    """Decoded packets of one slice of one capture file, one array element per packet."""

    file_index: int
    buffer: U8
    frame: I64
    ts_ns: I64
    wire_len: U32
    l3: U8
    proto: U8
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    sport: U16
    dport: U16
    tcp_flags: U8
    tcp_seq: U32
    payload_off: I64
    payload_len: U32
    payload_cap: U32
    l2_multicast: B
    frag: U8
    frag_id: U32

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def decoded(self) -> tuple[np.ndarray, ...]:
        """The ``DECODED_COLUMNS`` arrays, in order, as the kernels take them."""
        return tuple(getattr(self, name) for name in DECODED_COLUMNS)

    @classmethod
    def empty(cls, file_index: int, size: int, buffer: U8 | None = None) -> PacketBatch:
        """A batch of ``size`` zeroed packets, for a decoder or engine to fill in."""
        columns: dict[str, Any] = {
            name: np.zeros(size, dtype=dtype) for name, dtype in BATCH_COLUMNS.items()
        }
        if buffer is None:
            buffer = np.zeros(0, dtype=np.uint8)
        return cls(file_index=file_index, buffer=buffer, **columns)
