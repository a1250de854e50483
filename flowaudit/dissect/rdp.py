"""RDP: the connection request and confirm that open a flow, and the security they negotiate.

A client opens with a TPKT (RFC 1006 6: version 3, reserved 0, big-endian length) carrying an
X.224 Connection Request TPDU (code 0xE0), optionally with a routing token or cookie
(``Cookie: mstshash=...``) and an RDP Negotiation Request ([MS-RDPBCGR] 2.2.1.1, 2.2.1.1.1);
the server answers with a Connection Confirm (0xD0) holding a Negotiation Response or Failure
(2.2.1.2, 2.2.1.2.1, 2.2.1.2.2). When TLS or CredSSP was selected, the TLS handshake follows the
TPKTs at once: its facts are read too (``tls``).
"""

from __future__ import annotations

from typing import Any

from flowaudit.dissect import tls

PROTOCOL = "rdp"
TRANSPORTS = ("tcp",)

TPKT_HEADER = 4
# X.224 fixed part after the length indicator: code, DST-REF, SRC-REF, class option ([X224]
# 13.3.1, 13.4.1); its length indicator counts itself out.
X224_FIXED = 7
CONNECTION_REQUEST = 0xE0
CONNECTION_CONFIRM = 0xD0

# [MS-RDPBCGR] 2.2.1.1.1 / 2.2.1.2.1 / 2.2.1.2.2: negotiation structure types, each 8 bytes.
TYPE_RDP_NEG_REQ = 0x01
TYPE_RDP_NEG_RSP = 0x02
TYPE_RDP_NEG_FAILURE = 0x03
NEGOTIATION_LENGTH = 8
# requestedProtocols / selectedProtocol flags; PROTOCOL_RDP (0) is standard RDP security.
PROTOCOL_NAMES = {
    0x01: "ssl",
    0x02: "hybrid",
    0x04: "rdstls",
    0x08: "hybrid_ex",
    0x10: "rdsaad",
}
COOKIE_PREFIX = b"Cookie: "  # 2.2.1.1: routingToken "Cookie: msts=..." or cookie "mstshash=..."
MAX_TEXT = 256

Facts = dict[str, Any]


def _tpdu(data: bytes, code: int) -> tuple[bytes, int] | None:
    """(variable part, TPKT length) of a TPKT holding an X.224 TPDU of ``code``, else None."""
    if len(data) < TPKT_HEADER + X224_FIXED or data[0] != 3 or data[1] != 0:
        return None
    length = int.from_bytes(data[2:4], "big")
    indicator = data[4]
    if (
        length < TPKT_HEADER + X224_FIXED
        or data[5] & 0xF0 != code  # low four bits: CDT, zero in class 0
        or not X224_FIXED - 1 <= indicator <= length - TPKT_HEADER - 1
    ):
        return None
    return data[TPKT_HEADER + X224_FIXED : TPKT_HEADER + 1 + indicator], length


def _protocol_names(flags: int) -> list[str]:
    if flags == 0:
        return ["rdp"]
    names = [name for bit, name in PROTOCOL_NAMES.items() if flags & bit]
    unknown = flags & ~sum(PROTOCOL_NAMES)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names


def _selected_name(value: int) -> str:
    if value == 0:
        return "rdp"
    return PROTOCOL_NAMES.get(value, f"0x{value:x}")


def _negotiation(variable: bytes, pos: int) -> tuple[int, int] | None:
    """(type, 32-bit value) of the negotiation structure at ``pos``, else None."""
    if pos + NEGOTIATION_LENGTH > len(variable):
        return None
    if int.from_bytes(variable[pos + 2 : pos + 4], "little") != NEGOTIATION_LENGTH:
        return None
    return variable[pos], int.from_bytes(variable[pos + 4 : pos + 8], "little")


def _request(variable: bytes, facts: Facts) -> None:
    pos = 0
    if variable.startswith(COOKIE_PREFIX):
        # 2.2.1.1: the token or cookie ends with CR LF; one cut short is not kept.
        line_end = variable.find(b"\r\n")
        if line_end < 0:
            return
        cookie = variable[len(COOKIE_PREFIX) : line_end]
        facts["cookie"] = cookie.decode("utf-8", errors="replace")[:MAX_TEXT]
        pos = line_end + 2
    negotiation = _negotiation(variable, pos)
    if negotiation is not None and negotiation[0] == TYPE_RDP_NEG_REQ:
        facts["requested_protocols"] = _protocol_names(negotiation[1])


def _confirm(variable: bytes, facts: Facts) -> None:
    negotiation = _negotiation(variable, 0)
    if negotiation is None:
        # No RDP_NEG_RSP: the server speaks standard RDP security (2.2.1.2).
        facts["selected_protocol"] = "rdp"
    elif negotiation[0] == TYPE_RDP_NEG_RSP:
        facts["selected_protocol"] = _selected_name(negotiation[1])
    elif negotiation[0] == TYPE_RDP_NEG_FAILURE:
        facts["negotiation_failure"] = negotiation[1]


def parse(c2s: bytes, s2c: bytes) -> Facts | None:
    """RDP facts when the client opens with a Connection Request or the server with a Confirm."""
    request = _tpdu(c2s, CONNECTION_REQUEST)
    confirm = _tpdu(s2c, CONNECTION_CONFIRM)
    if request is None and confirm is None:
        return None
    facts: Facts = {
        "cookie": None,
        "requested_protocols": [],
        "selected_protocol": None,
        "negotiation_failure": None,
        "tls": None,
    }
    client_rest = server_rest = b""
    if request is not None:
        _request(request[0], facts)
        client_rest = c2s[request[1] :]
    if confirm is not None:
        _confirm(confirm[0], facts)
        server_rest = s2c[confirm[1] :]
    # 5.4.2.1 negotiation-based approach: the External Security Protocol handshake starts
    # right after the Connection Confirm.
    facts["tls"] = tls.parse(client_rest, server_rest)
    return facts
