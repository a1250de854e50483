"""Open one capture file and hand out its bytes in bounded chunks.

The kind of file is decided by magic bytes, never by its name (a pcapng called ``.pcap`` is
read as pcapng): classic pcap in either byte order with microsecond or nanosecond timestamps,
pcapng, and either of them gzip-compressed. The file's SHA-256 (of the bytes as stored, i.e.
of the compressed file for ``.gz``) is computed as it is read, for the evidence in reports.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import queue
import stat
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flowaudit.capture.batch import U8
from flowaudit.errors import CaptureFormatError, InputError

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
# Classic pcap magic numbers as they appear in the file (pcap-savefile(5)).
PCAP_MAGICS: dict[bytes, tuple[bool, bool]] = {  # magic -> (big_endian, nanosecond)
    b"\xd4\xc3\xb2\xa1": (False, False),
    b"\xa1\xb2\xc3\xd4": (True, False),
    b"\x4d\x3c\xb2\xa1": (False, True),
    b"\xa1\xb2\x3c\x4d": (True, True),
}

CHUNK_BYTES = 8 * 1024 * 1024
STDIN = "-"  # the path that means standard input


class _Hasher:
    """SHA-256 of the bytes handed to ``feed``, computed in a thread of its own.

    The evidence hash used to run in the reading thread, in series with walking and decoding
    (a quarter of ``analyze``'s time on a 1 GB capture); hashlib lets go of the GIL while it
    hashes, so on a second core it now costs the reader one copy of each read. The copies wait
    in a bounded queue (at most ``QUEUED`` reads, a few MiB), so memory stays bounded whatever
    the file's size. The hash is of exactly the bytes the reader parsed.
    """

    QUEUED = 8

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=self.QUEUED)
        self._thread = threading.Thread(target=self._run, name="flowaudit-sha256", daemon=True)
        self._thread.start()
        self._done = False

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self.digest.update(data)

    def feed(self, data: memoryview) -> None:
        self._queue.put(bytes(data))

    def finish(self) -> str:
        """The hex digest, once every byte fed is hashed."""
        if not self._done:
            self._queue.put(None)
            self._thread.join()
            self._done = True
        return self.digest.hexdigest()


class _HashingReader(io.RawIOBase):
    """A raw file wrapper that feeds every byte read into a SHA-256."""

    def __init__(self, raw: BinaryIO, hasher: _Hasher | None) -> None:
        self._raw = raw
        self._hasher = hasher
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        count = self._raw.readinto(target)  # type: ignore[attr-defined]
        if count:
            self.bytes_read += count
            if self._hasher is not None:
                self._hasher.feed(memoryview(target)[:count])
        return int(count or 0)

    def close(self) -> None:
        self._raw.close()
        if self._hasher is not None:
            self._hasher.finish()  # lets the thread go
        super().close()


@dataclass
class CaptureSource:
    """An open capture file: its kind, and a stream of its (decompressed) bytes."""

    path: Path
    kind: str  # "pcap" | "pcapng"
    compression: str | None  # "gzip" or None
    size: int | None  # bytes on disk (None for a pipe)
    stream: BinaryIO
    hasher: _Hasher | None
    hashing: _HashingReader
    truncated: bool = False  # a gzip stream that ended early or was corrupt

    def sha256(self) -> str | None:
        """Hex SHA-256 of the file as stored; complete once the stream was read to its end."""
        return None if self.hasher is None else self.hasher.finish()

    def readinto(self, target: U8) -> int:
        """Fill ``target`` as far as the file goes; returns the count (0 at end of file)."""
        view = memoryview(target)  # type: ignore[arg-type]
        total = 0
        while total < len(view):
            try:
                count = self.stream.readinto1(view[total:])  # type: ignore[attr-defined]
            except (EOFError, gzip.BadGzipFile, zlib.error):
                # A gzip member cut short or damaged: what was decompressed so far stands.
                self.truncated = True
                break
            if not count:
                break
            total += count
        return total

    def finish_hash(self) -> None:
        """Read whatever the reader did not consume so that the SHA-256 covers the file."""
        if self.hasher is None:
            return
        # Bytes are hashed as they come off the disk, below any buffering or decompression.
        spare = bytearray(1024 * 1024)
        while self.hashing.readinto(memoryview(spare)):
            pass

    def close(self) -> None:
        self.stream.close()


class _Prefixed(io.RawIOBase):
    """A raw stream that first gives back bytes already read, then the rest of ``raw``."""

    def __init__(self, prefix: bytes, raw: io.RawIOBase | io.BufferedIOBase) -> None:
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            count = min(len(target), len(self._prefix))
            target[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        # One read of what is below (readinto1 where it has one): a gzip stream cut short
        # then hands over what it inflated before it raises on the next call.
        read = getattr(self._raw, "readinto1", self._raw.readinto)
        return read(target) or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def _read_up_to(stream: io.RawIOBase | io.BufferedIOBase, count: int) -> bytes:
    """``count`` bytes, or fewer only at the end: a pipe, or a gzip member smaller than
    ``count``, may hand them out a few at a time. They are put back in front (``_Prefixed``)."""
    head = b""
    while len(head) < count:
        more = stream.read(count - len(head))
        if not more:
            break
        head += more
    return head


def _describe_start(head: bytes) -> str:
    if not head:
        return "it is empty (0 bytes)"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it looks like text"
    return "it starts with bytes " + head[:4].hex(" ")


def open_capture(path: str | os.PathLike[str], *, sha256: bool = False) -> CaptureSource:
    """Open ``path`` and decide from its first bytes what kind of capture it is.

    Raises ``InputError`` for what is not a readable file and ``CaptureFormatError`` for a file
    that is not a pcap, pcapng or gzip-compressed capture.
    """
    file_path = Path(path)
    raw: BinaryIO
    if str(path) == STDIN:
        # A capture piped in (tcpdump -w - | flowaudit flows -): read once, as it comes.
        raw = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
    elif file_path.is_dir():
        raise InputError(f"{file_path}: is a directory, not a capture file")
    else:
        try:
            raw = open(file_path, "rb", buffering=0)  # noqa: SIM115 - closed by caller
        except FileNotFoundError:
            raise InputError(f"{file_path}: no such file") from None
        except OSError as exc:
            raise InputError(f"{file_path}: cannot open ({exc.strerror})") from None
    status = os.fstat(raw.fileno())
    size = status.st_size if stat.S_ISREG(status.st_mode) else None  # a pipe has no size
    hasher = _Hasher() if sha256 else None
    hashing = _HashingReader(raw, hasher)
    head = _read_up_to(hashing, 4)
    buffered = io.BufferedReader(_Prefixed(head, hashing), buffer_size=1024 * 1024)
    compression = None
    stream: BinaryIO = buffered
    if head[:2] == GZIP_MAGIC:
        compression = "gzip"
        inflated = gzip.GzipFile(fileobj=buffered, mode="rb")
        try:
            head = _read_up_to(inflated, 4)
        except (OSError, EOFError, zlib.error) as exc:
            inflated.close()
            raise CaptureFormatError(
                f"{file_path}: gzip data cannot be decompressed ({exc})"
            ) from None
        stream = io.BufferedReader(_Prefixed(head, inflated), buffer_size=1024 * 1024)
    kind = None
    if head == PCAPNG_MAGIC:
        kind = "pcapng"
    elif head in PCAP_MAGICS:
        kind = "pcap"
    if kind is None:
        stream.close()
        inside = " inside gzip" if compression else ""
        raise CaptureFormatError(
            f"{file_path}: not a pcap or pcapng capture{inside}: {_describe_start(head)}"
        )
    source = CaptureSource(
        path=file_path,
        kind=kind,
        compression=compression,
        size=size,
        stream=stream,
        hasher=hasher,
        hashing=hashing,
    )
    return source
