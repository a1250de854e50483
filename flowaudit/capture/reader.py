"""Read one capture file into ``PacketBatch``es, in bounded chunks, with what it found.

The file's bytes pass through a fixed-size buffer (``CHUNK_BYTES`` plus room for one record),
so memory does not grow with the capture. A compiled walker finds the records in each chunk,
the compiled decoder fills the batch columns, and Python only handles what is rare: the file
header, pcapng section and interface blocks, and the end of the file. Damage after the first
packet ends the read with a warning and keeps what was read; a file that is not a capture at
all raises ``CaptureFormatError``.
"""

from __future__ import annotations

import contextlib
import queue
import struct
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowaudit.capture.batch import DECODED_COLUMNS, PacketBatch
from flowaudit.capture.decode import LINKTYPE_NAMES, decode_records
from flowaudit.capture.source import CHUNK_BYTES, PCAP_MAGICS, CaptureSource, open_capture
from flowaudit.capture.walk import (
    BAD_RECORD,
    FULL,
    MAX_BLOCK,
    MAX_RECORD,
    PCAPNG_IDB,
    PCAPNG_SHB,
    PYTHON_BLOCK,
    TS_BIN,
    TS_DIV,
    TS_MUL,
    RecordColumns,
    walk_pcap,
    walk_pcapng,
)
from flowaudit.errors import CaptureFormatError

BATCH_PACKETS = 65536
PCAP_HEADER_LEN = 24
# pcapng option codes (draft-ietf-opsawg-pcapng section 4.2).
IF_OPT_NAME = 2
IF_OPT_TSRESOL = 9
IF_OPT_TSOFFSET = 14


@dataclass
class CaptureInfo:
    """What one capture file held, for the report's ``captures`` list."""

    path: str
    format: str = ""
    compression: str | None = None
    size: int | None = 0  # None for a pipe
    sha256: str | None = None
    linktypes: list[str] = field(default_factory=list)
    packets: int = 0
    bytes: int = 0
    ip_packets: int = 0
    first_seen_ns: int | None = None
    last_seen_ns: int | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Interface:
    linktype: int
    snaplen: int
    ts_kind: int = TS_MUL
    ts_factor: int = 1000  # default resolution: microseconds
    ts_offset_ns: int = 0
    name: str = ""


def linktype_name(linktype: int) -> str:
    return LINKTYPE_NAMES.get(linktype, f"linktype-{linktype}")


class _BlockError(Exception):
    """A pcapng header block that cannot be used: fatal before the first packet, else the end
    of what is read (with a warning)."""


# An interface's if_tsoffset beyond this many seconds (about 292 years) overflows the
# nanosecond timestamps.
MAX_TS_OFFSET_SECONDS = 9_000_000_000


class CaptureReader:
    """Reads one capture file; ``batches()`` yields its packets, ``info`` says what was read.

    Each batch (its columns and its ``buffer``) is valid until the next one is requested.
    """

    def __init__(
        self,
        path: str | Path,
        file_index: int = 0,
        *,
        sha256: bool = False,
        chunk_bytes: int = CHUNK_BYTES,
        batch_packets: int = BATCH_PACKETS,
        progress: Callable[[int], None] | None = None,
        background: bool = False,
    ) -> None:
        self.path = Path(path)
        self.file_index = file_index
        self._sha256 = sha256
        self._chunk_bytes = chunk_bytes
        self._background = background
        # Read-ahead in a thread keeps up to three batches alive at once (the consumer's, the
        # one queued, the one being decoded), so buffers and columns rotate among four.
        self._pool = 4 if background else 1
        self._batch_packets = batch_packets
        self._column_sets: list[tuple[RecordColumns, PacketBatch]] = []
        self._column_turn = 0
        self._buffers: list[np.ndarray | None] = [None] * self._pool
        self._buffer_turn = -1
        self._handed_out = False  # whether a batch points into the current buffer
        self._progress = progress
        self._frames = 0
        self._interfaces: list[_Interface] = []
        self._linktype_packets: dict[int, int] = {}  # packets seen per link type
        self.info = CaptureInfo(path=str(path))
        self._sections = 0  # pcapng section headers read
        # pcapng: packets whose time int64 nanoseconds cannot hold, blocks whose trailing
        # length differs from the leading one (walk.walk_pcapng_py), header blocks ditto.
        self._pcapng_stats = np.zeros(2, dtype=np.int64)
        self._trailer_mismatches = 0
        self._want_buffer = 0  # a header block longer than the buffer asks for a bigger one
        self._stream_bytes = 0  # bytes of the (decompressed) file read so far

    # ------------------------------------------------------------------ public

    def batches(self) -> Generator[PacketBatch, None, None]:
        """The file's packets in batches; with ``background``, read ahead in a thread."""
        if self._background:
            return read_ahead(self._batches())
        return self._batches()

    def _batches(self) -> Generator[PacketBatch, None, None]:
        source = open_capture(self.path, sha256=self._sha256)
        self.info.format = source.kind
        self.info.compression = source.compression
        self.info.size = source.size
        self._size_to(source)
        try:
            if source.kind == "pcap":
                yield from self._read_pcap(source)
            else:
                yield from self._read_pcapng(source)
            if source.truncated:
                self._warn("the gzip stream is cut short or damaged; packets up to there are read")
            self._finish(source)
        finally:
            source.close()

    def _size_to(self, source: CaptureSource) -> None:
        """Columns and buffers no larger than the file needs: a small capture is read with
        small arrays (allocating 65,536-packet columns cost more than reading the sample)."""
        packets, chunk = self._batch_packets, self._chunk_bytes
        if source.compression is None and source.size is not None:
            packets = min(packets, source.size // 16 + 1)  # a record has a 16-byte header
            chunk = min(chunk, source.size + 16)
        self._chunk_bytes = chunk
        self._column_sets = [
            (RecordColumns(packets), PacketBatch.empty(self.file_index, packets))
            for _ in range(self._pool)
        ]

    # ------------------------------------------------------------------ pcap

    def _read_pcap(self, source: CaptureSource) -> Generator[PacketBatch, None, None]:
        buf = self._next_buffer(self._chunk_bytes + MAX_RECORD + 16)
        have = source.readinto(buf[:PCAP_HEADER_LEN])
        if have < PCAP_HEADER_LEN:
            raise CaptureFormatError(
                f"{self.path}: pcap file header cut short ({have} of {PCAP_HEADER_LEN} bytes)"
            )
        big_endian, nanosecond = PCAP_MAGICS[bytes(buf[:4])]
        order = ">" if big_endian else "<"
        _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(
            order + "HHiIII", bytes(buf[4:24])
        )
        linktype = network & 0xFFFF  # upper bits carry the FCS length (pcap-savefile(5))
        if linktype not in LINKTYPE_NAMES:
            raise CaptureFormatError(
                f"{self.path}: link type {linktype} is not supported "
                f"(supported: {_supported_linktypes()})"
            )
        self._interfaces = [_Interface(linktype=linktype, snaplen=snaplen)]
        if_linktype = np.array([linktype], dtype=np.int32)
        frac_ns = 1 if nanosecond else 1000
        have = 0
        while True:
            got = self._fill(source, buf, have)
            have += got
            end_of_file = have < len(buf)
            pos = 0
            while True:
                records = self._column_sets[self._column_turn][0]
                count, pos, status = walk_pcap(
                    buf,
                    pos,
                    have,
                    big_endian,
                    frac_ns,
                    *records.outputs(),
                )
                if count:
                    yield self._decode(buf, count, if_linktype)
                if status == FULL:
                    continue
                if status == BAD_RECORD:
                    length = struct.unpack_from(order + "I", bytes(buf[pos + 8 : pos + 12]))[0]
                    self._damaged(f"a record claims {length} bytes, more than {MAX_RECORD}")
                    return
                break  # NEED_MORE
            leftover = have - pos
            if end_of_file:
                if leftover:
                    self._cut_short(leftover)
                return
            buf = self._carry(buf, pos, have, len(buf))
            have = leftover

    # ------------------------------------------------------------------ pcapng

    def _read_pcapng(self, source: CaptureSource) -> Generator[PacketBatch, None, None]:
        buf = self._next_buffer(self._chunk_bytes + MAX_RECORD + 4096)
        big_endian = False
        if_arrays = self._interface_arrays()
        last_ts = 0
        have = 0
        skip = 0
        while True:
            if skip:
                skip = self._skip(source, skip)
                if skip:
                    self._cut_short(0)
                    return
            got = self._fill(source, buf, have)
            have += got
            end_of_file = have < len(buf)
            pos = 0
            while True:
                records = self._column_sets[self._column_turn][0]
                count, pos, status, last_ts = walk_pcapng(
                    buf,
                    pos,
                    have,
                    big_endian,
                    *if_arrays[:4],
                    last_ts,
                    *records.outputs(),
                    self._pcapng_stats,
                )
                if count:
                    yield self._decode(buf, count, if_arrays[4])
                if status == FULL:
                    continue
                if status == BAD_RECORD:
                    where = self._stream_bytes - have + pos
                    self._damaged(f"malformed pcapng block at byte {where} of the file")
                    return
                if status == PYTHON_BLOCK:
                    # Header blocks in a row are parsed in one go and the interface arrays
                    # made once after them: a file of 100,000 interfaces costs linear time.
                    while True:
                        try:
                            used = self._python_block(buf, pos, have, big_endian)
                        except _BlockError as exc:
                            where = self._stream_bytes - have + pos
                            self._damaged(f"{exc} (at byte {where} of the file)")
                            return
                        if used is None:
                            break  # block not complete in the buffer: refill
                        big_endian, length = used
                        pos += length
                        if not self._header_block_at(buf, pos, have, big_endian):
                            break
                    if_arrays = self._interface_arrays()
                    if used is None:
                        break
                    continue
                break  # NEED_MORE
            if pos > have:  # an unknown block runs on past the buffer: skip the rest of it
                skip = pos - have
                pos = have
            leftover = have - pos
            if end_of_file:
                if not self._sections:
                    raise CaptureFormatError(f"{self.path}: pcapng section header cut short")
                if leftover or skip:
                    self._cut_short(leftover)
                return
            # A header block as long as half the buffer needs a bigger one to be read whole.
            size = len(buf) if leftover < len(buf) // 2 else max(len(buf), leftover) * 2
            size = max(size, self._want_buffer)
            buf = self._carry(buf, pos, have, size)
            have = leftover

    def _python_block(
        self, buf: np.ndarray, pos: int, have: int, big_endian: bool
    ) -> tuple[bool, int] | None:
        """Parse a Section Header or Interface Description Block; None if it is incomplete."""
        if have - pos < 12:
            return None
        block_type = struct.unpack_from("<I", bytes(buf[pos : pos + 4]))[0]
        if block_type == PCAPNG_SHB:
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                big_endian = False
            elif bom == b"\x1a\x2b\x3c\x4d":
                big_endian = True
            else:
                raise _BlockError("pcapng section header has no valid byte-order magic")
        order = ">" if big_endian else "<"
        length = struct.unpack_from(order + "I", bytes(buf[pos + 4 : pos + 8]))[0]
        shortest = 28 if block_type == PCAPNG_SHB else 20  # sections 4.1 and 4.2
        if length < shortest or length % 4:
            raise _BlockError(f"pcapng header block with invalid length {length}")
        if length > MAX_BLOCK:
            raise _BlockError(f"pcapng header block of {length} bytes (at most {MAX_BLOCK})")
        if have - pos < length:
            # Long comments make header blocks of any size up to MAX_BLOCK: read on with a
            # buffer that holds the whole block.
            self._want_buffer = max(self._want_buffer, length + 4096)
            return None
        if (
            struct.unpack_from(order + "I", bytes(buf[pos + length - 4 : pos + length]))[0]
            != length
        ):
            self._trailer_mismatches += 1
        block = bytes(buf[pos : pos + length])
        if block_type == PCAPNG_SHB:
            self._sections += 1
            self._interfaces = []  # interface ids are numbered per section
        elif struct.unpack_from(order + "I", block)[0] == PCAPNG_IDB:
            self._interfaces.append(self._parse_idb(block, order))
        return big_endian, length

    def _parse_idb(self, block: bytes, order: str) -> _Interface:
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", block, 8)
        interface = _Interface(linktype=linktype, snaplen=snaplen)
        pos, options_end = 16, len(block) - 4
        while pos + 4 <= options_end:
            code, length = struct.unpack_from(order + "HH", block, pos)
            if code == 0:
                break
            if pos + 4 + length > options_end:
                raise _BlockError(f"pcapng interface option {code} runs past its block")
            value = block[pos + 4 : pos + 4 + length]
            if code == IF_OPT_TSRESOL and length >= 1:
                exponent = value[0] & 0x7F
                if value[0] & 0x80:
                    if exponent > 63:
                        raise _BlockError(f"pcapng timestamp resolution 2^-{exponent}")
                    interface.ts_kind, interface.ts_factor = TS_BIN, exponent
                elif exponent <= 9:
                    interface.ts_kind, interface.ts_factor = TS_MUL, 10 ** (9 - exponent)
                elif exponent <= 18:
                    interface.ts_kind, interface.ts_factor = TS_DIV, 10 ** (exponent - 9)
                else:
                    raise _BlockError(f"pcapng timestamp resolution 10^-{exponent}")
            elif code == IF_OPT_TSOFFSET and length >= 8:
                seconds = struct.unpack_from(order + "q", value)[0]
                if abs(seconds) > MAX_TS_OFFSET_SECONDS:
                    raise _BlockError(f"pcapng timestamp offset of {seconds} s")
                interface.ts_offset_ns = seconds * 1_000_000_000
            elif code == IF_OPT_NAME:
                interface.name = value.decode("utf-8", "replace")
            pos += 4 + length + (-length % 4)
        return interface

    @staticmethod
    def _header_block_at(buf: np.ndarray, pos: int, have: int, big_endian: bool) -> bool:
        if have - pos < 4:
            return False
        block_type = struct.unpack_from(">I" if big_endian else "<I", bytes(buf[pos : pos + 4]))[0]
        return bool(block_type in (PCAPNG_SHB, PCAPNG_IDB))

    def _interface_arrays(self) -> tuple[np.ndarray, ...]:
        interfaces = self._interfaces
        return (
            np.array([i.ts_kind for i in interfaces], dtype=np.int64),
            np.array([i.ts_factor for i in interfaces], dtype=np.int64),
            np.array([i.ts_offset_ns for i in interfaces], dtype=np.int64),
            np.array([i.snaplen for i in interfaces], dtype=np.int64),
            np.array([i.linktype for i in interfaces], dtype=np.int32),
        )

    # ------------------------------------------------------------------ shared

    def _fill(self, source: CaptureSource, buf: np.ndarray, have: int) -> int:
        before = source.hashing.bytes_read
        got = source.readinto(buf[have:])
        self._stream_bytes += got
        if self._progress is not None:
            self._progress(source.hashing.bytes_read - before)
        return got

    def _skip(self, source: CaptureSource, skip: int) -> int:
        """Read past ``skip`` bytes of a block not worth keeping; returns what was not there."""
        scratch = np.empty(min(skip, 1 << 20), dtype=np.uint8)
        while skip:
            got = source.readinto(scratch[: min(skip, len(scratch))])
            if not got:
                break
            self._stream_bytes += got
            skip -= got
        return skip

    def _next_buffer(self, size: int) -> np.ndarray:
        self._handed_out = False
        self._buffer_turn = (self._buffer_turn + 1) % len(self._buffers)
        buf = self._buffers[self._buffer_turn]
        if buf is None or len(buf) < size:
            buf = self._buffers[self._buffer_turn] = np.empty(size, dtype=np.uint8)
        return buf[:size]

    def _carry(self, buf: np.ndarray, pos: int, have: int, size: int) -> np.ndarray:
        """The buffer to refill, starting with the bytes of ``buf`` not yet walked.

        ``buf`` itself where no batch points into it (so nothing of the consumer's can be in
        it) and it is large enough; else the next of the pool, which the batches handed out
        since it was last used have all been consumed.
        """
        reuse = not self._handed_out and len(buf) >= size
        following = buf if reuse else self._next_buffer(size)
        following[: have - pos] = buf[pos:have]  # numpy copes when both are the same memory
        return following

    def _decode(self, buf: np.ndarray, count: int, if_linktype: np.ndarray) -> PacketBatch:
        records, batch = self._column_sets[self._column_turn]
        self._handed_out = True  # a batch now points into this buffer
        self._column_turn = (self._column_turn + 1) % len(self._column_sets)
        decode_records(
            buf,
            count,
            records.offset,
            records.caplen,
            records.if_id,
            if_linktype,
            *batch.decoded(),
        )
        if len(if_linktype) == 1:
            kinds = {int(if_linktype[0]): count}
        else:
            used = np.bincount(records.if_id[:count], minlength=len(if_linktype))
            kinds = {}
            for interface in np.flatnonzero(used):
                linktype = int(if_linktype[interface])
                kinds[linktype] = kinds.get(linktype, 0) + int(used[interface])
        for linktype, packets in kinds.items():
            self._linktype_packets[linktype] = self._linktype_packets.get(linktype, 0) + packets
        frames = np.arange(self._frames + 1, self._frames + count + 1, dtype=np.int64)
        self._frames += count
        ts = records.ts_ns[:count]
        wire = records.wire_len[:count]
        info = self.info
        info.packets += count
        info.bytes += int(wire.sum(dtype=np.int64))
        info.ip_packets += int(np.count_nonzero(batch.l3[:count]))
        low, high = int(ts.min()), int(ts.max())
        info.first_seen_ns = low if info.first_seen_ns is None else min(info.first_seen_ns, low)
        info.last_seen_ns = high if info.last_seen_ns is None else max(info.last_seen_ns, high)
        return PacketBatch(
            file_index=self.file_index,
            buffer=buf,
            frame=frames,
            ts_ns=ts,
            wire_len=wire,
            **{name: getattr(batch, name)[:count] for name in DECODED_COLUMNS},
        )

    def _warn(self, message: str) -> None:
        self.info.warnings.append(message)

    def _damaged(self, what: str) -> None:
        if self.info.packets == 0:
            raise CaptureFormatError(f"{self.path}: damaged before the first packet: {what}")
        self._warn(f"damaged after frame {self._frames}: {what}; packets up to there are read")

    def _cut_short(self, leftover: int) -> None:
        self._warn(
            f"cut short in the middle of a record after frame {self._frames} "
            f"({leftover} bytes left over); packets up to there are read"
        )

    def _pcapng_warnings(self) -> None:
        bad_times, trailers = (int(n) for n in self._pcapng_stats)
        trailers += self._trailer_mismatches
        if bad_times:
            self._warn(
                f"{bad_times} packets have a timestamp outside what nanoseconds since 1970 can "
                "hold (years 1678-2262); each was given the time of the packet before it"
            )
        if trailers:
            self._warn(
                f"{trailers} pcapng blocks end with a length that differs from the one they "
                "start with (tshark calls such a file corrupt); read by the leading length"
            )

    def _finish(self, source: CaptureSource) -> None:
        if source.kind != "pcap":
            self._pcapng_warnings()
        if source.kind == "pcap":
            self.info.linktypes = [linktype_name(i.linktype) for i in self._interfaces]
        else:  # the link types that carried packets, of however many interfaces were declared
            self.info.linktypes = [linktype_name(t) for t in self._linktype_packets]
        unknown = {t: n for t, n in self._linktype_packets.items() if t not in LINKTYPE_NAMES}
        if unknown:
            names = ", ".join(str(t) for t in unknown)
            if sum(unknown.values()) == self.info.packets:
                raise CaptureFormatError(
                    f"{self.path}: link type {names} is not supported "
                    f"(supported: {_supported_linktypes()})"
                )
            self._warn(
                f"{sum(unknown.values())} packets on link type {names} were not decoded "
                "(not supported)"
            )
        source.finish_hash()
        self.info.sha256 = source.sha256()


def _supported_linktypes() -> str:
    return ", ".join(f"{number} ({name})" for number, name in sorted(LINKTYPE_NAMES.items()))


_END = object()


def read_ahead(
    batches: Generator[PacketBatch, None, None],
) -> Generator[PacketBatch, None, None]:
    """Run a reader's generator in a thread, one batch ahead of its consumer.

    The compiled walk and decode release the GIL, so reading and decoding the next chunk
    overlaps with the consumer's work on this one (two cores). An error in the
    thread is raised here; a consumer that stops early stops the thread and closes the file.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
            else:
                handoff.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put(exc)
        finally:
            batches.close()

    worker = threading.Thread(target=produce, name="flowaudit-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
        worker.join()
