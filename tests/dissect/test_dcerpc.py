"""DCE/RPC dissector: spec-built PDUs, tiny captures, hostile bytes, and tshark on the corpus."""

from __future__ import annotations

import json
import random
import re
import struct
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowaudit.config import FlowConfig
from flowaudit.dissect import dcerpc
from flowaudit.flows import build_flow_table
from tests.dissect.common import Exchange, directions
from tests.dissect.tshark_streams import oracle_files, stream_payloads, tshark_fields, wide_payloads
from tests.protobytes import dcerpc as pb
from tests.scapy_flows import payloads_of, tcp_session, write_capture

SAMR = ("12345778-1234-abcd-ef00-0123456789ac", 1, 0)
DRSUAPI = ("e3514235-4b06-11d1-ab04-00c04fc2dcd2", 4, 0)
UNKNOWN = ("01234567-89ab-cdef-0123-456789abcdef", 1, 2)


def facts_of(exchange: Exchange) -> dict[str, Any]:
    facts = dcerpc.parse(*directions(exchange))
    assert facts is not None
    return facts


# Spec-built PDUs ---------------------------------------------------------------------------

CASES = [
    pytest.param(
        pb.epm_exchange(pb.SVCCTL, "10.10.0.10", 49701),
        {
            "interfaces": [
                {"uuid": "e1af8308-5d1f-11c9-91a4-08002b14a0fa", "version": "3.0", "name": "epm"}
            ],
            "auth_type": None,
            "auth_level": None,
            "bind_ack": True,
            "secondary_address": "135",
            "announced": [{"host": "10.10.0.10", "port": 49701, "by": "epm"}],
            "opnums": [3],
        },
        id="epm-map-announces-dynamic-port",
    ),
    pytest.param(
        [
            *pb.epm_exchange(SAMR, "0.0.0.0", 49668)[:3],
            (
                "s",
                pb.response(
                    2,
                    pb.ept_map_response(
                        [
                            pb.tcp_tower(SAMR, "0.0.0.0", 49668),
                            pb.tcp_tower(SAMR, "10.10.0.11", 49669),
                        ]
                    ),
                ),
            ),
        ],
        {
            "announced": [
                {"host": None, "port": 49668, "by": "epm"},
                {"host": "10.10.0.11", "port": 49669, "by": "epm"},
            ]
        },
        id="epm-two-towers-one-without-address",
    ),
    pytest.param(
        pb.dcom_resolve_exchange(["SITESRV[49702]", "10.10.0.10[49702]", "SITESRV"]),
        {
            "interfaces": [
                {
                    "uuid": "99fcfec4-5260-101b-bbcb-00aa0021347a",
                    "version": "0.0",
                    "name": "IObjectExporter",
                }
            ],
            "announced": [
                {"host": "SITESRV", "port": 49702, "by": "dcom"},
                {"host": "10.10.0.10", "port": 49702, "by": "dcom"},
            ],
            "opnums": [4],
        },
        id="dcom-resolve-oxid2-string-bindings",
    ),
    pytest.param(
        [
            (
                "c",
                pb.bind(
                    1, [pb.SVCCTL], auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, pb.NTLMSSP_NEGOTIATE)
                ),
            ),
            ("s", pb.bind_ack(1, "49701")),
            (
                "c",
                pb.request(2, 15, b"\x00" * 16, auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, bytes(16))),
            ),
            ("c", pb.request(3, 16, b"\x00" * 8, auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, bytes(16)))),
        ],
        {
            "interfaces": [
                {"uuid": "367abb81-9844-35f1-ad32-98f038001003", "version": "2.0", "name": "svcctl"}
            ],
            "auth_type": "ntlmssp",
            "auth_level": "privacy",
            "secondary_address": "49701",
            "announced": [],
            "opnums": [15, 16],
        },
        id="svcctl-ntlm-privacy",
    ),
    pytest.param(
        [
            ("c", pb.bind(1, [DRSUAPI])),
            ("s", pb.bind_ack(1, "49667")),
            (
                "c",
                pb.bind(
                    2,
                    [SAMR],
                    auth=(pb.AUTH_KERBEROS, pb.LEVEL_INTEGRITY, bytes(32)),
                    alter_context=True,
                ),
            ),
        ],
        {
            "interfaces": [
                {"uuid": DRSUAPI[0], "version": "4.0", "name": "drsuapi"},
                {"uuid": SAMR[0], "version": "1.0", "name": "samr"},
            ],
            "auth_type": "kerberos",
            "auth_level": "integrity",
        },
        id="alter-context-adds-interface-and-auth",
    ),
    pytest.param(
        [("c", pb.bind(1, [UNKNOWN, UNKNOWN], auth=(pb.AUTH_SPNEGO, pb.LEVEL_CONNECT, bytes(8))))],
        {
            "interfaces": [{"uuid": UNKNOWN[0], "version": "1.2", "name": None}],
            "auth_type": "spnego",
            "auth_level": "connect",
            "bind_ack": False,
            "secondary_address": None,
        },
        id="unknown-interface-once",
    ),
    pytest.param(
        [("s", pb.response(7, pb.ept_map_response([pb.tcp_tower(SAMR, "10.1.2.3", 50000)])))],
        {"announced": [{"host": "10.1.2.3", "port": 50000, "by": "epm"}], "interfaces": []},
        id="tower-without-the-request-in-window",
    ),
    pytest.param(
        [
            ("c", pb.bind(1, [SAMR])),
            ("c", pb.request(2, 5, b"")),
            ("s", pb.response(2, pb.ept_map_response([pb.tcp_tower(SAMR, "10.1.2.3", 50000)]))),
        ],
        {"announced": []},
        id="towers-only-from-the-endpoint-mapper",
    ),
    pytest.param(
        [
            ("c", b"\x05\x00\x0b lost first segment" + pb.bind(1, [DRSUAPI])),
            ("s", pb.bind_ack(1, "49667")),
        ],
        {"interfaces": [{"uuid": DRSUAPI[0], "version": "4.0", "name": "drsuapi"}]},
        id="client-side-resynchronised-after-a-lost-segment",
    ),
]


@pytest.mark.parametrize(("exchange", "expected"), CASES)
def test_facts_of_spec_built_pdus(exchange: Exchange, expected: dict[str, Any]) -> None:
    facts = facts_of(exchange)
    assert {key: facts[key] for key in expected} == expected


def test_facts_have_exactly_the_documented_keys() -> None:
    assert set(facts_of(pb.epm_exchange(pb.SVCCTL, "10.0.0.1", 50000))) == {
        "interfaces",
        "auth_type",
        "auth_level",
        "bind_ack",
        "secondary_address",
        "announced",
        "opnums",
    }


def test_big_endian_pdus_are_read() -> None:
    """drep byte order 0 ([C706] 14.1): header fields and UUIDs in big-endian order."""
    interface_uuid = "367abb81-9844-35f1-ad32-98f038001003"
    body = struct.pack(">HHI", 5840, 5840, 0) + struct.pack(">B3x", 1)
    body += struct.pack(">HBx", 0, 1)
    body += bytes.fromhex(interface_uuid.replace("-", "")) + struct.pack(
        ">HH", 0, 2
    )  # minor, major
    body += bytes.fromhex("8a885d041ceb11c99fe808002b104860") + struct.pack(">HH", 0, 2)
    header = struct.pack(">BBBB4sHHI", 5, 0, pb.BIND, 3, b"\x00\x00\x00\x00", 16 + len(body), 0, 1)
    facts = dcerpc.parse(header + body, b"")
    assert facts is not None
    assert facts["interfaces"] == [{"uuid": interface_uuid, "version": "2.0", "name": "svcctl"}]


def test_opnums_are_capped() -> None:
    exchange = [("c", pb.bind(1, [SAMR]))]
    exchange += [("c", pb.request(2 + k, k % 7, b"")) for k in range(40)]
    assert facts_of(exchange)["opnums"] == [k % 7 for k in range(32)]


def test_fragments_of_one_response_are_joined() -> None:
    stub = pb.ept_map_response([pb.tcp_tower(SAMR, "10.9.8.7", 51000)])
    first = pb.pdu(pb.RESPONSE, 2, struct.pack("<IHBx", len(stub), 0, 0) + stub[:40], flags=1)
    last = pb.pdu(pb.RESPONSE, 2, struct.pack("<IHBx", len(stub), 0, 0) + stub[40:], flags=2)
    exchange = [*pb.epm_exchange(SAMR, "0.0.0.0", 1)[:3], ("s", first), ("s", last)]
    assert facts_of(exchange)["announced"] == [{"host": "10.9.8.7", "port": 51000, "by": "epm"}]


@pytest.mark.parametrize(
    ("c2s", "s2c"),
    [
        pytest.param(b"", b"", id="empty"),
        pytest.param(b"\x05\x00\x0b\x03\x10\x00\x00\x00\x08\x00", b"", id="short-header"),
        pytest.param(
            b"\x05\x02\x0b\x03\x10\x00\x00\x00\x48\x00\x00\x00" + bytes(60), b"", id="minor-2"
        ),
        pytest.param(
            b"\x05\x00\x2a\x03\x10\x00\x00\x00\x48\x00\x00\x00" + bytes(60), b"", id="ptype-42"
        ),
        pytest.param(
            b"\x05\x00\x0b\x03\x10\x00\x00\x00\x0c\x00\x00\x00" + bytes(60), b"", id="frag-12"
        ),
        pytest.param(b"\x04\x00\x0b\x03\x10\x00\x00\x00\x48\x00\x00\x00" + bytes(60), b"", id="v4"),
        pytest.param(b"\x00\x00\x00\x45\xffSMBr" + bytes(64), b"", id="smb"),
        pytest.param(
            b"junk" + pb.bind(1, [DRSUAPI]), b"junk" + pb.bind_ack(1, "1"), id="no-anchor"
        ),
    ],
)
def test_other_bytes_are_not_dcerpc(c2s: bytes, s2c: bytes) -> None:
    assert dcerpc.parse(c2s, s2c) is None


@pytest.mark.parametrize(
    "text",
    ["SITESRV[0]", "SITESRV[70000]", "[49702]", "SITE SRV[49702]x"],
)
def test_string_bindings_without_a_valid_port_are_not_announcements(text: str) -> None:
    stub = struct.pack("<H", 7) + text.encode("utf-16-le") + b"\x00\x00"
    assert dcerpc.dcom_string_bindings(stub) == []


@pytest.mark.tshark
def test_interface_names_match_tshark(tmp_path: Path, tshark: str) -> None:
    """Every UUID of the table, bound in a capture: tshark's name for it is the same interface.

    tshark 4.0 spells them its own way (EPMv4, SVCCTL, ...); five it does not know, their UUIDs
    are checked against the specifications instead ([MS-TSCH] 1.9, [MS-WMI] 3.1.4.1 and 2.2.x,
    [MS-EVEN6] 1.9, [MS-EFSR] 1.9).
    """
    tshark_spelling = {
        "epm": "EPMv4",
        "IRemoteSCMActivator": "ISystemActivator",
        "IActivation": "REMACT",
        "IObjectExporter": "IOXIDResolver",
        "ITaskSchedulerService": "TaskSchedulerService",
        "netlogon": "RPC_NETLOGON",
        "frs2": "FRSTRANS",
        "efsrpc": "EFS",
    }
    unknown_to_tshark = {
        "378e52b0-c0a9-11cf-822d-00aa0051e40f",  # SASec
        "f309ad18-d86a-11d0-a075-00c04fb68820",  # IWbemLevel1Login
        "9556dc99-828c-11cf-a37e-00aa003240c7",  # IWbemServices
        "f6beaff7-1e19-4fbb-9f8f-b89e2018337c",  # IEventService (even6)
        "df1941c5-fe89-4e79-bf10-463657acf44d",  # efsrpc on \pipe\efsrpc
    }
    exchange = [("c", pb.bind(k + 1, [(u, 1, 0)])) for k, u in enumerate(dcerpc.INTERFACE_NAMES)]
    path = write_capture(
        tmp_path / "binds.pcap", tcp_session("10.0.0.2", "10.0.0.1", 50000, 135, exchange)
    )
    output = subprocess.run(
        [tshark, "-n", "-r", str(path), "-V", "-O", "dcerpc"], capture_output=True, text=True
    ).stdout
    named = dict(
        (uuid, name) for name, uuid in re.findall(r"Interface: (\S+) UUID: ([0-9a-f-]{36})", output)
    )
    for uuid, name in dcerpc.INTERFACE_NAMES.items():
        if uuid in unknown_to_tshark:
            assert uuid not in named, f"tshark now knows {uuid}: compare it"
            continue
        assert named[uuid].lower() == tshark_spelling.get(name, name).lower(), uuid


# Tiny captures through the flow table ------------------------------------------------------


def test_epm_capture_announces_the_port_a_later_flow_uses(tmp_path: Path) -> None:
    packets = tcp_session(
        "10.10.1.20", "10.10.0.10", 50123, 135, pb.epm_exchange(pb.SVCCTL, "10.10.0.10", 49701)
    )
    packets += tcp_session(
        "10.10.1.20",
        "10.10.0.10",
        50124,
        49701,
        [
            ("c", pb.bind(1, [pb.SVCCTL], auth=(pb.AUTH_SPNEGO, pb.LEVEL_PRIVACY, bytes(40)))),
            ("s", pb.bind_ack(1, "49701", auth=(pb.AUTH_SPNEGO, pb.LEVEL_PRIVACY, bytes(40)))),
        ],
        start=1_700_000_001.0,
    )
    flows = payloads_of(write_capture(tmp_path / "epm.pcap", packets))
    assert len(flows) == 2
    epm_facts, dynamic_facts = (dcerpc.parse(c2s, s2c) for _, c2s, s2c in flows)
    assert epm_facts is not None and dynamic_facts is not None
    assert epm_facts["announced"] == [{"host": "10.10.0.10", "port": 49701, "by": "epm"}]
    assert [i["name"] for i in dynamic_facts["interfaces"]] == ["svcctl"]
    assert dynamic_facts["auth_level"] == "privacy"


def test_dcom_capture_announces_host_and_port(tmp_path: Path) -> None:
    packets = tcp_session(
        "10.10.1.20", "10.10.0.10", 50125, 135, pb.dcom_resolve_exchange(["SITESRV[49702]"])
    )
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "dcom.pcap", packets))
    facts = dcerpc.parse(c2s, s2c)
    assert transport == "tcp" and facts is not None
    assert facts["announced"] == [{"host": "SITESRV", "port": 49702, "by": "dcom"}]


# Hostile bytes -----------------------------------------------------------------------------


def _checked(c2s: bytes, s2c: bytes) -> None:
    facts = dcerpc.parse(c2s, s2c)
    if facts is not None:
        json.dumps(facts)


def test_never_raises_on_truncated_mutated_or_random_bytes() -> None:
    exchange = [
        *pb.epm_exchange(pb.SVCCTL, "10.10.0.10", 49701),
        ("c", pb.bind(5, [pb.SVCCTL], auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, pb.NTLMSSP_NEGOTIATE))),
        *pb.dcom_resolve_exchange(["SITESRV[49702]"]),
    ]
    c2s, s2c = directions(exchange)
    for cut in range(len(c2s) + 1):
        _checked(c2s[:cut], s2c)
    for cut in range(len(s2c) + 1):
        _checked(c2s, s2c[:cut])
    rng = random.Random(20240602)
    for _ in range(3000):
        c2s_mutated, s2c_mutated = bytearray(c2s), bytearray(s2c)
        for _ in range(rng.randrange(1, 8)):
            c2s_mutated[rng.randrange(len(c2s))] = rng.randrange(256)
            s2c_mutated[rng.randrange(len(s2c))] = rng.randrange(256)
        _checked(bytes(c2s_mutated), bytes(s2c_mutated))
    for _ in range(3000):
        noise = rng.randbytes(rng.randrange(0, 400))
        header = bytes([5, rng.randrange(2), rng.randrange(20), 3, 0x10, 0, 0, 0])
        header += struct.pack("<HHI", rng.randrange(16, 500), rng.randrange(0, 64), 1)
        _checked(header + noise, header + noise[::-1])
        _checked(noise, noise)


# The corpus against tshark -----------------------------------------------------------------

_FIELDS = [
    "tcp.stream",
    "tcp.srcport",
    "dcerpc.pkt_type",
    "dcerpc.cn_bind_to_uuid",
    "dcerpc.auth_type",
    "dcerpc.auth_level",
    "dcerpc.opnum",
    "dcerpc.cn_sec_addr",
    "epm.proto.tcp_port",
    "epm.proto.ip",
]
_REQUEST, _RESPONSE, _BIND_ACK = "0", "2", "12"


def _tshark_view(
    tshark: str, capture: Path, server_ports: dict[int, int]
) -> dict[int, dict[str, Any]]:
    """Per tcp.stream with DCE/RPC straight on TCP (not in SMB pipes), what tshark shows."""
    views: dict[int, dict[str, Any]] = defaultdict(
        lambda: {
            "interfaces": set(),
            "auth_type": None,
            "auth_level": None,
            "bind_ack": False,
            "secondary_address": None,
            "announced": set(),
            "opnums": [],
        }
    )
    for row in tshark_fields(tshark, capture, "tcp && dcerpc && !nbss", _FIELDS):
        stream = int(row["tcp.stream"][0])
        if stream not in server_ports:
            continue
        view = views[stream]
        from_client = int(row["tcp.srcport"][0]) != server_ports[stream]
        types = row.get("dcerpc.pkt_type", [])
        if from_client:
            view["interfaces"] |= set(row.get("dcerpc.cn_bind_to_uuid", []))
            if set(types) == {_REQUEST}:
                view["opnums"] += [int(opnum) for opnum in row.get("dcerpc.opnum", [])]
        elif _BIND_ACK in types:
            view["bind_ack"] = True
            if view["secondary_address"] is None and row.get("dcerpc.cn_sec_addr"):
                view["secondary_address"] = row["dcerpc.cn_sec_addr"][0]
        if view["auth_level"] is None and row.get("dcerpc.auth_level"):
            auth_type = int(row["dcerpc.auth_type"][0])
            view["auth_type"] = dcerpc.AUTH_TYPES.get(auth_type) if auth_type else None
            view["auth_level"] = dcerpc.AUTH_LEVELS[int(row["dcerpc.auth_level"][0])]
        if not from_client and _RESPONSE in types:
            ports = row.get("epm.proto.tcp_port", [])
            addresses = row.get("epm.proto.ip", [])
            for port, address in zip(ports, addresses, strict=False):
                view["announced"].add((None if address == "0.0.0.0" else address, int(port)))
    return views


def _ours(facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "interfaces": {interface["uuid"] for interface in facts["interfaces"]},
        "auth_type": facts["auth_type"],
        "auth_level": facts["auth_level"],
        "bind_ack": facts["bind_ack"],
        "secondary_address": facts["secondary_address"],
        "announced": {(a["host"], a["port"]) for a in facts["announced"] if a["by"] == "epm"},
        "opnums": facts["opnums"],
    }


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_dcerpc_streams_agree_with_tshark(corpus: Path, tshark: str) -> None:
    """Every stream where tshark dissects DCE/RPC straight on TCP is DCE/RPC to us, same facts.

    DCE/RPC inside SMB named pipes belongs to SMB flows and is left out here. Whole streams
    must agree exactly (opnums: the first 32, our cap); the 2048-byte window may only miss
    facts (interfaces, opnums and towers past it), never contradict tshark.
    """
    captures = oracle_files(corpus, "dcerpc")
    assert captures
    streams = agreed_whole = agreed_window = equal_window = 0
    disagreements: list[str] = []
    for capture in captures:
        window, whole = stream_payloads(tshark, capture), wide_payloads(tshark, capture)
        server_ports = {stream: flow.server_port for stream, flow in whole.items()}
        for stream, theirs in sorted(_tshark_view(tshark, capture, server_ports).items()):
            streams += 1
            theirs["opnums"] = theirs["opnums"][:32]
            wide_facts = dcerpc.parse(whole[stream].c2s, whole[stream].s2c)
            cut_facts = dcerpc.parse(window[stream].c2s, window[stream].s2c)
            if wide_facts is None or cut_facts is None:
                disagreements.append(f"{capture.name}#{stream}: not recognised")
                continue
            if _ours(wide_facts) == theirs:
                agreed_whole += 1
            else:
                disagreements.append(f"{capture.name}#{stream}: {_ours(wide_facts)} != {theirs}")
            cut = _ours(cut_facts)
            equal_window += cut == theirs
            if (
                cut["interfaces"] <= theirs["interfaces"]
                and cut["auth_level"] in (theirs["auth_level"], None)
                and cut["announced"] <= theirs["announced"]
                and cut["opnums"] == theirs["opnums"][: len(cut["opnums"])]
                and cut["bind_ack"] <= theirs["bind_ack"]
            ):
                agreed_window += 1
            else:
                disagreements.append(f"{capture.name}#{stream} (2048 bytes): {cut} vs {theirs}")
    print(
        f"dcerpc: {streams} streams tshark dissects as DCE/RPC on TCP; whole stream agrees on "
        f"{agreed_whole}; the 2048-byte window is consistent on {agreed_window} and complete "
        f"on {equal_window}"
    )
    assert disagreements == []


# What the corpus's endpoint mappers announce, and whether a later flow goes there (the 2048
# bytes kept are enough). sv_smb_psexec_add_user: the client tries 49163 three times, the SYNs
# go unanswered and PsExec falls back to the svcctl pipe over SMB.
EPM_FOLLOW_UPS = {
    "otrf_psexec_dcerpc_tcp_epm.cap": {("172.18.39.6", 49726): ["svcctl"]},
    "otrf_schtask_create.pcapng": {("172.18.39.6", 49671): ["ITaskSchedulerService"]},
    "sv_bug5162_drsuapi_mixed.pcap": {
        ("192.168.56.102", 49674): ["netlogon"],
        ("192.168.56.102", 49667): ["drsuapi"],
    },
    "otrf_purplesharp_ad_mixed.cap": {
        ("172.18.38.5", 49674): ["netlogon"],
        ("172.18.38.5", 49667): None,  # announced, never connected to
    },
    "sv_smb_psexec_add_user.pcap": {("192.168.10.10", 49163): []},  # SYNs only, no payload
}


@pytest.mark.corpus
def test_corpus_epm_announcements_and_the_flows_that_follow(corpus: Path) -> None:
    found: dict[str, dict[tuple[str, int], list[str] | None]] = {}
    for capture in sorted(corpus.iterdir()):
        if capture.suffix not in (".pcap", ".pcapng", ".cap"):
            continue
        table = build_flow_table([capture], FlowConfig(idle_timeout=0))
        c2s_payloads, s2c_payloads = table.payloads.columns()
        columns = table.columns
        tcp_rows = [row for row in range(len(table)) if columns["proto"][row] == "tcp"]
        for row in tcp_rows:
            facts = dcerpc.parse(c2s_payloads[row], s2c_payloads[row])
            for announced in (facts or {}).get("announced", []):
                host = announced["host"] or str(columns["server"][row])
                later: list[str] | None = None
                for other in tcp_rows:
                    if (
                        str(columns["server"][other]) == host
                        and int(columns["server_port"][other]) == announced["port"]
                        and columns["first_seen"][other] >= columns["first_seen"][row]
                    ):
                        follow = dcerpc.parse(c2s_payloads[other], s2c_payloads[other])
                        later = [i["name"] for i in follow["interfaces"]] if follow else []
                found.setdefault(capture.name, {})[(host, announced["port"])] = later
    assert found == EPM_FOLLOW_UPS
