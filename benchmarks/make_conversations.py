"""A capture dominated by the protocols flowaudit reads whole: SMB2 file copies, DCE/RPC calls
and HTTP keep-alive connections, written straight as pcap (Ethernet, IPv4, TCP).

    python benchmarks/make_conversations.py --out benchmarks/out/conversations.pcap [--mb 520]

Layouts follow the specifications ([MS-SMB2] 2.2, [MS-NLMP] 2.2.1, C706 12.6, RFC 9112), so
that tshark dissects every message: each SMB2 connection negotiates SMB 2.1, authenticates with
NTLMv2 (SPNEGO-less raw NTLMSSP, as Samba's clients may send), connects to a share, opens a
file and reads it in 1 MiB READs; each RPC connection binds to svcctl and makes calls; each
HTTP connection carries ConfigMgr-style CCM_POST requests one after the other. Segments are
1,448 bytes; no ACK-only packets (tshark and flowaudit reassemble without them). The ground
truth (operations, bytes read per file) is printed as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MSS = 1448
MIB = 1 << 20


class Writer:
    """pcap records of TCP segments, with sequence numbers kept per connection side."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ts_us = 1_700_000_000 * 1_000_000
        self.packets = 0
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))

    def frame(
        self, src: int, dst: int, sport: int, dport: int, seq: int, flags: int, data: bytes
    ) -> None:
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
        total = 20 + len(tcp) + len(data)
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, total, 0, 0x4000, 64, 6, 0, src, dst)
        eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
        length = len(eth) + total
        self.ts_us += 7
        head = struct.pack("<IIII", self.ts_us // 1_000_000, self.ts_us % 1_000_000, length, length)
        self.out.write(head + eth + ip + tcp)
        self.out.write(data)
        self.packets += 1


class Connection:
    def __init__(self, writer: Writer, client: int, server: int, sport: int, dport: int) -> None:
        self.w = writer
        self.ends = ((client, server, sport, dport), (server, client, dport, sport))
        self.seq = [1000, 5000]
        self.w.frame(*self.ends[0], self.seq[0] - 1, 0x02, b"")  # SYN
        self.w.frame(*self.ends[1], self.seq[1] - 1, 0x12, b"")  # SYN+ACK
        self.w.frame(*self.ends[0], self.seq[0], 0x10, b"")  # ACK

    def send(self, side: int, data: bytes | Iterator[bytes]) -> None:
        chunks = [data] if isinstance(data, bytes) else data
        for chunk in chunks:
            for start in range(0, len(chunk), MSS):
                piece = chunk[start : start + MSS]
                self.w.frame(*self.ends[side], self.seq[side] & 0xFFFFFFFF, 0x18, piece)
                self.seq[side] += len(piece)


# ---- SMB2 ([MS-SMB2] 2.2)


def _smb2(
    command: int,
    message_id: int,
    body: bytes,
    *,
    response: bool = False,
    tree: int = 0,
    session: int = 0,
    status: int = 0,
) -> bytes:
    header = struct.pack(
        "<4sHHIHHIIQIIQ16s",
        b"\xfeSMB",
        64,
        1,
        status,
        command,
        1,
        1 if response else 0,
        0,
        message_id,
        0xFEFF,
        tree,
        session,
        bytes(16),
    )
    message = header + body
    return struct.pack(">I", len(message)) + message


def _fields(length: int, offset: int) -> bytes:
    return struct.pack("<HHI", length, length, offset)


def ntlm_negotiate() -> bytes:
    return (
        b"NTLMSSP\x00"
        + struct.pack("<I", 1)
        + struct.pack("<I", 0xE2088297)
        + _fields(0, 0)
        + _fields(0, 0)
    )


def ntlm_challenge(challenge: bytes) -> bytes:
    target = "LAB".encode("utf-16-le")
    info = struct.pack("<HH", 2, len(target)) + target + struct.pack("<HH", 0, 0)
    head = 56
    return (
        b"NTLMSSP\x00"
        + struct.pack("<I", 2)
        + _fields(len(target), head)
        + struct.pack("<I", 0xE2898215)
        + challenge
        + bytes(8)
        + _fields(len(info), head + len(target))
        + bytes(8)
        + target
        + info
    )


def ntlm_authenticate(user: str, domain: str, host: str) -> bytes:
    avs = (
        struct.pack("<HH", 2, 6)
        + "LAB".encode("utf-16-le")
        + struct.pack("<HHI", 6, 4, 2)
        + struct.pack("<HH", 9, 22)
        + "cifs/dp01".encode("utf-16-le")
        + b"\x00\x00" * 2
        + struct.pack("<HH", 0, 0)
    )
    blob = bytes(16) + b"\x01\x01" + bytes(6) + bytes(8) + b"clientch" + bytes(4) + avs + bytes(4)
    lm = bytes(24)
    parts = [
        lm,
        blob,
        domain.encode("utf-16-le"),
        user.encode("utf-16-le"),
        host.encode("utf-16-le"),
        bytes(16),
    ]
    offset = 88
    fields = b""
    for part in parts:
        fields += _fields(len(part), offset)
        offset += len(part)
    return (
        b"NTLMSSP\x00"
        + struct.pack("<I", 3)
        + fields
        + struct.pack("<I", 0xE2888215)
        + bytes(8)
        + bytes(16)
        + b"".join(parts)
    )


def smb_copy(c: Connection, rng: random.Random, size: int, number: int, truth: dict) -> None:
    mid = 0
    session, tree = 0x1000 + number, 5
    dialects = struct.pack("<HH", 0x0202, 0x0210)
    c.send(0, _smb2(0, mid, struct.pack("<HHHHI16sQ", 36, 2, 1, 0, 0, bytes(16), 0) + dialects))
    blob = ntlm_negotiate()
    neg = struct.pack(
        "<HHHH16sIIIIQQHHI", 65, 1, 0x0210, 0, bytes(16), 7, MIB, MIB, MIB, 0, 0, 128, 0, 0
    )
    c.send(1, _smb2(0, mid, neg, response=True))
    for token, status in (
        (blob, 0xC0000016),
        (ntlm_authenticate(f"user{number}", "LAB", f"WS{number:04d}"), 0),
    ):
        mid += 1
        c.send(
            0,
            _smb2(
                1,
                mid,
                struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(token), 0) + token,
                session=session,
            ),
        )
        answer = ntlm_challenge(rng.randbytes(8)) if status else b""
        c.send(
            1,
            _smb2(
                1,
                mid,
                struct.pack("<HHHH", 9, 0, 72, len(answer)) + answer,
                response=True,
                session=session,
                status=status,
            ),
        )
    path = "\\\\dp01\\SCCMContentLib$".encode("utf-16-le")
    mid += 1
    c.send(0, _smb2(3, mid, struct.pack("<HHHH", 9, 0, 72, len(path)) + path, session=session))
    c.send(
        1,
        _smb2(
            3,
            mid,
            struct.pack("<HBBIII", 16, 1, 0, 0, 0, 0x1F01FF),
            response=True,
            tree=tree,
            session=session,
        ),
    )
    name = f"FileLib\\{number:04d}\\content.bin".encode("utf-16-le")
    file_id = struct.pack("<QQ", number, number)
    mid += 1
    create = (
        struct.pack(
            "<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x00120089, 0, 1, 1, 0x40, 120, len(name), 0, 0
        )
        + name
    )
    c.send(0, _smb2(5, mid, create, tree=tree, session=session))
    c.send(
        1,
        _smb2(
            5,
            mid,
            struct.pack(
                "<HBBIQQQQQQII16sII", 89, 0, 0, 1, 0, 0, 0, 0, size, size, 0x20, 0, file_id, 0, 0
            ),
            response=True,
            tree=tree,
            session=session,
        ),
    )
    offset = 0
    filler = rng.randbytes(MIB)
    while offset < size:
        length = min(MIB, size - offset)
        mid += 1
        c.send(
            0,
            _smb2(
                8,
                mid,
                struct.pack(
                    "<HBBIQ16sIIIHHB", 49, 80, 0, length, offset, file_id, 0, 0, 0, 0, 0, 0
                ),
                tree=tree,
                session=session,
            ),
        )
        body = struct.pack("<HBBIII", 17, 80, 0, length, 0, 0)
        message = (
            struct.pack(
                "<4sHHIHHIIQIIQ16s",
                b"\xfeSMB",
                64,
                1,
                0,
                8,
                1,
                1,
                0,
                mid,
                0xFEFF,
                tree,
                session,
                bytes(16),
            )
            + body
        )
        c.send(1, iter((struct.pack(">I", len(message) + length) + message, filler[:length])))
        offset += length
    mid += 1
    c.send(0, _smb2(6, mid, struct.pack("<HHI16s", 24, 0, 0, file_id), tree=tree, session=session))
    c.send(
        1,
        _smb2(
            6,
            mid,
            struct.pack("<HHI", 60, 0, 0) + bytes(52),
            response=True,
            tree=tree,
            session=session,
        ),
    )
    truth["smb2_reads"] += -(-size // MIB)
    truth["smb2_bytes_read"] += size


# ---- DCE/RPC (C706 12.6)

SVCCTL = uuid.UUID("367abb81-9844-35f1-ad32-98f038001003").bytes_le  # [MS-SCMR] 1.9
NDR = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860").bytes_le  # C706 appendix I


def _pdu(ptype: int, call_id: int, body: bytes, flags: int = 3) -> bytes:
    return (
        struct.pack(
            "<BBBB4sHHI", 5, 0, ptype, flags, b"\x10\x00\x00\x00", 16 + len(body), 0, call_id
        )
        + body
    )


def rpc_calls(c: Connection, rng: random.Random, calls: int, truth: dict) -> None:
    bind = (
        struct.pack("<HHIB3x", 4280, 4280, 0, 1)
        + struct.pack("<HBx", 0, 1)
        + SVCCTL
        + struct.pack("<HH", 2, 0)
        + NDR
        + struct.pack("<I", 2)
    )
    c.send(0, _pdu(11, 1, bind))
    ack = (
        struct.pack("<HHIH", 4280, 4280, 0x1234, 0)
        + bytes(2)
        + struct.pack("<B3x", 1)
        + struct.pack("<HH", 0, 0)
        + NDR
        + struct.pack("<I", 2)
    )
    c.send(1, _pdu(12, 1, ack))
    for call in range(calls):
        opnum = rng.choice((15, 16, 0, 6))
        stub = rng.randbytes(rng.randrange(40, 200))
        c.send(0, _pdu(0, call + 2, struct.pack("<IHH", len(stub), 0, opnum) + stub))
        answer = rng.randbytes(rng.randrange(24, 120))
        c.send(1, _pdu(2, call + 2, struct.pack("<IHBB", len(answer), 0, 0, 0) + answer))
    truth["rpc_requests"] += calls


# ---- HTTP keep-alive (RFC 9112)


def http_requests(c: Connection, rng: random.Random, requests: int, truth: dict) -> None:
    for _ in range(requests):
        body = rng.randbytes(rng.randrange(200, 3000))
        c.send(
            0,
            (
                "CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp01.lab.example\r\n"
                "User-Agent: ConfigMgr Messaging HTTP Sender\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body,
        )
        answer = rng.randbytes(rng.randrange(100, 2000))
        c.send(
            1,
            (
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(answer)}\r\n\r\n"
            ).encode()
            + answer,
        )
    truth["http_requests"] += requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mb", type=int, default=520, help="approximate size in MB")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    truth = {
        "smb2_reads": 0,
        "smb2_bytes_read": 0,
        "rpc_requests": 0,
        "http_requests": 0,
        "flows": 0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    budget = args.mb * 1_000_000
    with args.out.open("wb") as out:
        w = Writer(out)
        number = 0
        while out.tell() < budget:
            number += 1
            client = 0x0A000000 + 0x100 + number % 60000
            port = 10000 + number % 50000
            smb = Connection(w, client, 0x0A000002, port, 445)
            smb_copy(smb, rng, rng.randrange(4, 16) * MIB + rng.randrange(MIB), number, truth)
            for extra in range(20):
                rpc = Connection(w, client, 0x0A000003, port + 1 + extra, 49670)
                rpc_calls(rpc, rng, rng.randrange(5, 30), truth)
                web = Connection(w, client, 0x0A000004, (port + 30 + extra) % 65000 + 1, 80)
                http_requests(web, rng, rng.randrange(5, 30), truth)
            truth["flows"] += 41
        truth["packets"] = w.packets
        truth["bytes"] = out.tell()
    print(json.dumps(truth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
