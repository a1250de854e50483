"""DCE/RPC conversations: spec-built associations, hostile bytes, and tshark on real captures."""

from __future__ import annotations

import json
import struct
import subprocess
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import dcerpc as first_bytes
from flowaudit.stream import base, dcerpc, rpc_names
from tests.protobytes import dcerpc as pb
from tests.stream.common import (
    AT,
    assert_never_raises,
    assert_split_anywhere_same,
    corpus_file,
    lab_capture,
    need_tshark,
)
from tests.stream.replay_tshark import Flow, flows, outcome, replay

DRSUAPI = ("e3514235-4b06-11d1-ab04-00c04fc2dcd2", 4, 0)
EFSRPC = ("df1941c5-fe89-4e79-bf10-463657acf44d", 1, 0)
SAMR = ("12345778-1234-abcd-ef00-0123456789ac", 1, 0)
UNKNOWN = ("01234567-89ab-cdef-0123-456789abcdef", 1, 2)
C, S = base.A, base.B


def make() -> dcerpc.Conversation:
    return dcerpc.Conversation(base.Record())


def run(messages: list[tuple[int, bytes]]) -> dcerpc.Conversation:
    conversation = make()
    for frame, (side, data) in enumerate(messages, 1):
        conversation.data(side, data, base.At(frame, frame * 1000))
    conversation.end()
    return conversation


def _sides(exchange: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
    return [(C if direction == "c" else S, data) for direction, data in exchange]


def calls(conversation: dcerpc.Conversation) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in op.items() if k not in ("frame", "ts_ns", "protocol")}
        for op in conversation.record.operations
    ]


def ntlm(kind: int, user: str = "", domain: str = "", host: str = "") -> bytes:
    """NTLMSSP NEGOTIATE (1), CHALLENGE (2) or AUTHENTICATE (3) ([MS-NLMP] 2.2.1.1-3) with the
    fields the auth reader needs; AUTHENTICATE strings in UTF-16LE, an NTLMv2 response."""
    signature = b"NTLMSSP\x00" + struct.pack("<I", kind)
    flags = struct.pack("<I", 0xE2088297)
    if kind == 1:
        return signature + flags + bytes(16)
    if kind == 2:
        return signature + struct.pack("<HHI", 0, 0, 56) + flags + bytes(8) + bytes(24)
    nt = bytes(16) + b"\x01\x01" + bytes(30)
    payload = [b"", nt, domain.encode("utf-16-le"), user.encode("utf-16-le")]
    payload += [host.encode("utf-16-le"), b""]
    offset = 64 + 8 + 16
    fields = b""
    for item in payload:
        fields += struct.pack("<HHI", len(item), len(item), offset)
        offset += len(item)
    return signature + fields + flags + bytes(8) + bytes(16) + b"".join(payload)


def fault(call_id: int, status: int) -> bytes:
    """[C706] 12.6.4.7 fault: alloc_hint, p_cont_id, cancel_count, reserved, status, pad."""
    return pb.pdu(3, call_id, struct.pack("<IHBxI4x", 0, 0, 0, status))


def bind_nak(call_id: int, reason: int) -> bytes:
    """[C706] 12.6.4.5 bind_nak: provider_reject_reason, then the supported versions."""
    return pb.pdu(13, call_id, struct.pack("<HB", reason, 1) + bytes([5, 0]))


def bind_ack_results(call_id: int, results: list[tuple[int, int]]) -> bytes:
    """A bind_ack with the given (result, reason) per presentation context."""
    port_spec = b"135\x00"
    body = struct.pack("<HHI", 5840, 5840, 1) + struct.pack("<H", len(port_spec)) + port_spec
    body += bytes(-(16 + len(body)) % 4)
    body += struct.pack("<B3x", len(results))
    for result, reason in results:
        body += struct.pack("<HH", result, reason) + pb.syntax_id(pb.NDR)
    return pb.pdu(pb.BIND_ACK, call_id, body)


def fragments(ptype: int, call_id: int, head: bytes, stub: bytes, size: int) -> list[bytes]:
    """``stub`` cut into PDUs of ``size`` stub bytes, FIRST_FRAG on the first, LAST on the last."""
    pieces = [stub[at : at + size] for at in range(0, len(stub), size)]
    out = []
    for index, piece in enumerate(pieces):
        flags = (pb.PFC_FIRST_FRAG if index == 0 else 0) | (
            pb.PFC_LAST_FRAG if index == len(pieces) - 1 else 0
        )
        out.append(pb.pdu(ptype, call_id, head + piece, flags=flags))
    return out


def ept_lookup_response(towers: list[bytes]) -> bytes:
    """[C706] appendix O / [MS-RPCE] 2.2.1.2.4 ept_lookup reply: entry_handle, num_ents, then
    the conformant varying array of ept_entry_t {object, tower pointer, annotation} and the
    towers they point to (deferred), then status."""
    stub = bytes(20) + struct.pack("<I", len(towers))
    stub += struct.pack("<III", 500, 0, len(towers))
    for index in range(len(towers)):
        annotation = b"Frs2 Service\x00"
        stub += bytes(16) + struct.pack("<I", 0x10 + index)
        stub += struct.pack("<II", 0, len(annotation)) + annotation
        stub += bytes(-len(stub) % 4)
    for tower in towers:
        stub += struct.pack("<II", len(tower), len(tower)) + tower + bytes(-len(tower) % 4)
    return stub + struct.pack("<I", 0)


NTLM_ASSOCIATION = [
    (C, pb.bind(1, [DRSUAPI], auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, ntlm(1)))),
    (S, pb.bind_ack(1, "49667", auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, ntlm(2)))),
    (
        C,
        pb.pdu(
            pb.AUTH3,
            1,
            bytes(4),
            auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, ntlm(3, "bob", "CORP", "WS1")),
        ),
    ),
    (C, pb.request(2, 0, bytes(40), auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, bytes(16)))),
    (S, pb.response(2, bytes(24))),
    (C, pb.request(3, 3, bytes(64), auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, bytes(16)))),
    (S, fault(3, 0x00000005)),
    (C, pb.request(4, 99, b"", auth=(pb.AUTH_NTLM, pb.LEVEL_PRIVACY, bytes(16)))),
    (S, fault(4, 0x1C010002)),
]


# Spec-built associations ----------------------------------------------------------------------


def test_bind_auth_calls_and_their_answers() -> None:
    conversation = run(NTLM_ASSOCIATION)
    privacy = {"auth_type": "ntlmssp", "auth_level": "privacy"}
    answers = [
        ("bind", "drsuapi 4.0", None, 1, "acceptance"),
        ("auth3", None, None, 1, None),
        ("IDL_DRSBind", "drsuapi", 0, 2, "ok"),
        ("IDL_DRSGetNCChanges", "drsuapi", 3, 3, "ERROR_ACCESS_DENIED"),
        ("opnum 99", "drsuapi", 99, 4, "nca_s_op_rng_error"),
    ]
    expected = []
    for operation, target, opnum, call_id, status in answers:
        entry: dict[str, Any] = {"side": C, "operation": operation}
        entry |= {"target": target} if target else {}
        entry |= {"opnum": opnum} if opnum is not None else {}
        entry |= {"call_id": call_id, **privacy}
        entry |= {"status": status} if status else {}
        expected.append(entry)
    assert calls(conversation) == expected
    [identity] = conversation.record.identities
    assert (identity["account"], identity["domain"], identity["workstation"]) == (
        "bob",
        "CORP",
        "WS1",
    )
    assert (identity["carrier"], identity["outcome"]) == ("dcerpc", "success")
    facts = conversation.facts()
    assert facts["interfaces"] == [{"uuid": DRSUAPI[0], "version": "4.0", "name": "drsuapi"}]
    assert (facts["auth_levels"], facts["calls"], facts["announced"]) == (["privacy"], 3, [])
    assert facts["auth"]["mechanism"] == "ntlm"
    json.dumps(facts)


def test_access_denied_before_any_success_is_the_outcome() -> None:
    conversation = run(
        [
            NTLM_ASSOCIATION[0],
            NTLM_ASSOCIATION[1],
            NTLM_ASSOCIATION[2],
            NTLM_ASSOCIATION[5],
            NTLM_ASSOCIATION[6],
        ]
    )
    assert conversation.record.identities[0]["outcome"] == "ERROR_ACCESS_DENIED"


def test_bind_nak_is_the_bind_status_and_the_outcome() -> None:
    conversation = run(
        [
            (
                C,
                pb.bind(1, [SAMR], auth=(pb.AUTH_NTLM, pb.LEVEL_CONNECT, ntlm(3, "eve", "X", "Y"))),
            ),
            (S, bind_nak(1, 8)),
        ]
    )
    assert calls(conversation)[0]["status"] == "authentication_type_not_recognized"
    assert conversation.record.identities[0]["outcome"] == "authentication_type_not_recognized"


def test_rejected_context_and_negotiated_features() -> None:
    """[MS-RPCE] 3.3.1.5.3: NDR64 rejected, bind time features acknowledged, NDR accepted."""
    ndr64_offer = pb.bind(1, [UNKNOWN])
    rejected = run([(C, ndr64_offer), (S, bind_ack_results(1, [(2, 1)]))])
    assert calls(rejected)[0] == {
        "side": C,
        "operation": "bind",
        "target": f"{UNKNOWN[0]} 1.2",
        "call_id": 1,
        "status": "abstract_syntax_not_supported",
    }
    mixed = run(
        [(C, pb.bind(1, [SAMR, SAMR, SAMR])), (S, bind_ack_results(1, [(2, 2), (0, 0), (3, 3)]))]
    )
    assert calls(mixed)[0]["status"] == "acceptance"
    assert calls(mixed)[0]["target"] == "samr 1.0"  # one target per interface, not per context


def test_alter_context_maps_a_new_context() -> None:
    conversation = run(
        [
            (C, pb.bind(1, [DRSUAPI])),
            (S, pb.bind_ack(1, "49667")),
            (C, pb.bind(2, [DRSUAPI, EFSRPC], alter_context=True)),
            (S, bind_ack_results(2, [(0, 0), (0, 0)])),
            (C, pb.request(3, 4, bytes(8), context_id=1)),
            (C, pb.request(4, 5, bytes(8), context_id=7)),  # a context never offered
        ]
    )
    ops = calls(conversation)
    assert [op["operation"] for op in ops] == [
        "bind",
        "alter_context",
        "EfsRpcEncryptFileSrv",
        "opnum 5",
    ]
    assert ops[1]["target"] == "drsuapi 4.0, efsrpc 1.0"
    assert ops[2]["target"] == "efsrpc" and "target" not in ops[3]
    assert "status" not in ops[2]  # no answer seen


def test_a_fragmented_call_is_one_operation() -> None:
    head = struct.pack("<IHH", 300, 0, 3)
    request = fragments(pb.REQUEST, 2, head, bytes(range(256)) + bytes(44), 100)
    reply = fragments(pb.RESPONSE, 2, struct.pack("<IHBx", 50, 0, 0), bytes(50), 20)
    conversation = run(
        [(C, pb.bind(1, [DRSUAPI])), *[(C, p) for p in request], *[(S, p) for p in reply]]
    )
    assert [(op["operation"], op.get("status")) for op in calls(conversation)] == [
        ("bind", None),
        ("IDL_DRSGetNCChanges", "ok"),
    ]
    assert conversation.facts()["calls"] == 1


def test_ept_map_and_fragmented_ept_lookup_replies_announce_endpoints() -> None:
    lookup = ept_lookup_response(
        [pb.tcp_tower(SAMR, "0.0.0.0", 49664 + k) for k in range(12)]
        + [pb.tcp_tower(DRSUAPI, "10.0.0.5", 49667)]
    )
    reply = fragments(pb.RESPONSE, 3, struct.pack("<IHBx", len(lookup), 0, 0), lookup, 200)
    assert len(reply) > 3
    conversation = run(
        [
            *_sides(pb.epm_exchange(pb.SVCCTL, "10.0.0.5", 49701)),
            (C, pb.request(3, 2, bytes(60))),
            *[(S, p) for p in reply],
        ]
    )
    announced = conversation.facts()["announced"]
    assert announced[0] == {"host": "10.0.0.5", "port": 49701, "by": "epm"}
    assert announced[1:] == [{"host": None, "port": 49664 + k, "by": "epm"} for k in range(12)] + [
        {"host": "10.0.0.5", "port": 49667, "by": "epm"}
    ]
    assert [op["operation"] for op in calls(conversation)] == ["bind", "ept_map", "ept_lookup"]


def test_towers_only_from_the_endpoint_mapper_and_dcom_bindings_from_dcom() -> None:
    tower_reply = pb.ept_map_response([pb.tcp_tower(SAMR, "10.1.2.3", 50000)])
    samr = run(
        [(C, pb.bind(1, [SAMR])), (C, pb.request(2, 5, b"")), (S, pb.response(2, tower_reply))]
    )
    assert samr.facts()["announced"] == []
    dcom = run(_sides(pb.dcom_resolve_exchange(["SITESRV[49702]", "10.10.0.10[49702]"])))
    assert dcom.facts()["announced"] == [
        {"host": "SITESRV", "port": 49702, "by": "dcom"},
        {"host": "10.10.0.10", "port": 49702, "by": "dcom"},
    ]
    assert calls(dcom)[1]["operation"] == "ResolveOxid2"


def test_big_endian_association() -> None:
    """drep byte order 0 ([C706] 14.1): header, context ids and opnums big-endian."""
    body = struct.pack(">HHI", 5840, 5840, 0) + struct.pack(">B3x", 1) + struct.pack(">HBx", 0, 1)
    body += bytes.fromhex(SAMR[0].replace("-", "")) + struct.pack(">HH", 1, 0)
    body += bytes.fromhex("8a885d041ceb11c99fe808002b104860") + struct.pack(">HH", 2, 0)
    bind = struct.pack(">BBBB4sHHI", 5, 0, 11, 3, bytes(4), 16 + len(body), 0, 1) + body
    stub = struct.pack(">IHH", 0, 0, 64)
    request = struct.pack(">BBBB4sHHI", 5, 0, 0, 3, bytes(4), 16 + len(stub), 0, 2) + stub
    assert [op["operation"] for op in calls(run([(C, bind), (C, request)]))] == [
        "bind",
        "SamrConnect5",
    ]


def test_claims_only_connection_oriented_headers() -> None:
    assert dcerpc.claims((50000, 135), pb.bind(1, [SAMR]))
    assert dcerpc.claims((135, 50000), pb.bind_ack(1, "135"))
    for other in (
        b"",
        b"\x05\x00\x0b\x03\x10\x00\x00\x00",  # short
        b"\x05\x02\x0b\x03\x10\x00\x00\x00\x48\x00\x00\x00\x01\x00\x00\x00",  # minor 2
        b"\x05\x00\x04\x03\x10\x00\x00\x00\x48\x00\x00\x00\x01\x00\x00\x00",  # CL "working"
        b"\x05\x00\x0b\x03\x10\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00",  # frag_length 12
        b"\x04\x00\x0b\x03\x10\x00\x00\x00\x48\x00\x00\x00\x01\x00\x00\x00",  # version 4
        b"\x00\x00\x00\x45\xffSMBr" + bytes(64),
    ):
        assert not dcerpc.claims((1, 2), other), other


def test_a_gap_inside_one_pdu_loses_that_pdu_only() -> None:
    conversation = make()
    at = base.At(1, 0)
    conversation.data(C, pb.bind(1, [SAMR]), at)
    lost = pb.request(2, 7, bytes(100))
    conversation.data(C, lost[:30], at)
    conversation.gap(C, 50, at)
    conversation.data(C, lost[80:], at)
    conversation.data(C, pb.request(3, 64, bytes(8)), at)
    assert [op["operation"] for op in calls(conversation)] == ["bind", "SamrConnect5"]
    assert conversation.record.counters["pdus_lost"] == 1
    conversation.gap(C, 10, at)  # between PDUs: the framing is lost, the side is not read on
    conversation.data(C, pb.request(4, 64, bytes(8)), at)
    assert len(calls(conversation)) == 2


def test_pipe_carrier_is_in_the_facts() -> None:
    conversation = dcerpc.Conversation(base.Record(), carrier="smb-pipe", pipe="lsarpc")
    conversation.data(C, pb.bind(1, [EFSRPC]), base.At(1, 0))
    facts = conversation.facts()
    assert (facts["carrier"], facts["pipe"]) == ("smb-pipe", "lsarpc")
    assert "carrier" not in make().facts()


# The name tables ------------------------------------------------------------------------------


def test_names_agree_with_the_first_bytes_reader() -> None:
    for uuid, name in first_bytes.INTERFACE_NAMES.items():
        assert rpc_names.INTERFACES[uuid] == name, uuid


@pytest.mark.parametrize(
    ("interface", "opnum", "name"),
    [
        ("epm", 3, "ept_map"),
        ("epm", 2, "ept_lookup"),
        ("drsuapi", 3, "IDL_DRSGetNCChanges"),  # [MS-DRSR] 4.1.10
        ("svcctl", 12, "RCreateServiceW"),  # [MS-SCMR] 3.1.4.12
        ("svcctl", 24, "RCreateServiceA"),
        ("efsrpc", 0, "EfsRpcOpenFileRaw"),  # [MS-EFSR] 3.1.4.2.1
        ("netlogon", 30, "NetrServerPasswordSet2"),  # [MS-NRPC] 3.5.4.4.5
        ("lsarpc", 76, "LsarLookupSids3"),  # [MS-LSAT] 3.1.4.5
        ("lsarpc", 44, "LsarOpenPolicy2"),
        ("samr", 64, "SamrConnect5"),
        ("spoolss", 65, "RpcRemoteFindFirstPrinterChangeNotificationEx"),  # [MS-RPRN] 3.1.4.10.4
        ("netdfs", 12, "NetrDfsAddStdRoot"),
        ("FileServerVssAgent", 8, "IsPathSupported"),
        ("ITaskSchedulerService", 1, "SchRpcRegisterTask"),
        ("atsvc", 0, "NetrJobAdd"),
        ("IRemoteSCMActivator", 4, "RemoteCreateInstance"),
        ("IObjectExporter", 5, "ServerAlive2"),
        ("IRemUnknown2", 3, "RemQueryInterface"),
        ("IWbemLevel1Login", 6, "NTLMLogin"),
        ("IWbemServices", 24, "ExecMethod"),
        ("winreg", 22, "BaseRegSetValue"),
        ("srvsvc", 15, "NetrShareEnum"),
        ("eventlog", 0, "ElfrClearELFW"),
        ("IEventService", 6, "EvtRpcClearLog"),
    ],
)
def test_opnum_names_from_the_specifications(interface: str, opnum: int, name: str) -> None:
    assert rpc_names.operation(interface, opnum) == name


def test_every_named_interface_has_its_table() -> None:
    required = {
        "epm", "svcctl", "winreg", "srvsvc", "wkssvc", "samr", "lsarpc", "netlogon", "drsuapi",
        "efsrpc", "spoolss", "netdfs", "FileServerVssAgent", "eventlog", "IEventService", "atsvc",
        "ITaskSchedulerService", "IRemoteSCMActivator", "IObjectExporter", "IActivation",
        "IRemUnknown2", "IWbemLevel1Login", "IWbemServices",
    }  # fmt: skip
    assert required <= set(rpc_names.OPNUMS)
    assert required <= set(rpc_names.INTERFACES.values())
    assert rpc_names.operation("samr", 4) == "opnum 4"  # a placeholder of the spec's table
    assert rpc_names.operation(None, 1) == "opnum 1"


# Hostile bytes --------------------------------------------------------------------------------


FUZZ_ASSOCIATION = [
    *NTLM_ASSOCIATION,
    *_sides(pb.epm_exchange(pb.SVCCTL, "10.10.0.10", 49701, call_id=10)),
    *_sides(pb.dcom_resolve_exchange(["SITESRV[49702]"])),
    (S, bind_nak(20, 4)),
]


def test_never_raises_on_random_truncated_or_flipped_bytes() -> None:
    assert_never_raises(make, FUZZ_ASSOCIATION, rounds=300)


def test_split_anywhere_gives_the_same_record() -> None:
    assert_split_anywhere_same(make, FUZZ_ASSOCIATION)


def test_every_byte_boundary_of_a_whole_side() -> None:
    """One side's bytes cut once at every offset (PDU boundaries included) give the record
    the uncut side gives; the client side first, then the server's, so answers find calls."""
    client = b"".join(data for side, data in FUZZ_ASSOCIATION if side == C)
    server = b"".join(data for side, data in FUZZ_ASSOCIATION if side == S)

    def fed(client_chunks: list[bytes], server_chunks: list[bytes]) -> Any:
        conversation = make()
        for chunk in client_chunks:
            conversation.data(C, chunk, base.At(1, 0))
        for chunk in server_chunks:
            conversation.data(S, chunk, base.At(1, 0))
        return outcome(conversation), conversation.facts()

    whole = fed([client], [server])
    assert len(whole[0][0]) == 9 and whole[1]["announced"]
    for cut in range(1, len(client)):
        assert fed([client[:cut], client[cut:]], [server]) == whole, cut
    for cut in range(1, len(server)):
        assert fed([client], [server[:cut], server[cut:]]) == whole, cut


# tshark on real captures ----------------------------------------------------------------------

CAPTURES = [
    "otrf_psexec_dcerpc_tcp_epm.cap",
    "sv_bug5162_drsuapi_mixed.pcap",
    "sv_dcerpc_spoolss_vlan.pcap",
    "otrf_schtask_create.pcapng",
    "otrf_purplesharp_ad_mixed.cap",
]


def _tshark_view(path: Path) -> dict[int, dict[str, Any]]:
    """Per tcp.stream where tshark reads DCE/RPC straight on TCP (not in SMB): its requests
    (first fragments: call_id, opnum, interface UUID through its own context map, auth level),
    each call's answer, the interfaces bound and the TCP ports EPM replies announce."""
    need_tshark()
    command = ["tshark", "-n", "-r", str(path), "-Y", "dcerpc && !smb2 && !smb && !nbss"]
    pdml = subprocess.run([*command, "-T", "pdml"], capture_output=True, text=True).stdout
    views: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"requests": [], "answers": {}, "bound": set(), "ports": set(), "contexts": {}}
    )
    for packet in ElementTree.fromstring(pdml or "<pdml/>").iter("packet"):
        protos = list(packet)
        stream = next(
            int(f.get("show", "-1"))
            for p in protos
            if p.get("name") == "tcp"
            for f in p.iter("field")
            if f.get("name") == "tcp.stream"
        )
        view = views[stream]
        responded = False
        for proto in protos:
            if proto.get("name") == "epm" and responded:
                view["ports"] |= {
                    int(f.get("show", "0"))
                    for f in proto.iter("field")
                    if f.get("name") == "epm.proto.tcp_port"
                } - {0}
            if proto.get("name") != "dcerpc":
                continue
            fields: dict[str, list[str]] = defaultdict(list)
            for f in proto.iter("field"):
                fields[f.get("name", "")].append(f.get("show", ""))
            ptype = int(fields["dcerpc.pkt_type"][0])
            call_id = int(fields["dcerpc.cn_call_id"][0])
            flags = int(fields["dcerpc.cn_flags"][0], 16)
            if ptype in (11, 14):
                for context, uuid in zip(
                    fields["dcerpc.cn_ctx_id"], fields["dcerpc.cn_bind_to_uuid"], strict=False
                ):
                    view["contexts"][int(context)] = uuid
                    view["bound"].add(uuid)
            elif ptype == 0 and flags & 1:
                context_id = int(fields["dcerpc.cn_ctx_id"][0])
                level = fields.get("dcerpc.auth_level")
                view["requests"].append(
                    {
                        "call_id": call_id,
                        "opnum": int(fields["dcerpc.opnum"][0]),
                        "uuid": view["contexts"].get(context_id),
                        "auth_level": first_bytes.AUTH_LEVELS[int(level[0])] if level else None,
                    }
                )
            elif ptype == 2:
                responded = True
                view["answers"].setdefault(call_id, "ok")
            elif ptype == 3:
                status = int(fields["dcerpc.cn_status"][0], 16)
                view["answers"][call_id] = rpc_names.FAULT_STATUS.get(status, f"0x{status:08x}")
    return views


def _ours(conversation: dcerpc.Conversation) -> dict[str, Any]:
    requests = [op for op in conversation.record.operations if "opnum" in op]
    facts = conversation.facts()
    return {
        "requests": requests,
        "bound": {i["uuid"] for i in facts["interfaces"]},
        "ports": {a["port"] for a in facts["announced"] if a["by"] == "epm"},
    }


def _compare(path: Path) -> tuple[dict[str, list[int]], list[str]]:
    """Per field [agreeing, compared] over every stream tshark reads as DCE/RPC on TCP."""
    theirs = _tshark_view(path)
    replayed: dict[int, Flow] = {s: f for (t, s), f in flows(path).items() if t == "tcp"}
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    differences: list[str] = []

    def count(field: str, same: bool, what: str) -> None:
        tally[field][0] += same
        tally[field][1] += 1
        if not same:
            differences.append(f"{path.name}#{what}: {field}")

    claimed = {s for s, flow in replayed.items() if dcerpc.claims(flow.ports, flow.first)}
    for stream in sorted(claimed - set(theirs)):
        differences.append(f"{path.name}#{stream}: claimed, not DCE/RPC to tshark")
    for stream, view in sorted(theirs.items()):
        flow = replayed[stream]
        count("claimed", dcerpc.claims(flow.ports, flow.first), f"{stream}")
        conversation = replay(dcerpc, flow)
        assert isinstance(conversation, dcerpc.Conversation)
        ours = _ours(conversation)
        count("bound interfaces", ours["bound"] == view["bound"], f"{stream}")
        count("epm.proto.tcp_port", ours["ports"] == view["ports"], f"{stream}")
        # Every call is counted; past base.MAX_OPERATIONS operations are counted, not kept,
        # so the calls compared one by one are the first ones.
        count("calls", conversation.facts()["calls"] == len(view["requests"]), f"{stream}")
        kept = view["requests"][: len(ours["requests"])]
        for mine, their in zip(ours["requests"], kept, strict=False):
            where = f"{stream} call {their['call_id']}"
            count("dcerpc.cn_call_id", mine["call_id"] == their["call_id"], where)
            count("dcerpc.opnum", mine["opnum"] == their["opnum"], where)
            named = rpc_names.INTERFACES.get(their["uuid"], their["uuid"])
            count("interface", mine.get("target") == named, where)
            count("auth_level", mine.get("auth_level") == their["auth_level"], where)
            count("status", mine.get("status") == view["answers"].get(their["call_id"]), where)
    return dict(tally), differences


@pytest.mark.corpus
@pytest.mark.tshark
@pytest.mark.parametrize("name", CAPTURES)
def test_corpus_calls_agree_with_tshark(name: str) -> None:
    tally, differences = _compare(corpus_file(name))
    print(name, {field: f"{same}/{total}" for field, (same, total) in tally.items()})
    assert tally["dcerpc.opnum"][1] > 0
    assert differences == []


@pytest.mark.tshark
def test_lab_samba_calls_and_ept_lookup_agree_with_tshark() -> None:
    """Samba's DC answers ept_lookup with a reply fragmented over two PDUs (53 entries); every
    TCP port its towers name is announced."""
    path = lab_capture("ad.pcap")
    tally, differences = _compare(path)
    print("ad.pcap", {field: f"{same}/{total}" for field, (same, total) in tally.items()})
    assert differences == []
    lookups = [
        replay(dcerpc, flow)
        for (transport, _), flow in flows(path).items()
        if transport == "tcp" and dcerpc.claims(flow.ports, flow.first)
    ]
    announced = {a["port"] for c in lookups for a in c.facts()["announced"]}
    assert {49152, 49153, 49154, 135} <= announced


def test_reply_fragments_held_for_endpoints_are_bounded_per_conversation() -> None:
    """Replies never finished (no last fragment), for calls whose request was not seen, are
    joined only up to the conversation's bound, and the record says what was left unread."""
    conversation = dcerpc.Conversation()
    body = b"\x00" * 16000
    for call in range(64):
        for frag in range(4):
            flags = 0x01 if frag == 0 else 0  # PFC_FIRST_FRAG, never PFC_LAST_FRAG
            header = struct.pack(
                "<BBBB4sHHI", 5, 0, 2, flags, b"\x10\x00\x00\x00", 24 + len(body), 0, call + 1
            )
            conversation.data(1, header + struct.pack("<IHBB", len(body), 0, 0, 0) + body, AT)
    held = sum(len(stub) for stub in conversation._stubs.values())
    assert 0 < held <= dcerpc.MAX_STUBS_HELD
    assert any("not read for endpoints" in why for why in conversation.record.truncated)
