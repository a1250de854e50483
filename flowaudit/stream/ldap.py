"""LDAP and CLDAP, whole conversations: every LDAPMessage, binds and who they named.

RFC 4511 4.1.1: ``LDAPMessage ::= SEQUENCE { messageID INTEGER, protocolOp CHOICE
[APPLICATION n], controls [0] OPTIONAL }``, BER-encoded (X.690 8, definite lengths), back to
back on TCP (framed here by the outer SEQUENCE's length), one or more per datagram on UDP
(CLDAP, RFC 1798 / [MS-ADTS] 6.3.3, the domain controller locator's netlogon search).

Every message is an operation named by its protocolOp; a response's LDAPResult code (4.1.9)
is its status and that of the request with the same messageID. Search result entries and
references are counted on their request (``entries``, ``references``) rather than listed one
by one. Binds (4.2): a simple bind gives an identity (protocol ``ldap-simple``, method
``simple``, ``anonymous`` with neither name nor password (RFC 4513 5.1.1), ``unauthenticated``
with a name and no password (5.1.2)); the password itself is never kept, only that one was
sent. SASL credentials (GSSAPI, GSS-SPNEGO) and Microsoft's Sicily NTLM choices ([MS-ADTS]
5.1.1.1.3) go to ``auth.Auth``; DIGEST-MD5's digest-response names its user (RFC 2831 2.1.2).

What ends the reading of a side: a successful StartTLS (4.14: the rest is TLS), and after a
SASL bind, security-layer buffers (RFC 4422 3.7: a 4-octet length, then the mechanism's wrap
token). A buffer whose token is not sealed (an integrity-only Kerberos or NTLM token, read by
``flowaudit.dissect.ldap``) carries its LDAPMessages in clear and they are read on; the first
sealed one stops the side (``sasl-wrapped``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from flowaudit.dissect import ldap as first_bytes
from flowaudit.dissect.ldap import Element, children, integer, read_element
from flowaudit.stream.auth import Auth
from flowaudit.stream.base import MAX_PDU_KEEP, At, Framed

PROTOCOL = "ldap"
TRANSPORTS = ("tcp", "udp")

# LDAP (RFC 4511 / IANA), the global catalog ([MS-ADTS] 3.1.1.3.1.1); 636 and 3269 are LDAP
# over TLS from the first byte and are not claimed.
PORTS = frozenset({389, 3268})
MAX_TEXT = 256
MAX_ATTRIBUTES = 32
MAX_PENDING = 256  # requests waiting for their response, by messageID
MAX_FILTER_DEPTH = 16
MAX_FILTER_ITEMS = 256
MAX_MESSAGES_PER_BUFFER = 64

OPERATIONS = first_bytes.OPERATIONS
STARTTLS_OID = first_bytes.STARTTLS_OID
_BIND_REQUEST, _BIND_RESPONSE, _SEARCH_REQUEST = 0, 1, 3
_SEARCH_ENTRY, _SEARCH_REFERENCE = 4, 19
_EXTENDED_REQUEST, _EXTENDED_RESPONSE = 23, 24
_ABANDON_REQUEST, _DEL_REQUEST, _UNBIND_REQUEST = 16, 10, 2
_PRIMITIVE = frozenset({_UNBIND_REQUEST, _DEL_REQUEST, _ABANDON_REQUEST})
# Responses whose protocolOp holds an LDAPResult (4.1.9), resultCode first.
_RESULTS = frozenset({1, 5, 7, 9, 11, 13, 15, 24})
_REQUESTS = frozenset({0, 2, 3, 6, 8, 10, 12, 14, 16, 23})

# RFC 4511 4.1.9 and appendix A; RFC 3909 (cancel), RFC 4528 (assertion), RFC 4370 (proxy).
RESULT_CODES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    5: "compareFalse",
    6: "compareTrue",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    11: "adminLimitExceeded",
    12: "unavailableCriticalExtension",
    13: "confidentialityRequired",
    14: "saslBindInProgress",
    16: "noSuchAttribute",
    17: "undefinedAttributeType",
    18: "inappropriateMatching",
    19: "constraintViolation",
    20: "attributeOrValueExists",
    21: "invalidAttributeSyntax",
    32: "noSuchObject",
    33: "aliasProblem",
    34: "invalidDNSyntax",
    36: "aliasDereferencingProblem",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    54: "loopDetect",
    64: "namingViolation",
    65: "objectClassViolation",
    66: "notAllowedOnNonLeaf",
    67: "notAllowedOnRDN",
    68: "entryAlreadyExists",
    69: "objectClassModsProhibited",
    71: "affectsMultipleDSAs",
    80: "other",
    118: "canceled",
    119: "noSuchOperation",
    120: "tooLate",
    121: "cannotCancel",
    122: "assertionFailed",
    123: "authorizationDenied",
}
SUCCESS, SASL_BIND_IN_PROGRESS = 0, 14
SCOPES = {0: "baseObject", 1: "singleLevel", 2: "wholeSubtree"}  # 4.5.1.2

# X.690 identifier octets.
SEQUENCE, INTEGER, OCTET_STRING, ENUMERATED = 0x30, 0x02, 0x04, 0x0A
_APPLICATION, _CLASS_MASK = 0x40, 0xC0
# 4.2 AuthenticationChoice: simple [0], sasl [3]; [MS-ADTS] 5.1.1.1.1 adds Sicily's
# sicilyPackageDiscovery [9], sicilyNegotiate [10], sicilyResponse [11] (OCTET STRINGs).
_SIMPLE, _SASL = 0x80, 0xA3
_SICILY = {0x89: "sicilyPackageDiscovery", 0x8A: "sicilyNegotiate", 0x8B: "sicilyResponse"}
_SICILY_RESPONSE = 0x8B
_SERVER_SASL_CREDS = 0x87  # 4.2.2 BindResponse serverSaslCreds [7]
_EXTENDED_NAME, _EXTENDED_RESPONSE_NAME = 0x80, 0x8A  # 4.12 requestName [0], responseName [10]
_NTLMSSP = b"NTLMSSP\x00"
# SASL mechanisms that may negotiate a security layer (RFC 4752 3.3, RFC 2831 2.3, MS-SPNG).
_LAYERED_MECHANISMS = frozenset({"GSSAPI", "GSS-SPNEGO", "DIGEST-MD5"})
SASL_BUFFER_MIN = 16  # the shortest wrap token read by flowaudit.dissect.ldap

Facts = dict[str, Any]


def _cut(value: str) -> str:
    return value[:MAX_TEXT]


def _text(data: bytes, element: Element) -> str:
    raw = data[element.start : min(element.end, element.start + 4 * MAX_TEXT)]
    return _cut(raw.decode("utf-8", errors="replace"))


def _raw(data: bytes, element: Element) -> bytes:
    return data[element.start : element.end]


def ber_length(head: bytes) -> int | None:
    """Whole length of the BER element whose first octets are ``head`` (X.690 8.1.3), or None
    when ``head`` does not hold its whole length octets or the form is not definite."""
    if len(head) < 2:
        return None
    first = head[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(head) < 2 + count:
        return None
    return 2 + count + int.from_bytes(head[2 : 2 + count], "big")


class Message:
    """One LDAPMessage's messageID, protocolOp number and the protocolOp's fields."""

    __slots__ = ("data", "fields", "message_id", "op", "protocol_op")

    def __init__(self, data: bytes, message_id: int, op: int, protocol_op: Element) -> None:
        self.data = data
        self.message_id = message_id
        self.op = op
        self.protocol_op = protocol_op
        # unbindRequest, delRequest and abandonRequest are primitive (NULL, LDAPDN, MessageID).
        self.fields = children(data, protocol_op) if op not in _PRIMITIVE else []


def message_at(data: bytes, offset: int = 0) -> tuple[Message, int] | None:
    """The LDAPMessage at ``offset`` (RFC 4511 4.1.1) and where the next one starts."""
    envelope = read_element(data, offset)
    if envelope is None or envelope.tag != SEQUENCE:
        return None
    message_id = read_element(data, envelope.start, envelope.end)
    if message_id is None or message_id.tag != INTEGER or message_id.end - message_id.start > 4:
        return None
    number = integer(data, message_id)
    protocol_op = read_element(data, message_id.end, envelope.end)
    if number is None or protocol_op is None or protocol_op.tag & _CLASS_MASK != _APPLICATION:
        return None
    op = protocol_op.tag & 0x1F
    if op not in OPERATIONS:
        return None
    return Message(data, number, op, protocol_op), envelope.end


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """An LDAPMessage opening a flow to or from 389/3268 (TCP or CLDAP)."""
    if not PORTS.intersection(ports) or first[:1] != b"\x30":
        return False
    return message_at(bytes(first[:MAX_PDU_KEEP])) is not None or _opens_message(first)


def _opens_message(first: bytes) -> bool:
    """A first segment holding only the start of a long LDAPMessage: the envelope, then
    messageID INTEGER and an [APPLICATION n] tag."""
    envelope = read_element(first, 0)
    if envelope is None or envelope.tag != SEQUENCE or envelope.end <= len(first):
        return False
    message_id = read_element(first, envelope.start)
    if message_id is None or message_id.tag != INTEGER or message_id.end >= len(first):
        return False
    tag = first[message_id.end]
    return tag & _CLASS_MASK == _APPLICATION and tag & 0x1F in OPERATIONS


# --- RFC 4515 string representation of a search filter --------------------------------------

_SPECIAL = frozenset(b"*()\\")


def _escape(raw: bytes) -> str:
    """RFC 4515 3: ``*``, ``(``, ``)``, ``\\``, NUL, octets outside printable ASCII: ``\\xx``."""
    if all(0x20 <= b < 0x7F and b not in _SPECIAL for b in raw):
        return raw.decode("ascii")
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in _SPECIAL else f"\\{b:02x}" for b in raw)


class _Filter:
    """Renders a Filter (RFC 4511 4.5.1.7) as text, bounded in depth, items and length."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.items = 0
        self.out: list[str] = []
        self.size = 0

    def put(self, text: str) -> bool:
        self.out.append(text)
        self.size += len(text)
        return self.size <= MAX_TEXT

    def value(self, element: Element) -> str:
        return _escape(self.data[element.start : min(element.end, element.start + MAX_TEXT)])

    def render(self, element: Element, depth: int = 0) -> bool:
        """Append ``element``'s rendering; False once the bounds are reached."""
        self.items += 1
        if depth > MAX_FILTER_DEPTH or self.items > MAX_FILTER_ITEMS:
            return False
        tag, data = element.tag, self.data
        if tag in (0xA0, 0xA1, 0xA2):  # and [0] SET, or [1] SET, not [2] Filter
            if not self.put("(" + "&|!"[tag - 0xA0]):
                return False
            for child in children(data, element):
                if not self.render(child, depth + 1):
                    return False
            return self.put(")")
        if tag == 0x87:  # present [7] AttributeDescription
            return self.put(f"({self.value(element)}=*)")
        parts = children(data, element)
        if tag in (0xA3, 0xA5, 0xA6, 0xA8) and len(parts) >= 2:  # AttributeValueAssertion
            operator = {0xA3: "=", 0xA5: ">=", 0xA6: "<=", 0xA8: "~="}[tag]
            return self.put(f"({self.value(parts[0])}{operator}{self.value(parts[1])})")
        if tag == 0xA4 and len(parts) >= 2:  # substrings: type, SEQUENCE OF initial/any/final
            text = self.value(parts[0]) + "="
            pieces = children(data, parts[1])
            initial = [p for p in pieces if p.tag == 0x80]
            middle = [p for p in pieces if p.tag == 0x81]
            final = [p for p in pieces if p.tag == 0x82]
            text += self.value(initial[0]) if initial else ""
            text += "*" + "".join(self.value(p) + "*" for p in middle)
            text += self.value(final[0]) if final else ""
            return self.put(f"({text})")
        if tag == 0xA9:  # extensibleMatch: matchingRule [1], type [2], matchValue [3], dn [4]
            by_tag = {p.tag: p for p in parts}
            text = self.value(by_tag[0x82]) if 0x82 in by_tag else ""
            if 0x84 in by_tag and data[by_tag[0x84].start : by_tag[0x84].end] not in (b"", b"\0"):
                text += ":dn"
            if 0x81 in by_tag:
                text += ":" + self.value(by_tag[0x81])
            value = self.value(by_tag[0x83]) if 0x83 in by_tag else ""
            return self.put(f"({text}:={value})")
        return self.put("(?)")


def render_filter(data: bytes, element: Element) -> str:
    """RFC 4515 text of a Filter, cut to 256 characters."""
    renderer = _Filter(data)
    with contextlib.suppress(KeyError, IndexError, ValueError):  # what was rendered stays
        renderer.render(element)
    return _cut("".join(renderer.out))


def _digest_user(credentials: bytes) -> tuple[str | None, str | None]:
    """username and realm of a DIGEST-MD5 digest-response (RFC 2831 2.1.2)."""
    found: dict[str, str] = {}
    text = credentials[:4096].decode("utf-8", errors="replace")
    for key in ("username", "realm"):
        at = text.find(key + '="')
        if at >= 0 and (at == 0 or text[at - 1] in ", "):
            start = at + len(key) + 2
            end = text.find('"', start)
            found[key] = _cut(text[start : end if end >= 0 else len(text)])
    return found.get("username"), found.get("realm")


class Conversation(Framed):
    """One LDAP connection (TCP) or CLDAP exchange (UDP)."""

    PROTOCOL = PROTOCOL
    HEADER = 6  # 0x30, 0x84 and four length octets; also a SASL buffer's 4-octet length

    def __init__(self, record: Any = None) -> None:
        super().__init__(record)
        self.auth = Auth(self.record, "ldap")
        self._pending: dict[int, dict[str, Any]] = {}  # messageID -> request operation
        self._binds: dict[int, dict[str, Any]] = {}  # messageID -> bind in progress
        self._sasl = False  # a SASL bind with a security layer may have succeeded
        self._starttls: set[int] = set()  # messageIDs of StartTLS requests
        self._why: dict[int, str] = {}
        self._facts: Facts = {
            "messages": 0,
            "binds": [],
            "starttls": False,
            "sasl_protection": None,
            "sasl_token": None,
        }

    # --- framing ---------------------------------------------------------------------------

    def pdu_length(self, side: int, head: bytes) -> int | None:
        if head[0] == SEQUENCE:
            return ber_length(head)
        if self._sasl:
            length = int.from_bytes(head[:4], "big")
            if length >= SASL_BUFFER_MIN:
                return 4 + length
        if head[0] == 0x16 and self._starttls:  # a TLS handshake record (RFC 8446 5.1)
            self._why[side] = "ldap: tls after StartTLS"
        return None

    def keep(self, side: int, head: bytes, total: int) -> int:
        return min(total, MAX_PDU_KEEP)

    def stop(self, side: int, why: str) -> None:
        super().stop(side, self._why.pop(side, why))

    def pdu(self, side: int, data: bytes, total: int, at: At) -> None:
        if data[0] != SEQUENCE:
            self._sasl_buffer(side, data, total, at)
            return
        found = message_at(data)
        if found is None:
            self.stop(side, "ldap: not an LDAPMessage")
            return
        self._message(side, found[0], at)

    def datagram(self, side: int, data: bytes, at: At) -> None:
        """CLDAP: one or more LDAPMessages in one datagram (RFC 1798 3)."""
        offset = 0
        for _ in range(MAX_MESSAGES_PER_BUFFER):
            if offset >= len(data):
                return
            found = message_at(data, offset)
            if found is None:
                self.record.count("ldap_datagrams_unread")
                return
            self._message(side, found[0], at)
            offset = found[1]

    def _sasl_buffer(self, side: int, data: bytes, total: int, at: At) -> None:
        """RFC 4422 3.7: a security layer buffer; read on only while its token is unsealed."""
        length = total - 4
        token = first_bytes._sasl_token(data[4:], length)
        if token is None:
            self._facts["sasl_protection"] = self._facts["sasl_protection"] or "unknown"
            self.stop(side, "ldap: sasl-wrapped")
            return
        layer, clear = token
        self._facts["sasl_token"] = self._facts["sasl_token"] or layer.token
        if layer.sealed or clear is None:
            self._facts["sasl_protection"] = "sealed"
            self.stop(side, "ldap: sasl-wrapped (sealed)")
            return
        if self._facts["sasl_protection"] is None:
            self._facts["sasl_protection"] = "signed"
        self.record.count("ldap_sasl_signed_buffers")
        offset = 0
        for _ in range(MAX_MESSAGES_PER_BUFFER):
            found = message_at(clear, offset)
            if found is None:
                return
            self._message(side, found[0], at)
            offset = found[1]

    # --- messages --------------------------------------------------------------------------

    def _message(self, side: int, message: Message, at: At) -> None:
        self._facts["messages"] += 1
        op = message.op
        if op in (_SEARCH_ENTRY, _SEARCH_REFERENCE):
            request = self._pending.get(message.message_id)
            key = "entries" if op == _SEARCH_ENTRY else "references"
            if request is not None:
                request[key] = request.get(key, 0) + 1
            else:
                self.record.count(f"ldap_{key}_unmatched")
            return
        if op in _REQUESTS:
            self._request(side, message, at)
        elif op in _RESULTS:
            self._response(side, message, at)
        else:
            self.record.op(at, side, PROTOCOL, OPERATIONS[op], message_id=message.message_id)

    def _request(self, side: int, message: Message, at: At) -> None:
        data, fields, op = message.data, message.fields, message.op
        target: str | None = None
        extra: dict[str, Any] = {}
        if op == _ABANDON_REQUEST:
            value = integer(data, message.protocol_op)
            target = str(value) if value is not None else None
        elif op == _DEL_REQUEST:
            target = _text(data, message.protocol_op)  # 4.8: DelRequest ::= [APPLICATION 10] LDAPDN
        elif op == _EXTENDED_REQUEST:
            if fields and fields[0].tag == _EXTENDED_NAME:
                target = _text(data, fields[0])
                if target == STARTTLS_OID:
                    self._starttls.add(message.message_id)
                    self._facts["starttls"] = True
        elif fields and fields[0].tag == OCTET_STRING:
            target = _text(data, fields[0])  # the entry's LDAPDN (4.5.1, 4.6, 4.7, 4.8, 4.9)
        elif op == _BIND_REQUEST and len(fields) >= 2 and fields[1].tag == OCTET_STRING:
            target = _text(data, fields[1])  # 4.2: version, name, authentication
        if op == _SEARCH_REQUEST:
            extra = self._search(data, fields)
        entry = self.record.op(
            at, side, PROTOCOL, OPERATIONS[op], target=target, message_id=message.message_id
        )
        entry.update(extra)
        if op == _BIND_REQUEST:
            self._bind(side, message, entry, at)
        if op not in (_UNBIND_REQUEST, _ABANDON_REQUEST):  # these have no response
            if len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[message.message_id] = entry

    def _search(self, data: bytes, fields: list[Element]) -> dict[str, Any]:
        """4.5.1: baseObject, scope, derefAliases, sizeLimit, timeLimit, typesOnly, filter,
        attributes."""
        extra: dict[str, Any] = {}
        if fields and fields[0].tag == OCTET_STRING:
            extra["base"] = _text(data, fields[0])
        if len(fields) > 1 and fields[1].tag == ENUMERATED:
            scope = integer(data, fields[1])
            extra["scope"] = SCOPES.get(scope, str(scope)) if scope is not None else None
        if len(fields) > 6:
            extra["filter"] = render_filter(data, fields[6])
        if len(fields) > 7 and fields[7].tag == SEQUENCE:
            names = children(data, fields[7])
            extra["attributes"] = [_text(data, n) for n in names[:MAX_ATTRIBUTES]]
        return extra

    def _bind(self, side: int, message: Message, entry: dict[str, Any], at: At) -> None:
        data, fields = message.data, message.fields
        if len(fields) < 3:
            return
        name = _text(data, fields[1]) if fields[1].tag == OCTET_STRING else ""
        choice = fields[2]
        bind: dict[str, Any] = {"kind": None}
        if choice.tag == _SIMPLE:
            password = choice.end > choice.start
            method = "simple" if password else ("unauthenticated" if name else "anonymous")
            entry.update(method=method, password_sent=password)
            bind = {
                "kind": "simple",
                "identity": {
                    "protocol": "ldap-simple",
                    "account": name,
                    "method": method,
                    "carrier": "ldap",
                    "password_sent": password,
                },
            }
        elif choice.tag == _SASL:
            credentials = children(data, choice)
            mechanism = (
                _text(data, credentials[0])
                if credentials and credentials[0].tag == OCTET_STRING
                else ""
            )
            entry.update(method="sasl", mechanism=mechanism)
            bind = {"kind": "sasl", "mechanism": mechanism, "identity": None}
            blob = _raw(data, credentials[1]) if len(credentials) > 1 else b""
            if mechanism.upper() == "DIGEST-MD5" and blob:
                user, realm = _digest_user(blob)
                if user is not None:
                    bind["identity"] = {
                        "protocol": "ldap-sasl",
                        "account": user,
                        "realm": realm,
                        "method": "DIGEST-MD5",
                        "carrier": "ldap",
                    }
            elif mechanism.upper() == "EXTERNAL":
                bind["identity"] = {
                    "protocol": "ldap-sasl",
                    "account": _cut(blob.decode("utf-8", errors="replace")) or None,
                    "method": "EXTERNAL",
                    "carrier": "ldap",
                }
            elif blob:
                bind["auth"] = self.auth.token(at, side, blob)
        elif choice.tag in _SICILY:
            entry.update(method=_SICILY[choice.tag])
            bind = {"kind": "sicily", "final": choice.tag == _SICILY_RESPONSE}
            blob = _raw(data, choice)
            if blob.startswith(_NTLMSSP):
                bind["auth"] = self.auth.token(at, side, blob)
        else:
            entry.update(method=f"[{choice.tag & 0x1F}]")
        if len(self._facts["binds"]) < 16:
            self._facts["binds"].append(entry.get("method"))
        if len(self._binds) >= MAX_PENDING:
            self._binds.pop(next(iter(self._binds)))
        self._binds[message.message_id] = bind

    def _response(self, side: int, message: Message, at: At) -> None:
        data, fields = message.data, message.fields
        code = integer(data, fields[0]) if fields and fields[0].tag == ENUMERATED else None
        status = RESULT_CODES.get(code, str(code)) if code is not None else None
        target = None
        if message.op == _EXTENDED_RESPONSE:
            names = [f for f in fields[3:] if f.tag == _EXTENDED_RESPONSE_NAME]
            target = _text(data, names[0]) if names else None
        self.record.op(
            at,
            side,
            PROTOCOL,
            OPERATIONS[message.op],
            target=target,
            status=status,
            message_id=message.message_id,
        )
        request = self._pending.pop(message.message_id, None)
        if request is not None and status is not None:
            request["status"] = status
        if message.op == _BIND_RESPONSE:
            self._bind_response(side, message, code, status, at)
        elif message.op == _EXTENDED_RESPONSE and message.message_id in self._starttls:
            self._starttls.discard(message.message_id)
            if code == SUCCESS:
                # 4.14.2: the TLS handshake follows the response on both sides.
                self._why[0] = self._why[1] = "ldap: tls after StartTLS"
                self.stop(0, "")
                self.stop(1, "")

    def _bind_response(
        self, side: int, message: Message, code: int | None, status: str | None, at: At
    ) -> None:
        data, fields = message.data, message.fields
        bind = self._binds.pop(message.message_id, None)
        if bind is None:
            return
        kind = bind.get("kind")
        outcome = "success" if code == SUCCESS else (status or "unknown")
        if kind == "simple":
            self.record.identity(dict(bind["identity"], outcome=outcome))
            return
        if kind == "sasl":
            credentials = [f for f in fields[3:] if f.tag == _SERVER_SASL_CREDS]
            if credentials and credentials[0].end > credentials[0].start:
                self.auth.token(at, side, _raw(data, credentials[0]))
            if code == SASL_BIND_IN_PROGRESS:
                self._binds[message.message_id] = bind  # the next round may reuse the ID
                return
            if bind.get("identity") is not None:
                self.record.identity(dict(bind["identity"], outcome=outcome))
            else:
                self.auth.outcome(outcome, bind.get("auth"))
            if code == SUCCESS and bind.get("mechanism", "").upper() in _LAYERED_MECHANISMS:
                self._sasl = True
            return
        if kind == "sicily":
            # [MS-ADTS] 5.1.1.1.3: SicilyBindResponse carries the server's NTLM CHALLENGE in
            # the place of matchedDN.
            if len(fields) > 1 and _raw(data, fields[1]).startswith(_NTLMSSP):
                self.auth.token(at, side, _raw(data, fields[1]))
            if bind.get("final") or code != SUCCESS:
                self.auth.outcome(outcome, bind.get("auth"))

    def end(self) -> None:
        """Binds never answered still name who tried."""
        for bind in self._binds.values():
            if bind.get("kind") == "simple" or (bind.get("identity") is not None):
                self.record.identity(dict(bind["identity"]))
        self._binds.clear()

    def facts(self) -> Facts:
        facts = dict(self._facts)
        facts["auth"] = self.auth.facts()
        return facts
