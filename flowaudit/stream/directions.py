"""A conversation's record as flow facts: sides become directions, nanoseconds become times.

Kept apart from the engine so that the flow table can turn records into facts without loading
the dissectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(ts_ns: int) -> str:
    """ISO 8601 UTC with microseconds, as the reports write times."""
    try:
        moment = _EPOCH + timedelta(microseconds=ts_ns // 1000)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def facts_with_directions(
    facts: dict[str, Any], client_is_a: bool, files: Sequence[str] = ()
) -> dict[str, Any]:
    """``facts`` with each operation's ``side`` turned into ``direction`` (``c2s``: the client
    sent the message the entry was made from) and its ``ts_ns`` into ``time``, with ``file``
    (from ``files``) where the message was in another file than the first of the set; the
    conversation's per-side byte counts become ``c2s`` and ``s2c``."""
    if "operations" not in facts:
        return facts
    operations = []
    for entry in facts.get("operations") or []:
        entry = dict(entry)
        side = entry.pop("side", None)
        ts_ns = entry.pop("ts_ns", None)
        out: dict[str, Any] = {"time": _time(ts_ns) if isinstance(ts_ns, int) else ""}
        out["frame"] = entry.pop("frame", None)
        index = entry.pop("file_index", None)
        if isinstance(index, int) and 0 <= index < len(files):
            out["file"] = files[index]  # a later file of a capture set: frames count anew
        if side is not None:
            out["direction"] = "c2s" if (side == 0) == client_is_a else "s2c"
        out.update(entry)
        operations.append(out)
    out_facts = {**facts, "operations": operations}
    stream = facts.get("conversation")
    if isinstance(stream, dict) and isinstance(stream.get("sides"), list):
        a, b = stream["sides"]
        client, server = (a, b) if client_is_a else (b, a)
        stream = {k: v for k, v in stream.items() if k != "sides"}
        stream["c2s"], stream["s2c"] = client, server
        out_facts["conversation"] = stream
    return out_facts
