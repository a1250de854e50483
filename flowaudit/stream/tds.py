"""TDS (SQL Server), whole conversations: PRELOGIN, encryption, LOGIN7, SSPI and requests.

[MS-TDS] 2.2.3.1: every TDS message travels in packets with an 8-byte header (type, status,
big-endian length including the header, SPID, packet id, window); a message ends with the
packet whose status has EOM (0x01). Each client message is an operation named by its packet
type (the names tshark gives ``tds.type``): ``PRELOGIN``, ``LOGIN7``, ``SSPI``, ``SQLBATCH``,
``RPC``, ``ATTENTION``, ``BULKLOAD``, ``TRANSMGR``, ``FEDAUTH``; the server's answers (tabular
results, 0x04) are counted per packet type in ``facts()["packets"]`` and give the status of
PRELOGIN and LOGIN7.

PRELOGIN (2.2.6.5) is read both ways: VERSION and ENCRYPTION (ENCRYPT_OFF/ON/NOT_SUP/REQ).
Encryption (2.2.6.5 table, 3.3.5.1): the server's answer decides: NOT_SUP (or a client NOT_SUP)
none; OFF only the LOGIN7 travels encrypted; ON or REQ everything after the handshake. The TLS
handshake then travels inside PRELOGIN packets (2.2.6.5: "this message stream is also used to
wrap the SSL handshake payload"); the ServerHello's version is read from them
(``flowaudit.dissect.tls``). After the handshake TLS records come on the connection without a
TDS header: with login-only encryption the first of the client's is the LOGIN7 (operation
``LOGIN7``, ``encrypted``) and TDS packets in clear follow; with full encryption the side is
not read further (``tds: encrypted``).

LOGIN7 in clear (2.2.6.4): host, user, application, server and database names are kept, never
the password (nor its obfuscated bytes); a SQL Server login gives an identity (protocol
``tds-sql``). Integrated security (OptionFlags2 fIntSecurity) carries an SSPI token in the
LOGIN7; the server's challenge comes in an SSPI token (0xED, 2.2.7.22) of the reply and the
client's next token in an SSPI message (0x11): each goes to ``auth.Auth``. The login's outcome
is the reply's LOGINACK (0xAD) or its ERROR (0xAA, 2.2.7.10: the error number).

SQL batch text is not kept (it may carry secrets): only its first keyword (``verb``). An RPC's
target is the procedure's name, or for the well-known ProcIDs (2.2.6.6) their name.
"""

from __future__ import annotations

import struct
from typing import Any

from flowaudit.dissect import tds as first_bytes
from flowaudit.dissect import tls
from flowaudit.stream.auth import Auth
from flowaudit.stream.base import MAX_PDU_KEEP, At, Framed, Record

PROTOCOL = "tds"
TRANSPORTS = ("tcp",)

PORT = 1433
HEADER = 8
STATUS_EOM = 0x01
STATUS_BITS = first_bytes.STATUS_BITS
MAX_PACKET = first_bytes.MAX_PACKET
PACKET_TYPES = first_bytes.PACKET_TYPES
PRELOGIN, LOGIN7, SSPI, SQL_BATCH, RPC, RESPONSE = 0x12, 0x10, 0x11, 0x01, 0x03, 0x04
MAX_MESSAGE = 64 * 1024  # bytes of one message gathered across packets
MAX_TLS = 16 * 1024  # handshake bytes gathered per side to find the ServerHello
MAX_TEXT = 256
MAX_TOKENS = 64
BATCH_KEEP = 512
RPC_KEEP = 1024

# 2.2.6.5 B_FENCRYPTION.
ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_NOT_SUP, ENCRYPT_REQ = 0, 1, 2, 3
ENCRYPTION_NAMES = {0: "ENCRYPT_OFF", 1: "ENCRYPT_ON", 2: "ENCRYPT_NOT_SUP", 3: "ENCRYPT_REQ"}
ENCRYPT_CLIENT_CERT = 0x80

# 2.2.7 token types read in a login reply; each of these has a USHORT length after its type.
TOKEN_ENVCHANGE, TOKEN_ERROR, TOKEN_INFO, TOKEN_LOGINACK, TOKEN_SSPI = 0xE3, 0xAA, 0xAB, 0xAD, 0xED
TOKEN_FEATUREEXTACK = 0xAE
_LENGTH_TOKENS = frozenset({TOKEN_ENVCHANGE, TOKEN_ERROR, TOKEN_INFO, TOKEN_LOGINACK, TOKEN_SSPI})

# 2.2.6.4 LOGIN7: OptionFlags2 fIntSecurity; the OffsetLength pairs (offset, length in
# characters, from the start of the LOGIN7 data) and the SSPI pair (length in bytes).
LOGIN7_FIXED = 36
INT_SECURITY = 0x80
_LOGIN7_NAMES = {
    36: "hostname",
    40: "username",
    48: "app_name",
    52: "server_name",
    60: "library",  # CltIntName: the client's interface library
    68: "database",
}
_LOGIN7_SSPI = 78
_LOGIN7_SSPI_LONG = 90
# 2.2.6.6 RPC: ProcIDs of the well-known stored procedures (NameLenProcID 0xFFFF).
PROC_IDS = {
    1: "Sp_Cursor",
    2: "Sp_CursorOpen",
    3: "Sp_CursorPrepare",
    4: "Sp_CursorExecute",
    5: "Sp_CursorPrepExec",
    6: "Sp_CursorUnprepare",
    7: "Sp_CursorFetch",
    8: "Sp_CursorOption",
    9: "Sp_CursorClose",
    10: "Sp_ExecuteSql",
    11: "Sp_Prepare",
    12: "Sp_Execute",
    13: "Sp_PrepExec",
    14: "Sp_PrepExecRpc",
    15: "Sp_Unprepare",
}

# Requests whose replies are read whole (PRELOGIN options, SSPI tokens, LOGINACK or ERROR).
_READ_REPLIES = frozenset({"PRELOGIN", "LOGIN7", "SSPI"})
MAX_TLS_TRIES = 32  # ServerHello look-ups over the wrapped handshake bytes

# TLS record content types (RFC 8446 5.1) that may follow the handshake on the connection.
_TLS_RECORDS = frozenset({20, 21, 22, 23})


def header(head: bytes) -> tuple[int, int, int] | None:
    """(type, status, length) of a plausible TDS packet header (2.2.3.1), else None."""
    if len(head) < HEADER:
        return None
    packet_type, status = head[0], head[1]
    length = int.from_bytes(head[2:4], "big")
    if (
        packet_type not in PACKET_TYPES
        or status & ~STATUS_BITS
        or not HEADER <= length <= MAX_PACKET
        or head[7] != 0
    ):
        return None
    return packet_type, status, length


def prelogin_options(data: bytes) -> dict[int, bytes] | None:
    return first_bytes._prelogin_options(data)


def _encryption(options: dict[int, bytes]) -> int | None:
    value = options.get(first_bytes.OPTION_ENCRYPTION, b"")
    return value[0] if len(value) == 1 else None


def encryption_name(code: int) -> str:
    base = ENCRYPTION_NAMES.get(code & ~ENCRYPT_CLIENT_CERT, f"0x{code:02x}")
    return base + "+CLIENT_CERT" if code & ENCRYPT_CLIENT_CERT else base


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """A TDS packet header on port 1433, or on any port a client PRELOGIN that parses."""
    found = header(bytes(first[:HEADER]))
    if found is None:
        return False
    packet_type, _, length = found
    if PORT in ports:
        return True
    if packet_type != PRELOGIN or length > len(first):
        return False
    return prelogin_options(bytes(first[HEADER:length])) is not None


def _ucs2(data: bytes, start: int, chars: int) -> str:
    raw = data[start : start + 2 * min(chars, MAX_TEXT)]
    return raw.decode("utf-16-le", errors="replace")[:MAX_TEXT]


def _u16(data: bytes, at: int) -> int | None:
    return struct.unpack_from("<H", data, at)[0] if at + 2 <= len(data) else None


class Conversation(Framed):
    """One TDS connection."""

    PROTOCOL = PROTOCOL
    HEADER = HEADER

    def __init__(self, record: Record | None = None) -> None:
        super().__init__(record)
        self.auth = Auth(self.record, "tds")
        # The message being gathered per side: its type, bytes, whether a packet was cut.
        self._type = [-1, -1]
        self._message = (bytearray(), bytearray())
        self._partial = [False, False]
        self._at: list[At | None] = [None, None]
        self._client: int | None = None  # the side that sent the first client message
        self._prelogin_op: dict[str, Any] | None = None
        self._awaiting: dict[str, Any] | None = None  # the request the next reply answers
        self._client_encryption: int | None = None
        self._server_encryption: int | None = None
        self._handshake = (bytearray(), bytearray())  # TLS bytes wrapped in PRELOGIN packets
        self._tls_tries = 0
        self._login_seen = False
        self._sql_login: dict[str, Any] | None = None
        self._auth_entry: dict[str, Any] | None = None
        self._packets: dict[str, int] = {}
        self._facts: dict[str, Any] = {
            "client_version": None,
            "server_version": None,
            "client_encryption": None,
            "server_encryption": None,
            "encryption": None,  # none / login / full
            "tls_version": None,
            "tls_cipher_suite": None,
            "integrated_security": None,
            "tds_version": None,
        }

    # --- framing ---------------------------------------------------------------------------

    def _tls_on(self) -> bool:
        return self._facts["encryption"] in ("login", "full")

    def pdu_length(self, side: int, head: bytes) -> int | None:
        if self._tls_on() and head[0] in _TLS_RECORDS and head[1] == 3 and head[2] <= 4:
            return 5 + int.from_bytes(head[3:5], "big")  # a TLS record (RFC 8446 5.1)
        found = header(head)
        return found[2] if found is not None else None

    def keep(self, side: int, head: bytes, total: int) -> int:
        if self._tls_on() and head[0] in _TLS_RECORDS and head[1] == 3:
            return 5
        packet_type = head[0]
        if packet_type == SQL_BATCH:
            return min(total, HEADER + BATCH_KEEP)
        if packet_type == RPC:
            return min(total, HEADER + RPC_KEEP)
        if packet_type == RESPONSE and (
            self._awaiting is None or self._awaiting.get("operation") not in _READ_REPLIES
        ):
            return min(total, HEADER + 64)  # result sets: only a first ERROR token is read
        return min(total, MAX_PDU_KEEP)

    def pdu(self, side: int, data: bytes, total: int, at: At) -> None:
        if self._tls_on() and data[0] in _TLS_RECORDS and data[1] == 3:
            self._tls_record(side, data, at)
            return
        found = header(data)
        if found is None:
            return
        packet_type, status, _ = found
        name = PACKET_TYPES[packet_type]
        self._packets[name] = self._packets.get(name, 0) + 1
        message = self._message[side]
        if self._type[side] != packet_type:  # a new message (or a type change: start anew)
            message.clear()
            self._type[side] = packet_type
            self._partial[side] = False
            self._at[side] = at
        if self._partial[side] or len(message) + len(data) - HEADER > MAX_MESSAGE:
            self._partial[side] = True
        else:
            message += data[HEADER:]
        if len(data) < total:
            self._partial[side] = True  # the packet's rest was skipped unread
        if status & STATUS_EOM:
            start = self._at[side] or at
            self._type[side] = -1
            body = bytes(message)
            message.clear()
            self._complete(side, packet_type, body, start)

    def _tls_record(self, side: int, data: bytes, at: At) -> None:
        """A TLS record after the handshake, straight on the connection."""
        if self._facts["encryption"] == "full":
            if side == self._client and not self._login_seen:
                self._login_seen = True
                self.record.op(at, side, PROTOCOL, "LOGIN7", encrypted=True)
            self.stop(side, "tds: encrypted")
            return
        # Login-only encryption: the client's LOGIN7 is this record (and any that follow it).
        if side == self._client and not self._login_seen:
            self._login_seen = True
            self._awaiting = self.record.op(at, side, PROTOCOL, "LOGIN7", encrypted=True)
        self.record.count("tds_tls_records")

    # --- messages --------------------------------------------------------------------------

    def _complete(self, side: int, packet_type: int, body: bytes, at: At) -> None:
        if packet_type == RESPONSE or (
            packet_type == PRELOGIN and self._client is not None and side != self._client
        ):
            self._reply(side, packet_type, body, at)
            return
        if self._client is None:
            self._client = side
        if side != self._client:
            self.record.count("tds_messages_unexpected_side")
            return
        name = PACKET_TYPES[packet_type]
        if packet_type == PRELOGIN:
            self._prelogin(side, body, at)
        elif packet_type == LOGIN7:
            self._login7(side, body, at)
        elif packet_type == SSPI:
            entry = self.auth.token(at, side, body)
            self._auth_entry = entry or self._auth_entry
            self._awaiting = self.record.op(at, side, PROTOCOL, name)
        elif packet_type == SQL_BATCH:
            self._awaiting = self.record.op(at, side, PROTOCOL, name, verb=self._verb(body))
        elif packet_type == RPC:
            self._awaiting = self.record.op(at, side, PROTOCOL, name, target=self._procedure(body))
        else:
            self._awaiting = self.record.op(at, side, PROTOCOL, name)

    def _prelogin(self, side: int, body: bytes, at: At) -> None:
        if self._prelogin_op is not None and self._server_encryption is not None:
            self._wrapped(side, body)  # TLS handshake bytes
            return
        if self._prelogin_op is not None:
            self.record.count("tds_prelogin_repeated")
            return
        options = prelogin_options(body)
        extra: dict[str, Any] = {}
        if options is not None:
            code = _encryption(options)
            self._client_encryption = code
            extra["encryption"] = self._facts["client_encryption"] = (
                encryption_name(code) if code is not None else None
            )
            extra["version"] = self._facts["client_version"] = first_bytes._version(options)
            instance = first_bytes._instance(options)
            if instance is not None:
                extra["instance"] = instance
        self._prelogin_op = self._awaiting = self.record.op(at, side, PROTOCOL, "PRELOGIN", **extra)

    def _reply(self, side: int, packet_type: int, body: bytes, at: At) -> None:
        request, self._awaiting = self._awaiting, None
        if packet_type == PRELOGIN or (
            request is self._prelogin_op and self._server_encryption is not None
        ):
            self._wrapped(side, body)
            return
        if request is not None and request is self._prelogin_op:
            options = prelogin_options(body)
            if options is None:
                return
            code = _encryption(options)
            self._server_encryption = code
            version = first_bytes._version(options)
            self._facts["server_version"] = version
            self._facts["server_encryption"] = encryption_name(code) if code is not None else None
            request["status"] = self._facts["server_encryption"]
            request["server_version"] = version
            self._facts["encryption"] = self._negotiated()
            return
        if request is None or request.get("operation") not in ("LOGIN7", "SSPI"):
            if request is not None and body[:1] == bytes([TOKEN_ERROR]):
                request["status"] = self._error(body, 0) or "error"
            return
        self._login_reply(side, body, request, at)

    def _negotiated(self) -> str:
        """2.2.6.5: the encryption the two PRELOGIN options agree on."""
        client, server = self._client_encryption, self._server_encryption
        if client is None or server is None:
            return "unknown"
        client &= ~ENCRYPT_CLIENT_CERT
        server &= ~ENCRYPT_CLIENT_CERT
        if ENCRYPT_NOT_SUP in (client, server):
            return "none"
        if server == ENCRYPT_OFF and client == ENCRYPT_OFF:
            return "login"
        return "full"

    def _wrapped(self, side: int, body: bytes) -> None:
        """TLS handshake bytes carried in PRELOGIN packets; the ServerHello names the version."""
        buffer = self._handshake[side]
        if len(buffer) < MAX_TLS:
            buffer += body[: MAX_TLS - len(buffer)]
        if self._facts["tls_version"] is not None or self._tls_tries >= MAX_TLS_TRIES:
            return
        self._tls_tries += 1
        facts = tls.parse(bytes(self._handshake[self._client or 0]), bytes(buffer))
        if facts is not None and facts.get("server_hello"):
            self._facts["tls_version"] = facts.get("version")
            self._facts["tls_cipher_suite"] = facts.get("cipher_suite")

    def _login7(self, side: int, body: bytes, at: At) -> None:
        """2.2.6.4 LOGIN7 in clear."""
        self._login_seen = True
        extra: dict[str, Any] = {}
        names: dict[str, str] = {}
        if len(body) >= LOGIN7_FIXED + 58:
            version = struct.unpack_from("<I", body, 4)[0]
            self._facts["tds_version"] = f"0x{version:08x}"
            integrated = bool(body[25] & INT_SECURITY)
            self._facts["integrated_security"] = integrated
            extra["integrated_security"] = integrated
            for at_offset, key in _LOGIN7_NAMES.items():
                offset, chars = _u16(body, at_offset), _u16(body, at_offset + 2)
                if offset and chars:
                    names[key] = _ucs2(body, offset, chars)
            extra.update(names)
            offset, length = _u16(body, _LOGIN7_SSPI), _u16(body, _LOGIN7_SSPI + 2)
            if length == 0xFFFF and len(body) >= _LOGIN7_SSPI_LONG + 4:
                length = struct.unpack_from("<I", body, _LOGIN7_SSPI_LONG)[0]
            if integrated and offset and length:
                blob = body[offset : offset + length]
                self._auth_entry = self.auth.token(at, side, blob)
            elif not integrated and "username" in names:
                self._sql_login = {
                    "protocol": "tds-sql",
                    "account": names["username"],
                    "workstation": names.get("hostname"),
                    "method": "sql",
                    "carrier": "tds",
                    "application": names.get("app_name"),
                }
        self._awaiting = self.record.op(
            at, side, PROTOCOL, "LOGIN7", target=names.get("server_name"), **extra
        )

    def _login_reply(self, side: int, body: bytes, request: dict[str, Any], at: At) -> None:
        """The tokens of a reply to LOGIN7/SSPI (2.2.7): SSPI, ERROR or LOGINACK."""
        offset = 0
        outcome: str | None = None
        for _ in range(MAX_TOKENS):
            if offset + 3 > len(body):
                break
            token = body[offset]
            if token not in _LENGTH_TOKENS:
                break
            length = int.from_bytes(body[offset + 1 : offset + 3], "little")
            value = body[offset + 3 : offset + 3 + length]
            if token == TOKEN_SSPI:
                entry = self.auth.token(at, side, value)
                self._auth_entry = entry or self._auth_entry
                request["status"] = "sspi-continue"
                self._awaiting = request
                return
            if token == TOKEN_ERROR:
                outcome = self._error(body, offset) or "error"
                break
            if token == TOKEN_LOGINACK:
                outcome = "success"
                break
            offset += 3 + length
        if outcome is None:
            return
        request["status"] = outcome
        if self._sql_login is not None:
            self.record.identity(dict(self._sql_login, outcome=outcome))
            self._sql_login = None
        else:
            self.auth.outcome(outcome, self._auth_entry)

    @staticmethod
    def _error(body: bytes, offset: int) -> str | None:
        """2.2.7.10 ERROR: Length, Number (LONG), State, Class, MsgText..."""
        if offset + 7 > len(body):
            return None
        return f"error {struct.unpack_from('<i', body, offset + 3)[0]}"

    @staticmethod
    def _skip_headers(body: bytes) -> int:
        """2.2.5.3 ALL_HEADERS (TDS 7.2+): TotalLength first, itself included."""
        if len(body) >= 4:
            total = struct.unpack_from("<I", body, 0)[0]
            if 4 <= total <= len(body) and total < 1024:
                return total
        return 0

    def _verb(self, body: bytes) -> str | None:
        """The SQL batch's first keyword (2.2.6.7), upper-cased; not the text."""
        start = self._skip_headers(body)
        text = body[start : start + 128].decode("utf-16-le", errors="replace").lstrip()
        word = text.split(None, 1)[0] if text else ""
        word = "".join(c for c in word[:16] if c.isalnum() or c == "_")
        return word.upper() or None

    def _procedure(self, body: bytes) -> str | None:
        """2.2.6.6 RPCReqBatch: NameLenProcID, then ProcName or ProcID."""
        start = self._skip_headers(body)
        length = _u16(body, start)
        if length is None:
            return None
        if length == 0xFFFF:
            proc_id = _u16(body, start + 2)
            return PROC_IDS.get(proc_id, str(proc_id)) if proc_id is not None else None
        return _ucs2(body, start + 2, length) or None

    def end(self) -> None:
        if self._sql_login is not None:
            self.record.identity(dict(self._sql_login))
            self._sql_login = None

    def facts(self) -> dict[str, Any]:
        facts = dict(self._facts)
        facts["packets"] = dict(self._packets)
        facts["auth"] = self.auth.facts()
        return facts
