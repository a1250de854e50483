"""Real RDP connection-start bytes for tests: TPKT + X.224 CR/CC with RDP negotiation.

TPKT (RFC 1006 6): version 3, reserved 0, 16-bit length of the whole packet. X.224 Class 0
Connection Request (code 0xE0) / Confirm (0xD0) with a length indicator, DST-REF, SRC-REF and
class option ([X224] 13.3/13.4, [MS-RDPBCGR] 2.2.1.1, 2.2.1.2). Negotiation structures:
RDP_NEG_REQ (2.2.1.1.1), RDP_NEG_RSP (2.2.1.2.1), RDP_NEG_FAILURE (2.2.1.2.2).
"""

from __future__ import annotations

import struct

PROTOCOL_RDP = 0x00
PROTOCOL_SSL = 0x01
PROTOCOL_HYBRID = 0x02
PROTOCOL_RDSTLS = 0x04
PROTOCOL_HYBRID_EX = 0x08

SSL_REQUIRED_BY_SERVER = 0x01
HYBRID_REQUIRED_BY_SERVER = 0x05


def tpkt(payload: bytes) -> bytes:
    return struct.pack(">BBH", 3, 0, 4 + len(payload)) + payload


def x224(code: int, variable: bytes, *, dst_ref: int = 0, src_ref: int = 0) -> bytes:
    """Fixed part (LI, code, DST-REF, SRC-REF, class 0) then the variable part."""
    fixed = struct.pack(">BHHB", code, dst_ref, src_ref, 0)
    return bytes([len(fixed) + len(variable)]) + fixed + variable


def rdp_connection_request(
    cookie: str | None = "mstshash=ADMIN",
    requested_protocols: int | None = PROTOCOL_SSL | PROTOCOL_HYBRID,
    *,
    flags: int = 0,
) -> bytes:
    """Client X.224 Connection Request; ``cookie`` is sent as ``Cookie: <cookie>\\r\\n``."""
    variable = b""
    if cookie is not None:
        variable += b"Cookie: " + cookie.encode("ascii") + b"\r\n"
    if requested_protocols is not None:
        variable += struct.pack("<BBHI", 0x01, flags, 8, requested_protocols)
    return tpkt(x224(0xE0, variable))


def rdp_connection_confirm(
    selected_protocol: int | None = PROTOCOL_HYBRID, flags: int = 0x1F
) -> bytes:
    """Server X.224 Connection Confirm with RDP_NEG_RSP (none: standard RDP security)."""
    variable = b""
    if selected_protocol is not None:
        variable = struct.pack("<BBHI", 0x02, flags, 8, selected_protocol)
    return tpkt(x224(0xD0, variable, src_ref=0x1234))


def rdp_negotiation_failure(failure_code: int = SSL_REQUIRED_BY_SERVER) -> bytes:
    """Server X.224 Connection Confirm with RDP_NEG_FAILURE."""
    return tpkt(x224(0xD0, struct.pack("<BBHI", 0x03, 0, 8, failure_code), src_ref=0x1234))
