"""What the whole conversation adds to the facts the first bytes gave.

The first-bytes dissectors (``flowaudit.dissect``) decide a flow's protocol and the facts the
judging reads (``shares`` of SMB, ``announced`` endpoints of DCE/RPC, ...). Where the stream
reader saw more of the same kind past the first bytes (the shares connected after a large
Kerberos ticket, an endpoint-mapper answer longer than the window, the DHCP messages after
the first of each direction, a simple bind with a password after other requests), it is added
here, so that
roles, services and findings rest on the whole conversation.
"""

from __future__ import annotations

from typing import Any

MAX_SHARES = 32
MAX_ANNOUNCED = 64
MAX_TYPES = 16


def _union(first: Any, more: Any, bound: int) -> list[Any]:
    out = list(first or [])
    for item in more or []:
        if item not in out and len(out) < bound:
            out.append(item)
    return out


def deepen(protocol: str, found: dict[str, Any], conversation: dict[str, Any]) -> dict[str, Any]:
    """``found`` (first-bytes facts of ``protocol``) with what the conversation read added."""
    outline = conversation.get("conversation") or {}
    if outline.get("protocol") != protocol:
        return found
    stream = outline.get(protocol) or {}
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
    elif protocol == "ldap":
        cleartext = any(
            entry.get("protocol") == "ldap-simple" and entry.get("password_sent")
            for entry in conversation.get("identities") or []
        )
        if cleartext and not found.get("simple_bind_with_password"):
            return {**found, "simple_bind_with_password": True}
    elif protocol == "dhcp":
        types = stream.get("message_types")
        if types:
            # the first-bytes list names each type once; the conversation's repeats them
            return {
                **found,
                "message_types": _union(found.get("message_types"), types, MAX_TYPES),
            }
    return found
