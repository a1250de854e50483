"""Real TFTP bytes for tests: requests with options, OACK, DATA, ACK and ERROR.

Built from the specifications: RFC 1350 5 (opcodes and packet layouts; strings are netascii
ending in a zero octet), RFC 2347 (option extension: ``name NUL value NUL`` after the mode, the
server's OACK, error code 8), RFC 2348 (``blksize``), RFC 2349 (``timeout``, ``tsize``) and
RFC 7440 (``windowsize``, which Windows Deployment Services negotiates).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
DEFAULT_BLOCK_SIZE = 512  # RFC 1350 1: a block of fewer than 512 octets ends the transfer

# RFC 1350 appendix "Error Codes" (0..7) and RFC 2347 (8).
ERROR_NOT_DEFINED = 0
ERROR_FILE_NOT_FOUND = 1
ERROR_ACCESS_VIOLATION = 2
ERROR_DISK_FULL = 3
ERROR_ILLEGAL_OPERATION = 4
ERROR_UNKNOWN_TID = 5
ERROR_FILE_EXISTS = 6
ERROR_NO_SUCH_USER = 7
ERROR_OPTION_REFUSED = 8

Options = Sequence[tuple[str, str]]

# What a Windows PXE client asks of a ConfigMgr PXE-enabled distribution point.
BOOT_FILE = "smsboot\\x64\\wdsmgfw.efi"
PXE_OPTIONS = (("blksize", "1456"), ("tsize", "0"), ("windowsize", "4"))


def _strings(*texts: str) -> bytes:
    return b"".join(text.encode("ascii") + b"\x00" for text in texts)


def _option_pairs(options: Options) -> bytes:
    return b"".join(_strings(name, value) for name, value in options)


def rrq(filename: str, mode: str = "octet", options: Options = ()) -> bytes:
    """Read request (RFC 1350 5 figure 5-1; RFC 2347 options after the mode)."""
    return struct.pack(">H", RRQ) + _strings(filename, mode) + _option_pairs(options)


def wrq(filename: str, mode: str = "octet", options: Options = ()) -> bytes:
    """Write request: the same layout with opcode 2."""
    return struct.pack(">H", WRQ) + _strings(filename, mode) + _option_pairs(options)


def data(block: int, payload: bytes) -> bytes:
    """DATA (RFC 1350 5 figure 5-2): block number then up to the block size of data."""
    return struct.pack(">HH", DATA, block) + payload


def ack(block: int) -> bytes:
    """ACK (figure 5-3): the block acknowledged; block 0 answers a WRQ or an OACK."""
    return struct.pack(">HH", ACK, block)


def error(code: int, message: str) -> bytes:
    """ERROR (figure 5-4): error code, a netascii message, a zero octet."""
    return struct.pack(">HH", ERROR, code) + _strings(message)


def oack(options: Options) -> bytes:
    """Option acknowledgment (RFC 2347): the options the server accepted, with their values."""
    return struct.pack(">H", OACK) + _option_pairs(options)


def file_blocks(content: bytes, block_size: int = DEFAULT_BLOCK_SIZE) -> list[bytes]:
    """The DATA packets that carry ``content`` (a final short, possibly empty, block ends it)."""
    packets = []
    for number, at in enumerate(range(0, len(content) + 1, block_size), start=1):
        packets.append(data(number % 65536, content[at : at + block_size]))
    return packets
