"""TDS dissector: PRELOGIN encryption, packet types, TDS 8 strict; bytes, captures, corpus."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import tds, tls
from tests.dissect.common import check_json_ready
from tests.dissect.tshark_streams import first, oracle_files, stream_payloads, tshark_fields
from tests.protobytes.rdp import rdp_connection_confirm, rdp_connection_request
from tests.protobytes.tds import (
    ENCRYPT_CLIENT_CERT,
    ENCRYPT_NOT_SUP,
    ENCRYPT_OFF,
    ENCRYPT_ON,
    ENCRYPT_REQ,
    PRELOGIN,
    RPC,
    STATUS_EOM,
    TABULAR_RESULT,
    tds_login7_stub,
    tds_packet,
    tds_prelogin,
    tds_prelogin_response,
    tds_sql_batch,
)
from tests.protobytes.tls import TLS12, TLS13, make_certificate, tls_client_hello, tls_server_flight
from tests.scapy_flows import payloads_of, tcp_session, write_capture

SQL_CERT = make_certificate("sql01.corp.example", "corp-ISSUING-CA")
STRICT_CLIENT = tls_client_hello("sql01.corp.example", TLS12, [TLS13, TLS12], ["tds/8.0"])
STRICT_SERVER = tls_server_flight(TLS13, alpn_selected="tds/8.0")


def _facts(**expected: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "prelogin": False,
        "client_encryption": None,
        "server_encryption": None,
        "client_version": None,
        "instance": None,
        "tds8_strict": False,
        "packet_types": [],
        "tls": None,
    }
    facts.update(expected)
    return facts


def _prelogin_facts(client: str | None, server: str | None, **expected: Any) -> dict[str, Any]:
    return _facts(
        prelogin=True,
        client_encryption=client,
        server_encryption=server,
        client_version=expected.pop("client_version", "15.0.2000"),
        instance=expected.pop("instance", "MSSQLServer"),
        packet_types=expected.pop("packet_types", ["PRELOGIN", "RESPONSE"]),
        **expected,
    )


ENCRYPTED_LOGIN_CLIENT = tds_prelogin(ENCRYPT_ON) + tds_packet(PRELOGIN, tls_client_hello("sql01"))
ENCRYPTED_LOGIN_SERVER = tds_prelogin_response(ENCRYPT_ON) + tds_packet(
    PRELOGIN, tls_server_flight(TLS12, SQL_CERT)
)

# (case, c2s, s2c, the whole facts expected)
CASES: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = [
    (
        "prelogin-encrypt-off",
        tds_prelogin(ENCRYPT_OFF),
        tds_prelogin_response(ENCRYPT_OFF),
        _prelogin_facts("OFF", "OFF"),
    ),
    (
        "prelogin-encrypt-req",
        tds_prelogin(ENCRYPT_REQ),
        tds_prelogin_response(ENCRYPT_REQ),
        _prelogin_facts("REQ", "REQ"),
    ),
    (
        "prelogin-client-off-server-not-sup",
        tds_prelogin(ENCRYPT_OFF, (8, 0, 341), "SCCM"),
        tds_prelogin_response(ENCRYPT_NOT_SUP),
        _prelogin_facts("OFF", "NOT_SUP", client_version="8.0.341", instance="SCCM"),
    ),
    (
        "client-certificate-flag-default-instance",
        tds_prelogin(ENCRYPT_ON | ENCRYPT_CLIENT_CERT, instance=None),
        tds_prelogin_response(ENCRYPT_REQ | ENCRYPT_CLIENT_CERT),
        _prelogin_facts("ON+CLIENT_CERT", "REQ+CLIENT_CERT", instance=None),
    ),
    (
        "unknown-encryption-value-shown-as-hex",
        tds_prelogin(0x07),
        b"",
        _prelogin_facts("0x07", None, packet_types=["PRELOGIN"]),
    ),
    (
        "tds7-tls-wrapped-in-prelogin-packets",
        ENCRYPTED_LOGIN_CLIENT,
        ENCRYPTED_LOGIN_SERVER,
        _prelogin_facts(
            "ON",
            "ON",
            packet_types=["PRELOGIN", "RESPONSE"],
            tls=tls.parse(tls_client_hello("sql01"), tls_server_flight(TLS12, SQL_CERT)),
        ),
    ),
    (
        "server-prelogin-answer-alone",
        b"",
        tds_prelogin_response(ENCRYPT_ON),
        _facts(prelogin=True, server_encryption="ON", packet_types=["RESPONSE"]),
    ),
    (
        "tds8-strict-tls-first",
        STRICT_CLIENT,
        STRICT_SERVER,
        _facts(tds8_strict=True, tls=tls.parse(STRICT_CLIENT, STRICT_SERVER)),
    ),
    (
        "tds8-strict-server-selects-alpn",
        b"",
        STRICT_SERVER,
        _facts(tds8_strict=True, tls=tls.parse(b"", STRICT_SERVER)),
    ),
    (
        "login-and-batch-without-prelogin",
        tds_login7_stub() + tds_sql_batch("select 1"),
        tds_packet(TABULAR_RESULT, b"\xad\x36\x00"),
        _facts(packet_types=["LOGIN7", "SQLBATCH", "RESPONSE"]),
    ),
    (
        "sql-batch-response-is-not-a-prelogin-answer",
        tds_sql_batch("SELECT name FROM sys.databases"),
        tds_packet(TABULAR_RESULT, b"\x00\x00\x05\x00\x05\x00\x01\xff"),
        _facts(packet_types=["SQLBATCH", "RESPONSE"]),
    ),
    (
        "rpc-split-in-full-size-packets",
        tds_packet(RPC, bytes(4088), status=0) + tds_packet(RPC, bytes(100), status=STATUS_EOM),
        b"",
        _facts(packet_types=["RPC"]),
    ),
    ("plain-tls-is-not-tds", tls_client_hello("www.example.com"), tls_server_flight(TLS12), None),
    # A TPKT header reads like an RPC packet without EOM: too short to be a non-final packet.
    ("rdp-connection-request", rdp_connection_request(), rdp_connection_confirm(), None),
    ("window-byte-not-zero", tds_prelogin()[:7] + b"\x01" + tds_prelogin()[8:], b"", None),
    ("unknown-status-bits", b"\x12\x21" + tds_prelogin()[2:], b"", None),
    ("length-below-header", b"\x12\x01\x00\x07\x00\x00\x01\x00", b"", None),
    ("length-above-32768", b"\x01\x01\x90\x00\x00\x00\x01\x00" + bytes(100), b"", None),
    ("unused-type-5", b"\x05\x01\x00\x10\x00\x00\x01\x00" + bytes(8), b"", None),
    ("server-type-from-client", tds_prelogin_response(), b"", None),
    ("client-garbage-server-response", b"\x99garbage", tds_prelogin_response(), None),
    ("both-empty", b"", b"", None),
]


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cases(c2s: bytes, s2c: bytes, expected: dict[str, Any] | None) -> None:
    assert tds.parse(c2s, s2c) == expected


def test_tds7_wrapped_tls_names_the_sql_server_certificate() -> None:
    facts = tds.parse(ENCRYPTED_LOGIN_CLIENT, ENCRYPTED_LOGIN_SERVER)
    assert facts is not None and facts["tls"] is not None
    assert (facts["tls"]["version"], facts["tls"]["cert_issuer_cn"]) == (
        "TLS 1.2",
        "corp-ISSUING-CA",
    )


def test_tds8_strict_bytes_are_tls_too() -> None:
    """TDS comes before TLS in the dissectors' order: both read a TDS 8 start."""
    assert tls.parse(STRICT_CLIENT, STRICT_SERVER) is not None
    from flowaudit import dissect

    protocol, facts = dissect.dissect("tcp", STRICT_CLIENT, STRICT_SERVER)
    assert protocol == "tds" and facts["tds8_strict"] is True


# --- tiny captures through the flow table ------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        (tds_prelogin(ENCRYPT_OFF), tds_prelogin_response(ENCRYPT_OFF), ("OFF", "OFF", False)),
        (tds_prelogin(ENCRYPT_REQ), tds_prelogin_response(ENCRYPT_REQ), ("REQ", "REQ", False)),
        (STRICT_CLIENT, STRICT_SERVER, (None, None, True)),
    ],
    ids=["encrypt-off", "encrypt-req", "tds8-strict"],
)
def test_tiny_capture(
    tmp_path: Path, client: bytes, server: bytes, expected: tuple[str | None, str | None, bool]
) -> None:
    packets = tcp_session("10.1.0.10", "10.1.0.11", 50300, 1433, [("c", client), ("s", server)])
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "tds.pcap", packets))
    assert transport == "tcp"
    facts = tds.parse(c2s, s2c)
    assert facts is not None
    assert (
        facts["client_encryption"],
        facts["server_encryption"],
        facts["tds8_strict"],
    ) == expected


@pytest.mark.tshark
def test_tshark_reads_our_bytes_as_we_mean_them(tmp_path: Path, tshark: str) -> None:
    exchange = [
        ("c", tds_prelogin(ENCRYPT_REQ, (15, 0, 2000), "SCCM")),
        ("s", tds_prelogin_response(ENCRYPT_NOT_SUP)),
    ]
    path = write_capture(
        tmp_path / "tds.pcap", tcp_session("10.1.0.10", "10.1.0.11", 50301, 1433, exchange)
    )
    fields = [
        "tds.type",
        "tds.prelogin.option.encryption",
        "tds.prelogin.option.version",
        "tds.prelogin.option.instopt",
    ]
    client, server = tshark_fields(tshark, path, "tds", fields)
    assert client["tds.type"] == ["18"] and server["tds.type"] == ["4"]
    assert client["tds.prelogin.option.encryption"] == ["3"]
    assert server["tds.prelogin.option.encryption"] == ["2"]
    assert _tshark_version(client["tds.prelogin.option.version"][0]) == "15.0.2000"
    assert client["tds.prelogin.option.instopt"] == ["SCCM"]


# --- never raise ------------------------------------------------------------------------------


def test_every_truncation_and_random_bytes_never_raise() -> None:
    messages = [
        ENCRYPTED_LOGIN_CLIENT,
        ENCRYPTED_LOGIN_SERVER,
        tds_prelogin(ENCRYPT_REQ),
        STRICT_CLIENT,
        STRICT_SERVER,
        tds_login7_stub() + tds_sql_batch("select 1"),
    ]
    for message in messages:
        for cut in range(len(message) + 1):
            check_json_ready(tds.parse(message[:cut], b""))
            check_json_ready(tds.parse(b"", message[:cut]))
    generator = random.Random(7)
    prelogin = tds_prelogin()
    for _ in range(3000):
        noise = bytes(generator.getrandbits(8) for _ in range(generator.randrange(0, 200)))
        # A valid header in front of random option tables, so the PRELOGIN reader sees them.
        header = bytes([0x12, 0x01]) + (8 + len(noise)).to_bytes(2, "big") + b"\x00\x00\x01\x00"
        check_json_ready(tds.parse(header + noise, b"\x04" + header[1:] + noise))
        check_json_ready(tds.parse(noise, noise))
        mutated = bytearray(prelogin)
        mutated[generator.randrange(8, len(mutated))] = generator.getrandbits(8)
        check_json_ready(tds.parse(bytes(mutated), b""))


# --- the real corpus against tshark ------------------------------------------------------------

# tshark shows the option values as numbers; [MS-TDS] 2.2.6.5 names them.
ENCRYPTION = {0: "OFF", 1: "ON", 2: "NOT_SUP", 3: "REQ"}
PACKET_TYPES = {1: "SQLBATCH", 3: "RPC", 4: "RESPONSE", 16: "LOGIN7", 18: "PRELOGIN"}


def _tshark_version(value: str) -> str:
    """tshark shows UL_VERSION as one 32-bit number: major, minor, 16-bit build."""
    number = int(value)
    return f"{number >> 24}.{(number >> 16) & 0xFF}.{number & 0xFFFF}"


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """Every stream tshark dissects as TDS: recognised, same first packet type of the client,
    packet types among tshark's, same PRELOGIN encryption, version and instance."""
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    files = oracle_files(corpus, "tds")
    assert files, "ORACLE.tsv names no capture with TDS"
    fields = [
        "tcp.stream",
        "tcp.srcport",
        "tds.type",
        "tds.prelogin.option.encryption",
        "tds.prelogin.option.version",
        "tds.prelogin.option.instopt",
    ]
    for path in files:
        flows = stream_payloads(tshark, path)
        rows_by_stream: dict[int, list[dict[str, list[str]]]] = {}
        for row in tshark_fields(tshark, path, "tds", fields):
            rows_by_stream.setdefault(int(row["tcp.stream"][0]), []).append(row)
        for stream, rows in sorted(rows_by_stream.items()):
            flow = flows[stream]
            facts = tds.parse(flow.c2s, flow.s2c)
            if facts is None:
                problems.append(f"{path.name} stream {stream}: not recognised")
                continue
            client_rows = [r for r in rows if int(r["tcp.srcport"][0]) == flow.client_port]
            server_rows = [r for r in rows if int(r["tcp.srcport"][0]) == flow.server_port]
            seen = {PACKET_TYPES.get(int(t), t) for r in rows for t in r["tds.type"]}
            expected: dict[str, Any] = {}
            if client_rows:
                first_type = PACKET_TYPES[int(client_rows[0]["tds.type"][0])]
                if facts["packet_types"][:1] != [first_type]:
                    problems.append(
                        f"{path.name} {stream}: first {facts['packet_types']} vs {first_type}"
                    )
            if not set(facts["packet_types"]) <= seen:
                problems.append(f"{path.name} {stream}: types {facts['packet_types']} vs {seen}")
            for side, side_rows in (("client", client_rows), ("server", server_rows)):
                with_option = [r for r in side_rows if r.get("tds.prelogin.option.encryption")]
                if with_option:
                    expected["prelogin"] = True
                    option = with_option[0]
                    expected[f"{side}_encryption"] = ENCRYPTION[
                        int(option["tds.prelogin.option.encryption"][0])
                    ]
                    if side == "client":
                        expected["client_version"] = _tshark_version(
                            option["tds.prelogin.option.version"][0]
                        )
                        expected["instance"] = first(option, "tds.prelogin.option.instopt")
            differences = [k for k, v in expected.items() if facts[k] != v]
            if differences:
                problems.append(f"{path.name} stream {stream}: {differences} {facts} {expected}")
                continue
            outcomes["agree, with PRELOGIN" if expected else "agree"] += 1
    print(f"TDS streams vs tshark: {dict(outcomes)}")
    assert not problems, problems
    assert outcomes["agree, with PRELOGIN"] == 1
    assert outcomes["agree"] == 12
