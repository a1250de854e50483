"""SMB conversations: every SMB2/SMB3 command and the SMB1 commands that name things.

Reads SMB over Direct TCP (445) and NetBIOS sessions (139) ([MS-SMB2] 2.1, RFC 1002 4.3): each
PDU is a 4-byte header (type, 24-bit length) and an SMB message. Every SMB2 command
([MS-SMB2] 2.2.1 - 2.2.39), including each one of a compound chain (NextCommand,
[MS-SMB2] 3.2.4.1.4), becomes an operation with the protocol ``"smb2"`` for every 2.x and 3.x
dialect alike (``facts()["dialect"]`` says which one was negotiated): its target is the share
path of TREE_CONNECT and the file or pipe name of CREATE and of every command on the FileId that
CREATE returned; its status is the NT status of the response with the same MessageId (an
interim STATUS_PENDING answer of an async command is replaced by the final one). An encrypted
message ([MS-SMB2] 2.2.41 TRANSFORM_HEADER) is one operation ``ENCRYPTED`` with its SessionId,
never decrypted. SMB1 ([MS-CIFS], [MS-SMB]) commands are operations with the protocol ``"smb"``,
following AndX chains; NEGOTIATE, SESSION_SETUP_ANDX, TREE_CONNECT_ANDX and NT_CREATE_ANDX are
read.

Security blobs of SESSION_SETUP go to ``auth.Auth`` (NTLMSSP, SPNEGO, Kerberos tokens), the
final status of the exchange is its outcome. Named pipes (files opened on ``IPC$``) carry
DCE/RPC: WRITE requests, READ responses and FSCTL_PIPE_TRANSCEIVE IOCTLs on a pipe feed one
``dcerpc.Conversation`` per FileId.

Bulk data is never held: a PDU's first ``_PEEK`` bytes are read, then only what the message
needs -- the fixed part of a WRITE request or READ response (the data is skipped unless the
file is a pipe), the transform header of an encrypted message, else the whole PDU up to
``base.MAX_PDU_KEEP``.
"""

from __future__ import annotations

import re
from typing import Any

from flowaudit.dissect.smb import dialect_name
from flowaudit.stream.base import MAX_PDU_KEEP, At, Framed, Record

try:  # written alongside this module; SMB is read without it when it is absent
    from flowaudit.stream import auth as _auth
except ImportError:  # pragma: no cover - only while the module is missing
    _auth = None  # type: ignore[assignment]
try:
    from flowaudit.stream import dcerpc as _dcerpc
except ImportError:  # pragma: no cover - only while the module is missing
    _dcerpc = None  # type: ignore[assignment]

PROTOCOL = "smb"
TRANSPORTS = ("tcp",)

SMB1_MAGIC = b"\xffSMB"
SMB2_MAGIC = b"\xfeSMB"
TRANSFORM_MAGIC = b"\xfdSMB"  # [MS-SMB2] 2.2.41
COMPRESSION_MAGIC = b"\xfcSMB"  # [MS-SMB2] 2.2.42
MAGICS = (SMB1_MAGIC, SMB2_MAGIC, TRANSFORM_MAGIC, COMPRESSION_MAGIC)

# RFC 1002 4.3.1 session packet types: SESSION MESSAGE carries SMB; REQUEST, POSITIVE and
# NEGATIVE RESPONSE, RETARGET set the session up on port 139; KEEP ALIVE may come anywhere.
_SESSION_MESSAGE = 0x00
_SESSION_REQUEST = 0x81
_NBSS_TYPES = frozenset({0x00, 0x81, 0x82, 0x83, 0x84, 0x85})
_NETBIOS_PORT = 139

_PEEK = 256  # bytes of a PDU read before deciding how much of it to keep
_WHOLE, _FIRST, _SECOND = 0, 1, 2  # reading a PDU whole / its first _PEEK bytes / the rest
# Four-byte NetBIOS frames without a payload: a session message of length 0, a keep-alive.
_EMPTY_FRAMES = re.compile(rb"(?:\x00\x00\x00\x00|\x85\x00\x00\x00)+")
_MAX_COMPOUND = 64
_MAX_ANDX = 8
_MAX_TEXT = 256
_MAX_PENDING = 4096  # requests awaiting their response
_MAX_HANDLES = 4096  # open FileIds / TreeIds remembered
_MAX_FILES = 64
_MAX_TREES = 64
_MAX_PIPES = 64
_MAX_DIALECTS = 64

# [MS-SMB2] 2.2.1: the 64-byte header.
_H = 64
_FLAGS_SERVER_TO_REDIR = 0x1
_FLAGS_ASYNC_COMMAND = 0x2
_FLAGS_RELATED_OPERATIONS = 0x4
_FLAGS_SIGNED = 0x8
_NO_MESSAGE = 0xFFFFFFFFFFFFFFFF  # [MS-SMB2] 3.2.5.19.1 unsolicited OPLOCK_BREAK notification
_NO_FILE = b"\xff" * 16  # [MS-SMB2] 3.2.4.1.4: "the FileId of the previous CREATE" in a chain
_NO_TREE = 0xFFFFFFFF

COMMANDS = (
    "NEGOTIATE",
    "SESSION_SETUP",
    "LOGOFF",
    "TREE_CONNECT",
    "TREE_DISCONNECT",
    "CREATE",
    "CLOSE",
    "FLUSH",
    "READ",
    "WRITE",
    "LOCK",
    "IOCTL",
    "CANCEL",
    "ECHO",
    "QUERY_DIRECTORY",
    "CHANGE_NOTIFY",
    "QUERY_INFO",
    "SET_INFO",
    "OPLOCK_BREAK",
    "SERVER_TO_CLIENT_NOTIFICATION",  # [MS-SMB2] 2.2.44 (3.1.1)
)
(
    _NEGOTIATE,
    _SESSION_SETUP,
    _LOGOFF,
    _TREE_CONNECT,
    _TREE_DISCONNECT,
    _CREATE,
    _CLOSE,
    _FLUSH,
    _READ,
    _WRITE,
    _LOCK,
    _IOCTL,
    _CANCEL,
    _ECHO,
    _QUERY_DIRECTORY,
    _CHANGE_NOTIFY,
    _QUERY_INFO,
    _SET_INFO,
    _OPLOCK_BREAK,
) = range(19)

# Where the FileId lies in each request body ([MS-SMB2] 2.2.15 CLOSE, 2.2.17 FLUSH, 2.2.19
# READ, 2.2.21 WRITE, 2.2.26 LOCK, 2.2.31 IOCTL, 2.2.33 QUERY_DIRECTORY, 2.2.35 CHANGE_NOTIFY,
# 2.2.37 QUERY_INFO, 2.2.39 SET_INFO, 2.2.24 OPLOCK_BREAK acknowledgment), with the body's
# StructureSize that must precede it.
_FILE_ID_AT = {
    _CLOSE: (24, 8),
    _FLUSH: (24, 8),
    _READ: (49, 16),
    _WRITE: (49, 16),
    _LOCK: (48, 8),
    _IOCTL: (57, 8),
    _QUERY_DIRECTORY: (33, 8),
    _CHANGE_NOTIFY: (32, 8),
    _QUERY_INFO: (41, 24),
    _SET_INFO: (33, 16),
    _OPLOCK_BREAK: (24, 8),
}

_FSCTL_PIPE_TRANSCEIVE = 0x0011C017  # [MS-FSCC] 2.3.49
_SHARE_TYPE_PIPE = 0x02  # [MS-SMB2] 2.2.10 ShareType
# [MS-SMB2] 2.2.6 SessionFlags.
_SESSION_FLAGS = ((0x1, "IS_GUEST"), (0x2, "IS_NULL"), (0x4, "ENCRYPT_DATA"))

# [MS-ERREF] 2.3.1 NTSTATUS values.
STATUS_SUCCESS = 0x00000000
STATUS_PENDING = 0x00000103
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
_SESSION_OK = (STATUS_SUCCESS, STATUS_MORE_PROCESSING_REQUIRED)
NT_STATUS = {
    0x00000000: "STATUS_SUCCESS",
    0x00000103: "STATUS_PENDING",
    0x00000107: "STATUS_SOME_NOT_MAPPED",
    0x0000010B: "STATUS_NOTIFY_CLEANUP",
    0x0000010C: "STATUS_NOTIFY_ENUM_DIR",
    0x80000005: "STATUS_BUFFER_OVERFLOW",
    0x80000006: "STATUS_NO_MORE_FILES",
    0x8000002D: "STATUS_STOPPED_ON_SYMLINK",
    0xC0000001: "STATUS_UNSUCCESSFUL",
    0xC0000002: "STATUS_NOT_IMPLEMENTED",
    0xC0000003: "STATUS_INVALID_INFO_CLASS",
    0xC0000004: "STATUS_INFO_LENGTH_MISMATCH",
    0xC0000008: "STATUS_INVALID_HANDLE",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC000000E: "STATUS_NO_SUCH_DEVICE",
    0xC000000F: "STATUS_NO_SUCH_FILE",
    0xC0000010: "STATUS_INVALID_DEVICE_REQUEST",
    0xC0000011: "STATUS_END_OF_FILE",
    0xC0000016: "STATUS_MORE_PROCESSING_REQUIRED",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC0000023: "STATUS_BUFFER_TOO_SMALL",
    0xC0000033: "STATUS_OBJECT_NAME_INVALID",
    0xC0000034: "STATUS_OBJECT_NAME_NOT_FOUND",
    0xC0000035: "STATUS_OBJECT_NAME_COLLISION",
    0xC000003A: "STATUS_OBJECT_PATH_NOT_FOUND",
    0xC0000043: "STATUS_SHARING_VIOLATION",
    0xC000004F: "STATUS_EAS_NOT_SUPPORTED",
    0xC0000054: "STATUS_FILE_LOCK_CONFLICT",
    0xC0000055: "STATUS_LOCK_NOT_GRANTED",
    0xC0000056: "STATUS_DELETE_PENDING",
    0xC000005E: "STATUS_NO_LOGON_SERVERS",
    0xC0000061: "STATUS_PRIVILEGE_NOT_HELD",
    0xC0000064: "STATUS_NO_SUCH_USER",
    0xC000006A: "STATUS_WRONG_PASSWORD",
    0xC000006D: "STATUS_LOGON_FAILURE",
    0xC000006E: "STATUS_ACCOUNT_RESTRICTION",
    0xC000006F: "STATUS_INVALID_LOGON_HOURS",
    0xC0000070: "STATUS_INVALID_WORKSTATION",
    0xC0000071: "STATUS_PASSWORD_EXPIRED",
    0xC0000072: "STATUS_ACCOUNT_DISABLED",
    0xC000007E: "STATUS_RANGE_NOT_LOCKED",
    0xC000007F: "STATUS_DISK_FULL",
    0xC000009A: "STATUS_INSUFFICIENT_RESOURCES",
    0xC00000A5: "STATUS_BAD_IMPERSONATION_LEVEL",
    0xC00000AC: "STATUS_PIPE_NOT_AVAILABLE",
    0xC00000AD: "STATUS_INVALID_PIPE_STATE",
    0xC00000AE: "STATUS_PIPE_BUSY",
    0xC00000B0: "STATUS_PIPE_DISCONNECTED",
    0xC00000B1: "STATUS_PIPE_CLOSING",
    0xC00000B5: "STATUS_IO_TIMEOUT",
    0xC00000BA: "STATUS_FILE_IS_A_DIRECTORY",
    0xC00000BB: "STATUS_NOT_SUPPORTED",
    0xC00000BE: "STATUS_BAD_NETWORK_PATH",
    0xC00000C9: "STATUS_NETWORK_NAME_DELETED",
    0xC00000CA: "STATUS_NETWORK_ACCESS_DENIED",
    0xC00000CC: "STATUS_BAD_NETWORK_NAME",
    0xC00000D0: "STATUS_REQUEST_NOT_ACCEPTED",
    0xC00000D9: "STATUS_PIPE_EMPTY",
    0xC0000101: "STATUS_DIRECTORY_NOT_EMPTY",
    0xC0000103: "STATUS_NOT_A_DIRECTORY",
    0xC0000120: "STATUS_CANCELLED",
    0xC0000121: "STATUS_CANNOT_DELETE",
    0xC0000128: "STATUS_FILE_CLOSED",
    0xC000014B: "STATUS_PIPE_BROKEN",
    0xC0000184: "STATUS_INVALID_DEVICE_STATE",
    0xC000018D: "STATUS_TRUSTED_RELATIONSHIP_FAILURE",
    0xC0000193: "STATUS_ACCOUNT_EXPIRED",
    0xC0000203: "STATUS_USER_SESSION_DELETED",
    0xC0000224: "STATUS_PASSWORD_MUST_CHANGE",
    0xC0000225: "STATUS_NOT_FOUND",
    0xC0000234: "STATUS_ACCOUNT_LOCKED_OUT",
    0xC0000257: "STATUS_PATH_NOT_COVERED",
    0xC0000275: "STATUS_NOT_A_REPARSE_POINT",
    0xC000035C: "STATUS_NETWORK_SESSION_EXPIRED",
}

# [MS-CIFS] 2.2.2.1 SMB_COM command codes (the ones seen in practice).
SMB1_COMMANDS = {
    0x00: "CREATE_DIRECTORY",
    0x01: "DELETE_DIRECTORY",
    0x02: "OPEN",
    0x03: "CREATE",
    0x04: "CLOSE",
    0x05: "FLUSH",
    0x06: "DELETE",
    0x07: "RENAME",
    0x08: "QUERY_INFORMATION",
    0x09: "SET_INFORMATION",
    0x0A: "READ",
    0x0B: "WRITE",
    0x10: "CHECK_DIRECTORY",
    0x24: "LOCKING_ANDX",
    0x25: "TRANSACTION",
    0x26: "TRANSACTION_SECONDARY",
    0x2B: "ECHO",
    0x2D: "OPEN_ANDX",
    0x2E: "READ_ANDX",
    0x2F: "WRITE_ANDX",
    0x32: "TRANSACTION2",
    0x33: "TRANSACTION2_SECONDARY",
    0x34: "FIND_CLOSE2",
    0x70: "TREE_CONNECT",
    0x71: "TREE_DISCONNECT",
    0x72: "NEGOTIATE",
    0x73: "SESSION_SETUP_ANDX",
    0x74: "LOGOFF_ANDX",
    0x75: "TREE_CONNECT_ANDX",
    0xA0: "NT_TRANSACT",
    0xA1: "NT_TRANSACT_SECONDARY",
    0xA2: "NT_CREATE_ANDX",
    0xA4: "NT_CANCEL",
}
_SMB1_H = 32  # [MS-CIFS] 2.2.3.1
_SMB1_NEGOTIATE = 0x72
_SMB1_SESSION_SETUP_ANDX = 0x73
_SMB1_TREE_CONNECT_ANDX = 0x75
_SMB1_NT_CREATE_ANDX = 0xA2
# [MS-CIFS] 2.2.3.4: commands whose words begin with AndXCommand, AndXReserved, AndXOffset.
_SMB1_ANDX = frozenset({0x24, 0x2D, 0x2E, 0x2F, 0x73, 0x74, 0x75, 0xA2})
_SMB1_BULK = frozenset({0x0A, 0x0B, 0x2E, 0x2F, 0x25, 0x26, 0x32, 0x33, 0xA0, 0xA1})
_SMB1_NO_ANDX = 0xFF
_SMB1_FLAGS_REPLY = 0x80
_SMB1_FLAGS2_NT_STATUS = 0x4000
_SMB1_FLAGS2_UNICODE = 0x8000
_SMB1_SIGNATURES_REQUIRED = 0x08  # [MS-CIFS] 2.2.4.52.2 SecurityMode


def _u8(data: bytes, offset: int) -> int:
    return data[offset] if 0 <= offset < len(data) else 0


def _u16(data: bytes, offset: int) -> int:
    """Little-endian fields; 0 past the end (callers check lengths where 0 would mislead)."""
    return int.from_bytes(data[offset : offset + 2], "little") if offset >= 0 else 0


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little") if offset >= 0 else 0


def _u64(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 8], "little") if offset >= 0 else 0


def _utf16(raw: bytes) -> str:
    return raw[: 2 * _MAX_TEXT].decode("utf-16-le", errors="replace")[:_MAX_TEXT]


def status_name(status: int) -> str:
    """[MS-ERREF] 2.3.1: the NTSTATUS name, or ``0x%08x``."""
    return NT_STATUS.get(status) or f"0x{status:08x}"


def _outcome(status: int) -> str:
    return "success" if status == STATUS_SUCCESS else status_name(status)


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """NetBIOS/Direct TCP framing around an SMB message, or a NetBIOS session message on 139."""
    if len(first) < 4:
        return False
    kind = first[0]
    if kind == _SESSION_MESSAGE:
        return first[4:8] in MAGICS
    if _NETBIOS_PORT in ports and kind in (0x81, 0x82, 0x85):
        return first[1] & 0xFE == 0  # RFC 1002 4.3.1: flags are zero but the length extension
    return False


def _netbios_name(encoded: bytes) -> str | None:
    """RFC 1001 14.1 first-level encoding: 32 letters 'A'+nibble make 16 bytes; the 16th is
    the suffix, the rest the name padded with spaces."""
    if len(encoded) < 33 or encoded[0] != 32:
        return None
    letters = encoded[1:33]
    if any(c < 0x41 or c > 0x50 for c in letters):  # 32 bytes: a bounded loop
        return None
    raw = bytes(((letters[k] - 0x41) << 4) | (letters[k + 1] - 0x41) for k in range(0, 32, 2))
    return raw[:15].decode("latin-1").rstrip(" ")[:_MAX_TEXT]


class _Tree:
    __slots__ = ("path", "pipe")

    def __init__(self, path: str, pipe: bool) -> None:
        self.path = path
        self.pipe = pipe


class _File:
    __slots__ = ("name", "not_rpc", "pipe", "rpc", "tree")

    def __init__(self, name: str, tree: str, pipe: bool) -> None:
        self.name = name
        self.tree = tree
        self.pipe = pipe
        self.rpc: Any = None
        self.not_rpc = False  # the pipe's first bytes were not DCE/RPC (e.g. PsExec's own)


class _Pending:
    """A request waiting for its response (by MessageId)."""

    __slots__ = ("command", "entry", "file", "file_id", "identity", "name", "transceive", "tree")

    def __init__(self, command: int, entry: dict[str, Any]) -> None:
        self.command = command
        self.entry = entry
        self.file: _File | None = None
        self.file_id = b""
        self.identity: dict[str, Any] | None = None
        self.name = ""  # CREATE: the name asked for; TREE_CONNECT: the path
        self.tree: _Tree | None = None
        self.transceive = False


class Conversation(Framed):
    """One SMB connection (both sides). See the module docstring."""

    PROTOCOL = PROTOCOL
    HEADER = 4

    def __init__(self, record: Record | None = None) -> None:
        super().__init__(record)
        # A PDU longer than _PEEK + 4 is read as two frames: its first _PEEK bytes, then the
        # rest (``_rest``: its length; ``_want``: how much of it to keep), see ``pdu_length``.
        self._phase = [_WHOLE, _WHOLE]
        self._lost = [False, False]  # bytes went missing where the PDU bounds are unknown
        self._tail = [b"", b""]  # while lost: the last bytes seen, for a header split in two
        self._rest = [0, 0]
        self._want = [0, 0]
        self._part = [b"", b""]
        self._full = [0, 0]  # length of the whole PDU being read
        self._pending: dict[int, _Pending] = {}
        self._pending1: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self._trees: dict[int, _Tree] = {}
        self._handles: dict[bytes, _File] = {}
        self._files: dict[tuple[str, str], dict[str, Any]] = {}
        self._files_dropped = 0
        self._tree_paths: list[str] = []
        self._trees_dropped = 0
        self._pipes = 0
        self._rpcs: list[tuple[str, Any]] = []
        self._dialect: str | None = None
        self._dialects_offered: list[str] = []
        self._smb1_dialects: list[str] = []
        self._signing_required: bool | None = None
        self._encrypted = False
        self._compressed = False
        self._session_flags: list[str] = []
        self._netbios: dict[str, str] = {}
        self._smb1_identity: dict[tuple[int, int], dict[str, Any]] = {}
        self._smb1_negotiate: dict[str, Any] | None = None  # awaiting its (maybe SMB2) answer
        self._auth = _auth.Auth(self.record, "smb2") if _auth is not None else None
        self._auth1 = _auth.Auth(self.record, "smb") if _auth is not None else None
        if _dcerpc is None:
            self.record.count("smb_pipes_unread_no_dcerpc")

    # --- framing -----------------------------------------------------------------------

    def pdu_length(self, side: int, head: bytes) -> int | None:
        if self._phase[side] == _SECOND:
            return self._rest[side]  # the rest of a long PDU: its length is known already
        if head[0] not in _NBSS_TYPES:
            return None
        total = 4 + int.from_bytes(head[1:4], "big")  # [MS-SMB2] 2.1: 24-bit length
        self._full[side] = total
        if total > _PEEK + 8:
            self._phase[side] = _FIRST  # read its first _PEEK bytes as a frame of their own
            self._rest[side] = total - _PEEK
            return _PEEK
        return total

    def keep(self, side: int, head: bytes, total: int) -> int:
        return self._want[side] if self._phase[side] == _SECOND else total

    def filler(self, side: int, data: memoryview) -> int:
        """Runs of empty session messages and keep-alives (RFC 1002 4.3.1, 4.3.7), which
        ``_message`` lets be, at a PDU boundary."""
        if self._phase[side] != _WHOLE:
            return 0
        found = _EMPTY_FRAMES.match(data)
        return found.end() if found is not None else 0

    def pdu(self, side: int, data: bytes, total: int, at: At) -> None:
        full = self._full[side]
        phase = self._phase[side]
        if phase == _SECOND:
            self._phase[side] = _WHOLE
            want = self._want[side]
            if want > 0:
                self._message(side, self._part[side] + data[:want], full, at)
            self._part[side] = b""
            return
        if phase == _FIRST:
            self._phase[side] = _SECOND
            need = min(self._need(data, full), full)
            if need > MAX_PDU_KEEP:
                self.record.truncate(f"smb: PDU past {MAX_PDU_KEEP} bytes")
                need = MAX_PDU_KEEP
            want = self._want[side] = max(0, need - len(data))
            if want:
                self._part[side] = data
            else:
                self._message(side, data, full, at)  # the rest is skipped unread
            return
        self._message(side, data, full, at)

    def _need(self, peek: bytes, full: int) -> int:
        """How many bytes of a PDU (from its NetBIOS header) the message reading needs."""
        magic = peek[4:8]
        if peek[0] != _SESSION_MESSAGE:
            return full
        if magic == TRANSFORM_MAGIC:
            return 4 + 52  # [MS-SMB2] 2.2.41: the transform header only
        if magic == COMPRESSION_MAGIC:
            return 4 + 16  # [MS-SMB2] 2.2.42
        if magic == SMB1_MAGIC:
            return 1024 if peek[8] in _SMB1_BULK else full
        if magic != SMB2_MAGIC:
            return full
        h = 4
        command = _u16(peek, h + 12)
        flags = _u32(peek, h + 16)
        if _u32(peek, h + 20):  # a compound chain: every header is needed
            return full
        response = flags & _FLAGS_SERVER_TO_REDIR
        if command == _WRITE and not response:
            file = self._handles.get(peek[h + _H + 16 : h + _H + 32])
            return full if file is not None and file.pipe else h + _H + 48
        if response and command in (_READ, _IOCTL, _QUERY_DIRECTORY, _QUERY_INFO, _CHANGE_NOTIFY):
            pending = self._pending.get(_u64(peek, h + 24))
            if (
                pending is not None
                and pending.file is not None
                and pending.file.pipe
                and (command == _READ or pending.transceive)
            ):
                return full
            return h + _H + 16  # the fixed part of each, 2.2.20/2.2.32/2.2.34/2.2.36/2.2.38
        if command == _IOCTL and not response:
            file = self._handles.get(peek[h + _H + 8 : h + _H + 24])
            if _u32(peek, h + _H + 4) == _FSCTL_PIPE_TRANSCEIVE and file is not None and file.pipe:
                return full
            return h + _H + 56
        return full

    # --- gaps: a missing stretch inside a PDU loses that PDU only ------------------------

    def gap(self, side: int, length: int, at: At) -> None:
        """Bytes the capture missed. Inside a PDU whose length is known, the part of it before
        the hole is read as a cut message and reading goes on at the next PDU; otherwise the
        side is searched for the next SMB header (a NetBIOS session message header before an
        SMB protocol id) and read again from there."""
        if self._dead[side] or length <= 0:
            return
        if self._lost[side]:
            self._tail[side] = b""
            self.record.count("bytes_missing", length)
            return
        if self.skip[side] >= length:
            super().gap(side, length, at)
            return
        total = self._total[side]
        remaining = -1  # bytes of the PDU being gathered still to come, when known
        if total >= 0:
            remaining = total - len(self._buf[side])
            if self._phase[side] == _FIRST:
                remaining += self._rest[side]
        elif self._phase[side] == _SECOND:  # between the first _PEEK bytes and the rest
            remaining = self._rest[side] - len(self._buf[side])
        if 0 <= length <= remaining:
            phase = self._phase[side]
            if not (phase == _SECOND and self._want[side] == 0):  # else read already
                head = self._part[side] if phase == _SECOND else b""
                seen = head + bytes(self._buf[side])[: self._want[side] if head else None]
                if len(seen) > 4:
                    self._message(side, seen, self._full[side], at)  # as far as it goes
            self._buf[side].clear()
            self._total[side] = -1
            self.skip[side] = remaining - length
            self._phase[side] = _WHOLE
            self._part[side] = b""
            self.record.count("bytes_missing", length)
            self.record.count("smb_pdus_lost")
            self.record.truncate("smb: PDUs cut by missing bytes")
            return
        self._buf[side].clear()
        self._total[side] = -1
        self.skip[side] = 0
        self._phase[side] = _WHOLE
        self._part[side] = b""
        self._lost[side] = True
        self._tail[side] = b""
        self.record.count("bytes_missing", length)
        self.record.truncate("smb: missing bytes, read again from the next SMB header")

    def data(self, side: int, data: bytes | memoryview, at: At) -> None:
        if not self._lost[side]:
            super().data(side, data, at)
            return
        if self._dead[side]:
            return
        chunk = self._tail[side] + bytes(data)
        start = self._header_at(chunk)
        if start < 0:
            self._tail[side] = chunk[-7:]  # a header may begin in these
            return
        self._lost[side] = False
        self._tail[side] = b""
        self.record.count("smb_resynchronised")
        super().data(side, chunk[start:], at)

    @staticmethod
    def _header_at(chunk: bytes) -> int:
        """Where the first SMB message header of ``chunk`` begins (with its 4-byte session
        header), or -1. Looked for with ``bytes.find``, one search per protocol id."""
        best = -1
        for magic in MAGICS:
            found = chunk.find(magic, 4)
            for _ in range(64):  # a few false starts (the id inside data) are passed over
                if found < 0 or (best >= 0 and found - 4 >= best):
                    break
                length = int.from_bytes(chunk[found - 3 : found], "big")
                if chunk[found - 4] == _SESSION_MESSAGE and length >= _SMB1_H:
                    best = found - 4
                    break
                found = chunk.find(magic, found + 1)
        return best

    # --- messages ----------------------------------------------------------------------

    def _message(self, side: int, pdu: bytes, full: int, at: At) -> None:
        kind = pdu[0]
        if kind == _SESSION_REQUEST:  # RFC 1002 4.3.2: called name, calling name
            called = _netbios_name(pdu[4:38])
            calling = _netbios_name(pdu[38:72])
            if called is not None:
                self._netbios["netbios_called"] = called
            if calling is not None:
                self._netbios["netbios_calling"] = calling
            return
        if kind != _SESSION_MESSAGE or full == 4:
            return  # responses to the session request, keep-alives
        message = pdu[4:]
        length = full - 4
        magic = message[:4]
        if magic == SMB2_MAGIC:
            self._smb2(side, message, length, at)
        elif magic == TRANSFORM_MAGIC:
            self._encrypted = True
            if len(message) >= 52:
                session = _u64(message, 44)
                self.record.op(at, side, "smb2", "ENCRYPTED", session_id=f"0x{session:016x}")
        elif magic == COMPRESSION_MAGIC:
            self._compressed = True
            self.record.count("smb2_compressed")
        elif magic == SMB1_MAGIC:
            self._smb1(side, message, at)
        elif len(magic) == 4 or length < 4:  # (a message cut by a hole before its protocol
            # id is let be; one too short to hold a protocol id is not SMB)
            self.stop(side, "smb: not smb any more")

    # SMB2 ------------------------------------------------------------------------------

    def _smb2(self, side: int, message: bytes, length: int, at: At) -> None:
        start = 0
        chain_file: _File | None = None  # the file a CREATE earlier in this chain opens
        chain_name: str | None = None
        chain_tree: _Tree | None = None
        for _ in range(_MAX_COMPOUND):
            header = message[start : start + _H]
            if len(header) < _H or header[:4] != SMB2_MAGIC:
                if start < length and start + _H > len(message):
                    self.record.truncate("smb: compound message cut at the PDU bound")
                return
            next_command = _u32(header, 20)
            end = start + next_command if next_command else len(message)
            body = message[start:end]
            if _u32(header, 16) & _FLAGS_SERVER_TO_REDIR:
                chain_file = self._response(side, body, at, chain_file)
            else:
                chain_name, chain_tree = self._request(side, body, at, chain_name, chain_tree)
            if next_command < _H or next_command % 8:
                return
            start += next_command

    def _request(
        self, side: int, msg: bytes, at: At, chain_name: str | None, chain_tree: _Tree | None
    ) -> tuple[str | None, _Tree | None]:
        command = _u16(msg, 12)
        flags = _u32(msg, 16)
        message_id = _u64(msg, 24)
        related = bool(flags & _FLAGS_RELATED_OPERATIONS)
        tree_id = _u32(msg, 36) if not flags & _FLAGS_ASYNC_COMMAND else _NO_TREE
        tree = self._trees.get(tree_id)
        if tree is None and related:
            tree = chain_tree
        name = COMMANDS[command] if command < len(COMMANDS) else f"0x{command:04x}"
        size = _u16(msg, _H)
        extra: dict[str, Any] = {"signed": bool(flags & _FLAGS_SIGNED)}
        target: str | None = None
        pending_name = ""
        file: _File | None = None
        file_id = b""
        identity: dict[str, Any] | None = None
        transceive = False
        b = _H
        if command == _NEGOTIATE and size == 36:
            # [MS-SMB2] 2.2.3: DialectCount at 2, Dialects at 36.
            count = min(_u16(msg, b + 2), _MAX_DIALECTS)
            raw = msg[b + 36 : b + 36 + 2 * count]
            for k in range(0, len(raw) - 1, 2):
                self._offer(dialect_name(int.from_bytes(raw[k : k + 2], "little")))
        elif command == _SESSION_SETUP and size == 25:
            # [MS-SMB2] 2.2.5: SecurityBufferOffset at 12, SecurityBufferLength at 14.
            blob = self._slice(msg, _u16(msg, b + 12), _u16(msg, b + 14))
            if blob and self._auth is not None:
                identity = self._auth.token(at, side, blob)
        elif command == _TREE_CONNECT and size == 9:
            # [MS-SMB2] 2.2.9: PathOffset at 4, PathLength at 6 (UTF-16LE \\server\share).
            raw = self._slice(msg, _u16(msg, b + 4), _u16(msg, b + 6))
            target = pending_name = _utf16(raw)
            self._tree_path(target)
        elif command == _CREATE and size == 57:
            # [MS-SMB2] 2.2.13: DesiredAccess at 24, NameOffset at 44, NameLength at 46.
            extra["desired_access"] = f"0x{_u32(msg, b + 24):08x}"
            raw = self._slice(msg, _u16(msg, b + 44), _u16(msg, b + 46))
            target = pending_name = _utf16(raw)
            chain_name, chain_tree = target, tree
        elif command in _FILE_ID_AT and size == _FILE_ID_AT[command][0]:
            at_file = b + _FILE_ID_AT[command][1]
            file_id = msg[at_file : at_file + 16]
            file = self._handles.get(file_id)
            if file is not None:
                target = file.name
            elif file_id == _NO_FILE and related and chain_name is not None:
                target = chain_name
            if command == _IOCTL:
                code = _u32(msg, b + 4)
                extra["ctl_code"] = f"0x{code:08x}"
                transceive = code == _FSCTL_PIPE_TRANSCEIVE
                if transceive and file is not None and file.pipe:
                    # [MS-SMB2] 2.2.31: InputOffset at 24, InputCount at 28.
                    self._pipe(file, side, msg, _u32(msg, b + 24), _u32(msg, b + 28), at)
            elif command == _WRITE:
                # [MS-SMB2] 2.2.21: DataOffset at 2, Length at 4.
                count = _u32(msg, b + 4)
                if file is not None:
                    self._bytes(file, "bytes_written", count)
                    if file.pipe:
                        self._pipe(file, side, msg, _u16(msg, b + 2), count, at)
        elif command == _TREE_DISCONNECT and tree is not None:
            target = tree.path
        entry = self.record.op(at, side, "smb2", name, target=target, **extra)
        if command != _CANCEL:  # [MS-SMB2] 2.2.30: CANCEL names another request's MessageId
            pending = _Pending(command, entry)
            pending.name = pending_name
            pending.tree = tree
            pending.file = file
            pending.file_id = file_id
            pending.identity = identity
            pending.transceive = transceive
            if len(self._pending) >= _MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
                self.record.count("smb_pending_dropped")
            self._pending[message_id] = pending
        return chain_name, chain_tree

    def _response(self, side: int, msg: bytes, at: At, chain_file: _File | None) -> _File | None:
        command = _u16(msg, 12)
        flags = _u32(msg, 16)
        status = _u32(msg, 8)
        message_id = _u64(msg, 24)
        name = COMMANDS[command] if command < len(COMMANDS) else f"0x{command:04x}"
        pending = self._pending.get(message_id) if message_id != _NO_MESSAGE else None
        if pending is None and command == _NEGOTIATE and self._smb1_negotiate is not None:
            # [MS-SMB2] 3.3.5.3.1: an SMB2 NEGOTIATE response answers an SMB1 multi-protocol
            # NEGOTIATE request; it is that operation's status.
            self._smb1_negotiate["status"] = status_name(status)
            pending = _Pending(command, self._smb1_negotiate)
            self._smb1_negotiate = None
        elif pending is None or pending.command != command:
            # No request seen (the capture began later, or a server notification): the
            # response is the operation.
            entry = self.record.op(
                at,
                side,
                "smb2",
                name,
                status=status_name(status),
                signed=bool(flags & _FLAGS_SIGNED),
            )
            pending = _Pending(command, entry)
        elif status == STATUS_PENDING and flags & _FLAGS_ASYNC_COMMAND:
            # [MS-SMB2] 3.3.4.2: an interim response; the final one has the same MessageId.
            pending.entry.setdefault("status", status_name(status))
            return chain_file
        else:
            pending.entry["status"] = status_name(status)
            self._pending.pop(message_id, None)
        size = _u16(msg, _H)
        b = _H
        file = pending.file
        if file is None and pending.file_id == _NO_FILE:
            file = chain_file
        if command == _NEGOTIATE and size == 65:
            # [MS-SMB2] 2.2.4: SecurityMode at 2, DialectRevision at 4.
            revision = _u16(msg, b + 4)
            if revision != 0x02FF or self._dialect is None:
                self._dialect = dialect_name(revision)
            self._signing_required = bool(_u16(msg, b + 2) & 0x2)
        elif command == _SESSION_SETUP and size == 9 and status in _SESSION_OK:
            # [MS-SMB2] 2.2.6: SessionFlags at 2, SecurityBufferOffset at 4, Length at 6 (an
            # error answer is an ERROR response, 2.2.2, whose StructureSize is 9 as well).
            session_flags = _u16(msg, b + 2)
            for bit, flag in _SESSION_FLAGS:
                if session_flags & bit and flag not in self._session_flags:
                    self._session_flags.append(flag)
            blob = self._slice(msg, _u16(msg, b + 4), _u16(msg, b + 6))
            if blob and self._auth is not None:
                self._auth.token(at, side, blob)
        if command == _SESSION_SETUP and status != STATUS_MORE_PROCESSING_REQUIRED:
            if self._auth is not None:
                self._auth.outcome(_outcome(status), pending.identity)
        elif command == _TREE_CONNECT and size == 16 and status == STATUS_SUCCESS:
            # [MS-SMB2] 2.2.10: ShareType at 2; the TreeId is in the response's header.
            path = pending.name
            pipe = _u8(msg, b + 2) == _SHARE_TYPE_PIPE or path.upper().endswith("\\IPC$")
            self._remember(self._trees, _u32(msg, 36), _Tree(path, pipe))
        elif command == _CREATE and size == 89 and status == STATUS_SUCCESS:
            # [MS-SMB2] 2.2.14: FileId at 64.
            tree = pending.tree
            file = _File(pending.name, tree.path if tree else "", bool(tree and tree.pipe))
            self._remember(self._handles, msg[b + 64 : b + 80], file)
            chain_file = file
        elif command == _CLOSE and pending.file_id:
            self._handles.pop(pending.file_id, None)
        elif command == _READ and size == 17 and file is not None:
            # [MS-SMB2] 2.2.20: DataOffset (one byte) at 2, DataLength at 4.
            count = _u32(msg, b + 4)
            self._bytes(file, "bytes_read", count)
            if file.pipe:
                self._pipe(file, side, msg, _u8(msg, b + 2), count, at)
        elif command == _IOCTL and size == 49 and file is not None and file.pipe:
            # [MS-SMB2] 2.2.32: OutputOffset at 32, OutputCount at 36.
            output = _u32(msg, b + 32), _u32(msg, b + 36)
            if pending.transceive:
                self._pipe(file, side, msg, output[0], output[1], at)
        return chain_file

    # SMB1 ------------------------------------------------------------------------------

    def _smb1(self, side: int, msg: bytes, at: At) -> None:
        """[MS-CIFS] 2.2.3.1 header: Command at 4, Status at 5, Flags at 9, Flags2 at 10,
        PIDHigh at 12, TID at 24, PIDLow at 26, UID at 28, MID at 30; then the command's
        words and bytes, and the AndX commands chained after them ([MS-CIFS] 2.2.3.4)."""
        if len(msg) < _SMB1_H + 1:
            return
        command = msg[4]
        flags2 = _u16(msg, 10)
        reply = bool(msg[9] & _SMB1_FLAGS_REPLY)
        key = (_u16(msg, 12) << 16 | _u16(msg, 26), _u16(msg, 30))  # PID, MID
        code = _u32(msg, 5)
        if flags2 & _SMB1_FLAGS2_NT_STATUS:
            status = status_name(code)
        elif code == 0:
            status = "STATUS_SUCCESS"
        else:  # [MS-CIFS] 2.2.1.4.2 SMB_ERROR: ErrorClass, Reserved, ErrorCode
            status = f"DOS 0x{msg[5]:02x}/0x{_u16(msg, 7):04x}"
        unicode = bool(flags2 & _SMB1_FLAGS2_UNICODE)
        entries = self._pending1.pop(key, []) if reply else []
        for entry in entries:
            entry["status"] = status  # one status for the whole chain
        block = _SMB1_H
        for index in range(_MAX_ANDX):
            if block >= len(msg):
                return
            name = SMB1_COMMANDS.get(command) or f"0x{command:02x}"
            if reply:
                if index >= len(entries):
                    entries.append(self.record.op(at, side, "smb", name, status=status))
                self._smb1_reply(side, msg, command, block, at, key, code, status)
            else:
                target = self._smb1_request(side, msg, command, block, unicode, at, key)
                entry = self.record.op(at, side, "smb", name, target=target)
                if command == _SMB1_NEGOTIATE:
                    self._smb1_negotiate = entry
                if len(self._pending1) >= _MAX_PENDING:
                    self._pending1.pop(next(iter(self._pending1)))
                self._pending1.setdefault(key, []).append(entry)
            if command not in _SMB1_ANDX or msg[block] < 2:
                return
            # [MS-CIFS] 2.2.3.4: AndXCommand at 1, AndXOffset at 3 of the words.
            command = msg[block + 1] if block + 1 < len(msg) else _SMB1_NO_ANDX
            next_block = _u16(msg, block + 3)
            if command == _SMB1_NO_ANDX or next_block <= block:
                return
            block = next_block

    def _smb1_request(
        self,
        side: int,
        msg: bytes,
        command: int,
        block: int,
        unicode: bool,
        at: At,
        key: tuple[int, int],
    ) -> str | None:
        word_count = msg[block]
        data = block + 1 + 2 * word_count + 2  # past the words and ByteCount
        if command == _SMB1_NEGOTIATE:
            # [MS-CIFS] 2.2.4.52.1: 0x02-prefixed, NUL-ended dialect strings.
            pieces = msg[data : data + _u16(msg, data - 2)].split(b"\x00")[:-1]
            for piece in pieces[:_MAX_DIALECTS]:
                if piece[:1] == b"\x02":
                    text = piece[1:].decode("latin-1")[:_MAX_TEXT]
                    self._smb1_dialects.append(text)
                    self._offer(text)
        elif command == _SMB1_SESSION_SETUP_ANDX:
            identity = None
            if word_count == 12 and self._auth1 is not None:
                # [MS-SMB] 2.2.4.6.1: SecurityBlobLength at byte 14 of the words.
                blob = msg[data : data + _u16(msg, block + 1 + 14)]
                if blob:
                    identity = self._auth1.token(at, side, blob)
            elif word_count == 13:
                identity = self._smb1_ntlm(msg, block, data, unicode)
            if identity is not None:
                if len(self._smb1_identity) >= _MAX_PENDING:
                    self._smb1_identity.pop(next(iter(self._smb1_identity)))
                self._smb1_identity[key] = identity
        elif command == _SMB1_TREE_CONNECT_ANDX and word_count == 4:
            # [MS-CIFS] 2.2.4.55.1: PasswordLength at byte 6 of the words; Password, Path.
            path, _ = self._smb1_string(msg, data + _u16(msg, block + 1 + 6), unicode)
            if path is not None:
                self._tree_path(path)
            return path
        elif command == _SMB1_NT_CREATE_ANDX and word_count == 24:
            # [MS-CIFS] 2.2.4.64.1: the FileName is the bytes (Unicode: after a pad byte).
            return self._smb1_string(msg, data, unicode)[0]
        return None

    def _smb1_reply(
        self,
        side: int,
        msg: bytes,
        command: int,
        block: int,
        at: At,
        key: tuple[int, int],
        code: int,
        status: str,
    ) -> None:
        word_count = msg[block]
        if command == _SMB1_NEGOTIATE:
            self._smb1_negotiate = None
        if command == _SMB1_NEGOTIATE and word_count >= 1:
            # [MS-CIFS] 2.2.4.52.2: DialectIndex, then (NT LM 0.12) SecurityMode.
            index = _u16(msg, block + 1)
            if index < len(self._smb1_dialects) and self._dialect is None:
                self._dialect = self._smb1_dialects[index]
            if word_count == 17 and len(msg) > block + 3:
                self._signing_required = bool(msg[block + 3] & _SMB1_SIGNATURES_REQUIRED)
        elif command == _SMB1_SESSION_SETUP_ANDX and self._auth1 is not None:
            if word_count == 4:
                # [MS-SMB] 2.2.4.6.2: SecurityBlobLength at byte 6 of the words.
                data = block + 1 + 8 + 2
                blob = msg[data : data + _u16(msg, block + 1 + 6)]
                if blob:
                    self._auth1.token(at, side, blob)
            if code != STATUS_MORE_PROCESSING_REQUIRED:
                identity = self._smb1_identity.pop(key, None)
                self._auth1.outcome("success" if status == "STATUS_SUCCESS" else status, identity)

    def _smb1_ntlm(self, msg: bytes, block: int, data: int, unicode: bool) -> dict[str, Any] | None:
        """[MS-CIFS] 2.2.4.53.1 (no extended security): OEMPasswordLen at byte 14 of the
        words, UnicodePasswordLen at 16; the bytes hold the two passwords (the LM and NT
        challenge responses), then AccountName and PrimaryDomain."""
        oem = _u16(msg, block + 1 + 14)
        nt = _u16(msg, block + 1 + 16)
        account, after = self._smb1_string(msg, data + oem + nt, unicode)
        if account is None:
            return None
        domain, _ = self._smb1_string(msg, after, unicode)
        if not account and nt == 0 and oem <= 1:
            method = "anonymous"
        elif nt > 24:
            method = "NTLMv2"  # [MS-NLMP] 3.3.2: an NTLMv2 response is longer than 24 bytes
        else:
            method = "NTLMv1"
        entry: dict[str, Any] = {
            "protocol": "ntlm",
            "account": account,
            "domain": domain or "",
            "method": method,
            "carrier": "smb",
            "outcome": None,
        }
        return self.record.identity(entry)

    @staticmethod
    def _smb1_string(msg: bytes, at: int, unicode: bool) -> tuple[str | None, int]:
        """A NUL-ended string and the offset past its NUL; Unicode ones start at an even offset
        from the header ([MS-CIFS] 2.2.1.1)."""
        if unicode:
            at += at % 2
            raw = msg[at : at + 2 * 1024]
            end = 0
            for _ in range(1024):  # each turn moves on by at least one byte
                end = raw.find(b"\x00\x00", end)
                if end < 0:
                    break
                if end % 2 == 0:
                    return _utf16(raw[:end]), at + end + 2
                end += 1
            return None, at
        raw = msg[at : at + 1024]
        end = raw.find(b"\x00")
        if end < 0:
            return None, at
        return raw[:end].decode("latin-1")[:_MAX_TEXT], at + end + 1

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def _slice(msg: bytes, offset: int, length: int) -> bytes:
        if offset < _H or length <= 0:
            return b""
        return msg[offset : offset + length]

    def _offer(self, name: str) -> None:
        if name not in self._dialects_offered and len(self._dialects_offered) < _MAX_DIALECTS:
            self._dialects_offered.append(name)

    def _tree_path(self, path: str) -> None:
        if path in self._tree_paths:
            return
        if len(self._tree_paths) < _MAX_TREES:
            self._tree_paths.append(path)
        else:
            self._trees_dropped += 1

    def _remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if key not in table and len(table) >= _MAX_HANDLES:
            table.pop(next(iter(table)))
            self.record.count("smb_handles_dropped")
        table[key] = value

    def _bytes(self, file: _File, field: str, count: int) -> None:
        key = (file.tree, file.name)
        stats = self._files.get(key)
        if stats is None:
            if len(self._files) >= _MAX_FILES:
                self._files_dropped += 1
                self._files[key] = {}  # counted once; its bytes are not kept
                return
            stats = self._files[key] = {
                "name": file.name,
                "tree": file.tree,
                "bytes_read": 0,
                "bytes_written": 0,
                "pipe": file.pipe,
            }
        if stats:
            stats[field] += count

    def _pipe(self, file: _File, side: int, msg: bytes, offset: int, count: int, at: At) -> None:
        """DCE/RPC bytes on a named pipe go to that pipe's reader ([MS-SMB2] 3.2.4.6 / 3.2.4.7:
        reads and writes on a pipe carry the RPC stream; [MS-FSCC] 2.3.49 TRANSCEIVE)."""
        if _dcerpc is None or count <= 0 or offset < _H:
            return
        if file.not_rpc:
            return
        if file.rpc is None:
            # [C706] 12.6.3.1: a connection-oriented PDU opens with rpc_vers 5, rpc_vers_minor
            # 0 or 1. Other pipes (an application's own protocol) are not given to the reader.
            if msg[offset : offset + 1] != b"\x05" or _u8(msg, offset + 1) > 1:
                file.not_rpc = True
                self.record.count("smb_pipes_not_rpc")
                return
            if self._pipes >= _MAX_PIPES:
                self.record.count("smb_pipes_unread")
                return
            self._pipes += 1
            try:
                file.rpc = _dcerpc.Conversation(self.record, carrier="smb-pipe", pipe=file.name)
            except Exception:
                self.record.count("smb_pipe_reader_failed")
                return
            self._rpcs.append((file.name, file.rpc))
        data = msg[offset : offset + count]
        try:
            file.rpc.data(side, data, at)
            if len(data) < count:
                file.rpc.gap(side, count - len(data), at)
        except Exception:
            self.record.count("smb_pipe_reader_failed")

    # --- results -----------------------------------------------------------------------

    def end(self) -> None:
        for _, rpc in self._rpcs:
            try:
                rpc.end()
            except Exception:
                self.record.count("smb_pipe_reader_failed")

    def facts(self) -> dict[str, Any]:
        files = [stats for stats in self._files.values() if stats]
        facts: dict[str, Any] = {
            "dialect": self._dialect,
            "dialects_offered": list(self._dialects_offered),
            "signing_required": self._signing_required,
            "encrypted": self._encrypted,
            "session_flags": list(self._session_flags),
            "trees": list(self._tree_paths),
            "files": [dict(stats) for stats in files],
        }
        if self._trees_dropped:
            facts["trees_dropped"] = self._trees_dropped
        if self._files_dropped:
            facts["files_dropped"] = self._files_dropped
        if self._compressed:
            facts["compressed"] = True
        facts.update(self._netbios)
        for auth in (self._auth, self._auth1):
            if auth is not None:
                try:
                    more = auth.facts()
                except Exception:
                    more = {}
                if more:
                    facts.setdefault("auth", {}).update(more)
        pipes = []
        for name, rpc in self._rpcs:
            try:
                pipes.append({"pipe": name, **rpc.facts()})
            except Exception:
                pipes.append({"pipe": name})
        if pipes:
            facts["pipes"] = pipes
        return facts
