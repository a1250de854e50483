"""Real Kerberos V5 bytes for tests: AS-REQ, AS-REP, TGS-REQ, TGS-REP, KRB-ERROR (RFC 4120 5).

DER built with the LDAP builders' BER encoder. ``tcp_record`` adds the 4-byte length of
RFC 4120 7.2.2; over UDP a message is the datagram as is (7.2.1).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from tests.protobytes.ldap import integer, octets, sequence, tlv

AS_REQ, AS_REP, TGS_REQ, TGS_REP, AP_REQ, KRB_ERROR = 10, 11, 12, 13, 14, 30
NT_PRINCIPAL, NT_SRV_INST = 1, 2  # RFC 4120 6.2 name types
KDC_ERR_C_PRINCIPAL_UNKNOWN = 6  # RFC 4120 7.5.9
KDC_ERR_PREAUTH_REQUIRED = 25
PA_TGS_REQ, PA_PAC_REQUEST = 1, 128
AES256_CTS_HMAC_SHA1_96, RC4_HMAC = 18, 23

_TILL = "20370913024805Z"
_NOW = "20240102030405Z"


def tcp_record(message: bytes) -> bytes:
    """RFC 4120 7.2.2: each message over TCP is preceded by its length, 4 bytes big-endian."""
    return struct.pack(">I", len(message)) + message


def explicit(number: int, value: bytes) -> bytes:
    """``[number] EXPLICIT`` context tag (constructed)."""
    return tlv(0xA0 | number, value)


def general_string(text: str) -> bytes:
    return octets(text, 0x1B)


def principal(name: str, name_type: int = NT_PRINCIPAL) -> bytes:
    """RFC 4120 5.2.2 PrincipalName: name-type [0], name-string [1] (components split at "/")."""
    parts = sequence(*(general_string(part) for part in name.split("/")))
    return sequence(explicit(0, integer(name_type)), explicit(1, parts))


def encrypted_data(etype: int, cipher: bytes, kvno: int | None = None) -> bytes:
    """RFC 4120 5.2.9 EncryptedData: etype [0], kvno [1] OPTIONAL, cipher [2]."""
    fields = explicit(0, integer(etype))
    if kvno is not None:
        fields += explicit(1, integer(kvno))
    return sequence(fields + explicit(2, octets(cipher)))


def ticket(realm: str, sname: str) -> bytes:
    """RFC 4120 5.3 Ticket [APPLICATION 1]: tkt-vno, realm, sname, enc-part."""
    body = sequence(
        explicit(0, integer(5)),
        explicit(1, general_string(realm)),
        explicit(2, principal(sname, NT_SRV_INST)),
        explicit(3, encrypted_data(AES256_CTS_HMAC_SHA1_96, bytes(range(64)), kvno=2)),
    )
    return tlv(0x61, body)


def _pa_data(padata_type: int, value: bytes) -> bytes:
    """RFC 4120 5.2.7 PA-DATA: padata-type [1], padata-value [2]."""
    return sequence(explicit(1, integer(padata_type)), explicit(2, octets(value)))


def _req_body(realm: str, sname: str, cname: str | None, etypes: Sequence[int]) -> bytes:
    """RFC 4120 5.4.1 KDC-REQ-BODY: kdc-options, cname, realm, sname, till, nonce, etype."""
    fields = explicit(0, tlv(0x03, b"\x00\x40\x81\x00\x10"))  # forwardable renewable canon.
    if cname is not None:
        fields += explicit(1, principal(cname))
    fields += explicit(2, general_string(realm))
    fields += explicit(3, principal(sname, NT_SRV_INST))
    fields += explicit(5, octets(_TILL, 0x18))
    fields += explicit(7, integer(0x1234ABCD))
    fields += explicit(8, sequence(*(integer(e) for e in etypes)))
    return sequence(fields)


def as_req(
    realm: str,
    cname: str,
    *,
    sname: str | None = None,
    etypes: Sequence[int] = (AES256_CTS_HMAC_SHA1_96, RC4_HMAC),
) -> bytes:
    """RFC 4120 5.4.1 AS-REQ [APPLICATION 10], asking for ``krbtgt/REALM`` by default."""
    padata = sequence(_pa_data(PA_PAC_REQUEST, sequence(explicit(0, tlv(0x01, b"\xff")))))
    body = sequence(
        explicit(1, integer(5)),
        explicit(2, integer(AS_REQ)),
        explicit(3, padata),
        explicit(4, _req_body(realm, sname or f"krbtgt/{realm}", cname, etypes)),
    )
    return tlv(0x6A, body)


def ap_req(realm: str, sname: str) -> bytes:
    """RFC 4120 5.5.1 AP-REQ [APPLICATION 14]: ticket and an (opaque) authenticator."""
    body = sequence(
        explicit(0, integer(5)),
        explicit(1, integer(AP_REQ)),
        explicit(2, tlv(0x03, b"\x00\x00\x00\x00\x00")),
        explicit(3, ticket(realm, sname)),
        explicit(4, encrypted_data(AES256_CTS_HMAC_SHA1_96, bytes(range(48)))),
    )
    return tlv(0x6E, body)


def tgs_req(realm: str, sname: str, *, etypes: Sequence[int] = (AES256_CTS_HMAC_SHA1_96,)) -> bytes:
    """RFC 4120 5.4.1 TGS-REQ [APPLICATION 12]: PA-TGS-REQ carrying the AP-REQ with the TGT."""
    padata = sequence(_pa_data(PA_TGS_REQ, ap_req(realm, f"krbtgt/{realm}")))
    body = sequence(
        explicit(1, integer(5)),
        explicit(2, integer(TGS_REQ)),
        explicit(3, padata),
        explicit(4, _req_body(realm, sname, None, etypes)),
    )
    return tlv(0x6C, body)


def kdc_rep(msg_type: int, realm: str, cname: str, sname: str) -> bytes:
    """RFC 4120 5.4.2 AS-REP [APPLICATION 11] / TGS-REP [APPLICATION 13]."""
    body = sequence(
        explicit(0, integer(5)),
        explicit(1, integer(msg_type)),
        explicit(3, general_string(realm)),
        explicit(4, principal(cname)),
        explicit(5, ticket(realm, sname)),
        explicit(6, encrypted_data(AES256_CTS_HMAC_SHA1_96, bytes(range(96)), kvno=3)),
    )
    return tlv(0x60 | msg_type, body)


def krb_error(
    error_code: int, realm: str, sname: str, *, cname: str | None = None, crealm: str | None = None
) -> bytes:
    """RFC 4120 5.9.1 KRB-ERROR [APPLICATION 30]."""
    fields = explicit(0, integer(5)) + explicit(1, integer(KRB_ERROR))
    fields += explicit(4, octets(_NOW, 0x18)) + explicit(5, integer(123456))
    fields += explicit(6, integer(error_code))
    if crealm is not None:
        fields += explicit(7, general_string(crealm))
    if cname is not None:
        fields += explicit(8, principal(cname))
    fields += explicit(9, general_string(realm)) + explicit(10, principal(sname, NT_SRV_INST))
    return tlv(0x7E, sequence(fields))
