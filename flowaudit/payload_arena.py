"""Where the first payload bytes of every flow direction live while flows are assembled.

Each flow direction that carries payload gets one slot of ``slot_bytes`` (``--payload-bytes``).
The slots sit in anonymous memory reserved up front: pages are only backed when a slot is
written, so memory follows the number of flow directions with payload, and growing rarely
needs a copy. When the table is finished, the slots are turned into ``bytes`` in slot order
and the pages already turned are handed back to the system as it goes, so the arena and its
``bytes`` copies are not both held in full at once.

Backing a page costs a fault on first write, a large share of the flow kernel's time when most
flows carry payload; so a thread asks the system to back the next stretch of slots
(``MADV_POPULATE_WRITE``, Linux 5.14+) while the kernel fills the current one, on the other
core. The call goes through ctypes, which lets go of the GIL (``mmap.madvise`` holds it for the
whole call, measured here: it stalls the reader's and assembler's Python glue). Where the
system does not offer it, pages are backed on first write as usual.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

# Address space reserved (not yet backed by memory) before the first growth: 131,072 slots
# at the default 2048 bytes a slot, fewer for larger slots.
RESERVED_BYTES = 256 * 1024 * 1024
# Slots turned into bytes between two hand-backs of memory.
RELEASE_EVERY = 4096
# Memory backed ahead of use (16,384 slots at the default 2048 bytes), only where slots are no
# larger than a page: a larger slot is mostly never written (a 32-byte datagram in a 256 KiB
# slot), and backing it whole made memory follow --payload-bytes instead of the payload seen.
# And the value of MADV_POPULATE_WRITE (<linux/mman.h>), which Python before 3.13 does not name.
POPULATE_AHEAD_BYTES = 32 * 1024 * 1024
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)


@functools.cache
def _libc_madvise() -> Any:
    """libc's madvise through ctypes, looked up when first needed (ctypes costs an import)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


def _unmap(area: mmap.mmap | None) -> None:
    """Unmap now, unless a view is still held elsewhere: then when the last view goes."""
    if area is not None:
        with contextlib.suppress(BufferError):
            area.close()


class PayloadArena:
    """A growable ``(slots, slot_bytes)`` uint8 array over anonymous, lazily backed memory."""

    def __init__(self, slot_bytes: int, reserved_slots: int | None = None) -> None:
        self.slot_bytes = slot_bytes
        if reserved_slots is None:
            reserved_slots = max(16, RESERVED_BYTES // max(1, slot_bytes))
        self._map: mmap.mmap | None = None
        self._backed = 0  # slots asked to be backed so far
        self._populating: threading.Thread | None = None
        self._can_populate = slot_bytes <= mmap.PAGESIZE and _libc_madvise() is not None
        self._ahead = max(16, POPULATE_AHEAD_BYTES // max(1, slot_bytes))
        self.array = self._allocate(reserved_slots)
        self.prepare(0)

    def prepare(self, used: int) -> None:
        """With ``used`` slots taken, have the next stretch backed in the background."""
        if (
            not self._can_populate
            or self._map is None
            or used + min(self._ahead, max(64, 2 * used)) * 3 // 4 < self._backed
            or self._backed >= len(self.array)
            or (self._populating is not None and self._populating.is_alive())
        ):
            return
        start = self._backed
        # As far ahead as has been used so far, up to the bound: a capture of 50 flows does
        # not ask for 32 MiB.
        ahead = min(self._ahead, max(64, 2 * used))
        stop = min(len(self.array), max(used, start) + ahead)
        self._backed = stop
        # Whole pages: madvise wants a page-aligned start (the mapping itself is aligned).
        first = start * self.slot_bytes // mmap.PAGESIZE * mmap.PAGESIZE
        # (the array interface gives the address without an object that holds a view)
        address = self.array.__array_interface__["data"][0] + first
        length = stop * self.slot_bytes - first
        self._populating = threading.Thread(
            target=self._populate, args=(address, length), daemon=True
        )
        self._populating.start()

    def _populate(self, address: int, length: int) -> None:
        madvise = _libc_madvise()
        if madvise(address, length, MADV_POPULATE_WRITE) != 0:
            self._can_populate = False  # an older kernel: pages are backed on first write

    def _wait(self) -> None:
        if self._populating is not None:
            self._populating.join()
            self._populating = None

    def _allocate(self, slots: int) -> np.ndarray:
        if self.slot_bytes == 0:
            return np.zeros((slots, 0), dtype=np.uint8)
        self._map = mmap.mmap(-1, slots * self.slot_bytes)
        return np.frombuffer(self._map, dtype=np.uint8).reshape(slots, self.slot_bytes)

    def grow(self, used: int, lengths: np.ndarray | None = None) -> None:
        """Double the capacity, keeping the first ``used`` slots.

        With ``lengths`` (bytes written per slot), slots larger than a page are copied only
        as far as they were written, so that the new mapping backs no page that was not.
        """
        self._wait()
        old_array, old_map = self.array, self._map
        self.array = self._allocate(max(1, len(old_array)) * 2)
        self._backed = used
        if lengths is None or self.slot_bytes <= mmap.PAGESIZE:
            self.array[:used] = old_array[:used]
        else:
            for slot in np.flatnonzero(lengths[:used]).tolist():
                length = int(lengths[slot])
                self.array[slot, :length] = old_array[slot, :length]
        del old_array
        _unmap(old_map)

    def take_bytes(self, lengths: np.ndarray) -> list[bytes]:
        """The used slots as ``bytes`` (slot ``k`` cut to ``lengths[k]``); empties the arena."""
        self._wait()
        array, out = self.array, list[bytes]()
        step = RELEASE_EVERY * self.slot_bytes
        for start in range(0, len(lengths), RELEASE_EVERY):
            stop = min(start + RELEASE_EVERY, len(lengths))
            out.extend(
                array[k, :length].tobytes()
                for k, length in zip(range(start, stop), lengths[start:stop].tolist(), strict=True)
            )
            if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
                self._map.madvise(mmap.MADV_DONTNEED, start * self.slot_bytes, step)
        del array  # the last view of the mapping, so that it can be closed
        self.close()
        return out

    def close(self) -> None:
        self._wait()
        self.array = np.zeros((0, self.slot_bytes), dtype=np.uint8)
        _unmap(self._map)
        self._map = None


class FlowPayloads:
    """The first payload bytes of both directions of every flow, as ``bytes`` when asked for.

    Until ``columns()`` is called they stay in the arena, so a view that needs only their
    lengths (CSV, JSON, the terminal) never copies them.
    """

    def __init__(
        self,
        arena: PayloadArena,
        slot_lengths: np.ndarray,
        client_slots: np.ndarray,
        server_slots: np.ndarray,
    ) -> None:
        self._arena: PayloadArena | None = arena
        self._slot_lengths = slot_lengths
        self._slots = (client_slots, server_slots)
        self._columns: tuple[list[bytes], list[bytes]] | None = None

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Bytes kept per flow, client-to-server and server-to-client."""
        padded = np.append(self._slot_lengths, 0)  # slot -1 (none) reads the appended 0
        return padded[self._slots[0]], padded[self._slots[1]]

    def first_bytes(self) -> tuple[np.ndarray, np.ndarray]:
        """The first kept byte of each direction per flow; 256 where nothing was kept."""
        if self._columns is not None:
            return tuple(  # type: ignore[return-value]
                np.array([b[0] if b else 256 for b in column], dtype=np.int16)
                for column in self._columns
            )
        assert self._arena is not None
        array = self._arena.array
        firsts = np.append(
            np.where(self._slot_lengths > 0, array[: len(self._slot_lengths), 0], 256), 256
        ).astype(np.int16)  # slot -1 (none) reads the appended 256
        return firsts[self._slots[0]], firsts[self._slots[1]]

    def select(self, rows: Sequence[int]) -> tuple[list[bytes], list[bytes]]:
        """The bytes of some flows only (``rows``), client-to-server and server-to-client.

        Unlike ``columns()`` the arena is kept, so that a reader that needs only a few flows'
        bytes copies only those.
        """
        if self._columns is not None:
            return [self._columns[0][r] for r in rows], [self._columns[1][r] for r in rows]
        assert self._arena is not None
        array, lengths = self._arena.array, self._slot_lengths.tolist()
        out: tuple[list[bytes], list[bytes]] = ([], [])
        for side, slots in zip(out, self._slots, strict=True):
            for slot in slots[list(rows)].tolist():
                side.append(array[slot, : lengths[slot]].tobytes() if slot >= 0 else b"")
        return out

    def columns(self) -> tuple[list[bytes], list[bytes]]:
        """The bytes per flow, client-to-server and server-to-client (the arena is emptied)."""
        if self._columns is None:
            assert self._arena is not None
            by_slot = self._arena.take_bytes(self._slot_lengths)
            self._arena = None
            by_slot.append(b"")  # slot -1: no payload
            self._columns = (
                [by_slot[k] for k in self._slots[0].tolist()],
                [by_slot[k] for k in self._slots[1].tolist()],
            )
        return self._columns
