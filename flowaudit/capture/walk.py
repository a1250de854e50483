"""Compiled record walkers: find each packet record in a chunk of pcap or pcapng bytes.

The walk is serial (each record's length says where the next begins), so it is the one step
that runs in compiled code rather than numpy (PERF_NOTES.md). A walker fills record columns
(offset of the packet data in the chunk, captured and original length, timestamp in ns,
interface id) and stops with a status when the chunk ends mid-record, the columns are full,
a record is malformed, or (pcapng) a block that Python must parse comes next.

Formats: pcap-savefile(5) and draft-ietf-opsawg-pcapng (sections 4.1-4.4 and 4.6).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from flowaudit.capture._bytes import NJIT, u16, u32

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


@nb.njit(**NJIT)
def walk_pcap(
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
    while True:
        if pos + 16 > end:
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


@nb.njit(inline="always", **NJIT)
def _pcapng_ts(raw: np.uint64, kind: int, factor: int, offset_ns: int) -> np.int64:
    if kind == TS_MUL:
        return np.int64(raw) * factor + offset_ns
    if kind == TS_DIV:
        return np.int64(raw // np.uint64(factor)) + offset_ns
    whole = raw >> np.uint64(factor)
    part = raw & ((np.uint64(1) << np.uint64(factor)) - np.uint64(1))
    if factor <= 32:
        frac = (part * np.uint64(1_000_000_000)) >> np.uint64(factor)
    else:
        frac = np.uint64(np.float64(part) * 1e9 / np.float64(np.uint64(1) << np.uint64(factor)))
    return np.int64(whole) * 1_000_000_000 + np.int64(frac) + offset_ns


@nb.njit(**NJIT)
def walk_pcapng(
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
) -> tuple[int, int, int, int]:
    """Walk pcapng blocks from ``pos``; returns (records, pos, status, last timestamp).

    Packet blocks (EPB, SPB, OPB) become records; SHB and IDB stop the walk for Python to
    parse; every other block type is skipped by its length, and ``pos`` may then lie past
    ``end`` (the caller skips the rest of that block in the next bytes it reads).
    """
    count = 0
    capacity = offset.shape[0]
    interfaces = if_kind.shape[0]
    while True:
        if pos + 12 > end:
            return count, pos, NEED_MORE, last_ts
        block_type = u32(buf, pos, big_endian)
        if block_type == PCAPNG_SHB or block_type == PCAPNG_IDB:
            return count, pos, PYTHON_BLOCK, last_ts
        block_len = u32(buf, pos + 4, big_endian)
        if block_len < 12 or block_len % 4 != 0 or block_len > MAX_BLOCK:
            return count, pos, BAD_RECORD, last_ts
        if block_type != PCAPNG_EPB and block_type != PCAPNG_SPB and block_type != PCAPNG_OPB:
            pos += block_len  # NRB, ISB, DSB, custom and unknown blocks: skipped
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
            if interfaces > 0 and if_snaplen[0] > 0:
                included = min(included, if_snaplen[0])
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
            raw = (np.uint64(u32(buf, pos + 12, big_endian)) << np.uint64(32)) | np.uint64(
                u32(buf, pos + 16, big_endian)
            )
            last_ts = _pcapng_ts(
                raw, if_kind[interface], if_factor[interface], if_offset_ns[interface]
            )
        offset[count] = data
        caplen[count] = included
        wire_len[count] = original
        ts_ns[count] = last_ts  # an SPB has no time of its own: it keeps the one before it
        if_id[count] = interface
        count += 1
        pos += block_len
