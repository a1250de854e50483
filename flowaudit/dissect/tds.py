"""TDS (SQL Server): packet types at the start of a flow, PRELOGIN encryption, TDS 8 strict TLS.

[MS-TDS] 2.2.3.1: every TDS message travels in packets with an 8-byte header (type, status,
big-endian length including the header, SPID, packet id, window). A TDS 7.x client opens with
PRELOGIN (type 0x12), whose option tokens (2.2.6.5) carry the encryption each side offers; the
server answers with the same structure in a tabular result packet (0x04). A TDS 8.0 client
opens with a TLS ClientHello offering ALPN ``tds/8.0`` (strict encryption: the PRELOGIN is
inside TLS), so only the TLS facts are visible. A TDS 7.x side that negotiated encryption
wraps its TLS handshake in PRELOGIN packets: its facts are read too (``tls``).
"""

from __future__ import annotations

from typing import Any

from flowaudit.dissect import tls

PROTOCOL = "tds"
TRANSPORTS = ("tcp",)

HEADER = 8
MAX_PACKET = 32768  # 2.2.3.1.3: Length, at most the negotiated packet size (32767)
# 2.2.6.4 LOGIN7 PacketSize / ENVCHANGE: packet sizes are 512..32767, and every packet of a
# message but its last (EOM clear) is full-size: no shorter packet goes without EOM.
MIN_PACKET_SIZE = 512
STATUS_EOM = 0x01
# 2.2.3.1.2: EOM 0x01, IGNORE 0x02, (event notification 0x04, as tshark names it), RESETCONNECTION
# 0x08, RESETCONNECTIONSKIPTRAN 0x10; higher bits are never set.
STATUS_BITS = 0x1F

# 2.2.3.1.1 packet types, named as tshark and the corpus oracle name them.
PACKET_TYPES = {
    0x01: "SQLBATCH",
    0x02: "LOGIN",  # pre-TDS 7 login
    0x03: "RPC",
    0x04: "RESPONSE",  # tabular result
    0x06: "ATTENTION",
    0x07: "BULKLOAD",
    0x08: "FEDAUTH",  # federated authentication token
    0x0E: "TRANSMGR",  # transaction manager request
    0x10: "LOGIN7",
    0x11: "SSPI",
    0x12: "PRELOGIN",
}
PRELOGIN = 0x12
TABULAR_RESULT = 0x04
CLIENT_TYPES = frozenset(PACKET_TYPES) - {TABULAR_RESULT}
# The server sends tabular results, and in TDS 7.x its TLS handshake in PRELOGIN packets.
SERVER_TYPES = frozenset({TABULAR_RESULT, PRELOGIN})

# 2.2.6.5 PRELOGIN option tokens.
OPTION_VERSION = 0x00
OPTION_ENCRYPTION = 0x01
OPTION_INSTOPT = 0x02
OPTION_TERMINATOR = 0xFF
# 2.2.6.5 B_FENCRYPTION: ENCRYPT_OFF 0, ENCRYPT_ON 1, ENCRYPT_NOT_SUP 2, ENCRYPT_REQ 3;
# ENCRYPT_CLIENT_CERT 0x80 is OR-ed onto one of them (certificate authentication), named here
# "OFF+CLIENT_CERT" and so on so that the base setting stays visible.
ENCRYPTION_NAMES = {0x00: "OFF", 0x01: "ON", 0x02: "NOT_SUP", 0x03: "REQ"}
ENCRYPT_CLIENT_CERT = 0x80

TDS8_ALPN = "tds/8.0"  # 2.2.1 / 3.2.5.1: TDS 8.0 strict encryption negotiates this protocol
MAX_PACKETS = 64
MAX_TEXT = 256

Facts = dict[str, Any]


def _header(data: bytes, pos: int, allowed: frozenset[int]) -> tuple[int, int] | None:
    """(type, length) of a plausible packet header at ``pos``, else None (2.2.3.1)."""
    if pos + HEADER > len(data):
        return None
    packet_type, status = data[pos], data[pos + 1]
    length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    if (
        packet_type not in allowed
        or status & ~STATUS_BITS
        or not HEADER <= length <= MAX_PACKET
        or data[pos + 7] != 0  # Window: "currently not used. This byte SHOULD be set to 0x00"
        or (not status & STATUS_EOM and length < MIN_PACKET_SIZE)
    ):
        return None
    return packet_type, length


def _packets(data: bytes, allowed: frozenset[int]) -> list[tuple[int, bytes]]:
    """(type, packet data) of the packets one after the other at the start of ``data``.

    Stops at the first header that does not parse; the last packet's data may be cut short.
    """
    packets = []
    pos = 0
    for _ in range(MAX_PACKETS):
        header = _header(data, pos, allowed)
        if header is None:
            break
        packet_type, length = header
        packets.append((packet_type, data[pos + HEADER : pos + length]))
        pos += length
    return packets


def _wrapped_tls(packets: list[tuple[int, bytes]]) -> bytes:
    """The TLS bytes a TDS 7.x side wraps in PRELOGIN packets after the PRELOGIN exchange.

    2.2.6.5: "this message stream is also used to wrap the SSL handshake payload"; the data of
    consecutive PRELOGIN packets is the TLS byte stream.
    """
    wrapped = b""
    for packet_type, data in packets[1:]:
        if packet_type != PRELOGIN:
            break
        wrapped += data
    return wrapped


def _prelogin_options(data: bytes) -> dict[int, bytes] | None:
    """Option token -> data of a PRELOGIN structure (2.2.6.5), or None if it is not one."""
    options: dict[int, bytes] = {}
    pos = 0
    while True:
        if pos >= len(data):
            return None
        token = data[pos]
        if token == OPTION_TERMINATOR:
            return options
        if pos + 5 > len(data):
            return None
        offset = int.from_bytes(data[pos + 1 : pos + 3], "big")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if offset + length > len(data) or token in options:
            return None
        options[token] = data[offset : offset + length]
        pos += 5


def _encryption(options: dict[int, bytes]) -> str | None:
    value = options.get(OPTION_ENCRYPTION, b"")
    if len(value) != 1:
        return None
    code = value[0]
    base = ENCRYPTION_NAMES.get(code & ~ENCRYPT_CLIENT_CERT)
    if base is None:
        return f"0x{code:02x}"
    return base + "+CLIENT_CERT" if code & ENCRYPT_CLIENT_CERT else base


def _version(options: dict[int, bytes]) -> str | None:
    """UL_VERSION: major, minor, build (big-endian), e.g. "15.0.2000"; US_SUBBUILD left out."""
    value = options.get(OPTION_VERSION, b"")
    if len(value) < 4:
        return None
    return f"{value[0]}.{value[1]}.{int.from_bytes(value[2:4], 'big')}"


def _instance(options: dict[int, bytes]) -> str | None:
    """INSTOPT: the instance name the client asks for, NUL-terminated; empty means default."""
    name = options.get(OPTION_INSTOPT, b"").split(b"\x00", 1)[0]
    return name.decode("utf-8", errors="replace")[:MAX_TEXT] if name else None


def _strict(c2s: bytes, s2c: bytes) -> Facts | None:
    """TDS 8.0: TLS first, with ALPN tds/8.0 offered by the client or selected by the server."""
    if not (tls.starts_with_handshake(c2s) or tls.starts_with_handshake(s2c)):
        return None
    tls_facts = tls.parse(c2s, s2c)
    if tls_facts is None or not (
        TDS8_ALPN in tls_facts["alpn"] or tls_facts["alpn_selected"] == TDS8_ALPN
    ):
        return None
    facts = _empty()
    facts["tds8_strict"] = True
    facts["tls"] = tls_facts
    return facts


def _empty() -> Facts:
    return {
        "prelogin": False,
        "client_encryption": None,
        "server_encryption": None,
        "client_version": None,
        "instance": None,
        "tds8_strict": False,
        "packet_types": [],
        "tls": None,
    }


def parse(c2s: bytes, s2c: bytes) -> Facts | None:
    """TDS facts when a direction opens with a TDS packet (or TLS offering tds/8.0), else None."""
    client_header = _header(c2s, 0, CLIENT_TYPES)
    server_header = _header(s2c, 0, SERVER_TYPES)
    # The client speaks first (3.2.5.1): when its bytes were captured they must open with a
    # TDS packet; a server packet alone counts only when the client side is empty.
    if client_header is None and (c2s or server_header is None):
        if c2s[:1] == b"\x16" or s2c[:1] == b"\x16":
            return _strict(c2s, s2c)
        return None
    facts = _empty()
    client_packets = _packets(c2s, CLIENT_TYPES)
    server_packets = _packets(s2c, SERVER_TYPES)
    for packet_type, _ in client_packets + server_packets:
        name = PACKET_TYPES[packet_type]
        if name not in facts["packet_types"]:
            facts["packet_types"].append(name)
    client_prelogin = None
    if client_packets and client_packets[0][0] == PRELOGIN:
        client_prelogin = _prelogin_options(client_packets[0][1])
    if client_prelogin is not None:
        facts["prelogin"] = True
        facts["client_encryption"] = _encryption(client_prelogin)
        facts["client_version"] = _version(client_prelogin)
        facts["instance"] = _instance(client_prelogin)
    # The server's PRELOGIN answer is a tabular result packet: read it as one only when the
    # client sent a PRELOGIN, or (client side not captured) when it parses as one.
    if server_packets and server_packets[0][0] == TABULAR_RESULT:
        server_prelogin = _prelogin_options(server_packets[0][1])
        if server_prelogin is not None and (
            client_prelogin is not None or (not c2s and OPTION_ENCRYPTION in server_prelogin)
        ):
            facts["prelogin"] = True
            facts["server_encryption"] = _encryption(server_prelogin)
    if facts["prelogin"]:
        facts["tls"] = tls.parse(_wrapped_tls(client_packets), _wrapped_tls(server_packets))
    return facts
