"""What the stream tests share: where real captures are, tshark as the oracle, and the
fuzz checks every incremental dissector is held to."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from flowaudit.stream import base
from tests.conftest import REPO, corpus_dir

LAB_CAPTURES = REPO / "lab" / "captures"


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not here")


def corpus_file(name: str) -> Path:
    """A capture of the corpus; skips where the corpus is absent (fails under CI)."""
    path = corpus_dir() / name
    if not path.is_file():
        _missing(f"corpus capture {path}")
    return path


def lab_capture(name: str) -> Path:
    """A committed recording of the lab (``lab/captures``)."""
    path = LAB_CAPTURES / name
    assert path.is_file(), f"{path} is committed with the lab"
    return path


def need_tshark() -> None:
    if shutil.which("tshark") is None:
        _missing("tshark")


def tshark_fields(
    path: Path, display_filter: str, fields: Sequence[str], options: Sequence[str] = ()
) -> list[list[str]]:
    """Rows of ``tshark -T fields`` (one list of field values per frame that passes);
    ``options`` are preferences (``tcp.reassemble_out_of_order:TRUE``)."""
    need_tshark()
    args = ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for option in options:
        args += ["-o", option]
    for name in fields:
        args += ["-e", name]
    args += ["-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in text.splitlines()]


# ---- fuzz checks

Message = tuple[int, bytes]  # (side, bytes) in the order they were sent
AT = base.At(1, 1_700_000_000_000_000_000)


def observed(dissector: base.Dissector) -> tuple[Any, ...]:
    """What a dissector made of a conversation, without where each part was seen."""
    record = dissector.record
    operations = [
        {k: v for k, v in entry.items() if k not in ("frame", "ts_ns")}
        for entry in record.operations
    ]
    return operations, record.identities, dissector.facts()


def feed(
    make: Callable[[], base.Dissector], messages: Sequence[Message], cut: int | None = None
) -> base.Dissector:
    """A new dissector fed ``messages`` as TCP bytes; with ``cut``, each side's bytes are
    delivered in two pieces split at that offset (or whole if shorter)."""
    dissector = make()
    for side, data in messages:
        if cut is None or cut >= len(data):
            dissector.data(side, data, AT)
        else:
            dissector.data(side, data[:cut], AT)
            dissector.data(side, data[cut:], AT)
    dissector.end()
    return dissector


def assert_split_anywhere_same(
    make: Callable[[], base.Dissector], messages: Sequence[Message]
) -> None:
    """Each message split at every byte boundary gives what the whole message gives."""
    whole = observed(feed(make, messages))
    longest = max(len(data) for _, data in messages)
    for cut in range(1, longest):
        assert observed(feed(make, messages, cut)) == whole, f"split at byte {cut}"


def assert_never_raises(
    make: Callable[[], base.Dissector],
    messages: Sequence[Message],
    *,
    seed: int = 1,
    rounds: int = 200,
) -> None:
    """Random bytes, each message truncated at every offset, and bit flips never raise."""
    rng = random.Random(seed)
    for _ in range(rounds):
        dissector = make()
        for side in (0, 1, 0, 1):
            dissector.data(side, rng.randbytes(rng.randrange(1, 300)), AT)
        dissector.datagram(0, rng.randbytes(rng.randrange(0, 300)), AT)
        dissector.end()
        dissector.facts()
    for index, (side, data) in enumerate(messages):
        for stop in range(len(data)):
            dissector = make()
            for other_side, other in messages[:index]:
                dissector.data(other_side, other, AT)
            dissector.data(side, data[:stop], AT)
            dissector.gap(side, 10, AT)
            dissector.data(side, data[stop:], AT)
            dissector.end()
            dissector.facts()
    for _ in range(rounds):
        dissector = make()
        for side, data in messages:
            flipped = bytearray(data)
            if flipped:
                spot = rng.randrange(len(flipped))
                flipped[spot] ^= 1 << rng.randrange(8)
            dissector.data(side, bytes(flipped), AT)
        dissector.end()
        dissector.facts()
