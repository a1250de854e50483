"""RDP dissector: X.224 connection request/confirm and RDP negotiation; bytes, captures, corpus."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import rdp, tls
from tests.dissect.common import check_json_ready
from tests.dissect.tshark_streams import (
    oracle_files,
    stream_payloads,
    tls_differences,
    tls_expectations,
    tshark_fields,
)
from tests.protobytes.rdp import (
    HYBRID_REQUIRED_BY_SERVER,
    PROTOCOL_HYBRID,
    PROTOCOL_HYBRID_EX,
    PROTOCOL_RDP,
    PROTOCOL_RDSTLS,
    PROTOCOL_SSL,
    rdp_connection_confirm,
    rdp_connection_request,
    rdp_negotiation_failure,
)
from tests.protobytes.tds import tds_prelogin
from tests.protobytes.tls import TLS10, TLS12, make_certificate, tls_client_hello, tls_server_flight
from tests.scapy_flows import payloads_of, tcp_session, write_capture

HOST_CERT = make_certificate("ws01.corp.example", "ws01.corp.example")
CLIENT_HELLO = tls_client_hello(None, TLS12)
SERVER_FLIGHT = tls_server_flight(TLS12, HOST_CERT)


def _facts(**expected: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "cookie": None,
        "requested_protocols": [],
        "selected_protocol": None,
        "negotiation_failure": None,
        "tls": None,
    }
    facts.update(expected)
    return facts


# (case, c2s, s2c, the whole facts expected)
CASES: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = [
    (
        "cookie-ssl-hybrid-selects-hybrid",
        rdp_connection_request("mstshash=ADMIN", PROTOCOL_SSL | PROTOCOL_HYBRID),
        rdp_connection_confirm(PROTOCOL_HYBRID),
        _facts(
            cookie="mstshash=ADMIN",
            requested_protocols=["ssl", "hybrid"],
            selected_protocol="hybrid",
        ),
    ),
    (
        "then-the-tls-handshake",
        rdp_connection_request("mstshash=ADMIN", PROTOCOL_SSL) + CLIENT_HELLO,
        rdp_connection_confirm(PROTOCOL_SSL) + SERVER_FLIGHT,
        _facts(
            cookie="mstshash=ADMIN",
            requested_protocols=["ssl"],
            selected_protocol="ssl",
            tls=tls.parse(CLIENT_HELLO, SERVER_FLIGHT),
        ),
    ),
    (
        "all-protocols-and-an-unknown-bit",
        rdp_connection_request(
            None,
            PROTOCOL_SSL | PROTOCOL_HYBRID | PROTOCOL_RDSTLS | PROTOCOL_HYBRID_EX | 0x10 | 0x100,
        ),
        rdp_connection_confirm(PROTOCOL_HYBRID_EX),
        _facts(
            requested_protocols=["ssl", "hybrid", "rdstls", "hybrid_ex", "rdsaad", "0x100"],
            selected_protocol="hybrid_ex",
        ),
    ),
    (
        "standard-rdp-security",
        rdp_connection_request("mstshash=olduser", PROTOCOL_RDP),
        rdp_connection_confirm(PROTOCOL_RDP),
        _facts(cookie="mstshash=olduser", requested_protocols=["rdp"], selected_protocol="rdp"),
    ),
    (
        "no-negotiation-at-all",
        rdp_connection_request(None, None),
        rdp_connection_confirm(None),
        # [MS-RDPBCGR] 2.2.1.2: a confirm without RDP_NEG_RSP means standard RDP security.
        _facts(selected_protocol="rdp"),
    ),
    (
        "routing-token-of-a-load-balancer",
        rdp_connection_request("msts=3640205228.15629.0000", PROTOCOL_SSL),
        b"",
        _facts(cookie="msts=3640205228.15629.0000", requested_protocols=["ssl"]),
    ),
    (
        "negotiation-failure",
        rdp_connection_request("mstshash=x", PROTOCOL_SSL),
        rdp_negotiation_failure(HYBRID_REQUIRED_BY_SERVER),
        _facts(cookie="mstshash=x", requested_protocols=["ssl"], negotiation_failure=5),
    ),
    (
        "confirm-alone",
        b"",
        rdp_connection_confirm(PROTOCOL_SSL) + tls_server_flight(TLS10, HOST_CERT),
        _facts(selected_protocol="ssl", tls=tls.parse(b"", tls_server_flight(TLS10, HOST_CERT))),
    ),
    (
        "cookie-cut-by-the-window",
        rdp_connection_request("mstshash=" + "u" * 40)[:30],
        b"",
        _facts(),  # a cookie without its CR LF is not kept
    ),
    ("tds-is-not-rdp", tds_prelogin(), b"", None),
    ("tls-is-not-rdp", CLIENT_HELLO, SERVER_FLIGHT, None),
    (
        "tpkt-data-tpdu-is-not-a-request",
        b"\x03\x00\x00\x0c\x02\xf0\x80\x7f\x65\x82\x01\x94",
        b"",
        None,
    ),
    ("tpkt-version-2", b"\x02" + rdp_connection_request()[1:], b"", None),
    (
        "length-indicator-past-the-packet",
        b"\x03\x00\x00\x0b\x20\xe0\x00\x00\x00\x00\x00",
        b"",
        None,
    ),
    ("request-from-the-server-side", b"", rdp_connection_request(), None),
    ("both-empty", b"", b"", None),
]


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cases(c2s: bytes, s2c: bytes, expected: dict[str, Any] | None) -> None:
    assert rdp.parse(c2s, s2c) == expected


def test_rdp_tls_is_read_for_its_version_and_certificate() -> None:
    """Legacy TLS on RDP shows through: the version and the host's self-signed certificate."""
    facts = rdp.parse(
        rdp_connection_request() + tls_client_hello(None, TLS10),
        rdp_connection_confirm() + tls_server_flight(TLS10, HOST_CERT),
    )
    assert facts is not None and facts["tls"] is not None
    assert facts["tls"]["version"] == "TLS 1.0"
    assert facts["tls"]["cert_issuer_cn"] == facts["tls"]["cert_subject_cn"] == "ws01.corp.example"


# --- tiny captures through the flow table ------------------------------------------------------


def test_tiny_capture(tmp_path: Path) -> None:
    exchange = [
        ("c", rdp_connection_request("mstshash=ADMIN")),
        ("s", rdp_connection_confirm(PROTOCOL_HYBRID)),
        ("c", CLIENT_HELLO),
        ("s", SERVER_FLIGHT),
    ]
    packets = tcp_session("10.1.1.20", "10.1.0.13", 50400, 3389, exchange)
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "rdp.pcap", packets))
    assert transport == "tcp"
    facts = rdp.parse(c2s, s2c)
    assert facts is not None
    assert facts["cookie"] == "mstshash=ADMIN"
    assert facts["requested_protocols"] == ["ssl", "hybrid"]
    assert facts["selected_protocol"] == "hybrid"
    assert facts["tls"] is not None and facts["tls"]["cert_subject_cn"] == "ws01.corp.example"


@pytest.mark.tshark
def test_tshark_reads_our_bytes_as_we_mean_them(tmp_path: Path, tshark: str) -> None:
    exchange = [
        ("c", rdp_connection_request("mstshash=ADMIN", PROTOCOL_SSL | PROTOCOL_HYBRID)),
        ("s", rdp_connection_confirm(PROTOCOL_HYBRID)),
    ]
    path = write_capture(
        tmp_path / "rdp.pcap", tcp_session("10.1.1.20", "10.1.0.13", 50401, 3389, exchange)
    )
    request, confirm = tshark_fields(tshark, path, "rdp", RDP_FIELDS)
    assert request["rdp.rt_cookie"] == ["Cookie: mstshash=ADMIN"]  # tshark drops the CR LF
    assert int(request["rdp.negReq.requestedProtocols"][0], 0) == 3
    assert int(confirm["rdp.negReq.selectedProtocol"][0], 0) == 2


# --- never raise ------------------------------------------------------------------------------


def test_every_truncation_and_random_bytes_never_raise() -> None:
    messages = [
        rdp_connection_request() + CLIENT_HELLO,
        rdp_connection_confirm() + SERVER_FLIGHT,
        rdp_negotiation_failure(),
    ]
    for message in messages:
        for cut in range(len(message) + 1):
            check_json_ready(rdp.parse(message[:cut], b""))
            check_json_ready(rdp.parse(b"", message[:cut]))
            check_json_ready(rdp.parse(message[:cut], message[:cut]))
    generator = random.Random(11)
    for _ in range(3000):
        noise = bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 120)))
        length = (len(noise) + 6).to_bytes(2, "big")
        indicator = bytes([generator.randrange(0, 256)])
        check_json_ready(rdp.parse(b"\x03\x00" + length + indicator + b"\xe0" + noise, b""))
        check_json_ready(rdp.parse(b"", b"\x03\x00" + length + indicator + b"\xd0" + noise))
        check_json_ready(rdp.parse(noise, noise))


# --- the real corpus against tshark ------------------------------------------------------------

RDP_FIELDS = [
    "tcp.stream",
    "rdp.rt_cookie",
    "rdp.negReq.requestedProtocols",
    "rdp.negReq.selectedProtocol",
    "rdp.negFailure.failureCode",
]
# [MS-RDPBCGR] 2.2.1.1.1 requestedProtocols flags, as tshark shows them (one number).
PROTOCOL_FLAGS = {0x1: "ssl", 0x2: "hybrid", 0x4: "rdstls", 0x8: "hybrid_ex"}


def _names(flags: int) -> list[str]:
    return [name for bit, name in PROTOCOL_FLAGS.items() if flags & bit] or ["rdp"]


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """Every stream tshark dissects as RDP: same cookie, requested and selected protocols.

    tshark 4.0 does not follow RDP into its TLS handshake (it shows "TPKT Continuation"): told
    to read port 3389 as TLS (decode-as), it shows the handshake, and the ``tls`` facts must
    agree with it.
    """
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    files = oracle_files(corpus, "rdp")
    assert files, "ORACLE.tsv names no capture with RDP"
    for path in files:
        flows = stream_payloads(tshark, path)
        expected: dict[int, dict[str, Any]] = {}
        for row in tshark_fields(tshark, path, "rdp", RDP_FIELDS):
            shown = expected.setdefault(int(row["tcp.stream"][0]), {})
            if row.get("rdp.rt_cookie"):
                shown["cookie"] = row["rdp.rt_cookie"][0].removeprefix("Cookie: ")
            if row.get("rdp.negReq.requestedProtocols"):
                shown["requested_protocols"] = _names(
                    int(row["rdp.negReq.requestedProtocols"][0], 0)
                )
            if row.get("rdp.negReq.selectedProtocol"):
                selected = int(row["rdp.negReq.selectedProtocol"][0], 0)
                shown["selected_protocol"] = PROTOCOL_FLAGS.get(selected, "rdp")
            if row.get("rdp.negFailure.failureCode"):
                shown["negotiation_failure"] = int(row["rdp.negFailure.failureCode"][0], 0)
        tls_expected = tls_expectations(tshark, path, flows, ["tcp.port==3389,tls"])
        for stream, wanted in sorted(expected.items()):
            flow = flows[stream]
            facts = rdp.parse(flow.c2s, flow.s2c)
            if facts is None:
                problems.append(f"{path.name} stream {stream}: not recognised")
                continue
            differences = {k: (facts[k], v) for k, v in wanted.items() if facts[k] != v}
            if differences or len(wanted) < 3:
                problems.append(f"{path.name} stream {stream}: {differences or wanted}")
                continue
            tls_wanted = tls_expected.get(stream, {})
            if not tls_wanted.get("server_hello") or tls_differences(facts["tls"], tls_wanted):
                problems.append(
                    f"{path.name} {stream}: TLS {tls_differences(facts['tls'], tls_wanted)}"
                )
                continue
            outcomes["agree"] += 1
    print(f"RDP streams vs tshark: {dict(outcomes)}")
    assert not problems, problems
    assert outcomes["agree"] == 3
