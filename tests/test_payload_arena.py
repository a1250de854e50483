"""The payload arena: slots survive growth, bytes come out in slot order, old kernels work."""

from __future__ import annotations

import mmap
import re
from pathlib import Path

import numpy as np
import pytest

from flowaudit import payload_arena
from flowaudit.payload_arena import FlowPayloads, PayloadArena


def _fill(arena: PayloadArena, slots: int) -> None:
    for slot in range(slots):
        arena.array[slot, :] = slot % 251


def test_slots_survive_growth_and_come_out_cut_to_their_length() -> None:
    arena = PayloadArena(8, reserved_slots=4)
    _fill(arena, 4)
    arena.grow(4)
    assert arena.array.shape == (8, 8)
    for slot in range(4, 8):
        arena.array[slot, :] = slot
    lengths = np.array([0, 1, 8, 3, 2, 8, 0, 5])
    out = arena.take_bytes(lengths)
    assert out == [bytes([k % 251]) * int(n) for k, n in enumerate(lengths)]
    assert arena.array.shape == (0, 8)  # emptied


def test_flow_payloads_map_slots_to_flows_and_minus_one_to_nothing() -> None:
    arena = PayloadArena(4, reserved_slots=3)
    arena.array[0, :] = 1
    arena.array[1, :] = 2
    arena.array[2, :] = 3
    payloads = FlowPayloads(arena, np.array([4, 2, 1]), np.array([1, -1, 0]), np.array([-1, 2, -1]))
    client, server = payloads.lengths()
    assert client.tolist() == [2, 0, 4]
    assert server.tolist() == [0, 1, 0]
    assert payloads.columns() == ([b"\x02\x02", b"", b"\x01" * 4], [b"", b"\x03", b""])
    assert payloads.columns()[0][2] == b"\x01" * 4  # asked twice: the same bytes


def test_a_kernel_without_populate_write_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payload_arena, "MADV_POPULATE_WRITE", 0x7FFF)  # refused: EINVAL
    arena = PayloadArena(16, reserved_slots=64)
    arena.prepare(0)
    arena._wait()
    assert not arena._can_populate
    arena.array[63, :] = 7
    assert arena.take_bytes(np.full(64, 16))[63] == b"\x07" * 16


@pytest.mark.skipif(not hasattr(mmap.mmap, "madvise"), reason="no madvise here")
def test_populating_ahead_covers_the_next_stretch() -> None:
    # Ahead by as much as has been used (at least 64 slots), never more than the bound.
    bound = payload_arena.POPULATE_AHEAD_BYTES // 64
    arena = PayloadArena(64, reserved_slots=4 * bound)
    arena._wait()
    assert arena._backed == 64
    arena.prepare(60)
    arena._wait()
    assert arena._backed == 64 + 120  # from what was backed, twice what is used
    arena.prepare(bound)
    arena._wait()
    assert arena._backed == 2 * bound


def _resident_kib(array: np.ndarray) -> int:
    """Resident memory of the mapping that holds ``array`` (Linux /proc/self/smaps)."""
    start = array.__array_interface__["data"][0]
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for k, line in enumerate(lines):
        span = line.split(maxsplit=1)[0]
        if not re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", span):
            continue
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= start < high:
            for following in lines[k + 1 :]:
                if following.startswith("Rss:"):
                    return int(following.split()[1])
    raise AssertionError("mapping not found")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux only")
def test_memory_follows_the_payload_seen_not_the_slot_size() -> None:
    # 2,000 directions of 32 bytes in 256 KiB slots (--payload-bytes 262144): every slot was
    # backed whole by populate-ahead and again by each growth's copy (8.5 GB for 20,000 UDP
    # flows). Now a slot costs the page it was written to.
    arena = PayloadArena(262144, reserved_slots=16)
    lengths = np.zeros(0, dtype=np.int64)
    for used in range(2000):
        if used == len(arena.array):
            arena.grow(used, lengths)
        arena.prepare(used)
        arena.array[used, :32] = 1
        lengths = np.append(lengths, 32)
    arena._wait()
    assert _resident_kib(arena.array) <= 2000 * 4 + 1024
    assert arena.take_bytes(lengths)[1999] == b"\x01" * 32


def test_zero_width_slots_need_no_memory() -> None:
    arena = PayloadArena(0)
    assert arena.array.shape[1] == 0
    assert arena.take_bytes(np.zeros(3, dtype=np.int64)) == [b"", b"", b""]
