"""TLS dissector: handshake facts from spec-built bytes, tiny captures and the real corpus."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import tls
from tests.dissect.common import check_json_ready
from tests.dissect.tshark_streams import (
    StreamPayload,
    oracle_files,
    stream_payloads,
    tls_differences,
    tls_expectations,
    tshark_certificates,
    tshark_fields,
    wide_payloads,
)
from tests.protobytes.tls import (
    OID_COMMON_NAME,
    OID_DOMAIN_COMPONENT,
    OID_ORGANIZATION,
    SSL30,
    TAG_BMP_STRING,
    TLS10,
    TLS11,
    TLS12,
    TLS13,
    attribute,
    der_name,
    make_certificate,
    records,
    tls_client_hello,
    tls_server_flight,
)
from tests.scapy_flows import payloads_of, tcp_session, write_capture

SMS_CERT = make_certificate(
    "SMS Role SSL Certificate", "SMS Issuing", issuer_o="Contoso", dns_names=["mp01.corp.example"]
)
ENTERPRISE_CERT = make_certificate(
    "mp01.corp.example",
    "",
    issuer_rdns=[
        [attribute(OID_DOMAIN_COMPONENT, "example", 0x16)],
        [attribute(OID_DOMAIN_COMPONENT, "corp", 0x16)],
        [attribute(OID_COMMON_NAME, "corp-ISSUING-CA")],
    ],
)
GREASE = 0x0A0A  # RFC 8701: a reserved value a client may list among its versions

CLIENT_12 = tls_client_hello("mp01.corp.example")
CLIENT_13 = tls_client_hello("www.example.com", TLS12, [GREASE, TLS13, TLS12], ["h2", "http/1.1"])


def _facts(**expected: Any) -> dict[str, Any]:
    facts = tls.empty_facts()
    facts.update(expected)
    return facts


# JA4 and the certificate's validity, serial, digests and self-signedness: their own tests
# (tests/dissect/test_tls_ja4.py, test_tls_certificate.py).
HUNTING_FACTS = frozenset(
    {
        "ja4",
        "server_extensions",
        "cert_self_signed",
        "cert_not_before",
        "cert_not_after",
        "cert_serial",
        "cert_sha1",
        "cert_sha256",
        "cert_truncated",
    }
)


def _without_hunting_facts(facts: dict[str, Any] | None) -> dict[str, Any] | None:
    if facts is None:
        return None
    return {name: value for name, value in facts.items() if name not in HUNTING_FACTS}


# (case, c2s, s2c, the whole facts expected but for the hunting facts)
MID_STREAM = dict(tls.empty_facts(), handshake_seen=False)
CASES: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = [
    (
        "tls12-ehttp-sms-issuing",
        CLIENT_12,
        tls_server_flight(TLS12, SMS_CERT),
        _facts(
            client_hello=True,
            server_hello=True,
            client_version="TLS 1.2",
            client_max_version="TLS 1.2",
            version="TLS 1.2",
            sni="mp01.corp.example",
            cert_subject_cn="SMS Role SSL Certificate",
            cert_issuer_cn="SMS Issuing",
            cert_subject="CN=SMS Role SSL Certificate",
            cert_issuer="CN=SMS Issuing, O=Contoso",
            cipher_suite=0xC030,
        ),
    ),
    (
        "tls13-supported-versions-grease-alpn",
        CLIENT_13,
        tls_server_flight(TLS13, SMS_CERT, alpn_selected="h2"),
        # RFC 8446 4.4.2: the 1.3 certificate is encrypted, so no certificate facts.
        _facts(
            client_hello=True,
            server_hello=True,
            client_version="TLS 1.2",
            client_max_version="TLS 1.3",
            version="TLS 1.3",
            sni="www.example.com",
            alpn=["h2", "http/1.1"],
            alpn_selected="h2",
            cipher_suite=0x1301,
        ),
    ),
    (
        "tls10-legacy-client-and-server",
        tls_client_hello("old.example", TLS10, record_version=TLS10),
        tls_server_flight(TLS10, ENTERPRISE_CERT, cipher_suite=0x002F),
        _facts(
            client_hello=True,
            server_hello=True,
            client_version="TLS 1.0",
            client_max_version="TLS 1.0",
            version="TLS 1.0",
            sni="old.example",
            cert_subject_cn="mp01.corp.example",
            cert_issuer_cn="corp-ISSUING-CA",
            cert_subject="CN=mp01.corp.example",
            cert_issuer="CN=corp-ISSUING-CA, DC=corp, DC=example",
            cipher_suite=0x002F,
        ),
    ),
    (
        "ssl30-server",
        tls_client_hello(None, SSL30, record_version=SSL30),
        tls_server_flight(SSL30, None, cipher_suite=0x000A),
        _facts(
            client_hello=True,
            server_hello=True,
            client_version="SSL 3.0",
            client_max_version="SSL 3.0",
            version="SSL 3.0",
            cipher_suite=0x000A,
        ),
    ),
    (
        "tls11-server-only",
        b"",
        tls_server_flight(TLS11, SMS_CERT),
        _facts(
            server_hello=True,
            version="TLS 1.1",
            cert_subject_cn="SMS Role SSL Certificate",
            cert_issuer_cn="SMS Issuing",
            cert_subject="CN=SMS Role SSL Certificate",
            cert_issuer="CN=SMS Issuing, O=Contoso",
            cipher_suite=0xC030,
        ),
    ),
    (
        "client-only-unknown-draft-version-ignored",
        tls_client_hello("a.example", TLS12, [0x7F1C, TLS12]),
        b"",
        _facts(
            client_hello=True,
            client_version="TLS 1.2",
            client_max_version="TLS 1.2",
            sni="a.example",
        ),
    ),
    (
        "handshake-split-over-small-records",
        tls_client_hello("split.example", fragment=40),
        tls_server_flight(TLS12, SMS_CERT, fragment=97),
        _facts(
            client_hello=True,
            server_hello=True,
            client_version="TLS 1.2",
            client_max_version="TLS 1.2",
            version="TLS 1.2",
            sni="split.example",
            cert_subject_cn="SMS Role SSL Certificate",
            cert_issuer_cn="SMS Issuing",
            cert_subject="CN=SMS Role SSL Certificate",
            cert_issuer="CN=SMS Issuing, O=Contoso",
            cipher_suite=0xC030,
        ),
    ),
    (
        "rfc4514-escaping-multivalued-and-bmpstring",
        b"",
        tls_server_flight(
            TLS12,
            make_certificate(
                "",
                "",
                issuer_rdns=[
                    [attribute(OID_ORGANIZATION, "Contoso, Ltd")],
                    [attribute(OID_COMMON_NAME, "#1 CA ")],
                ],
                subject_rdns=[
                    [
                        attribute(OID_COMMON_NAME, "Zürich host", TAG_BMP_STRING),
                        attribute("2.5.4.11", "IT+Ops"),
                    ]
                ],
            ),
        ),
        _facts(
            server_hello=True,
            version="TLS 1.2",
            cert_subject_cn="Zürich host",
            cert_issuer_cn="#1 CA ",
            cert_subject="OU=IT\\+Ops+CN=Zürich host",  # a SET OF: DER order
            cert_issuer="CN=\\#1 CA\\ , O=Contoso\\, Ltd",
            cipher_suite=0xC030,
        ),
    ),
    ("http-is-not-tls", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", None),
    # caught after the handshake: TLS records back to back, no version known
    ("application-data-only", records(23, b"\x00" * 64), records(23, b"\x01" * 64), MID_STREAM),
    ("application-data-cut", records(23, b"\x00" * 64)[:40], b"", None),
    ("application-data-then-junk", records(23, b"\x00" * 8) + b"\xff" * 9, b"", None),
    ("record-version-3-5", b"\x16\x03\x05\x00\x10\x01" + bytes(15), b"", None),
    ("empty-record", b"\x16\x03\x01\x00\x00\x01", b"", None),
    ("record-too-long", b"\x16\x03\x01\x48\x01\x01" + bytes(64), b"", None),
    (
        "certificate-first-is-mid-stream",
        b"",
        records(22, b"\x0b\x00\x00\x03\x00\x00\x00"),
        MID_STREAM,
    ),
    ("record-header-only", b"\x16\x03\x01\x00\x40", b"", None),
    ("both-empty", b"", b"", None),
]


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cases(c2s: bytes, s2c: bytes, expected: dict[str, Any] | None) -> None:
    assert _without_hunting_facts(tls.parse(c2s, s2c)) == _without_hunting_facts(expected)


def _cert_cut_after(marker: bytes, flight: bytes, extra: int) -> bytes:
    end = flight.index(marker) + len(marker)
    return flight[: end + extra]


def test_certificate_cut_by_the_window_gives_the_issuer_alone() -> None:
    """The issuer precedes the subject in TBSCertificate (RFC 5280 4.1): it survives a cut."""
    flight = tls_server_flight(TLS12, SMS_CERT)
    issuer = der_name(
        [[attribute(OID_ORGANIZATION, "Contoso")], [attribute(OID_COMMON_NAME, "SMS Issuing")]]
    )
    subject = der_name([[attribute(OID_COMMON_NAME, "SMS Role SSL Certificate")]])
    # Cut inside the subject: issuer known, subject not.
    cut_in_subject = _cert_cut_after(issuer, flight, 20)
    assert subject not in cut_in_subject
    facts = tls.parse(b"", cut_in_subject)
    assert facts is not None
    assert (facts["cert_issuer_cn"], facts["cert_subject_cn"]) == ("SMS Issuing", None)
    assert facts["cert_subject"] is None
    # Cut one byte before the issuer ends: neither.
    facts = tls.parse(b"", _cert_cut_after(issuer, flight, -1))
    assert facts is not None
    assert (facts["cert_issuer"], facts["cert_subject"]) == (None, None)
    assert facts["version"] == "TLS 1.2"
    # Cut right after the subject: both, though the key and signature are missing.
    facts = tls.parse(b"", _cert_cut_after(subject, flight, 0))
    assert facts is not None
    assert facts["cert_subject_cn"] == "SMS Role SSL Certificate"


def test_tls13_certificate_is_not_read_even_if_plaintext_follows() -> None:
    """A TLS 1.3 server's Certificate is encrypted; plaintext after its hello is not trusted."""
    hello_13 = tls_server_flight(TLS13)
    hello_record = hello_13[: 5 + int.from_bytes(hello_13[3:5], "big")]
    certificate = tls_server_flight(TLS12, SMS_CERT)
    # Append a TLS 1.2-style Certificate record after the 1.3 ServerHello record.
    certificate_records = certificate[5 + int.from_bytes(certificate[3:5], "big") :]
    facts = tls.parse(b"", hello_record + certificate_records)
    assert facts is not None and facts["version"] == "TLS 1.3"
    assert facts["cert_issuer"] is None


def test_sni_and_alpn_are_cut_to_256_characters() -> None:
    long_name = "a" * 300 + ".example"
    facts = tls.parse(tls_client_hello(long_name, alpn=["x" * 255]), b"")
    assert facts is not None
    assert facts["sni"] == long_name[:256]
    assert facts["alpn"] == ["x" * 255]


# --- tiny captures through the flow table ------------------------------------------------------


@pytest.mark.parametrize(
    ("server_port", "client_hello", "server_flight", "expected"),
    [
        # Client notification: TLS-wrapped by design on 10123, read on any port.
        (10123, CLIENT_12, tls_server_flight(TLS12, SMS_CERT), ("TLS 1.2", "SMS Issuing")),
        (443, CLIENT_13, tls_server_flight(TLS13, alpn_selected="h2"), ("TLS 1.3", None)),
        (443, CLIENT_12, tls_server_flight(TLS12, ENTERPRISE_CERT), ("TLS 1.2", "corp-ISSUING-CA")),
    ],
)
def test_tiny_capture(
    tmp_path: Path,
    server_port: int,
    client_hello: bytes,
    server_flight: bytes,
    expected: tuple[str, str | None],
) -> None:
    packets = tcp_session(
        "10.1.1.20", "10.1.0.12", 50123, server_port, [("c", client_hello), ("s", server_flight)]
    )
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "tls.pcap", packets))
    assert transport == "tcp"
    facts = tls.parse(c2s, s2c)
    assert facts is not None
    assert (facts["version"], facts["cert_issuer_cn"]) == expected
    assert facts["sni"] == tls.parse(client_hello, b"")["sni"]  # type: ignore[index]


def test_tiny_capture_certificate_chain_cut_by_the_2048_byte_window(tmp_path: Path) -> None:
    """A long leaf (4 KiB key) spans MSS segments; the window keeps its issuer and subject."""
    big_leaf = make_certificate("SMS Role SSL Certificate", "SMS Issuing", key_bytes=4000)
    flight = tls_server_flight(TLS12, [big_leaf, SMS_CERT])
    packets = tcp_session("10.1.1.20", "10.1.0.12", 50124, 10123, [("c", CLIENT_12), ("s", flight)])
    [(_, c2s, s2c)] = payloads_of(write_capture(tmp_path / "tls.pcap", packets))
    assert len(s2c) == 2048 < len(flight)
    facts = tls.parse(c2s, s2c)
    assert facts is not None
    assert (facts["cert_issuer_cn"], facts["cert_subject_cn"]) == (
        "SMS Issuing",
        "SMS Role SSL Certificate",
    )


@pytest.mark.tshark
def test_tshark_reads_our_bytes_as_we_mean_them(tmp_path: Path, tshark: str) -> None:
    """The spec-built bytes are real TLS: tshark sees the same SNI, versions and issuer."""
    packets = tcp_session(
        "10.1.1.20",
        "10.1.0.12",
        50125,
        443,
        [("c", CLIENT_13), ("s", tls_server_flight(TLS12, SMS_CERT))],
    )
    path = write_capture(tmp_path / "tls.pcap", packets)
    client = tshark_fields(
        tshark,
        path,
        "tls.handshake.type == 1",
        ["tls.handshake.extensions_server_name", "tls.handshake.extensions.supported_version"],
    )
    assert client[0]["tls.handshake.extensions_server_name"] == ["www.example.com"]
    assert client[0]["tls.handshake.extensions.supported_version"] == ["0x0a0a", "0x0304", "0x0303"]
    [certificate] = tshark_certificates(tshark, path)
    assert certificate.issuer == "CN=SMS Issuing, O=Contoso"
    assert certificate.subject == "CN=SMS Role SSL Certificate"


# --- never raise ------------------------------------------------------------------------------


def test_every_truncation_and_random_bytes_never_raise() -> None:
    flights = [
        tls_server_flight(TLS12, SMS_CERT),
        tls_server_flight(TLS13, alpn_selected="h2"),
        tls_server_flight(TLS12, ENTERPRISE_CERT, fragment=50),
    ]
    clients = [CLIENT_12, CLIENT_13, tls_client_hello("x.example", fragment=30)]
    for message in clients + flights:
        for cut in range(len(message) + 1):
            check_json_ready(tls.parse(message[:cut], b""))
            check_json_ready(tls.parse(b"", message[:cut]))
    generator = random.Random(3)
    for _ in range(3000):
        noise = bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 300)))
        # Half of them behind a plausible record header, to get past the first checks.
        if generator.random() < 0.5:
            noise = (
                b"\x16\x03\x03"
                + len(noise).to_bytes(2, "big")
                + bytes([generator.choice([1, 2])])
                + noise
            )
        check_json_ready(tls.parse(noise, noise[::-1]))
    # Flipped bytes inside a valid flight reach the DER reader with hostile lengths.
    flight = bytearray(flights[0])
    for _ in range(3000):
        mutated = bytearray(flight)
        for _ in range(generator.randrange(1, 4)):
            mutated[generator.randrange(len(mutated))] = generator.getrandbits(8)
        check_json_ready(tls.parse(CLIENT_12, bytes(mutated)))


# --- the real corpus against tshark ------------------------------------------------------------


def _after_ber_element(data: bytes) -> bytes:
    """``data`` past its first BER element (an LDAP message), for TLS after StartTLS."""
    if len(data) < 2 or data[0] != 0x30:
        return data
    length, header = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, header = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    return data[header + length :]


AGREE = "agree"
AFTER_STARTTLS = "agree past LDAP StartTLS (by design the flow is LDAP's: TLS is read at a start)"
CUT_BY_WINDOW = "differ only by the 2048-byte window (agree on a 256 KiB window)"
NO_HANDSHAKE = "no handshake in the capture: TLS records only, recognised with no version"


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """Every stream tshark dissects as TLS, against the facts tshark shows for it.

    A stream whose capture starts after the handshake (application data records only) is
    recognised from its record headers, with nothing more to read. By design: TLS after LDAP
    StartTLS opens with LDAP, so tls.parse leaves it to the LDAP dissector, and agrees on the
    bytes past the StartTLS exchange.
    """
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    files = oracle_files(corpus, "tls")
    assert files, "ORACLE.tsv names no capture with TLS"
    for path in files:
        flows = stream_payloads(tshark, path)
        expected = tls_expectations(tshark, path, flows)
        tls_streams = {
            int(r["tcp.stream"][0]) for r in tshark_fields(tshark, path, "tls", ["tcp.stream"])
        }
        wide: dict[int, StreamPayload] | None = None
        for stream in sorted(tls_streams):
            flow = flows[stream]
            facts = tls.parse(flow.c2s, flow.s2c)
            if stream not in expected:
                # caught after the handshake: recognised as TLS, with nothing to read
                assert facts == MID_STREAM, f"{path.name} stream {stream}: {facts}"
                outcomes[NO_HANDSHAKE] += 1
                continue
            outcome = AGREE
            if facts is None and flow.c2s[:1] == b"\x30":
                facts = tls.parse(_after_ber_element(flow.c2s), _after_ber_element(flow.s2c))
                outcome = AFTER_STARTTLS
            if tls_differences(facts, expected[stream]):
                wide = wide or wide_payloads(tshark, path)
                wide_facts = tls.parse(wide[stream].c2s, wide[stream].s2c)
                if tls_differences(wide_facts, expected[stream]):
                    problems.append(
                        f"{path.name} stream {stream}: {tls_differences(facts, expected[stream])}"
                    )
                    continue
                outcome = CUT_BY_WINDOW
            outcomes[outcome] += 1
    print(f"TLS streams vs tshark: {dict(outcomes)}")
    assert not problems, problems
    assert outcomes[AGREE] >= 4
    assert outcomes[AFTER_STARTTLS] == 1
