"""TLS certificate facts for hunting: validity, serial, digests, self-signed, cut by the window.

Spec-built certificates check each field; the corpus's TLS captures (and the lab's MP
recording) check them against tshark's x509 dissection, field by field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest

from flowaudit.dissect import dissect, tls
from tests.dissect.tshark_streams import oracle_files, stream_payloads, wide_payloads
from tests.protobytes.tls import (
    TAG_OCTET_STRING,
    TLS12,
    TLS13,
    der,
    der_oid,
    der_sequence,
    make_certificate,
    tls_server_flight,
)

LAB_MP = Path(__file__).resolve().parents[2] / "lab" / "captures" / "mp.pcap"


def _server_facts(certificate: bytes, version: int = TLS12) -> dict[str, object]:
    facts = tls.parse(b"", tls_server_flight(version, certificate))
    assert facts is not None
    return facts


def test_validity_serial_and_digests_of_a_whole_certificate() -> None:
    certificate = make_certificate("mp01.corp.example", "corp-ISSUING-CA", serial=0x0123_4567_89AB)
    facts = _server_facts(certificate)
    assert facts["cert_not_before"] == "2024-01-01T00:00:00Z"
    assert facts["cert_not_after"] == "2034-01-01T00:00:00Z"
    assert facts["cert_serial"] == "0123456789ab"
    assert facts["cert_sha1"] == hashlib.sha1(certificate).hexdigest()
    assert facts["cert_sha256"] == hashlib.sha256(certificate).hexdigest()
    assert facts["cert_truncated"] is False
    assert facts["cert_self_signed"] is False


def test_serial_keeps_the_der_sign_octet() -> None:
    # X.690 8.3: a positive INTEGER whose high bit is set starts with 0x00; tshark shows it too.
    facts = _server_facts(make_certificate("a", "b", serial=0x80_0000))
    assert facts["cert_serial"] == "00800000"


@pytest.mark.parametrize(
    ("tag", "raw", "expected"),
    [
        (0x17, b"491231235959Z", "2049-12-31T23:59:59Z"),  # RFC 5280 4.1.2.5.1: YY < 50: 20YY
        (0x17, b"500101000000Z", "1950-01-01T00:00:00Z"),  # YY >= 50: 19YY
        (0x18, b"20500101120000Z", "2050-01-01T12:00:00Z"),  # GeneralizedTime from 2050
        (0x17, b"4912312359Z", None),  # BER without seconds: not the DER form
        (0x17, b"491231235959+0100", None),
        (0x18, b"20500101120000.5Z", None),
        (0x04, b"491231235959Z", None),  # not a time at all
        (0x17, b"991399250000Z", None),  # month 13, day 99, hour 25: digits, but no time
        (0x18, b"20230229000000Z", None),  # no 29 February in 2023
        (0x18, b"20240229000000Z", "2024-02-29T00:00:00Z"),
    ],
)
def test_der_time(tag: int, raw: bytes, expected: str | None) -> None:
    assert tls.der_time(tag, raw) == expected


def _with_key_ids(authority: bytes | None, subject: bytes | None) -> bytes:
    """A self-issued certificate ("CA" issues "CA") with the given key identifier extensions."""
    extensions = []
    if subject is not None:
        extensions.append(
            der_sequence(der_oid("2.5.29.14"), der(TAG_OCTET_STRING, der(0x04, subject)))
        )
    if authority is not None:
        aki = der_sequence(der(0x80, authority))
        extensions.append(der_sequence(der_oid("2.5.29.35"), der(TAG_OCTET_STRING, aki)))
    certificate = make_certificate("CA", "CA")
    if not extensions:
        return certificate
    # Rebuild with [3] Extensions in place of none: splice the extensions into the TBS.
    _, tbs_start, tbs_end = tls._der_element(certificate, tls._der_element(certificate, 0)[1])
    tbs_body = certificate[tbs_start:tbs_end] + der(0xA3, der_sequence(*extensions))
    rest = certificate[tbs_end:]
    return der_sequence(der(0x30, tbs_body) + rest)


@pytest.mark.parametrize(
    ("authority", "subject", "self_signed"),
    [
        (None, None, True),  # same names, no key identifiers: self-signed
        (b"\x01\x02", b"\x01\x02", True),  # the same key
        (b"\x01\x02", None, True),  # only one of them: the names decide
        (b"\x01\x02", b"\x03\x04", False),  # a CA re-keyed under the same name signed it
    ],
)
def test_self_signed(authority: bytes | None, subject: bytes | None, self_signed: bool) -> None:
    facts = _server_facts(_with_key_ids(authority, subject))
    assert facts["cert_subject"] == facts["cert_issuer"] == "CN=CA"
    assert facts["cert_self_signed"] is self_signed


def test_certificate_cut_by_the_window_says_so_and_gives_no_digest() -> None:
    flight = tls_server_flight(TLS12, make_certificate("a", "b", key_bytes=4000))
    facts = tls.parse(b"", flight[:2048])
    assert facts is not None
    assert facts["cert_truncated"] is True
    assert facts["cert_sha1"] is None and facts["cert_sha256"] is None
    # The fields before the cut are still read: serial, validity, both names.
    assert facts["cert_serial"] == "123456789abc"
    assert facts["cert_not_after"] == "2034-01-01T00:00:00Z"
    assert facts["cert_self_signed"] is False


def test_tls13_has_no_certificate_facts() -> None:
    facts = _server_facts(make_certificate("a", "a"), TLS13)
    assert facts["cert_truncated"] is None and facts["cert_self_signed"] is None
    assert facts["cert_not_before"] is None and facts["cert_sha256"] is None


def test_every_truncation_never_raises() -> None:
    flight = tls_server_flight(TLS12, _with_key_ids(b"\x01", b"\x01"))
    for end in range(len(flight) + 1):
        tls.parse(b"", flight[:end])
    for index in range(5, len(flight), 7):
        damaged = bytearray(flight)
        damaged[index] ^= 0xFF
        tls.parse(b"", bytes(damaged))


# --- against tshark ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TsharkLeaf:
    """What tshark shows of the first certificate of one Certificate message."""

    stream: int
    source_port: int
    der: bytes  # the whole certificate, as tshark reassembled it
    serial: str
    not_before: str | None  # ISO 8601 like ours, from tshark's "2011-05-04 00:00:00 (UTC)"
    not_after: str | None
    subject_equals_issuer: bool
    authority_key_id: str | None
    subject_key_id: str | None


def _iso(show: str | None) -> str | None:
    if not show or not show.endswith(" (UTC)"):
        return None
    return show[: -len(" (UTC)")].replace(" ", "T") + "Z"


def _time_show(certificate: ElementTree.Element, kind: str) -> str | None:
    element = next((f for f in certificate.iter("field") if f.get("name") == kind), None)
    if element is None:
        return None
    inner = next(
        (
            f
            for f in element.iter("field")
            if f.get("name") in ("x509af.utcTime", "x509af.generalizedTime")
        ),
        None,
    )
    return None if inner is None else inner.get("show")


def _first(certificate: ElementTree.Element, name: str, attribute: str = "value") -> str | None:
    element = next((f for f in certificate.iter("field") if f.get("name") == name), None)
    return None if element is None else element.get(attribute)


# tshark leaves the TLS after some RDP negotiations undecoded (ndpi_rdp_tls_vlan.pcap): read
# 3389 as TLS; the X.224 packets before it then decode as nothing, which is what we want.
DECODE_RDP_AS_TLS = ("-d", "tcp.port==3389,tls")


def tshark_leaves(tshark: str, path: Path) -> list[TsharkLeaf]:
    command = [tshark, "-n", "-r", str(path), *DECODE_RDP_AS_TLS, "-Y", "tls.handshake.type == 11"]
    command += ["-T", "pdml"]
    output = subprocess_output(command)
    leaves = []
    for packet in ElementTree.fromstring(output or "<pdml/>").iter("packet"):
        stream = int(_first(packet, "tcp.stream", "show") or -1)
        certificate = next(
            (f for f in packet.iter("field") if f.get("name") == "tls.handshake.certificate"), None
        )
        if certificate is None:
            continue
        issuer = next(
            (f for f in certificate.iter("field") if f.get("name") == "x509af.issuer"), None
        )
        subject = next(
            (f for f in certificate.iter("field") if f.get("name") == "x509af.subject"), None
        )
        leaves.append(
            TsharkLeaf(
                stream,
                int(_first(packet, "tcp.srcport", "show") or 0),
                bytes.fromhex(certificate.get("value", "")),
                _first(certificate, "x509af.serialNumber") or "",
                _iso(_time_show(certificate, "x509af.notBefore")),
                _iso(_time_show(certificate, "x509af.notAfter")),
                issuer is not None
                and subject is not None
                and issuer.get("value") == subject.get("value"),
                _first(certificate, "x509ce.keyIdentifier"),
                _first(certificate, "x509ce.SubjectKeyIdentifier"),
            )
        )
    return leaves


def subprocess_output(command: list[str]) -> str:
    import subprocess

    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


def certificate_differences(facts: dict[str, object], leaf: TsharkLeaf) -> list[str]:
    """Per field, where our facts and tshark disagree (digests only when we kept it whole)."""
    if not leaf.serial:  # tshark does not read a certificate there (the corpus's corrupt one)
        names = ("cert_serial", "cert_not_before", "cert_not_after", "cert_self_signed")
        return [f"{name}: ours {facts.get(name)!r}" for name in names if facts.get(name)]
    expected: dict[str, object] = {
        "cert_serial": leaf.serial,
        "cert_not_before": leaf.not_before,
        "cert_not_after": leaf.not_after,
    }
    ids_differ = (
        leaf.authority_key_id is not None
        and leaf.subject_key_id is not None
        and leaf.authority_key_id != leaf.subject_key_id
    )
    expected["cert_self_signed"] = leaf.subject_equals_issuer and not ids_differ
    if facts["cert_truncated"] is False:
        expected["cert_sha1"] = hashlib.sha1(leaf.der).hexdigest()
        expected["cert_sha256"] = hashlib.sha256(leaf.der).hexdigest()
    return [
        f"{name}: ours {facts.get(name)!r}, tshark {value!r}"
        for name, value in expected.items()
        if facts.get(name) != value
    ]


def _tls_facts(payload_c2s: bytes, payload_s2c: bytes) -> dict[str, object] | None:
    """TLS facts of a flow: of TLS itself, or of the TLS inside RDP or TDS."""
    protocol, facts = dissect("tcp", payload_c2s, payload_s2c)
    if protocol == "tls":
        return facts
    inner = facts.get("tls")
    return inner if isinstance(inner, dict) else None


RDP_CAPTURES = ("ndpi_rdp_tls_vlan.pcap", "zeek_rdp_to_ssl.pcap")


def _captures(corpus: Path) -> list[Path]:
    files = oracle_files(corpus, "tls")
    files += [corpus / name for name in RDP_CAPTURES if corpus / name not in files]
    return [*files, LAB_MP] if LAB_MP.exists() else files


@pytest.mark.corpus
def test_corpus_certificates_agree_with_tshark(corpus: Path, tshark: str) -> None:
    compared = whole = 0
    problems = []
    for path in _captures(corpus):
        leaves = tshark_leaves(tshark, path)
        if not leaves:
            continue
        payloads = stream_payloads(tshark, path)
        wide = None
        for leaf in leaves:
            if leaf.stream not in payloads:
                continue
            flow = payloads[leaf.stream]
            if leaf.source_port != flow.server_port:
                continue  # a client certificate (TLS 1.2 mutual authentication)
            facts = _tls_facts(flow.c2s, flow.s2c)
            if facts is None or facts.get("cert_truncated") is None:
                continue  # e.g. a client certificate, or one we do not see as the server's
            compared += 1
            differences = certificate_differences(facts, leaf)
            if facts["cert_truncated"]:
                # Cut by the 2048-byte window: what is missing is None, and a wide window
                # gives everything tshark shows.
                missing = [d for d in differences if ": ours None," not in d]
                if missing:
                    problems.append(f"{path.name} stream {leaf.stream}: {missing}")
                wide = wide or wide_payloads(tshark, path)
                facts = _tls_facts(wide[leaf.stream].c2s, wide[leaf.stream].s2c) or {}
                differences = certificate_differences(facts, leaf)
            whole += facts.get("cert_truncated") is False
            if differences:
                problems.append(f"{path.name} stream {leaf.stream}: {differences}")
    assert not problems, problems
    assert compared >= 3 and whole == compared, (compared, whole)
