"""Fixed-width integers out of a ``uint8`` buffer, for the Python reference kernels.

The record walkers, the packet decoder and the flow update exist twice: in C
(``flowaudit/_kernels.c``, built at install) and as the Python functions that specify them
and run where the extension could not be built (``flowaudit.capture.kernels``). These
helpers serve the Python ones; ``big`` means "the file's byte order is big-endian".
"""

from __future__ import annotations

from typing import Any


def be16(buf: Any, pos: int) -> int:
    return (int(buf[pos]) << 8) | int(buf[pos + 1])


def le16(buf: Any, pos: int) -> int:
    return (int(buf[pos + 1]) << 8) | int(buf[pos])


def be32(buf: Any, pos: int) -> int:
    return int.from_bytes(bytes(buf[pos : pos + 4]), "big")


def le32(buf: Any, pos: int) -> int:
    return int.from_bytes(bytes(buf[pos : pos + 4]), "little")


def u16(buf: Any, pos: int, big_endian: bool) -> int:
    return be16(buf, pos) if big_endian else le16(buf, pos)


def u32(buf: Any, pos: int, big_endian: bool) -> int:
    return be32(buf, pos) if big_endian else le32(buf, pos)


def be64(buf: Any, pos: int) -> int:
    return int.from_bytes(bytes(buf[pos : pos + 8]), "big")
