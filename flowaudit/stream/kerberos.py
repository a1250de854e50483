"""Kerberos conversations with a KDC (port 88): every AS and TGS exchange, who asked for what.

Reads Kerberos V5 messages (RFC 4120 5, ASN.1 DER): on TCP each is preceded by a 4-byte
big-endian length whose high bit is reserved (RFC 4120 7.2.2), on UDP a message fills the
datagram (7.2.1). The BER reader and the field helpers are the first-bytes dissector's
(``flowaudit.dissect.kerberos``, itself on ``flowaudit.dissect.ldap``).

Operations: one per request, ``AS-REQ``/``TGS-REQ`` with ``target`` the service principal
asked for (``sname``, e.g. ``krbtgt/REALM``) and ``realm``; the answer that follows fills its
``status``: ``"ok"`` for an AS-REP/TGS-REP, the error name of a KRB-ERROR (RFC 4120 7.5.9,
e.g. ``KDC_ERR_PREAUTH_REQUIRED``). An answer no request was seen for (the capture began
after it) is an operation of its own, named by its message type; so is any other message.

Identities (protocol ``kerberos``, carrier ``kerberos``):

* AS-REQ: ``account`` the client name (``cname``, in clear in the request body) at ``realm``,
  ``service`` the principal asked for, ``preauth`` the pre-authentication offered, read from
  the padata types (RFC 4120 7.5.2, RFC 4556, RFC 6113): ``"encrypted-timestamp"``
  (PA-ENC-TIMESTAMP), ``"PKINIT"`` (PA-PK-AS-REQ and its older forms), ``"encrypted-challenge"``
  (FAST, PA-ENCRYPTED-CHALLENGE), ``"FAST"`` (an armoured request, whose pre-authentication is
  inside the armour), ``"none"``;
* TGS-REQ: ``service`` asked for; the client is inside the encrypted ticket, so ``account``
  comes from the TGS-REP's ``cname`` (in clear, RFC 4120 5.4.2). Service-for-User
  ([MS-SFU] 2.2.1, 2.2.2): PA-FOR-USER and PA-S4U-X509-USER name the user the service asks a
  ticket for in clear: ``s4u_user`` (``name@realm``) and ``s4u`` ``"S4U2Self"``; a TGS-REQ with
  the cname-in-addl-tkt option ([MS-SFU] 2.2.3) is ``s4u`` ``"S4U2Proxy"``.

The answer gives the outcome: ``"success"`` for an AS-REP/TGS-REP, whose ``cname`` and
``crealm`` become ``account``/``realm`` (the KDC's canonical spelling: a request for
``host$`` is answered for ``HOST$``), the error name of a KRB-ERROR. ``facts()`` lists the
encryption types the clients asked for and the ticket encryption types the KDC answered with
(RFC 3961 8, RFC 4757, RFC 8009 numbers, named).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from flowaudit.dissect.kerberos import (  # private helpers, shared rather than copied
    MESSAGE_TYPES,
    _context_fields,
    _number,
    _principal,
    _string,
)
from flowaudit.dissect.ldap import Element, children, read_element
from flowaudit.stream.base import At, Framed, Record

PROTOCOL = "kerberos"
TRANSPORTS = ("tcp", "udp")
PORT = 88

# RFC 4120 5.10: the APPLICATION tags, equal to the msg-type numbers of 7.5.7 (MESSAGE_TYPES
# is the first-bytes reader's table).
AS_REQ, AS_REP, TGS_REQ, TGS_REP, AP_REQ, AP_REP, KRB_ERROR = 10, 11, 12, 13, 14, 15, 30
# A KDC conversation opens with one of these (a reply first when the capture began late).
_OPENING_TAGS = frozenset(0x60 | t for t in (AS_REQ, AS_REP, TGS_REQ, TGS_REP, KRB_ERROR))

# RFC 4120 7.5.9 error codes (62-76 from RFC 4556 and the RFC 4120 list itself).
ERRORS = {
    0: "KDC_ERR_NONE",
    1: "KDC_ERR_NAME_EXP",
    2: "KDC_ERR_SERVICE_EXP",
    3: "KDC_ERR_BAD_PVNO",
    4: "KDC_ERR_C_OLD_MAST_KVNO",
    5: "KDC_ERR_S_OLD_MAST_KVNO",
    6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    8: "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
    9: "KDC_ERR_NULL_KEY",
    10: "KDC_ERR_CANNOT_POSTDATE",
    11: "KDC_ERR_NEVER_VALID",
    12: "KDC_ERR_POLICY",
    13: "KDC_ERR_BADOPTION",
    14: "KDC_ERR_ETYPE_NOSUPP",
    15: "KDC_ERR_SUMTYPE_NOSUPP",
    16: "KDC_ERR_PADATA_TYPE_NOSUPP",
    17: "KDC_ERR_TRTYPE_NOSUPP",
    18: "KDC_ERR_CLIENT_REVOKED",
    19: "KDC_ERR_SERVICE_REVOKED",
    20: "KDC_ERR_TGT_REVOKED",
    21: "KDC_ERR_CLIENT_NOTYET",
    22: "KDC_ERR_SERVICE_NOTYET",
    23: "KDC_ERR_KEY_EXPIRED",
    24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED",
    26: "KDC_ERR_SERVER_NOMATCH",
    27: "KDC_ERR_MUST_USE_USER2USER",
    28: "KDC_ERR_PATH_NOT_ACCEPTED",
    29: "KDC_ERR_SVC_UNAVAILABLE",
    31: "KRB_AP_ERR_BAD_INTEGRITY",
    32: "KRB_AP_ERR_TKT_EXPIRED",
    33: "KRB_AP_ERR_TKT_NYV",
    34: "KRB_AP_ERR_REPEAT",
    35: "KRB_AP_ERR_NOT_US",
    36: "KRB_AP_ERR_BADMATCH",
    37: "KRB_AP_ERR_SKEW",
    38: "KRB_AP_ERR_BADADDR",
    39: "KRB_AP_ERR_BADVERSION",
    40: "KRB_AP_ERR_MSG_TYPE",
    41: "KRB_AP_ERR_MODIFIED",
    42: "KRB_AP_ERR_BADORDER",
    44: "KRB_AP_ERR_BADKEYVER",
    45: "KRB_AP_ERR_NOKEY",
    46: "KRB_AP_ERR_MUT_FAIL",
    47: "KRB_AP_ERR_BADDIRECTION",
    48: "KRB_AP_ERR_METHOD",
    49: "KRB_AP_ERR_BADSEQ",
    50: "KRB_AP_ERR_INAPP_CKSUM",
    51: "KRB_AP_PATH_NOT_ACCEPTED",
    52: "KRB_ERR_RESPONSE_TOO_BIG",
    60: "KRB_ERR_GENERIC",
    61: "KRB_ERR_FIELD_TOOLONG",
    62: "KDC_ERROR_CLIENT_NOT_TRUSTED",
    63: "KDC_ERROR_KDC_NOT_TRUSTED",
    64: "KDC_ERROR_INVALID_SIG",
    65: "KDC_ERR_KEY_TOO_WEAK",
    66: "KDC_ERR_CERTIFICATE_MISMATCH",
    67: "KRB_AP_ERR_NO_TGT",
    68: "KDC_ERR_WRONG_REALM",
    69: "KRB_AP_ERR_USER_TO_USER_REQUIRED",
    70: "KDC_ERR_CANT_VERIFY_CERTIFICATE",
    71: "KDC_ERR_INVALID_CERTIFICATE",
    72: "KDC_ERR_REVOKED_CERTIFICATE",
    73: "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
    74: "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
    75: "KDC_ERR_CLIENT_NAME_MISMATCH",
    76: "KDC_ERR_KDC_NAME_MISMATCH",
}

# Encryption types: RFC 3961 8, RFC 3962, RFC 4757, RFC 8009.
ETYPES = {
    1: "des-cbc-crc",
    2: "des-cbc-md4",
    3: "des-cbc-md5",
    16: "des3-cbc-sha1-kd",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "rc4-hmac",
    24: "rc4-hmac-exp",
}

# PA-DATA types (RFC 4120 7.5.2, RFC 4556 3.2.1, RFC 6113 7.1, [MS-SFU] 2.2.1-2.2.2).
PA_TGS_REQ = 1
PA_ENC_TIMESTAMP = 2
PA_PK_AS_REQ_OLD = 14
PA_PK_AS_REP_OLD = 15  # Windows 2000 era PKINIT requests are seen under this number too
PA_PK_AS_REQ = 16
PA_FOR_USER = 129
PA_S4U_X509_USER = 130
PA_FX_FAST = 136
PA_ENCRYPTED_CHALLENGE = 138
_PKINIT = frozenset({PA_PK_AS_REQ_OLD, PA_PK_AS_REP_OLD, PA_PK_AS_REQ})

# RFC 4120 5.4.1 KDC-REQ: pvno [1], msg-type [2], padata [3], req-body [4]; KDC-REQ-BODY:
# kdc-options [0], cname [1], realm [2], sname [3], etype [8].
_REQ_PVNO, _REQ_MSG_TYPE, _REQ_PADATA, _REQ_BODY = 1, 2, 3, 4
_BODY_OPTIONS, _BODY_CNAME, _BODY_REALM, _BODY_SNAME, _BODY_ETYPE = 0, 1, 2, 3, 8
# Every other message: pvno [0], msg-type [1]. KDC-REP (5.4.2): crealm [3], cname [4],
# ticket [5]; Ticket (5.3): realm [1], sname [2], enc-part [3]; EncryptedData (5.2.9) etype [0].
_PVNO, _MSG_TYPE = 0, 1
_REP_CREALM, _REP_CNAME, _REP_TICKET = 3, 4, 5
_TICKET_ENC_PART = 3
_ENC_ETYPE = 0
# KRB-ERROR (5.9.1): error-code [6], crealm [7], cname [8], realm [9], sname [10].
_ERR_CODE, _ERR_CREALM, _ERR_CNAME, _ERR_REALM, _ERR_SNAME = 6, 7, 8, 9, 10
# PA-DATA (5.2.7): padata-type [1], padata-value [2].
_PA_TYPE, _PA_VALUE = 1, 2
# [MS-SFU] 2.2.3: KDCOptions bit 14, cname-in-addl-tkt. The BIT STRING value starts with the
# count of unused bits; bit 0 is the most significant bit of the octet after it (X.690 8.6).
_CNAME_IN_ADDL_TKT = (2, 0x02)  # (octet of the value, mask)

_SEQUENCE = 0x30
_OCTET_STRING = 0x04
_BIT_STRING = 0x03
_MAX_PENDING = 64
_MAX_ETYPES = 16
_MAX_TEXT = 256


def error_name(code: int | None) -> str:
    """The RFC 4120 7.5.9 name of a KRB-ERROR code (``KRB_ERROR_<n>`` if unnamed)."""
    if code is None:
        return "KRB_ERROR"
    return ERRORS.get(code, f"KRB_ERROR_{code}")


def etype_name(etype: int) -> str:
    return ETYPES.get(etype, str(etype))


def message_tag(data: bytes, offset: int = 0) -> int | None:
    """The Kerberos message type whose APPLICATION tag is at ``offset``, or None."""
    if offset >= len(data) or data[offset] & 0xE0 != 0x60:
        return None
    number = data[offset] & 0x1F
    return number if number in MESSAGE_TYPES else None


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """Port 88 at either end, and a KDC message first: after the 4-byte record marker (TCP)
    or at once (UDP), the APPLICATION tag of an AS/TGS request or reply or a KRB-ERROR."""
    if PORT not in ports or not first:
        return False
    if first[0] in _OPENING_TAGS:
        return True
    if len(first) >= 5:
        return first[0] & 0x80 == 0 and first[4] in _OPENING_TAGS
    # TCP that sent the record marker in a packet of its own
    return len(first) == 4 and first[0] & 0x80 == 0 and int.from_bytes(first, "big") > 0


def _fields(data: bytes, element: Element | None, tag: int = _SEQUENCE) -> dict[int, Element]:
    if element is None or element.tag != tag:
        return {}
    return _context_fields(data, element)


def _padata(data: bytes, element: Element | None) -> list[tuple[int, Element | None]]:
    """(padata-type, padata-value) of each PA-DATA in a SEQUENCE OF PA-DATA."""
    found: list[tuple[int, Element | None]] = []
    if element is None or element.tag != _SEQUENCE:
        return found
    for each in children(data, element):
        fields = _fields(data, each)
        kind = _number(data, fields.get(_PA_TYPE))
        if kind is not None:
            value = fields.get(_PA_VALUE)
            found.append(
                (kind, value if value is not None and value.tag == _OCTET_STRING else None)
            )
    return found


def _preauth(kinds: list[int]) -> str:
    if any(kind in _PKINIT for kind in kinds):
        return "PKINIT"
    if PA_ENCRYPTED_CHALLENGE in kinds:
        return "encrypted-challenge"
    if PA_ENC_TIMESTAMP in kinds:
        return "encrypted-timestamp"
    if PA_FX_FAST in kinds:
        return "FAST"
    return "none"


def _at_realm(name: str | None, realm: str | None) -> str | None:
    if name is None:
        return None
    return (f"{name}@{realm}" if realm else name)[:_MAX_TEXT]


def _s4u_user(data: bytes, kind: int, value: Element | None) -> str | None:
    """The user a service asks a ticket for, in clear in the padata value ([MS-SFU] 2.2.1
    PA-FOR-USER: userName [0], userRealm [1]; 2.2.2 PA-S4U-X509-USER: user-id [0] S4UUserID,
    whose cname [1] and crealm [2])."""
    if value is None:
        return None
    inner = read_element(data, value.start, value.end)
    fields = _fields(data, inner)
    if kind == PA_FOR_USER:
        return _at_realm(_principal(data, fields.get(0)), _string(data, fields.get(1)))
    user = _fields(data, fields.get(0))
    return _at_realm(_principal(data, user.get(1)), _string(data, user.get(2)))


def _etypes(data: bytes, element: Element | None) -> list[int]:
    if element is None or element.tag != _SEQUENCE:
        return []
    found = []
    for each in children(data, element)[:_MAX_ETYPES]:
        value = _number(data, each)
        if value is not None:
            found.append(value)
    return found


def _ticket_etype(data: bytes, ticket: Element | None) -> int | None:
    """The encryption type of a Ticket's enc-part (RFC 4120 5.3), readable in clear."""
    if ticket is None or ticket.tag != 0x61:
        return None
    inner = read_element(data, ticket.start, ticket.end)
    enc = _fields(data, inner).get(_TICKET_ENC_PART)
    return _number(data, _fields(data, enc).get(_ENC_ETYPE))


class _Pending:
    """A request waiting for its answer: its operation entry and identity entry."""

    __slots__ = ("identity", "operation")

    def __init__(self, operation: dict[str, Any], identity: dict[str, Any] | None) -> None:
        self.operation = operation
        self.identity = identity


class Conversation(Framed):
    """One KDC conversation: TCP (record-marked) or UDP (a message per datagram)."""

    PROTOCOL = PROTOCOL
    # The record marker, then the message's APPLICATION tag and DER length (at most 6 bytes):
    # both lengths must agree, which keeps a side that starts mid-message from being read.
    HEADER = 10

    def __init__(self, record: Record | None = None) -> None:
        super().__init__(record)
        self._pending: deque[_Pending] = deque(maxlen=_MAX_PENDING)
        self._requested: list[str] = []
        self._issued: list[str] = []

    # --- TCP framing (RFC 4120 7.2.2) -------------------------------------------------------
    def pdu_length(self, side: int, head: bytes) -> int | None:
        length = int.from_bytes(head[:4], "big")
        if length & 0x80000000 or message_tag(head, 4) is None:
            return None
        message = read_element(head, 4)
        if message is None or message.end != 4 + length:
            return None
        return 4 + length

    def pdu(self, side: int, data: bytes, total: int, at: At) -> None:
        self.message(side, data[4:], at)

    def datagram(self, side: int, data: bytes, at: At) -> None:
        self.message(side, bytes(data), at)

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if self._requested:
            facts["etypes_requested"] = list(self._requested)
        if self._issued:
            facts["ticket_etypes"] = list(self._issued)
        return facts

    # --- messages ---------------------------------------------------------------------------
    def message(self, side: int, data: bytes, at: At) -> None:
        """One Kerberos message (APPLICATION tag first)."""
        kind = message_tag(data)
        outer = read_element(data, 0)
        if kind is None or outer is None:
            self.record.count("kerberos_unreadable")
            return
        sequence = read_element(data, outer.start, outer.end)
        fields = _fields(data, sequence)
        request = kind in (AS_REQ, TGS_REQ)
        pvno = _number(data, fields.get(_REQ_PVNO if request else _PVNO))
        declared = _number(data, fields.get(_REQ_MSG_TYPE if request else _MSG_TYPE))
        if pvno != 5 or declared != kind:
            self.record.count("kerberos_unreadable")
            return
        if request:
            self._request(side, kind, data, fields, at)
        elif kind in (AS_REP, TGS_REP):
            self._reply(side, kind, data, fields, at)
        elif kind == KRB_ERROR:
            self._error(side, data, fields, at)
        else:
            self.record.op(at, side, PROTOCOL, MESSAGE_TYPES[kind])

    def _note(self, names: list[str], etypes: list[int]) -> None:
        for etype in etypes:
            name = etype_name(etype)
            if name not in names and len(names) < _MAX_ETYPES:
                names.append(name)

    def _request(
        self, side: int, kind: int, data: bytes, fields: dict[int, Element], at: At
    ) -> None:
        body = _fields(data, fields.get(_REQ_BODY))
        realm = _string(data, body.get(_BODY_REALM))
        sname = _principal(data, body.get(_BODY_SNAME))
        cname = _principal(data, body.get(_BODY_CNAME))
        self._note(self._requested, _etypes(data, body.get(_BODY_ETYPE)))
        padata = _padata(data, fields.get(_REQ_PADATA))
        name = MESSAGE_TYPES[kind]
        operation = self.record.op(at, side, PROTOCOL, name, target=sname, realm=realm)
        identity: dict[str, Any] = {
            "protocol": PROTOCOL,
            "carrier": PROTOCOL,
            "method": name,
            "account": cname,
            "realm": realm,
            "service": sname,
        }
        if kind == AS_REQ:
            identity["preauth"] = _preauth([each for each, _ in padata])
        else:
            for each, value in padata:
                if each in (PA_FOR_USER, PA_S4U_X509_USER):
                    identity["s4u"] = "S4U2Self"
                    user = _s4u_user(data, each, value)
                    if user is not None:
                        identity["s4u_user"] = user
                        break
            options = body.get(_BODY_OPTIONS)
            index, mask = _CNAME_IN_ADDL_TKT
            if (
                options is not None
                and options.tag == _BIT_STRING
                and options.start + index < min(options.end, len(data))
                and data[options.start + index] & mask
            ):
                identity["s4u"] = "S4U2Proxy"
        identity["outcome"] = None
        kept = self.record.identity(identity)
        self._pending.append(_Pending(operation, kept))

    def _answered(self, side: int, name: str, status: str, at: At, **extra: Any) -> _Pending:
        """The request this answer is for (the oldest waiting), or an operation of its own."""
        if self._pending:
            pending = self._pending.popleft()
            pending.operation["status"] = status
            return pending
        return _Pending(self.record.op(at, side, PROTOCOL, name, status=status, **extra), None)

    def _reply(self, side: int, kind: int, data: bytes, fields: dict[int, Element], at: At) -> None:
        crealm = _string(data, fields.get(_REP_CREALM))
        cname = _principal(data, fields.get(_REP_CNAME))
        etype = _ticket_etype(data, fields.get(_REP_TICKET))
        if etype is not None:
            self._note(self._issued, [etype])
        name = MESSAGE_TYPES[kind]
        pending = self._answered(side, name, "ok", at, realm=crealm)
        identity = pending.identity
        if identity is None:
            if cname is None:
                return
            identity = self.record.identity(
                {
                    "protocol": PROTOCOL,
                    "carrier": PROTOCOL,
                    "method": name,
                    "account": cname,
                    "realm": crealm,
                    "outcome": None,
                }
            )
        if cname is not None:
            identity["account"] = cname  # the KDC's (canonical) spelling of the client
        if crealm is not None:
            identity["realm"] = crealm
        if etype is not None:
            identity["ticket_etype"] = etype_name(etype)
        identity["outcome"] = "success"

    def _error(self, side: int, data: bytes, fields: dict[int, Element], at: At) -> None:
        status = error_name(_number(data, fields.get(_ERR_CODE)))
        pending = self._answered(
            side,
            "KRB-ERROR",
            status,
            at,
            target=_principal(data, fields.get(_ERR_SNAME)),
            realm=_string(data, fields.get(_ERR_REALM)),
        )
        if pending.identity is not None:
            pending.identity["outcome"] = status
            return
        cname = _principal(data, fields.get(_ERR_CNAME))
        if cname is not None:
            self.record.identity(
                {
                    "protocol": PROTOCOL,
                    "carrier": PROTOCOL,
                    "method": "KRB-ERROR",
                    "account": cname,
                    "realm": _string(data, fields.get(_ERR_CREALM)),
                    "outcome": status,
                }
            )
