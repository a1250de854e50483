"""A capture of random payloads on every port flowaudit's dissectors and stream readers read.

    python benchmarks/make_random_payload.py [--packets 2000000] [--out PATH] [--seed S]

The flows are those of ``make_capture.py`` (handshakes, several segments per flow, both
directions, IPv6 and VLAN tags, the same ConfigMgr services and ports), plus SMB over NetBIOS
(139) and DHCPv6 (546/547). Every payload byte is random, except that many packets open with
a header of the protocol their port speaks, so that the readers get past their first checks
and parse random bytes as deep as they go. Each flow draws one of three shapes:

* ``random`` (40 %): random bytes only;
* ``first`` (30 %): the first data packet of each direction opens with a valid header (its
  length field either the packet's payload or a random value), then random bytes;
* ``every`` (30 %): every data packet opens with a valid header whose length field covers
  exactly that packet's payload, so that a framed reader parses one random PDU per segment.

Headers: NetBIOS/Direct TCP + SMB2 (command with its StructureSize), SMB1 or the SMB3
transform header; DCE/RPC (request, response, bind, bind_ack, alter context; EPM opnums on
135 and towers with random floors); TDS (PRELOGIN, LOGIN7, SQL batch, RPC, tabular result
with a token byte); LDAP and Kerberos (a BER tree of random shape with consistent lengths
under the right APPLICATION tag; record marker on TCP); TLS (ClientHello, ServerHello,
Certificate with a random DER tree, application data); HTTP (ConfigMgr request lines,
status lines, Content-Length or chunked bodies); RDP (TPKT + X.224); DHCP/PXE (BOOTP with
the magic cookie and random options), DHCPv6; TFTP (RRQ/WRQ with options, DATA, ACK, OACK,
ERROR); Wake-on-LAN magic packets. Random bytes follow each header.

Checksums of TCP and UDP are left zero (random payload); the ground truth goes to
``<stem>.truth.json`` as for ``make_capture.py``, with ``shapes`` and ``prefixed_packets``.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import make_capture as mc
import numpy as np

HERE = Path(__file__).resolve().parent

# Services the flows benchmark does not have; SERVICES is extended with them in this process.
EXTRA_SERVICES = (
    mc.Service("smb-nbt", mc.TCP, 139, 2.0, 10, 0.8, 1, 200, "ws", "smbsrv", p_s2c=0.55,
               c_lo=60, c_hi=600, s_lo=80, s_hi=900),
    mc.Service("dhcpv6", mc.UDP, 547, 1.0, 2, 0.2, 2, 4, "ws", "dhcp", init_port=546,
               pattern="alternate", c_lo=60, c_hi=200, s_lo=80, s_hi=300, gap_ms=2,
               elastic=False),
)  # fmt: skip

# The protocol whose headers open a flow's payloads, by service name (others: random only).
PROTOCOL_OF = {
    "smb": "smb",
    "smb-content": "smb",
    "smb-nbt": "smb",
    "rpc-epmap": "dcerpc",
    "rpc-dyn": "dcerpc",
    "sql": "tds",
    "service-broker": "tds",
    "client-notify": "tls",
    "https-mp": "tls",
    "wsus-ssl": "tls",
    "ldaps": "tls",
    "gc-ssl": "tls",
    "winrm-ssl": "tls",
    "https-content": "tls",
    "http-mp": "http",
    "wsus": "http",
    "winrm": "http",
    "http-content": "http",
    "wsus-content": "http",
    "ldap": "ldap",
    "gc": "ldap",
    "cldap": "ldap",
    "kerberos": "kerberos",
    "kerberos-udp": "kerberos",
    "rdp": "rdp",
    "dhcp": "dhcp",
    "binl-pxe": "dhcp",
    "dhcpv6": "dhcpv6",
    "tftp-rrq": "tftp",
    "tftp-data": "tftp",
    "wake-on-lan": "wol",
}
SHAPES = ("random", "first", "every")
SHAPE_WEIGHTS = (0.4, 0.3, 0.3)

Builder = Callable[[random.Random, bool, int, bool, int], bytes]


def _rand(r: random.Random, n: int) -> bytes:
    return r.randbytes(max(0, n))


def _frame_length(r: random.Random, every: bool, exact: int, width_max: int) -> int:
    """The length field of a header: exact in shape ``every``, else exact or random."""
    if every or r.random() < 0.5:
        return max(0, min(exact, width_max))
    return r.randrange(0, width_max + 1)


# ---- BER (LDAP, Kerberos, certificates) ---------------------------------------------------------


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def random_ber(r: random.Random, budget: int, depth: int = 0) -> bytes:
    """A TLV tree of random shape whose lengths are all consistent, about ``budget`` bytes."""
    out = bytearray()
    while len(out) < budget:
        left = budget - len(out)
        if depth < 6 and left > 8 and r.random() < 0.45:
            tag = r.choice((0x30, 0x31, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0x60, 0x61, 0x63))
            inner = random_ber(r, r.randrange(2, left), depth + 1)
        else:
            tag = r.choice((0x02, 0x04, 0x0A, 0x01, 0x1B, 0x18, 0x03, 0x06, 0x0C, 0x80, 0x87))
            inner = _rand(r, r.randrange(0, min(left, 64) + 1))
        out += bytes([tag]) + _ber_length(len(inner)) + inner
        if r.random() < 0.3:
            break
    return bytes(out)


# ---- the protocols ------------------------------------------------------------------------------

# [MS-SMB2] 2.2: StructureSize of each command's request and response body
_SMB2_BODY = {0: (36, 65), 1: (25, 9), 2: (4, 4), 3: (9, 16), 4: (4, 4), 5: (57, 89),
              6: (24, 60), 7: (24, 4), 8: (49, 17), 9: (49, 17), 10: (48, 4), 11: (57, 49),
              12: (4, 4), 13: (4, 4), 14: (33, 9), 15: (32, 9), 16: (41, 9), 17: (33, 2),
              18: (24, 44)}  # fmt: skip
_NT_STATUS = (0, 0, 0, 0xC0000022, 0x80000005, 0xC0000016, 0xC000000D, 0xC0000034)


def smb(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """NetBIOS/Direct TCP framing around an SMB2, SMB1 or SMB3 transform header."""
    if index == 0 and not every and r.random() < 0.1:  # a NetBIOS session request first
        return bytes([0x81, 0]) + (68).to_bytes(2, "big") + b" " + _rand(r, 67)
    kind = r.random()
    if kind < 0.8:
        command = r.randrange(19)
        flags = (0 if c2s else 1) | (8 if r.random() < 0.3 else 0)
        next_command = 0 if r.random() < 0.9 else 8 * r.randrange(8, max(9, n // 8))
        head = b"\xfeSMB" + struct.pack(
            "<HHIHHIIQIIQ",
            64,
            r.randrange(4),
            0 if c2s else r.choice(_NT_STATUS),
            command,
            r.randrange(64),
            flags,
            next_command,
            r.randrange(1 << 20),
            r.randrange(1 << 16),
            r.randrange(1 << 8),
            r.randrange(1 << 64),
        )
        head += _rand(r, 16) + struct.pack("<H", _SMB2_BODY[command][0 if c2s else 1])
    elif kind < 0.93:
        command = r.choice((0x72, 0x73, 0x75, 0x25, 0xA2, 0x2E, 0x2F, 0x04))
        head = b"\xffSMB" + bytes([command]) + _rand(r, 27) + bytes([r.choice((0, 4, 13, 17))])
    else:
        head = b"\xfdSMB" + _rand(r, 48)
    length = _frame_length(r, every, n - 4, 0xFFFFFF)
    return b"\x00" + length.to_bytes(3, "big") + head


_EPM = bytes.fromhex("0883afe11f5dc91191a408002b14a0fa")  # the EPM uuid, little-endian


def dcerpc(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """A connection-oriented PDU header ([C706] 12.6.3.1) with a typed body, then random."""
    ptype = r.choice((0, 0, 11, 14) if c2s else (2, 2, 12, 3, 15))
    auth = 0 if r.random() < 0.7 else r.randrange(8, 200)
    length = _frame_length(r, every, n, 0xFFFF)
    head = struct.pack("<BBBB4sHHI", 5, 0, ptype, 3, b"\x10\0\0\0", length, auth, r.randrange(9))
    if ptype == 0:
        head += struct.pack("<IHH", r.randrange(1 << 16), r.randrange(4), r.randrange(8))
    elif ptype in (2, 3):
        head += struct.pack("<IHBB", r.randrange(1 << 16), r.randrange(4), 0, 0)
        if r.random() < 0.4:  # a tower-like run: length, floor count, then random floors
            tower = r.randrange(20, 120)
            head += _rand(r, r.randrange(24)) + struct.pack("<IH", tower, r.randrange(3, 9))
    elif ptype in (11, 14):
        contexts = r.randrange(1, 5)
        head += struct.pack("<HHIB3x", 4280, 4280, 0, contexts)
        for k in range(contexts):
            head += struct.pack("<HBx", k, r.randrange(1, 3))
            head += (_EPM if r.random() < 0.3 else _rand(r, 16)) + _rand(r, 4 + 20)
    else:
        head += struct.pack("<HHI", 4280, 4280, r.randrange(1 << 16))
        port = b"135\x00" if r.random() < 0.5 else _rand(r, r.randrange(16))
        head += struct.pack("<H", len(port) if r.random() < 0.7 else r.randrange(400)) + port
    return head


_TDS_TOKENS = (0xE3, 0xAA, 0xAB, 0xAD, 0xFD, 0xFE, 0xFF, 0x81, 0xD1, 0x79, 0xA9, 0xAE, 0xED)


def tds(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """A TDS packet header ([MS-TDS] 2.2.3.1) and the start of its message."""
    kinds = (0x12, 0x10, 0x01, 0x03, 0x0E, 0x07) if c2s else (0x04, 0x04, 0x12)
    kind = 0x12 if c2s and index == 0 else r.choice(kinds)
    length = _frame_length(r, every, n, 0xFFFF)
    head = struct.pack(">BBHHBB", kind, 1, length, r.randrange(1 << 16), r.randrange(256), 0)
    if kind == 0x12:  # PRELOGIN option tokens, then random
        options = r.randrange(1, 8)
        for k in range(options):
            head += struct.pack(">BHH", k, 5 * options + 1 + r.randrange(40), r.randrange(20))
        head += b"\xff"
    elif kind == 0x10:  # LOGIN7: length, version, ..., then random offsets and lengths
        head += struct.pack("<II", length, 0x74000004) + _rand(r, 28)
    elif kind == 0x04:
        head += bytes([r.choice(_TDS_TOKENS)])
    return head


_LDAP_OPS_C = (0x60, 0x63, 0x42, 0x66, 0x68, 0x6A, 0x6C, 0x77, 0x50)
_LDAP_OPS_S = (0x61, 0x64, 0x65, 0x67, 0x69, 0x6B, 0x6D, 0x78, 0x73)


def ldap(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """An LDAPMessage (RFC 4511 4.1.1): SEQUENCE { messageID, [APPLICATION n] random BER }."""
    op = r.choice(_LDAP_OPS_C if c2s else _LDAP_OPS_S)
    body = random_ber(r, max(0, n - 20))
    inner = b"\x02\x01" + bytes([r.randrange(1, 128)]) + bytes([op]) + _ber_length(len(body))
    inner += body
    if not every and r.random() < 0.3:  # a message longer than the packet
        return b"\x30\x84" + (len(inner) + r.randrange(1, 1 << 16)).to_bytes(4, "big") + inner
    return b"\x30" + _ber_length(len(inner)) + inner


def kerberos(r: random.Random, c2s: bool, n: int, every: bool, index: int, udp: bool) -> bytes:
    """A KDC message (RFC 4120 5.4): APPLICATION tag, SEQUENCE of random fields."""
    tag = r.choice((0x6A, 0x6C) if c2s else (0x6B, 0x6D, 0x7E))
    body = random_ber(r, max(0, n - 16))
    message = bytes([tag]) + _ber_length(len(body) + 4) + b"\x30\x82"
    message += len(body).to_bytes(2, "big") + body
    if udp:
        return message
    marker = _frame_length(r, every, n - 4, 0x7FFFFFFF)
    return marker.to_bytes(4, "big") + message


def tls(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """A TLS record (RFC 8446 5.1): a handshake message first, application data later."""
    length = _frame_length(r, every, n - 5, 0xFFFF)
    if index > 0 and r.random() < 0.7:
        return b"\x17\x03\x03" + length.to_bytes(2, "big")
    if c2s:
        kind, body = 1, b"\x03\x03" + _rand(r, 32) + b"\x20" + _rand(r, 32)
        body += struct.pack(">H", 2 * r.randrange(60)) + _rand(r, r.randrange(120))
    elif r.random() < 0.5:
        kind, body = 2, b"\x03\x03" + _rand(r, 32) + b"\x20" + _rand(r, 34) + b"\x00"
        body += struct.pack(">H", r.randrange(400)) + _rand(r, r.randrange(60))
    else:  # Certificate: a list of one random DER certificate
        size = max(0, n - 24)
        certificate = b"\x30\x82" + (size + 4).to_bytes(2, "big") + random_ber(r, size)
        body = (len(certificate) + 3).to_bytes(3, "big") + len(certificate).to_bytes(3, "big")
        kind, body = 11, body + certificate
    message = bytes([kind]) + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + length.to_bytes(2, "big") + message


_PATHS = (b"/ccm_system/request", b"/SMS_MP/.sms_aut?MPLIST", b"/SMS_DP_SMSPKG$/PS100001/x",
          b"/ClientWebService/client.asmx", b"/wsman", b"/")  # fmt: skip
_METHODS = (b"CCM_POST", b"GET", b"POST", b"BITS_POST", b"HEAD", b"PUT")


def http(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """A request or status line, header fields, then random bytes (a body or more headers)."""
    if c2s:
        line = r.choice(_METHODS) + b" " + r.choice(_PATHS) + b" HTTP/1.1\r\nHost: mp\r\n"
    else:
        line = b"HTTP/1.1 " + r.choice((b"200 OK", b"404 Not Found", b"100 Continue")) + b"\r\n"
    shape = r.random()
    if shape < 0.4:  # random bytes where more header fields would be
        return line
    if shape < 0.7:
        body = max(0, n - len(line) - 30)
        return line + b"Content-Length: " + str(body).encode() + b"\r\n\r\n"
    return line + b"Transfer-Encoding: chunked\r\n\r\n" + f"{r.randrange(1 << 12):x}\r\n".encode()


def rdp(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """TPKT (RFC 1006) + X.224 connection request/confirm or data."""
    length = _frame_length(r, every, n, 0xFFFF)
    if index == 0:
        code = 0xE0 if c2s else 0xD0
        return b"\x03\x00" + length.to_bytes(2, "big") + bytes([r.randrange(6, 80), code])
    return b"\x03\x00" + length.to_bytes(2, "big") + b"\x02\xf0\x80"


def dhcp(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """BOOTP (RFC 2131 2) with the magic cookie, a message type and random options."""
    fixed = struct.pack(">BBBB", 1 if c2s else 2, 1, 6, 0) + _rand(r, 232)
    options = b"\x63\x82\x53\x63\x35\x01" + bytes([r.randrange(1, 9)])
    if r.random() < 0.4:
        options += b"\x3c\x09PXEClient"
    while len(options) < r.randrange(8, 120):  # random TLVs
        code = r.randrange(1, 255)
        value = _rand(r, r.randrange(0, 24))
        options += bytes([code, len(value) if r.random() < 0.9 else r.randrange(256)]) + value
    return fixed + options


def dhcpv6(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """A DHCPv6 message (RFC 8415 8): type, transaction id, random options."""
    head = bytes([r.choice((1, 3, 5, 11) if c2s else (2, 7))]) + _rand(r, 3)
    for _ in range(r.randrange(0, 8)):
        value = _rand(r, r.randrange(0, 30))
        size = len(value) if r.random() < 0.9 else r.randrange(1 << 16)
        head += struct.pack(">HH", r.randrange(1, 150), size) + value
    return head


def _tftp_text(r: random.Random) -> bytes:
    return bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz/._-0123456789") for _ in range(12))


def tftp(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """RRQ/WRQ with options (RFC 1350, 2347), DATA, ACK, OACK or ERROR."""
    if index == 0 and c2s:
        head = struct.pack(">H", r.choice((1, 2))) + b"boot/" + _tftp_text(r) + b"\x00octet\x00"
        return head + b"blksize\x001456\x00tsize\x000\x00" if r.random() < 0.6 else head
    kind = r.choice((3, 3, 4, 6, 5))
    if kind == 6:
        return b"\x00\x06blksize\x00" + str(r.randrange(8, 65465)).encode() + b"\x00"
    if kind == 5:
        return struct.pack(">HH", 5, r.randrange(9)) + _tftp_text(r) + b"\x00"
    return struct.pack(">HH", kind, r.randrange(1 << 16))


def wol(r: random.Random, c2s: bool, n: int, every: bool, index: int) -> bytes:
    """A magic packet: six 0xFF and a MAC address sixteen times."""
    return b"\xff" * 6 + _rand(r, 6) * 16


BUILDERS: dict[str, Builder] = {
    "smb": smb,
    "dcerpc": dcerpc,
    "tds": tds,
    "ldap": ldap,
    "tls": tls,
    "http": http,
    "rdp": rdp,
    "dhcp": dhcp,
    "dhcpv6": dhcpv6,
    "tftp": tftp,
    "wol": wol,
}


def prefixes_for(
    seed: int, stats: dict[str, Any], weights: tuple[float, ...] = SHAPE_WEIGHTS
) -> mc.Prefixes:
    """The ``prefixes`` callback of ``make_capture.generate`` for random-payload captures."""

    def build(f: mc.Flows, p: mc.Packets) -> tuple[mc.I64, mc.I64, mc.U8]:
        r = random.Random(seed)
        rng = np.random.default_rng(seed + 1)
        names = np.array([s.name for s in mc.SERVICES])
        protocol = np.array([PROTOCOL_OF.get(str(name), "") for name in names])[f.svc]
        shape = rng.choice(len(SHAPES), size=f.svc.size, p=np.array(weights) / sum(weights))
        data = np.flatnonzero(p.payload > 0)
        side = p.fid[data] * 2 + p.dirn[data]
        # the rank of each data packet among the data packets of its flow and direction
        order = np.argsort(side, kind="stable")
        sorted_side = side[order]
        starts = np.flatnonzero(np.r_[True, sorted_side[1:] != sorted_side[:-1]])
        rank_sorted = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        rank = np.empty_like(rank_sorted)
        rank[order] = rank_sorted
        flow_shape = shape[p.fid[data]]
        chosen = (protocol[p.fid[data]] != "") & (
            (flow_shape == 2) | ((flow_shape == 1) & (rank == 0))
        )
        picked = data[chosen]
        lengths = np.zeros(picked.size, dtype=np.int64)
        pieces: list[bytes] = []
        udp = f.proto == mc.UDP
        for k, (packet, index) in enumerate(
            zip(picked.tolist(), rank[chosen].tolist(), strict=True)
        ):
            fid = int(p.fid[packet])
            n = int(p.payload[packet])
            c2s = int(p.dirn[packet]) == 0
            every = bool(shape[fid] == 2)
            name = str(protocol[fid])
            if name == "kerberos":
                head = kerberos(r, c2s, n, every, index, bool(udp[fid]))
            else:
                head = BUILDERS[name](r, c2s, n, every, index)
            head = head[:n]
            lengths[k] = len(head)
            pieces.append(head)
        stats["prefixed_packets"] = int(picked.size)
        stats["shapes"] = {name: int((shape == i).sum()) for i, name in enumerate(SHAPES)}
        blob = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        return picked.astype(np.int64), lengths, blob

    return build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--flows", type=int, default=None, help="default: packets * 0.015")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "random-payload-2000000-s1.pcap")
    ap.add_argument(
        "--shapes",
        default="random=0.4,first=0.3,every=0.3",
        help="weights of the flow shapes (default random=0.4,first=0.3,every=0.3)",
    )
    args = ap.parse_args(argv)
    weights = dict.fromkeys(SHAPES, 0.0)
    for item in args.shapes.split(","):
        name, _, weight = item.partition("=")
        if name.strip() not in weights:
            ap.error(f"--shapes: {name!r} is not one of {', '.join(SHAPES)}")
        weights[name.strip()] = float(weight or 1)
    if sum(weights.values()) <= 0:
        ap.error("--shapes: the weights add up to nothing")
    generate(args.out, args.packets, args.flows, args.seed, tuple(weights.values()))
    return 0


def generate(
    out: Path,
    packets: int,
    flows: int | None = None,
    seed: int = 1,
    weights: tuple[float, ...] = SHAPE_WEIGHTS,
) -> dict[str, Any]:
    """Write the capture and its ``.truth.json``; return the ground truth.

    ``make_capture``'s service table gains ``EXTRA_SERVICES`` for the time of the call.
    """
    saved = mc.SERVICES, mc.SERVICE_INDEX
    mc.SERVICES = (*mc.SERVICES, *EXTRA_SERVICES)
    mc.SERVICE_INDEX = {s.name: i for i, s in enumerate(mc.SERVICES)}
    stats: dict[str, Any] = {}
    try:
        truth = mc.generate(
            out, packets, flows, seed, fill="random", prefixes=prefixes_for(seed, stats, weights)
        )
    finally:
        mc.SERVICES, mc.SERVICE_INDEX = saved
    truth.update(stats)
    mc.truth_path(out).write_text(json.dumps(truth, indent=2) + "\n")
    shapes = ", ".join(f"{name} {count:,}" for name, count in stats["shapes"].items())
    print(f"  {stats['prefixed_packets']:,} packets open with a protocol header; flows {shapes}")
    return truth


if __name__ == "__main__":
    sys.exit(main())
