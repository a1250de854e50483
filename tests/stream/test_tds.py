"""Stream TDS: spec-built conversations (PRELOGIN, TLS inside TDS, LOGIN7, SSPI), hostile bytes,
and tshark's ``tds.type`` on real captures."""

from __future__ import annotations

import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from flowaudit.stream import base, tds
from tests.protobytes import tds as pb
from tests.protobytes import tls as tls_pb
from tests.stream.common import (
    assert_never_raises,
    assert_split_anywhere_same,
    corpus_file,
    feed,
    need_tshark,
)
from tests.stream.replay_tshark import flows, replay, tshark_lists
from tests.stream.test_ldap import ntlm_message


def make() -> tds.Conversation:
    return tds.Conversation(base.Record())


def login7(
    user: str = "sa",
    host: str = "WS01",
    app: str = "ConfigMgr",
    server: str = "SQL01",
    database: str = "CM_PS1",
    password: bytes = b"\xa5\xb3\x92\x92",  # the obfuscated password's bytes (2.2.6.4)
    sspi: bytes = b"",
) -> bytes:
    """A LOGIN7 packet ([MS-TDS] 2.2.6.4): fixed part, OffsetLength, then the UCS-2 data."""
    # HostName, UserName, Password, AppName, ServerName, Extension, CltIntName, Language,
    # Database: (offset, length in characters) each.
    values: list[str | bytes] = [host, user, password, app, server, b"", "ODBC", "", database]
    data = b""
    pairs = b""
    offset = 94
    for value in values:
        raw = value if isinstance(value, bytes) else value.encode("utf-16-le")
        pairs += struct.pack("<HH", offset + len(data), len(raw) // 2)
        data += raw
    client_id = bytes(6)
    sspi_pair = struct.pack("<HH", offset + len(data), len(sspi))
    data += sspi
    tail = struct.pack("<HHHHI", offset + len(data), 0, offset + len(data), 0, 0)
    option_flags2 = 0x80 if sspi else 0x00
    fixed = struct.pack(
        "<IIIIIIBBBBiI",
        94 + len(data),
        0x74000004,  # TDS 7.4
        4096,
        0x07000000,
        1234,
        0,
        0xE0,
        option_flags2 | 0x03,
        0,
        0,
        0,
        0x0409,
    )
    body = fixed + pairs + client_id + sspi_pair + tail + data
    assert len(fixed + pairs + client_id + sspi_pair + tail) == 94
    return pb.tds_packet(pb.LOGIN7, body)


def token(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("<H", len(value)) + value


def login_ack() -> bytes:
    envchange = token(0xE3, b"\x01\x06\x00C\x00M\x00_\x00P\x00S\x001\x00\x00")
    ack = token(0xAD, b"\x01\x74\x00\x00\x04\x00" + bytes(8))
    return pb.tds_packet(pb.TABULAR_RESULT, envchange + ack + b"\xfd" + bytes(12))


def login_error(number: int = 18456) -> bytes:
    error = token(0xAA, struct.pack("<iBB", number, 1, 14) + b"\x00\x00\x00\x00")
    return pb.tds_packet(pb.TABULAR_RESULT, error + b"\xfd" + bytes(12))


def rpc(proc_id: int) -> bytes:
    headers = struct.pack("<I", 22) + struct.pack("<IHQI", 18, 2, 0, 1)
    return pb.tds_packet(pb.RPC, headers + struct.pack("<HHH", 0xFFFF, proc_id, 0))


PLAIN = [
    (0, pb.tds_prelogin(pb.ENCRYPT_NOT_SUP)),
    (1, pb.tds_prelogin_response(pb.ENCRYPT_NOT_SUP)),
    (0, login7()),
    (1, login_ack()),
    (0, pb.tds_sql_batch("select name from sys.databases where password = 'x'")),
    (1, pb.tds_packet(pb.TABULAR_RESULT, b"\xfd" + bytes(12))),
    (0, rpc(10)),
    (1, pb.tds_packet(pb.TABULAR_RESULT, b"\xfd" + bytes(12))),
]


def test_plain_login_and_requests() -> None:
    conversation = feed(make, PLAIN)
    ops = conversation.record.operations
    assert [op["operation"] for op in ops] == ["PRELOGIN", "LOGIN7", "SQLBATCH", "RPC"]
    assert ops[0]["encryption"] == "ENCRYPT_NOT_SUP" and ops[0]["version"] == "15.0.2000"
    assert ops[0]["status"] == "ENCRYPT_NOT_SUP" and ops[0]["instance"] == "MSSQLServer"
    login = ops[1]
    assert (login["username"], login["hostname"], login["app_name"]) == ("sa", "WS01", "ConfigMgr")
    assert login["database"] == "CM_PS1" and login["target"] == "SQL01"
    assert login["status"] == "success" and login["integrated_security"] is False
    assert ops[2]["verb"] == "SELECT" and ops[3]["target"] == "Sp_ExecuteSql"
    assert conversation.record.identities == [
        {
            "protocol": "tds-sql",
            "account": "sa",
            "workstation": "WS01",
            "method": "sql",
            "carrier": "tds",
            "application": "ConfigMgr",
            "outcome": "success",
        }
    ]
    facts = conversation.facts()
    assert facts["encryption"] == "none"
    assert facts["packets"] == {"PRELOGIN": 1, "RESPONSE": 4, "LOGIN7": 1, "SQLBATCH": 1, "RPC": 1}
    text = repr(conversation.record) + repr(facts)
    assert "password" not in text and "sys.databases" not in text  # no SQL text kept


def test_failed_login_error_number() -> None:
    conversation = feed(make, [*PLAIN[:3], (1, login_error())])
    assert conversation.record.operations[1]["status"] == "error 18456"
    assert conversation.record.identities[0]["outcome"] == "error 18456"


def _in_prelogin(data: bytes, size: int = 100) -> bytes:
    """TLS bytes wrapped in PRELOGIN packets of ``size`` (2.2.6.5), EOM on the last."""
    out = b""
    for at in range(0, len(data), size):
        last = at + size >= len(data)
        out += pb.tds_packet(pb.PRELOGIN, data[at : at + size], status=int(last))
    return out


def _encrypted(client: int, server: int) -> list[tuple[int, bytes]]:
    return [
        (0, pb.tds_prelogin(client)),
        (1, pb.tds_prelogin_response(server)),
        (0, _in_prelogin(tls_pb.tls_client_hello("sql01"))),
        (1, _in_prelogin(tls_pb.tls_server_flight(tls_pb.TLS12))),
        (0, _in_prelogin(b"\x14\x03\x03\x00\x01\x01" + b"\x16\x03\x03\x00\x28" + bytes(40))),
        (1, _in_prelogin(b"\x14\x03\x03\x00\x01\x01" + b"\x16\x03\x03\x00\x28" + bytes(40))),
        (0, b"\x17\x03\x03\x00\x40" + bytes(64)),  # the LOGIN7, inside TLS
    ]


def test_full_encryption_stops_after_login() -> None:
    messages = [*_encrypted(pb.ENCRYPT_ON, pb.ENCRYPT_ON), (1, b"\x17\x03\x03\x00\x20" + bytes(32))]
    conversation = feed(make, messages)
    ops = conversation.record.operations
    assert [(op["operation"], op.get("encrypted")) for op in ops] == [
        ("PRELOGIN", None),
        ("LOGIN7", True),
    ]
    facts = conversation.facts()
    assert facts["encryption"] == "full" and facts["tls_version"] == "TLS 1.2"
    assert facts["client_encryption"] == facts["server_encryption"] == "ENCRYPT_ON"
    assert conversation.record.truncated == ["tds: encrypted"]
    assert_split_anywhere_same(make, messages)


def test_login_only_encryption_reads_on_in_clear() -> None:
    messages = [
        *_encrypted(pb.ENCRYPT_OFF, pb.ENCRYPT_OFF),
        (1, login_ack()),
        (0, pb.tds_sql_batch("exec dbo.spGetSiteInfo")),
    ]
    conversation = feed(make, messages)
    ops = conversation.record.operations
    assert [(op["operation"], op.get("status")) for op in ops] == [
        ("PRELOGIN", "ENCRYPT_OFF"),
        ("LOGIN7", "success"),
        ("SQLBATCH", None),
    ]
    assert conversation.facts()["encryption"] == "login"
    assert conversation.record.truncated == []


def test_integrated_security_ntlm_identity() -> None:
    challenge = pb.tds_packet(pb.TABULAR_RESULT, token(0xED, ntlm_message(2)))
    messages = [
        (0, pb.tds_prelogin(pb.ENCRYPT_NOT_SUP)),
        (1, pb.tds_prelogin_response(pb.ENCRYPT_NOT_SUP)),
        (0, login7(user="", sspi=ntlm_message(1))),
        (1, challenge),
        (0, pb.tds_packet(0x11, ntlm_message(3, "svc-cm", "CORP", "SITE01"))),
        (1, login_ack()),
    ]
    conversation = feed(make, messages)
    ntlm = [i for i in conversation.record.identities if i.get("protocol") == "ntlm"]
    assert len(ntlm) == 1 and ntlm[0]["account"] == "svc-cm"
    assert ntlm[0]["carrier"] == "tds" and ntlm[0]["outcome"] == "success"
    ops = conversation.record.operations
    assert [(op["operation"], op.get("status")) for op in ops] == [
        ("PRELOGIN", "ENCRYPT_NOT_SUP"),
        ("LOGIN7", "sspi-continue"),
        ("SSPI", "success"),
    ]
    assert_split_anywhere_same(make, messages)


def test_multi_packet_message_is_one_operation() -> None:
    body = login7()
    first = pb.tds_packet(pb.LOGIN7, body[8:60], status=0)
    rest = pb.tds_packet(pb.LOGIN7, body[60:], packet_id=2)
    conversation = feed(make, [*PLAIN[:2], (0, first + rest), (1, login_ack())])
    ops = conversation.record.operations
    assert [op["operation"] for op in ops] == ["PRELOGIN", "LOGIN7"]
    assert ops[1]["username"] == "sa" and ops[1]["status"] == "success"
    assert conversation.facts()["packets"]["LOGIN7"] == 2


def test_claims() -> None:
    assert tds.claims((50000, 1433), pb.tds_sql_batch("select 1"))
    assert tds.claims((50000, 1500), pb.tds_prelogin())  # any port: a PRELOGIN that parses
    assert not tds.claims((50000, 1500), pb.tds_sql_batch("select 1"))
    assert not tds.claims((50000, 1433), b"GET / HTTP/1.1\r\n\r\n")
    assert not tds.claims((50000, 1433), b"\x12\x01\x00\x04\x00\x00\x01\x00")  # length < 8


def test_fuzz_never_raises_and_splits_agree() -> None:
    assert_never_raises(make, PLAIN, rounds=100)
    assert_never_raises(make, _encrypted(pb.ENCRYPT_ON, pb.ENCRYPT_ON), rounds=20)
    assert_split_anywhere_same(make, PLAIN)


# ---- tshark agreement --------------------------------------------------------------------
#
# Per flow: the multiset of TDS packet types (tshark's ``tds.type``, one per packet it
# dissects) against ``facts()["packets"]``.

CAPTURES = ["arkime_tds7_prelogin.pcap", "ndpi_mssql_tds.pcap"]


@pytest.mark.parametrize("name", CAPTURES)
def test_tshark_agrees(name: str) -> None:
    path = corpus_file(name)
    need_tshark()
    theirs: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for stream, types in tshark_lists(path, "tds", ["tcp.stream", "tds.type"]):
        for value in types:
            theirs[("tcp", int(stream[0]))][tds.PACKET_TYPES[int(value)]] += 1
    ours: dict[tuple[str, int], Counter[str]] = {}
    for key, flow in flows(path).items():
        if tds.claims(flow.ports, flow.first):
            conversation = replay(tds, flow)
            ours[key] = Counter(conversation.facts()["packets"])
    assert ours == dict(theirs)


def test_tshark_agrees_on_sspi_ntlm_user(tmp_path: Path) -> None:
    from tests.stream.test_http import ntlm_agreement

    challenge = pb.tds_packet(pb.TABULAR_RESULT, token(0xED, ntlm_message(2)))
    messages = [
        (0, pb.tds_prelogin(pb.ENCRYPT_NOT_SUP)),
        (1, pb.tds_prelogin_response(pb.ENCRYPT_NOT_SUP)),
        (0, login7(user="", sspi=ntlm_message(1))),
        (1, challenge),
        (0, pb.tds_packet(0x11, ntlm_message(3, "svc-cm", "CORP", "SITE01"))),
        (1, login_ack()),
    ]
    theirs, ours = ntlm_agreement(tmp_path, tds, 1433, messages)
    assert theirs == ours == [("svc-cm", "CORP", "SITE01")]
