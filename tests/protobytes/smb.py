"""Real SMB bytes for tests: SMB2/SMB3 ([MS-SMB2]) and SMB1 ([MS-CIFS], [MS-SMB]) messages.

Every message is returned framed for the wire: Direct TCP / NetBIOS session message header
(0x00 + 24-bit big-endian length, [MS-SMB2] 2.1, RFC 1002 4.3.1). Field layouts cite their
section; all integers are little-endian unless said otherwise.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

# [MS-SMB2] 2.2.1.2 commands and 2.2.1 flags.
NEGOTIATE = 0x0000
SESSION_SETUP = 0x0001
TREE_CONNECT = 0x0003
CREATE = 0x0005
FLAGS_SERVER_TO_REDIR = 0x00000001
FLAGS_SIGNED = 0x00000008

SIGNING_ENABLED = 0x0001  # [MS-SMB2] 2.2.3 / 2.2.4 SecurityMode
SIGNING_REQUIRED = 0x0002
SESSION_FLAG_IS_GUEST = 0x0001  # [MS-SMB2] 2.2.6 SessionFlags
SESSION_FLAG_ENCRYPT_DATA = 0x0004
SHARE_TYPE_DISK, SHARE_TYPE_PIPE = 0x01, 0x02  # [MS-SMB2] 2.2.10
SHAREFLAG_ENCRYPT_DATA = 0x00008000

STATUS_SUCCESS = 0x00000000
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016

DIALECT_202, DIALECT_210, DIALECT_300, DIALECT_302, DIALECT_311 = (
    0x0202,
    0x0210,
    0x0300,
    0x0302,
    0x0311,
)
DIALECT_WILDCARD = 0x02FF

# [MS-CIFS] 2.2.2.1 SMB1 commands; 2.2.3.1 Flags2; 2.2.4.52.2 SecurityMode.
SMB1_NEGOTIATE = 0x72
SMB1_TREE_CONNECT_ANDX = 0x75
SMB1_FLAGS2_LONG_NAMES = 0x0001
SMB1_FLAGS2_EAS = 0x0002
SMB1_FLAGS2_SIGNATURE_REQUIRED = 0x0010  # [MS-SMB] 2.2.3.1
SMB1_FLAGS2_EXTENDED_SECURITY = 0x0800
SMB1_FLAGS2_NT_STATUS = 0x4000
SMB1_FLAGS2_UNICODE = 0x8000
SMB1_USER_SECURITY = 0x01
SMB1_ENCRYPT_PASSWORDS = 0x02
SMB1_SIGNATURES_ENABLED = 0x04
SMB1_SIGNATURES_REQUIRED = 0x08
SMB1_CAP_EXTENDED_SECURITY = 0x80000000

# What Windows offers in its multi-protocol SMB1 NEGOTIATE ([MS-SMB2] 3.2.4.2.2.1).
WINDOWS_SMB1_DIALECTS = (
    "PC NETWORK PROGRAM 1.0",
    "LANMAN1.0",
    "Windows for Workgroups 3.1a",
    "LM1.2X002",
    "LANMAN2.1",
    "NT LM 0.12",
    "SMB 2.002",
    "SMB 2.???",
)

# A GSS-API SPNEGO NegTokenInit (RFC 4178 4.2.1) offering NTLMSSP (1.3.6.1.4.1.311.2.2.10).
SPNEGO_NEG_TOKEN_INIT = bytes.fromhex(
    "601c06062b0601050502a0123010a00e300c060a2b06010401823702020a"
)
# A SPNEGO NegTokenResp (RFC 4178 4.2.2) with negState accept-incomplete, as in a server's
# STATUS_MORE_PROCESSING_REQUIRED answer.
SPNEGO_ACCEPT_INCOMPLETE = bytes.fromhex("a1073005a0030a0101")
# An NTLMSSP NEGOTIATE_MESSAGE ([MS-NLMP] 2.2.1.1) with empty domain and workstation.
NTLMSSP_NEGOTIATE = b"NTLMSSP\x00" + struct.pack("<II", 1, 0xE2088297) + bytes(16)

SERVER_GUID = bytes(range(0x10, 0x20))
CLIENT_GUID = bytes(range(0x20, 0x30))


def frame(message: bytes) -> bytes:
    """Direct TCP transport ([MS-SMB2] 2.1): 0x00, then the length in 3 bytes, big-endian."""
    return b"\x00" + len(message).to_bytes(3, "big") + message


def _netbios_name(name: str, suffix: int) -> bytes:
    """RFC 1001 14.1 first-level encoding: 16 bytes (space padded + suffix), each nibble + 'A'."""
    raw = name.upper().encode("ascii")[:15].ljust(15, b" ") + bytes([suffix])
    encoded = bytes(ch for byte in raw for ch in (0x41 + (byte >> 4), 0x41 + (byte & 0xF)))
    return b"\x20" + encoded + b"\x00"


def netbios_session_request(called: str, calling: str) -> bytes:
    """RFC 1002 4.3.2 SESSION REQUEST (type 0x81): called name (suffix 0x20) and calling name."""
    body = _netbios_name(called, 0x20) + _netbios_name(calling, 0x00)
    return b"\x81\x00" + len(body).to_bytes(2, "big") + body


NETBIOS_POSITIVE_RESPONSE = b"\x82\x00\x00\x00"  # RFC 1002 4.3.3


def smb2_header(
    command: int,
    *,
    response: bool = False,
    signed: bool = False,
    status: int = STATUS_SUCCESS,
    message_id: int = 0,
    session_id: int = 0,
    tree_id: int = 0,
    next_command: int = 0,
    credits: int = 1,
) -> bytes:
    """[MS-SMB2] 2.2.1.2 SMB2 Packet Header - SYNC (64 bytes)."""
    flags = (FLAGS_SERVER_TO_REDIR if response else 0) | (FLAGS_SIGNED if signed else 0)
    signature = (
        hashlib.md5(struct.pack("<QH", message_id, command)).digest() if signed else bytes(16)
    )
    return struct.pack(
        "<4sHHIHHIIQIIQ16s",
        b"\xfeSMB",
        64,  # StructureSize
        1,  # CreditCharge
        status,
        command,
        credits,
        flags,
        next_command,
        message_id,
        0xFEFF,  # Reserved (ProcessId)
        tree_id,
        session_id,
        signature,
    )


def _preauth_integrity_context() -> bytes:
    """[MS-SMB2] 2.2.3.1.1 SMB2_PREAUTH_INTEGRITY_CAPABILITIES with SHA-512 and a 32-byte salt."""
    data = struct.pack("<HHH", 1, 32, 0x0001) + bytes(range(32))
    return struct.pack("<HHI", 0x0001, len(data), 0) + data


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def negotiate_request(
    dialects: Sequence[int], *, security_mode: int = SIGNING_ENABLED, message_id: int = 0
) -> bytes:
    """[MS-SMB2] 2.2.3 NEGOTIATE request; 3.1.1 offers carry a preauth integrity context."""
    header = smb2_header(NEGOTIATE, message_id=message_id)
    dialect_bytes = b"".join(struct.pack("<H", d) for d in dialects)
    contexts = b""
    context_offset = 0
    if DIALECT_311 in dialects:
        context_offset = len(header) + 36 + len(dialect_bytes)
        context_offset += -context_offset % 8
        contexts = _preauth_integrity_context()
    body = struct.pack(
        "<HHHHI16sIHH",
        36,  # StructureSize
        len(dialects),
        security_mode,
        0,
        0x7F,  # Capabilities: DFS, leasing, large MTU, multi-channel, ... ([MS-SMB2] 2.2.3)
        CLIENT_GUID,
        context_offset,
        1 if contexts else 0,
        0,
    )
    message = header + body + dialect_bytes
    if contexts:
        message = _pad8(message) + contexts
    return frame(message)


def negotiate_response(
    dialect: int,
    *,
    security_mode: int = SIGNING_ENABLED,
    security_blob: bytes = SPNEGO_NEG_TOKEN_INIT,
    message_id: int = 0,
) -> bytes:
    """[MS-SMB2] 2.2.4 NEGOTIATE response: SecurityMode, DialectRevision and a GSS token."""
    header = smb2_header(NEGOTIATE, response=True, message_id=message_id)
    blob_offset = 64 + 64
    contexts = _preauth_integrity_context() if dialect == DIALECT_311 else b""
    context_offset = 0
    if contexts:
        context_offset = blob_offset + len(security_blob)
        context_offset += -context_offset % 8
    body = struct.pack(
        "<HHHH16sIIIIQQHHI",
        65,  # StructureSize
        security_mode,
        dialect,
        1 if contexts else 0,  # NegotiateContextCount
        SERVER_GUID,
        0x2F,  # Capabilities
        8 * 1024 * 1024,  # MaxTransactSize
        8 * 1024 * 1024,  # MaxReadSize
        8 * 1024 * 1024,  # MaxWriteSize
        133_000_000_000_000_000,  # SystemTime (FILETIME)
        0,  # ServerStartTime
        blob_offset,
        len(security_blob),
        context_offset,
    )
    message = header + body + security_blob
    if contexts:
        message = _pad8(message) + contexts
    return frame(message)


def session_setup_request(
    *, security_mode: int = SIGNING_ENABLED, token: bytes = NTLMSSP_NEGOTIATE, message_id: int = 1
) -> bytes:
    """[MS-SMB2] 2.2.5 SESSION_SETUP request (SecurityMode is one byte here)."""
    header = smb2_header(SESSION_SETUP, message_id=message_id)
    body = struct.pack("<HBBIIHHQ", 25, 0, security_mode, 1, 0, 64 + 24, len(token), 0)
    return frame(header + body + token)


def session_setup_response(
    *,
    session_flags: int = 0,
    status: int = STATUS_SUCCESS,
    token: bytes = b"",
    session_id: int = 0x0000_1000_0000_0041,
    signed: bool = False,
    message_id: int = 1,
) -> bytes:
    """[MS-SMB2] 2.2.6 SESSION_SETUP response with its SessionFlags."""
    header = smb2_header(
        SESSION_SETUP,
        response=True,
        status=status,
        session_id=session_id,
        signed=signed,
        message_id=message_id,
    )
    body = struct.pack("<HHHH", 9, session_flags, 64 + 8 if token else 0, len(token))
    return frame(header + body + (token or b"\x00"))


def tree_connect_request(
    path: str,
    *,
    session_id: int = 0x0000_1000_0000_0041,
    signed: bool = False,
    message_id: int = 2,
) -> bytes:
    """[MS-SMB2] 2.2.9 TREE_CONNECT request: the UTF-16LE path ``\\\\server\\share``."""
    header = smb2_header(TREE_CONNECT, session_id=session_id, signed=signed, message_id=message_id)
    raw_path = path.encode("utf-16-le")
    body = struct.pack("<HHHH", 9, 0, 64 + 8, len(raw_path))
    return frame(header + body + raw_path)


def tree_connect_response(
    *,
    share_type: int = SHARE_TYPE_DISK,
    share_flags: int = 0,
    tree_id: int = 1,
    session_id: int = 0x0000_1000_0000_0041,
    signed: bool = False,
    message_id: int = 2,
) -> bytes:
    """[MS-SMB2] 2.2.10 TREE_CONNECT response: ShareType, ShareFlags, Capabilities, access."""
    header = smb2_header(
        TREE_CONNECT,
        response=True,
        tree_id=tree_id,
        session_id=session_id,
        signed=signed,
        message_id=message_id,
    )
    body = struct.pack("<HBBIII", 16, share_type, 0, share_flags, 0, 0x001F01FF)
    return frame(header + body)


def transform(message: bytes, *, session_id: int = 0x0000_1000_0000_0041, nonce: int = 1) -> bytes:
    """[MS-SMB2] 2.2.41 SMB2 TRANSFORM_HEADER around an encrypted message.

    ``message`` is a framed SMB2 message; its bytes are replaced by a keyed-hash stream of the
    same length (the test has no session key, and no dissector can read ciphertext anyway).
    """
    plain = message[4:]
    stream = b""
    counter = 0
    while len(stream) < len(plain):
        stream += hashlib.sha256(struct.pack("<QQ", nonce, counter)).digest()
        counter += 1
    cipher = bytes(a ^ b for a, b in zip(plain, stream, strict=False))
    signature = hashlib.md5(cipher).digest()
    header = struct.pack(
        "<4s16s16sIHHQ",
        b"\xfdSMB",
        signature,
        nonce.to_bytes(16, "little"),
        len(plain),  # OriginalMessageSize
        0,
        0x0001,  # Flags: Encrypted (SMB 3.1.1) / EncryptionAlgorithm AES-128-CCM (3.0.x)
        session_id,
    )
    return frame(header + cipher)


def compound(*framed: bytes) -> bytes:
    """[MS-SMB2] 3.2.4.1.4: several SMB2 messages in one, each header's NextCommand pointing to
    the next (8-byte aligned); the messages are given framed, as the builders above return them.
    """
    messages = [message[4:] for message in framed]
    joined = b""
    for k, message in enumerate(messages):
        if k < len(messages) - 1:
            message = _pad8(message)
            message = message[:20] + struct.pack("<I", len(message)) + message[24:]
        joined += message
    return frame(joined)


# SMB1 ----------------------------------------------------------------------------------------


def smb1_header(
    command: int,
    *,
    response: bool = False,
    flags2: int = SMB1_FLAGS2_UNICODE | SMB1_FLAGS2_NT_STATUS | SMB1_FLAGS2_LONG_NAMES,
    tree_id: int = 0,
    user_id: int = 0,
    multiplex_id: int = 0,
) -> bytes:
    """[MS-CIFS] 2.2.3.1 SMB Header (32 bytes); Flags 0x18 (case-less, canonical paths)."""
    flags = 0x18 | (0x80 if response else 0)
    return struct.pack(
        "<4sBIBHH8sHHHHH",
        b"\xffSMB",
        command,
        0,  # Status
        flags,
        flags2,
        0,  # PIDHigh
        bytes(8),  # SecurityFeatures
        0,  # Reserved
        tree_id,
        0xFEFF,  # PIDLow
        user_id,
        multiplex_id,
    )


def smb1_negotiate_request(
    dialects: Sequence[str] = WINDOWS_SMB1_DIALECTS, *, signing_required: bool = False
) -> bytes:
    """[MS-CIFS] 2.2.4.52.1 NEGOTIATE request: no words; bytes 0x02 + each dialect + NUL."""
    flags2 = (
        SMB1_FLAGS2_UNICODE
        | SMB1_FLAGS2_NT_STATUS
        | SMB1_FLAGS2_EXTENDED_SECURITY
        | SMB1_FLAGS2_EAS
        | SMB1_FLAGS2_LONG_NAMES
        | (SMB1_FLAGS2_SIGNATURE_REQUIRED if signing_required else 0)
    )
    data = b"".join(b"\x02" + name.encode("ascii") + b"\x00" for name in dialects)
    header = smb1_header(SMB1_NEGOTIATE, flags2=flags2)
    return frame(header + b"\x00" + struct.pack("<H", len(data)) + data)


def smb1_negotiate_response(
    dialect_index: int,
    *,
    security_mode: int = SMB1_USER_SECURITY | SMB1_ENCRYPT_PASSWORDS,
    security_blob: bytes = SPNEGO_NEG_TOKEN_INIT,
) -> bytes:
    """[MS-CIFS] 2.2.4.52.2 / [MS-SMB] 2.2.4.5.2.1 NT LM 0.12 response with extended security."""
    words = struct.pack(
        "<HBHHIIIIQhB",
        dialect_index,
        security_mode,
        50,  # MaxMpxCount
        1,  # MaxNumberVcs
        16644,  # MaxBufferSize
        65536,  # MaxRawSize
        0,  # SessionKey
        SMB1_CAP_EXTENDED_SECURITY | 0xF3F9,  # Capabilities
        133_000_000_000_000_000,  # SystemTime
        0,  # ServerTimeZone
        0,  # ChallengeLength: 0 with extended security
    )
    data = SERVER_GUID + security_blob
    flags2 = SMB1_FLAGS2_UNICODE | SMB1_FLAGS2_NT_STATUS | SMB1_FLAGS2_EXTENDED_SECURITY
    header = smb1_header(SMB1_NEGOTIATE, response=True, flags2=flags2)
    return frame(header + bytes([len(words) // 2]) + words + struct.pack("<H", len(data)) + data)


def smb1_tree_connect_andx_request(path: str, *, user_id: int = 0x0800) -> bytes:
    """[MS-CIFS] 2.2.4.55.1 TREE_CONNECT_ANDX request: Unicode path, service ``?????``."""
    header = smb1_header(SMB1_TREE_CONNECT_ANDX, user_id=user_id)
    password = b"\x00"
    words = struct.pack("<BBHHH", 0xFF, 0, 0, 0x0008, len(password))  # no AndX; extended response
    data_start = len(header) + 1 + len(words) + 2
    data = password
    if (data_start + len(data)) % 2:  # Unicode strings align on two bytes from the header
        data += b"\x00"
    data += path.encode("utf-16-le") + b"\x00\x00" + b"?????\x00"
    return frame(header + bytes([len(words) // 2]) + words + struct.pack("<H", len(data)) + data)


# Conversations -------------------------------------------------------------------------------


def smb2_conversation(
    *,
    dialect: int = DIALECT_311,
    offered: Sequence[int] = (DIALECT_202, DIALECT_210, DIALECT_300, DIALECT_302, DIALECT_311),
    server_signing_required: bool = False,
    client_signing_required: bool = False,
    shares: Sequence[str] = (),
    server_name: str = "SITESRV",
    encrypt_session: bool = False,
    encrypted_shares: Sequence[str] = (),
    smb1_first: bool = False,
) -> list[tuple[str, bytes]]:
    """A client's SMB2 session: NEGOTIATE, SESSION_SETUP (two legs), then a TREE_CONNECT per share.

    With ``smb1_first`` the client opens with the multi-protocol SMB1 NEGOTIATE and the server
    answers with the SMB2 wildcard dialect, as Windows does ([MS-SMB2] 3.3.5.3.1).
    """
    server_mode = SIGNING_ENABLED | (SIGNING_REQUIRED if server_signing_required else 0)
    client_mode = SIGNING_ENABLED | (SIGNING_REQUIRED if client_signing_required else 0)
    exchange: list[tuple[str, bytes]] = []
    if smb1_first:
        exchange += [
            ("c", smb1_negotiate_request()),
            ("s", negotiate_response(DIALECT_WILDCARD, security_mode=server_mode)),
        ]
    exchange += [
        ("c", negotiate_request(offered, security_mode=client_mode, message_id=1)),
        ("s", negotiate_response(dialect, security_mode=server_mode, message_id=1)),
        ("c", session_setup_request(security_mode=client_mode, message_id=2)),
        (
            "s",
            session_setup_response(
                status=STATUS_MORE_PROCESSING_REQUIRED, token=SPNEGO_ACCEPT_INCOMPLETE
            ),
        ),
        ("c", session_setup_request(security_mode=client_mode, message_id=3)),
        (
            "s",
            session_setup_response(
                session_flags=SESSION_FLAG_ENCRYPT_DATA if encrypt_session else 0,
                signed=True,
                message_id=3,
            ),
        ),
    ]
    signed = server_signing_required or client_signing_required
    for k, share in enumerate(shares):
        message_id = 4 + k
        flags = SHAREFLAG_ENCRYPT_DATA if share in encrypted_shares else 0
        share_type = SHARE_TYPE_PIPE if share == "IPC$" else SHARE_TYPE_DISK
        exchange += [
            (
                "c",
                tree_connect_request(
                    f"\\\\{server_name}\\{share}", signed=signed, message_id=message_id
                ),
            ),
            (
                "s",
                tree_connect_response(
                    share_type=share_type,
                    share_flags=flags,
                    tree_id=k + 1,
                    signed=signed,
                    message_id=message_id,
                ),
            ),
        ]
    return exchange
