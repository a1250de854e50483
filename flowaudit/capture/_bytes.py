"""Compiled helpers that read fixed-width integers out of a ``uint8`` buffer.

Used by the record walkers and the packet decoder, all compiled with numba (the serial
per-record walk cannot be vectorised, PERF_NOTES.md). Each returns a Python int type that numba
keeps unboxed; ``swap`` means "the file's byte order is big-endian".
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

NJIT: dict[str, Any] = {"nogil": True, "cache": True}


@nb.njit(inline="always", **NJIT)
def be16(buf: Any, pos: int) -> np.int64:
    return (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])


@nb.njit(inline="always", **NJIT)
def le16(buf: Any, pos: int) -> np.int64:
    return (np.int64(buf[pos + 1]) << 8) | np.int64(buf[pos])


@nb.njit(inline="always", **NJIT)
def be32(buf: Any, pos: int) -> np.int64:
    return (
        (np.int64(buf[pos]) << 24)
        | (np.int64(buf[pos + 1]) << 16)
        | (np.int64(buf[pos + 2]) << 8)
        | np.int64(buf[pos + 3])
    )


@nb.njit(inline="always", **NJIT)
def le32(buf: Any, pos: int) -> np.int64:
    return (
        (np.int64(buf[pos + 3]) << 24)
        | (np.int64(buf[pos + 2]) << 16)
        | (np.int64(buf[pos + 1]) << 8)
        | np.int64(buf[pos])
    )


@nb.njit(inline="always", **NJIT)
def u16(buf: Any, pos: int, big_endian: bool) -> np.int64:
    return be16(buf, pos) if big_endian else le16(buf, pos)


@nb.njit(inline="always", **NJIT)
def u32(buf: Any, pos: int, big_endian: bool) -> np.int64:
    return be32(buf, pos) if big_endian else le32(buf, pos)


@nb.njit(inline="always", **NJIT)
def be64(buf: Any, pos: int) -> np.uint64:
    value = np.uint64(0)
    for k in range(8):
        value = (value << np.uint64(8)) | np.uint64(buf[pos + k])
    return value
