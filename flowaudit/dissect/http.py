"""HTTP/1.x: the request lines and headers a client sent, and the server's status line.

Any method token is a method (RFC 9110 9.1, 5.6.2 tchar): ConfigMgr's ``CCM_POST``, BITS'
``BITS_POST``, WebDAV's ``PROPFIND`` and RPC over HTTP's ``RPC_IN_DATA`` as well as ``GET``.
Requests that follow each other on a keep-alive connection are found by framing each message
(RFC 9112 6.3: Content-Length or chunked; a request with neither has no body), up to the end
of the payload window. WinRM (``POST /wsman``) is plain HTTP here; its port tells it apart.

Each request and each response in the window is listed with its Content-Type and body length
(``requests``, ``responses``; at most 16 each), so that a reader can tell a body that travelled
in clear from one sent ``multipart/encrypted`` (WinRM's SPNEGO, Kerberos or CredSSP session
encryption, MS-WSMV 2.2.9.1) and from an empty authentication POST; ``session_encryption`` is
the ``protocol`` parameter of the first ``multipart/encrypted`` body seen (e.g.
``application/HTTP-Kerberos-session-encrypted``).
"""

from __future__ import annotations

import re
from typing import Any

PROTOCOL = "http"
TRANSPORTS = ("tcp",)

MAX_TEXT = 256
MAX_REQUESTS = 16
MAX_HEADERS = 100
MAX_LENGTH_DIGITS = 18  # a Content-Length past any payload window, and int() stays cheap

# RFC 9110 5.6.2: tchar; a method is a token (9.1). The request-target is any visible text up
# to the space before the version (RFC 9112 3.2); a bare LF ends a line too (RFC 9112 2.2).
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_METHOD_FIRST = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_REQUEST_LINE = re.compile(
    rb"([" + _TCHAR + rb"]{1,64}) ([\x21-\x7e\x80-\xff]{1,8000}) (HTTP/[0-9]\.[0-9])\r?\n"
)
_STATUS_LINE = re.compile(rb"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: ([^\r\n]*))?\r?\n")
_HEADER_LINE = re.compile(rb"([" + _TCHAR + rb"]{1,128}):([^\r\n]*)\r?\n")
_CUT_HEADER_LINE = re.compile(rb"([" + _TCHAR + rb"]{1,128}):([^\r\n]*)\Z")
_LINE_END = re.compile(rb"\r?\n")
_CUT = "cut:"  # prefix of a field line cut by the end of the bytes
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[^\r\n]*\r?\n")  # chunk-size [ chunk-ext ]
# RFC 1847 2.2 / MS-WSMV 2.2.9.1: multipart/encrypted; protocol="..."; boundary="..."
ENCRYPTED_TYPES = ("multipart/encrypted", "application/http-spnego")
_PROTOCOL_PARAMETER = re.compile(r';\s*protocol\s*=\s*"?([^";]*)', re.IGNORECASE)

# The request headers kept, by their lower-case name (field names are case-insensitive,
# RFC 9110 5.1), and the facts they fill.
_REQUEST_HEADERS = {
    "host": "host",
    "user-agent": "user_agent",
    "content-type": "content_type",
    "authorization": "auth_scheme",
}

Facts = dict[str, Any]


def text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")[:MAX_TEXT]


def _headers(data: bytes, pos: int) -> tuple[dict[str, bytes], int | None]:
    """Header fields from ``pos`` (first occurrence of each name) and where the body starts.

    The body start is None when the header section does not end within the bytes. A field
    line cut by the end of the bytes is kept under its name with the prefix ``_CUT``: only its
    first token can be trusted (an Authorization header's Kerberos token often runs past the
    payload window, its scheme does not).
    """
    fields: dict[str, bytes] = {}
    for _ in range(MAX_HEADERS):
        end = _LINE_END.match(data, pos)
        if end:
            return fields, end.end()
        line = _HEADER_LINE.match(data, pos)
        if line is None:
            cut = _CUT_HEADER_LINE.match(data, pos)
            if cut:
                name = _CUT + cut.group(1).decode("ascii").lower()
                fields.setdefault(name, cut.group(2).strip(b" \t"))
            return fields, None  # cut short, or not a header line: the section ends unread
        # RFC 9112 5: field-value without the optional whitespace around it.
        fields.setdefault(line.group(1).decode("ascii").lower(), line.group(2).strip(b" \t"))
        pos = line.end()
    return fields, None


def _content_length(fields: dict[str, bytes]) -> int | None:
    raw_length = fields.get("content-length", b"").strip()
    if not raw_length.isdigit() or len(raw_length) > MAX_LENGTH_DIGITS:
        return None
    return int(raw_length)


def _chunked(data: bytes, pos: int) -> tuple[int | None, int | None]:
    """(body length, end) of a chunked body (RFC 9112 7.1); (None, None) when cut."""
    total = 0
    for _ in range(10_000):
        size = _CHUNK_SIZE.match(data, pos)
        if size is None:
            return None, None
        length = int(size.group(1), 16)
        pos = size.end()
        if length == 0:  # last-chunk, then the trailer section (RFC 9112 7.1.2)
            _, end = _headers(data, pos)
            return (total, end) if end is not None else (None, None)
        total += length
        pos += length
        line_end = _LINE_END.match(data, pos)
        if line_end is None:
            return None, None
        pos = line_end.end()
    return None, None


def _body(
    data: bytes, body: int | None, fields: dict[str, bytes], *, response: bool, bodiless: bool
) -> tuple[int | None, int | None]:
    """A message's body length and where the message ends (RFC 9112 6.3).

    ``body`` is where the header section ended (None: cut by the end of the bytes). The length
    is None when unknown (a cut header section without a whole Content-Length line, a chunked
    body cut short, a response read until the connection closes); the end is None when it lies
    past the bytes or is unknown.
    """
    chunked = b"chunked" in fields.get("transfer-encoding", b"").lower()
    if body is None:
        return (None if chunked else _content_length(fields)), None
    if bodiless:
        return 0, body
    if chunked:
        return _chunked(data, body)
    if "transfer-encoding" in fields or "content-length" not in fields:
        # RFC 9112 6.3: a request with neither has no body; a response runs to the close.
        return (None, None) if response or "transfer-encoding" in fields else (0, body)
    length = _content_length(fields)
    if length is None:
        return None, None
    end = body + length
    return length, (end if end <= len(data) else None)


def _note_encryption(facts: Facts, content_type: str | None) -> None:
    if facts["session_encryption"] is not None or content_type is None:
        return
    if content_type.lower().startswith(ENCRYPTED_TYPES):
        parameter = _PROTOCOL_PARAMETER.search(content_type)
        facts["session_encryption"] = parameter.group(1).strip() if parameter else content_type


def _requests(c2s: bytes, facts: Facts) -> None:
    """Every request line in ``c2s`` one after the other, and the first request's facts."""
    pos = 0
    while len(facts["requests"]) < MAX_REQUESTS:
        while c2s.startswith(b"\r\n", pos):  # RFC 9112 2.2: empty lines before a request
            pos += 2
        line = _REQUEST_LINE.match(c2s, pos)
        if line is None:
            return
        method, target = text(line.group(1)), text(line.group(2))
        if facts["method"] is None:
            facts["method"], facts["path"] = method, target
            facts["version"] = text(line.group(3))
        fields, body = _headers(c2s, line.end())
        content_type = text(fields["content-type"]) if "content-type" in fields else None
        length, next_request = _body(c2s, body, fields, response=False, bodiless=False)
        facts["requests"].append(
            {"method": method, "path": target, "content_type": content_type, "body_length": length}
        )
        _note_encryption(facts, content_type)
        # Each header fact comes from the first request that carries that header.
        for name, fact in _REQUEST_HEADERS.items():
            if facts[fact] is None and name in fields:
                value = text(fields[name])
                facts[fact] = value.split(" ", 1)[0] if fact == "auth_scheme" else value
        # RFC 9110 11.6.2: credentials = auth-scheme [ 1*SP token68 / params ]; the scheme is
        # whole once a space follows it, however much of the token was cut.
        scheme, space, _ = fields.get(_CUT + "authorization", b"").partition(b" ")
        if facts["auth_scheme"] is None and space and scheme:
            facts["auth_scheme"] = text(scheme)
        if next_request is None:
            return
        pos = next_request


def _responses(s2c: bytes, facts: Facts) -> None:
    """Every response in ``s2c`` one after the other; the first one's status, reason, server."""
    pos = 0
    final = 0  # final (non-1xx) responses so far: the index of the request answered
    while len(facts["responses"]) < MAX_REQUESTS:
        line = _STATUS_LINE.match(s2c, pos)
        if line is None:
            return
        status = int(line.group(2))
        fields, body = _headers(s2c, line.end())
        if facts["status"] is None:
            facts["status"] = status
            facts["reason"] = text(line.group(3) or b"")
            if facts["version"] is None:
                facts["version"] = text(line.group(1))
            if "server" in fields:
                facts["server"] = text(fields["server"])
        requests = facts["requests"]
        answered = requests[final]["method"] if final < len(requests) else None
        # RFC 9110 6.4.1: no content in 1xx, 204 and 304 responses, nor in answers to HEAD.
        bodiless = status < 200 or status in (204, 304) or answered == "HEAD"
        final += status >= 200
        content_type = text(fields["content-type"]) if "content-type" in fields else None
        length, end = _body(s2c, body, fields, response=True, bodiless=bodiless)
        facts["responses"].append(
            {"status": status, "content_type": content_type, "body_length": length}
        )
        _note_encryption(facts, content_type)
        if end is None:
            return
        pos = end


def parse(c2s: bytes, s2c: bytes) -> Facts | None:
    """HTTP facts when the client opens with a request line or the server with a status line."""
    client_opens = bool(c2s) and (c2s[0] in _METHOD_FIRST or c2s.startswith(b"\r\n"))
    server_opens = s2c.startswith(b"HTTP/")
    if not (client_opens or server_opens):
        return None
    facts: Facts = {
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
    if client_opens:
        _requests(c2s, facts)
    if server_opens:
        _responses(s2c, facts)
    if facts["method"] is None and facts["status"] is None:
        return None
    return facts
