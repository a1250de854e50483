"""Real TLS bytes for tests: records, ClientHello, the server's first flight, X.509 certificates.

Built from the specifications (RFC 8446 for TLS 1.3, RFC 5246 for TLS 1.2, RFC 6066 3
server_name, RFC 7301 ALPN, RFC 5280 certificates in DER per X.690), not captured: a test says
exactly which version, name and certificate it speaks of. The certificate's signature is dummy
bytes; everything else is a syntactically valid X.509 v3 certificate that tshark and openssl
read.
"""

from __future__ import annotations

from collections.abc import Sequence

TLS10, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304
SSL30 = 0x0300

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23

CLIENT_HELLO = 1
SERVER_HELLO = 2
CERTIFICATE = 11
SERVER_HELLO_DONE = 14

EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
EXT_KEY_SHARE = 51

# A few common suites (IANA TLS Cipher Suites registry).
TLS_AES_128_GCM_SHA256 = 0x1301
TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 = 0xC030
TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 = 0xC02F
TLS_RSA_WITH_AES_128_CBC_SHA = 0x002F
DEFAULT_SUITES = (
    TLS_AES_128_GCM_SHA256,
    TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    TLS_RSA_WITH_AES_128_CBC_SHA,
)

MAX_FRAGMENT = 16384  # RFC 8446 5.1: a record carries at most 2^14 bytes


def u8(value: int) -> bytes:
    return value.to_bytes(1, "big")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def vector8(data: bytes) -> bytes:
    return u8(len(data)) + data


def vector16(data: bytes) -> bytes:
    return u16(len(data)) + data


def vector24(data: bytes) -> bytes:
    return u24(len(data)) + data


def records(
    content_type: int, payload: bytes, version: int = TLS12, fragment: int = MAX_FRAGMENT
) -> bytes:
    """``payload`` as TLSPlaintext records of at most ``fragment`` bytes each (RFC 8446 5.1)."""
    out = b""
    for at in range(0, max(len(payload), 1), fragment):
        piece = payload[at : at + fragment]
        out += u8(content_type) + u16(version) + vector16(piece)
    return out


def handshake(message_type: int, body: bytes) -> bytes:
    """One Handshake message: type, 24-bit length, body (RFC 8446 4)."""
    return u8(message_type) + vector24(body)


def extension(extension_type: int, data: bytes) -> bytes:
    return u16(extension_type) + vector16(data)


def server_name_extension(host: str) -> bytes:
    """RFC 6066 3: ServerNameList of one host_name (type 0)."""
    entry = u8(0) + vector16(host.encode("ascii"))
    return extension(EXT_SERVER_NAME, vector16(entry))


def alpn_extension(protocols: Sequence[str]) -> bytes:
    """RFC 7301 3.1: ProtocolNameList."""
    names = b"".join(vector8(name.encode("ascii")) for name in protocols)
    return extension(EXT_ALPN, vector16(names))


def client_hello_body(
    sni: str | None = None,
    legacy_version: int = TLS12,
    supported_versions: Sequence[int] | None = None,
    alpn: Sequence[str] | None = None,
    cipher_suites: Sequence[int] = DEFAULT_SUITES,
    random: bytes = bytes(range(32)),
    session_id: bytes = b"",
    extra_extensions: Sequence[bytes] = (),
) -> bytes:
    """ClientHello (RFC 8446 4.1.2; RFC 5246 7.4.1.2 for the legacy fields)."""
    extensions = b""
    if sni is not None:
        extensions += server_name_extension(sni)
    extensions += extension(EXT_SUPPORTED_GROUPS, vector16(u16(0x001D) + u16(0x0017)))
    extensions += extension(EXT_SIGNATURE_ALGORITHMS, vector16(u16(0x0804) + u16(0x0401)))
    if alpn is not None:
        extensions += alpn_extension(alpn)
    if supported_versions is not None:
        listed = b"".join(u16(v) for v in supported_versions)
        extensions += extension(EXT_SUPPORTED_VERSIONS, vector8(listed))
        # TLS 1.3 needs a key share (RFC 8446 4.2.8): a dummy X25519 share.
        share = u16(0x001D) + vector16(bytes(32))
        extensions += extension(EXT_KEY_SHARE, vector16(share))
    for raw in extra_extensions:
        extensions += raw
    return (
        u16(legacy_version)
        + random
        + vector8(session_id)
        + vector16(b"".join(u16(s) for s in cipher_suites))
        + vector8(b"\x00")  # compression: null only
        + vector16(extensions)
    )


def tls_client_hello(
    sni: str | None = None,
    legacy_version: int = TLS12,
    supported_versions: Sequence[int] | None = None,
    alpn: Sequence[str] | None = None,
    *,
    cipher_suites: Sequence[int] = DEFAULT_SUITES,
    extra_extensions: Sequence[bytes] = (),
    record_version: int = TLS10,
    fragment: int = MAX_FRAGMENT,
) -> bytes:
    """A ClientHello in handshake records, as a client's first bytes on the wire.

    The record version of a first ClientHello is commonly 0x0301 (RFC 8446 5.1 allows it).
    """
    body = client_hello_body(
        sni,
        legacy_version,
        supported_versions,
        alpn,
        cipher_suites=cipher_suites,
        extra_extensions=extra_extensions,
    )
    return records(CONTENT_HANDSHAKE, handshake(CLIENT_HELLO, body), record_version, fragment)


def server_hello_body(
    version: int = TLS12,
    cipher_suite: int = TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    alpn_selected: str | None = None,
    random: bytes = bytes(range(32, 64)),
    session_id: bytes = b"",
) -> bytes:
    """ServerHello; for TLS 1.3 legacy_version 0x0303 plus supported_versions (RFC 8446 4.1.3)."""
    extensions = b""
    legacy = version
    if version >= TLS13:
        legacy = TLS12
        extensions += extension(EXT_SUPPORTED_VERSIONS, u16(version))
        extensions += extension(EXT_KEY_SHARE, u16(0x001D) + vector16(bytes(32)))
    if alpn_selected is not None:
        extensions += alpn_extension([alpn_selected])
    body = u16(legacy) + random + vector8(session_id) + u16(cipher_suite) + u8(0)
    if extensions:
        body += vector16(extensions)
    return body


def certificate_body(cert_ders: Sequence[bytes]) -> bytes:
    """TLS 1.2 Certificate: certificate_list of ASN.1Cert (RFC 5246 7.4.2)."""
    return vector24(b"".join(vector24(der) for der in cert_ders))


def tls_server_flight(
    version: int = TLS12,
    cert_der: bytes | Sequence[bytes] | None = None,
    *,
    cipher_suite: int | None = None,
    alpn_selected: str | None = None,
    fragment: int = MAX_FRAGMENT,
) -> bytes:
    """The server's first bytes: ServerHello (+ Certificate + ServerHelloDone up to TLS 1.2).

    TLS 1.3 servers send ServerHello, a ChangeCipherSpec for middlebox compatibility (RFC 8446
    D.4) and then encrypted records: the certificate is never in the clear.
    """
    if cipher_suite is None:
        cipher_suite = TLS_AES_128_GCM_SHA256 if version >= TLS13 else 0xC030
    hello = handshake(SERVER_HELLO, server_hello_body(version, cipher_suite, alpn_selected))
    if version >= TLS13:
        out = records(CONTENT_HANDSHAKE, hello, TLS12, fragment)
        out += records(CONTENT_CHANGE_CIPHER_SPEC, b"\x01", TLS12)
        out += records(CONTENT_APPLICATION_DATA, bytes(range(200)), TLS12)
        return out
    messages = hello
    if cert_der is not None:
        chain = [cert_der] if isinstance(cert_der, bytes) else list(cert_der)
        messages += handshake(CERTIFICATE, certificate_body(chain))
    messages += handshake(SERVER_HELLO_DONE, b"")
    return records(CONTENT_HANDSHAKE, messages, version, fragment)


# --- DER (X.690) and X.509 (RFC 5280) ---------------------------------------------------------

OID_COMMON_NAME = "2.5.4.3"
OID_COUNTRY = "2.5.4.6"
OID_LOCALITY = "2.5.4.7"
OID_ORGANIZATION = "2.5.4.10"
OID_ORGANIZATIONAL_UNIT = "2.5.4.11"
OID_DOMAIN_COMPONENT = "0.9.2342.19200300.100.1.25"
OID_SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
OID_SUBJECT_ALT_NAME = "2.5.29.17"

TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_UTF8_STRING = 0x0C
TAG_PRINTABLE_STRING = 0x13
TAG_IA5_STRING = 0x16
TAG_UTC_TIME = 0x17
TAG_BMP_STRING = 0x1E
TAG_SEQUENCE = 0x30
TAG_SET = 0x31


def der_length(length: int) -> bytes:
    """Definite length, short form below 128, else long form (X.690 8.1.3)."""
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_length(len(content)) + content


def der_sequence(*items: bytes) -> bytes:
    return der(TAG_SEQUENCE, b"".join(items))


def der_set(*items: bytes) -> bytes:
    return der(TAG_SET, b"".join(sorted(items)))  # DER: SET OF sorted by encoding


def der_integer(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return der(TAG_INTEGER, raw)


def der_oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER: first two arcs in one byte, then base-128 arcs (X.690 8.19)."""
    arcs = [int(part) for part in dotted.split(".")]
    values = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    out = b""
    for value in values:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return der(TAG_OID, out)


def der_string(text: str, tag: int = TAG_UTF8_STRING) -> bytes:
    if tag == TAG_BMP_STRING:
        return der(tag, text.encode("utf-16-be"))
    encoding = "utf-8" if tag == TAG_UTF8_STRING else "ascii"
    return der(tag, text.encode(encoding))


# (oid, value, string tag) of one attribute; an RDN is a list of them (several = multi-valued).
Attribute = tuple[str, str, int]
RDN = Sequence[Attribute]


def attribute(oid: str, value: str, tag: int | None = None) -> Attribute:
    """An attribute; RFC 5280 4.1.2.4: countryName is a PrintableString, others UTF8String here."""
    if tag is None:
        tag = TAG_PRINTABLE_STRING if oid == OID_COUNTRY else TAG_UTF8_STRING
    return (oid, value, tag)


def der_name(rdns: Sequence[RDN]) -> bytes:
    """Name: the RDNSequence in encoding order (RFC 5280 4.1.2.4)."""
    encoded = []
    for rdn in rdns:
        values = [der_sequence(der_oid(oid), der_string(text, tag)) for oid, text, tag in rdn]
        encoded.append(der_set(*values))
    return der_sequence(*encoded)


def simple_name(cn: str, o: str | None = None, c: str | None = None) -> list[RDN]:
    """C, O, CN in the usual encoding order (most general first)."""
    rdns: list[RDN] = []
    if c is not None:
        rdns.append([attribute(OID_COUNTRY, c)])
    if o is not None:
        rdns.append([attribute(OID_ORGANIZATION, o)])
    rdns.append([attribute(OID_COMMON_NAME, cn)])
    return rdns


def make_certificate(
    subject_cn: str,
    issuer_cn: str,
    issuer_o: str | None = None,
    *,
    subject_o: str | None = None,
    issuer_rdns: Sequence[RDN] | None = None,
    subject_rdns: Sequence[RDN] | None = None,
    serial: int = 0x1234_5678_9ABC,
    dns_names: Sequence[str] = (),
    key_bytes: int = 270,
) -> bytes:
    """DER of an X.509 v3 certificate (RFC 5280 4.1); the signature is dummy bytes.

    ``issuer_rdns``/``subject_rdns`` (encoding order) replace the simple CN/O names.
    ``key_bytes`` sizes the dummy RSA key, to make a certificate as long as a real one.
    """
    issuer = der_name(issuer_rdns if issuer_rdns is not None else simple_name(issuer_cn, issuer_o))
    subject = der_name(
        subject_rdns if subject_rdns is not None else simple_name(subject_cn, subject_o)
    )
    algorithm = der_sequence(der_oid(OID_SHA256_WITH_RSA), der(TAG_NULL, b""))
    validity = der_sequence(
        der(TAG_UTC_TIME, b"240101000000Z"), der(TAG_UTC_TIME, b"340101000000Z")
    )
    filler = bytes(range(256)) * (key_bytes // 256 + 1)
    modulus = int.from_bytes(b"\xc5" + filler[: key_bytes - 1], "big")
    rsa_key = der_sequence(der_integer(modulus), der_integer(65537))
    key_info = der_sequence(
        der_sequence(der_oid(OID_RSA_ENCRYPTION), der(TAG_NULL, b"")),
        der(TAG_BIT_STRING, b"\x00" + rsa_key),
    )
    extensions = b""
    if dns_names:
        general_names = der_sequence(*(der(0x82, name.encode("ascii")) for name in dns_names))
        san = der_sequence(der_oid(OID_SUBJECT_ALT_NAME), der(TAG_OCTET_STRING, general_names))
        extensions = der(0xA3, der_sequence(san))  # [3] EXPLICIT Extensions
    tbs = der_sequence(
        der(0xA0, der_integer(2)),  # [0] EXPLICIT version v3
        der_integer(serial),
        algorithm,
        issuer,
        validity,
        subject,
        key_info,
        extensions,
    )
    signature = der(TAG_BIT_STRING, b"\x00" + bytes([0x5A]) * 256)
    return der_sequence(tbs, algorithm, signature)
