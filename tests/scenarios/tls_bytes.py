"""TLS handshake bytes and the X.509 certificates they carry, packed with struct and DER.

scapy's TLS layer needs the ``cryptography`` package, which flowaudit does not depend on, so the
records here are written by hand from the specs: the record layer (RFC 5246 6.2.1), ClientHello
and ServerHello (RFC 5246 7.4.1.2-7.4.1.3, RFC 8446 4.1.2-4.1.3), Certificate (RFC 5246 7.4.2)
and the extensions server_name (RFC 6066 3) and supported_versions (RFC 8446 4.2.1). The
certificates are syntactically valid X.509 v3 (RFC 5280 4.1) with a fixed, meaningless
signature: enough for any dissector to read issuer and subject, useless to a verifier.
"""

from __future__ import annotations

import hashlib
import struct

TLS10, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304

# RFC 5246 6.2.1 ContentType; RFC 5246 7.4 HandshakeType.
_HANDSHAKE, _CHANGE_CIPHER_SPEC, _APPLICATION_DATA = 22, 20, 23
_CLIENT_HELLO, _SERVER_HELLO, _CERTIFICATE, _SERVER_KEY_EXCHANGE = 1, 2, 11, 12
_SERVER_HELLO_DONE, _CLIENT_KEY_EXCHANGE = 14, 16
# Cipher suites (IANA TLS registry): TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384,
# TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
# TLS_RSA_WITH_AES_256_CBC_SHA, TLS_RSA_WITH_AES_128_CBC_SHA.
_CLIENT_SUITES = (0x1301, 0x1302, 0xC030, 0xC02F, 0x0035, 0x002F)
_LEGACY_SUITES = (0x0035, 0x002F)

# --- DER (ITU-T X.690 8 and 10) -------------------------------------------------------------


def der(tag: int, content: bytes) -> bytes:
    """One DER TLV: definite length, short form below 128, else long form (X.690 8.1.3)."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def der_sequence(*items: bytes) -> bytes:
    return der(0x30, b"".join(items))


def der_integer(value: int) -> bytes:
    """A non-negative INTEGER, with the leading zero byte DER needs when the top bit is set."""
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return der(0x02, body)


def der_oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER (X.690 8.19): first two arcs folded, base-128 for the rest."""
    arcs = [int(arc) for arc in dotted.split(".")]
    numbers = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    body = bytearray()
    for number in numbers:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body.extend(reversed(chunk))
    return der(0x06, bytes(body))


def _name(common_name: str, organisation: str | None = None) -> bytes:
    """An X.501 Name: RDNSequence of single-attribute sets (RFC 5280 4.1.2.4)."""
    rdns = []
    if organisation:
        organisation_attr = der_sequence(der_oid("2.5.4.10"), der(0x0C, organisation.encode()))
        rdns.append(der(0x31, organisation_attr))
    common_attr = der_sequence(der_oid("2.5.4.3"), der(0x0C, common_name.encode()))
    rdns.append(der(0x31, common_attr))
    return der_sequence(*rdns)


def _fake_bytes(seed: str, size: int) -> bytes:
    """Deterministic filler (key modulus, signature, random) derived from a label."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def x509_certificate(
    subject_cn: str,
    issuer_cn: str,
    *,
    issuer_org: str | None = None,
    dns_names: tuple[str, ...] = (),
    serial: int = 0x1F00_0000_0000_0042,
) -> bytes:
    """A DER X.509 v3 certificate (RFC 5280 4.1): RSA key, sha256WithRSAEncryption, SAN."""
    sha256_rsa = der_sequence(der_oid("1.2.840.113549.1.1.11"), der(0x05, b""))
    modulus = int.from_bytes(b"\xc5" + _fake_bytes(f"n/{subject_cn}", 255), "big") | 1
    rsa_key = der_sequence(der_integer(modulus), der_integer(65537))
    spki = der_sequence(
        der_sequence(der_oid("1.2.840.113549.1.1.1"), der(0x05, b"")),
        der(0x03, b"\x00" + rsa_key),
    )
    validity = der_sequence(der(0x17, b"230101000000Z"), der(0x17, b"260101000000Z"))
    extensions = []
    if dns_names:
        # RFC 5280 4.2.1.6 subjectAltName: GeneralNames, dNSName is [2] IA5String.
        names = der_sequence(*(der(0x82, name.encode()) for name in dns_names))
        extensions.append(der_sequence(der_oid("2.5.29.17"), der(0x04, names)))
    # RFC 5280 4.2.1.12 extKeyUsage: id-kp-serverAuth.
    server_auth = der_sequence(der_oid("1.3.6.1.5.5.7.3.1"))
    extensions.append(der_sequence(der_oid("2.5.29.37"), der(0x04, server_auth)))
    tbs = der_sequence(
        der(0xA0, der_integer(2)),  # [0] EXPLICIT Version v3
        der_integer(serial),
        sha256_rsa,
        _name(issuer_cn, issuer_org),
        validity,
        _name(subject_cn),
        spki,
        der(0xA3, der_sequence(*extensions)),  # [3] EXPLICIT Extensions
    )
    signature = der(0x03, b"\x00" + _fake_bytes(f"sig/{subject_cn}/{issuer_cn}", 256))
    return der_sequence(tbs, sha256_rsa, signature)


# --- TLS ------------------------------------------------------------------------------------


def _u24(value: int) -> bytes:
    return struct.pack("!I", value)[1:]


def record(content_type: int, body: bytes, version: int = TLS12) -> bytes:
    """TLSPlaintext (RFC 5246 6.2.1): type, legacy version, length, fragment."""
    return struct.pack("!BHH", content_type, version, len(body)) + body


def _handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _u24(len(body)) + body


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def _server_name(host: str) -> bytes:
    """RFC 6066 3: ServerNameList with one host_name entry."""
    name = host.encode()
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return _extension(0, struct.pack("!H", len(entry)) + entry)


def client_hello(server_name: str | None, version: int = TLS12, *, seed: str = "c") -> bytes:
    """A ClientHello record. ``version`` 1.3 offers 1.3 and 1.2 in supported_versions."""
    legacy = min(version, TLS12)
    suites = _CLIENT_SUITES if version >= TLS12 else _LEGACY_SUITES
    extensions = b""
    if server_name:
        extensions += _server_name(server_name)
    if version >= TLS12:
        # RFC 8422 5.1.1 supported_groups (x25519, secp256r1); RFC 5246 7.4.1.4.1
        # signature_algorithms (rsa_pss_rsae_sha256, rsa_pkcs1_sha256, ecdsa_secp256r1_sha256).
        extensions += _extension(10, struct.pack("!HHH", 4, 0x001D, 0x0017))
        extensions += _extension(13, struct.pack("!HHHH", 6, 0x0804, 0x0401, 0x0403))
    if version == TLS13:
        # RFC 8446 4.2.1 supported_versions and 4.2.8 key_share (x25519, 32-byte key).
        extensions += _extension(43, b"\x04" + struct.pack("!HH", TLS13, TLS12))
        share = struct.pack("!HH", 0x001D, 32) + _fake_bytes(f"ks/{seed}", 32)
        extensions += _extension(51, struct.pack("!H", len(share)) + share)
    body = (
        struct.pack("!H", legacy)
        + _fake_bytes(f"random/{seed}", 32)
        + b"\x20"
        + _fake_bytes(f"session/{seed}", 32)
        + struct.pack("!H", 2 * len(suites))
        + b"".join(struct.pack("!H", suite) for suite in suites)
        + b"\x01\x00"  # one compression method: null
    )
    if extensions:
        body += struct.pack("!H", len(extensions)) + extensions
    # RFC 8446 5.1: a ClientHello record may say 0x0301 for compatibility; TLS 1.0 says it anyway.
    return record(_HANDSHAKE, _handshake(_CLIENT_HELLO, body), TLS10)


def _server_hello(version: int, seed: str) -> bytes:
    legacy = min(version, TLS12)
    if version == TLS13:
        suite = 0x1301
        extensions = _extension(43, struct.pack("!H", TLS13))
        share = struct.pack("!HH", 0x001D, 32) + _fake_bytes(f"sks/{seed}", 32)
        extensions += _extension(51, share)
    else:
        suite = 0xC030 if version == TLS12 else 0x0035
        extensions = _extension(0xFF01, b"\x00")  # RFC 5746 renegotiation_info, empty
    body = (
        struct.pack("!H", legacy)
        + _fake_bytes(f"srandom/{seed}", 32)
        + b"\x20"
        + _fake_bytes(f"session/{seed}", 32)
        + struct.pack("!HB", suite, 0)
        + struct.pack("!H", len(extensions))
        + extensions
    )
    return _handshake(_SERVER_HELLO, body)


def server_flight(version: int, certificates: tuple[bytes, ...] = (), *, seed: str = "s") -> bytes:
    """The server's first flight as records.

    TLS <= 1.2: ServerHello, Certificate, ServerHelloDone in one record (RFC 5246 7.3).
    TLS 1.3: ServerHello, then change_cipher_spec (RFC 8446 D.4) and an encrypted record
    (the certificate is encrypted from here on, RFC 8446 4.4.2).
    """
    record_version = min(version, TLS12)
    if version == TLS13:
        return (
            record(_HANDSHAKE, _server_hello(version, seed), TLS12)
            + record(_CHANGE_CIPHER_SPEC, b"\x01", TLS12)
            + record(_APPLICATION_DATA, _fake_bytes(f"ee/{seed}", 96), TLS12)
        )
    chain = b"".join(_u24(len(cert)) + cert for cert in certificates)
    messages = _server_hello(version, seed)
    if certificates:
        messages += _handshake(_CERTIFICATE, _u24(len(chain)) + chain)
    if version == TLS12:
        # RFC 8422 5.4 ServerKeyExchange for ECDHE_RSA: named_curve x25519, the point, then
        # the signature with its algorithm (RFC 5246 7.4.1.4.1: rsa_pkcs1_sha256).
        params = struct.pack("!BHB", 3, 0x001D, 32) + _fake_bytes(f"skx/{seed}", 32)
        signed = struct.pack("!HH", 0x0401, 256) + _fake_bytes(f"skxsig/{seed}", 256)
        messages += _handshake(_SERVER_KEY_EXCHANGE, params + signed)
    messages += _handshake(_SERVER_HELLO_DONE, b"")
    return record(_HANDSHAKE, messages, record_version)


def client_finish(version: int, *, seed: str = "c") -> bytes:
    """The client's next flight, opaque after the key exchange: CCS and encrypted records."""
    record_version = min(version, TLS12)
    if version == TLS13:
        return record(_CHANGE_CIPHER_SPEC, b"\x01", TLS12) + record(
            _APPLICATION_DATA, _fake_bytes(f"fin/{seed}", 53), TLS12
        )
    if version == TLS12:
        # RFC 8422 5.7 ClientECDiffieHellmanPublic: ECPoint, opaque <1..255> (x25519: 32 bytes).
        exchange = b"\x20" + _fake_bytes(f"kx/{seed}", 32)
    else:
        # RFC 5246 7.4.7.1 EncryptedPreMasterSecret under the server's 2048-bit RSA key.
        exchange = struct.pack("!H", 256) + _fake_bytes(f"kx/{seed}", 256)
    key_exchange = _handshake(_CLIENT_KEY_EXCHANGE, exchange)
    return (
        record(_HANDSHAKE, key_exchange, record_version)
        + record(_CHANGE_CIPHER_SPEC, b"\x01", record_version)
        + record(_HANDSHAKE, _fake_bytes(f"fin/{seed}", 40), record_version)
    )


def application_data(size: int, version: int = TLS12, *, seed: str = "data") -> bytes:
    return record(_APPLICATION_DATA, _fake_bytes(seed, size), min(version, TLS12))
