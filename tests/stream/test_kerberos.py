"""Kerberos KDC conversations (flowaudit.stream.kerberos): spec-built exchanges over TCP and UDP,
hostile bytes, every split of a conversation, and tshark's reading of the corpus and lab
captures, flow by flow through the stream engine.

Messages follow RFC 4120 5 (KDC-REQ 5.4.1, KDC-REP 5.4.2, KRB-ERROR 5.9.1, PA-DATA 5.2.7) and
[MS-SFU] 2.2.1-2.2.3 (PA-FOR-USER, PA-S4U-X509-USER, cname-in-addl-tkt).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import flowaudit.stream
from flowaudit.stream import kerberos
from flowaudit.stream.base import At, Record
from tests.conftest import corpus_dir
from tests.protobytes import kerberos as pb
from tests.protobytes.ldap import integer, octets, sequence, tlv

REALM = "CORP.EXAMPLE"
TGT = f"krbtgt/{REALM}"
A, B = 0, 1


def pa_data(kind: int, value: bytes) -> bytes:
    """RFC 4120 5.2.7 PA-DATA: padata-type [1], padata-value [2]."""
    return sequence(pb.explicit(1, integer(kind)), pb.explicit(2, octets(value)))


def kdc_req(
    msg_type: int,
    sname: str,
    *,
    cname: str | None = None,
    padata: list[bytes] = (),  # type: ignore[assignment]
    options: bytes = b"\x00\x40\x81\x00\x10",
    etypes: tuple[int, ...] = (18, 23),
) -> bytes:
    """RFC 4120 5.4.1 KDC-REQ with the given padata and KDCOptions (BIT STRING contents)."""
    body = pb.explicit(0, tlv(0x03, options))
    if cname is not None:
        body += pb.explicit(1, pb.principal(cname))
    body += pb.explicit(2, pb.general_string(REALM))
    body += pb.explicit(3, pb.principal(sname, pb.NT_SRV_INST))
    body += pb.explicit(5, octets("20370913024805Z", 0x18))
    body += pb.explicit(7, integer(0x1234))
    body += pb.explicit(8, sequence(*(integer(e) for e in etypes)))
    fields = pb.explicit(1, integer(5)) + pb.explicit(2, integer(msg_type))
    if padata:
        fields += pb.explicit(3, sequence(*padata))
    fields += pb.explicit(4, sequence(body))
    return tlv(0x60 | msg_type, sequence(fields))


ENC_TIMESTAMP = pa_data(2, pb.encrypted_data(18, bytes(44)))
PKINIT = pa_data(16, sequence(tlv(0x80, bytes(40))))
TGS_AP_REQ = pa_data(1, pb.ap_req(REALM, TGT))
FOR_USER = pa_data(
    129,
    sequence(
        pb.explicit(0, pb.principal("alice")),
        pb.explicit(1, pb.general_string(REALM)),
        pb.explicit(2, sequence(pb.explicit(0, integer(-138)), pb.explicit(1, octets(bytes(16))))),
        pb.explicit(3, pb.general_string("Kerberos")),
    ),
)
X509_USER = pa_data(
    130,
    sequence(
        pb.explicit(
            0,
            sequence(
                pb.explicit(0, integer(77)),
                pb.explicit(1, pb.principal("bob")),
                pb.explicit(2, pb.general_string(REALM)),
            ),
        ),
        pb.explicit(1, sequence(pb.explicit(0, integer(16)), pb.explicit(1, octets(bytes(12))))),
    ),
)
# KDCOptions with forwardable, renewable, cname-in-addl-tkt (bit 14) and canonicalize (15).
S4U2PROXY_OPTIONS = b"\x00\x40\x83\x00\x00"


def run(messages: list[tuple[int, bytes]], tcp: bool = True) -> kerberos.Conversation:
    conversation = kerberos.Conversation(Record())
    for frame, (side, message) in enumerate(messages, 1):
        if tcp:
            conversation.data(side, pb.tcp_record(message), At(frame, frame * 1000))
        else:
            conversation.datagram(side, message, At(frame, frame * 1000))
    conversation.end()
    return conversation


def test_claims() -> None:
    as_req = pb.as_req(REALM, "alice")
    assert kerberos.claims((50000, 88), pb.tcp_record(as_req))
    assert kerberos.claims((88, 50000), as_req)
    assert kerberos.claims((50000, 88), pb.tcp_record(as_req)[:4])
    assert not kerberos.claims((50000, 89), as_req)
    assert not kerberos.claims((50000, 88), b"GET / HTTP/1.1\r\n")
    assert not kerberos.claims((50000, 88), b"")
    assert not kerberos.claims((50000, 88), pb.tcp_record(pb.ap_req(REALM, "x/y")))


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "udp"])
def test_as_exchange_preauth_then_ticket(tcp: bool) -> None:
    conversation = run(
        [
            (A, kdc_req(10, TGT, cname="alice")),
            (B, pb.krb_error(25, REALM, TGT, cname="alice", crealm=REALM)),
            (A, kdc_req(10, TGT, cname="alice", padata=[ENC_TIMESTAMP])),
            (B, pb.kdc_rep(11, REALM, "Alice", TGT)),
        ],
        tcp,
    )
    record = conversation.record
    assert [
        (o["frame"], o["side"], o["operation"], o["target"], o["realm"], o["status"])
        for o in record.operations
    ] == [
        (1, A, "AS-REQ", TGT, REALM, "KDC_ERR_PREAUTH_REQUIRED"),
        (3, A, "AS-REQ", TGT, REALM, "ok"),
    ]
    assert record.identities == [
        {
            "protocol": "kerberos",
            "carrier": "kerberos",
            "method": "AS-REQ",
            "account": "alice",
            "realm": REALM,
            "service": TGT,
            "preauth": "none",
            "outcome": "KDC_ERR_PREAUTH_REQUIRED",
        },
        {
            "protocol": "kerberos",
            "carrier": "kerberos",
            "method": "AS-REQ",
            "account": "Alice",  # the KDC's canonical spelling, from the AS-REP
            "realm": REALM,
            "service": TGT,
            "preauth": "encrypted-timestamp",
            "outcome": "success",
            "ticket_etype": "aes256-cts-hmac-sha1-96",
        },
    ]
    assert conversation.facts() == {
        "etypes_requested": ["aes256-cts-hmac-sha1-96", "rc4-hmac"],
        "ticket_etypes": ["aes256-cts-hmac-sha1-96"],
    }
    assert record.truncated == []


def test_pkinit_and_unknown_principal() -> None:
    conversation = run(
        [(A, kdc_req(10, TGT, cname="nobody", padata=[PKINIT])), (B, pb.krb_error(6, REALM, TGT))]
    )
    (identity,) = conversation.record.identities
    assert identity["preauth"] == "PKINIT"
    assert identity["outcome"] == "KDC_ERR_C_PRINCIPAL_UNKNOWN"


def test_tgs_names_the_client_from_the_reply() -> None:
    service = "cifs/sitesrv.corp.example"
    conversation = run(
        [
            (A, kdc_req(12, service, padata=[TGS_AP_REQ])),
            (B, pb.kdc_rep(13, REALM, "alice", service)),
        ]
    )
    (operation,) = conversation.record.operations
    assert (operation["operation"], operation["target"], operation["status"]) == (
        "TGS-REQ",
        service,
        "ok",
    )
    (identity,) = conversation.record.identities
    assert identity["method"] == "TGS-REQ"
    assert identity["service"] == service
    assert identity["account"] == "alice"
    assert identity["outcome"] == "success"
    assert "s4u" not in identity


def test_s4u2self_names_the_impersonated_user() -> None:
    conversation = run(
        [
            (A, kdc_req(12, "SITESRV$", padata=[TGS_AP_REQ, FOR_USER])),
            (A, kdc_req(12, "SITESRV$", padata=[TGS_AP_REQ, X509_USER])),
        ]
    )
    first, second = conversation.record.identities
    assert (first["s4u"], first["s4u_user"]) == ("S4U2Self", f"alice@{REALM}")
    assert (second["s4u"], second["s4u_user"]) == ("S4U2Self", f"bob@{REALM}")
    assert first["outcome"] is None  # no answer seen


def test_s4u2proxy_option() -> None:
    conversation = run(
        [(A, kdc_req(12, "cifs/fs.corp.example", padata=[TGS_AP_REQ], options=S4U2PROXY_OPTIONS))]
    )
    assert conversation.record.identities[0]["s4u"] == "S4U2Proxy"


def test_answers_without_requests_are_operations_of_their_own() -> None:
    conversation = run(
        [
            (B, pb.krb_error(37, REALM, TGT, cname="carol", crealm=REALM)),
            (B, pb.kdc_rep(13, REALM, "dave", "x/y")),
        ],
        tcp=False,
    )
    assert [(o["operation"], o["status"]) for o in conversation.record.operations] == [
        ("KRB-ERROR", "KRB_AP_ERR_SKEW"),
        ("TGS-REP", "ok"),
    ]
    assert [(i["method"], i["account"], i["outcome"]) for i in conversation.record.identities] == [
        ("KRB-ERROR", "carol", "KRB_AP_ERR_SKEW"),
        ("TGS-REP", "dave", "success"),
    ]


def test_error_names() -> None:
    assert kerberos.error_name(25) == "KDC_ERR_PREAUTH_REQUIRED"
    assert kerberos.error_name(37) == "KRB_AP_ERR_SKEW"
    assert kerberos.error_name(6) == "KDC_ERR_C_PRINCIPAL_UNKNOWN"
    assert kerberos.error_name(999) == "KRB_ERROR_999"


def test_not_kerberos_stops_the_side() -> None:
    conversation = kerberos.Conversation(Record())
    conversation.data(A, b"\x00\x00\x00\x10" + bytes(16), At(1, 0))
    conversation.data(A, pb.tcp_record(kdc_req(10, TGT, cname="alice")), At(2, 0))
    assert conversation.record.operations == []
    assert conversation.record.truncated == ["kerberos: not kerberos any more"]


# --- hostile bytes and splits -----------------------------------------------------------------

EXCHANGE = [
    (A, kdc_req(10, TGT, cname="alice")),
    (B, pb.krb_error(25, REALM, TGT, cname="alice", crealm=REALM)),
    (A, kdc_req(12, "SITESRV$", padata=[TGS_AP_REQ, FOR_USER])),
    (B, pb.kdc_rep(13, REALM, "alice", "SITESRV$")),
]


def _summary(conversation: kerberos.Conversation) -> Any:
    record = conversation.record
    operations = [
        {k: v for k, v in o.items() if k not in ("frame", "ts_ns")} for o in record.operations
    ]
    return operations, record.identities, record.truncated, conversation.facts()


def test_random_bytes_never_raise() -> None:
    rng = random.Random(88)
    for _ in range(300):
        conversation = kerberos.Conversation(Record())
        for _ in range(rng.randrange(1, 8)):
            side = rng.randrange(2)
            head = rng.choice(
                [b"", b"\x00\x00\x01\x00", b"\x6a\x82\x01\x00", b"\x00\x00\x00\x40\x6c\x3e"]
            )
            blob = head + rng.randbytes(rng.randrange(0, 300))
            conversation.data(side, blob, At(1, 0))
            conversation.datagram(side, blob, At(1, 0))
            if rng.random() < 0.2:
                conversation.gap(side, rng.randrange(1, 5000), At(1, 0))
        conversation.end()
        json.dumps(_summary(conversation))


def test_truncation_and_corruption_never_raise() -> None:
    rng = random.Random(4120)
    for _, message in EXCHANGE:
        for cut in range(len(message) + 1):
            run([(A, message[:cut])], tcp=False)
            conversation = kerberos.Conversation(Record())
            conversation.data(A, pb.tcp_record(message)[: cut + 4], At(1, 0))
            conversation.end()
        for _ in range(200):
            damaged = bytearray(message)
            for _ in range(rng.randrange(1, 6)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            json.dumps(_summary(run([(A, bytes(damaged))], tcp=rng.random() < 0.5)))


def test_every_split_gives_the_same_record() -> None:
    whole = _summary(run(EXCHANGE))
    streams = {A: b"", B: b""}
    for side, message in EXCHANGE:
        streams[side] += pb.tcp_record(message)
    assert len(whole[0]) == 2
    for split_side in (A, B):
        data = streams[split_side]
        for cut in range(len(data) + 1):
            conversation = kerberos.Conversation(Record())
            # the client's whole requests first would answer out of order: keep the exchange's
            # order by feeding message by message, split only inside the chosen side's bytes.
            sent = {A: 0, B: 0}
            for side, message in EXCHANGE:
                record = pb.tcp_record(message)
                start, end = sent[side], sent[side] + len(record)
                sent[side] = end
                if side == split_side and start < cut < end:
                    conversation.data(side, data[start:cut], At(1, 0))
                    conversation.data(side, data[cut:end], At(2, 0))
                else:
                    conversation.data(
                        side, data[start:end] if side == split_side else record, At(1, 0)
                    )
            conversation.end()
            assert _summary(conversation) == whole, (split_side, cut)


def test_byte_at_a_time() -> None:
    whole = _summary(run(EXCHANGE))
    conversation = kerberos.Conversation(Record())
    for side, message in EXCHANGE:
        for byte in pb.tcp_record(message):
            conversation.data(side, bytes([byte]), At(1, 0))
    assert _summary(conversation) == whole


# --- tshark on real captures, flow by flow through the stream engine ---------------------------

CAPTURES = [
    "ndpi_kerberos_ad.pcap",
    "otrf_psexec_dcerpc_tcp_epm.cap",
    "otrf_purplesharp_ad_mixed.cap",
    "zeek_smb2_kerberos.pcap",
]
LAB = Path(__file__).resolve().parents[2] / "lab" / "captures" / "ad.pcap"
_FIELDS = [
    "frame.number",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "kerberos.msg_type",
    "kerberos.CNameString",
    "kerberos.SNameString",
    "kerberos.realm",
    "kerberos.error_code",
]


def capture_paths() -> list[Path]:
    folder = corpus_dir()
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"no corpus at {folder}")
        return []
    return [folder / name for name in CAPTURES if (folder / name).is_file()]


def tshark_messages(tshark: str, path: Path) -> list[dict[str, list[str]]]:
    command = [
        tshark,
        "-n",
        "-r",
        str(path),
        "-Y",
        "kerberos && (tcp.port == 88 || udp.port == 88)",
    ]
    command += ["-T", "fields", "-E", "separator=\t", "-E", "aggregator=\x1f"]
    for field in _FIELDS:
        command += ["-e", field]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    rows = []
    for line in output.splitlines():
        values = line.split("\t")
        rows.append(
            {
                f: [v for v in value.split("\x1f") if v]
                for f, value in zip(_FIELDS, values, strict=False)
            }
        )
    return rows


def _ends(row: dict[str, list[str]]) -> frozenset[tuple[str, int]]:
    source = (row.get("ip.src") or row.get("ipv6.src") or [""])[0]
    destination = (row.get("ip.dst") or row.get("ipv6.dst") or [""])[0]
    sport = int((row.get("tcp.srcport") or row.get("udp.srcport") or ["0"])[0])
    dport = int((row.get("tcp.dstport") or row.get("udp.dstport") or ["0"])[0])
    return frozenset({(source, sport), (destination, dport)})


def engine_flows(path: Path) -> list[dict[str, Any]]:
    """The stream engine's flows of ``path`` read with the Kerberos module alone (the other
    stream modules may not exist yet; none of them claims port 88)."""
    from flowaudit.stream import engine

    saved = flowaudit.stream.MODULES, flowaudit.stream._LOADED
    flowaudit.stream.MODULES = ("kerberos",)  # type: ignore[assignment]
    flowaudit.stream._LOADED = None
    try:
        return engine.conversations([str(path)])
    finally:
        flowaudit.stream.MODULES, flowaudit.stream._LOADED = saved


REQUESTS = {"10": "AS-REQ", "12": "TGS-REQ"}
# ndpi_kerberos_ad.pcap holds sampled segments: this KRB-ERROR's connection has no captured
# start (its first bytes are the middle of a TGS-REQ), so no module claims it, by design.
UNCLAIMED = {("ndpi_kerberos_ad.pcap", 32)}
REPLIES = {"11", "13", "30"}


def agreement(tshark: str, paths: list[Path]) -> tuple[dict[str, list[int]], list[str]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    differences: list[str] = []

    def compare(where: str, field: str, ours: Any, theirs: Any) -> None:
        counts[field][1] += 1
        if ours == theirs:
            counts[field][0] += 1
        else:
            differences.append(f"{where} {field}: ours {ours!r}, tshark {theirs!r}")

    for path in paths:
        flows = [
            f for f in engine_flows(path) if f.get("conversation", {}).get("protocol") == "kerberos"
        ]
        for row in tshark_messages(tshark, path):
            frame = int(row["frame.number"][0])
            where = f"{path.name}#{frame}"
            ends = _ends(row)
            flow = next(
                (
                    f
                    for f in flows
                    if f["first_frame"] <= frame <= f["last_frame"]
                    and frozenset(
                        {(f["client"], f["client_port"]), (f["server"], f["server_port"])}
                    )
                    == ends
                ),
                None,
            )
            # a TGS-REQ frame shows 12 then 14 (the AP-REQ in its PA-TGS-REQ): the first is it
            kind = row["kerberos.msg_type"][0]
            if flow is None:
                if (path.name, frame) not in UNCLAIMED:
                    compare(where, "kerberos.msg_type", None, kind)
                continue
            operations = flow.get("operations", [])
            identities = flow.get("identities", [])
            snames = row.get("kerberos.SNameString", [])
            if kind in REQUESTS:
                operation = next((o for o in operations if o["frame"] == frame), None)
                if operation is None:
                    # the request's first bytes are not in the capture (ndpi_kerberos_ad.pcap
                    # holds sampled segments): the side is not read, by design.
                    compare(where, "kerberos.msg_type", flow.get("truncated"), kind)
                    continue
                compare(where, "kerberos.msg_type", operation["operation"], REQUESTS[kind])
                # a TGS-REQ frame also shows the TGT's sname (PA-TGS-REQ) first: the request
                # body's sname is the last one.
                parts = (operation.get("target") or "").split("/")
                compare(where, "kerberos.SNameString", parts, snames[-len(parts) :])
                compare(where, "kerberos.realm", operation.get("realm"), row["kerberos.realm"][-1])
                if kind == "10":
                    names = {
                        (i.get("account") or "").lower()
                        for i in identities
                        if i["method"] == "AS-REQ"
                    }
                    # the AS-REP's cname replaces the request's (canonical case)
                    compare(
                        where,
                        "kerberos.CNameString",
                        (row.get("kerberos.CNameString") or [""])[0].lower() in names,
                        True,
                    )
            elif kind in REPLIES:
                answered = [
                    o
                    for o in operations
                    if o["frame"] < frame and o["operation"] in REQUESTS.values()
                ]
                own = next((o for o in operations if o["frame"] == frame), None)
                operation = own or (answered[-1] if answered else None)
                code = next(iter(row.get("kerberos.error_code") or []), None)
                status = "ok" if kind != "30" else kerberos.error_name(int(code or 0))
                compare(where, "kerberos.error_code", operation and operation.get("status"), status)
                if kind != "30":
                    accounts = [i.get("account") for i in identities]
                    compare(
                        where,
                        "kerberos.CNameString",
                        next(iter(row.get("kerberos.CNameString") or []), None) in accounts,
                        True,
                    )
    return counts, differences


@pytest.fixture(scope="module")
def corpus_agreement(tshark: str) -> tuple[dict[str, list[int]], list[str]]:
    paths = capture_paths() + ([LAB] if LAB.is_file() else [])
    if not paths:
        pytest.skip("no corpus and no lab capture")
    return agreement(tshark, paths)


def test_tshark_agreement_per_flow(
    corpus_agreement: tuple[dict[str, list[int]], list[str]],
) -> None:
    counts, differences = corpus_agreement
    print({field: f"{ok}/{total}" for field, (ok, total) in sorted(counts.items())})
    assert not differences, "\n".join(differences[:30])
    assert counts["kerberos.msg_type"][1] >= 35
    assert counts["kerberos.error_code"][1] >= 30
