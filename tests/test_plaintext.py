"""Plaintext means the payload travelled in clear: WinRM session encryption, LDAP SASL layers.

Real captures of the corpus through the library (flow table, classification, audit), tshark as
the oracle for what each stream carried, and the decisions of ``signatures._plaintext`` on
bytes built from the specs (MS-WSMV 2.2.9.1 for WinRM's ``multipart/encrypted`` bodies; the
LDAP security layers are in ``tests/dissect/test_ldap_sasl.py``).
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import audit
from flowaudit.config import MAX_PAYLOAD_BYTES, FlowConfig
from flowaudit.dissect import http, ldap
from flowaudit.flows import build_flow_table
from flowaudit.signatures import _plaintext, classify
from tests.conftest import corpus_files
from tests.dissect.common import directions
from tests.dissect.tshark_streams import oracle_files, tshark_fields, wide_payloads
from tests.protobytes import ldap as pb
from tests.protobytes import sasl
from tests.protobytes.http import http_request, http_response
from tests.scapy_flows import tcp_session, write_capture

WINRM = "otrf_winrm_psremoting_trailing_byte.cap"
PURPLESHARP = "otrf_purplesharp_ad_mixed.cap"
KERBEROS_ENCRYPTION = "WinRM Kerberos session encryption (multipart/encrypted)"
SEALED_GSSAPI = "LDAP SASL sealed (GSSAPI wrap tokens with the Sealed flag)"
SIGNED = "LDAP SASL signed only (integrity wrap tokens, messages in clear)"
LAB_AD = Path(__file__).resolve().parent.parent / "lab" / "captures" / "ad.pcap"


def _flows(path: Path, payload_bytes: int = 2048) -> list[dict[str, Any]]:
    result = audit(build_flow_table([path], FlowConfig(payload_bytes=payload_bytes)))
    return list(result.flows)


def _by_service(flows: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [flow for flow in flows if flow["service"] == service]


# --- the corpus ------------------------------------------------------------------------------


@pytest.mark.corpus
def test_winrm_with_kerberos_session_encryption_is_not_plaintext(corpus: Path) -> None:
    """Each connection opens with an empty Kerberos auth POST whose token fills the window;
    the server's second answer, in the window, is ``multipart/encrypted``."""
    flows = _by_service(_flows(corpus / WINRM), "winrm-http")
    assert len(flows) == 3
    for flow in flows:
        facts = flow["facts"]
        assert flow["plaintext"] is False, flow["id"]
        assert facts["plaintext_reason"] == KERBEROS_ENCRYPTION
        assert facts["http"]["session_encryption"] == "application/HTTP-Kerberos-session-encrypted"
        [auth] = facts["http"]["requests"]
        assert (auth["method"], auth["content_type"]) == (
            "POST",
            "application/soap+xml;charset=UTF-8",
        )
        assert auth["body_length"] is None  # the Authorization token runs past 2048 bytes
        statuses = [(r["status"], r["body_length"]) for r in facts["http"]["responses"]]
        assert statuses[0] == (200, 0)  # the answer to the auth POST: a token, no body


@pytest.mark.corpus
def test_purplesharp_winrm_and_ldap(corpus: Path) -> None:
    flows = _flows(corpus / PURPLESHARP)
    winrm = _by_service(flows, "winrm-http")
    assert len(winrm) == 9
    assert {(f["plaintext"], f["facts"]["plaintext_reason"]) for f in winrm} == {
        (False, KERBEROS_ENCRYPTION)
    }
    ldap_flows = [f for f in _by_service(flows, "ldap") if f["proto"] == "tcp"]
    seen = sorted(
        (
            f["facts"]["ldap"]["sasl_protection"] or "",
            f["plaintext"],
            f["facts"]["plaintext_reason"],
        )
        for f in ldap_flows
    )
    assert seen == [
        ("", True, "LDAP messages in clear"),  # rootDSE searches; one bind cut by the window
        ("", True, "LDAP messages in clear"),
        ("", True, "LDAP messages in clear"),
        ("", True, "LDAP messages in clear"),
        ("sealed", False, SEALED_GSSAPI),
        ("signed", True, SIGNED),
        ("signed", True, SIGNED),
    ]
    # 18 before WinRM and LDAP were read: 9 WinRM and 1 sealed LDAP are not plaintext. Then
    # 4 DNS queries (clear by design) and 1 unauthenticated endpoint-mapper bind are.
    assert sum(flow["plaintext"] for flow in flows) == 13
    assert sorted(f["service"] for f in flows if f["plaintext"] and f["protocol"] != "ldap") == [
        "dns",
        "dns",
        "dns",
        "dns",
        "rpc-epm",
    ]


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("name", "payload_bytes", "protection", "plaintext", "reason"),
    [
        pytest.param(
            "zeek_ldap_aduser1.pcap",
            2048,
            "clear",
            True,
            "LDAP in clear after the SASL bind (no security layer)",
            id="gss-spnego-bind-then-plain-search",
        ),
        pytest.param(
            "zeek_ldap_vlan_ipv6.pcapng",
            2048,
            None,  # the bind request alone fills the window
            True,
            "LDAP messages in clear",
            id="integrity-only-past-the-window",
        ),
        pytest.param(
            "zeek_ldap_vlan_ipv6.pcapng",
            MAX_PAYLOAD_BYTES,
            "signed",
            True,
            SIGNED,
            id="integrity-only-in-a-wide-window",
        ),
        pytest.param(
            "zeek_ldap_gc3268_vlan.pcap", 2048, None, True, "LDAP messages in clear", id="simple"
        ),
        pytest.param("arkime_ldap_starttls_ipv6.pcap", 2048, None, False, "StartTLS", id="tls"),
    ],
)
def test_ldap_captures(
    corpus: Path,
    name: str,
    payload_bytes: int,
    protection: str | None,
    plaintext: bool,
    reason: str,
) -> None:
    [flow] = [f for f in _flows(corpus / name, payload_bytes) if f["protocol"] == "ldap"]
    assert flow["facts"]["ldap"]["sasl_protection"] == protection
    assert (flow["plaintext"], flow["facts"]["plaintext_reason"]) == (plaintext, reason)


@pytest.mark.corpus
def test_a_bind_seen_only_from_the_server_decides_nothing(corpus: Path) -> None:
    """nDPI's AD capture starts mid-connection: only the server's bindResponse is LDAP."""
    flows = [f for f in _flows(corpus / "ndpi_kerberos_ad.pcap") if f["protocol"] == "ldap"]
    assert len(flows) == 7
    for flow in flows:
        assert flow["facts"]["ldap"]["operations"] == ["bindResponse"]
        assert flow["facts"]["ldap"]["sasl_protection"] is None
        assert flow["plaintext"] is True


@pytest.mark.corpus
@pytest.mark.tshark
def test_one_verdict_per_winrm_session(corpus: Path, tshark: str, tmp_path: Path) -> None:
    """A connection whose window shows only the auth exchange (here: the server's later
    segments of one connection left out of the capture) is judged by the other connections
    between the same client and the server's port, which show ``multipart/encrypted``."""
    cut = tmp_path / "winrm_one_side_lost.pcap"
    lost = "tcp.srcport == 5985 && tcp.dstport == 57968 && tcp.seq > 341"
    subprocess.run(
        [tshark, "-r", str(corpus / WINRM), "-Y", f"!({lost})", "-w", str(cut), "-F", "pcap"],
        capture_output=True,
        check=False,
    )
    flows = {f["client_port"]: f for f in _by_service(_flows(cut), "winrm-http")}
    assert set(flows) == {57967, 57968, 57970}
    alone = flows[57968]["facts"]
    assert alone["http"]["session_encryption"] is None
    assert [r["status"] for r in alone["http"]["responses"]] == [200]
    assert _plaintext(True, "http", alone["http"]) == (
        True,
        "WinRM in clear (no session encryption seen)",
    )
    assert flows[57968]["plaintext"] is False
    assert "on other flows of this client and server port" in alone["plaintext_reason"]
    assert flows[57967]["facts"]["plaintext_reason"] == KERBEROS_ENCRYPTION


@pytest.mark.corpus
@pytest.mark.tshark
def test_winrm_streams_against_tshark(corpus: Path, tshark: str) -> None:
    """Every WinRM connection in which tshark sees a ``multipart/encrypted`` body and no SOAP
    body in clear is not plaintext to us."""
    checked = 0
    for path in oracle_files(corpus, "http"):
        rows = tshark_fields(
            tshark,
            path,
            "http && tcp.port == 5985",
            ["tcp.srcport", "tcp.dstport", "http.content_type", "http.content_length_header"],
        )
        seen: dict[int, set[str]] = defaultdict(set)
        for row in rows:
            ports = (int(row["tcp.srcport"][0]), int(row["tcp.dstport"][0]))
            client_port = ports[0] if ports[1] == 5985 else ports[1]
            for kind, length in zip(
                row.get("http.content_type", []),
                row.get("http.content_length_header", []),
                strict=False,
            ):
                encrypted = kind.lower().startswith("multipart/encrypted")
                seen[client_port].add("encrypted" if encrypted else f"clear:{int(length) > 0}")
        flows = {f["client_port"]: f for f in _flows(path) if f["server_port"] == 5985}
        for client_port, kinds in seen.items():
            if "encrypted" in kinds and "clear:True" not in kinds:
                assert flows[client_port]["plaintext"] is False, (path.name, client_port)
                checked += 1
    assert checked >= 12


def _tshark_protection(tshark: str, path: Path) -> dict[int, str | None]:
    """tcp.stream -> sealed / signed / clear / None as tshark shows what followed the bind."""
    fields = [
        "tcp.stream",
        "tcp.srcport",
        "ldap.sasl_buffer_length",
        "spnego.krb5.tok_id",
        "spnego.krb5.sealed",
        "spnego.krb5.seal_alg",
        "ldap.protocolOp",
        "ldap.authentication",
    ]
    layers: dict[int, list[bool]] = defaultdict(list)
    sasl_bind: set[int] = set()
    bind_seen: dict[tuple[int, str], bool] = {}
    clear_after: set[int] = set()
    streams: set[int] = set()
    for row in tshark_fields(tshark, path, "ldap && tcp", fields):
        stream = int(row["tcp.stream"][0])
        streams.add(stream)
        side = "s" if row["tcp.srcport"][0] in ("389", "3268") else "c"
        if row.get("ldap.sasl_buffer_length"):
            for tok_id, sealed in zip(
                row.get("spnego.krb5.tok_id", []), row.get("spnego.krb5.sealed", []), strict=False
            ):
                if tok_id == "0x0405":  # RFC 4121 TOK_ID 05 04 as tshark prints it
                    layers[stream].append(sealed in ("1", "True"))
            continue
        operations = {int(op) for op in row.get("ldap.protocolOp", [])}
        if "3" in row.get("ldap.authentication", []):
            sasl_bind.add(stream)
        if operations & {0, 1}:
            bind_seen[(stream, side)] = True
        elif operations and bind_seen.get((stream, side)):
            clear_after.add(stream)
    verdicts: dict[int, str | None] = {}
    for stream in streams:
        if layers[stream]:
            verdicts[stream] = "sealed" if all(layers[stream]) else "signed"
        elif stream in sasl_bind and stream in clear_after:
            verdicts[stream] = "clear"
        else:
            verdicts[stream] = None
    return verdicts


@pytest.mark.corpus
@pytest.mark.tshark
def test_sasl_protection_against_tshark(corpus: Path, tshark: str) -> None:
    """On whole streams, ``sasl_protection`` is what tshark's Kerberos wrap tokens say."""
    kinds: list[str | None] = []
    problems = []
    for path in oracle_files(corpus, "ldap_or_cldap"):
        flows = wide_payloads(tshark, path)
        for stream, theirs in _tshark_protection(tshark, path).items():
            facts = ldap.parse(flows[stream].c2s, flows[stream].s2c)
            ours = facts["sasl_protection"] if facts else "not recognised"
            kinds.append(ours)
            if ours != theirs:
                problems.append(f"{path.name} stream {stream}: ours {ours}, tshark {theirs}")
    assert not problems, problems
    assert {"sealed", "signed", "clear"} <= set(kinds)


# --- decisions on bytes built from the specs ------------------------------------------------

SOAP = b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/></s:Envelope>'
WSMAN = "application/soap+xml;charset=UTF-8"
ENCRYPTED = (
    'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";'
    'boundary="Encrypted Boundary"'
)


def _wsman(
    body: bytes = b"", auth: str | None = "Kerberos YIIGQAYJKoZIhvcSAQICAQBugg==", **extra: str
) -> bytes:
    headers = [("Connection", "Keep-Alive"), ("Content-Type", extra.get("type", WSMAN))]
    if auth:
        headers.append(("Authorization", auth))
    headers += [("Content-Length", str(len(body))), ("Host", "dc01:5985")]
    return http_request(extra.get("method", "POST"), "/wsman", headers, body)


def _encrypted_body() -> bytes:
    return (
        b"--Encrypted Boundary\r\n"
        b"\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=80\r\n"
        b"--Encrypted Boundary\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + bytes(range(96))
        + b"--Encrypted Boundary--\r\n"
    )


AUTH_OK = http_response(
    200, "", [("WWW-Authenticate", "Negotiate oYG3MIG0"), ("Content-Length", "0")]
)


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"),
    [
        pytest.param(
            _wsman() + _wsman(_encrypted_body(), auth=None, type=ENCRYPTED),
            AUTH_OK,
            (False, "WinRM SPNEGO session encryption (multipart/encrypted)"),
            id="auth-post-then-encrypted",
        ),
        pytest.param(
            _wsman(),
            AUTH_OK,
            (False, "WinRM Kerberos auth POST only (empty body): no payload in clear"),
            id="empty-kerberos-auth-post-alone",
        ),
        pytest.param(
            _wsman(auth="Negotiate TlRMTVNTUAABAAAAt4II4g=="),
            b"",
            (False, "WinRM Negotiate auth POST only (empty body): no payload in clear"),
            id="empty-negotiate-auth-post-alone",
        ),
        pytest.param(
            _wsman(SOAP, auth="Negotiate TlRMTVNTUAADAAAA"),
            AUTH_OK,
            (True, "WinRM body in clear"),
            id="soap-in-clear-with-credentials",
        ),
        pytest.param(
            _wsman() + _wsman(SOAP, auth=None),
            AUTH_OK,
            (True, "WinRM body in clear"),
            id="auth-post-then-soap-in-clear",
        ),
        pytest.param(
            _wsman()
            + _wsman(_encrypted_body(), auth=None, type=ENCRYPTED)
            + _wsman(SOAP, auth=None),
            AUTH_OK,
            (True, "WinRM body in clear"),
            id="any-clear-body-wins",
        ),
        pytest.param(
            _wsman(auth="Basic dXNlcjpwYXNz"),
            b"",
            (True, "WinRM in clear (no session encryption seen)"),
            id="basic-credentials-are-clear",
        ),
        pytest.param(
            _wsman(method="GET"),
            b"",
            (True, "WinRM in clear (no session encryption seen)"),
            id="get-is-no-auth-post",
        ),
        pytest.param(
            b"POST /wsman HTTP/1.1\r\nAuthorization: Kerberos YIIGQAYJKoZIhvcSAQICAQBugg",
            b"",
            (True, "WinRM in clear (no session encryption seen)"),
            id="auth-post-cut-in-its-token-decides-nothing-alone",
        ),
        pytest.param(
            http_request("GET", "/SMS_MP/.sms_aut?MPLIST", [("Authorization", "Negotiate YII=")]),
            http_response(200, "OK", [("Content-Type", "text/xml")], b"<MPList/>"),
            (True, "HTTP body in clear"),
            id="configmgr-get-with-negotiate",
        ),
        pytest.param(
            b"",
            http_response(200, "", [("Content-Type", ENCRYPTED)], _encrypted_body()),
            (False, "HTTP SPNEGO session encryption (multipart/encrypted)"),
            id="encrypted-answer-alone",
        ),
    ],
)
def test_http_plaintext_decisions(c2s: bytes, s2c: bytes, expected: tuple[bool, str]) -> None:
    facts = http.parse(c2s, s2c)
    assert facts is not None
    assert _plaintext(True, "http", facts) == expected


def test_http_records_each_request_and_response() -> None:
    facts = http.parse(
        _wsman() + _wsman(_encrypted_body(), auth=None, type=ENCRYPTED),
        AUTH_OK + http_response(200, "", [("Content-Type", ENCRYPTED)], _encrypted_body()),
    )
    assert facts is not None
    assert [(r["content_type"], r["body_length"]) for r in facts["requests"]] == [
        (WSMAN, 0),
        (ENCRYPTED, len(_encrypted_body())),
    ]
    assert [(r["status"], r["content_type"], r["body_length"]) for r in facts["responses"]] == [
        (200, None, 0),
        (200, ENCRYPTED, len(_encrypted_body())),
    ]
    assert facts["session_encryption"] == "application/HTTP-SPNEGO-session-encrypted"
    assert facts["content_type"] == WSMAN  # the first request's, as before


def test_responses_are_bounded_and_framed() -> None:
    one = http_response(200, "OK", [("Content-Length", "3")], b"abc")
    facts = http.parse(b"", one * 20 + b"HTTP/1.1 204 No Content\r\n\r\n")
    assert facts is not None and len(facts["responses"]) == 16
    head = http.parse(
        http_request("HEAD", "/a") + http_request("GET", "/b"),
        http_response(200, "OK", [("Content-Length", "500")])
        + http_response(200, "OK", [("Content-Length", "2")], b"ok"),
    )
    assert head is not None
    assert [r["body_length"] for r in head["responses"]] == [0, 2]  # RFC 9110 9.3.2: HEAD


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"sasl_protection": "sealed", "sasl_token": "kerberos"}, (False, SEALED_GSSAPI)),
        (
            {"sasl_protection": "sealed", "sasl_token": "ntlm"},
            (False, "LDAP SASL sealed (NTLMSSP-signed buffers with encrypted contents)"),
        ),
        ({"sasl_protection": "signed", "sasl_token": "kerberos"}, (True, SIGNED)),
        ({"sasl_protection": None, "starttls": True}, (False, "StartTLS")),
        ({"sasl_protection": None}, (True, "LDAP messages in clear")),
    ],
)
def test_ldap_plaintext_decisions(facts: dict[str, Any], expected: tuple[bool, str]) -> None:
    assert _plaintext(True, "ldap", facts) == expected


def test_sealed_ldap_session_through_the_flow_table(tmp_path: Path) -> None:
    search = pb.search_request(2, "DC=corp,DC=example")
    exchange = [
        ("c", pb.sasl_bind_request(1, "GSS-SPNEGO", b"\x60\x03\x06\x01\x00")),
        ("s", pb.bind_response(1)),
        ("c", pb.sasl_buffer(sasl.rfc1964_wrap(search, sealed=True))),
    ]
    path = write_capture(
        tmp_path / "ldap.pcap", tcp_session("10.0.1.20", "10.0.0.5", 50100, 389, exchange)
    )
    classified = classify(build_flow_table([path], FlowConfig()))
    assert classified.plaintext == [False]
    assert classified.facts[0]["plaintext_reason"] == (
        "LDAP SASL sealed (Kerberos RFC 1964 wrap tokens with a sealing algorithm)"
    )
    c2s, s2c = directions(exchange)
    assert ldap.parse(c2s, s2c) == classified.facts[0]["ldap"]


def test_session_pass_spares_flows_with_a_clear_body_and_other_pairs(tmp_path: Path) -> None:
    """Same client and server port: encrypted, auth-only-cut, clear SOAP; another client's
    cut auth POST is not judged by this pair."""
    long_auth = "Kerberos " + "A" * 3000  # the window ends inside the token
    cut_auth = _wsman(auth=long_auth)
    packets = [
        *tcp_session(
            "10.0.1.5",
            "10.0.0.6",
            50001,
            5985,
            [
                ("c", _wsman()),
                ("s", AUTH_OK),
                ("c", _wsman(_encrypted_body(), auth=None, type=ENCRYPTED)),
            ],
        ),
        *tcp_session("10.0.1.5", "10.0.0.6", 50002, 5985, [("c", cut_auth), ("s", AUTH_OK)]),
        *tcp_session("10.0.1.5", "10.0.0.6", 50003, 5985, [("c", _wsman(SOAP))]),
        *tcp_session("10.0.1.9", "10.0.0.6", 50004, 5985, [("c", cut_auth), ("s", AUTH_OK)]),
    ]
    path = write_capture(tmp_path / "winrm.pcap", packets)
    table = build_flow_table([path], FlowConfig())
    classified = classify(table)
    ports = table.columns["client_port"].tolist()
    verdicts = {
        port: (plain, facts.get("plaintext_reason", ""))
        for port, plain, facts in zip(ports, classified.plaintext, classified.facts, strict=True)
    }
    assert verdicts[50001] == (False, "WinRM SPNEGO session encryption (multipart/encrypted)")
    assert verdicts[50002][0] is False
    assert verdicts[50002][1].startswith("WinRM SPNEGO session encryption (multipart/encrypted) on")
    assert verdicts[50003] == (True, "WinRM body in clear")
    assert verdicts[50004] == (True, "WinRM in clear (no session encryption seen)")


# --- DCE/RPC -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param(
            {"interfaces": [{"name": "epm"}], "auth_type": None, "auth_level": None},
            (True, "RPC bind without authentication (calls in clear)"),
            id="unauthenticated-bind",
        ),
        pytest.param(
            {"interfaces": [{"name": "drsuapi"}], "auth_type": "spnego", "auth_level": "privacy"},
            (False, "RPC packet privacy (spnego)"),
            id="privacy",
        ),
        pytest.param(
            {"interfaces": [{"name": "samr"}], "auth_type": "ntlmssp", "auth_level": "integrity"},
            (True, "RPC authentication level integrity (calls in clear, at most signed)"),
            id="integrity",
        ),
        pytest.param(
            {"interfaces": [], "auth_type": None, "auth_level": None},
            (False, None),
            id="no-bind-seen-keeps-the-default",
        ),
    ],
)
def test_dcerpc_plaintext_decisions(facts: dict[str, Any], expected: tuple[bool, str]) -> None:
    assert _plaintext(False, "dcerpc", facts) == expected


def test_dcerpc_plaintext_against_tshark(tshark: str) -> None:
    """Real Samba and impacket (the lab's AD scenario): tshark's auth level per TCP stream is
    the oracle. No auth verifier in a stream: the calls are in clear; level 6 (privacy) only:
    sealed."""
    levels: dict[frozenset[tuple[str, int]], set[str]] = defaultdict(set)
    fields = ("ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "dcerpc.auth_level")
    for frame in tshark_fields(tshark, LAB_AD, "dcerpc && !smb2", fields):
        key = frozenset(
            {
                (frame["ip.src"][0], int(frame["tcp.srcport"][0])),
                (frame["ip.dst"][0], int(frame["tcp.dstport"][0])),
            }
        )
        levels[key].update(level for level in frame["dcerpc.auth_level"] if level)
    flows = [flow for flow in _flows(LAB_AD) if flow["protocol"] == "dcerpc"]
    assert {flow["server_port"] for flow in flows} >= {135, 49153}

    def key(flow: dict[str, Any]) -> frozenset[tuple[str, int]]:
        return frozenset(
            {(flow["client"], flow["client_port"]), (flow["server"], flow["server_port"])}
        )

    assert {key(flow) for flow in flows} == set(levels)
    for flow in flows:
        seen = levels[key(flow)]
        assert flow["plaintext"] is (seen != {"6"}), (flow["id"], seen)
        reason = flow["facts"]["plaintext_reason"]
        assert ("without authentication" in reason) is (not seen), (reason, seen)


@pytest.mark.corpus
def test_ldap_cleartext_bind_on_every_simple_bind_with_a_password(
    corpus: Path, tshark: str
) -> None:
    """tshark is the oracle: every TCP conversation of the corpus and of the lab's AD recording
    (OpenLDAP's ldapsearch against Samba: simple binds on 389 and 3268, one after StartTLS)
    that carries an LDAP simple bind with a non-empty password outside TLS is an
    ``ldap-cleartext-bind`` finding (HIGH), and no other flow is."""
    expected: set[tuple[str, frozenset[tuple[str, int]]]] = set()
    found: set[tuple[str, frozenset[tuple[str, int]]]] = set()
    fields = ("ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport")
    for path in (*corpus_files(), LAB_AD):
        for frame in tshark_fields(tshark, path, 'ldap.simple != "" && !tls', fields):
            src = (frame["ip.src"] or frame["ipv6.src"])[0]
            dst = (frame["ip.dst"] or frame["ipv6.dst"])[0]
            ends = {(src, int(frame["tcp.srcport"][0])), (dst, int(frame["tcp.dstport"][0]))}
            expected.add((path.name, frozenset(ends)))
        result = audit(build_flow_table([path]))
        by_id = {flow["id"]: flow for flow in result.flows}
        for finding in result.findings:
            if finding.rule != "ldap-cleartext-bind":
                continue
            assert finding.severity == "high"
            for flow in (by_id[i] for i in finding.flow_ids):
                ends = {
                    (flow["client"], flow["client_port"]),
                    (flow["server"], flow["server_port"]),
                }
                found.add((path.name, frozenset(ends)))
    assert {name for name, _ in expected} == {"zeek_ldap_gc3268_vlan.pcap", "ad.pcap"}
    assert found == expected
