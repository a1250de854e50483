"""The first-byte dispatch of ``flowaudit.dissect`` only skips parsers that would say no."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flowaudit.config import FlowConfig
from flowaudit.dissect import FIRST_BYTES, dissect, dissectors
from flowaudit.flows import build_flow_table
from tests.conftest import corpus_files

PARSERS = {name: parse for transport in ("tcp", "udp") for name, parse in dissectors(transport)}


@pytest.mark.parametrize("protocol", sorted(p for p, first in FIRST_BYTES.items() if first))
def test_a_parser_never_takes_bytes_opening_outside_its_set(protocol: str) -> None:
    first = FIRST_BYTES[protocol]
    assert first is not None
    outside = [b for b in range(256) if b not in first]
    parse = PARSERS[protocol]
    rng = random.Random(protocol)
    for _ in range(3000):
        sides = []
        for _side in range(2):
            if rng.random() < 0.25:
                sides.append(b"")
                continue
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            sides.append(bytes([rng.choice(outside)]) + body)
        assert parse(sides[0], sides[1]) is None, (protocol, sides)


def _brute_force(transport: str, c2s: bytes, s2c: bytes) -> tuple[str | None, dict]:
    if not c2s and not s2c:
        return None, {}
    for protocol, parse in dissectors(transport):
        facts = parse(c2s, s2c)
        if facts is not None:
            return protocol, facts
    return None, {}


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_dispatch_agrees_with_trying_every_parser(corpus: Path, path: Path) -> None:
    del corpus
    table = build_flow_table([path], FlowConfig(idle_timeout=0))
    c2s, s2c = table.payloads.columns()
    for transport, client, server in zip(table.columns["proto"].tolist(), c2s, s2c, strict=True):
        if transport in ("tcp", "udp"):
            assert dissect(transport, client, server) == _brute_force(transport, client, server)
