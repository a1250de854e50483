"""Stream LDAP/CLDAP: spec-built conversations, hostile bytes, and tshark on real captures."""

from __future__ import annotations

import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from flowaudit.dissect.ldap import OPERATIONS
from flowaudit.stream import base, ldap
from tests.protobytes import ldap as pb
from tests.protobytes import sasl as sasl_pb
from tests.stream.common import (
    AT,
    assert_never_raises,
    assert_split_anywhere_same,
    corpus_file,
    feed,
    lab_capture,
    need_tshark,
)
from tests.stream.replay_tshark import flows, replay, tshark_lists

BASE = "DC=corp,DC=example"


def make() -> ldap.Conversation:
    return ldap.Conversation(base.Record())


def ntlm_message(kind: int, user: str = "", domain: str = "", host: str = "") -> bytes:
    """NTLMSSP NEGOTIATE (1), CHALLENGE (2) or AUTHENTICATE (3) ([MS-NLMP] 2.2.1.1-2.2.1.3),
    with the fields the auth reader looks at; AUTHENTICATE strings in UTF-16LE."""
    signature = b"NTLMSSP\x00" + struct.pack("<I", kind)
    flags = struct.pack("<I", 0xE2088297)  # UNICODE, NTLM, EXTENDED_SESSIONSECURITY, ...
    if kind == 1:
        return signature + flags + bytes(16)
    if kind == 2:
        return signature + struct.pack("<HHI", 0, 0, 56) + flags + bytes(8) + bytes(8 + 8 + 8)
    nt = bytes(16) + b"\x01\x01" + bytes(30)  # an NTLMv2 response: 16-byte proof, then blob
    payload = [b"", nt, domain.encode("utf-16-le"), user.encode("utf-16-le")]
    payload += [host.encode("utf-16-le"), b""]
    offset = 64 + 8 + 16  # fields, flags, version, MIC
    fields = b""
    for item in payload:
        fields += struct.pack("<HHI", len(item), len(item), offset)
        offset += len(item)
    return signature + fields + flags + bytes(8) + bytes(16) + b"".join(payload)


def bind_sicily(message_id: int, choice: int, blob: bytes) -> bytes:
    """[MS-ADTS] 5.1.1.1.1: sicilyNegotiate [10] / sicilyResponse [11] OCTET STRING."""
    return pb.message(
        message_id, pb.sequence(pb.integer(3), pb.octets(""), pb.tlv(choice, blob), tag=0x60)
    )


def sicily_response(message_id: int, code: int, creds: bytes) -> bytes:
    """SicilyBindResponse: resultCode, serverCreds (the CHALLENGE), errorMessage."""
    body = pb.integer(code, 0x0A) + pb.octets(creds) + pb.octets("")
    return pb.message(message_id, pb.sequence(body, tag=0x61))


SIMPLE = [
    (0, pb.simple_bind_request(1, "CN=svc,OU=Service," + BASE, "S3cret!")),
    (1, pb.bind_response(1)),
    (0, pb.search_request(2, BASE, attributes=["dNSHostName"])),
    (1, pb.search_result_entry(2, "CN=a," + BASE, {"dNSHostName": ["a.corp.example"]})),
    (1, pb.search_result_entry(2, "CN=b," + BASE, {"dNSHostName": ["b.corp.example"]})),
    (1, pb.search_result_done(2)),
    (0, pb.simple_bind_request(3, "CN=bob," + BASE, "wrong")),
    (1, pb.bind_response(3, pb.INVALID_CREDENTIALS)),
    (0, pb.simple_bind_request(4, "", "")),
    (1, pb.bind_response(4)),
    (0, pb.unbind_request(5)),
]


def test_simple_binds_searches_and_unbind() -> None:
    conversation = feed(make, SIMPLE)
    ops = conversation.record.operations
    assert [op["operation"] for op in ops] == [
        "bindRequest",
        "bindResponse",
        "searchRequest",
        "searchResDone",
        "bindRequest",
        "bindResponse",
        "bindRequest",
        "bindResponse",
        "unbindRequest",
    ]
    search = ops[2]
    assert search["target"] == search["base"] == BASE
    assert search["entries"] == 2 and search["status"] == "success"
    assert search["filter"] == "(objectClass=*)" or search["filter"].startswith("(")
    assert search["attributes"] == ["dNSHostName"]
    assert ops[4]["status"] == "invalidCredentials" and ops[4]["password_sent"] is True
    identities = conversation.record.identities
    assert identities == [
        {
            "protocol": "ldap-simple",
            "account": "CN=svc,OU=Service," + BASE,
            "method": "simple",
            "carrier": "ldap",
            "password_sent": True,
            "outcome": "success",
        },
        {
            "protocol": "ldap-simple",
            "account": "CN=bob," + BASE,
            "method": "simple",
            "carrier": "ldap",
            "password_sent": True,
            "outcome": "invalidCredentials",
        },
        {
            "protocol": "ldap-simple",
            "account": "",
            "method": "anonymous",
            "carrier": "ldap",
            "password_sent": False,
            "outcome": "success",
        },
    ]
    text = repr(conversation.record) + repr(conversation.facts())
    assert "S3cret" not in text and "wrong" not in text  # never the password


def test_filter_rendering_rfc4515() -> None:
    present = pb.octets("objectClass", 0x87)
    equality = pb.sequence(pb.octets("cn"), pb.octets("a*b(c)\\"), tag=0xA3)
    substrings = pb.sequence(
        pb.octets("sAMAccountName"),
        pb.sequence(pb.octets("adm", 0x80), pb.octets("x", 0x81), pb.octets("01", 0x82)),
        tag=0xA4,
    )
    extensible = pb.sequence(
        pb.octets("1.2.840.113556.1.4.803", 0x81),
        pb.octets("userAccountControl", 0x82),
        pb.octets("2", 0x83),
        tag=0xA9,
    )
    sid = pb.sequence(pb.octets("objectSid"), pb.octets(b"\x01\x05\x00"), tag=0xA3)
    whole = pb.sequence(
        present,
        pb.sequence(equality, substrings, tag=0xA1),
        pb.sequence(extensible, tag=0xA2),
        pb.sequence(pb.octets("whenChanged"), pb.octets("2024"), tag=0xA5),
        sid,
        tag=0xA0,
    )
    element = ldap.read_element(whole, 0)
    assert element is not None
    assert ldap.render_filter(whole, element) == (
        "(&(objectClass=*)(|(cn=a\\2ab\\28c\\29\\5c)(sAMAccountName=adm*x*01))"
        "(!(userAccountControl:1.2.840.113556.1.4.803:=2))(whenChanged>=2024)"
        "(objectSid=\\01\\05\\00))"
    )
    deep = present
    for _ in range(100):  # nesting past the bound stops, cut to 256 characters
        deep = pb.sequence(deep, tag=0xA2)
    element = ldap.read_element(deep, 0)
    assert element is not None
    assert len(ldap.render_filter(deep, element)) <= 256


def test_starttls_stops_both_sides() -> None:
    conversation = feed(
        make,
        [
            (0, pb.extended_request(1, pb.STARTTLS_OID)),
            (1, pb.extended_response(1)),
            (0, b"\x16\x03\x01\x00\x05hello"),
            (1, b"\x16\x03\x03\x00\x05hello"),
        ],
    )
    ops = conversation.record.operations
    assert [(op["operation"], op.get("target"), op.get("status")) for op in ops] == [
        ("extendedReq", pb.STARTTLS_OID, "success"),
        ("extendedResp", None, "success"),
    ]
    assert conversation.record.truncated == ["ldap: tls after StartTLS"]
    assert conversation.facts()["starttls"] is True


def test_sasl_layers_signed_read_on_sealed_stop() -> None:
    search = pb.search_request(3, BASE)
    signed = pb.sasl_buffer(pb.krb5_wrap_clear(search, rotation=5))
    sealed = pb.sasl_buffer(sasl_pb.krb5_wrap_sealed(pb.search_request(4, BASE)))
    conversation = feed(
        make,
        [
            (0, pb.sasl_bind_request(1, "GSS-SPNEGO", b"\x60\x03\x06\x01\x00")),
            (1, pb.bind_response(1)),
            (0, signed),
            (0, sealed),
            (0, signed),
        ],
    )
    names = [op["operation"] for op in conversation.record.operations]
    assert names == ["bindRequest", "bindResponse", "searchRequest"]
    assert conversation.record.operations[0]["mechanism"] == "GSS-SPNEGO"
    facts = conversation.facts()
    assert facts["sasl_protection"] == "sealed" and facts["sasl_token"] == "kerberos"
    assert conversation.record.truncated == ["ldap: sasl-wrapped (sealed)"]


def test_sicily_ntlm_names_the_user() -> None:
    messages = [
        (0, bind_sicily(1, 0x8A, ntlm_message(1))),
        (1, sicily_response(1, 0, ntlm_message(2))),
        (0, bind_sicily(2, 0x8B, ntlm_message(3, "alice", "CORP", "WS01"))),
        (1, sicily_response(2, 0, b"")),
    ]
    conversation = feed(make, messages)
    methods = [op.get("method") for op in conversation.record.operations]
    assert methods == ["sicilyNegotiate", None, "sicilyResponse", None]
    ntlm = [i for i in conversation.record.identities if i.get("protocol") == "ntlm"]
    assert len(ntlm) == 1
    assert ntlm[0]["account"] == "alice" and ntlm[0]["domain"] == "CORP"
    assert ntlm[0]["carrier"] == "ldap" and ntlm[0]["outcome"] == "success"
    assert_split_anywhere_same(make, messages)


def test_digest_md5_names_the_user_not_the_response() -> None:
    response = b'charset=utf-8,username="carol",realm="corp.example",nonce="x",response=abc'
    conversation = feed(
        make,
        [
            (0, pb.sasl_bind_request(1, "DIGEST-MD5")),
            (1, pb.bind_response(1, 14)),
            (0, pb.sasl_bind_request(2, "DIGEST-MD5", response)),
            (1, pb.bind_response(2, 49)),
        ],
    )
    assert conversation.record.identities == [
        {
            "protocol": "ldap-sasl",
            "account": "carol",
            "realm": "corp.example",
            "method": "DIGEST-MD5",
            "carrier": "ldap",
            "outcome": "invalidCredentials",
        }
    ]
    assert conversation.record.operations[1]["status"] == "saslBindInProgress"


def test_cldap_datagram_and_claims() -> None:
    ping = pb.cldap_netlogon_ping(7, "corp.example")
    assert ldap.claims((50000, 389), ping)
    assert ldap.claims((3268, 50000), ping)
    assert not ldap.claims((50000, 636), ping)  # LDAPS: TLS from the first byte
    assert not ldap.claims((50000, 389), b"\x16\x03\x01\x00\x10")
    assert not ldap.claims((50000, 389), b"\x30\x05\x02\x01\x01\x04\x00")  # no [APPLICATION]
    # A first segment holding only the start of a long bind (a Kerberos token follows).
    assert ldap.claims((50000, 389), pb.sasl_bind_request(1, "GSSAPI", bytes(3000))[:200])
    conversation = make()
    conversation.datagram(0, ping, AT)
    conversation.datagram(
        1, pb.search_result_entry(7, "", {"netlogon": ["x"]}) + pb.search_result_done(7), AT
    )
    ops = conversation.record.operations
    assert [(op["operation"], op.get("entries"), op.get("status")) for op in ops] == [
        ("searchRequest", 1, "success"),
        ("searchResDone", None, "success"),
    ]


def test_fuzz_never_raises_and_splits_agree() -> None:
    assert_never_raises(make, SIMPLE, rounds=100)
    assert_split_anywhere_same(make, SIMPLE)


def test_big_message_held_only_to_the_bound() -> None:
    huge = pb.search_result_entry(2, "CN=x", {"member": ["a" * 100] * 2000})
    assert len(huge) > base.MAX_PDU_KEEP
    conversation = feed(
        make, [(0, pb.search_request(2, BASE)), (1, huge), (1, pb.search_result_done(2))]
    )
    assert conversation.record.operations[0]["entries"] == 1
    assert conversation.record.operations[0]["status"] == "success"


# ---- tshark agreement --------------------------------------------------------------------
#
# Per flow (tshark's tcp.stream / udp.stream): the multiset of protocolOp names, of search
# baseObjects and of resultCodes. Search result entries and references are counted on their
# request rather than kept as operations; they are expanded back for the comparison. Sealed
# SASL buffers are neither tshark's nor ours (tshark shows no protocolOp for them). tshark
# 4.0 decodes integrity-only GSS-SPNEGO/GSSAPI wrap tokens, and so do we.

CAPTURES = [
    ("corpus", "zeek_ldap_aduser1.pcap"),
    ("corpus", "zeek_ldap_gc3268_vlan.pcap"),
    ("corpus", "zeek_ldap_vlan_ipv6.pcapng"),
    ("corpus", "sv_cldap_netlogon.pcap"),
    ("corpus", "arkime_ldap_starttls_ipv6.pcap"),
    ("corpus", "otrf_purplesharp_ad_mixed.cap"),
    ("lab", "ad.pcap"),
]
_CODES = {name: code for code, name in ldap.RESULT_CODES.items()}


def _path(where: str, name: str) -> Path:
    return corpus_file(name) if where == "corpus" else lab_capture(name)


def _ours(path: Path) -> dict[tuple[str, int], dict[str, Counter[str]]]:
    found: dict[tuple[str, int], dict[str, Counter[str]]] = {}
    for key, flow in flows(path).items():
        if not ldap.claims(flow.ports, flow.first):
            continue
        conversation = replay(ldap, flow)
        ops, bases, codes = Counter[str](), Counter[str](), Counter[str]()
        for op in conversation.record.operations:
            ops[op["operation"]] += 1
            ops["searchResEntry"] += op.get("entries", 0)
            ops["searchResRef"] += op.get("references", 0)
            if op["operation"] == "searchRequest" and "base" in op:
                bases[op["base"]] += 1
            if (
                op["operation"]
                in (
                    "bindResponse",
                    "searchResDone",
                    "modifyResponse",
                    "addResponse",
                    "delResponse",
                    "modDNResponse",
                    "compareResponse",
                    "extendedResp",
                )
                and "status" in op
            ):
                codes[str(_CODES.get(op["status"], op["status"]))] += 1
        found[key] = {"ops": +ops, "bases": bases, "codes": codes}
    return found


def _theirs(path: Path) -> dict[tuple[str, int], dict[str, Counter[str]]]:
    found: dict[tuple[str, int], dict[str, Counter[str]]] = defaultdict(
        lambda: {"ops": Counter(), "bases": Counter(), "codes": Counter()}
    )
    need_tshark()
    rows = tshark_lists(
        path,
        "ldap or cldap",
        ["tcp.stream", "udp.stream", "ldap.protocolOp", "ldap.baseObject", "ldap.resultCode"],
    )
    for tcp, udp, ops, bases, codes in rows:
        key = ("tcp", int(tcp[0])) if tcp else ("udp", int(udp[0]))
        for op in ops:
            found[key]["ops"][OPERATIONS.get(int(op), op)] += 1
        found[key]["bases"].update(bases)
        found[key]["codes"].update(codes)
    # tshark's baseObject field is absent for an empty base ("" is the rootDSE search).
    return dict(found)


@pytest.mark.parametrize(("where", "name"), CAPTURES)
def test_tshark_agrees(where: str, name: str) -> None:
    path = _path(where, name)
    ours, theirs = _ours(path), _theirs(path)
    assert set(ours) == set(theirs), "the same flows are LDAP"
    for key in theirs:
        assert ours[key]["ops"] == theirs[key]["ops"], key
        # The rootDSE search (empty baseObject) has no ldap.baseObject field in tshark.
        assert +Counter({b: n for b, n in ours[key]["bases"].items() if b}) == theirs[key]["bases"]
        assert ours[key]["codes"] == theirs[key]["codes"], key


def test_tshark_agrees_on_sicily_ntlm_user(tmp_path: Path) -> None:
    from tests.stream.test_http import ntlm_agreement

    messages = [
        (0, bind_sicily(1, 0x8A, ntlm_message(1))),
        (1, sicily_response(1, 0, ntlm_message(2))),
        (0, bind_sicily(2, 0x8B, ntlm_message(3, "alice", "CORP", "WS01"))),
        (1, sicily_response(2, 0, b"")),
    ]
    theirs, ours = ntlm_agreement(tmp_path, ldap, 389, messages)
    assert theirs == ours == [("alice", "CORP", "WS01")]


def test_lab_ad_binds_name_who_authenticated() -> None:
    """The lab's real clients (OpenLDAP tools, impacket, MIT Kerberos) against Samba AD."""
    found: Counter[tuple[str, str | None, str, str]] = Counter()
    stops: Counter[str] = Counter()
    for flow in flows(lab_capture("ad.pcap")).values():
        if not ldap.claims(flow.ports, flow.first):
            continue
        conversation = replay(ldap, flow)
        stops.update(conversation.record.truncated)
        for identity in conversation.record.identities:
            name = identity.get("service") or identity.get("account")
            found[(identity["protocol"], name, identity["method"], identity["outcome"])] += 1
    assert found == Counter(
        {
            ("ldap-simple", "alice@lab.flowaudit.test", "simple", "success"): 2,
            ("ldap-simple", "", "anonymous", "success"): 1,
            ("kerberos", "ldap/dc.lab.flowaudit.test", "AP-REQ", "success"): 2,
            ("ntlm", "Administrator", "NTLMv2", "success"): 1,
        }
    )
    # Samba seals every SASL bind's later messages; one StartTLS.
    assert stops == Counter({"ldap: sasl-wrapped (sealed)": 3, "ldap: tls after StartTLS": 1})
