"""What the dissector tests share: exchanges split by direction, and the facts contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

# (direction, payload): "c" is client to server, "s" server to client.
Exchange = Sequence[tuple[str, bytes]]


def directions(exchange: Exchange) -> tuple[bytes, bytes]:
    """The client's and the server's bytes of an exchange, each direction joined."""
    c2s = b"".join(data for side, data in exchange if side == "c")
    s2c = b"".join(data for side, data in exchange if side == "s")
    return c2s, s2c


def check_json_ready(facts: dict[str, Any] | None) -> None:
    """Facts are JSON-ready and their strings are cut to 256 characters (the contract)."""
    if facts is None:
        return
    json.dumps(facts)
    for value in facts.values():
        if isinstance(value, str):
            assert len(value) <= 256
