"""LDAP/CLDAP dissector: spec-built messages, tiny captures, hostile bytes, tshark on the corpus."""

from __future__ import annotations

import ipaddress
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowaudit.config import MAX_PAYLOAD_BYTES, FlowConfig
from flowaudit.dissect import ldap
from flowaudit.flows import build_flow_table
from tests.dissect.common import Exchange, directions
from tests.dissect.tshark_streams import (
    StreamPayload,
    oracle_files,
    stream_payloads,
    tshark_fields,
    wide_payloads,
)
from tests.protobytes import ldap as pb
from tests.scapy_flows import payloads_of, tcp_session, udp_exchange, write_capture

BASE = "DC=corp,DC=example"


def facts_of(exchange: Exchange) -> dict[str, Any]:
    facts = ldap.parse(*directions(exchange))
    assert facts is not None
    return facts


GC_SEARCH = [
    ("c", pb.simple_bind_request(1, "CN=svc-cm,OU=Service,DC=corp,DC=example", "S3cret!")),
    ("s", pb.bind_response(1)),
    ("c", pb.search_request(2, BASE, attributes=["dNSHostName"])),
    ("s", pb.search_result_entry(2, "CN=SITESRV," + BASE, {"dNSHostName": ["sitesrv"]})),
    ("s", pb.search_result_done(2)),
    ("c", pb.unbind_request(3)),
]

SASL_WRAPPED = [
    ("c", pb.sasl_bind_request(1, "GSS-SPNEGO", b"\x60\x03\x06\x01\x00")),
    ("s", pb.bind_response(1)),
    ("c", pb.sasl_buffer(pb.krb5_wrap_clear(pb.search_request(2, BASE), rotation=12))),
    ("c", pb.sasl_buffer(b"\x05\x04\x06\xff" + bytes(60))),  # sealed: skipped
    ("c", pb.sasl_buffer(pb.krb5_wrap_clear(pb.unbind_request(4), sequence_number=2))),
]

CASES = [
    pytest.param(
        GC_SEARCH,
        {
            "operation": "bindRequest",
            "operations": [
                "bindRequest",
                "searchRequest",
                "unbindRequest",
                "bindResponse",
                "searchResEntry",
                "searchResDone",
            ],
            "bind_auth": "simple",
            "sasl_mechanism": None,
            "simple_bind_with_password": True,
            "starttls": False,
            "base_dn": BASE,
            "result_code": 0,
        },
        id="simple-bind-and-search",
    ),
    pytest.param(
        [("c", pb.simple_bind_request(1, "", "")), ("s", pb.bind_response(1))],
        {"bind_auth": "simple", "simple_bind_with_password": False},
        id="anonymous-simple-bind",
    ),
    pytest.param(
        [
            ("c", pb.simple_bind_request(1, "CN=x", "wrong")),
            ("s", pb.bind_response(1, pb.INVALID_CREDENTIALS)),
        ],
        {"result_code": 49, "simple_bind_with_password": True},
        id="invalid-credentials",
    ),
    pytest.param(
        SASL_WRAPPED,
        {
            "bind_auth": "sasl",
            "sasl_mechanism": "GSS-SPNEGO",
            "operations": ["bindRequest", "searchRequest", "unbindRequest", "bindResponse"],
            "base_dn": BASE,
        },
        id="sasl-bind-then-integrity-wrapped",
    ),
    pytest.param(
        [
            ("c", pb.extended_request(1, pb.STARTTLS_OID)),
            ("s", pb.extended_response(1)),
            ("c", bytes.fromhex("1603010200010001fc0303") + bytes(32)),
        ],
        {"operation": "extendedReq", "starttls": True, "result_code": 0, "bind_auth": None},
        id="starttls",
    ),
    pytest.param(
        [("c", pb.extended_request(1, "1.3.6.1.4.1.4203.1.11.3"))],
        {"operation": "extendedReq", "starttls": False},
        id="whoami-is-not-starttls",
    ),
    pytest.param(
        [("c", pb.cldap_netlogon_ping(1, "corp.example"))],
        {"operation": "searchRequest", "base_dn": "", "result_code": None},
        id="cldap-netlogon-ping",
    ),
    pytest.param(
        [("s", pb.bind_response(1)), ("s", pb.search_result_done(2, 32))],
        {
            "operation": "bindResponse",
            "result_code": 0,
            "operations": ["bindResponse", "searchResDone"],
        },
        id="server-side-only",
    ),
]


@pytest.mark.parametrize(("exchange", "expected"), CASES)
def test_facts_of_spec_built_messages(exchange: Exchange, expected: dict[str, Any]) -> None:
    facts = facts_of(exchange)
    assert {key: facts[key] for key in expected} == expected


def test_facts_have_exactly_the_documented_keys() -> None:
    assert set(facts_of(GC_SEARCH)) == {
        "operation",
        "operations",
        "bind_auth",
        "sasl_mechanism",
        "simple_bind_with_password",
        "starttls",
        "base_dn",
        "result_code",
        "sasl_protection",
        "sasl_token",
    }


def test_four_byte_long_form_lengths_as_windows_sends_them() -> None:
    """Active Directory answers with 0x84 lengths (X.690 8.1.3.5 allows non-minimal forms)."""
    result = b"\x0a\x01\x00\x04\x00\x04\x00"
    operation = b"\x61\x84" + len(result).to_bytes(4, "big") + result
    body = b"\x02\x01\x07" + operation
    message = b"\x30\x84" + len(body).to_bytes(4, "big") + body
    facts = ldap.parse(b"", message)
    assert facts is not None and facts["operation"] == "bindResponse" and facts["result_code"] == 0


def test_a_message_cut_by_the_window_still_names_its_operation() -> None:
    entry = pb.search_result_entry(2, "CN=x", {"memberOf": ["CN=group"] * 400})
    facts = ldap.parse(pb.search_request(2, BASE), entry[:2048])
    assert facts is not None
    assert facts["operations"] == ["searchRequest", "searchResEntry"]
    assert facts["result_code"] is None


@pytest.mark.parametrize(
    ("c2s", "s2c"),
    [
        pytest.param(b"", b"", id="empty"),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", b"", id="http"),
        pytest.param(bytes.fromhex("302902010104067075626c6963a01c"), b"", id="snmp"),
        pytest.param(b"\x30\x05\x02\x01\x01\x71\x00", b"", id="application-17"),
        pytest.param(b"\x30\x05\x04\x01\x01\x60\x00", b"", id="no-message-id"),
        pytest.param(b"\x30\x80\x02\x01\x01\x60\x00", b"", id="indefinite-length"),
        pytest.param(b"\x00\x00\x00\x10" + b"\x05\x04" + bytes(14), b"", id="sasl-without-bind"),
    ],
)
def test_other_bytes_are_not_ldap(c2s: bytes, s2c: bytes) -> None:
    assert ldap.parse(c2s, s2c) is None


# Tiny captures through the flow table ------------------------------------------------------


def test_gc_bind_on_3268(tmp_path: Path) -> None:
    packets = tcp_session("10.10.0.10", "10.10.0.5", 50200, 3268, GC_SEARCH)
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "gc.pcap", packets))
    facts = ldap.parse(c2s, s2c)
    assert transport == "tcp" and facts is not None
    assert facts["bind_auth"] == "simple" and facts["simple_bind_with_password"]
    assert facts["base_dn"] == BASE


def test_cldap_ping_over_udp(tmp_path: Path) -> None:
    answer = pb.search_result_entry(1, "", {"Netlogon": ["x" * 40]}) + pb.search_result_done(1)
    packets = udp_exchange(
        "10.10.1.20",
        "10.10.0.5",
        50300,
        389,
        [("c", pb.cldap_netlogon_ping(1, "corp.example")), ("s", answer)],
    )
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "cldap.pcap", packets))
    facts = ldap.parse(c2s, s2c)
    assert transport == "udp" and facts is not None
    assert facts["operations"] == ["searchRequest", "searchResEntry", "searchResDone"]


# Hostile bytes -----------------------------------------------------------------------------


def _checked(c2s: bytes, s2c: bytes) -> None:
    facts = ldap.parse(c2s, s2c)
    if facts is not None:
        json.dumps(facts)


def test_never_raises_on_truncated_mutated_or_random_bytes() -> None:
    exchange = [*GC_SEARCH, *SASL_WRAPPED, ("c", pb.extended_request(9, pb.STARTTLS_OID))]
    c2s, s2c = directions(exchange)
    for cut in range(len(c2s) + 1):
        _checked(c2s[:cut], s2c)
    for cut in range(len(s2c) + 1):
        _checked(c2s, s2c[:cut])
    rng = random.Random(20240603)
    for _ in range(3000):
        mutated = bytearray(c2s)
        for _ in range(rng.randrange(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        _checked(bytes(mutated), s2c)
    for _ in range(3000):
        noise = rng.randbytes(rng.randrange(0, 300))
        _checked(b"\x30" + noise, b"\x30\x84" + noise)
        _checked(pb.bind_response(1) + noise, noise)


# The corpus against tshark -----------------------------------------------------------------

_FIELDS = [
    "tcp.stream",
    "udp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "udp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "udp.dstport",
    "ldap.protocolOp",
    "ldap.authentication",
    "ldap.mechanism",
    "ldap.simple",
    "ldap.baseObject",
    "ldap.resultCode",
    "ldap.requestName",
]
_RESULT_OPERATIONS = {1, 5, 7, 9, 11, 13, 15, 24}


def _endpoint(row: dict[str, list[str]], side: str) -> tuple[str, int]:
    address = (row.get(f"ip.{side}") or row.get(f"ipv6.{side}") or [""])[-1]
    port = (row.get(f"tcp.{side}port") or row.get(f"udp.{side}port") or ["0"])[0]
    return str(ipaddress.ip_address(address)), int(port)


def _udp_payloads(
    capture: Path, payload_bytes: int
) -> dict[frozenset[tuple[str, int]], StreamPayload]:
    """UDP flows of the capture by endpoints (CLDAP: one flow per 5-tuple in these files)."""
    table = build_flow_table([capture], FlowConfig(payload_bytes=payload_bytes, idle_timeout=0))
    c2s, s2c = table.payloads.columns()
    flows = {}
    for row in range(len(table)):
        if table.columns["proto"][row] != "udp":
            continue
        flow = StreamPayload(
            str(ipaddress.ip_address(str(table.columns["client"][row]))),
            int(table.columns["client_port"][row]),
            str(ipaddress.ip_address(str(table.columns["server"][row]))),
            int(table.columns["server_port"][row]),
            c2s[row],
            s2c[row],
        )
        flows[frozenset({(flow.client, flow.client_port), (flow.server, flow.server_port)})] = flow
    return flows


def _empty_view() -> dict[str, Any]:
    return {
        "operation": None,
        "operations": set(),
        "bind_auth": None,
        "sasl_mechanism": None,
        "simple_bind_with_password": False,
        "starttls": False,
        "base_dn": None,
        "result_code": None,
        "server_operation": None,  # the operation when tshark shows no client message
    }


def _add_frame(view: dict[str, Any], row: dict[str, list[str]], from_client: bool) -> None:
    operations = [int(op) for op in row.get("ldap.protocolOp", [])]
    view["operations"] |= {ldap.OPERATIONS[op] for op in operations}
    if from_client:
        if view["operation"] is None and operations:
            view["operation"] = ldap.OPERATIONS[operations[0]]
        if 0 in operations and view["bind_auth"] is None and row.get("ldap.authentication"):
            view["bind_auth"] = {"0": "simple", "3": "sasl"}[row["ldap.authentication"][0]]
            view["sasl_mechanism"] = next(iter(row.get("ldap.mechanism", [])), None)
            view["simple_bind_with_password"] = bool(row.get("ldap.simple"))
        if 3 in operations and view["base_dn"] is None:
            view["base_dn"] = (row.get("ldap.baseObject") or [""])[0]
        view["starttls"] |= ldap.STARTTLS_OID in row.get("ldap.requestName", [])
        return
    if view["server_operation"] is None and operations:
        view["server_operation"] = ldap.OPERATIONS[operations[0]]
    if view["result_code"] is None and set(operations) & _RESULT_OPERATIONS:
        view["result_code"] = int(row["ldap.resultCode"][0])


def _ours(facts: dict[str, Any]) -> dict[str, Any]:
    # (sasl_protection and sasl_token are held to tshark in tests/test_plaintext.py)
    skip = ("sasl_protection", "sasl_token")
    return {
        **{key: value for key, value in facts.items() if key not in skip},
        "operations": set(facts["operations"]),
    }


def _views(
    tshark: str, capture: Path, flows: dict[str, dict[Any, StreamPayload]]
) -> dict[tuple[str, Any], dict[str, Any]]:
    """(transport, stream key) -> tshark's LDAP facts, c2s and s2c told apart by the flow."""
    views: dict[tuple[str, Any], dict[str, Any]] = defaultdict(_empty_view)
    for row in tshark_fields(tshark, capture, "ldap || cldap", _FIELDS):
        source = _endpoint(row, "src")
        if row.get("tcp.stream"):
            key: tuple[str, Any] = ("tcp", int(row["tcp.stream"][0]))
        else:
            key = ("udp", frozenset({source, _endpoint(row, "dst")}))
        flow = flows[key[0]].get(key[1])
        if flow is None:
            continue
        _add_frame(views[key], row, source == (flow.client, flow.client_port))
    for view in views.values():
        server_operation = view.pop("server_operation")
        view["operation"] = view["operation"] or server_operation
    return views


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_ldap_streams_agree_with_tshark(corpus: Path, tshark: str) -> None:
    """Every TCP/UDP stream tshark dissects as LDAP or CLDAP is LDAP to us, with its facts.

    Whole streams agree exactly (tshark also reads integrity-only SASL layers; sealed ones are
    opaque to both). In the 2048-byte window operations may be missing (a search answer can
    fill it alone), never wrong.
    """
    captures = oracle_files(corpus, "ldap_or_cldap")
    assert captures
    streams = agreed_whole = agreed_window = equal_window = 0
    disagreements: list[str] = []
    for capture in captures:
        whole: dict[str, dict[Any, StreamPayload]] = {
            "tcp": wide_payloads(tshark, capture),
            "udp": _udp_payloads(capture, MAX_PAYLOAD_BYTES),
        }
        window: dict[str, dict[Any, StreamPayload]] = {
            "tcp": stream_payloads(tshark, capture),
            "udp": _udp_payloads(capture, 2048),
        }
        for key, theirs in _views(tshark, capture, whole).items():
            streams += 1
            flow, cut_flow = whole[key[0]][key[1]], window[key[0]][key[1]]
            wide_facts, cut_facts = (
                ldap.parse(flow.c2s, flow.s2c),
                ldap.parse(cut_flow.c2s, cut_flow.s2c),
            )
            if wide_facts is None or cut_facts is None:
                disagreements.append(f"{capture.name}#{key}: not recognised")
                continue
            if _ours(wide_facts) == theirs:
                agreed_whole += 1
            else:
                disagreements.append(f"{capture.name}#{key}: {_ours(wide_facts)} != {theirs}")
            cut = _ours(cut_facts)
            equal_window += cut == theirs
            if cut["operations"] <= theirs["operations"] and all(
                cut[name] in (theirs[name], None, False)
                for name in ("bind_auth", "sasl_mechanism", "base_dn", "result_code", "starttls")
            ):
                agreed_window += 1
            else:
                disagreements.append(f"{capture.name}#{key} (2048 bytes): {cut} vs {theirs}")
    print(
        f"ldap: {streams} streams tshark dissects as LDAP/CLDAP; whole stream agrees on "
        f"{agreed_whole}; the 2048-byte window is consistent on {agreed_window} and complete "
        f"on {equal_window}"
    )
    assert disagreements == []
