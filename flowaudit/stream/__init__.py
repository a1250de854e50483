"""Whole conversations: incremental dissectors fed every byte of the flows they claim.

The first-bytes dissectors (``flowaudit.dissect``) name a flow's protocol from the first
``--payload-bytes`` of each direction. The modules here read on: while the capture is read,
the engine (``engine.py``) offers each new flow's first payload to ``claim``; a module that
recognises it gets every later byte of the flow, in TCP sequence order per side (reassembled:
retransmissions dropped, overlaps trimmed, gaps reported) or every UDP datagram, and records
operations and identities (``base.Record``). Flows nobody claims cost nothing more.

A module here exposes

* ``PROTOCOL`` and ``TRANSPORTS`` (as the first-bytes dissectors do);
* ``claims(ports: tuple[int, int], first: bytes) -> bool``: whether the first payload of a
  flow (``first``: the payload of the first packet that carried any, from either side;
  ``ports``: that packet's source and destination port) opens a conversation it reads;
* ``Conversation``: a ``base.Dissector`` subclass built with a ``base.Record``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Tried in this order; the first module whose ``claims`` says yes reads the flow.
MODULES = ("smb", "dcerpc", "http", "ldap", "kerberos", "tds", "dhcp", "tftp")

_LOADED: dict[str, list[ModuleType]] | None = None


def modules(transport: str) -> list[ModuleType]:
    """The stream modules tried on ``transport`` ("tcp" or "udp"), in order."""
    global _LOADED
    if _LOADED is None:
        table: dict[str, list[ModuleType]] = {"tcp": [], "udp": []}
        for name in MODULES:
            module = importlib.import_module(f"flowaudit.stream.{name}")
            for each in module.TRANSPORTS:
                table[each].append(module)
        _LOADED = table
    return _LOADED.get(transport, [])


def claim(transport: str, ports: tuple[int, int], first: bytes) -> ModuleType | None:
    """The module that reads a flow opening with ``first``, or None."""
    for module in modules(transport):
        if module.claims(ports, first):
            return module
    return None
