"""Kerberos: the message types exchanged, realm, client and service principal, error code.

Reads Kerberos V5 messages (RFC 4120 5, ASN.1 DER): on TCP each is preceded by a 4-byte
big-endian length (RFC 4120 7.2.2), on UDP it fills the datagram (7.2.1). The parser is not told
the transport, so it accepts both forms. A message is taken only if its pvno is 5 and its
msg-type matches its APPLICATION tag. The BER reader is the LDAP dissector's.
"""

from __future__ import annotations

from typing import Any

from flowaudit.dissect.ldap import Element, children, integer, read_element

PROTOCOL = "kerberos"
TRANSPORTS = ("tcp", "udp")

# RFC 4120 5.10 (APPLICATION tags equal the msg-type numbers of 7.5.7).
MESSAGE_TYPES = {
    10: "AS-REQ",
    11: "AS-REP",
    12: "TGS-REQ",
    13: "TGS-REP",
    14: "AP-REQ",
    15: "AP-REP",
    20: "KRB-SAFE",
    21: "KRB-PRIV",
    22: "KRB-CRED",
    30: "KRB-ERROR",
}
_APPLICATION_CONSTRUCTED = 0x60
_SEQUENCE = 0x30
_GENERAL_STRING = 0x1B  # KerberosString ::= GeneralString (RFC 4120 5.2.1)
_MAX_TCP_LENGTH = 0x7FFFFFFF  # RFC 4120 7.2.2: the high bit of the length is reserved
_MAX_TEXT = 256
_MAX_MESSAGES = 8
_AS_REQ, _TGS_REQ, _KRB_ERROR = 10, 12, 30
_AS_REP, _TGS_REP = 11, 13

# Context tag numbers of the fields read ([n] is 0xA0 | n), RFC 4120 5.4.1, 5.4.2, 5.9.1.
_KDC_REQ_PVNO, _KDC_REQ_MSG_TYPE, _KDC_REQ_BODY = 1, 2, 4
_BODY_CNAME, _BODY_REALM, _BODY_SNAME = 1, 2, 3
_REP_PVNO, _REP_MSG_TYPE, _REP_CREALM, _REP_CNAME = 0, 1, 3, 4
_ERROR_CODE, _ERROR_CREALM, _ERROR_CNAME, _ERROR_REALM, _ERROR_SNAME = 6, 7, 8, 9, 10
_PRINCIPAL_NAME_STRING = 1  # PrincipalName ::= SEQUENCE { name-type [0], name-string [1] }


def _context_fields(data: bytes, sequence: Element) -> dict[int, Element]:
    """The value element inside each ``[n] EXPLICIT`` field of a SEQUENCE, by n."""
    fields: dict[int, Element] = {}
    for field in children(data, sequence):
        if field.tag & 0xE0 == 0xA0:
            inner = read_element(data, field.start, field.end)
            if inner is not None:
                fields[field.tag & 0x1F] = inner
    return fields


def _text(data: bytes, element: Element) -> str | None:
    if element.end > len(data):
        return None
    return data[element.start : element.end].decode("utf-8", errors="replace")[:_MAX_TEXT]


def _principal(data: bytes, name: Element | None) -> str | None:
    """A PrincipalName's components joined with "/" (RFC 4120 5.2.2), e.g. krbtgt/REALM."""
    if name is None or name.tag != _SEQUENCE:
        return None
    strings = _context_fields(data, name).get(_PRINCIPAL_NAME_STRING)
    if strings is None or strings.tag != _SEQUENCE:
        return None
    parts = [_text(data, part) for part in children(data, strings) if part.tag == _GENERAL_STRING]
    if not parts or None in parts:
        return None
    return "/".join(part for part in parts if part is not None)[:_MAX_TEXT]


def _string(data: bytes, element: Element | None) -> str | None:
    if element is None or element.tag != _GENERAL_STRING:
        return None
    return _text(data, element)


class _Message:
    """One Kerberos message and the facts of it that are read."""

    def __init__(self, msg_type: int) -> None:
        self.msg_type = msg_type
        self.realm: str | None = None
        self.cname: str | None = None
        self.sname: str | None = None
        self.error_code: int | None = None


def _number(data: bytes, element: Element | None) -> int | None:
    return integer(data, element) if element is not None and element.tag == 0x02 else None


def _read(data: bytes, offset: int) -> tuple[_Message, int] | None:
    """The Kerberos message at ``offset`` (APPLICATION tag first) and where it ends."""
    outer = read_element(data, offset)
    if outer is None or outer.tag & 0xE0 != _APPLICATION_CONSTRUCTED:
        return None
    msg_type = outer.tag & 0x1F
    if msg_type not in MESSAGE_TYPES:
        return None
    sequence = read_element(data, outer.start, outer.end)
    if sequence is None or sequence.tag != _SEQUENCE:
        return None
    fields = _context_fields(data, sequence)
    # KDC-REQ numbers pvno [1] and msg-type [2]; every other message [0] and [1].
    request = msg_type in (_AS_REQ, _TGS_REQ)
    pvno = _number(data, fields.get(_KDC_REQ_PVNO if request else _REP_PVNO))
    declared = _number(data, fields.get(_KDC_REQ_MSG_TYPE if request else _REP_MSG_TYPE))
    if pvno != 5 or declared != msg_type:
        return None
    message = _Message(msg_type)
    if request:
        body_element = fields.get(_KDC_REQ_BODY)
        body = _context_fields(data, body_element) if body_element is not None else {}
        message.realm = _string(data, body.get(_BODY_REALM))
        message.cname = _principal(data, body.get(_BODY_CNAME))
        message.sname = _principal(data, body.get(_BODY_SNAME))
    elif msg_type in (_AS_REP, _TGS_REP):
        message.realm = _string(data, fields.get(_REP_CREALM))
        message.cname = _principal(data, fields.get(_REP_CNAME))
    elif msg_type == _KRB_ERROR:
        message.error_code = _number(data, fields.get(_ERROR_CODE))
        message.realm = _string(data, fields.get(_ERROR_REALM)) or _string(
            data, fields.get(_ERROR_CREALM)
        )
        message.cname = _principal(data, fields.get(_ERROR_CNAME))
        message.sname = _principal(data, fields.get(_ERROR_SNAME))
    return message, outer.end


def _may_start(stream: bytes) -> bool:
    """Cheap first look: an APPLICATION tag first (UDP), or after a 4-byte length (TCP)."""
    if stream[:1] and stream[0] & 0xE0 == _APPLICATION_CONSTRUCTED:
        return True
    return (
        len(stream) > 4 and stream[0] & 0x80 == 0 and stream[4] & 0xE0 == _APPLICATION_CONSTRUCTED
    )


def messages(stream: bytes) -> list[_Message]:
    """The messages of one direction: TCP record-marked or bare (UDP), in order."""
    found: list[_Message] = []
    if not _may_start(stream):
        return found
    offset = 0
    while offset < len(stream) and len(found) < _MAX_MESSAGES:
        bare = _read(stream, offset)
        if bare is not None:
            found.append(bare[0])
            offset = bare[1]
            continue
        length = int.from_bytes(stream[offset : offset + 4], "big")
        if length > _MAX_TCP_LENGTH or length < 2:
            break
        marked = _read(stream, offset + 4)
        if marked is None:
            break
        found.append(marked[0])
        offset += 4 + length
    return found


def parse(c2s: bytes, s2c: bytes) -> dict[str, Any] | None:
    """Facts of a Kerberos exchange, or ``None`` when neither direction starts with one.

    ``msg_type`` is the client's first message (the server's when the window holds none of the
    client's: a capture that began mid-message), ``reply`` the server's first; ``realm``,
    ``sname`` and ``cname`` come from the request body (RFC 4120 5.4.1) or, where it has none,
    from the reply; ``error_code`` from a KRB-ERROR (RFC 4120 7.5.9).
    """
    requests, replies = messages(c2s), messages(s2c)
    if not requests and not replies:
        return None
    first = (requests or replies)[0]
    reply = replies[0] if replies else None
    ordered = [*requests[:1], *replies[:1]]
    return {
        "msg_type": MESSAGE_TYPES[first.msg_type],
        "reply": MESSAGE_TYPES[reply.msg_type] if reply is not None else None,
        "realm": next((m.realm for m in ordered if m.realm), None),
        "sname": next((m.sname for m in ordered if m.sname), None),
        "cname": next((m.cname for m in ordered if m.cname), None),
        "error_code": next((m.error_code for m in ordered if m.error_code is not None), None),
    }
