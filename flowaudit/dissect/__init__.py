"""Payload dissectors: the first payload bytes of each flow direction in, protocol facts out.

Each module here reads one protocol from the bytes the flow table keeps (the first
``FlowConfig.payload_bytes`` of each direction, in TCP sequence order; for UDP the first
datagram of that direction that carries data). A module exposes

* ``PROTOCOL``: the name of the protocol it recognises (``"tls"``, ``"http"``, ...);
* ``TRANSPORTS``: the transports it is tried on (``("tcp",)``, ``("udp",)`` or both);
* ``parse(c2s: bytes, s2c: bytes) -> dict | None``: ``None`` when the bytes are not that
  protocol, else the facts it read (JSON-ready: str, int, bool, None, lists and dicts of them).

``parse`` never raises on any input (hostile, truncated or random bytes): the payload is cut at
an arbitrary byte, so every reader stops quietly where the bytes end. The order of
``DISSECTORS`` is the order of trial; the first module that recognises the bytes names the
flow's protocol (payload beats port: ``signatures.py`` turns protocol and port into a service).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

Facts = dict[str, Any]
Parser = Callable[[bytes, bytes], "Facts | None"]


def _modules() -> list[ModuleType]:
    from flowaudit.dissect import (
        dcerpc,
        dhcp,
        http,
        kerberos,
        ldap,
        rdp,
        smb,
        tds,
        tftp,
        tls,
        wol,
    )

    # Most specific first: TDS and RDP carry TLS inside their own framing, SMB and DCE/RPC have
    # four-byte magic, HTTP is text; Kerberos and LDAP are BER and come after the others.
    return [smb, dcerpc, tds, rdp, tls, http, ldap, kerberos, dhcp, tftp, wol]


# The first byte each protocol's stream can open with, in either direction (None: anywhere).
# It spares trying every parser on every flow: a flow is offered only to the parsers whose
# set holds the first byte of its client or its server bytes. ``tests/dissect/test_dispatch.py``
# holds each parser to its set (bytes opening otherwise are never recognised).
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FIRST_BYTES: dict[str, frozenset[int] | None] = {
    # RFC 1002 4.3: session message 0x00, session request/responses 0x81-0x84, keep-alive 0x85
    "smb": frozenset({0x00, 0x81, 0x82, 0x83, 0x84, 0x85}),
    "dcerpc": frozenset({0x05}),  # C706 12.6.3.1: rpc_vers 5
    # [MS-TDS] 2.2.3.1.1 packet types; 0x16 a TLS handshake (TDS 8 strict)
    "tds": frozenset({0x01, 0x02, 0x03, 0x04, 0x06, 0x07, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x16}),
    "rdp": frozenset({0x03}),  # RFC 1006 TPKT version 3
    "tls": frozenset({0x14, 0x15, 0x16, 0x17}),  # RFC 8446 5.1: record content types 20-23
    "http": frozenset(_TOKEN) | {0x0D},  # RFC 9110 token (method) or "HTTP/"; a stray CRLF
    "ldap": frozenset({0x30}),  # RFC 4511 LDAPMessage SEQUENCE
    # RFC 4120: an APPLICATION tag (UDP) or a 4-byte length below 2**31 (TCP, 7.2.2)
    "kerberos": frozenset(range(0x00, 0x80)),
    # RFC 2131 2: BOOTP op 1 or 2; RFC 8415 7.3: DHCPv6 message types 1-13 (relay 12, 13)
    "dhcp": frozenset(range(1, 14)),
    "tftp": frozenset({0x00}),  # RFC 1350 5: a 2-byte opcode from 1 to 6
}

_BY_TRANSPORT: dict[str, list[tuple[str, Parser]]] | None = None
_MASKS: dict[str, list[int]] = {}
_CANDIDATES: dict[tuple[str, int], list[tuple[str, Parser]]] = {}


def dissectors(transport: str) -> list[tuple[str, Parser]]:
    """(protocol, parse) of every dissector tried on ``transport`` ("tcp" or "udp"), in order."""
    global _BY_TRANSPORT
    if _BY_TRANSPORT is None:
        table: dict[str, list[tuple[str, Parser]]] = {"tcp": [], "udp": []}
        for module in _modules():
            for name in module.TRANSPORTS:
                table[name].append((module.PROTOCOL, module.parse))
        for name, parsers in table.items():
            masks = [0] * 257  # index 256: an empty direction
            for bit, (protocol, _) in enumerate(parsers):
                first = FIRST_BYTES.get(protocol)
                for byte in range(256):
                    if first is None or byte in first:
                        masks[byte] |= 1 << bit
            _MASKS[name] = masks
        _BY_TRANSPORT = table
    return _BY_TRANSPORT.get(transport, [])


def openings(transport: str) -> list[bool]:
    """For each first byte (0-255, and 256 for an empty direction): may any parser want it?"""
    dissectors(transport)
    return [mask != 0 for mask in _MASKS.get(transport, [0] * 257)]


def _candidates(transport: str, c2s: bytes, s2c: bytes) -> list[tuple[str, Parser]]:
    parsers = dissectors(transport)
    masks = _MASKS.get(transport)
    if masks is None:
        return parsers
    mask = masks[c2s[0] if c2s else 256] | masks[s2c[0] if s2c else 256]
    found = _CANDIDATES.get((transport, mask))
    if found is None:
        found = [parser for bit, parser in enumerate(parsers) if mask >> bit & 1]
        _CANDIDATES[(transport, mask)] = found
    return found


def dissect(transport: str, c2s: bytes, s2c: bytes) -> tuple[str | None, Facts]:
    """The protocol the payload of one flow speaks and its facts; ``(None, {})`` if none."""
    if not c2s and not s2c:
        return None, {}
    for protocol, parse in _candidates(transport, c2s, s2c):
        facts = parse(c2s, s2c)
        if facts is not None:
            return protocol, facts
    return None, {}
