"""Authentication tokens (flowaudit.stream.auth): spec-built NTLM and Kerberos tokens in every
wrapping, hostile bytes, and tshark's reading of the tokens in the corpus and lab captures.

The NTLM builders below follow [MS-NLMP] 2.2.1 (messages), 2.2.2.1 (AV_PAIR), 2.2.2.5 (flags)
and 2.2.2.7 (NTLMv2_CLIENT_CHALLENGE); SPNEGO follows RFC 4178 4.2 and the GSS-API framing
RFC 2743 3.1.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowaudit.stream import auth
from flowaudit.stream.base import At, Record
from tests.conftest import corpus_dir
from tests.protobytes import kerberos as pb
from tests.protobytes.ldap import integer, octets, sequence, tlv

AT = At(1, 0)

# --- NTLM builders ---------------------------------------------------------------------------

UNICODE, OEM = 0x00000001, 0x00000002
SIGN, SEAL = 0x00000010, 0x00000020
NTLM = 0x00000200
ALWAYS_SIGN = 0x00008000
ESS = 0x00080000
TARGET_INFO = 0x00800000
VERSION = 0x02000000
KEY_128, KEY_EXCH, KEY_56 = 0x20000000, 0x40000000, 0x80000000
V2_FLAGS = UNICODE | SIGN | SEAL | NTLM | ALWAYS_SIGN | ESS | TARGET_INFO | VERSION | KEY_128
V2_FLAGS |= KEY_EXCH | KEY_56
CHALLENGE = bytes.fromhex("0123456789abcdef")


def negotiate(flags: int = V2_FLAGS) -> bytes:
    """[MS-NLMP] 2.2.1.1 NEGOTIATE_MESSAGE, empty domain and workstation, with Version."""
    return auth.NTLMSSP + struct.pack("<II", 1, flags) + bytes(16) + bytes(8)


def av_pair(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def challenge(flags: int = V2_FLAGS, server_challenge: bytes = CHALLENGE) -> bytes:
    """[MS-NLMP] 2.2.1.2 CHALLENGE_MESSAGE: TargetName, flags, challenge, TargetInfo."""
    target = "CORP".encode("utf-16-le")
    info = av_pair(2, target) + av_pair(1, "SITESRV".encode("utf-16-le")) + av_pair(0, b"")
    start = 56
    header = auth.NTLMSSP + struct.pack("<I", 2)
    header += struct.pack("<HHI", len(target), len(target), start)
    header += struct.pack("<I", flags) + server_challenge + bytes(8)
    header += struct.pack("<HHI", len(info), len(info), start + len(target)) + bytes(8)
    return header + target + info


def ntlmv2_response(pairs: bytes) -> bytes:
    """[MS-NLMP] 2.2.2.8 NTLMv2_RESPONSE: NTProofStr, then the 2.2.2.7 client challenge."""
    client = bytes([1, 1]) + bytes(6) + struct.pack("<Q", 0x01D0_0000_0000_0000) + b"CLIENTCH"
    return bytes(range(16)) + client + bytes(4) + pairs + bytes(4)


def authenticate(
    user: str = "alice",
    domain: str = "CORP",
    workstation: str = "WS01",
    *,
    flags: int = V2_FLAGS,
    lm: bytes = bytes(24),
    nt: bytes | None = None,
) -> bytes:
    """[MS-NLMP] 2.2.1.3 AUTHENTICATE_MESSAGE with Version and MIC, payload after 88 bytes."""
    if nt is None:
        nt = ntlmv2_response(
            av_pair(2, "CORP".encode("utf-16-le"))
            + av_pair(6, struct.pack("<I", 0x2))
            + av_pair(9, "cifs/sitesrv.corp.example".encode("utf-16-le"))
            + av_pair(0xA, bytes(range(1, 17)))
            + av_pair(0, b"")
        )
    encoding = "utf-16-le" if flags & UNICODE else "latin-1"
    payloads = [
        lm,
        nt,
        domain.encode(encoding),
        user.encode(encoding),
        workstation.encode(encoding),
        bytes(16),
    ]
    at = 88
    fields = b""
    for payload in payloads:
        fields += struct.pack("<HHI", len(payload), len(payload), at)
        at += len(payload)
    header = auth.NTLMSSP + struct.pack("<I", 3) + fields + struct.pack("<I", flags)
    header += bytes(8) + bytes(16)  # Version, MIC
    assert len(header) == 88
    return header + b"".join(payloads)


# --- SPNEGO and GSS-API wrappers (RFC 4178 4.2, RFC 2743 3.1, RFC 4121 4.1) -------------------

SPNEGO_OID = tlv(0x06, auth.OID_SPNEGO)
NTLM_OID = tlv(0x06, auth.OID_NTLMSSP)
KRB5_OID = tlv(0x06, auth.OID_KRB5)
MS_KRB5_OID = tlv(0x06, auth.OID_MS_KRB5)


def explicit(number: int, value: bytes) -> bytes:
    return tlv(0xA0 | number, value)


def neg_token_init(mech_token: bytes, mechs: bytes = NTLM_OID) -> bytes:
    """GSS-API framed SPNEGO NegTokenInit: mechTypes [0], mechToken [2]."""
    init = explicit(0, sequence(explicit(0, sequence(mechs)), explicit(2, octets(mech_token))))
    return tlv(0x60, SPNEGO_OID + init)


def neg_token_resp(token: bytes | None = None, state: int = 1, mech: bytes = NTLM_OID) -> bytes:
    """NegTokenResp [1]: negState [0], supportedMech [1], responseToken [2]."""
    fields = explicit(0, integer(state, 0x0A)) + explicit(1, mech)
    if token is not None:
        fields += explicit(2, octets(token))
    return explicit(1, sequence(fields))


def gss_krb5(message: bytes, tok_id: bytes = b"\x01\x00", oid: bytes = KRB5_OID) -> bytes:
    """RFC 4121 4.1: the Kerberos mechanism OID, TOK_ID, then the message."""
    return tlv(0x60, oid + tok_id + message)


# --- NTLM --------------------------------------------------------------------------------------


def exchange(tokens: list[bytes], carrier: str = "smb2") -> tuple[auth.Auth, list[Any]]:
    record = Record()
    reader = auth.Auth(record, carrier)
    return reader, [reader.token(AT, index % 2, token) for index, token in enumerate(tokens)]


def test_ntlmv2_through_spnego_merges_the_challenge() -> None:
    reader, found = exchange(
        [
            neg_token_init(negotiate()),
            neg_token_resp(challenge()),
            neg_token_resp(authenticate(), state=1),
        ]
    )
    assert found[:2] == [None, None]
    identity = found[2]
    assert identity is reader.record.identities[0]
    assert identity == {
        "protocol": "ntlm",
        "carrier": "smb2",
        "account": "alice",
        "domain": "CORP",
        "workstation": "WS01",
        "method": "NTLMv2",
        "sign": True,
        "seal": True,
        "flags": f"0x{V2_FLAGS:08x}",
        "server_challenge": CHALLENGE.hex(),
        "target_name": "cifs/sitesrv.corp.example",
        "av_flags": 2,
        "channel_bindings": True,
        "outcome": None,
    }
    assert reader.facts() == {
        "mechanism": "ntlm",
        "ntlm_flags": f"0x{V2_FLAGS:08x}",
        "signing": True,
        "sealing": True,
        "spnego_state": "accept-incomplete",
    }
    reader.outcome("success")
    assert reader.record.identities[0]["outcome"] == "success"


def test_raw_ntlmssp_as_http_sends_it() -> None:
    flags = UNICODE | NTLM | ESS | TARGET_INFO
    reader, found = exchange(
        [negotiate(flags), challenge(flags), authenticate("bob", "EXAMPLE", "PC7", flags=flags)],
        carrier="http",
    )
    identity = found[2]
    assert identity["carrier"] == "http"
    assert (identity["account"], identity["domain"], identity["workstation"]) == (
        "bob",
        "EXAMPLE",
        "PC7",
    )
    assert identity["sign"] is False and identity["seal"] is False
    assert reader.facts()["signing"] is False


@pytest.mark.parametrize(
    ("lm", "nt", "flags", "user", "method"),
    [
        (bytes(24), bytes(range(24)), UNICODE | NTLM, "alice", "NTLMv1"),
        (bytes(8) + bytes(16), bytes(range(24)), UNICODE | NTLM | ESS, "alice", "NTLMv1-ESS"),
        (b"", b"", UNICODE | NTLM, "", "anonymous"),
        (b"\x00", b"", UNICODE | NTLM, "", "anonymous"),
        (bytes(range(24)), b"", UNICODE | NTLM, "alice", "LM"),
    ],
    ids=["v1", "v1-ess", "anonymous-empty-lm", "anonymous-z1-lm", "lm-only"],
)
def test_method_from_response_lengths(
    lm: bytes, nt: bytes, flags: int, user: str, method: str
) -> None:
    _, found = exchange([authenticate(user, flags=flags, lm=lm, nt=nt)])
    assert found[0]["method"] == method
    assert "target_name" not in found[0]  # only an NTLMv2 response carries AV_PAIRs
    assert found[0]["server_challenge"] is None  # no CHALLENGE seen on this connection


def test_oem_strings_without_unicode_flag() -> None:
    _, found = exchange([authenticate("Jos\xe9", "CORP", "WS", flags=OEM | NTLM, nt=bytes(24))])
    assert found[0]["account"] == "Jos\xe9"


def test_ntlmv2_without_channel_bindings_or_target() -> None:
    nt = ntlmv2_response(av_pair(0xA, bytes(16)) + av_pair(0, b""))
    _, found = exchange([authenticate(nt=nt)])
    assert found[0]["target_name"] is None
    assert found[0]["av_flags"] is None
    assert found[0]["channel_bindings"] is False  # all-zero bindings are no bindings


def test_outcome_goes_to_the_last_identity_without_one() -> None:
    reader, found = exchange([authenticate("a"), authenticate("b")])
    reader.outcome("STATUS_LOGON_FAILURE")
    assert found[0]["outcome"] is None and found[1]["outcome"] == "STATUS_LOGON_FAILURE"
    reader.outcome("success")
    assert found[0]["outcome"] == "success"
    reader.outcome("401", found[1])
    assert found[1]["outcome"] == "401"
    reader.outcome("ignored")  # nothing pending: nothing changes
    assert [each["outcome"] for each in found] == ["success", "401"]


def test_negotiate_alone_gives_facts() -> None:
    reader, found = exchange([negotiate(UNICODE | SIGN)])
    assert found == [None]
    assert reader.facts() == {
        "mechanism": "ntlm",
        "ntlm_flags": f"0x{UNICODE | SIGN:08x}",
        "signing": True,
        "sealing": False,
    }
    assert reader.record.identities == []


def test_strings_are_capped() -> None:
    _, found = exchange([authenticate("u" * 1000, "d" * 1000, "w" * 1000)])
    assert {len(found[0][key]) for key in ("account", "domain", "workstation")} == {256}


# --- Kerberos ----------------------------------------------------------------------------------

REALM = "CORP.EXAMPLE"
AP_REQ = pb.ap_req(REALM, "cifs/sitesrv.corp.example")
KERBEROS_IDENTITY = {
    "protocol": "kerberos",
    "carrier": "smb2",
    "method": "AP-REQ",
    "account": None,  # inside the encrypted ticket
    "realm": REALM,
    "service": "cifs/sitesrv.corp.example",
    "ticket_etype": "aes256-cts-hmac-sha1-96",
    "outcome": None,
}


@pytest.mark.parametrize(
    "token",
    [
        neg_token_init(gss_krb5(AP_REQ), mechs=MS_KRB5_OID + KRB5_OID),
        gss_krb5(AP_REQ),
        gss_krb5(AP_REQ, oid=MS_KRB5_OID),
        AP_REQ,
        neg_token_resp(gss_krb5(AP_REQ), mech=MS_KRB5_OID),
    ],
    ids=["spnego-init", "gss-krb5", "gss-ms-krb5", "bare", "spnego-resp"],
)
def test_kerberos_ap_req_in_every_wrapping(token: bytes) -> None:
    reader, found = exchange([token])
    assert found[0] == KERBEROS_IDENTITY
    assert reader.facts()["mechanism"] == "kerberos"


def test_kerberos_error_token_is_the_outcome() -> None:
    error = pb.krb_error(37, REALM, "cifs/sitesrv.corp.example")  # KRB_AP_ERR_SKEW
    reader, found = exchange([gss_krb5(AP_REQ), neg_token_resp(gss_krb5(error, b"\x03\x00"), 2)])
    assert found[1] is None
    assert found[0]["outcome"] == "KRB_AP_ERR_SKEW"
    assert reader.facts()["spnego_state"] == "reject"


def test_ap_rep_and_wrap_tokens_name_nobody() -> None:
    ap_rep = tlv(0x6F, sequence(explicit(0, integer(5)), explicit(1, integer(15))))
    wrap = bytes.fromhex("050406ff0000000000000000") + bytes(48)  # RFC 4121 4.2.6.2
    _, found = exchange([gss_krb5(ap_rep, b"\x02\x00"), wrap, b"", b"\x60"])
    assert found == [None, None, None, None]


# --- hostile bytes -------------------------------------------------------------------------------

SAMPLES = [
    neg_token_init(negotiate()),
    neg_token_resp(challenge()),
    neg_token_resp(authenticate()),
    authenticate(nt=bytes(24)),
    neg_token_init(gss_krb5(AP_REQ)),
    gss_krb5(pb.krb_error(25, REALM, "krbtgt/" + REALM), b"\x03\x00"),
]


def test_random_bytes_never_raise() -> None:
    rng = random.Random(4120)
    reader = auth.Auth(Record(), "smb2")
    prefixes = [
        b"",
        b"NTLMSSP\x00",
        b"\x60",
        b"\xa0",
        b"\xa1",
        b"\x6e",
        b"NTLMSSP\x00\x03\x00\x00\x00",
    ]
    for _ in range(3000):
        blob = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 200))
        reader.token(AT, 0, blob)
    reader.outcome("x")
    json.dumps(reader.record.identities)
    json.dumps(reader.facts())


def test_truncation_and_corruption_never_raise() -> None:
    rng = random.Random(4178)
    for sample in SAMPLES:
        reader = auth.Auth(Record(), "dcerpc")
        for cut in range(len(sample) + 1):
            reader.token(AT, 0, sample[:cut])
        for _ in range(300):
            damaged = bytearray(sample)
            for _ in range(rng.randrange(1, 6)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            reader.token(AT, 1, bytes(damaged))
        json.dumps(reader.record.identities)
        assert len(reader.record.identities) <= 32


def test_cut_authenticate_keeps_what_was_read() -> None:
    whole = authenticate()
    _, found = exchange([whole[:100]])  # the header whole, the payload cut in the LM response
    identity = found[0]
    assert identity["method"] == "NTLMv2"  # from the declared NT response length
    assert (identity["account"], identity["domain"], identity["workstation"]) == (None, None, None)
    assert identity["flags"] == f"0x{V2_FLAGS:08x}"
    _, found = exchange([whole[:60]])  # NegotiateFlags cut: not an AUTHENTICATE to read
    assert found == [None]


# --- tshark on real captures -----------------------------------------------------------------
#
# tshark (-T json -x) gives the bytes of every GSS-API, SPNEGO, NTLMSSP or Kerberos token it
# found in a frame (in SMB, SMB2, DCE/RPC, LDAP, HTTP); the outermost of them is what the carrier
# hands to Auth. One Auth per TCP stream, tokens in frame order, so that a CHALLENGE is merged
# into the AUTHENTICATE after it. tshark's own reading of the same frames is the oracle.

CAPTURES = [
    "zeek_smb2_kerberos.pcap",
    "arkime_smb_windows10.pcap",
    "sv_smb2_mixed_windows_lan.pcap",
    "otrf_psexec_dcerpc_tcp_epm.cap",
    "otrf_purplesharp_ad_mixed.cap",
    "otrf_schtask_create.pcapng",
    "otrf_winrm_psremoting_trailing_byte.cap",
    "sv_smb_psexec_add_user.pcap",
]
LAB = Path(__file__).resolve().parents[2] / "lab" / "captures" / "ad.pcap"
_TOKEN_KEYS = ("gss-api_raw", "spnego_raw", "ntlmssp_raw", "kerberos_raw")
_FIELDS = (
    "frame.number",
    "tcp.stream",
    "ntlmssp.messagetype",
    "ntlmssp.auth.username",
    "ntlmssp.auth.domain",
    "ntlmssp.auth.hostname",
    "ntlmssp.negotiateflags",
    "ntlmssp.ntlmserverchallenge",
    "ntlmssp.ntlmv2_response",
    "ntlmssp.ntlmv2_response.target_name",
    "ntlmssp.ntlmv2_response.flags",
    "kerberos.msg_type",
    "kerberos.SNameString",
    "kerberos.realm",
    "kerberos.etype",
)


def capture_paths() -> list[Path]:
    folder = corpus_dir()
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"no corpus at {folder}")
        return []
    return [folder / name for name in CAPTURES if (folder / name).is_file()]


def _walk(node: Any, found: dict[str, list[Any]], tokens: list[str]) -> None:
    """Every field of a tshark JSON packet (kept as pairs: names repeat), in document order."""
    if isinstance(node, list) and node and all(isinstance(x, tuple) for x in node):
        for key, value in node:
            if key in _TOKEN_KEYS and isinstance(value, list) and value:
                if isinstance(value[0], str):
                    tokens.append(value[0])
                continue
            if key in _FIELDS and isinstance(value, str):
                found[key].append(value)
            elif key in _FIELDS and isinstance(value, list) and value and isinstance(value[0], str):
                found[key].extend(value)  # a field repeated in one layer, or a list of values
            _walk(value, found, tokens)
    elif isinstance(node, list):
        for each in node:
            _walk(each, found, tokens)


def tshark_tokens(tshark: str, path: Path) -> list[tuple[dict[str, list[str]], bytes]]:
    """(tshark's fields, the outermost token's bytes) of every frame holding a token, carried
    in anything but a KDC conversation (port 88 is the Kerberos module's)."""
    display = (
        "(gss-api || ntlmssp || kerberos.msg_type == 14) && !(tcp.port == 88 || udp.port == 88)"
    )
    command = [tshark, "-n", "-r", str(path), "-Y", display, "-T", "json", "-x"]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    frames = []
    for packet in json.loads(output or "[]", object_pairs_hook=lambda pairs: pairs):
        fields: dict[str, list[str]] = defaultdict(list)
        tokens: list[str] = []
        _walk(packet, fields, tokens)
        if tokens:
            frames.append((dict(fields), bytes.fromhex(tokens[0])))
    return frames


def _null(values: list[str]) -> str:
    """tshark writes an empty NTLM string as NULL."""
    value = values[0] if values else ""
    return "" if value == "NULL" else value


def agreement(tshark: str, paths: list[Path]) -> tuple[dict[str, list[int]], list[str]]:
    """Per field: [agreeing, compared]; and the differences, one line each."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    differences: list[str] = []

    def compare(where: str, field: str, ours: Any, theirs: Any) -> None:
        counts[field][1] += 1
        if ours == theirs:
            counts[field][0] += 1
        else:
            differences.append(f"{where} {field}: ours {ours!r}, tshark {theirs!r}")

    for path in paths:
        readers: dict[str, auth.Auth] = {}
        challenges: dict[str, str] = {}
        for fields, blob in tshark_tokens(tshark, path):
            frame = int(fields["frame.number"][0])
            stream = (fields.get("tcp.stream") or ["udp"])[0]
            reader = readers.setdefault(stream, auth.Auth(Record(), "carrier"))
            identity = reader.token(At(frame, 0), 0, blob)
            where = f"{path.name}#{frame}"
            kinds = fields.get("ntlmssp.messagetype", [])
            if "0x00000003" in kinds:
                assert identity is not None, where
                compare(
                    where,
                    "ntlmssp.auth.username",
                    identity["account"],
                    _null(fields.get("ntlmssp.auth.username", [])),
                )
                compare(
                    where,
                    "ntlmssp.auth.domain",
                    identity["domain"],
                    _null(fields.get("ntlmssp.auth.domain", [])),
                )
                compare(
                    where,
                    "ntlmssp.auth.hostname",
                    identity["workstation"],
                    _null(fields.get("ntlmssp.auth.hostname", [])),
                )
                compare(
                    where,
                    "ntlmssp.negotiateflags",
                    identity["flags"],
                    fields["ntlmssp.negotiateflags"][-1],
                )
                compare(
                    where,
                    "ntlmssp.ntlmv2_response",
                    identity["method"] == "NTLMv2",
                    "ntlmssp.ntlmv2_response" in fields,
                )
                if identity["method"] == "NTLMv2":
                    target = fields.get("ntlmssp.ntlmv2_response.target_name", [None])[0]
                    compare(
                        where,
                        "ntlmssp.ntlmv2_response.target_name",
                        identity["target_name"],
                        target,
                    )
                    av_flags = fields.get("ntlmssp.ntlmv2_response.flags", [None])[0]
                    compare(
                        where,
                        "ntlmssp.ntlmv2_response.flags",
                        identity["av_flags"],
                        None if av_flags is None else int(av_flags, 16),
                    )
                if identity["server_challenge"] is not None:
                    compare(
                        where,
                        "ntlmssp.ntlmserverchallenge",
                        identity["server_challenge"],
                        challenges[stream],
                    )
            elif "0x00000002" in kinds:
                challenges[stream] = fields["ntlmssp.ntlmserverchallenge"][0].replace(":", "")
            if "14" in fields.get("kerberos.msg_type", []):
                assert identity is not None and identity["protocol"] == "kerberos", where
                compare(
                    where,
                    "kerberos.SNameString",
                    identity["service"],
                    "/".join(fields["kerberos.SNameString"]),
                )
                compare(where, "kerberos.realm", identity["realm"], fields["kerberos.realm"][0])
    return counts, differences


@pytest.fixture(scope="module")
def corpus_agreement(tshark: str) -> tuple[dict[str, list[int]], list[str]]:
    paths = capture_paths() + ([LAB] if LAB.is_file() else [])
    if not paths:
        pytest.skip("no corpus and no lab capture")
    return agreement(tshark, paths)


def test_tshark_agreement_on_ntlm_and_kerberos_tokens(
    corpus_agreement: tuple[dict[str, list[int]], list[str]],
) -> None:
    counts, differences = corpus_agreement
    print({field: f"{ok}/{total}" for field, (ok, total) in sorted(counts.items())})
    assert not differences, "\n".join(differences[:20])
    # What the corpus and the lab capture hold (a smaller count means tokens went unread).
    assert counts["ntlmssp.auth.username"][1] >= 20
    assert counts["kerberos.SNameString"][1] >= 10
