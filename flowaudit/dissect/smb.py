"""SMB: dialect, signing, encryption and share names from the first bytes of an SMB connection.

Reads SMB1 ([MS-CIFS], [MS-SMB]) and SMB2/SMB3 ([MS-SMB2]) messages in Direct TCP or NetBIOS
session framing: the server's NEGOTIATE response gives the dialect and its signing policy, the
SESSION_SETUP and TREE_CONNECT responses and the SMB3 transform header tell whether traffic is
encrypted, and TREE_CONNECT requests name the shares the client opens.
"""

from __future__ import annotations

import re
from typing import Any

PROTOCOL = "smb"
TRANSPORTS = ("tcp",)

SMB1_MAGIC = b"\xffSMB"
SMB2_MAGIC = b"\xfeSMB"
TRANSFORM_MAGIC = b"\xfdSMB"  # [MS-SMB2] 2.2.41 SMB2 TRANSFORM_HEADER: the message is encrypted
COMPRESSION_MAGIC = b"\xfcSMB"  # [MS-SMB2] 2.2.42 SMB2 COMPRESSION_TRANSFORM_HEADER
MAGICS = (SMB1_MAGIC, SMB2_MAGIC, TRANSFORM_MAGIC, COMPRESSION_MAGIC)

# RFC 1002 4.3.1: session packet types; 0x00 SESSION MESSAGE carries SMB, the others are the
# NetBIOS session setup (REQUEST 0x81, POSITIVE 0x82 / NEGATIVE 0x83 RESPONSE, RETARGET 0x84)
# and KEEP ALIVE 0x85. [MS-SMB2] 2.1: Direct TCP (445) uses the same header, 0x00 + 24-bit length.
_SESSION_MESSAGE = 0x00
_SESSION_SETUP = frozenset({0x81, 0x82, 0x83, 0x84})
_KEEP_ALIVE = 0x85
# The first UTF-16 NUL at an even offset: what comes before it is the string.
_UTF16_END = re.compile(rb"(?:..)*?\x00\x00", re.DOTALL)
_KEEP_ALIVES = re.compile(rb"(?:\x85\x00\x00\x00)+")  # RFC 1002 4.3.7, no payload
_MAX_COMPOUND = 64  # headers followed along one compound chain
_MAX_TEXT = 256
_MAX_SHARES = 32

# [MS-SMB2] 2.2.1: the 64-byte SMB2 header.
_SMB2_HEADER = 64
_SMB2_FLAGS_SERVER_TO_REDIR = 0x1
_SMB2_FLAGS_SIGNED = 0x8
_SMB2_NEGOTIATE = 0x0000
_SMB2_SESSION_SETUP = 0x0001
_SMB2_TREE_CONNECT = 0x0003
_SMB2_WILDCARD_DIALECT = 0x02FF  # [MS-SMB2] 2.2.4: "SMB 2.???" answer to a multi-protocol NEGOTIATE
_SMB2_SIGNING_ENABLED = 0x1  # [MS-SMB2] 2.2.3 / 2.2.4 SecurityMode
_SMB2_SIGNING_REQUIRED = 0x2
_SMB2_SESSION_FLAG_ENCRYPT_DATA = 0x4  # [MS-SMB2] 2.2.6 SessionFlags
_SMB2_SHAREFLAG_ENCRYPT_DATA = 0x8000  # [MS-SMB2] 2.2.10 ShareFlags

# [MS-CIFS] 2.2.3.1: the 32-byte SMB1 header, then WordCount, words, ByteCount, bytes.
_SMB1_HEADER = 32
_SMB1_NEGOTIATE = 0x72
_SMB1_SESSION_SETUP_ANDX = 0x73
_SMB1_TREE_CONNECT_ANDX = 0x75
_SMB1_NO_ANDX = 0xFF
_SMB1_FLAGS2_SIGNATURE_REQUIRED = (
    0x0010  # [MS-SMB] 2.2.3.1 SMB_FLAGS2_SMB_SECURITY_SIGNATURE_REQUIRED
)
_SMB1_FLAGS2_UNICODE = 0x8000
_SMB1_SIGNATURES_ENABLED = 0x04  # [MS-CIFS] 2.2.4.52.2 SecurityMode
_SMB1_SIGNATURES_REQUIRED = 0x08


def _u8(data: bytes, offset: int) -> int | None:
    return data[offset] if 0 <= offset < len(data) else None


def _u16(data: bytes, offset: int) -> int | None:
    if offset < 0 or offset + 2 > len(data):
        return None
    return int.from_bytes(data[offset : offset + 2], "little")


def _u32(data: bytes, offset: int) -> int | None:
    if offset < 0 or offset + 4 > len(data):
        return None
    return int.from_bytes(data[offset : offset + 4], "little")


def _text(raw: bytes, encoding: str) -> str:
    return raw.decode(encoding, errors="replace")[:_MAX_TEXT]


def dialect_name(revision: int) -> str:
    """[MS-SMB2] 2.2.3 dialect revision as text: 0x0202 -> "2.0.2", 0x0210 -> "2.1", ..."""
    if revision == _SMB2_WILDCARD_DIALECT:
        return "2.???"
    major, minor, patch = revision >> 8, (revision >> 4) & 0xF, revision & 0xF
    if major not in (2, 3) or minor > 9 or patch > 9:
        return f"0x{revision:04x}"
    return f"{major}.{minor}" + (f".{patch}" if patch else "")


def session_messages(stream: bytes) -> list[bytes]:
    """The SMB messages of one direction (the last one may be cut at the window's end).

    Empty when the direction does not begin with NetBIOS/Direct TCP framing around an SMB
    message (a NetBIOS session request or response before it is skipped, keep-alives anywhere).
    """
    messages: list[bytes] = []
    offset = 0
    while offset + 4 <= len(stream):  # each turn moves on by at least the 4-byte header
        kind = stream[offset]
        if kind == _KEEP_ALIVE and (run := _KEEP_ALIVES.match(stream, offset)):
            offset = run.end()  # a run of them in one step
            continue
        length = int.from_bytes(stream[offset + 1 : offset + 4], "big")
        if kind == _SESSION_MESSAGE:
            body = stream[offset + 4 : offset + 4 + length]
            if length < 4 or body[:4] not in MAGICS:
                break
            messages.append(body)
        elif kind != _KEEP_ALIVE and (kind not in _SESSION_SETUP or messages):
            break
        offset += 4 + length
    return messages


class _Facts:
    """What the messages of both directions said, gathered as they are read."""

    def __init__(self) -> None:
        self.smb2 = False
        self.smb1_negotiate = False
        self.smb1_dialects: list[str] = []
        self.smb1_chosen: str | None = None
        self.smb2_dialect: int | None = None
        self.offered: list[str] = []
        self.signing_enabled: bool | None = None
        self.signing_required: bool | None = None
        self.client_signing_required: bool | None = None
        self.client_session_signing_required: bool | None = None
        self.signed = False
        self.encrypted = False
        self.tree_paths: list[str] = []

    # SMB2 --------------------------------------------------------------------------------

    def read_smb2(self, message: bytes, from_client: bool) -> None:
        """Every header of a compound chain ([MS-SMB2] 3.2.4.1.4: NextCommand links them)."""
        start = 0
        for _ in range(_MAX_COMPOUND):
            header = message[start:]
            if header[:4] != SMB2_MAGIC or len(header) < _SMB2_HEADER:
                return
            command = _u16(header, 12)
            flags = _u32(header, 16) or 0
            next_command = _u32(header, 20) or 0
            if flags & _SMB2_FLAGS_SIGNED:
                self.signed = True
            if from_client and not flags & _SMB2_FLAGS_SERVER_TO_REDIR:
                self._smb2_request(command, header)
            elif not from_client and flags & _SMB2_FLAGS_SERVER_TO_REDIR:
                self._smb2_response(command, header)
            if next_command < _SMB2_HEADER:
                return
            start += next_command

    def _smb2_request(self, command: int | None, header: bytes) -> None:
        body = _SMB2_HEADER
        if command == _SMB2_NEGOTIATE and _u16(header, body) == 36:
            # [MS-SMB2] 2.2.3: DialectCount at 2, SecurityMode at 4, Dialects at 36.
            count = _u16(header, body + 2) or 0
            mode = _u16(header, body + 4)
            if mode is not None:
                self.client_signing_required = bool(mode & _SMB2_SIGNING_REQUIRED)
            for k in range(min(count, 64)):
                revision = _u16(header, body + 36 + 2 * k)
                if revision is None:
                    break
                self._offer(dialect_name(revision))
        elif command == _SMB2_SESSION_SETUP and _u16(header, body) == 25:
            # [MS-SMB2] 2.2.5: Flags at 2, SecurityMode (one byte) at 3.
            mode = _u8(header, body + 3)
            if mode is not None:
                self.client_session_signing_required = bool(
                    self.client_session_signing_required or mode & _SMB2_SIGNING_REQUIRED
                )
        elif command == _SMB2_TREE_CONNECT and _u16(header, body) == 9:
            # [MS-SMB2] 2.2.9: PathOffset (from the header's start) at 4, PathLength at 6.
            path_offset, path_length = _u16(header, body + 4), _u16(header, body + 6)
            if path_offset is None or path_length is None:
                return
            raw = header[path_offset : path_offset + path_length]
            if len(raw) == path_length:
                self._tree(_text(raw, "utf-16-le"))

    def _smb2_response(self, command: int | None, header: bytes) -> None:
        body = _SMB2_HEADER
        if command == _SMB2_NEGOTIATE and _u16(header, body) == 65:
            # [MS-SMB2] 2.2.4: SecurityMode at 2, DialectRevision at 4.
            mode, revision = _u16(header, body + 2), _u16(header, body + 4)
            if mode is not None:
                self.signing_enabled = bool(mode & _SMB2_SIGNING_ENABLED)
                self.signing_required = bool(mode & _SMB2_SIGNING_REQUIRED)
            if revision is not None and (
                revision != _SMB2_WILDCARD_DIALECT or self.smb2_dialect is None
            ):
                self.smb2_dialect = revision
        elif command == _SMB2_SESSION_SETUP and _u16(header, body) == 9:
            session_flags = _u16(header, body + 2) or 0
            if session_flags & _SMB2_SESSION_FLAG_ENCRYPT_DATA:
                self.encrypted = True
        elif command == _SMB2_TREE_CONNECT and _u16(header, body) == 16:
            share_flags = _u32(header, body + 4) or 0
            if share_flags & _SMB2_SHAREFLAG_ENCRYPT_DATA:
                self.encrypted = True

    # SMB1 --------------------------------------------------------------------------------

    def read_smb1(self, message: bytes, from_client: bool, first: bool) -> None:
        command = _u8(message, 4)
        flags2 = _u16(message, 10) or 0
        if command == _SMB1_NEGOTIATE:
            if from_client:
                self._smb1_negotiate_request(message, flags2, first)
            else:
                self._smb1_negotiate_response(message)
            return
        if from_client:
            self._smb1_tree_connects(message, command, flags2)

    def _smb1_negotiate_request(self, message: bytes, flags2: int, first: bool) -> None:
        # [MS-CIFS] 2.2.4.52.1: no words; the bytes are 0x02-prefixed, NUL-ended dialect names.
        self.smb1_negotiate = self.smb1_negotiate or first
        if self.client_signing_required is None:
            self.client_signing_required = bool(flags2 & _SMB1_FLAGS2_SIGNATURE_REQUIRED)
        word_count = _u8(message, _SMB1_HEADER)
        if word_count is None:
            return
        start = _SMB1_HEADER + 1 + 2 * word_count + 2
        names = message[start:].split(b"\x00")
        complete = names[:-1]  # the last piece has no NUL yet: cut by the window, or empty
        for name in complete:
            if name[:1] != b"\x02":
                break
            text = _text(name[1:], "latin-1")
            self.smb1_dialects.append(text)
            self._offer(text)

    def _smb1_negotiate_response(self, message: bytes) -> None:
        # [MS-CIFS] 2.2.4.52.2: DialectIndex is the first word; the NT LM 0.12 form (17 words)
        # follows it with SecurityMode.
        word_count = _u8(message, _SMB1_HEADER)
        index = _u16(message, _SMB1_HEADER + 1)
        if index is not None and index < len(self.smb1_dialects):
            self.smb1_chosen = self.smb1_dialects[index]
        if word_count == 17:
            mode = _u8(message, _SMB1_HEADER + 3)
            if mode is not None:
                self.signing_enabled = bool(mode & _SMB1_SIGNATURES_ENABLED)
                self.signing_required = bool(mode & _SMB1_SIGNATURES_REQUIRED)

    def _smb1_tree_connects(self, message: bytes, command: int | None, flags2: int) -> None:
        """TREE_CONNECT_ANDX as the first command or chained after SESSION_SETUP_ANDX."""
        block = _SMB1_HEADER
        for _ in range(4):
            word_count = _u8(message, block)
            if word_count is None or command is None:
                return
            if command == _SMB1_TREE_CONNECT_ANDX:
                self._smb1_tree_connect(message, block, word_count, flags2)
            if command not in (_SMB1_SESSION_SETUP_ANDX, _SMB1_TREE_CONNECT_ANDX):
                return
            # [MS-CIFS] 2.2.3.4: AndXCommand, AndXReserved, AndXOffset lead the words.
            command = _u8(message, block + 1)
            and_x_offset = _u16(message, block + 3)
            if command == _SMB1_NO_ANDX or and_x_offset is None or and_x_offset <= block:
                return
            block = and_x_offset

    def _smb1_tree_connect(self, message: bytes, block: int, word_count: int, flags2: int) -> None:
        # [MS-CIFS] 2.2.4.55.1: words AndX(4), Flags(2), PasswordLength(2); bytes Password,
        # then Path (Unicode, aligned to two bytes from the header, if FLAGS2 says so).
        if word_count != 4:
            return
        password_length = _u16(message, block + 7)
        if password_length is None:
            return
        at = block + 1 + 2 * word_count + 2 + password_length
        if flags2 & _SMB1_FLAGS2_UNICODE:
            at += at % 2
            raw = message[at:]
            found = _UTF16_END.match(raw)
            if found is not None:
                self._tree(_text(raw[: found.end() - 2], "utf-16-le"))
        else:
            raw = message[at:]
            end = raw.find(b"\x00")
            if end >= 0:
                self._tree(_text(raw[:end], "latin-1"))

    # -------------------------------------------------------------------------------------

    def _offer(self, name: str) -> None:
        if name not in self.offered and len(self.offered) < 64:
            self.offered.append(name)

    def _tree(self, path: str) -> None:
        if path and path not in self.tree_paths and len(self.tree_paths) < _MAX_SHARES:
            self.tree_paths.append(path)

    def dialect(self) -> str | None:
        if self.smb2_dialect is not None:
            return dialect_name(self.smb2_dialect)
        return self.smb1_chosen

    def shares(self) -> list[str]:
        """The share part of each ``\\\\server\\share`` path (case as the client wrote it)."""
        names: list[str] = []
        for path in self.tree_paths:
            parts = path.lstrip("\\").split("\\")
            name = parts[1] if len(parts) > 1 else ""
            if name and name not in names:
                names.append(name)
        return names


def parse(c2s: bytes, s2c: bytes) -> dict[str, Any] | None:
    """Facts of an SMB connection, or ``None`` when neither direction starts as SMB.

    ``dialect`` and ``signing_*`` are the server's NEGOTIATE answer (the last one, after a
    wildcard answer to an SMB1 multi-protocol NEGOTIATE), ``dialects_offered`` what the client
    offered (SMB1 dialect strings, then SMB2 revisions), ``client_signing_required`` whether
    its NEGOTIATE or SESSION_SETUP request requires signing.
    """
    client_messages = session_messages(c2s)
    server_messages = session_messages(s2c)
    if not client_messages and not server_messages:
        return None
    facts = _Facts()
    for from_client, messages in ((True, client_messages), (False, server_messages)):
        for index, message in enumerate(messages):
            magic = message[:4]
            if magic == SMB1_MAGIC:
                facts.read_smb1(message, from_client, first=index == 0)
                continue
            facts.smb2 = True
            if magic == TRANSFORM_MAGIC:
                facts.encrypted = True
            elif magic == SMB2_MAGIC:
                facts.read_smb2(message, from_client)
    # The client may require signing in its NEGOTIATE or only in its SESSION_SETUP request.
    client_modes = (facts.client_signing_required, facts.client_session_signing_required)
    client_signing_required = any(client_modes) if client_modes != (None, None) else None
    return {
        "version": 2 if facts.smb2 else 1,
        "dialect": facts.dialect(),
        "dialects_offered": facts.offered,
        "smb1_negotiate": facts.smb1_negotiate,
        "signing_enabled": facts.signing_enabled,
        "signing_required": facts.signing_required,
        "client_signing_required": client_signing_required,
        "signed": facts.signed,
        "encrypted": facts.encrypted,
        "shares": facts.shares(),
        "tree_paths": facts.tree_paths,
    }
