"""SASL security layer tokens as LDAP carries them after a bind (RFC 4422 3.7 buffers).

* RFC 4121 4.2.6.2 Kerberos wrap tokens with the Sealed flag (``krb5_wrap_sealed``; the one
  without it is ``tests.protobytes.ldap.krb5_wrap_clear``);
* RFC 1964 1.2.2 wrap tokens (RFC 4757 7.3 RC4-HMAC: SGN_ALG 11 00, SEAL_ALG 10 00, or ff ff
  for none) inside the RFC 2743 3.1 framing, as Windows sends them with RC4 keys;
* NTLMSSP_MESSAGE_SIGNATURE (MS-NLMP 2.2.2.9, Version 1) before the message, as GSS-SPNEGO
  with NTLM sends it, the message then in clear (signing) or RC4-encrypted (sealing).

The "ciphertext" here is the clear bytes XOR-ed with a pad: what matters to a reader is that it
is not an LDAPMessage, as real ciphertext is not.
"""

from __future__ import annotations

import struct

from tests.protobytes.ldap import tlv

KRB5_OID = bytes.fromhex("06092a864886f712010202")  # 1.2.840.113554.1.2.2 (RFC 1964 1.1)

# RFC 4121 4.2.6.2 Flags
SENT_BY_ACCEPTOR = 0x01
SEALED = 0x02
ACCEPTOR_SUBKEY = 0x04


def _scrambled(data: bytes) -> bytes:
    return bytes(byte ^ (0x5A + index * 7) % 256 for index, byte in enumerate(data))


def krb5_wrap_sealed(
    payload: bytes, *, acceptor: bool = False, sequence_number: int = 0, rotation: int = 28
) -> bytes:
    """RFC 4121 4.2.6.2 Wrap token with confidentiality: header (Flags with Sealed), then the
    encrypted payload, its encrypted header copy and checksum (here: scrambled bytes)."""
    flags = SEALED | ACCEPTOR_SUBKEY | (SENT_BY_ACCEPTOR if acceptor else 0)
    header = bytes([0x05, 0x04, flags, 0xFF]) + struct.pack(">HHQ", 0, rotation, sequence_number)
    return header + _scrambled(payload + bytes(16) + bytes(range(12)))


def rfc1964_wrap(payload: bytes, *, sealed: bool, sequence_number: int = 0) -> bytes:
    """RFC 1964 1.2.2 Wrap token in the RFC 2743 3.1 framing, RC4-HMAC per RFC 4757 7.3."""
    padded = payload + b"\x01"  # RFC 1964 1.2.2.3: 1-8 octets of padding, each its count
    confounder = bytes(range(0xC0, 0xC8))
    token = (
        b"\x02\x01"  # TOK_ID
        + b"\x11\x00"  # SGN_ALG HMAC
        + (b"\x10\x00" if sealed else b"\xff\xff")  # SEAL_ALG RC4 / none
        + b"\xff\xff"  # Filler
        + struct.pack(">Q", sequence_number)  # SND_SEQ (encrypted on the wire; opaque here)
        + bytes(range(0xB0, 0xB8))  # SGN_CKSUM
        + (_scrambled(confounder + padded) if sealed else confounder + padded)
    )
    return tlv(0x60, KRB5_OID + token)


def ntlm_signed(payload: bytes, *, sealed: bool, sequence_number: int = 0) -> bytes:
    """MS-NLMP 2.2.2.9.1 signature (Version 1, 8-byte checksum, SeqNum), then the message."""
    signature = b"\x01\x00\x00\x00" + bytes(range(0xD0, 0xD8)) + struct.pack("<I", sequence_number)
    return signature + (_scrambled(payload) if sealed else payload)
