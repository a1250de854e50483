"""Kerberos dissector: spec-built messages, tiny captures, hostile bytes, tshark on the corpus."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import kerberos
from tests.dissect.common import Exchange, directions
from tests.dissect.tshark_streams import oracle_files, stream_payloads, tshark_fields, wide_payloads
from tests.protobytes import kerberos as pb
from tests.scapy_flows import payloads_of, tcp_session, udp_exchange, write_capture

REALM = "CORP.EXAMPLE"


def facts_of(exchange: Exchange) -> dict[str, Any]:
    facts = kerberos.parse(*directions(exchange))
    assert facts is not None
    return facts


AS_EXCHANGE = [
    ("c", pb.as_req(REALM, "alice")),
    (
        "s",
        pb.krb_error(
            pb.KDC_ERR_PREAUTH_REQUIRED, REALM, f"krbtgt/{REALM}", cname="alice", crealm=REALM
        ),
    ),
]

CASES = [
    pytest.param(
        AS_EXCHANGE,
        {
            "msg_type": "AS-REQ",
            "reply": "KRB-ERROR",
            "realm": REALM,
            "sname": f"krbtgt/{REALM}",
            "cname": "alice",
            "error_code": 25,
        },
        id="as-req-preauth-required-udp",
    ),
    pytest.param(
        [(side, pb.tcp_record(message)) for side, message in AS_EXCHANGE],
        {"msg_type": "AS-REQ", "reply": "KRB-ERROR", "error_code": 25, "cname": "alice"},
        id="as-req-preauth-required-tcp",
    ),
    pytest.param(
        [
            ("c", pb.tcp_record(pb.as_req(REALM, "SITESRV$"))),
            ("s", pb.tcp_record(pb.kdc_rep(pb.AS_REP, REALM, "SITESRV$", f"krbtgt/{REALM}"))),
        ],
        {"msg_type": "AS-REQ", "reply": "AS-REP", "cname": "SITESRV$", "error_code": None},
        id="as-rep",
    ),
    pytest.param(
        [
            ("c", pb.tgs_req(REALM, "cifs/sitesrv.corp.example")),
            ("s", pb.kdc_rep(pb.TGS_REP, REALM, "alice", "cifs/sitesrv.corp.example")),
        ],
        {
            "msg_type": "TGS-REQ",
            "reply": "TGS-REP",
            "realm": REALM,
            "sname": "cifs/sitesrv.corp.example",
            "cname": "alice",
        },
        id="tgs-req-names-the-service-not-the-tgt-inside",
    ),
    pytest.param(
        [("s", pb.krb_error(pb.KDC_ERR_C_PRINCIPAL_UNKNOWN, REALM, f"krbtgt/{REALM}"))],
        {"msg_type": "KRB-ERROR", "reply": "KRB-ERROR", "error_code": 6, "cname": None},
        id="server-side-only",
    ),
]


@pytest.mark.parametrize(("exchange", "expected"), CASES)
def test_facts_of_spec_built_messages(exchange: Exchange, expected: dict[str, Any]) -> None:
    facts = facts_of(exchange)
    assert {key: facts[key] for key in expected} == expected


def test_facts_have_exactly_the_documented_keys() -> None:
    assert set(facts_of(AS_EXCHANGE)) == {
        "msg_type",
        "reply",
        "realm",
        "sname",
        "cname",
        "error_code",
    }


def _with_pvno(message: bytes, pvno: int) -> bytes:
    """The AS-REQ with its pvno [1] INTEGER 5 replaced."""
    marker = b"\xa1\x03\x02\x01\x05"
    assert marker in message
    return message.replace(marker, b"\xa1\x03\x02\x01" + bytes([pvno]), 1)


@pytest.mark.parametrize(
    ("c2s", "s2c"),
    [
        pytest.param(b"", b"", id="empty"),
        pytest.param(_with_pvno(pb.as_req(REALM, "alice"), 4), b"", id="pvno-4"),
        pytest.param(b"\x6a\x05\x30\x03\x02\x01\x05", b"", id="no-context-fields"),
        pytest.param(
            pb.as_req(REALM, "alice").replace(b"\xa2\x03\x02\x01\x0a", b"\xa2\x03\x02\x01\x0c", 1),
            b"",
            id="msg-type-not-the-tag",
        ),
        pytest.param(b"\x30\x05\x02\x01\x01\x60\x00", b"", id="ldap"),
        pytest.param(b"\x00\x00\x00\x10GET / HTTP/1.1\r\n", b"", id="length-then-text"),
    ],
)
def test_other_bytes_are_not_kerberos(c2s: bytes, s2c: bytes) -> None:
    assert kerberos.parse(c2s, s2c) is None


# Tiny captures through the flow table ------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_as_req_capture(tmp_path: Path, transport: str) -> None:
    if transport == "tcp":
        exchange = [(side, pb.tcp_record(message)) for side, message in AS_EXCHANGE]
        packets = tcp_session("10.10.1.20", "10.10.0.5", 50400, 88, exchange)
    else:
        packets = udp_exchange("10.10.1.20", "10.10.0.5", 50400, 88, AS_EXCHANGE)
    [(proto, c2s, s2c)] = payloads_of(write_capture(tmp_path / "krb.pcap", packets))
    facts = kerberos.parse(c2s, s2c)
    assert proto == transport and facts is not None
    assert facts["msg_type"] == "AS-REQ" and facts["reply"] == "KRB-ERROR"
    assert facts["realm"] == REALM and facts["cname"] == "alice"


# Hostile bytes -----------------------------------------------------------------------------


def _checked(c2s: bytes, s2c: bytes) -> None:
    facts = kerberos.parse(c2s, s2c)
    if facts is not None:
        json.dumps(facts)


def test_never_raises_on_truncated_mutated_or_random_bytes() -> None:
    c2s = pb.tcp_record(pb.tgs_req(REALM, "HTTP/sitesrv.corp.example"))
    s2c = pb.tcp_record(pb.kdc_rep(pb.TGS_REP, REALM, "alice", "HTTP/sitesrv.corp.example"))
    udp_c2s, udp_s2c = directions(AS_EXCHANGE)
    for client, server in ((c2s, s2c), (udp_c2s, udp_s2c)):
        for cut in range(len(client) + 1):
            _checked(client[:cut], server)
        for cut in range(len(server) + 1):
            _checked(client, server[:cut])
    rng = random.Random(20240604)
    for _ in range(3000):
        mutated = bytearray(c2s)
        for _ in range(rng.randrange(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        _checked(bytes(mutated), udp_s2c)
    for _ in range(3000):
        noise = rng.randbytes(rng.randrange(0, 300))
        _checked(bytes([rng.choice((0x6A, 0x6C, 0x7E))]) + noise, noise)
        _checked(len(noise).to_bytes(4, "big") + b"\x6a" + noise, b"")


# The corpus against tshark -----------------------------------------------------------------

_FIELDS = [
    "tcp.stream",
    "tcp.srcport",
    "kerberos.msg_type",
    "kerberos.realm",
    "kerberos.crealm",
    "kerberos.error_code",
    "kerberos.CNameString",
    "kerberos.SNameString",
]


def _tshark_view(
    tshark: str, capture: Path, server_ports: dict[int, int]
) -> dict[int, dict[str, Any]]:
    """Per tcp.stream on port 88: tshark's message types, realms, names, error code."""
    views: dict[int, dict[str, Any]] = defaultdict(
        lambda: {
            "msg_type": None,
            "reply": None,
            "realms": set(),
            "cname": set(),
            "sname": set(),
            "error_code": None,
        }
    )
    for row in tshark_fields(tshark, capture, "kerberos && tcp.port == 88", _FIELDS):
        stream = int(row["tcp.stream"][0])
        if stream not in server_ports or not row.get("kerberos.msg_type"):
            continue
        view = views[stream]
        # The first msg-type of a frame is its outer message (a TGS-REQ lists its AP-REQ too).
        name = kerberos.MESSAGE_TYPES[int(row["kerberos.msg_type"][0])]
        if int(row["tcp.srcport"][0]) != server_ports[stream]:
            view["msg_type"] = view["msg_type"] or name
        else:
            view["reply"] = view["reply"] or name
        view["realms"] |= set(row.get("kerberos.realm", []) + row.get("kerberos.crealm", []))
        view["cname"] |= set(row.get("kerberos.CNameString", []))
        view["sname"] |= set(row.get("kerberos.SNameString", []))
        if view["error_code"] is None and row.get("kerberos.error_code"):
            view["error_code"] = int(row["kerberos.error_code"][0])
    for view in views.values():
        view["msg_type"] = view["msg_type"] or view["reply"]  # no client message read
    return views


def _disagreement(facts: dict[str, Any], theirs: dict[str, Any], whole: bool) -> str | None:
    """What of our facts tshark does not show (with the whole stream, also what is missing)."""
    problems = []
    for key in ("msg_type", "reply", "error_code"):
        if facts[key] != theirs[key] and (whole or facts[key] is not None):
            problems.append(f"{key} {facts[key]} != {theirs[key]}")
    if facts["realm"] not in theirs["realms"] and (whole or facts["realm"] is not None):
        problems.append(f"realm {facts['realm']} not in {theirs['realms']}")
    for key in ("sname", "cname"):  # every component of ours is a name string tshark shows
        if facts[key] is not None and not set(facts[key].split("/")) <= theirs[key]:
            problems.append(f"{key} {facts[key]} not in {theirs[key]}")
        if whole and facts[key] is None and theirs[key]:
            problems.append(f"{key} missing, tshark shows {theirs[key]}")
    return "; ".join(problems) or None


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_kerberos_streams_agree_with_tshark(corpus: Path, tshark: str) -> None:
    """Every TCP stream on port 88 that tshark dissects as Kerberos is Kerberos to us, same facts.

    Kerberos inside SMB, LDAP or HTTP authentication belongs to those flows and is left out.
    The corpus has no Kerberos over UDP (checked here, so the test notices when it does).
    """
    captures = oracle_files(corpus, "kerberos")
    assert captures
    streams = agreed_whole = agreed_window = 0
    disagreements: list[str] = []
    for capture in captures:
        assert not tshark_fields(tshark, capture, "kerberos && udp", ["udp.stream"])
        window, whole = stream_payloads(tshark, capture), wide_payloads(tshark, capture)
        server_ports = {stream: flow.server_port for stream, flow in whole.items()}
        for stream, theirs in sorted(_tshark_view(tshark, capture, server_ports).items()):
            streams += 1
            wide_facts = kerberos.parse(whole[stream].c2s, whole[stream].s2c)
            cut_facts = kerberos.parse(window[stream].c2s, window[stream].s2c)
            if wide_facts is None or cut_facts is None:
                disagreements.append(f"{capture.name}#{stream}: not recognised")
                continue
            problem = _disagreement(wide_facts, theirs, whole=True)
            if problem is None:
                agreed_whole += 1
            else:
                disagreements.append(f"{capture.name}#{stream}: {problem}")
            problem = _disagreement(cut_facts, theirs, whole=False)
            if problem is None:
                agreed_window += 1
            else:
                disagreements.append(f"{capture.name}#{stream} (2048 bytes): {problem}")
    print(
        f"kerberos: {streams} streams tshark dissects as Kerberos on port 88; whole stream "
        f"agrees on {agreed_whole}; the 2048-byte window is consistent on {agreed_window}"
    )
    assert disagreements == []
