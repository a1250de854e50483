"""LDAP and CLDAP: operations, bind method, StartTLS, search base and result code.

Reads LDAPMessages (RFC 4511 4.1.1, BER as X.690 8): ``SEQUENCE { messageID INTEGER,
protocolOp [APPLICATION n], controls [0] OPTIONAL }``, one after the other on TCP, one per
datagram on UDP (CLDAP, RFC 1798, carries the same messages). After a SASL bind that
negotiated integrity, messages travel in SASL buffers (RFC 4422 3.7: a 4-byte length, then
the mechanism's token); the Kerberos wrap token (RFC 4121 4.2.6.2) of GSSAPI and GSS-SPNEGO
without confidentiality carries its LDAPMessages in clear and is read, sealed tokens are skipped.

``sasl_protection`` says what followed a SASL bind: ``"sealed"`` when every security layer
buffer seen is encrypted (a Kerberos wrap token with the Sealed flag, RFC 4121 4.2.6.2; an
RFC 1964 / RFC 4757 wrap token with a sealing algorithm; an NTLMSSP message signature, MS-NLMP
2.2.2.9, followed by bytes that are no LDAPMessage), ``"signed"`` when a buffer carried its
LDAPMessages in clear under an integrity-only token, ``"clear"`` when plain LDAPMessages
followed the SASL bind (no security layer), None when nothing after a SASL bind was seen.
``sasl_token`` names the token kind: ``"kerberos"`` (RFC 4121), ``"kerberos-rfc1964"``,
``"ntlm"``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

PROTOCOL = "ldap"
TRANSPORTS = ("tcp", "udp")

_MAX_MESSAGES = 64
_MAX_OPERATIONS = 16
_MAX_TEXT = 256
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"  # RFC 4511 4.14.1

# RFC 4511 4.2-4.14 and appendix B: protocolOp [APPLICATION n] choices.
OPERATIONS = {
    0: "bindRequest",
    1: "bindResponse",
    2: "unbindRequest",
    3: "searchRequest",
    4: "searchResEntry",
    5: "searchResDone",
    6: "modifyRequest",
    7: "modifyResponse",
    8: "addRequest",
    9: "addResponse",
    10: "delRequest",
    11: "delResponse",
    12: "modDNRequest",
    13: "modDNResponse",
    14: "compareRequest",
    15: "compareResponse",
    16: "abandonRequest",
    19: "searchResRef",
    23: "extendedReq",
    24: "extendedResp",
    25: "intermediateResponse",
}
# Responses that end in an LDAPResult (RFC 4511 4.1.9) whose first field is resultCode.
_RESULT_OPERATIONS = frozenset({1, 5, 7, 9, 11, 13, 15, 24})
_BIND_REQUEST, _SEARCH_REQUEST, _EXTENDED_REQUEST = 0, 3, 23
_BIND_OPERATIONS = frozenset({0, 1})  # bindRequest, bindResponse

# X.690 identifier octets used here.
SEQUENCE = 0x30
INTEGER = 0x02
ENUMERATED = 0x0A
OCTET_STRING = 0x04
_APPLICATION = 0x40
_CONTEXT = 0x80
_CLASS_MASK = 0xC0
_CONSTRUCTED = 0x20
_SIMPLE = 0x80  # AuthenticationChoice simple [0] OCTET STRING (RFC 4511 4.2)
_SASL = 0xA3  # AuthenticationChoice sasl [3] SaslCredentials

# RFC 4121 4.2.6.2: Wrap token TOK_ID and its Flags bit for a sealed (encrypted) payload.
_KRB5_WRAP_TOKEN = b"\x05\x04"
_KRB5_WRAP_SEALED = 0x02
_KRB5_WRAP_HEADER = 16
_KRB5_WRAP_FLAGS = 0x07  # SentByAcceptor, Sealed, AcceptorSubkey: the only flags defined
# RFC 1964 1.2.2 / RFC 4757 7.3: the older Kerberos wrap token (DES, RC4-HMAC), inside the
# RFC 2743 3.1 framing (0x60, length, the Kerberos OID); SEAL_ALG ff ff means not sealed.
_RFC1964_WRAP_TOKEN = b"\x02\x01"
_RFC1964_HEADER = 24  # TOK_ID, SGN_ALG, SEAL_ALG, Filler, SND_SEQ, SGN_CKSUM
_RFC1964_CONFOUNDER = 8
_RFC1964_NOT_SEALED = b"\xff\xff"  # SEAL_ALG: none
_KRB5_OIDS = (
    bytes.fromhex("06092a864886f712010202"),  # 1.2.840.113554.1.2.2
    bytes.fromhex("06092a864882f712010202"),  # 1.2.840.48018.1.2.2 (Microsoft's)
)
# MS-NLMP 2.2.2.9: NTLMSSP_MESSAGE_SIGNATURE, Version 1, then checksum and sequence number.
_NTLM_SIGNATURE_VERSION = b"\x01\x00\x00\x00"
_NTLM_SIGNATURE = 16
SEALED, SIGNED, CLEAR = "sealed", "signed", "clear"


class Element(NamedTuple):
    """One BER element: identifier octet, where its value starts and where it ends.

    ``end`` is where the encoding says the value ends; it may lie past the bytes at hand when
    the window cut the element.
    """

    tag: int
    start: int
    end: int


def read_element(data: bytes, offset: int, limit: int | None = None) -> Element | None:
    """The BER element at ``offset`` (X.690 8.1: one-octet tag, definite length), or None."""
    limit = len(data) if limit is None else min(limit, len(data))
    if offset + 2 > limit:
        return None
    tag = data[offset]
    if tag & 0x1F == 0x1F:  # multi-octet tag numbers: not used by LDAP or Kerberos
        return None
    first = data[offset + 1]
    at = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or at + count > limit:  # indefinite form is not DER/LDAP
            return None
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    return Element(tag, at, at + length)


def children(data: bytes, parent: Element, limit: int | None = None) -> list[Element]:
    """The elements inside a constructed element, as far as the bytes reach."""
    found: list[Element] = []
    end = min(parent.end, len(data) if limit is None else limit)
    at = parent.start
    while at < end and len(found) < 64:
        child = read_element(data, at, end)
        if child is None:
            break
        found.append(child)
        at = child.end
    return found


def integer(data: bytes, element: Element) -> int | None:
    """A whole INTEGER/ENUMERATED value (two's complement, X.690 8.3), None if cut or too long."""
    raw = data[element.start : element.end]
    if not raw or len(raw) > 8 or element.end > len(data):
        return None
    return int.from_bytes(raw, "big", signed=True)


def text(data: bytes, element: Element) -> str:
    """A string value as text (cut by the window if need be)."""
    raw = data[element.start : min(element.end, element.start + 4 * _MAX_TEXT)]
    return raw.decode("utf-8", errors="replace")[:_MAX_TEXT]


class _Message(NamedTuple):
    """One LDAPMessage: its protocolOp number, the bytes it sits in and the protocolOp element."""

    operation: int
    data: bytes
    protocol_op: Element


def _message_at(data: bytes, offset: int) -> tuple[_Message, int] | None:
    """The LDAPMessage at ``offset`` and where the next one starts."""
    envelope = read_element(data, offset)
    if envelope is None or envelope.tag != SEQUENCE:
        return None
    message_id = read_element(data, envelope.start, envelope.end)
    if (
        message_id is None
        or message_id.tag != INTEGER
        or not 1 <= message_id.end - message_id.start <= 4
    ):
        return None
    protocol_op = read_element(data, message_id.end, envelope.end)
    if protocol_op is None or protocol_op.tag & _CLASS_MASK != _APPLICATION:
        return None
    number = protocol_op.tag & 0x1F
    if number not in OPERATIONS:
        return None
    return _Message(number, data, protocol_op), envelope.end


class _Layer(NamedTuple):
    """What one SASL security layer buffer showed: its token kind and whether it was sealed."""

    token: str
    sealed: bool


def _krb5_wrap(buffer: bytes, whole: bool) -> tuple[_Layer, bytes | None] | None:
    """An RFC 4121 4.2.6.2 wrap token and, when not sealed and whole, its clear payload.

    Header TOK_ID, Flags, Filler, EC, RRC, SND_SEQ (16 octets); the data after it is rotated
    right by RRC octets (4.2.5) and, without confidentiality, ends in an EC-octet checksum.
    """
    if (
        buffer[:2] != _KRB5_WRAP_TOKEN
        or len(buffer) < _KRB5_WRAP_HEADER
        or buffer[3] != 0xFF
        or buffer[2] & ~_KRB5_WRAP_FLAGS
    ):
        return None
    if buffer[2] & _KRB5_WRAP_SEALED:
        return _Layer("kerberos", True), None
    layer = _Layer("kerberos", False)
    body = buffer[_KRB5_WRAP_HEADER:]
    if not whole or not body:
        return layer, None
    extra_count = int.from_bytes(buffer[4:6], "big")
    rotation = int.from_bytes(buffer[6:8], "big") % len(body)
    body = body[rotation:] + body[:rotation]
    return layer, body[: max(0, len(body) - extra_count)]


def _rfc1964_wrap(buffer: bytes) -> tuple[_Layer, bytes | None] | None:
    """An RFC 1964 1.2.2 wrap token (RFC 4757 7.3 for RC4-HMAC) and, unsealed, its payload."""
    token = buffer
    if buffer[:1] == b"\x60":  # RFC 2743 3.1: [APPLICATION 0] { thisMech OID, token }
        framing = read_element(buffer, 0)
        if framing is None:
            return None
        oid = buffer[framing.start : framing.start + len(_KRB5_OIDS[0])]
        if oid not in _KRB5_OIDS:
            return None
        token = buffer[framing.start + len(oid) :]
    if token[:2] != _RFC1964_WRAP_TOKEN or len(token) < _RFC1964_HEADER:
        return None
    if token[6:8] != b"\xff\xff":  # Filler
        return None
    if token[4:6] != _RFC1964_NOT_SEALED:
        return _Layer("kerberos-rfc1964", True), None
    # The confounder, then the data and 1-8 octets of padding (message_at ignores those).
    return _Layer("kerberos-rfc1964", False), token[_RFC1964_HEADER + _RFC1964_CONFOUNDER :]


def _ntlm_signed(buffer: bytes, length: int) -> tuple[_Layer, bytes | None] | None:
    """An NTLMSSP message signature (MS-NLMP 2.2.2.9) before the message, as GSS-SPNEGO with
    NTLM sends it: signed only when an LDAPMessage in clear fills the rest of the buffer."""
    if buffer[:4] != _NTLM_SIGNATURE_VERSION or length <= _NTLM_SIGNATURE:
        return None
    data = buffer[_NTLM_SIGNATURE:]
    message = _message_at(data, 0)
    if message is not None and message[1] == length - _NTLM_SIGNATURE:
        return _Layer("ntlm", False), data
    if len(buffer) < _NTLM_SIGNATURE + 8:
        return None  # too little of the message to tell sealed from cut
    return _Layer("ntlm", True), None


def _sasl_token(buffer: bytes, length: int) -> tuple[_Layer, bytes | None] | None:
    """The security layer token in one SASL buffer (``buffer`` may be cut short of
    ``length``): its kind, and the clear bytes it carries when it is not sealed."""
    whole = len(buffer) == length
    return _krb5_wrap(buffer, whole) or _rfc1964_wrap(buffer) or _ntlm_signed(buffer, length)


class _Stream(NamedTuple):
    """One direction read: its LDAPMessages, which of them travelled plain (outside any SASL
    buffer), and the security layer tokens seen."""

    messages: list[_Message]
    plain: list[bool]
    layers: list[_Layer]


def _read(stream: bytes) -> _Stream:
    found: list[_Message] = []
    plain: list[bool] = []
    layers: list[_Layer] = []
    offset = 0
    while offset < len(stream) and len(found) < _MAX_MESSAGES:
        message = _message_at(stream, offset)
        if message is not None:
            found.append(message[0])
            plain.append(True)
            offset = message[1]
            continue
        # A SASL buffer after a bind: only once plain LDAP has been seen.
        length = int.from_bytes(stream[offset : offset + 4], "big")
        buffer = stream[offset + 4 : offset + 4 + length]
        if not found or length < _KRB5_WRAP_HEADER or len(buffer) < _KRB5_WRAP_HEADER:
            break
        token = _sasl_token(buffer, length)
        if token is not None:
            layers.append(token[0])
            clear, inner = token[1], 0
            while clear and len(found) < _MAX_MESSAGES and (wrapped := _message_at(clear, inner)):
                found.append(wrapped[0])
                plain.append(False)
                inner = wrapped[1]
        if len(buffer) != length:
            break  # cut by the window: its header was read, the rest is past the bytes
        offset += 4 + length
    return _Stream(found, plain, layers)


def messages(stream: bytes) -> list[_Message]:
    """The LDAPMessages of one direction, plain or in SASL buffers, in order."""
    return _read(stream).messages


def _protection(sasl_bind: bool, *streams: _Stream) -> tuple[str | None, str | None]:
    """(sasl_protection, sasl_token) of both directions read."""
    layers = [layer for stream in streams for layer in stream.layers]
    if layers:
        sealed = all(layer.sealed for layer in layers)
        return (SEALED if sealed else SIGNED), layers[0].token
    if not sasl_bind:
        return None, None
    for stream in streams:
        binds = [n for n, m in enumerate(stream.messages) if m.operation in _BIND_OPERATIONS]
        if binds and any(stream.plain[binds[-1] + 1 :]):
            return CLEAR, None  # plain LDAP after the bind: no security layer
    return None, None


def _fields(message: _Message) -> list[Element]:
    return children(message.data, message.protocol_op)


def parse(c2s: bytes, s2c: bytes) -> dict[str, Any] | None:
    """Facts of an LDAP/CLDAP exchange, or ``None`` when neither direction starts with one.

    ``operation`` is the client's first protocolOp (the server's if the client sent none in
    the window), ``operations`` every one seen in either direction; bind, search base and
    StartTLS come from the client's requests, ``result_code`` from the first LDAPResult.
    """
    if c2s[:1] != b"\x30" and s2c[:1] != b"\x30":
        return None
    client, server = _read(c2s), _read(s2c)
    requests, responses = client.messages, server.messages
    if not requests and not responses:
        return None
    facts: dict[str, Any] = {
        "operation": OPERATIONS[(requests or responses)[0].operation],
        "operations": [],
        "bind_auth": None,
        "sasl_mechanism": None,
        "simple_bind_with_password": False,
        "starttls": False,
        "base_dn": None,
        "result_code": None,
        "sasl_protection": None,
        "sasl_token": None,
    }
    for message in (*requests, *responses):
        name = OPERATIONS[message.operation]
        if name not in facts["operations"] and len(facts["operations"]) < _MAX_OPERATIONS:
            facts["operations"].append(name)
    for message in requests:
        _read_request(message, facts)
    for message in responses:
        if message.operation in _RESULT_OPERATIONS:
            fields = _fields(message)
            if fields and fields[0].tag == ENUMERATED:
                facts["result_code"] = integer(message.data, fields[0])
            break
    facts["sasl_protection"], facts["sasl_token"] = _protection(
        facts["bind_auth"] == "sasl", client, server
    )
    return facts


def _read_request(message: _Message, facts: dict[str, Any]) -> None:
    data, fields = message.data, _fields(message)
    if message.operation == _BIND_REQUEST and len(fields) >= 3 and facts["bind_auth"] is None:
        # RFC 4511 4.2: version, name, authentication.
        authentication = fields[2]
        if authentication.tag == _SIMPLE:
            facts["bind_auth"] = "simple"
            if authentication.end > authentication.start:
                facts["simple_bind_with_password"] = True
        elif authentication.tag == _SASL:
            facts["bind_auth"] = "sasl"
            credentials = children(data, authentication)
            if credentials and credentials[0].tag == OCTET_STRING:
                facts["sasl_mechanism"] = text(data, credentials[0])
    elif message.operation == _SEARCH_REQUEST and fields and facts["base_dn"] is None:
        if fields[0].tag == OCTET_STRING:  # RFC 4511 4.5.1: baseObject LDAPDN
            facts["base_dn"] = text(data, fields[0])
    elif message.operation == _EXTENDED_REQUEST and fields and fields[0].tag == _CONTEXT:
        # RFC 4511 4.12: requestName [0] LDAPOID.
        facts["starttls"] = facts["starttls"] or text(data, fields[0]) == STARTTLS_OID
