"""Real TDS bytes for tests: packet headers and PRELOGIN messages ([MS-TDS] 2.2.3.1, 2.2.6.5).

PRELOGIN option tokens (2.2.6.5): 0 VERSION, 1 ENCRYPTION, 2 INSTOPT, 3 THREADID, 4 MARS,
0xFF terminator; offsets are from the start of the packet data, big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

SQL_BATCH = 0x01
RPC = 0x03
TABULAR_RESULT = 0x04
LOGIN7 = 0x10
PRELOGIN = 0x12

STATUS_EOM = 0x01

ENCRYPT_OFF = 0x00
ENCRYPT_ON = 0x01
ENCRYPT_NOT_SUP = 0x02
ENCRYPT_REQ = 0x03
ENCRYPT_CLIENT_CERT = 0x80  # OR-ed onto the others ([MS-TDS] 2.2.6.5)

OPTION_VERSION = 0x00
OPTION_ENCRYPTION = 0x01
OPTION_INSTOPT = 0x02
OPTION_THREADID = 0x03
OPTION_MARS = 0x04
TERMINATOR = 0xFF


def tds_packet(
    packet_type: int,
    data: bytes,
    *,
    status: int = STATUS_EOM,
    spid: int = 0,
    packet_id: int = 1,
) -> bytes:
    """Header (type, status, length BE, SPID BE, packet id, window 0) + data (2.2.3.1)."""
    return struct.pack(">BBHHBB", packet_type, status, 8 + len(data), spid, packet_id, 0) + data


def prelogin_options(options: Sequence[tuple[int, bytes]]) -> bytes:
    """The option table, its terminator and the option data (2.2.6.5)."""
    table_size = 5 * len(options) + 1
    table, data = b"", b""
    for token, value in options:
        table += struct.pack(">BHH", token, table_size + len(data), len(value))
        data += value
    return table + bytes([TERMINATOR]) + data


def version_bytes(major: int, minor: int, build: int, sub_build: int = 0) -> bytes:
    """UL_VERSION (major, minor, build big-endian) + US_SUBBUILD."""
    return struct.pack(">BBHH", major, minor, build, sub_build)


def tds_prelogin(
    encryption: int = ENCRYPT_OFF,
    version: tuple[int, int, int] = (15, 0, 2000),
    instance: str | None = "MSSQLServer",
    *,
    thread_id: int = 0x1234,
    mars: bool = False,
) -> bytes:
    """A client PRELOGIN packet (type 0x12)."""
    options = [
        (OPTION_VERSION, version_bytes(*version)),
        (OPTION_ENCRYPTION, bytes([encryption])),
        (OPTION_INSTOPT, (instance or "").encode("ascii") + b"\x00"),
        (OPTION_THREADID, struct.pack(">I", thread_id)),
        (OPTION_MARS, bytes([int(mars)])),
    ]
    return tds_packet(PRELOGIN, prelogin_options(options))


def tds_prelogin_response(
    encryption: int = ENCRYPT_OFF, version: tuple[int, int, int] = (16, 0, 1000)
) -> bytes:
    """The server's answer: a PRELOGIN structure in a tabular result packet (type 0x04)."""
    options = [
        (OPTION_VERSION, version_bytes(*version)),
        (OPTION_ENCRYPTION, bytes([encryption])),
        (OPTION_INSTOPT, b"\x00"),
        (OPTION_MARS, b"\x00"),
    ]
    return tds_packet(TABULAR_RESULT, prelogin_options(options))


def tds_sql_batch(text: str) -> bytes:
    """SQLBatch with ALL_HEADERS (transaction descriptor) then UCS-2 text (2.2.6.7, 2.2.5.3)."""
    transaction = struct.pack("<IHQI", 18, 2, 0, 1)
    all_headers = struct.pack("<I", 4 + len(transaction)) + transaction
    return tds_packet(SQL_BATCH, all_headers + text.encode("utf-16-le"))


def tds_login7_stub(length: int = 180) -> bytes:
    """A LOGIN7 packet: only its header matters to the dissector (the body is opaque here)."""
    body = struct.pack("<I", length) + bytes(length - 4)
    return tds_packet(LOGIN7, body)
