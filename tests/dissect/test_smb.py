"""SMB dissector: spec-built messages, tiny captures, hostile bytes, and tshark on the corpus."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import smb
from tests.dissect.common import Exchange, directions
from tests.dissect.tshark_streams import oracle_files, stream_payloads, tshark_fields, wide_payloads
from tests.protobytes import smb as pb
from tests.scapy_flows import payloads_of, tcp_session, write_capture

ALL_SMB2 = [pb.DIALECT_202, pb.DIALECT_210, pb.DIALECT_300, pb.DIALECT_302, pb.DIALECT_311]
ALL_SMB2_NAMES = ["2.0.2", "2.1", "3.0", "3.0.2", "3.1.1"]


def facts_of(exchange: Exchange) -> dict[str, Any]:
    facts = smb.parse(*directions(exchange))
    assert facts is not None
    return facts


# Spec-built conversations ------------------------------------------------------------------

CASES = [
    pytest.param(
        pb.smb2_conversation(server_signing_required=True),
        {
            "version": 2,
            "dialect": "3.1.1",
            "dialects_offered": ALL_SMB2_NAMES,
            "smb1_negotiate": False,
            "signing_enabled": True,
            "signing_required": True,
            "client_signing_required": False,
            "signed": True,
            "encrypted": False,
            "shares": [],
            "tree_paths": [],
        },
        id="smb2-signing-required",
    ),
    pytest.param(
        pb.smb2_conversation(dialect=pb.DIALECT_210, offered=ALL_SMB2[:2]),
        {"dialect": "2.1", "signing_enabled": True, "signing_required": False},
        id="smb2-signing-not-required",
    ),
    pytest.param(
        pb.smb2_conversation(client_signing_required=True),
        {"signing_required": False, "client_signing_required": True},
        id="client-requires-signing",
    ),
    pytest.param(
        pb.smb2_conversation(smb1_first=True, dialect=pb.DIALECT_302),
        {
            "version": 2,
            "dialect": "3.0.2",
            "smb1_negotiate": True,
            "dialects_offered": [*pb.WINDOWS_SMB1_DIALECTS, *ALL_SMB2_NAMES],
        },
        id="multi-protocol-negotiate-then-smb2",
    ),
    pytest.param(
        [
            ("c", pb.smb1_negotiate_request()),
            ("s", pb.negotiate_response(pb.DIALECT_WILDCARD)),
        ],
        {"version": 2, "dialect": "2.???", "smb1_negotiate": True},
        id="wildcard-answer-only",
    ),
    pytest.param(
        [
            ("c", pb.netbios_session_request("SITESRV", "CLIENT01")),
            ("s", pb.NETBIOS_POSITIVE_RESPONSE),
            ("c", pb.smb1_negotiate_request(pb.WINDOWS_SMB1_DIALECTS[:6])),
            (
                "s",
                pb.smb1_negotiate_response(
                    5,
                    security_mode=pb.SMB1_USER_SECURITY
                    | pb.SMB1_ENCRYPT_PASSWORDS
                    | pb.SMB1_SIGNATURES_ENABLED,
                ),
            ),
            ("c", pb.smb1_tree_connect_andx_request("\\\\SITESRV\\IPC$")),
        ],
        {
            "version": 1,
            "dialect": "NT LM 0.12",
            "smb1_negotiate": True,
            "signing_enabled": True,
            "signing_required": False,
            "shares": ["IPC$"],
            "tree_paths": ["\\\\SITESRV\\IPC$"],
        },
        id="smb1-over-netbios",
    ),
    pytest.param(
        [
            ("c", pb.smb1_negotiate_request(["NT LM 0.12"], signing_required=True)),
            (
                "s",
                pb.smb1_negotiate_response(
                    0, security_mode=pb.SMB1_SIGNATURES_ENABLED | pb.SMB1_SIGNATURES_REQUIRED
                ),
            ),
        ],
        {
            "version": 1,
            "signing_required": True,
            "client_signing_required": True,
            "signed": False,
        },
        id="smb1-signing-required",
    ),
    pytest.param(
        pb.smb2_conversation(
            shares=["IPC$", "ADMIN$", "SMS_PS1", "SCCMContentLib$", "ADMIN$"],
            server_name="sitesrv.corp.example",
        ),
        {
            "shares": ["IPC$", "ADMIN$", "SMS_PS1", "SCCMContentLib$"],
            "tree_paths": [
                "\\\\sitesrv.corp.example\\IPC$",
                "\\\\sitesrv.corp.example\\ADMIN$",
                "\\\\sitesrv.corp.example\\SMS_PS1",
                "\\\\sitesrv.corp.example\\SCCMContentLib$",
            ],
            "encrypted": False,
        },
        id="configmgr-shares",
    ),
    pytest.param(
        pb.smb2_conversation(dialect=pb.DIALECT_300, encrypt_session=True),
        {"dialect": "3.0", "encrypted": True},
        id="session-encrypt-data",
    ),
    pytest.param(
        pb.smb2_conversation(shares=["SMS_DP$"], encrypted_shares=["SMS_DP$"]),
        {"encrypted": True, "shares": ["SMS_DP$"]},
        id="share-encrypt-data",
    ),
    pytest.param(
        [
            *pb.smb2_conversation(dialect=pb.DIALECT_311),
            ("c", pb.transform(pb.tree_connect_request("\\\\SITESRV\\SMS_PS1"))),
            ("s", pb.transform(pb.tree_connect_response(), nonce=2)),
        ],
        {"encrypted": True, "shares": []},
        id="smb3-transform-hides-tree",
    ),
    pytest.param(
        [
            (
                "c",
                pb.compound(
                    pb.tree_connect_request("\\\\SITESRV\\IPC$", message_id=4),
                    pb.tree_connect_request("\\\\SITESRV\\SMS_PS1", message_id=5),
                ),
            )
        ],
        {"shares": ["IPC$", "SMS_PS1"], "dialect": None, "signing_required": None},
        id="compound-request",
    ),
    pytest.param(
        [("s", pb.negotiate_response(pb.DIALECT_302, security_mode=3))],
        {"dialect": "3.0.2", "signing_required": True, "dialects_offered": []},
        id="server-side-only",
    ),
]


@pytest.mark.parametrize(("exchange", "expected"), CASES)
def test_facts_of_spec_built_conversations(exchange: Exchange, expected: dict[str, Any]) -> None:
    facts = facts_of(exchange)
    assert {key: facts[key] for key in expected} == expected


def test_facts_have_exactly_the_documented_keys() -> None:
    facts = facts_of(pb.smb2_conversation())
    assert set(facts) == {
        "version",
        "dialect",
        "dialects_offered",
        "smb1_negotiate",
        "signing_enabled",
        "signing_required",
        "client_signing_required",
        "signed",
        "encrypted",
        "shares",
        "tree_paths",
    }


@pytest.mark.parametrize(
    ("revision", "name"),
    [
        (0x0202, "2.0.2"),
        (0x0210, "2.1"),
        (0x0300, "3.0"),
        (0x0302, "3.0.2"),
        (0x0311, "3.1.1"),
        (0x02FF, "2.???"),
        (0x0222, "2.2.2"),
        (0x1234, "0x1234"),
    ],
)
def test_dialect_names(revision: int, name: str) -> None:
    assert smb.dialect_name(revision) == name


@pytest.mark.parametrize(
    ("c2s", "s2c"),
    [
        pytest.param(b"", b"", id="empty"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n", id="http"),
        pytest.param(bytes.fromhex("1603010200010001fc0303") + bytes(64), b"", id="tls"),
        pytest.param(b"\x00\x00\x00\x40" + b"\xfeSMC" + bytes(60), b"", id="wrong-magic"),
        pytest.param(b"\x05\x00\x0b\x03\x10\x00\x00\x00", b"", id="dcerpc"),
        pytest.param(b"\x00\x00\x00\x00\xfeSMB", b"", id="zero-length-frame"),
    ],
)
def test_other_bytes_are_not_smb(c2s: bytes, s2c: bytes) -> None:
    assert smb.parse(c2s, s2c) is None


def test_tree_connect_past_the_window_is_not_seen() -> None:
    """A Kerberos SESSION_SETUP can fill the 2048 bytes kept; the TREE_CONNECT is then lost."""
    exchange = [
        ("c", pb.negotiate_request(ALL_SMB2)),
        ("c", pb.session_setup_request(token=bytes(1900))),
        ("c", pb.tree_connect_request("\\\\SITESRV\\ADMIN$")),
    ]
    c2s, s2c = directions(exchange)
    assert len(c2s) > 2048
    window = smb.parse(c2s[:2048], s2c)
    whole = smb.parse(c2s, s2c)
    assert window is not None and whole is not None
    assert window["shares"] == [] and window["dialects_offered"] == ALL_SMB2_NAMES
    assert whole["shares"] == ["ADMIN$"]


# Tiny captures through the flow table ------------------------------------------------------


def _only_flow(path: Path) -> tuple[str, bytes, bytes]:
    flows = payloads_of(path)
    assert len(flows) == 1
    return flows[0]


@pytest.mark.parametrize(
    ("server_port", "exchange", "expected"),
    [
        pytest.param(
            445,
            pb.smb2_conversation(server_signing_required=True, shares=["IPC$"]),
            {"signing_required": True, "shares": ["IPC$"], "version": 2},
            id="445-signing-required",
        ),
        pytest.param(
            445,
            pb.smb2_conversation(server_signing_required=False),
            {"signing_required": False, "signing_enabled": True},
            id="445-signing-not-required",
        ),
        pytest.param(
            139,
            [
                ("c", pb.netbios_session_request("SITESRV", "CLIENT01")),
                ("s", pb.NETBIOS_POSITIVE_RESPONSE),
                ("c", pb.smb1_negotiate_request(pb.WINDOWS_SMB1_DIALECTS[:6])),
                ("s", pb.smb1_negotiate_response(5)),
            ],
            {"version": 1, "dialect": "NT LM 0.12", "signing_enabled": False},
            id="139-smb1",
        ),
        pytest.param(
            8445,
            pb.smb2_conversation(shares=["SCCMContentLib$"]),
            {"version": 2, "shares": ["SCCMContentLib$"]},
            id="8445-smb-off-its-port",
        ),
        pytest.param(
            445,
            [
                *pb.smb2_conversation(dialect=pb.DIALECT_300, offered=[pb.DIALECT_300]),
                ("c", pb.transform(pb.tree_connect_request("\\\\SITESRV\\SMS_PS1"))),
                ("s", pb.transform(pb.tree_connect_response(), nonce=2)),
            ],
            {"encrypted": True, "dialect": "3.0"},
            id="445-smb3-encrypted",
        ),
        pytest.param(
            445,
            pb.smb2_conversation(shares=["ADMIN$", "SMS_PS1", "SCCMContentLib$"]),
            {
                "shares": ["ADMIN$", "SMS_PS1", "SCCMContentLib$"],
                "tree_paths": [
                    "\\\\SITESRV\\ADMIN$",
                    "\\\\SITESRV\\SMS_PS1",
                    "\\\\SITESRV\\SCCMContentLib$",
                ],
            },
            id="445-configmgr-shares",
        ),
    ],
)
def test_tiny_captures(
    tmp_path: Path, server_port: int, exchange: Exchange, expected: dict[str, Any]
) -> None:
    packets = tcp_session("10.10.1.20", "10.10.0.10", 50123, server_port, exchange)
    transport, c2s, s2c = _only_flow(write_capture(tmp_path / "smb.pcap", packets))
    assert transport == "tcp"
    facts = smb.parse(c2s, s2c)
    assert facts is not None
    assert {key: facts[key] for key in expected} == expected


# Hostile bytes -----------------------------------------------------------------------------


def _checked(c2s: bytes, s2c: bytes) -> None:
    facts = smb.parse(c2s, s2c)
    if facts is not None:
        json.dumps(facts)


def test_never_raises_on_truncated_mutated_or_random_bytes() -> None:
    exchange = [
        ("c", pb.netbios_session_request("SITESRV", "CLIENT01")),
        ("c", pb.smb1_negotiate_request()),
        ("c", pb.smb1_tree_connect_andx_request("\\\\SITESRV\\IPC$")),
        *pb.smb2_conversation(shares=["ADMIN$", "SMS_PS1"], encrypted_shares=["SMS_PS1"]),
        (
            "c",
            pb.compound(pb.tree_connect_request("\\\\A\\B"), pb.tree_connect_request("\\\\C\\D")),
        ),
        ("s", pb.transform(pb.tree_connect_response())),
    ]
    c2s, s2c = directions(exchange)
    for cut in range(len(c2s) + 1):
        _checked(c2s[:cut], s2c)
    for cut in range(len(s2c) + 1):
        _checked(c2s, s2c[:cut])
    rng = random.Random(20240601)
    for _ in range(3000):
        mutated = bytearray(c2s)
        for _ in range(rng.randrange(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        _checked(bytes(mutated), s2c[: rng.randrange(len(s2c) + 1)])
    for _ in range(3000):
        noise = rng.randbytes(rng.randrange(0, 400))
        framed = b"\x00" + len(noise).to_bytes(3, "big") + rng.choice(smb.MAGICS) + noise
        _checked(noise, framed)
        _checked(framed, noise)


# The corpus against tshark -----------------------------------------------------------------

_FIELDS = [
    "tcp.stream",
    "smb2.cmd",
    "smb2.flags.response",
    "smb2.dialect",
    "smb2.sec_mode.sign_enabled",
    "smb2.sec_mode.sign_required",
    "smb2.tree",
    "smb2.flags.signature",
    "smb2.ses_flags.encrypt",
    "smb2.share_flags.encrypt_data",
    "smb2.header.transform.msg_size",
    "smb.cmd",
    "smb.flags.response",
    "smb.dialect.name",
    "smb.dialect.index",
    "smb.sm.signatures",
    "smb.sm.sig_required",
    "smb.path",
]


def _tshark_view(tshark: str, capture: Path) -> dict[int, dict[str, Any]]:
    """Per tcp.stream, the facts as tshark's SMB and SMB2 dissectors show them."""
    views: dict[int, dict[str, Any]] = defaultdict(
        lambda: {
            "version": 1,
            "dialect": None,
            "signing_enabled": None,
            "signing_required": None,
            "signed": False,
            "encrypted": False,
            "tree_paths": set(),
        }
    )
    smb1_dialects: dict[int, list[str]] = {}
    for row in tshark_fields(tshark, capture, "tcp && (smb || smb2)", _FIELDS):
        view = views[int(row["tcp.stream"][0])]
        smb2_commands, responses = row.get("smb2.cmd", []), row.get("smb2.flags.response", [])
        if smb2_commands or row.get("smb2.header.transform.msg_size"):
            view["version"] = 2
        if row.get("smb2.header.transform.msg_size") or "1" in row.get(
            "smb2.ses_flags.encrypt", []
        ) + row.get("smb2.share_flags.encrypt_data", []):
            view["encrypted"] = True
        if "1" in row.get("smb2.flags.signature", []):
            view["signed"] = True
        if smb2_commands == ["0"] and responses == ["1"]:  # NEGOTIATE response
            dialect = smb.dialect_name(int(row["smb2.dialect"][0], 16))
            if dialect != "2.???" or view["dialect"] is None:
                view["dialect"] = dialect
            view["signing_enabled"] = row["smb2.sec_mode.sign_enabled"] == ["1"]
            view["signing_required"] = row["smb2.sec_mode.sign_required"] == ["1"]
        if "3" in smb2_commands and "0" in responses:  # TREE_CONNECT request
            view["tree_paths"] |= set(row.get("smb2.tree", []))
        smb1_commands = row.get("smb.cmd", [])
        if smb1_commands[:1] == ["0x72"] and row.get("smb.flags.response") == ["0"]:
            smb1_dialects[int(row["tcp.stream"][0])] = row.get("smb.dialect.name", [])
        if smb1_commands[:1] == ["0x72"] and row.get("smb.flags.response") == ["1"]:
            offered = smb1_dialects.get(int(row["tcp.stream"][0]), [])
            index = int(row.get("smb.dialect.index", ["65535"])[0])
            if view["version"] == 1 and index < len(offered):
                view["dialect"] = offered[index]
            if row.get("smb.sm.signatures"):
                view["signing_enabled"] = row["smb.sm.signatures"] == ["1"]
                view["signing_required"] = row["smb.sm.sig_required"] == ["1"]
        if "0x75" in smb1_commands and row.get("smb.flags.response") == ["0"]:
            view["tree_paths"] |= set(row.get("smb.path", []))
    return views


def _ours(facts: dict[str, Any]) -> dict[str, Any]:
    keys = ("version", "dialect", "signing_enabled", "signing_required", "signed", "encrypted")
    return {**{key: facts[key] for key in keys}, "tree_paths": set(facts["tree_paths"])}


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_smb_streams_agree_with_tshark(corpus: Path, tshark: str) -> None:
    """Every stream tshark dissects as SMB/SMB2 is SMB to us, with the same facts.

    With the whole stream (the widest payload window) every fact must equal tshark's. With
    the 2048 bytes the flow table keeps by default, facts may only be missing, never wrong:
    the dialect and signing mode are None when the NEGOTIATE lies past the window, and tree
    paths a subset (a Kerberos SESSION_SETUP alone can fill 2048 bytes).
    """
    captures = sorted(
        {path for protocol in ("smb1", "smb2") for path in oracle_files(corpus, protocol)}
    )
    assert captures
    streams = agreed_whole = agreed_window = equal_window = 0
    disagreements: list[str] = []
    for capture in captures:
        views = _tshark_view(tshark, capture)
        window, whole = stream_payloads(tshark, capture), wide_payloads(tshark, capture)
        for stream, theirs in sorted(views.items()):
            streams += 1
            if stream not in whole:
                disagreements.append(f"{capture.name}#{stream}: no flow")
                continue
            wide_facts = smb.parse(whole[stream].c2s, whole[stream].s2c)
            cut_facts = smb.parse(window[stream].c2s, window[stream].s2c)
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
                cut["version"] == theirs["version"]
                and cut["dialect"] in (theirs["dialect"], None)
                and cut["signing_enabled"] in (theirs["signing_enabled"], None)
                and cut["signing_required"] in (theirs["signing_required"], None)
                and cut["tree_paths"] <= theirs["tree_paths"]
                and (not cut["encrypted"] or theirs["encrypted"])
            ):
                agreed_window += 1
            else:
                disagreements.append(f"{capture.name}#{stream} (2048 bytes): {cut} vs {theirs}")
    print(
        f"smb: {streams} streams tshark dissects as SMB/SMB2; whole stream agrees on "
        f"{agreed_whole}; the 2048-byte window is consistent on {agreed_window} and complete "
        f"on {equal_window}"
    )
    assert disagreements == []
