"""Real HTTP/1.1 bytes for tests: request and response messages (RFC 9112).

Headers are given in order as (name, value) pairs, exactly as sent; ``Content-Length`` is added
for a body unless the caller frames the body itself (``chunked``).
"""

from __future__ import annotations

from collections.abc import Sequence

Headers = Sequence[tuple[str, str]]


def _head(start_line: str, headers: Headers, body: bytes, chunked: bool) -> bytes:
    lines = [start_line, *(f"{name}: {value}" for name, value in headers)]
    names = {name.lower() for name, _ in headers}
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif body and "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body: bytes, size: int = 16) -> bytes:
    """``body`` in chunks of ``size`` bytes, then the last chunk (RFC 9112 7.1)."""
    out = b""
    for at in range(0, len(body), size):
        piece = body[at : at + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def http_request(
    method: str = "GET",
    path: str = "/",
    headers: Headers = (("Host", "server"),),
    body: bytes = b"",
    *,
    version: str = "HTTP/1.1",
    chunk: bool = False,
) -> bytes:
    """request-line, header fields, empty line, body (RFC 9112 3, 6)."""
    payload = chunked(body) if chunk else body
    return _head(f"{method} {path} {version}", headers, body, chunk) + payload


def http_response(
    status: int = 200,
    reason: str = "OK",
    headers: Headers = (("Server", "Microsoft-IIS/10.0"),),
    body: bytes = b"",
    *,
    version: str = "HTTP/1.1",
) -> bytes:
    """status-line, header fields, empty line, body (RFC 9112 4)."""
    return _head(f"{version} {status} {reason}", headers, body, False) + body


# What ConfigMgr clients send (the ccmsetup/CcmExec agent and the Messaging SDK).
CCM_USER_AGENT = "ccmhttp"
SDK_USER_AGENT = "ConfigMgr Messaging HTTP Sender"
BITS_USER_AGENT = "Microsoft BITS/7.8"


def ccm_post(
    host: str = "mp01.corp.example",
    path: str = "/ccm_system/request",
    user_agent: str = CCM_USER_AGENT,
    body: bytes = b"<Msg/>",
) -> bytes:
    """A CCM_POST of the client agent to a management point (multipart message body)."""
    return http_request(
        "CCM_POST",
        path,
        [
            ("Host", host),
            ("User-Agent", user_agent),
            ("Content-Type", 'multipart/mixed; boundary="aAbBcCdDv1234567890VxXyYzZ"'),
            ("Connection", "Keep-Alive"),
        ],
        body,
    )


def bits_post_create_session(
    host: str = "dp01.corp.example", path: str = "/CCM_Incoming/{1234}"
) -> bytes:
    """BITS upload: BITS_POST with BITS-Packet-Type Create-Session (BITS upload protocol)."""
    return http_request(
        "BITS_POST",
        path,
        [
            ("Host", host),
            ("User-Agent", BITS_USER_AGENT),
            ("BITS-Packet-Type", "Create-Session"),
            ("BITS-Supported-Protocols", "{7df0354d-249b-430f-820d-3d2a9bef4931}"),
            ("Content-Length", "0"),
        ],
    )
