"""Compiled record walkers: find each packet record in a chunk of pcap or pcapng bytes.

The walk is serial (each record's length says where the next begins), so it runs in compiled
code (``flowaudit/_kernels.c``; these Python functions are its specification and fallback,
``kernels.py``). A walker fills record columns
(offset of the packet data in the chunk, captured and original length, timestamp in ns,
interface id) and stops with a status when the chunk ends mid-record, the columns are full,
a record is malformed, or (pcapng) a block that Python must parse comes next.

Formats: pcap-savefile(5) and draft-ietf-opsawg-pcapng (sections 4.1-4.4 and 4.6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flowaudit.capture import kernels
from flowaudit.capture._bytes import u16, u32

# Walker statuses.
NEED_MORE = 0  # the chunk ends inside a record: refill and walk on from ``pos``
FULL = 1  # the output columns are full: hand them on and walk on from ``pos``
BAD_RECORD = 2  # a record's length is impossible: the file is damaged at ``pos``
PYTHON_BLOCK = 3  # pcapng: a Section Header or Interface Description Block is at ``pos``

# Wireshark refuses records longer than this for the link types we read
# (WTAP_MAX_PACKET_SIZE_STANDARD, wiretap/wtap.h); a larger length means a damaged file.
MAX_RECORD = 262144
# Largest pcapng block we accept at all (blocks we skip may be large, packet blocks may not).
MAX_BLOCK = 256 * 1024 * 1024

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 0x00000001
PCAPNG_OPB = 0x00000002  # obsolete Packet Block (pcapng appendix A)
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006

# Interface timestamp conversions (pcapng if_tsresol, section 4.2).
TS_MUL = 0  # ns = raw * factor           (decimal resolution 10^-k, k <= 9)
TS_DIV = 1  # ns = raw // factor          (decimal resolution 10^-k, k > 9)
TS_BIN = 2  # ns = raw * 1e9 / 2**factor  (binary resolution 2^-k)


class RecordColumns:
    """Reusable output columns of a walker."""

    def __init__(self, capacity: int) -> None:
        self.offset = np.empty(capacity, dtype=np.int64)
        self.caplen = np.empty(capacity, dtype=np.uint32)
        self.wire_len = np.empty(capacity, dtype=np.uint32)
        self.ts_ns = np.empty(capacity, dtype=np.int64)
        self.if_id = np.empty(capacity, dtype=np.int32)

    def outputs(self) -> tuple[np.ndarray, ...]:
        """The columns in the order the walkers fill them."""
        return self.offset, self.caplen, self.wire_len, self.ts_ns, self.if_id


def walk_pcap_py(
    buf: Any,
    pos: int,
    end: int,
    big_endian: bool,
    frac_ns: int,
    offset: Any,
    caplen: Any,
    wire_len: Any,
    ts_ns: Any,
    if_id: Any,
) -> tuple[int, int, int]:
    """Walk classic pcap records from ``pos`` to ``end``; returns (records, pos, status)."""
    count = 0
    capacity = offset.shape[0]
    end = min(end, buf.shape[0])
    while True:
        if pos < 0 or pos + 16 > end:
            return count, pos, NEED_MORE
        included = u32(buf, pos + 8, big_endian)
        if included > MAX_RECORD:
            return count, pos, BAD_RECORD
        if pos + 16 + included > end:
            return count, pos, NEED_MORE
        if count == capacity:
            return count, pos, FULL
        seconds = u32(buf, pos, big_endian)
        fraction = u32(buf, pos + 4, big_endian)
        offset[count] = pos + 16
        caplen[count] = included
        wire_len[count] = u32(buf, pos + 12, big_endian)
        ts_ns[count] = seconds * 1_000_000_000 + fraction * frac_ns
        if_id[count] = 0
        count += 1
        pos += 16 + included


INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def pcapng_ts(raw: int, kind: int, factor: int, offset_ns: int) -> int | None:
    """A pcapng timestamp in ns since the epoch; None when int64 nanoseconds cannot hold it.

    (Nor int64's minimum, which numpy reads as NaT: a capture's time is never "not a time".)
    """
    if kind == TS_MUL:
        if raw > INT64_MAX:
            return None
        value = raw * factor
    elif kind == TS_DIV:
        value = raw // max(factor, 1)
    else:
        whole = raw >> factor if factor < 64 else 0
        part = raw & ((1 << factor) - 1) if factor < 64 else raw
        if factor <= 32:
            frac = ((part * 1_000_000_000) & 0xFFFFFFFFFFFFFFFF) >> factor
        else:
            frac = int(float(part) * 1e9 / float(2**factor))
        if whole > INT64_MAX:
            return None
        value = whole * 1_000_000_000
        if value > INT64_MAX:
            return None
        value += frac
    if value > INT64_MAX:
        return None
    value += offset_ns
    if not INT64_MIN < value <= INT64_MAX:
        return None
    return value


def walk_pcapng_py(
    buf: Any,
    pos: int,
    end: int,
    big_endian: bool,
    if_kind: Any,
    if_factor: Any,
    if_offset_ns: Any,
    if_snaplen: Any,
    last_ts: int,
    offset: Any,
    caplen: Any,
    wire_len: Any,
    ts_ns: Any,
    if_id: Any,
    stats: Any,
) -> tuple[int, int, int, int]:
    """Walk pcapng blocks from ``pos``; returns (records, pos, status, last timestamp).

    Packet blocks (EPB, SPB, OPB) become records; SHB and IDB stop the walk for Python to
    parse; every other block type is skipped by its length, and ``pos`` may then lie past
    ``end`` (the caller skips the rest of that block in the next bytes it reads).
    ``stats[0]`` counts packets whose timestamp int64 nanoseconds cannot hold (they keep the
    time of the packet before them, as a Simple Packet Block does), ``stats[1]`` blocks whose
    trailing length differs from their leading one (read by the leading one, as tshark does
    before it calls the file corrupt).
    """
    count = 0
    capacity = offset.shape[0]
    interfaces = if_kind.shape[0]
    end = min(end, buf.shape[0])
    while True:
        if pos < 0 or pos + 12 > end:
            return count, pos, NEED_MORE, last_ts
        block_type = u32(buf, pos, big_endian)
        if block_type == PCAPNG_SHB or block_type == PCAPNG_IDB:
            return count, pos, PYTHON_BLOCK, last_ts
        block_len = u32(buf, pos + 4, big_endian)
        if block_len < 12 or block_len % 4 != 0 or block_len > MAX_BLOCK:
            return count, pos, BAD_RECORD, last_ts
        if block_type != PCAPNG_EPB and block_type != PCAPNG_SPB and block_type != PCAPNG_OPB:
            # NRB, ISB, DSB, custom and unknown blocks: skipped
            if pos + block_len <= end and u32(buf, pos + block_len - 4, big_endian) != block_len:
                stats[1] += 1
            pos += block_len
            if pos > end:
                return count, pos, NEED_MORE, last_ts
            continue
        if block_len > MAX_RECORD + 4096:
            return count, pos, BAD_RECORD, last_ts
        # Smallest packet blocks: an SPB has 16 bytes around its data, EPB and OPB 32.
        if block_len < (16 if block_type == PCAPNG_SPB else 32):
            return count, pos, BAD_RECORD, last_ts
        if pos + block_len > end:
            return count, pos, NEED_MORE, last_ts
        if count == capacity:
            return count, pos, FULL, last_ts
        if block_type == PCAPNG_SPB:
            # Simple Packet Block: interface 0, no timestamp, captured length implied by
            # the block length and the interface's snap length (section 4.4).
            interface = 0
            original = u32(buf, pos + 8, big_endian)
            included = min(original, block_len - 16)
            if interfaces > 0 and 0 < if_snaplen[0] < included:
                included = int(if_snaplen[0])
            data = pos + 12
            header = 16
        else:
            if block_type == PCAPNG_EPB:
                interface = u32(buf, pos + 8, big_endian)
            else:
                interface = u16(buf, pos + 8, big_endian)
            included = u32(buf, pos + 20, big_endian)
            original = u32(buf, pos + 24, big_endian)
            data = pos + 28
            header = 32
        if interface >= interfaces or included > block_len - header:
            return count, pos, BAD_RECORD, last_ts
        if block_type != PCAPNG_SPB:
            raw = (u32(buf, pos + 12, big_endian) << 32) | u32(buf, pos + 16, big_endian)
            ts = pcapng_ts(
                raw,
                int(if_kind[interface]),
                int(if_factor[interface]),
                int(if_offset_ns[interface]),
            )
            if ts is None:
                stats[0] += 1
            else:
                last_ts = ts
        if u32(buf, pos + block_len - 4, big_endian) != block_len:
            stats[1] += 1
        offset[count] = data
        caplen[count] = included
        wire_len[count] = original
        ts_ns[count] = last_ts  # an SPB has no time of its own: it keeps the one before it
        if_id[count] = interface
        count += 1
        pos += block_len


walk_pcap: Callable[..., tuple[int, int, int]] = walk_pcap_py
walk_pcapng: Callable[..., tuple[int, int, int, int]] = walk_pcapng_py
if kernels.compiled is not None:
    walk_pcap = kernels.compiled.walk_pcap
    walk_pcapng = kernels.compiled.walk_pcapng
