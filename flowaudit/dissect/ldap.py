"""LDAP and CLDAP: operations, bind method, StartTLS, search base and result code.

Reads LDAPMessages (RFC 4511 4.1.1, BER as X.690 8): ``SEQUENCE { messageID INTEGER,
protocolOp [APPLICATION n], controls [0] OPTIONAL }``, one after the other on TCP, one per
datagram on UDP (CLDAP, RFC 1798, carries the same messages). After a SASL bind that
negotiated integrity, messages travel in SASL buffers (RFC 4422 3.7: a 4-byte length, then
the mechanism's token); the Kerberos wrap token (RFC 4121 4.2.6.2) of GSSAPI and GSS-SPNEGO
without confidentiality carries its LDAPMessages in clear and is read, sealed tokens are skipped.
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


def _unwrap_sasl(buffer: bytes) -> bytes | None:
    """The clear payload of a Kerberos wrap token without confidentiality, else None.

    RFC 4121 4.2.6.2 / 4.2.5: header TOK_ID, Flags, Filler, EC, RRC, SND_SEQ (16 octets); the
    data after it is rotated right by RRC octets and ends in an EC-octet checksum.
    """
    if buffer[:2] != _KRB5_WRAP_TOKEN or len(buffer) < _KRB5_WRAP_HEADER:
        return None
    if buffer[2] & _KRB5_WRAP_SEALED:
        return None
    extra_count = int.from_bytes(buffer[4:6], "big")
    rotation = int.from_bytes(buffer[6:8], "big")
    body = buffer[_KRB5_WRAP_HEADER:]
    if not body:
        return None
    rotation %= len(body)
    body = body[rotation:] + body[:rotation]
    return body[: max(0, len(body) - extra_count)]


def messages(stream: bytes) -> list[_Message]:
    """The LDAPMessages of one direction, plain or in SASL buffers, in order."""
    found: list[_Message] = []
    offset = 0
    while offset < len(stream) and len(found) < _MAX_MESSAGES:
        plain = _message_at(stream, offset)
        if plain is not None:
            found.append(plain[0])
            offset = plain[1]
            continue
        # A SASL buffer after a bind: only once plain LDAP has been seen, and only whole.
        length = int.from_bytes(stream[offset : offset + 4], "big")
        buffer = stream[offset + 4 : offset + 4 + length]
        if not found or len(buffer) != length or length < _KRB5_WRAP_HEADER:
            break
        clear = _unwrap_sasl(buffer)
        inner = 0
        while clear and len(found) < _MAX_MESSAGES and (wrapped := _message_at(clear, inner)):
            found.append(wrapped[0])
            inner = wrapped[1]
        offset += 4 + length
    return found


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
    requests, responses = messages(c2s), messages(s2c)
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
