"""HTTP/1.x, whole conversations: every request and the response that answers it.

Each side is read message by message (RFC 9112): a header section up to the empty line (held,
at most 64 KB), then the body framed by ``Transfer-Encoding: chunked`` (7.1: chunk-size lines
read as they come, chunk data passed over unread), by ``Content-Length`` (6.3), or, for a
response with neither, by the end of the connection. A request with neither has no body; nor
have answers to HEAD, 1xx, 204 and 304 responses (RFC 9110 6.4.1, 9.3.2). Responses answer
requests in order (RFC 9112 9.3); a 101 (Switching Protocols) or a 2xx answer to CONNECT
hands the connection to another protocol and reading stops.

Every request is an operation (``operation``: the method, any RFC 9110 token: ``GET``,
ConfigMgr's ``CCM_POST``, ``BITS_POST``, ``RPC_IN_DATA``...; ``target``: the request-target;
``host``, ``user_agent``, ``content_type``); its response sets ``status`` (the code as text)
and ``response_content_type``, interim 1xx codes go to ``interim``. Authentication (RFC 9110
11): the scheme of ``Authorization`` / ``Proxy-Authorization`` is ``auth_scheme``, those
offered by ``WWW-Authenticate`` / ``Proxy-Authenticate`` ``auth_offered``; NTLM, Negotiate and
Kerberos tokens (base64, RFC 4559 4) go to ``auth.Auth``, the response's status is their
outcome (``success`` below 400, else the code); a 401 carrying a token continues the exchange.
Basic credentials (RFC 7617) name their user (identity ``http-basic``), never keeping the
password.

ConfigMgr's CCM_POST ([MS-CMRP] 2.2: a ``<Msg>`` header, UTF-16LE in a multipart/mixed body
part or UTF-8 before the body, then the message body, zlib-compressed or XML): up to 16 KB of
the body are kept to read the header's ``ID``, ``SourceID``, ``SourceHost``, ``TargetEndpoint``
and ``ReplyTo`` and what the body part is (``zlib`` or its XML root element) into ``msg``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from typing import Any

from flowaudit.dissect.http import (
    _REQUEST_LINE,
    _STATUS_LINE,
    ENCRYPTED_TYPES,
    MAX_LENGTH_DIGITS,
    text,
)
from flowaudit.stream.auth import Auth
from flowaudit.stream.base import SKIP_ALL, At, Dissector, Record

PROTOCOL = "http"
TRANSPORTS = ("tcp",)

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
MAX_LINE = 1024  # a chunk-size line or trailer field line
MAX_CAPTURE = 16 * 1024  # of a CCM_POST body, for its <Msg> header
MAX_PENDING = 256  # requests waiting for their response
MAX_LIST = 16
MAX_TEXT = 256

# RFC 9110 9.1 / 5.6.2: a method is a token; the request-target starts with "/" (origin-form),
# a scheme (absolute-form, to proxies) or is "*" (OPTIONS); the version is HTTP/1.x.
_CLAIM_REQUEST = re.compile(
    rb"(?:\r?\n)*[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64} (?:/|[Hh][Tt][Tt][Pp][Ss]?://|\*)"
    rb"[\x21-\x7e\x80-\xff]*(?: HTTP/1\.[0-9]\r?\n|\Z)"
)
_CLAIM_STATUS = re.compile(rb"HTTP/1\.[0-9] [0-9]{3}[ \r\n]")
_CLAIM_CUT = 256  # a request line cut by the first payload's end counts past this length
_TOKEN68 = re.compile(r"[A-Za-z0-9+/\-._~]+=*\Z")
_TOKEN_SCHEMES = frozenset({"ntlm", "negotiate", "kerberos"})
_AUTH_REQUEST = ("authorization", "proxy-authorization")
_AUTH_RESPONSE = ("www-authenticate", "proxy-authenticate")

# States of a side.
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILER, CLOSE, DEAD = range(8)

# [MS-CMRP]-style message header fields kept from a CCM_POST <Msg>.
_MSG_FIELDS = {
    "ID": "id",
    "SourceID": "source_id",
    "SourceHost": "source_host",
    "TargetEndpoint": "target_endpoint",
    "ReplyTo": "reply_to",
}
_MSG_FIELD = re.compile(r"<(ID|SourceID|SourceHost|TargetEndpoint|ReplyTo)>([^<]{0,512})<")
_XML_ROOT = re.compile(r"<([A-Za-z_][\w.\-]{0,127}(?::[A-Za-z_][\w.\-]{0,127})?)[\s/>]")
_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";]{1,70})', re.IGNORECASE)
_PROTOCOL_PARAMETER = re.compile(r';\s*protocol\s*=\s*"?([^";]*)', re.IGNORECASE)  # RFC 1847 2.2
_ZLIB = 0x78  # RFC 1950 2.2: CMF of deflate with a 32K window


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """A request line (any method token) or a status line opens the flow."""
    data = bytes(first[:2048])
    if _CLAIM_STATUS.match(data):
        return True
    match = _CLAIM_REQUEST.match(data)
    if match is None:
        return False
    return match.group().endswith(b"\n") or len(data) >= _CLAIM_CUT


def _cut(value: str) -> str:
    return value[:MAX_TEXT]


def _fields(head: bytes, start: int) -> dict[str, list[str]]:
    """Header field lines from ``start`` (RFC 9112 5): lower-case name -> values in order."""
    fields: dict[str, list[str]] = {}
    # latin-1 maps each byte to one character: decoding once, then splitting, gives what
    # decoding each part would
    for line in head[start:].decode("latin-1").split("\n", MAX_HEADERS)[:MAX_HEADERS]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip(" \t\r\n\x0b\x0c"):
            continue
        values = fields.setdefault(name.lower(), [])
        if len(values) < MAX_LIST:
            values.append(value.strip(" \t\r"))
    return fields


def _first(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def _content_length(fields: dict[str, list[str]]) -> int | None:
    raw = (_first(fields, "content-length") or "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_LENGTH_DIGITS:
        return None
    return int(raw)


def _chunked(fields: dict[str, list[str]]) -> bool:
    return "chunked" in ",".join(fields.get("transfer-encoding", [])).lower()


def _decode_xml(raw: bytes) -> str:
    """UTF-16LE when the bytes look like it (a BOM or NULs between ASCII), else UTF-8."""
    if raw[:2] == b"\xff\xfe" or raw[1:8:2] == b"\x00\x00\x00\x00":
        return raw.decode("utf-16-le", errors="replace").lstrip("\ufeff")
    return raw.decode("utf-8", errors="replace").lstrip("\ufeff")


def _body_kind(part: bytes) -> str | None:
    """zlib when the part starts as RFC 1950 data, else its XML root element's name."""
    part = part.lstrip(b"\r\n \t")
    if not part:
        return None
    if part[0] == _ZLIB:
        return "zlib"
    xml = _decode_xml(part[:2048])
    for match in _XML_ROOT.finditer(xml):
        if xml[match.start() + 1 : match.start() + 2] not in ("?", "!"):
            return match.group(1)
    return None


def ccm_message(body: bytes, content_type: str | None) -> dict[str, Any] | None:
    """The <Msg> header fields and body kind of a CCM_POST body (multipart or inline)."""
    boundary = _BOUNDARY.search(content_type or "")
    parts: list[bytes] = []
    if boundary is not None:
        delimiter = b"--" + boundary.group(1).strip().encode("latin-1")
        for piece in body.split(delimiter)[1:4]:
            _, blank, content = piece.partition(b"\r\n\r\n")
            if blank:
                parts.append(content)
    header = parts[0] if parts else body
    xml = _decode_xml(header[:MAX_CAPTURE])
    start = xml.find("<Msg")
    if start < 0:
        return None
    end = xml.find("</Msg>", start)
    msg: dict[str, Any] = {}
    for match in _MSG_FIELD.finditer(xml, start, end if end >= 0 else len(xml)):
        key = _MSG_FIELDS[match.group(1)]
        msg.setdefault(key, _cut(match.group(2).strip()))
    if len(parts) > 1:
        msg["body"] = _body_kind(parts[1])
    elif end >= 0 and not parts:
        # Inline: the body follows </Msg> in the same encoding.
        rest = xml[end + len("</Msg>") : end + 4096]
        msg["body"] = _body_kind(rest.encode("utf-8"))
    return msg


class _Side:
    __slots__ = (
        "capture",
        "content_type",
        "head",
        "line",
        "message",
        "remaining",
        "start",
        "state",
    )

    def __init__(self) -> None:
        self.state = HEAD
        self.head = bytearray()
        self.line = bytearray()
        self.remaining = 0
        self.capture: bytearray | None = None  # a CCM_POST body being kept
        self.message: dict[str, Any] | None = None  # the request whose body is read
        self.content_type: str | None = None  # of the CCM_POST body kept
        self.start: At | None = None  # where the message being read began


class Conversation(Dissector):
    """One HTTP/1.x connection."""

    PROTOCOL = PROTOCOL

    def __init__(self, record: Record | None = None) -> None:
        super().__init__(record)
        self.auth = Auth(self.record, "http")
        self._sides = (_Side(), _Side())
        self._pending: deque[dict[str, Any]] = deque()
        self._facts: dict[str, Any] = {
            "requests": 0,
            "responses": 0,
            "hosts": [],
            "user_agents": [],
            "session_encryption": None,
            "upgraded": None,
        }

    # --- bytes -----------------------------------------------------------------------------

    def data(self, side: int, data: bytes | memoryview, at: At) -> None:
        state = self._sides[side]
        view = memoryview(data)
        for _ in range(1_000_000):  # every pass consumes bytes or ends a message
            if not view.nbytes or state.state == DEAD:
                return
            if state.state == HEAD:
                view = self._head(side, state, view, at)
            elif state.state in (LENGTH, CHUNK_DATA):
                take = min(state.remaining, view.nbytes)
                self._keep(state, view[:take])
                state.remaining -= take
                view = view[take:]
                if state.remaining == 0:
                    if state.state == LENGTH:
                        self._body_done(state)
                    else:
                        state.state = CHUNK_END
            elif state.state == CLOSE:
                self._keep(state, view)
                return
            else:
                view = self._line(side, state, view)

    def _keep(self, state: _Side, piece: memoryview) -> None:
        capture = state.capture
        if capture is not None and len(capture) < MAX_CAPTURE:
            capture += piece[: MAX_CAPTURE - len(capture)]

    def _head(self, side: int, state: _Side, view: memoryview, at: At) -> memoryview:
        head = state.head
        if not head:
            # RFC 9112 2.2: empty lines before a request line are ignored.
            lead = bytes(view[:64])
            skip = len(lead) - len(lead.lstrip(b"\r\n"))
            if skip:
                return view[skip:]
        if not head:
            state.start = at
        tail = bytes(head[-3:])
        room = MAX_HEAD - len(head)
        window = tail + bytes(view[:room])
        end = window.find(b"\r\n\r\n")
        if end < 0:
            end = window.find(b"\n\n")
            size = 2
        else:
            size = 4
        if b"\x00" in (window if end < 0 else window[:end]):
            # RFC 9110 5.5: a field value holding NUL is invalid; no start line holds one either
            self._stop(side, "http: not HTTP any more")
            return view[view.nbytes :]
        if end < 0:
            head += view[:room]
            if len(head) >= MAX_HEAD:
                self._stop(side, f"http: header section past {MAX_HEAD} bytes")
            return view[room:]
        used = end + size - len(tail)
        head += view[:used]
        message = bytes(head)
        head.clear()
        self._message(side, state, message, state.start or at)
        return view[used:]

    def _line(self, side: int, state: _Side, view: memoryview) -> memoryview:
        """Chunk-size lines, the CRLF after chunk data, trailer fields (RFC 9112 7.1)."""
        window = bytes(view[: MAX_LINE + 1])
        newline = window.find(b"\n")
        if newline < 0:
            state.line += window
            if len(state.line) > MAX_LINE:
                self._stop(side, "http: chunk line too long")
            return view[len(window) :]
        state.line += window[:newline]
        line = bytes(state.line).rstrip(b"\r")
        state.line.clear()
        rest = view[newline + 1 :]
        if len(line) > MAX_LINE:
            self._stop(side, "http: chunk line too long")
        elif state.state == CHUNK_END:
            state.state = CHUNK_SIZE
        elif state.state == TRAILER:
            if not line:
                self._body_done(state)
        else:
            size = line.split(b";", 1)[0].strip()
            try:
                length = int(size, 16) if size and len(size) <= 16 else -1
            except ValueError:
                length = -1
            if length < 0:
                self._stop(side, "http: bad chunk size")
            elif length == 0:
                state.state = TRAILER
            else:
                state.remaining = length
                state.state = CHUNK_DATA
        return rest

    def gap(self, side: int, length: int, at: At) -> None:
        state = self._sides[side]
        if state.state == CLOSE:
            state.capture = None
            return
        if state.state in (LENGTH, CHUNK_DATA) and state.remaining >= length:
            state.remaining -= length  # body nobody reads
            state.capture = None
            self.record.count("bytes_missing", length)
            if state.remaining == 0 and state.state == LENGTH:
                self._body_done(state)
            elif state.remaining == 0:
                state.state = CHUNK_END
            return
        if state.state != DEAD:
            self._stop(side, f"http: {length} bytes missing, rest of the side unread")

    def _stop(self, side: int, why: str) -> None:
        state = self._sides[side]
        state.state = DEAD
        self.skip[side] = SKIP_ALL
        state.head.clear()
        state.line.clear()
        state.capture = None
        self.record.truncate(why)

    # --- messages --------------------------------------------------------------------------

    def _message(self, side: int, state: _Side, head: bytes, at: At) -> None:
        status = _STATUS_LINE.match(head)
        if status is not None:
            self._response(side, state, head, status, at)
            return
        request = _REQUEST_LINE.match(head)
        if request is None:
            self._stop(side, "http: not HTTP any more")
            return
        self._request(side, state, head, request, at)

    def _request(self, side: int, state: _Side, head: bytes, line: Any, at: At) -> None:
        method, target = text(line.group(1)), text(line.group(2))
        fields = _fields(head, line.end())
        extra: dict[str, Any] = {}
        for name, key in (("host", "host"), ("user-agent", "user_agent")):
            value = _first(fields, name)
            if value is not None:
                extra[key] = _cut(value)
        content_type = _first(fields, "content-type")
        if content_type is not None:
            extra["content_type"] = _cut(content_type)
        auth: dict[str, Any] = {}
        for name in _AUTH_REQUEST:
            for value in fields.get(name, []):
                scheme = self._credentials(side, value, auth, at)
                if scheme is not None:
                    extra.setdefault("auth_scheme", scheme)
        entry = self.record.op(at, side, PROTOCOL, method, target=target, **extra)
        self._note(extra)
        self._encryption(content_type)
        request = {"entry": entry, "method": method, "auth": auth}
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.record.count("http_requests_unanswered")
        self._pending.append(request)
        # RFC 9112 6.3: chunked, else Content-Length, else no body.
        state.message = entry
        if method == "CCM_POST":
            state.capture = bytearray()
            state.content_type = content_type
        if _chunked(fields):
            state.state = CHUNK_SIZE
        else:
            length = _content_length(fields)
            if length:
                state.state, state.remaining = LENGTH, length
            else:
                self._body_done(state)

    def _note(self, extra: dict[str, Any]) -> None:
        self._facts["requests"] += 1
        for key, fact in (("host", "hosts"), ("user_agent", "user_agents")):
            value, kept = extra.get(key), self._facts[fact]
            if value is not None and value not in kept and len(kept) < MAX_LIST:
                kept.append(value)

    def _encryption(self, content_type: str | None) -> None:
        """The first multipart/encrypted body's protocol (WinRM session encryption)."""
        if self._facts["session_encryption"] is not None or content_type is None:
            return
        if content_type.lower().startswith(ENCRYPTED_TYPES):
            found = _PROTOCOL_PARAMETER.search(content_type)
            self._facts["session_encryption"] = _cut(
                found.group(1).strip() if found else content_type
            )

    def _body_done(self, state: _Side) -> None:
        """The message's body has been read (or there is none): the next message starts."""
        state.state = HEAD
        capture, state.capture = state.capture, None
        entry, state.message = state.message, None
        if capture is not None and entry is not None:
            msg = ccm_message(bytes(capture), state.content_type)
            if msg is not None:
                entry["msg"] = msg

    def _credentials(self, side: int, value: str, auth: dict[str, Any], at: At) -> str | None:
        """RFC 9110 11.6.2 credentials: the scheme; a token to Auth; Basic's user name."""
        scheme, _, rest = value.strip().partition(" ")
        if not scheme:
            return None
        rest = rest.strip()
        lower = scheme.lower()
        if lower in _TOKEN_SCHEMES and rest:
            blob = self._base64(rest)
            if blob:
                auth["token"] = True
                auth["entry"] = self.auth.token(at, side, blob) or auth.get("entry")
        elif lower == "basic" and rest:
            blob = self._base64(rest)
            if blob:
                user = blob.split(b":", 1)[0].decode("utf-8", errors="replace")
                auth["basic"] = {
                    "protocol": "http-basic",
                    "account": _cut(user),
                    "method": "basic",
                    "carrier": "http",
                }
        return _cut(scheme)

    @staticmethod
    def _base64(value: str) -> bytes | None:
        if not _TOKEN68.match(value):
            return None
        try:
            return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None

    def _response(self, side: int, state: _Side, head: bytes, line: Any, at: At) -> None:
        code = int(line.group(2))
        fields = _fields(head, line.end())
        self._facts["responses"] += 1
        request = self._pending[0] if self._pending else None
        if request is None:
            self.record.count("http_responses_unmatched")
        elif code >= 200 or code == 101:
            self._pending.popleft()
        offered: list[str] = []
        challenge = False
        for name in _AUTH_RESPONSE:
            for value in fields.get(name, []):
                scheme, _, rest = value.strip().partition(" ")
                if scheme and len(offered) < MAX_LIST:
                    offered.append(_cut(scheme.rstrip(",")))
                blob = self._base64(rest.strip()) if scheme.lower() in _TOKEN_SCHEMES else None
                if blob:
                    challenge = True
                    self.auth.token(at, side, blob)
        content_type = _first(fields, "content-type")
        self._encryption(content_type)
        method = request["method"] if request is not None else None
        if request is not None and 100 <= code < 200 and code != 101:
            interim = request["entry"].setdefault("interim", [])
            if len(interim) < MAX_LIST:
                interim.append(str(code))  # RFC 9110 15.2: 100 Continue, 103 Early Hints
        if request is not None and (code >= 200 or code == 101):
            entry = request["entry"]
            entry["status"] = str(code)
            if content_type is not None:
                entry["response_content_type"] = _cut(content_type)
            if offered:
                entry["auth_offered"] = offered
            self._outcome(request, code, challenge)
        # RFC 9110 15.2.2 / 9.3.6: the connection is another protocol's from here on.
        if code == 101 or (method == "CONNECT" and 200 <= code < 300):
            self._facts["upgraded"] = _cut(_first(fields, "upgrade") or method or str(code))
            why = "http: connection upgraded" if code == 101 else "http: CONNECT tunnel"
            self._stop(0, why)
            self._stop(1, why)
            return
        # RFC 9110 6.4.1: no content in 1xx, 204, 304 or an answer to HEAD.
        state.message = None
        if code < 200 or code in (204, 304) or method == "HEAD":
            self._body_done(state)
        elif _chunked(fields):
            state.state = CHUNK_SIZE
        elif "content-length" in fields and _content_length(fields) is not None:
            length = _content_length(fields) or 0
            if length:
                state.state, state.remaining = LENGTH, length
            else:
                self._body_done(state)
        else:
            state.state = CLOSE  # RFC 9112 6.3 item 8: read until the connection closes

    def _outcome(self, request: dict[str, Any], code: int, challenge: bool) -> None:
        auth = request["auth"]
        outcome = "success" if code < 400 else str(code)
        if "basic" in auth:
            self.record.identity(dict(auth["basic"], outcome=outcome))
        if not auth.get("token"):
            return
        if code == 401 and challenge:
            return  # RFC 4559 5 / MS-NLMP: the exchange goes on with the next request
        self.auth.outcome(outcome, auth.get("entry"))

    def end(self) -> None:
        for state in self._sides:
            if state.capture is not None:
                self._body_done(state)
        for request in self._pending:
            if "basic" in request["auth"]:
                self.record.identity(dict(request["auth"]["basic"]))
        self._pending.clear()

    def facts(self) -> dict[str, Any]:
        facts = dict(self._facts)
        facts["auth"] = self.auth.facts()
        return facts
