"""What the whole conversation adds to the facts the first bytes gave.

The first-bytes dissectors (``flowaudit.dissect``) decide a flow's protocol and the facts the
judging reads (``shares`` of SMB, ``announced`` endpoints of DCE/RPC, ...). Where the stream
reader saw more of the same kind past the first bytes (the shares connected after a large
Kerberos ticket, an endpoint-mapper answer longer than the window), it is added here, so that
roles, services and findings rest on the whole conversation.
"""

from __future__ import annotations

from typing import Any

MAX_SHARES = 32
MAX_ANNOUNCED = 64


def _union(first: Any, more: Any, bound: int) -> list[Any]:
    out = list(first or [])
    for item in more or []:
        if item not in out and len(out) < bound:
            out.append(item)
    return out


def deepen(protocol: str, found: dict[str, Any], conversation: dict[str, Any]) -> dict[str, Any]:
    """``found`` (first-bytes facts of ``protocol``) with what the conversation read added."""
    stream = conversation.get("conversation") or {}
    if stream.get("protocol") != protocol:
        return found
    if protocol == "smb":
        trees = stream.get("trees")
        if trees:
            return {**found, "shares": _union(found.get("shares"), trees, MAX_SHARES)}
    elif protocol == "dcerpc":
        more = stream.get("announced")
        if more:
            return {
                **found,
                "announced": _union(found.get("announced"), more, MAX_ANNOUNCED),
            }
    return found
