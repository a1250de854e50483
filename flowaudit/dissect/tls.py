"""TLS: the handshake at the start of a flow: versions, SNI, ALPN, suite, server certificate.

Reads the plaintext handshake records at the very start of each direction, on any port: the
client's ClientHello and the server's ServerHello and, up to TLS 1.2, its Certificate message
(in TLS 1.3 the certificate is encrypted). Handshake messages may span records and are cut by
the payload window; every field is read only as far as its bytes go. Other modules (TDS 8,
RDP) hand the bytes that follow their own framing to ``parse``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

PROTOCOL = "tls"
TRANSPORTS = ("tcp",)

# RFC 8446 5.1 / RFC 5246 6.2.1: ContentType and the record header (type, version, length).
CONTENT_HANDSHAKE = 22
RECORD_HEADER = 5
# A plaintext record carries at most 2^14 bytes (RFC 8446 5.1); TLS 1.2 lets a compressed or
# protected one grow by 2048 more (RFC 5246 6.2.3): anything longer is not TLS.
MAX_RECORD_LENGTH = 2**14 + 2048

# RFC 8446 4: HandshakeType.
CLIENT_HELLO = 1
SERVER_HELLO = 2
CERTIFICATE = 11

# RFC 8446 4.2: ExtensionType.
EXT_SERVER_NAME = 0  # RFC 6066 3
EXT_SIGNATURE_ALGORITHMS = 13  # RFC 8446 4.2.3
EXT_ALPN = 16  # RFC 7301 3.1
EXT_SUPPORTED_VERSIONS = 43  # RFC 8446 4.2.1

VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
TLS13 = 0x0304

MAX_TEXT = 256
MAX_MESSAGES = 16  # handshake messages read per direction
MAX_ALPN = 16  # protocol names kept from the client's offer
MAX_SERVER_EXTENSIONS = 32  # extension types kept from the ServerHello

# RFC 4514 3 short names of attribute types, then the usual extra ones by their common names.
ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "STREET",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.12": "T",
    "2.5.4.4": "SN",
    "2.5.4.42": "GN",
    "2.5.4.17": "postalCode",
    "1.2.840.113549.1.9.1": "E",
}

Facts = dict[str, Any]


class _Short(Exception):
    """The bytes end before the field being read."""


class _Reader:
    """Big-endian reads over bytes that may end anywhere (raises ``_Short`` there)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise _Short
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.uint(length_size))

    def remaining(self) -> int:
        return len(self.data) - self.pos


def version_name(version: int) -> str:
    """ "TLS 1.2" for 0x0303; an unknown code as "0x7f1c"."""
    return VERSION_NAMES.get(version, f"0x{version:04x}")


def text(raw: bytes, encoding: str = "utf-8") -> str:
    return raw.decode(encoding, errors="replace")[:MAX_TEXT]


def starts_with_handshake(data: bytes) -> bool:
    """Whether ``data`` opens with a handshake record holding a ClientHello or ServerHello."""
    return (
        len(data) > RECORD_HEADER
        and data[0] == CONTENT_HANDSHAKE
        and data[1] == 3
        and data[2] <= 4
        and 0 < int.from_bytes(data[3:5], "big") <= MAX_RECORD_LENGTH
        and data[5] in (CLIENT_HELLO, SERVER_HELLO)
    )


def handshake_stream(data: bytes) -> bytes:
    """The handshake bytes of the records at the start of ``data``, joined (RFC 8446 5.1).

    Stops at the first record of another type (ChangeCipherSpec, application data, alert) or
    that is not a TLS record; the last record may be cut short.
    """
    parts = []
    pos = 0
    while pos + RECORD_HEADER <= len(data):
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if (
            data[pos] != CONTENT_HANDSHAKE
            or data[pos + 1] != 3
            or not 0 < length <= MAX_RECORD_LENGTH
        ):
            break
        parts.append(data[pos + RECORD_HEADER : pos + RECORD_HEADER + length])
        pos += RECORD_HEADER + length
    return b"".join(parts)


def handshake_messages(stream: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, body) of each handshake message; the last body may be cut short (RFC 8446 4)."""
    pos = 0
    for _ in range(MAX_MESSAGES):
        if pos + 4 > len(stream):
            return
        message_type = stream[pos]
        length = int.from_bytes(stream[pos + 1 : pos + 4], "big")
        body = stream[pos + 4 : pos + 4 + length]
        yield message_type, body
        if len(body) < length:
            return
        pos += 4 + length


def _extensions(reader: _Reader) -> Iterator[tuple[int, _Reader]]:
    """(type, reader over its data) of every complete extension, as far as the bytes go."""
    try:
        end = reader.uint(2) + reader.pos
    except _Short:
        return
    while reader.pos + 4 <= min(end, len(reader.data)):
        try:
            extension_type = reader.uint(2)
            data = reader.vector(2)
        except _Short:
            return
        yield extension_type, _Reader(data)


def _client_hello(body: bytes, facts: Facts) -> None:
    """ClientHello (RFC 8446 4.1.2): legacy_version, then the extensions we read; its JA4."""
    reader = _Reader(body)
    try:
        legacy_version = reader.uint(2)
        facts["client_version"] = version_name(legacy_version)
        facts["client_max_version"] = facts["client_version"]
        reader.take(32)  # random
        reader.vector(1)  # legacy_session_id
        suites = _Reader(reader.vector(2))
        ciphers = [suites.uint(2) for _ in range(suites.remaining() // 2)]
        reader.vector(1)  # legacy_compression_methods
    except _Short:
        return
    # The extensions block is whole (or absent, as a TLS 1.0 client may send it) when its
    # declared end lies within the bytes: only then is the JA4 of this hello known.
    whole = reader.remaining() == 0 or (
        reader.remaining() >= 2
        and reader.pos + 2 + int.from_bytes(body[reader.pos : reader.pos + 2], "big") <= len(body)
    )
    hello = ClientHelloFields(legacy_version, ciphers)
    for extension_type, data in _extensions(reader):
        hello.extensions.append(extension_type)
        try:
            if extension_type == EXT_SERVER_NAME and facts["sni"] is None:
                facts["sni"] = _server_name(data)
            elif extension_type == EXT_ALPN:
                hello.alpn_first = _first_protocol(_Reader(data.data))
                facts["alpn"] = _protocol_names(data)
            elif extension_type == EXT_SIGNATURE_ALGORITHMS:
                listed = _Reader(data.vector(2))
                hello.signature_algorithms = [
                    listed.uint(2) for _ in range(listed.remaining() // 2)
                ]
            elif extension_type == EXT_SUPPORTED_VERSIONS:
                # RFC 8446 4.2.1: the client lists versions<2..254>; GREASE values (RFC 8701)
                # and drafts are not versions we name, so the highest known one counts.
                listed = _Reader(data.vector(1))
                offered = [listed.uint(2) for _ in range(listed.remaining() // 2)]
                hello.supported_versions = offered
                known = [version for version in offered if version in VERSION_NAMES]
                if known:
                    facts["client_max_version"] = version_name(max(known))
        except _Short:
            continue
    if whole:
        facts["ja4"] = ja4(hello)


def _server_name(data: _Reader) -> str | None:
    """RFC 6066 3: the host_name (type 0) of the ServerNameList."""
    names = _Reader(data.vector(2))
    while names.remaining():
        name_type = names.uint(1)
        name = names.vector(2)
        if name_type == 0:
            return text(name, "ascii")
    return None


def _protocol_names(data: _Reader) -> list[str]:
    """RFC 7301 3.1: ProtocolNameList, each name<1..2^8-1>."""
    names = _Reader(data.vector(2))
    found: list[str] = []
    while names.remaining() and len(found) < MAX_ALPN:
        found.append(text(names.vector(1)))
    return found


def _first_protocol(data: _Reader) -> bytes | None:
    """The first ProtocolName of an ALPN list as bytes (RFC 7301 3.1), None if there is none."""
    try:
        names = _Reader(data.vector(2))
        return names.vector(1) if names.remaining() else None
    except _Short:
        return None


# --- JA4 (FoxIO's TLS client fingerprint) --------------------------------------------------------
#
# Implemented from the published specification, technical_details/JA4.md of
# https://github.com/FoxIO-LLC/ja4 (JA4 is BSD 3-Clause, LICENSE-JA4 there). Its server
# counterpart JA4S is not computed: it is under the FoxIO License 1.1 (non-commercial use only,
# patent pending), which this MIT-licensed project does not take on; ``server_extensions`` holds
# the ServerHello's extension types instead.

# JA4.md "TLS and DTLS Version": the two characters of each version; any other is "00".
JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
JA4_EMPTY_HASH = "000000000000"


def is_grease(value: int) -> bool:
    """RFC 8701 2: the reserved values 0x0A0A, 0x1A1A, ... 0xFAFA (both bytes equal, ?A)."""
    return value >> 8 == value & 0xFF and value & 0x0F == 0x0A


class ClientHelloFields:
    """What JA4 reads of a ClientHello, in the order the client sent it."""

    __slots__ = (
        "alpn_first",
        "ciphers",
        "extensions",
        "legacy_version",
        "signature_algorithms",
        "supported_versions",
    )

    def __init__(self, legacy_version: int, ciphers: list[int]) -> None:
        self.legacy_version = legacy_version
        self.ciphers = ciphers
        self.extensions: list[int] = []
        self.signature_algorithms: list[int] = []
        self.supported_versions: list[int] | None = None
        self.alpn_first: bytes | None = None


def ja4_alpn(first: bytes | None) -> str:
    """JA4.md "ALPN Extension Value": first and last character of the first protocol name."""
    if not first:
        return "00"
    head, tail = chr(first[0]), chr(first[-1])
    if head.isascii() and head.isalnum() and tail.isascii() and tail.isalnum():
        return head + tail
    hexed = first.hex()  # either end not alphanumeric: the ends of its hex form
    return hexed[0] + hexed[-1]


def _hash12(values: str) -> str:
    return hashlib.sha256(values.encode("ascii")).hexdigest()[:12]


def ja4(hello: ClientHelloFields, transport: str = "t") -> str:
    """JA4 of a ClientHello (JA4.md "JA4 Algorithm"): ``t13d1516h2_8daaf6152771_e5627efa2ab1``.

    ``transport`` is "t" for TLS over TCP ("q" QUIC and "d" DTLS are not read here).
    """
    ciphers = [c for c in hello.ciphers if not is_grease(c)]
    extensions = [e for e in hello.extensions if not is_grease(e)]
    versions = [v for v in hello.supported_versions or () if not is_grease(v)]
    version = max(versions) if versions else hello.legacy_version
    sni = "d" if EXT_SERVER_NAME in extensions else "i"
    part_a = (
        f"{transport}{JA4_VERSIONS.get(version, '00')}{sni}"
        f"{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{ja4_alpn(hello.alpn_first)}"
    )
    part_b = _hash12(",".join(f"{c:04x}" for c in sorted(ciphers))) if ciphers else JA4_EMPTY_HASH
    kept = sorted(e for e in extensions if e not in (EXT_SERVER_NAME, EXT_ALPN))
    signatures = [s for s in hello.signature_algorithms if not is_grease(s)]
    listed = ",".join(f"{e:04x}" for e in kept)
    if signatures:
        listed += "_" + ",".join(f"{s:04x}" for s in signatures)
    part_c = _hash12(listed) if kept else JA4_EMPTY_HASH
    return f"{part_a}_{part_b}_{part_c}"


def _server_hello(body: bytes, facts: Facts) -> None:
    """ServerHello (RFC 8446 4.1.3): version, cipher suite, supported_versions, ALPN."""
    reader = _Reader(body)
    try:
        facts["version"] = version_name(reader.uint(2))
        reader.take(32)  # random
        reader.vector(1)  # legacy_session_id_echo
        facts["cipher_suite"] = reader.uint(2)
        reader.uint(1)  # legacy_compression_method
    except _Short:
        return
    facts["server_extensions"] = []
    for extension_type, data in _extensions(reader):
        if len(facts["server_extensions"]) < MAX_SERVER_EXTENSIONS:
            facts["server_extensions"].append(extension_type)
        try:
            if extension_type == EXT_SUPPORTED_VERSIONS:
                # RFC 8446 4.2.1: the server names the one version it selected.
                facts["version"] = version_name(data.uint(2))
            elif extension_type == EXT_ALPN:
                selected = _protocol_names(data)
                facts["alpn_selected"] = selected[0] if selected else None
        except _Short:
            continue


def _leaf_certificate(body: bytes) -> tuple[bytes, bool]:
    """The first ASN.1Cert of a TLS 1.2 Certificate message, as far as it goes, and whether it
    is whole (RFC 5246 7.4.2)."""
    reader = _Reader(body)
    try:
        reader.uint(3)  # certificate_list length
        length = reader.uint(3)
    except _Short:
        return b"", False
    der = body[reader.pos : reader.pos + length]
    return der, len(der) == length


# --- X.509 names (RFC 5280 4.1, DER per X.690) ---------------------------------------------------


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at ``pos`` (X.690 8.1).

    The end may lie past the bytes at hand; raises ``_Short`` if the header itself does.
    """
    if pos + 2 > len(data):
        raise _Short
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        return tag, pos, pos + first
    count = first & 0x7F
    if count == 0 or count > 4 or pos + count > len(data):
        raise _Short  # indefinite length is not DER; longer lengths are not a certificate
    length = int.from_bytes(data[pos : pos + count], "big")
    return tag, pos + count, pos + count + length


def _oid(raw: bytes) -> str:
    """Dotted form of an OBJECT IDENTIFIER's contents (X.690 8.19)."""
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        return ""
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


# X.690 universal string types: how their contents become text.
_STRING_ENCODINGS = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString (T.61; Latin-1 is the usual reading)
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}


# One attribute of a name: (short name or dotted OID, value, whether the value is a string);
# a Name is its RDNs in encoding order, each a list of attributes.
Attribute = tuple[str, str, bool]
Name = list[list[Attribute]]


def _attribute_value(tag: int, raw: bytes) -> tuple[str, bool]:
    encoding = _STRING_ENCODINGS.get(tag)
    if encoding is None:
        return "#" + raw.hex(), False  # RFC 4514 2.4: a value of another type as #hex
    return raw.decode(encoding, errors="replace"), True


def _escape(value: str) -> str:
    """RFC 4514 2.4: escape the special characters of a string value."""
    out = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in ',+"\\<>;' or (index == 0 and char in " #") or (index == last and char == " "):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _name(data: bytes, start: int, end: int) -> Name:
    """Name (RFC 5280 4.1.2.4): RDNSequence of SET OF (type, value), in encoding order."""
    rdns: Name = []
    pos = start
    while pos < end:
        tag, set_start, set_end = _der_element(data, pos)
        if tag != 0x31 or set_end > end:
            raise _Short
        attributes = []
        inner = set_start
        while inner < set_end:
            seq_tag, seq_start, seq_end = _der_element(data, inner)
            oid_tag, oid_start, oid_end = _der_element(data, seq_start)
            value_tag, value_start, value_end = _der_element(data, oid_end)
            if seq_tag != 0x30 or oid_tag != 0x06 or value_end > seq_end or seq_end > set_end:
                raise _Short
            oid = _oid(data[oid_start:oid_end])
            value, is_string = _attribute_value(value_tag, data[value_start:value_end])
            attributes.append((ATTRIBUTE_NAMES.get(oid, oid), value, is_string))
            inner = seq_end
        rdns.append(attributes)
        pos = set_end
    return rdns


def distinguished_name(rdns: Name) -> str:
    """RFC 4514 2.1 string: the last RDN first, ", " between RDNs, "+" within one."""
    return ", ".join(
        "+".join(
            f"{name}={_escape(value) if is_string else value}" for name, value, is_string in rdn
        )
        for rdn in reversed(rdns)
    )


def _common_name(rdns: Name) -> str | None:
    """The most specific CN (the last one encoded), or None."""
    names = [value for rdn in rdns for name, value, _ in rdn if name == "CN"]
    return names[-1][:MAX_TEXT] if names else None


def _tbs_fields(der: bytes) -> list[tuple[int, int, int]]:
    """(tag, start, end) of the TBSCertificate's fields, up to the first one cut short."""
    fields: list[tuple[int, int, int]] = []
    try:
        tag, pos, _ = _der_element(der, 0)  # Certificate
        if tag != 0x30:
            return fields
        tag, pos, tbs_end = _der_element(der, pos)  # TBSCertificate
        if tag != 0x30:
            return fields
        while pos < min(tbs_end, len(der)) and len(fields) < 10:
            tag, start, end = _der_element(der, pos)
            fields.append((tag, start, end))
            pos = end
    except _Short:
        pass
    return fields


def certificate_names(der: bytes) -> tuple[Name | None, Name | None]:
    """(issuer RDNs, subject RDNs) of a certificate, each None unless its bytes were complete.

    TBSCertificate (RFC 5280 4.1): [0] version, serialNumber, signature, issuer, validity,
    subject, ... — the issuer comes first, so a certificate cut short may still name it.
    """
    fields = _tbs_fields(der)
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version (absent means v1)
        fields = fields[1:]
    names: list[Name | None] = [None, None]
    expected = (0x02, 0x30, 0x30, 0x30, 0x30)  # serial, signature, issuer, validity, subject
    for index, ((tag, start, end), wanted) in enumerate(zip(fields, expected, strict=False)):
        if tag != wanted or end > len(der):
            break
        if index in (2, 4):
            try:
                names[index // 2 - 1] = _name(der, start, end)
            except _Short:
                break
    return names[0], names[1]


def _tbs_by_name(der: bytes) -> dict[str, tuple[int, int]]:
    """(start, end) of the TBSCertificate fields whose bytes are all there, by RFC 5280 name.

    TBSCertificate (RFC 5280 4.1): [0] version, serialNumber, signature, issuer, validity,
    subject, subjectPublicKeyInfo, [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions.
    """
    fields = _tbs_fields(der)
    if fields and fields[0][0] == 0xA0:
        fields = fields[1:]
    order = ("serialNumber", "signature", "issuer", "validity", "subject", "spki")
    expected = (0x02, 0x30, 0x30, 0x30, 0x30, 0x30)
    found: dict[str, tuple[int, int]] = {}
    for (tag, start, end), name, wanted in zip(fields, order, expected, strict=False):
        if tag != wanted or end > len(der):
            return found
        found[name] = (start, end)
    for tag, start, end in fields[len(order) :]:
        if tag == 0xA3 and end <= len(der):  # [3] EXPLICIT Extensions
            found["extensions"] = (start, end)
    return found


def der_time(tag: int, raw: bytes) -> str | None:
    """UTCTime or GeneralizedTime as ISO 8601 UTC (RFC 5280 4.1.2.5), None if not that form.

    RFC 5280 4.1.2.5.1: UTCTime YYMMDDHHMMSSZ, YY >= 50 meaning 19YY; 4.1.2.5.2:
    GeneralizedTime YYYYMMDDHHMMSSZ. Other forms (BER: no seconds, an offset) give None.
    """
    try:
        value = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    if tag == 0x17 and len(value) == 13 and value[:12].isdigit() and value[12] == "Z":
        year = int(value[:2])
        value = f"{1900 + year if year >= 50 else 2000 + year}{value[2:]}"
    elif not (tag == 0x18 and len(value) == 15 and value[:14].isdigit() and value[14] == "Z"):
        return None
    try:  # a real date and time (a hostile certificate may say month 13)
        year, month, day, hour, minute, second = (
            int(value[a : a + 2 if a else 4]) for a in (0, 4, 6, 8, 10, 12)
        )
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}T{value[8:10]}:{value[10:12]}:{value[12:14]}Z"


def _validity(der: bytes, start: int, end: int) -> tuple[str | None, str | None]:
    """Validity ::= SEQUENCE { notBefore Time, notAfter Time } (RFC 5280 4.1.2.5)."""
    times: list[str | None] = []
    pos = start
    while pos < end and len(times) < 2:
        tag, value_start, value_end = _der_element(der, pos)
        times.append(der_time(tag, der[value_start:value_end]))
        pos = value_end
    times += [None] * (2 - len(times))
    return times[0], times[1]


OID_SUBJECT_KEY_IDENTIFIER = "2.5.29.14"  # RFC 5280 4.2.1.2
OID_AUTHORITY_KEY_IDENTIFIER = "2.5.29.35"  # RFC 5280 4.2.1.1


def _key_identifiers(der: bytes, start: int, end: int) -> tuple[bytes | None, bytes | None]:
    """(authority keyIdentifier, subject key identifier) from [3] Extensions, None if absent.

    Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
    (RFC 5280 4.1); AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT ... }.
    """
    authority = subject = None
    _, pos, end = _der_element(der, start)  # Extensions SEQUENCE
    while pos < end:
        _, ext_start, ext_end = _der_element(der, pos)
        oid_tag, oid_start, oid_end = _der_element(der, ext_start)
        tag, value_start, value_end = _der_element(der, oid_end)
        if tag == 0x01:  # critical
            tag, value_start, value_end = _der_element(der, value_end)
        if oid_tag == 0x06 and tag == 0x04 and value_end <= ext_end:
            oid = _oid(der[oid_start:oid_end])
            if oid == OID_SUBJECT_KEY_IDENTIFIER:
                key_tag, key_start, key_end = _der_element(der, value_start)
                if key_tag == 0x04:
                    subject = der[key_start:key_end]
            elif oid == OID_AUTHORITY_KEY_IDENTIFIER:
                _, seq_start, seq_end = _der_element(der, value_start)
                if seq_start < seq_end:
                    key_tag, key_start, key_end = _der_element(der, seq_start)
                    if key_tag == 0x80:
                        authority = der[key_start:key_end]
        pos = ext_end
    return authority, subject


def _is_one_der_element(der: bytes) -> bool:
    """Whether ``der`` is exactly one DER SEQUENCE (a Certificate, not bytes that only claim it)."""
    try:
        tag, _, end = _der_element(der, 0)
    except _Short:
        return False
    return tag == 0x30 and end == len(der)


def _certificate(body: bytes, facts: Facts) -> None:
    der, whole = _leaf_certificate(body)
    facts["cert_truncated"] = not whole
    if whole and _is_one_der_element(der):
        facts["cert_sha1"] = hashlib.sha1(der).hexdigest()
        facts["cert_sha256"] = hashlib.sha256(der).hexdigest()
    issuer, subject = certificate_names(der)
    if issuer is not None:
        facts["cert_issuer"] = distinguished_name(issuer)[:MAX_TEXT]
        facts["cert_issuer_cn"] = _common_name(issuer)
    if subject is not None:
        facts["cert_subject"] = distinguished_name(subject)[:MAX_TEXT]
        facts["cert_subject_cn"] = _common_name(subject)
    fields = _tbs_by_name(der)
    try:
        if "serialNumber" in fields:
            start, end = fields["serialNumber"]
            facts["cert_serial"] = der[start:end].hex()[: 2 * 64]
        if "validity" in fields:
            facts["cert_not_before"], facts["cert_not_after"] = _validity(der, *fields["validity"])
        if issuer is not None and subject is not None:
            # Self-issued names (RFC 5280 3.2), and where both key identifiers are present,
            # the same key: a certificate signed by its own key, not by a CA of the same name.
            self_signed = issuer == subject
            if self_signed and "extensions" in fields:
                authority, own = _key_identifiers(der, *fields["extensions"])
                self_signed = authority is None or own is None or authority == own
            facts["cert_self_signed"] = self_signed
    except _Short:
        pass


def empty_facts() -> Facts:
    return {
        "client_hello": False,
        "server_hello": False,
        "client_version": None,
        "client_max_version": None,
        "version": None,
        "sni": None,
        "alpn": [],
        "alpn_selected": None,
        "cert_subject_cn": None,
        "cert_issuer_cn": None,
        "cert_subject": None,
        "cert_issuer": None,
        "cert_self_signed": None,
        "cert_not_before": None,
        "cert_not_after": None,
        "cert_serial": None,
        "cert_sha1": None,
        "cert_sha256": None,
        "cert_truncated": None,
        "cipher_suite": None,
        "server_extensions": [],
        "ja4": None,
        "handshake_seen": True,
    }


# RFC 8446 5.1 / RFC 5246 6.2.1 content types: change_cipher_spec, alert, handshake, app data.
_RECORD_TYPES = frozenset({20, 21, 22, 23})


def _record_chain(data: bytes) -> bool:
    """Whether ``data`` opens with TLS records back to back (a flow caught after its handshake).

    Every record header within the bytes must be well formed (type 20-23, version 3.0-3.4,
    length up to 2**14 + 2048, RFC 5246 6.2.3) and at least one whole record must be there,
    so that a lone byte pattern is not taken for TLS.
    """
    offset = whole = 0
    while offset + RECORD_HEADER <= len(data):
        if data[offset] not in _RECORD_TYPES or data[offset + 1] != 3 or data[offset + 2] > 4:
            return False
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if not 0 < length <= MAX_RECORD_LENGTH:
            return False
        offset += RECORD_HEADER + length
        whole += offset <= len(data)
    return whole > 0 and offset >= len(data)


def parse(c2s: bytes, s2c: bytes) -> Facts | None:
    """Handshake facts when either direction opens with a TLS handshake record, else None.

    A flow whose handshake was not captured (the capture began later) but whose bytes are TLS
    records back to back is TLS too, with ``handshake_seen`` false and no version.
    """
    client_opens = starts_with_handshake(c2s)
    server_opens = starts_with_handshake(s2c)
    if not (client_opens or server_opens):
        if (c2s or s2c) and all(_record_chain(d) for d in (c2s, s2c) if d):
            return dict(empty_facts(), handshake_seen=False)
        return None
    facts = empty_facts()
    # Read by message type, not by direction: a flow whose start was not captured may have its
    # sides named by port, the other way round.
    for data in (c2s if client_opens else b"", s2c if server_opens else b""):
        server_side = False
        for message_type, body in handshake_messages(handshake_stream(data)):
            if message_type == CLIENT_HELLO and not facts["client_hello"]:
                facts["client_hello"] = True
                _client_hello(body, facts)
            elif message_type == SERVER_HELLO and not facts["server_hello"]:
                facts["server_hello"] = server_side = True
                _server_hello(body, facts)
            elif message_type == CERTIFICATE and server_side:
                # Only TLS <= 1.2 sends it in the clear (RFC 8446 4.4.2 encrypts it).
                if facts["version"] != VERSION_NAMES[TLS13]:
                    _certificate(body, facts)
                break
    return facts
