"""The second engine (``--engine pyshark``): ``PacketBatch`` columns from tshark's own dissection.

The native reader decodes capture bytes itself; this engine asks tshark (through pyshark) to
dissect each frame and copies tshark's fields into the same columns (``batch.py``), so that a
flow table can be built without trusting flowaudit's parser. It is slow (tshark's JSON output
is the limit, a few thousand packets/s) and meant for cross-checking and odd captures.

How tshark is run, once per file, by ``pyshark.FileCapture``:

* ``-T json`` (pyshark ``use_json=True``) with ``-J`` limiting the printed layers to the ones
  read here; every other dissector still runs but its tree is not serialised.
* IP reassembly off (``ip.defragment``, ``ipv6.defragment``) so that every fragment is its own
  frame, TCP reassembly and sequence analysis off, absolute sequence numbers
  (``tcp.desegment_tcp_streams``, ``tcp.analyze_sequence_numbers``,
  ``tcp.relative_sequence_numbers``).
* Payload bytes come from ``tcp.payload`` / ``udp.payload``: the captured part of the transport
  payload, Ethernet padding excluded because tshark bounds the IP payload by its length field.

Column semantics follow the native decoder (``decode.py``) where tshark leaves a choice: the
outer IP header decides (tunnels and ICMP errors carry no ports), ``frag_id`` is set on
fragments only, a non-first fragment has no ports and no payload, and ``payload_len`` is what
the IP header claims.

pyshark is used as designed (its tshark process handling, JSON framing and ``Packet`` layers),
with adjustments in a subclass of ``FileCapture``: stderr is kept in full (pyshark keeps its
last line only); tshark's exit status is recorded instead of raised, so that a capture cut short
yields its packets and a warning; the event loop is our own and closed when the file is done,
so neither a tshark process nor an asyncio warning outlives a read; ``tshark -v`` runs once per
process, not once per file; JSON that is not UTF-8 is decoded leniently. Field values are read
from each layer's JSON object by their exact tshark names (pyshark's ``get_field`` falls back to
suffix matching, which could pick a wrong field when the right one is absent).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import hashlib
import importlib.util
import os
import shutil
import socket
import sys
import threading
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowaudit.capture.batch import (
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    L3_IPV4,
    L3_IPV6,
    L3_NONE,
    PacketBatch,
)
from flowaudit.errors import CaptureFormatError, EngineError, FlowauditError, InputError

if TYPE_CHECKING:
    from flowaudit.capture.reader import CaptureInfo
    from flowaudit.config import FlowConfig

__all__ = ["PysharkReader", "iter_pyshark_batches", "pyshark_available", "read_with_pyshark"]

# tshark preferences (``-o name:value``) this engine relies on, see the module docstring.
TSHARK_PREFERENCES: dict[str, str] = {
    "ip.defragment": "FALSE",
    "ipv6.defragment": "FALSE",
    "tcp.desegment_tcp_streams": "FALSE",
    "tcp.analyze_sequence_numbers": "FALSE",
    "tcp.relative_sequence_numbers": "FALSE",
}

# Top-level layers tshark prints (``-J``); ``frame`` is required by pyshark's JSON parser.
TSHARK_LAYERS = "frame eth sll ip ipv6 tcp udp"

# Seconds to wait for tshark to exit after it closed its output, and after it was killed.
_EXIT_GRACE_SECONDS = 30.0
_KILL_GRACE_SECONDS = 5.0

# tshark's exit status for a bad command line (tshark.c INVALID_OPTION); 2 is a file it cannot
# open or read.
_TSHARK_EXIT_INVALID_OPTION = 1

# Wiretap encapsulation numbers (``frame.encap_type``; wiretap/wtap.h, Wireshark 4.0) to
# tcpdump.org LINKTYPE numbers, named as the native reader names them (decode.LINKTYPE_NAMES),
# so that a capture's ``linktypes`` read the same whichever engine ran.
WTAP_ENCAP_LINKTYPES: dict[int, tuple[int, str]] = {
    1: (1, "ethernet"),  # WTAP_ENCAP_ETHERNET
    4: (9, "ppp"),  # WTAP_ENCAP_PPP
    7: (101, "raw"),  # WTAP_ENCAP_RAW_IP
    15: (0, "null"),  # WTAP_ENCAP_NULL
    20: (105, "ieee802_11"),  # WTAP_ENCAP_IEEE_802_11
    23: (127, "ieee802_11_radiotap"),  # WTAP_ENCAP_IEEE_802_11_RADIOTAP
    25: (113, "linux-sll"),  # WTAP_ENCAP_SLL
    129: (228, "ipv4"),  # WTAP_ENCAP_RAW_IP4
    130: (229, "ipv6"),  # WTAP_ENCAP_RAW_IP6
    141: (239, "nflog"),  # WTAP_ENCAP_NFLOG
    174: (108, "loop"),  # WTAP_ENCAP_LOOP
    210: (276, "linux-sll2"),  # WTAP_ENCAP_SLL2
}

# IPv6 extension headers as tshark 4.0 nests them in the ``ipv6`` layer, the same set the
# native decoder walks (RFC 8200 section 4, RFC 6564): next-header value -> (subtree key, its
# next-header field, its length field, and the header length as (length + add) * unit).
_IPV6_EXTENSIONS: dict[int, tuple[str, str, str, int, int]] = {
    0: ("ipv6.hopopts", "ipv6.hopopts.nxt", "ipv6.hopopts.len_oct", 0, 1),
    43: ("ipv6.routing", "ipv6.routing.nxt", "ipv6.routing.len_oct", 0, 1),
    44: ("ipv6.fraghdr", "ipv6.fraghdr.nxt", "", 8, 1),
    51: ("ah", "ah.next_header", "ah.length", 2, 4),  # RFC 4302 section 2.2
    60: ("ipv6.dstopts", "ipv6.dstopts.nxt", "ipv6.dstopts.len_oct", 0, 1),
    135: ("mipv6", "mip6.proto", "mip6.hlen", 1, 8),  # RFC 6275 section 6.1.1
    140: ("shim6", "shim6.nxt", "shim6.len_oct", 0, 1),  # RFC 5533 section 5
}
_IPV6_MAX_EXTENSIONS = 16

# Linux cooked capture packet types (sll.pkttype) sent to a group address: 1 broadcast,
# 2 multicast (packet(7), PACKET_BROADCAST / PACKET_MULTICAST).
_SLL_GROUP_PKTTYPES = frozenset({"1", "2"})

_IPV4_MAPPED_PREFIX = 0x0000FFFF00000000
_ROOT_NOTICE = "Running as user"


def _tshark_path() -> str | None:
    return shutil.which("tshark")


def _missing_dependency() -> str | None:
    """Why the engine cannot run here, or None when it can."""
    if importlib.util.find_spec("pyshark") is None:
        return "the pyshark engine needs the pyshark package (pip install 'flowaudit[pyshark]')"
    if _tshark_path() is None:
        return "the pyshark engine needs tshark on PATH (install Wireshark's tshark)"
    return None


def pyshark_available() -> bool:
    """True when pyshark can be imported and tshark is on PATH."""
    return _missing_dependency() is None


class PysharkReader:
    """Read one capture file with tshark (through pyshark) into ``PacketBatch``es.

    Iterate ``batches()`` (or the reader itself); tshark runs once, when iteration starts.
    Afterwards ``packets`` and ``bytes`` hold the frame count and the sum of wire lengths,
    ``ip_packets``, ``first_seen_ns`` and ``last_seen_ns`` what their names say, ``linktypes``
    the link types of the frames (named as the native reader names them, in order of
    appearance) and ``warnings`` what tshark reported about a capture it could read only in part
    (cut short, damaged). A file tshark cannot read at all raises ``CaptureFormatError`` (when
    iteration starts); a missing pyshark or tshark, or a missing file, raises on construction.
    """

    def __init__(
        self,
        path: Path | str,
        file_index: int,
        *,
        batch_size: int = 10_000,
        max_payload: int = 2048,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_payload < 0:
            raise ValueError("max_payload must not be negative")
        missing = _missing_dependency()
        if missing is not None:
            raise EngineError(missing)
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise InputError(f"{self.path}: not a file")
        if not os.access(self.path, os.R_OK):
            raise InputError(f"{self.path}: permission denied")
        self.file_index = file_index
        self.batch_size = batch_size
        self.max_payload = max_payload
        self.warnings: list[str] = []
        self.linktypes: list[str] = []
        self.packets = 0
        self.bytes = 0
        self.ip_packets = 0
        self.first_seen_ns: int | None = None
        self.last_seen_ns: int | None = None
        self.captured_bytes = 0  # frames' captured lengths, for progress reporting
        self._encaps_seen: set[str] = set()

    def __iter__(self) -> Iterator[PacketBatch]:
        return self.batches()

    def batches(self) -> Generator[PacketBatch, None, None]:
        """Run tshark over the file once and yield its frames in batches of ``batch_size``."""
        loop = asyncio.new_event_loop()
        capture: Any = None
        frames: Iterator[Any] | None = None
        finished = False
        restore_watcher = _lend_child_watcher(loop)
        try:
            capture = _open_capture(self.path, loop)
            frames = iter(capture)
            builder = _BatchBuilder(self.file_index, self.max_payload)
            for packet in _guarded(frames, self.path):
                self._note_frame(builder.add(packet), builder.last_ts_ns, builder.last_is_ip)
                if len(builder) >= self.batch_size:
                    yield builder.finish()
                    builder = _BatchBuilder(self.file_index, self.max_payload)
            finished = True
            if len(builder):
                yield builder.finish()
        finally:
            try:
                returncode, stderr_lines = _close_capture(loop, capture, frames)
            finally:
                restore_watcher()
        if finished:
            self._judge_exit(returncode, stderr_lines)

    def _note_frame(self, frame: _FrameInfo, ts_ns: int, is_ip: bool) -> None:
        self.packets += 1
        self.bytes += frame.wire_len
        self.captured_bytes += frame.cap_len
        self.ip_packets += is_ip
        if self.first_seen_ns is None or ts_ns < self.first_seen_ns:
            self.first_seen_ns = ts_ns
        if self.last_seen_ns is None or ts_ns > self.last_seen_ns:
            self.last_seen_ns = ts_ns
        if frame.encap and frame.encap not in self._encaps_seen:
            self._encaps_seen.add(frame.encap)
            self.linktypes.append(_linktype_name(frame.encap))

    def _judge_exit(self, returncode: int | None, stderr_lines: list[str]) -> None:
        """Turn tshark's exit status and stderr into an error or warnings."""
        detail = " ".join(_strip_tshark_prefix(line) for line in stderr_lines)
        if returncode == _TSHARK_EXIT_INVALID_OPTION:
            raise EngineError(f"tshark rejected the options flowaudit gave it: {detail}")
        failed = returncode is None or returncode != 0
        if failed and returncode is not None and returncode < 0 and self.packets == 0:
            raise EngineError(
                f"{self.path}: tshark ended on signal {-returncode} before the first packet"
            )
        # tshark 4.0 words a read error "cut short in the middle of a packet." and an open
        # error (a header cut short) "... of a packet or other data.": only the first is a
        # capture that was cut before its first packet ended.
        cut_short = "cut short in the middle of a packet." in detail
        if failed and self.packets == 0 and not cut_short:
            reason = detail or f"tshark exited with status {returncode}"
            raise CaptureFormatError(f"{self.path}: tshark cannot read it: {reason}")
        if failed:
            reason = detail or _describe_exit(returncode)
            self.warnings.append(f"tshark stopped after {self.packets} packets: {reason}")
        elif detail:
            self.warnings.append(f"tshark: {detail}")


def read_with_pyshark(
    path: Path,
    file_index: int,
    *,
    batch_size: int = 10_000,
    max_payload: int = 2048,
    warnings_out: list[str] | None = None,
) -> Iterator[PacketBatch]:
    """Yield the batches of one capture file; tshark's warnings go to ``warnings_out``.

    A thin wrapper of ``PysharkReader`` for callers that only want the batches. Missing
    pyshark/tshark and unusable files raise at the call, not at the first ``next()``.
    """
    reader = PysharkReader(path, file_index, batch_size=batch_size, max_payload=max_payload)

    def generate() -> Iterator[PacketBatch]:
        try:
            yield from reader.batches()
        finally:
            if warnings_out is not None:
                warnings_out.extend(reader.warnings)

    return generate()


def iter_pyshark_batches(
    paths: Sequence[str | Path],
    config: FlowConfig,
    progress: Callable[[int], None] | None,
    infos: list[CaptureInfo],
) -> Iterator[PacketBatch]:
    """The engine over a capture set, as ``flows.build_flow_table`` drives an engine.

    One ``CaptureInfo`` per file goes to ``infos`` (filled as the file is read); ``progress``
    gets bytes of the files as they are worked through (estimated from the frames' captured
    lengths, topped up to the file size at its end).
    """
    from flowaudit.capture.reader import CaptureInfo

    for index, name in enumerate(paths):
        path = Path(name)
        reader = PysharkReader(path, index, max_payload=config.payload_bytes)
        file_format, compression, head = _sniff_format(path)
        size = path.stat().st_size
        info = CaptureInfo(path=str(name), format=file_format, compression=compression, size=size)
        infos.append(info)
        reported = 0
        for batch in reader.batches():
            _copy_totals(reader, info)
            if progress is not None:
                estimate = min(reader.captured_bytes + 16 * reader.packets, size)
                if estimate > reported:
                    progress(estimate - reported)
                    reported = estimate
            yield batch
        _copy_totals(reader, info)
        if not info.linktypes and file_format == "pcap":
            # No frame to ask tshark about: the link type the pcap header declares.
            info.linktypes = [_pcap_header_linktype(head)]
        info.warnings = list(reader.warnings)
        if config.sha256:
            info.sha256 = _file_sha256(path)
        if progress is not None and size > reported:
            progress(size - reported)


def _copy_totals(reader: PysharkReader, info: CaptureInfo) -> None:
    info.linktypes = list(reader.linktypes)
    info.packets = reader.packets
    info.bytes = reader.bytes
    info.ip_packets = reader.ip_packets
    info.first_seen_ns = reader.first_seen_ns
    info.last_seen_ns = reader.last_seen_ns


def _sniff_format(path: Path) -> tuple[str, str | None, bytes]:
    """("pcap" | "pcapng" | "other", "gzip" | None, the first 24 bytes after decompression)."""
    with open(path, "rb") as handle:
        head = handle.read(24)
        compression = None
        if head[:2] == b"\x1f\x8b":
            compression = "gzip"
            handle.seek(0)
            with contextlib.suppress(OSError, EOFError), gzip.open(handle) as inner:
                head = inner.read(24)
    if head[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng Section Header Block
        return "pcapng", compression, head
    if head[:4] in _PCAP_MAGICS:
        return "pcap", compression, head
    return "other", compression, head


def _pcap_header_linktype(head: bytes) -> str:
    """The link type a pcap global header declares (its last field, low 16 bits)."""
    if len(head) < 24:
        return "unknown"
    big_endian = head[:4] in _PCAP_MAGICS_BIG_ENDIAN
    linktype = int.from_bytes(head[20:24], "big" if big_endian else "little") & 0xFFFF
    names = {number: name for number, name in WTAP_ENCAP_LINKTYPES.values()}
    return names.get(linktype, f"linktype-{linktype}")


# pcap magic numbers: microsecond, nanosecond, and Kuznetzov's modified pcap, either order.
_PCAP_MAGIC_NUMBERS = (0xA1B2C3D4, 0xA1B23C4D, 0xA1B2CD34)
_PCAP_MAGICS_BIG_ENDIAN = frozenset(magic.to_bytes(4, "big") for magic in _PCAP_MAGIC_NUMBERS)
_PCAP_MAGICS = _PCAP_MAGICS_BIG_ENDIAN | {
    magic.to_bytes(4, "little") for magic in _PCAP_MAGIC_NUMBERS
}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- tshark through pyshark ---------------------------------------------------------------


def _open_capture(path: Path, loop: asyncio.AbstractEventLoop) -> Any:
    capture_class = _capture_class()
    try:
        # Ask for tshark's version before the loop runs (pyshark would run ``tshark -v``
        # synchronously inside a coroutine) so that a broken tshark fails here, in one line.
        _tshark_version(_tshark_path())
    except Exception as exc:
        raise EngineError(f"could not run tshark -v: {type(exc).__name__}: {exc}") from exc
    try:
        return capture_class(
            str(path),
            keep_packets=False,
            use_json=True,
            include_raw=False,
            override_prefs=TSHARK_PREFERENCES,
            custom_parameters=["-J", TSHARK_LAYERS],
            tshark_path=_tshark_path(),
            eventloop=loop,
        )
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied") from exc


def _guarded(frames: Iterator[Any], path: Path) -> Iterator[Any]:
    """pyshark's packets, with its failures turned into one-line engine errors."""
    number = 0
    while True:
        try:
            packet = next(frames)
        except StopIteration:
            return
        except FlowauditError:
            raise
        except (ValueError, KeyError) as exc:  # json.JSONDecodeError is a ValueError
            raise EngineError(
                f"{path}: tshark's JSON output could not be parsed after frame {number}: {exc}"
            ) from exc
        except Exception as exc:  # pyshark's own exceptions, OSError, CalledProcessError
            raise EngineError(
                f"{path}: running tshark through pyshark failed: {type(exc).__name__}: {exc}"
            ) from exc
        number += 1
        yield packet


def _close_capture(
    loop: asyncio.AbstractEventLoop, capture: Any, frames: Iterator[Any] | None
) -> tuple[int | None, list[str]]:
    """Stop tshark if it still runs, collect its exit status and stderr, close the loop."""
    returncode: int | None = None
    stderr_lines: list[str] = []
    try:
        if frames is not None:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # runs pyshark's own cleanup of the process (our override below)
        if capture is not None:
            capture.close()  # waits for the stderr reader, kills anything still running
            returncode = capture.tshark_returncode
            stderr_lines = list(capture.tshark_stderr)
    finally:
        with contextlib.suppress(RuntimeError):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return returncode, stderr_lines


def _lend_child_watcher(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Make asyncio able to wait for tshark from our own event loop; return what puts the
    process's child watcher back as it was.

    Up to Python 3.13 asyncio learns of a child's exit through a process-wide child watcher.
    pyshark, when it creates its own loop, installs a ``SafeChildWatcher`` bound to that loop;
    such a watcher (or a ``FastChildWatcher``) serves only the loop it is attached to. The
    default ``ThreadedChildWatcher`` serves every loop and needs nothing. Another watcher is
    attached to our loop for the read and then to its own again; never replaced (replacing it
    would close it for whoever installed it).
    """
    if sys.version_info >= (3, 14) or os.name == "nt":
        return lambda: None
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.get_child_watcher()
    if not isinstance(watcher, asyncio.SafeChildWatcher | asyncio.FastChildWatcher):
        return lambda: None
    own_loop = getattr(watcher, "_loop", None)  # asyncio keeps it no other way
    watcher.attach_loop(loop)

    def restore() -> None:
        back = own_loop if own_loop is not None and not own_loop.is_closed() else None
        watcher.attach_loop(back)

    return restore


@functools.cache
def _capture_class() -> type:
    """pyshark's FileCapture, adjusted for a batch reader (built on first use: pyshark is
    an optional dependency)."""
    import pyshark
    from pyshark.tshark.output_parser.tshark_json import TsharkJsonParser, packet_from_json_packet
    from pyshark.tshark.tshark import tshark_supports_duplicate_keys

    class LenientJsonParser(TsharkJsonParser):
        """pyshark's JSON parser, tolerant of bytes in tshark's output that are not UTF-8.

        Where tshark supports ``--no-duplicate-keys`` (2.6.7 and later; pyshark then passes
        it) tshark already merges repeated keys into lists, yet pyshark 0.6 still parses with
        a Python hook that merges duplicates; without the hook parsing takes a quarter of the
        time and gives the same objects.
        """

        def _parse_single_packet(self, packet: bytes) -> Any:
            try:
                packet.decode("utf-8")
            except UnicodeDecodeError:
                packet = packet.decode("utf-8", "replace").encode("utf-8")
            merged_by_tshark = tshark_supports_duplicate_keys(self._tshark_version)
            return packet_from_json_packet(packet, deduplicate_fields=not merged_by_tshark)

    class BatchFileCapture(pyshark.FileCapture):
        """FileCapture that keeps all of stderr and records tshark's exit status."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.tshark_stderr: list[str] = []
            self.tshark_returncode: int | None = None
            super().__init__(*args, **kwargs)

        def _get_tshark_version(self) -> Any:
            return _tshark_version(self.tshark_path)

        def _setup_tshark_output_parser(self) -> Any:
            return LenientJsonParser(self._get_tshark_version())

        async def _handle_process_stderr_forever(self, stderr: asyncio.StreamReader) -> None:
            while True:
                line = await stderr.readline()
                if not line:
                    break
                text = line.decode("utf-8", "replace").strip()
                self._last_error_line = text
                if text and not text.startswith(_ROOT_NOTICE):
                    self.tshark_stderr.append(text)

        async def _cleanup_subprocess(self, process: asyncio.subprocess.Process) -> None:
            # pyshark kills tshark at once and raises on a non-zero status; here a tshark that
            # reached the end of its output may finish (its status tells a truncated file from
            # a clean one), and one stopped early is killed. Nothing is raised.
            if process.returncode is None and self._eof_reached:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), _EXIT_GRACE_SECONDS)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), _KILL_GRACE_SECONDS)
                if process.stdout is not None:
                    # Read what the killed tshark left in the pipe up to its end, so that
                    # asyncio sees the pipe close and closes the transport before the loop.
                    with contextlib.suppress(asyncio.TimeoutError, OSError):
                        await asyncio.wait_for(process.stdout.read(), _KILL_GRACE_SECONDS)
            elif self.tshark_returncode is None:
                self.tshark_returncode = process.returncode
            self._running_processes.discard(process)

    return BatchFileCapture


@functools.cache
def _tshark_version(tshark_path: str | None) -> Any:
    """tshark's version (pyshark asks ``tshark -v`` once per capture; once per process here)."""
    from pyshark.tshark.tshark import get_tshark_version

    return get_tshark_version(tshark_path)


def _strip_tshark_prefix(line: str) -> str:
    return line[len("tshark: ") :] if line.startswith("tshark: ") else line


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "tshark did not exit"
    if returncode < 0:
        return f"tshark ended on signal {-returncode}"
    return f"tshark exited with status {returncode}"


def _linktype_name(encap: str) -> str:
    try:
        number = int(encap)
    except ValueError:
        return f"wtap-encap-{encap}"
    known = WTAP_ENCAP_LINKTYPES.get(number)
    return known[1] if known else f"wtap-encap-{number}"


# --- tshark fields to columns ---------------------------------------------------------------


class _FrameInfo:
    __slots__ = ("cap_len", "encap", "wire_len")

    def __init__(self, encap: str, wire_len: int, cap_len: int) -> None:
        self.encap = encap
        self.wire_len = wire_len
        self.cap_len = cap_len


def _fields(layer: Any) -> dict[str, Any]:
    """The JSON object tshark printed for a pyshark JSON layer (first occurrence)."""
    fields = getattr(layer, "_all_fields", None)
    return fields if isinstance(fields, dict) else {}


def _first(value: Any) -> Any:
    """A field's value; tshark prints repeated fields (and repeated layers) as lists."""
    while isinstance(value, list):
        if not value:
            return None
        value = value[0]
    return value


def _nth(value: Any, index: int) -> Any:
    if isinstance(value, list):
        return value[index] if index < len(value) else None
    return value if index == 0 else None


def _int(value: Any, default: int = 0) -> int:
    """tshark prints integers in decimal, and flags, ids and checksums as 0x hex."""
    value = _first(value)
    if not isinstance(value, str):
        return default
    try:
        if value[:2] in ("0x", "0X"):
            return int(value, 16)
        return int(value)
    except ValueError:
        return default


def _hex_bytes(value: Any, limit: int) -> bytes:
    """Bytes from tshark's "aa:bb:cc" notation, at most ``limit`` of them."""
    value = _first(value)
    if not isinstance(value, str) or limit <= 0:
        return b""
    text = value[: 3 * limit].replace(":", "")
    try:
        return bytes.fromhex(text)[:limit]
    except ValueError:
        return b""


def _epoch_ns(value: Any) -> int:
    """``frame.time_epoch`` ("1367053679.452740000") as integer ns, without a float between."""
    text = _first(value)
    if not isinstance(text, str):
        return 0
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    whole, _, fraction = digits.partition(".")
    if whole.isdigit() and (fraction == "" or fraction.isdigit()):
        ns = int(whole) * 1_000_000_000 + int((fraction[:9] or "0").ljust(9, "0"))
        return -ns if negative else ns
    try:
        return int(Decimal(text) * 1_000_000_000)
    except (InvalidOperation, ValueError):
        return 0


def _address(text: Any, family: int) -> tuple[int, int] | None:
    """(hi, lo) halves of a 128-bit address; IPv4 as IPv4-mapped IPv6 (RFC 4291 2.5.5.2)."""
    text = _first(text)
    if not isinstance(text, str):
        return None
    try:
        packed = socket.inet_pton(family, text)
    except (OSError, ValueError):
        return None
    if family == socket.AF_INET:
        return 0, _IPV4_MAPPED_PREFIX | int.from_bytes(packed, "big")
    return int.from_bytes(packed[:8], "big"), int.from_bytes(packed[8:], "big")


def _l2_multicast(first_protocol: str, layers: dict[str, Any]) -> bool:
    """Destination is a group address: Ethernet I/G bit (IEEE 802-2014 8.2), or for Linux
    cooked captures the kernel's broadcast/multicast packet type."""
    if first_protocol == "eth":
        eth = _fields(layers.get("eth"))
        ig = _first(_fields_of(eth.get("eth.dst_tree")).get("eth.dst.ig"))
        if ig is not None:
            return ig == "1" or ig == "True"
        dst = _first(eth.get("eth.dst"))
        if isinstance(dst, str) and len(dst) >= 2:
            with contextlib.suppress(ValueError):
                return bool(int(dst[:2], 16) & 1)
        return False
    if first_protocol == "sll":
        return _first(_fields(layers.get("sll")).get("sll.pkttype")) in _SLL_GROUP_PKTTYPES
    return False


def _fields_of(value: Any) -> dict[str, Any]:
    value = _first(value)
    return value if isinstance(value, dict) else {}


class _BatchBuilder:
    """Collects one batch's rows as Python lists, then turns them into numpy columns."""

    def __init__(self, file_index: int, max_payload: int) -> None:
        self.file_index = file_index
        self.max_payload = max_payload
        self.last_ts_ns = 0
        self.last_is_ip = False
        self.buffer = bytearray()
        self.columns: dict[str, list[int]] = {
            name: []
            for name in (
                "frame", "ts_ns", "wire_len", "l3", "proto", "src_hi", "src_lo", "dst_hi",
                "dst_lo", "sport", "dport", "tcp_flags", "tcp_seq", "payload_off",
                "payload_len", "payload_cap", "l2_multicast", "frag", "frag_id",
            )
        }  # fmt: skip

    def __len__(self) -> int:
        return len(self.columns["frame"])

    def add(self, packet: Any) -> _FrameInfo:
        frame = _fields(packet.frame_info)
        layers: dict[str, Any] = {}
        for layer in packet.layers:
            layers.setdefault(layer.layer_name, layer)
        protocols = str(_first(frame.get("frame.protocols")) or "").split(":")
        wire_len = _int(frame.get("frame.len"))
        row = _Row()
        row.frame = _int(frame.get("frame.number"))
        row.ts_ns = _epoch_ns(frame.get("frame.time_epoch"))
        row.wire_len = wire_len
        row.l2_multicast = _l2_multicast(protocols[0], layers)
        row.payload_off = len(self.buffer)
        outer = next((name for name in protocols if name in ("ip", "ipv6")), None)
        if outer == "ip":
            self._ipv4(row, layers)
        elif outer == "ipv6":
            self._ipv6(row, layers)
        self._append(row)
        self.last_ts_ns = row.ts_ns
        self.last_is_ip = row.l3 != L3_NONE
        encap = str(_first(frame.get("frame.encap_type")) or "")
        return _FrameInfo(encap, wire_len, _int(frame.get("frame.cap_len"), wire_len))

    def _ipv4(self, row: _Row, layers: dict[str, Any]) -> None:
        ip = _fields(layers.get("ip"))
        src = _address(ip.get("ip.src"), socket.AF_INET)
        dst = _address(ip.get("ip.dst"), socket.AF_INET)
        if src is None or dst is None:
            return
        row.l3 = L3_IPV4
        row.src_hi, row.src_lo = src
        row.dst_hi, row.dst_lo = dst
        row.proto = _int(ip.get("ip.proto"))
        more = _first(_fields_of(ip.get("ip.flags_tree")).get("ip.flags.mf")) == "1"
        offset = _int(ip.get("ip.frag_offset"))
        ip_payload = max(_int(ip.get("ip.len")) - _int(ip.get("ip.hdr_len")), 0)
        row.frag = FRAG_LATER if offset > 0 else (FRAG_FIRST if more else FRAG_NONE)
        if row.frag != FRAG_NONE:
            row.frag_id = _int(ip.get("ip.id"))
        self._transport(row, layers, ip_payload)

    def _ipv6(self, row: _Row, layers: dict[str, Any]) -> None:
        ipv6 = _fields(layers.get("ipv6"))
        src = _address(ipv6.get("ipv6.src"), socket.AF_INET6)
        dst = _address(ipv6.get("ipv6.dst"), socket.AF_INET6)
        if src is None or dst is None:
            return
        row.l3 = L3_IPV6
        row.src_hi, row.src_lo = src
        row.dst_hi, row.dst_lo = dst
        # Walk the extension header chain to the transport (RFC 8200 section 4).
        next_header = _int(ipv6.get("ipv6.nxt"))
        extension_bytes = 0
        occurrences: dict[str, int] = {}
        fragment: dict[str, Any] | None = None
        for _ in range(_IPV6_MAX_EXTENSIONS):
            extension = _IPV6_EXTENSIONS.get(next_header)
            if extension is None:
                break
            key, next_field, length_field, add, unit = extension
            index = occurrences.get(key, 0)
            occurrences[key] = index + 1
            header = _nth(ipv6.get(key), index)
            if not isinstance(header, dict):
                break  # not dissected (cut off by the snap length): stop at its number
            if key == "ipv6.fraghdr" and fragment is None:
                fragment = header
            length = _int(header.get(length_field)) if length_field else 0
            extension_bytes += (length + add) * unit
            next_header = _int(header.get(next_field))
            if fragment is not None and _int(fragment.get("ipv6.fraghdr.offset")) > 0:
                break  # what follows a non-first fragment header is not a header
        row.proto = next_header
        ip_payload = max(_int(ipv6.get("ipv6.plen")) - extension_bytes, 0)
        if fragment is not None:
            row.frag_id = _int(fragment.get("ipv6.fraghdr.ident"))
            offset = _int(fragment.get("ipv6.fraghdr.offset"))
            more = _first(fragment.get("ipv6.fraghdr.more")) == "1"
            row.frag = FRAG_LATER if offset > 0 else (FRAG_FIRST if more else FRAG_NONE)
        self._transport(row, layers, ip_payload)

    def _transport(self, row: _Row, layers: dict[str, Any], ip_payload: int) -> None:
        """Ports, flags and payload of the outer header's own transport.

        Only a TCP/UDP layer the outer IP header announces is read: with a tunnel (GRE, IP in
        IP) the TCP/UDP tshark shows is the inner one, and an ICMP error's quoted header sits
        inside the ICMP layer.
        """
        if row.frag == FRAG_LATER:
            return  # no transport header here; flow assembly maps it by its fragment id
        if row.proto == IPPROTO_TCP and "tcp" in layers:
            tcp = _fields(layers["tcp"])
            row.sport = _int(tcp.get("tcp.srcport"))
            row.dport = _int(tcp.get("tcp.dstport"))
            row.tcp_flags = _int(tcp.get("tcp.flags")) & 0xFF
            seq = tcp.get("tcp.seq_raw")
            row.tcp_seq = _int(seq if seq is not None else tcp.get("tcp.seq")) & 0xFFFFFFFF
            # tshark leaves tcp.len out where it cannot know the segment's length (a first
            # fragment); the IP header's claim minus the TCP header is what it would say.
            tcp_len = tcp.get("tcp.len")
            if tcp_len is None:
                row.payload_len = max(ip_payload - _int(tcp.get("tcp.hdr_len")), 0)
            else:
                row.payload_len = _int(tcp_len)
            self._payload(row, tcp.get("tcp.payload"))
        elif row.proto == IPPROTO_UDP and "udp" in layers:
            udp = _fields(layers["udp"])
            row.sport = _int(udp.get("udp.srcport"))
            row.dport = _int(udp.get("udp.dstport"))
            # The IP header's claim, not udp.length: they differ on a first fragment (udp.length
            # covers the whole datagram) and on malformed datagrams; the native decoder does
            # the same.
            row.payload_len = max(ip_payload - 8, 0)
            self._payload(row, udp.get("udp.payload"))

    def _payload(self, row: _Row, hex_value: Any) -> None:
        data = _hex_bytes(hex_value, self.max_payload)
        row.payload_off = len(self.buffer)
        row.payload_cap = len(data)
        self.buffer += data

    def _append(self, row: _Row) -> None:
        columns = self.columns
        for name in columns:
            columns[name].append(getattr(row, name))

    def finish(self) -> PacketBatch:
        batch = PacketBatch.empty(self.file_index, 0, np.frombuffer(self.buffer, dtype=np.uint8))
        for name, values in self.columns.items():
            dtype = getattr(batch, name).dtype
            setattr(batch, name, np.array(values, dtype=dtype))
        return batch


class _Row:
    """One frame's values, zero where tshark has nothing (non-IP frames keep only frame,
    ts_ns, wire_len and l2_multicast)."""

    __slots__ = (
        "dport", "dst_hi", "dst_lo", "frag", "frag_id", "frame", "l2_multicast", "l3",
        "payload_cap", "payload_len", "payload_off", "proto", "sport", "src_hi", "src_lo",
        "tcp_flags", "tcp_seq", "ts_ns", "wire_len",
    )  # fmt: skip

    def __init__(self) -> None:
        self.frame = 0
        self.ts_ns = 0
        self.wire_len = 0
        self.l3 = L3_NONE
        self.proto = 0
        self.src_hi = 0
        self.src_lo = 0
        self.dst_hi = 0
        self.dst_lo = 0
        self.sport = 0
        self.dport = 0
        self.tcp_flags = 0
        self.tcp_seq = 0
        self.payload_off = 0
        self.payload_len = 0
        self.payload_cap = 0
        self.l2_multicast = False
        self.frag = FRAG_NONE
        self.frag_id = 0
