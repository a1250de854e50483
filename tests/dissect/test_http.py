"""HTTP dissector: request lines with any method, headers, status line; bytes, captures, corpus."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import http
from tests.dissect.common import check_json_ready
from tests.dissect.tshark_streams import (
    StreamPayload,
    first,
    oracle_files,
    stream_payloads,
    tshark_fields,
    wide_payloads,
)
from tests.protobytes.http import (
    SDK_USER_AGENT,
    bits_post_create_session,
    ccm_post,
    http_request,
    http_response,
)
from tests.protobytes.tls import tls_client_hello
from tests.scapy_flows import payloads_of, tcp_session, write_capture

MULTIPART = 'multipart/mixed; boundary="aAbBcCdDv1234567890VxXyYzZ"'
WSMAN_TYPE = "application/soap+xml;charset=UTF-8"
IIS = http_response(200, "OK", [("Server", "Microsoft-IIS/10.0"), ("Content-Length", "0")])


def _facts(**expected: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "method": None,
        "path": None,
        "version": None,
        "host": None,
        "user_agent": None,
        "content_type": None,
        "auth_scheme": None,
        "status": None,
        "reason": None,
        "server": None,
        "requests": [],
        "responses": [],
        "session_encryption": None,
    }
    facts.update(expected)
    return facts


def _req(
    method: str, path: str, content_type: str | None = None, body_length: int | None = 0
) -> dict[str, Any]:
    """One entry of ``requests``: a request without a body unless told otherwise."""
    return {
        "method": method,
        "path": path,
        "content_type": content_type,
        "body_length": body_length,
    }


def _resp(status: int, body_length: int | None, content_type: str | None = None) -> dict[str, Any]:
    return {"status": status, "content_type": content_type, "body_length": body_length}


def _request_facts(method: str, path: str, **expected: Any) -> dict[str, Any]:
    body = expected.pop("body_length", 0)
    return _facts(
        method=method,
        path=path,
        version="HTTP/1.1",
        requests=expected.pop("requests", [_req(method, path, expected.get("content_type"), body)]),
        **expected,
    )


KEEP_ALIVE = (
    http_request("GET", "/SMS_MP/.sms_aut?MPLIST", [("Host", "mp01")])
    + http_request("CCM_POST", "/ccm_system/request", [("Host", "mp01")], b"x" * 300)
    + http_request(
        "CCM_POST", "/ccm_system_windowsauth/request", [("host", "mp01")], b"abc", chunk=True
    )
    + http_request("GET", "/SMS_MP/.sms_pol?{1234}", [("Host", "mp01")])
)

# (case, c2s, s2c, the whole facts expected)
CASES: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = [
    (
        "ccm-post-management-point",
        ccm_post(),
        IIS,
        _request_facts(
            "CCM_POST",
            "/ccm_system/request",
            host="mp01.corp.example",
            user_agent="ccmhttp",
            content_type=MULTIPART,
            body_length=6,
            status=200,
            reason="OK",
            server="Microsoft-IIS/10.0",
            responses=[_resp(200, 0)],
        ),
    ),
    (
        "bits-post-create-session",
        bits_post_create_session(),
        b"",
        _request_facts(
            "BITS_POST",
            "/CCM_Incoming/{1234}",
            host="dp01.corp.example",
            user_agent="Microsoft BITS/7.8",
        ),
    ),
    (
        "sdk-user-agent",
        ccm_post(user_agent=SDK_USER_AGENT),
        b"",
        _request_facts(
            "CCM_POST",
            "/ccm_system/request",
            host="mp01.corp.example",
            user_agent=SDK_USER_AGENT,
            content_type=MULTIPART,
            body_length=6,
        ),
    ),
    (
        "winrm-post-wsman-negotiate",
        http_request(
            "POST",
            "/wsman",
            [
                ("Connection", "Keep-Alive"),
                ("Content-Type", WSMAN_TYPE),
                (
                    "Authorization",
                    "Negotiate TlRMTVNTUAABAAAAt4II4gAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw==",
                ),
                ("User-Agent", "Microsoft WinRM Client"),
                ("Content-Length", "0"),
                ("Host", "sql01:5985"),
            ],
        ),
        http_response(
            401, "", [("WWW-Authenticate", "Negotiate"), ("Server", "Microsoft-HTTPAPI/2.0")]
        ),
        _request_facts(
            "POST",
            "/wsman",
            host="sql01:5985",
            user_agent="Microsoft WinRM Client",
            content_type=WSMAN_TYPE,
            auth_scheme="Negotiate",
            status=401,
            reason="",
            server="Microsoft-HTTPAPI/2.0",
            responses=[_resp(401, None)],  # no Content-Length: the body runs to the close
        ),
    ),
    (
        "propfind-and-rpc-in-data-methods",
        http_request("PROPFIND", "/SMS_DP_SMSPKG$/PS100001", [("Host", "dp01"), ("Depth", "1")])
        + http_request("RPC_IN_DATA", "/rpc/rpcproxy.dll?exch01:6001", [("Host", "mail")]),
        b"",
        _request_facts(
            "PROPFIND",
            "/SMS_DP_SMSPKG$/PS100001",
            host="dp01",
            requests=[
                _req("PROPFIND", "/SMS_DP_SMSPKG$/PS100001"),
                _req("RPC_IN_DATA", "/rpc/rpcproxy.dll?exch01:6001"),
            ],
        ),
    ),
    (
        "keep-alive-content-length-and-chunked",
        KEEP_ALIVE,
        b"",
        _request_facts(
            "GET",
            "/SMS_MP/.sms_aut?MPLIST",
            host="mp01",
            requests=[
                _req("GET", "/SMS_MP/.sms_aut?MPLIST"),
                _req("CCM_POST", "/ccm_system/request", body_length=300),
                _req("CCM_POST", "/ccm_system_windowsauth/request", body_length=3),  # chunked
                _req("GET", "/SMS_MP/.sms_pol?{1234}"),
            ],
        ),
    ),
    (
        "header-names-case-insensitive-first-wins",
        b"GET /a HTTP/1.1\r\nHOST: one\r\nuser-AGENT: agent\r\nHost: two\r\n\r\n",
        b"",
        _request_facts("GET", "/a", host="one", user_agent="agent"),
    ),
    (
        "headers-from-the-first-request-that-has-them",
        http_request("GET", "/a", [("Host", "h")])
        + http_request("POST", "/b", [("User-Agent", "u"), ("Content-Length", "0")]),
        b"",
        _request_facts(
            "GET",
            "/a",
            host="h",
            user_agent="u",
            requests=[_req("GET", "/a"), _req("POST", "/b")],
        ),
    ),
    (
        "bare-lf-leading-crlf-http10",
        b"\r\nGET /x HTTP/1.0\nHost: old\n\n",
        b"HTTP/1.0 404 Not Found\nServer: tiny\n\n",
        _facts(
            method="GET",
            path="/x",
            version="HTTP/1.0",
            host="old",
            status=404,
            reason="Not Found",
            server="tiny",
            requests=[_req("GET", "/x")],
            responses=[_resp(404, None)],
        ),
    ),
    (
        "kerberos-token-cut-by-the-window",
        b"POST /wsman HTTP/1.1\r\nAuthorization: Kerberos YIIGQAYJKoZIhvcSAQICAQBugg",
        b"",
        _request_facts("POST", "/wsman", auth_scheme="Kerberos", body_length=None),
    ),
    (
        "header-value-cut-is-not-kept",
        b"GET / HTTP/1.1\r\nHost: mp0",
        b"",
        _request_facts("GET", "/", body_length=None),
    ),
    (
        "response-only",
        b"",
        http_response(503, "Service Unavailable", [("Server", "Microsoft-HTTPAPI/2.0")]),
        _facts(
            version="HTTP/1.1",
            status=503,
            reason="Service Unavailable",
            server="Microsoft-HTTPAPI/2.0",
            responses=[_resp(503, None)],
        ),
    ),
    (
        "connect-authority-form",
        b"CONNECT wsus.example:8531 HTTP/1.1\r\nHost: wsus.example:8531\r\n\r\n",
        b"",
        _request_facts("CONNECT", "wsus.example:8531", host="wsus.example:8531"),
    ),
    ("tls-is-not-http", tls_client_hello("mp01"), b"", None),
    ("ssh-banner", b"SSH-2.0-OpenSSH_9.6\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", None),
    ("smtp", b"EHLO client.example\r\n", b"220 mail ESMTP\r\n", None),
    ("rtsp-is-not-http", b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n", b"", None),
    ("no-version", b"GET /index.html\r\n", b"", None),
    ("space-in-method", b"G ET / HTTP/1.1\r\n\r\n", b"", None),
    ("binary", bytes(range(256)), bytes(range(255, -1, -1)), None),
    ("status-line-without-code", b"", b"HTTP/1.1 OK\r\n\r\n", None),
]


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cases(c2s: bytes, s2c: bytes, expected: dict[str, Any] | None) -> None:
    assert http.parse(c2s, s2c) == expected


def test_at_most_16_requests_and_256_characters() -> None:
    long_path = "/SMS_DP_SMSPKG$/" + "a" * 400
    c2s = b"".join(http_request("GET", long_path, [("Host", "dp")]) for _ in range(20))
    facts = http.parse(c2s, b"")
    assert facts is not None
    assert len(facts["requests"]) == 16
    assert facts["path"] == long_path[:256]
    assert facts["requests"][15] == _req("GET", long_path[:256])


def test_body_past_the_window_ends_the_request_list() -> None:
    c2s = http_request("CCM_POST", "/ccm_system/request", [("Content-Length", "5000")])
    c2s += http_request("GET", "/after")
    facts = http.parse(c2s, b"")
    assert facts is not None
    assert facts["requests"] == [_req("CCM_POST", "/ccm_system/request", body_length=5000)]


# --- tiny captures through the flow table ------------------------------------------------------


@pytest.mark.parametrize(
    ("server_port", "request_bytes", "method", "path"),
    [
        (80, ccm_post(), "CCM_POST", "/ccm_system/request"),
        (80, bits_post_create_session(), "BITS_POST", "/CCM_Incoming/{1234}"),
        # Plaintext HTTP on 443: the payload, not the port, says HTTP.
        (
            443,
            ccm_post(path="/ccm_system_windowsauth/request"),
            "CCM_POST",
            "/ccm_system_windowsauth/request",
        ),
        (5985, http_request("POST", "/wsman", [("Host", "sql01:5985")]), "POST", "/wsman"),
    ],
)
def test_tiny_capture(
    tmp_path: Path, server_port: int, request_bytes: bytes, method: str, path: str
) -> None:
    packets = tcp_session(
        "10.1.1.20", "10.1.0.12", 50200, server_port, [("c", request_bytes), ("s", IIS)]
    )
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "http.pcap", packets))
    assert transport == "tcp"
    facts = http.parse(c2s, s2c)
    assert facts is not None
    assert (facts["method"], facts["path"], facts["status"]) == (method, path, 200)


@pytest.mark.tshark
def test_tshark_reads_our_bytes_as_we_mean_them(tmp_path: Path, tshark: str) -> None:
    packets = tcp_session("10.1.1.20", "10.1.0.12", 50201, 80, [("c", ccm_post()), ("s", IIS)])
    path = write_capture(tmp_path / "http.pcap", packets)
    fields = ["http.request.method", "http.request.uri", "http.host", "http.user_agent"]
    [row] = tshark_fields(tshark, path, "http.request", fields)
    assert row == {
        "http.request.method": ["CCM_POST"],
        "http.request.uri": ["/ccm_system/request"],
        "http.host": ["mp01.corp.example"],
        "http.user_agent": ["ccmhttp"],
    }


# --- never raise ------------------------------------------------------------------------------


def test_every_truncation_and_random_bytes_never_raise() -> None:
    messages = [KEEP_ALIVE, ccm_post(), IIS, CASES[3][1], CASES[3][2]]
    for message in messages:
        for cut in range(len(message) + 1):
            check_json_ready(http.parse(message[:cut], b""))
            check_json_ready(http.parse(b"", message[:cut]))
    generator = random.Random(5)
    alphabet = b"GET /HTP1.\r\n:0123456789abcdef chunked Content-Length Transfer-Encoding"
    for _ in range(3000):
        size = generator.randrange(0, 400)
        if generator.random() < 0.5:
            noise = bytes(generator.getrandbits(8) for _ in range(size))
        else:
            noise = bytes(generator.choice(alphabet) for _ in range(size))
        check_json_ready(http.parse(b"GET / HTTP/1.1\r\n" + noise, b"HTTP/1.1 200 OK\r\n" + noise))
        check_json_ready(http.parse(noise, noise))


# --- the real corpus against tshark ------------------------------------------------------------

AGREE = "agree"
CUT_BY_WINDOW = "differ only by the 2048-byte window (agree on a 256 KiB window)"


def _tshark_expectations(
    tshark: str, path: Path, flows: dict[int, StreamPayload]
) -> dict[int, dict[str, Any]]:
    """tcp.stream -> what tshark shows: its first request's fields, all requests, first response."""
    expected: dict[int, dict[str, Any]] = {}
    request_fields = [
        "tcp.stream",
        "tcp.srcport",
        "http.request.method",
        "http.request.uri",
        "http.request.version",
        "http.host",
        "http.user_agent",
    ]
    for row in tshark_fields(tshark, path, "http.request", request_fields):
        stream = int(row["tcp.stream"][0])
        flow = flows[stream]
        assert int(row["tcp.srcport"][0]) == flow.client_port, "request from the server side"
        requests = [
            {"method": method, "path": uri[:256]}
            for method, uri in zip(row["http.request.method"], row["http.request.uri"], strict=True)
        ]
        if stream not in expected:
            expected[stream] = {
                "method": requests[0]["method"],
                "path": requests[0]["path"],
                "version": row["http.request.version"][0],
                "host": first(row, "http.host"),
                "user_agent": first(row, "http.user_agent"),
                "requests": [],
            }
        expected[stream]["requests"] += requests
    response_fields = ["tcp.stream", "http.response.code", "http.server"]
    for row in tshark_fields(tshark, path, "http.response", response_fields):
        stream = int(row["tcp.stream"][0])
        facts = expected.setdefault(stream, {})
        if "status" not in facts:
            facts["status"] = int(row["http.response.code"][0])
            facts["server"] = first(row, "http.server")
    return expected


def _differences(facts: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    """Differences; our request list (cut by the window) need only open tshark's."""
    if facts is None:
        return ["not recognised"]
    found = []
    for key, value in expected.items():
        if key == "requests":
            ours = [{"method": r["method"], "path": r["path"]} for r in facts["requests"]]
            if not ours or ours != value[: len(ours)]:
                found.append(f"requests: ours {ours}, tshark {value}")
        elif facts[key] != value:
            found.append(f"{key}: ours {facts[key]!r}, tshark {value!r}")
    return found


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """Every stream tshark dissects as HTTP, against the fields tshark shows for it.

    By design: facts that lie past the 2048-byte window differ (a WinRM request's Kerberos
    Authorization token pushes Host and User-Agent out of it); each such difference must
    vanish on the widest window, or the test fails.
    """
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    files = oracle_files(corpus, "http")
    assert files, "ORACLE.tsv names no capture with HTTP"
    for path in files:
        flows = stream_payloads(tshark, path)
        wide: dict[int, StreamPayload] | None = None
        for stream, expected in sorted(_tshark_expectations(tshark, path, flows).items()):
            flow = flows[stream]
            facts = http.parse(flow.c2s, flow.s2c)
            outcome = AGREE
            if _differences(facts, expected):
                wide = wide or wide_payloads(tshark, path)
                if _differences(http.parse(wide[stream].c2s, wide[stream].s2c), expected):
                    problems.append(f"{path.name} stream {stream}: {_differences(facts, expected)}")
                    continue
                outcome = CUT_BY_WINDOW
            outcomes[outcome] += 1
    print(f"HTTP streams vs tshark: {dict(outcomes)}")
    assert not problems, problems
    assert outcomes[AGREE] >= 6
