"""Real LDAP bytes for tests: LDAPMessages in BER (RFC 4511 4, X.690 8 definite lengths).

``tlv`` and the small encoders here are also used by the Kerberos builders (both are ASN.1 BER).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

STARTTLS_OID = "1.3.6.1.4.1.1466.20037"  # RFC 4511 4.14.1

# RFC 4511 4.5.1: search scope and the protocolOp application tags used here.
SCOPE_BASE, SCOPE_SUBTREE = 0, 2
SUCCESS, INVALID_CREDENTIALS = 0, 49  # RFC 4511 4.1.9 resultCode


def length(size: int) -> bytes:
    """X.690 8.1.3: short form below 128, else 0x80 | count and the count bytes."""
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + length(len(content)) + content


def integer(value: int, tag: int = 0x02) -> bytes:
    """X.690 8.3: the shortest two's complement form."""
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def octets(value: bytes | str, tag: int = 0x04) -> bytes:
    return tlv(tag, value.encode("utf-8") if isinstance(value, str) else value)


def sequence(*items: bytes, tag: int = 0x30) -> bytes:
    return tlv(tag, b"".join(items))


def message(message_id: int, operation: bytes) -> bytes:
    """RFC 4511 4.1.1 LDAPMessage: messageID and protocolOp (no controls)."""
    return sequence(integer(message_id), operation)


def simple_bind_request(message_id: int, name: str, password: str) -> bytes:
    """RFC 4511 4.2 BindRequest [APPLICATION 0]: version 3, name, simple [0] password."""
    return message(message_id, sequence(integer(3), octets(name), octets(password, 0x80), tag=0x60))


def sasl_bind_request(message_id: int, mechanism: str, credentials: bytes = b"") -> bytes:
    """BindRequest with sasl [3] SaslCredentials { mechanism, credentials }."""
    sasl = sequence(octets(mechanism), octets(credentials), tag=0xA3)
    return message(message_id, sequence(integer(3), octets(""), sasl, tag=0x60))


def _result(code: int, matched: str = "", diagnostic: str = "") -> bytes:
    """RFC 4511 4.1.9 LDAPResult fields: resultCode ENUMERATED, matchedDN, diagnosticMessage."""
    return integer(code, 0x0A) + octets(matched) + octets(diagnostic)


def bind_response(message_id: int, code: int = SUCCESS) -> bytes:
    """RFC 4511 4.2.2 BindResponse [APPLICATION 1]."""
    return message(message_id, tlv(0x61, _result(code)))


def search_request(
    message_id: int,
    base: str,
    *,
    scope: int = SCOPE_SUBTREE,
    attribute: str = "objectClass",
    attributes: Sequence[str] = (),
) -> bytes:
    """RFC 4511 4.5.1 SearchRequest [APPLICATION 3] with filter ``(attribute=*)``."""
    body = (
        octets(base)
        + integer(scope, 0x0A)
        + integer(0, 0x0A)  # derefAliases neverDerefAliases
        + integer(0)  # sizeLimit
        + integer(0)  # timeLimit
        + tlv(0x01, b"\x00")  # typesOnly FALSE
        + octets(attribute, 0x87)  # filter present [7]
        + sequence(*(octets(name) for name in attributes))
    )
    return message(message_id, tlv(0x63, body))


def search_result_entry(message_id: int, dn: str, attributes: dict[str, list[str]]) -> bytes:
    """RFC 4511 4.5.2 SearchResultEntry [APPLICATION 4]."""
    partial = b"".join(
        sequence(octets(name), sequence(*(octets(v) for v in values), tag=0x31))
        for name, values in attributes.items()
    )
    return message(message_id, tlv(0x64, octets(dn) + sequence(partial)))


def search_result_done(message_id: int, code: int = SUCCESS) -> bytes:
    """RFC 4511 4.5.2 SearchResultDone [APPLICATION 5]."""
    return message(message_id, tlv(0x65, _result(code)))


def extended_request(message_id: int, oid: str, value: bytes | None = None) -> bytes:
    """RFC 4511 4.12 ExtendedRequest [APPLICATION 23]: requestName [0], requestValue [1]."""
    body = octets(oid, 0x80) + (octets(value, 0x81) if value is not None else b"")
    return message(message_id, tlv(0x77, body))


def extended_response(message_id: int, code: int = SUCCESS, oid: str | None = None) -> bytes:
    """RFC 4511 4.12 ExtendedResponse [APPLICATION 24] (responseName [10])."""
    body = _result(code) + (octets(oid, 0x8A) if oid is not None else b"")
    return message(message_id, tlv(0x78, body))


def unbind_request(message_id: int) -> bytes:
    """RFC 4511 4.3 UnbindRequest [APPLICATION 2] NULL (primitive)."""
    return message(message_id, b"\x42\x00")


def sasl_buffer(token: bytes) -> bytes:
    """RFC 4422 3.7: a security layer buffer, 4-byte big-endian length then the token."""
    return struct.pack(">I", len(token)) + token


def krb5_wrap_clear(payload: bytes, *, sequence_number: int = 0, rotation: int = 0) -> bytes:
    """RFC 4121 4.2.6.2 Wrap token without confidentiality: header, payload, 12-byte checksum.

    Flags 0x04 (AcceptorSubkey) | 0x01 (SentByAcceptor) are left out: sent by the initiator.
    The data after the header is rotated right by ``rotation`` octets (4.2.5).
    """
    checksum = bytes(range(0xA0, 0xAC))
    data = payload + checksum
    if rotation:
        cut = len(data) - rotation % len(data)
        data = data[cut:] + data[:cut]
    header = b"\x05\x04" + bytes([0x00, 0xFF]) + struct.pack(">HHQ", 12, rotation, sequence_number)
    return header + data


def cldap_netlogon_ping(message_id: int, domain: str) -> bytes:
    """[MS-ADTS] 6.3.3 LDAP ping: rootDSE search for Netlogon with (DnsDomain=...) ..."""
    equality = sequence(octets("DnsDomain"), octets(domain), tag=0xA3)
    ntver = sequence(octets("NtVer"), octets(b"\x06\x00\x00\x00"), tag=0xA3)
    body = (
        octets("")
        + integer(SCOPE_BASE, 0x0A)
        + integer(0, 0x0A)
        + integer(0)
        + integer(0)
        + tlv(0x01, b"\x00")
        + sequence(equality, ntver, tag=0xA0)  # and [0]
        + sequence(octets("Netlogon"))
    )
    return message(message_id, tlv(0x63, body))
