"""Hand-built capture files for unit tests.

Everything here is written with :mod:`struct` so that the tests of flowaudit's own pcap/pcapng
readers and link-layer decoder are checked against bytes built independently of the code under
test, with full control over byte order and the odd corners of the formats.

Three layers:

* **Packet builders** return ``bytes``: :func:`ipv4`, :func:`ipv6` (with an extension-header
  chain), :func:`tcp`, :func:`udp`, :func:`icmp_echo`, :func:`icmp6_echo`; fragmenters
  :func:`ipv4_fragments` / :func:`ipv6_fragments`; whole frames :func:`ip4_tcp_frame`,
  :func:`ip4_udp_frame`, :func:`ip6_tcp_frame`, :func:`ip6_udp_frame`.
* **Link layers** wrap a packet: :func:`ether` (with 802.1Q / QinQ tags), :func:`sll` (Linux
  cooked v1), :func:`sll2` (Linux cooked v2), :func:`null_loopback` (BSD loopback, host byte
  order), :func:`loop` (OpenBSD loopback, network byte order), :func:`raw` (no header).
  :func:`wrap` picks the right header for a ``LINKTYPE_*`` value.
* **Container writers**: :func:`pcap_bytes`, :func:`pcapng_bytes` (with :class:`Section`,
  :class:`Interface`, :class:`EPB`, :class:`SPB`, :class:`OPB`, :class:`RawBlock` and helpers for
  Name Resolution, Interface Statistics and Custom blocks), :func:`gzip_bytes`, :func:`write`.

Timestamps are integer nanoseconds since the Unix epoch throughout (``1_700_000_000_123_456_789``)
so that tests can compare to the nanosecond; :func:`to_ns` also accepts a
:class:`~fractions.Fraction` or :class:`~decimal.Decimal` number of seconds.

Example::

    pkt = ipv4("10.0.0.1", "10.0.0.2", PROTO_TCP, tcp(1234, 80, "S"))
    data = pcap_bytes([Rec(1_700_000_000_000_001_000, ether(MAC_A, MAC_B, ETH_IPV4, pkt))],
                      LINKTYPE_ETHERNET)
    path = write(tmp_path / "syn.pcap", data)
"""

from __future__ import annotations

import gzip
import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypeAlias

ByteOrder = Literal["<", ">"]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

#: LINKTYPE_* values as written in the pcap header / pcapng IDB.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
#: DLT_RAW as defined on most BSDs / Linux libpcap headers; Wireshark maps it to raw IP.
DLT_RAW = 12
#: DLT_RAW as defined on OpenBSD (the number 14 is also used for raw IP there).
DLT_RAW_OPENBSD = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100

PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6_ROUTING = 43
PROTO_IPV6_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_IPV6_DSTOPTS = 60

#: Address-family values for LINKTYPE_NULL / LINKTYPE_LOOP.
AF_INET = 2
AF_INET6_LINUX = 10
AF_INET6_BSD = 24  # NetBSD, OpenBSD
AF_INET6_FREEBSD = 28
AF_INET6_DARWIN = 30

#: Linux packet types (sll_pkttype).
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
#: Alexey Kuznetzov's "modified" pcap magic (records carry 8 extra bytes); only via ``magic=``.
PCAP_MAGIC_MODIFIED = 0xA1B2CD34

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 0x00000001
PCAPNG_OPB = 0x00000002
PCAPNG_SPB = 0x00000003
PCAPNG_NRB = 0x00000004
PCAPNG_ISB = 0x00000005
PCAPNG_EPB = 0x00000006
PCAPNG_DSB = 0x0000000A
PCAPNG_CB_COPY = 0x00000BAD
PCAPNG_CB_NOCOPY = 0x40000BAD
PCAPNG_BOM = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_FCSLEN = 13
IF_TSOFFSET = 14
SHB_HARDWARE = 2
SHB_OS = 3
SHB_USERAPPL = 4
EPB_FLAGS = 2
EPB_DROPCOUNT = 4
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFRECV = 4
ISB_IFDROP = 5

NS_PER_S = 1_000_000_000

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of ``data`` (odd lengths padded with a zero byte)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(addr: str | bytes) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or ``-`` separated, or 6 raw bytes) to 6 bytes."""
    if isinstance(addr, bytes):
        if len(addr) != 6:
            raise ValueError(f"MAC must be 6 bytes, got {len(addr)}")
        return addr
    out = bytes(int(part, 16) for part in addr.replace("-", ":").split(":"))
    if len(out) != 6:
        raise ValueError(f"bad MAC {addr!r}")
    return out


def ip4(addr: str | bytes) -> bytes:
    """Dotted quad (or 4 raw bytes) to 4 bytes."""
    return addr if isinstance(addr, bytes) else ipaddress.IPv4Address(addr).packed


def ip6(addr: str | bytes) -> bytes:
    """IPv6 text form (or 16 raw bytes) to 16 bytes."""
    return addr if isinstance(addr, bytes) else ipaddress.IPv6Address(addr).packed


def pad4(data: bytes) -> bytes:
    """``data`` zero-padded to a multiple of 4 bytes (pcapng alignment)."""
    return data + b"\x00" * (-len(data) % 4)


Timestamp: TypeAlias = int | Fraction | Decimal


def to_ns(ts: Timestamp) -> int:
    """Integer nanoseconds from an ``int`` (already ns) or a Fraction/Decimal of seconds.

    Fractions of a nanosecond are floored. Floats are refused: they cannot hold a
    nanosecond epoch timestamp exactly.
    """
    if isinstance(ts, (bool, float)):
        raise TypeError("timestamps are int ns or Fraction/Decimal seconds, not float/bool")
    if isinstance(ts, int):
        return ts
    if isinstance(ts, Decimal):
        ts = Fraction(ts)
    if isinstance(ts, Fraction):
        return (ts * NS_PER_S).__floor__()
    raise TypeError(f"unsupported timestamp type {type(ts).__name__}")


# --------------------------------------------------------------------------------------------
# Network and transport layers
# --------------------------------------------------------------------------------------------


def ipv4(
    src: str | bytes,
    dst: str | bytes,
    proto: int,
    payload: bytes,
    *,
    ident: int = 0,
    flags_df: bool = False,
    more_fragments: bool = False,
    frag_offset: int = 0,
    ttl: int = 64,
    tos: int = 0,
    options: bytes = b"",
    total_length: int | None = None,
    header_checksum: int | None = None,
) -> bytes:
    """An IPv4 packet: header (with correct total length and header checksum) + ``payload``.

    ``frag_offset`` is in 8-byte units, as on the wire. ``options`` are zero-padded (EOL) to a
    multiple of 4. ``total_length`` / ``header_checksum`` override the computed values to build
    deliberately broken packets.
    """
    options = pad4(options)
    if len(options) > 40:
        raise ValueError("IPv4 options longer than 40 bytes")
    if not 0 <= frag_offset < 1 << 13:
        raise ValueError("frag_offset is 13 bits (8-byte units)")
    ihl = 5 + len(options) // 4
    tot = 4 * ihl + len(payload) if total_length is None else total_length
    flags_frag = (0x4000 if flags_df else 0) | (0x2000 if more_fragments else 0) | frag_offset
    hdr = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            tos,
            tot,
            ident,
            flags_frag,
            ttl,
            proto,
            0,
            ip4(src),
            ip4(dst),
        )
        + options
    )
    csum = checksum(hdr) if header_checksum is None else header_checksum
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def _pad_ipv6_options(body: bytes) -> bytes:
    """Pad a hop-by-hop / destination-options body so that 2 + len is a multiple of 8."""
    need = -(2 + len(body)) % 8
    if need == 0:
        return body
    if need == 1:
        return body + b"\x00"  # Pad1
    return body + bytes([1, need - 2]) + b"\x00" * (need - 2)  # PadN


def ipv6_ext_header(ext_type: int, next_header: int, body: bytes) -> bytes:
    """One IPv6 extension header: next-header byte, length byte, ``body`` (padded as needed).

    * hop-by-hop (0) / destination options (60): ``body`` is the option TLVs, padded with
      Pad1/PadN to a multiple of 8 bytes; length in 8-octet units not counting the first 8.
    * routing (43): ``body`` starts with routing type and segments left; zero-padded.
    * fragment (44): ``body`` is the 6 bytes after next-header/reserved (see
      :func:`ipv6_fragment_ext`); an 8-byte full header is also accepted and its first byte
      is replaced. The second byte is reserved (0).
    * AH (51): length is in 4-octet units minus 2.
    * anything else: treated like routing (8-octet units, zero padding).
    """
    if ext_type == PROTO_IPV6_FRAGMENT:
        if len(body) == 8:
            body = body[2:]
        if len(body) != 6:
            raise ValueError("fragment header body must be 6 bytes (or a full 8-byte header)")
        return bytes([next_header, 0]) + body
    if ext_type == PROTO_AH:
        body = pad4(b"\x00\x00" + body)[2:]
        if (2 + len(body)) % 8:
            body += b"\x00" * 4
        return bytes([next_header, (2 + len(body)) // 4 - 2]) + body
    if ext_type in (PROTO_HOPOPTS, PROTO_IPV6_DSTOPTS):
        body = _pad_ipv6_options(body)
    else:
        body = body + b"\x00" * (-(2 + len(body)) % 8)
    return bytes([next_header, (2 + len(body)) // 8 - 1]) + body


def ipv6_fragment_ext(offset: int, more: bool, ident: int) -> tuple[int, bytes]:
    """A ``(44, body)`` entry for :func:`ipv6`'s ``ext_headers`` (``offset`` in 8-byte units)."""
    if not 0 <= offset < 1 << 13:
        raise ValueError("fragment offset is 13 bits (8-byte units)")
    return PROTO_IPV6_FRAGMENT, struct.pack("!HI", (offset << 3) | int(more), ident)


def ipv6_fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    """A complete 8-byte IPv6 fragment header (``offset`` in 8-byte units)."""
    body = ipv6_fragment_ext(offset, more, ident)[1]
    return ipv6_ext_header(PROTO_IPV6_FRAGMENT, next_header, body)


def ipv6(
    src: str | bytes,
    dst: str | bytes,
    next_header: int,
    payload: bytes,
    *,
    ext_headers: Sequence[tuple[int, bytes]] = (),
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
    payload_length: int | None = None,
) -> bytes:
    """An IPv6 packet with an optional extension-header chain.

    ``next_header`` is the protocol of ``payload`` (the upper layer). ``ext_headers`` is a list
    of ``(type, body)`` in wire order; each header's next-header byte is set to the type of the
    following header (or ``next_header`` for the last) and the fixed header's next-header field
    to the first one's type. See :func:`ipv6_ext_header` for what ``body`` means per type.
    ``payload_length`` overrides the computed value.
    """
    types = [t for t, _ in ext_headers] + [next_header]
    chain = b"".join(
        ipv6_ext_header(t, types[i + 1], body) for i, (t, body) in enumerate(ext_headers)
    )
    plen = len(chain) + len(payload) if payload_length is None else payload_length
    vtf = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return struct.pack("!IHBB16s16s", vtf, plen, types[0], hop_limit, ip6(src), ip6(dst)) + (
        chain + payload
    )


_TCP_FLAG_BITS = {
    "F": 0x01,
    "S": 0x02,
    "R": 0x04,
    "P": 0x08,
    "A": 0x10,
    "U": 0x20,
    "E": 0x40,
    "C": 0x80,
    "N": 0x100,
}


def tcp_flags(flags: str) -> int:
    """``"SA"`` -> 0x12. Letters: F S R P A U E(CE) C(WR) N(S)."""
    value = 0
    for ch in flags.upper():
        if ch not in _TCP_FLAG_BITS:
            raise ValueError(f"unknown TCP flag {ch!r} in {flags!r}")
        value |= _TCP_FLAG_BITS[ch]
    return value


def _pseudo_header(src: str | bytes, dst: str | bytes, proto: int, length: int) -> bytes:
    s, d = (ip4(src), ip4(dst)) if _is_v4(src) else (ip6(src), ip6(dst))
    if len(s) == 4:
        return struct.pack("!4s4sBBH", s, d, 0, proto, length)
    return struct.pack("!16s16sIxxxB", s, d, length, proto)


def _is_v4(addr: str | bytes) -> bool:
    if isinstance(addr, bytes):
        return len(addr) == 4
    return ":" not in addr


def tcp(
    sport: int,
    dport: int,
    flags: str = "",
    seq: int = 0,
    ack: int = 0,
    payload: bytes = b"",
    options: bytes = b"",
    *,
    window: int = 65535,
    urgent: int = 0,
    ip_src: str | bytes | None = None,
    ip_dst: str | bytes | None = None,
) -> bytes:
    """A TCP segment. ``flags`` as letters (``"S"``, ``"SA"``, ``"PA"``, ``"FA"``, ``"R"``).

    ``options`` are zero-padded to a multiple of 4. The checksum is 0 unless both ``ip_src`` and
    ``ip_dst`` are given, in which case it is computed over the IPv4/IPv6 pseudo-header.
    """
    options = pad4(options)
    if len(options) > 40:
        raise ValueError("TCP options longer than 40 bytes")
    doff = 5 + len(options) // 4
    fl = tcp_flags(flags)
    hdr = (
        struct.pack(
            "!HHIIHHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            (doff << 12) | fl,
            window,
            0,
            urgent,
        )
        + options
    )
    seg = hdr + payload
    if ip_src is not None and ip_dst is not None:
        csum = checksum(_pseudo_header(ip_src, ip_dst, PROTO_TCP, len(seg)) + seg)
        seg = seg[:16] + struct.pack("!H", csum) + seg[18:]
    return seg


def udp(
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    length: int | None = None,
    ip_src: str | bytes | None = None,
    ip_dst: str | bytes | None = None,
) -> bytes:
    """A UDP datagram. Checksum 0 (= none, for IPv4) unless ``ip_src``/``ip_dst`` are given."""
    ulen = 8 + len(payload) if length is None else length
    dgram = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    if ip_src is not None and ip_dst is not None:
        csum = checksum(_pseudo_header(ip_src, ip_dst, PROTO_UDP, len(dgram)) + dgram) or 0xFFFF
        dgram = dgram[:6] + struct.pack("!H", csum) + dgram[8:]
    return dgram


def icmp_echo(ident: int = 0, seq: int = 0, payload: bytes = b"", *, reply: bool = False) -> bytes:
    """An ICMPv4 echo request (type 8) or reply (type 0) with a correct checksum."""
    msg = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def icmp6_echo(
    ident: int = 0,
    seq: int = 0,
    payload: bytes = b"",
    *,
    reply: bool = False,
    ip_src: str | bytes | None = None,
    ip_dst: str | bytes | None = None,
) -> bytes:
    """An ICMPv6 echo request (128) / reply (129); checksum computed if addresses are given."""
    msg = struct.pack("!BBHHH", 129 if reply else 128, 0, 0, ident, seq) + payload
    if ip_src is not None and ip_dst is not None:
        csum = checksum(_pseudo_header(ip_src, ip_dst, PROTO_ICMPV6, len(msg)) + msg)
        msg = msg[:2] + struct.pack("!H", csum) + msg[4:]
    return msg


# --------------------------------------------------------------------------------------------
# Link layers
# --------------------------------------------------------------------------------------------


def ether(
    dst_mac: str | bytes,
    src_mac: str | bytes,
    ethertype: int,
    payload: bytes,
    vlans: Sequence[int] = (),
    qinq_outer_tpid: int = ETH_QINQ,
    *,
    pad_to_min: bool = False,
) -> bytes:
    """An Ethernet II frame (no FCS), optionally 802.1Q-tagged.

    ``vlans`` lists tags outermost first. One tag uses TPID 0x8100; with two or more, the
    outermost uses ``qinq_outer_tpid`` (0x88a8 S-tag by default, or the older 0x9100) and the
    inner ones 0x8100. Each entry is a VLAN id (0..4095) or, if larger, a full 16-bit TCI
    (PCP/DEI/VID). ``pad_to_min`` pads to the 60-byte minimum frame.
    """
    tags = b""
    for i, tci in enumerate(vlans):
        tpid = qinq_outer_tpid if i == 0 and len(vlans) > 1 else ETH_VLAN
        tags += struct.pack("!HH", tpid, tci & 0xFFFF)
    frame = mac(dst_mac) + mac(src_mac) + tags + struct.pack("!H", ethertype) + payload
    if pad_to_min and len(frame) < 60:
        frame += b"\x00" * (60 - len(frame))
    return frame


def _link_addr(addr: bytes | str | None) -> tuple[int, bytes]:
    if addr is None:
        return 0, b"\x00" * 8
    raw = mac(addr) if isinstance(addr, str) else addr
    if len(raw) > 8:
        raise ValueError("link-layer address longer than 8 bytes")
    return len(raw), raw.ljust(8, b"\x00")


def sll(
    payload: bytes,
    protocol: int = ETH_IPV4,
    pkttype: int = PACKET_HOST,
    *,
    hatype: int = ARPHRD_ETHER,
    addr: bytes | str | None = MAC_A,
) -> bytes:
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL 113): 16-byte header + ``payload``.

    Header: packet type, ARPHRD type, address length, 8 address bytes, protocol (all big
    endian).
    """
    alen, abytes = _link_addr(addr)
    return struct.pack("!HHH8sH", pkttype, hatype, alen, abytes, protocol) + payload


def sll2(
    payload: bytes,
    protocol: int = ETH_IPV4,
    pkttype: int = PACKET_HOST,
    *,
    ifindex: int = 1,
    hatype: int = ARPHRD_ETHER,
    addr: bytes | str | None = MAC_A,
) -> bytes:
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2 276): 20-byte header + ``payload``.

    Header: protocol, reserved (0), interface index, ARPHRD type, packet type (1 byte),
    address length (1 byte), 8 address bytes (all big endian).
    """
    alen, abytes = _link_addr(addr)
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, hatype, pkttype, alen, abytes) + payload


def null_loopback(payload: bytes, family: int = AF_INET, byteorder: ByteOrder = "<") -> bytes:
    """BSD loopback (LINKTYPE_NULL 0): 4-byte address family in the *capturing host's* order.

    AF_INET is 2 everywhere; AF_INET6 is 10 on Linux, 24 on Net/OpenBSD, 28 on FreeBSD,
    30 on macOS (``AF_INET6_*`` constants).
    """
    return struct.pack(f"{byteorder}I", family) + payload


def loop(payload: bytes, family: int = AF_INET) -> bytes:
    """OpenBSD loopback (LINKTYPE_LOOP 108): 4-byte address family in network byte order."""
    return struct.pack(">I", family) + payload


def raw(payload: bytes) -> bytes:
    """Raw IP (LINKTYPE_RAW 101, DLT_RAW 12/14, LINKTYPE_IPV4/IPV6): no header at all."""
    return payload


def _ip_version(packet: bytes) -> int:
    return packet[0] >> 4 if packet else 0


def wrap(packet: bytes, linktype: int, **kw: Any) -> bytes:
    """Wrap an IPv4/IPv6 ``packet`` in the link-layer header for ``linktype``.

    The ethertype / address family is chosen from the IP version nibble. Extra keyword
    arguments go to the link builder (e.g. ``vlans=[10]`` for Ethernet, ``byteorder=">"`` for
    LINKTYPE_NULL, ``pkttype=4`` for SLL). For NULL/LOOP the IPv6 family defaults to the BSD
    value 24 (one of the three values the LINKTYPE_NULL definition lists; Linux's 10 is not
    among them and tshark does not decode it) unless ``family=`` is given.
    """
    v6 = _ip_version(packet) == 6
    etype = ETH_IPV6 if v6 else ETH_IPV4
    fam = AF_INET6_BSD if v6 else AF_INET
    if linktype == LINKTYPE_ETHERNET:
        return ether(
            kw.pop("dst_mac", MAC_B),
            kw.pop("src_mac", MAC_A),
            etype,
            packet,
            **kw,
        )
    if linktype == LINKTYPE_LINUX_SLL:
        return sll(packet, etype, **kw)
    if linktype == LINKTYPE_LINUX_SLL2:
        return sll2(packet, etype, **kw)
    if linktype == LINKTYPE_NULL:
        return null_loopback(packet, kw.pop("family", fam), **kw)
    if linktype == LINKTYPE_LOOP:
        return loop(packet, kw.pop("family", fam))
    if linktype in (LINKTYPE_RAW, DLT_RAW, DLT_RAW_OPENBSD, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return raw(packet)
    raise ValueError(f"no builder for linktype {linktype}")


def ip4_tcp_frame(
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    sport: int = 40000,
    dport: int = 443,
    flags: str = "PA",
    payload: bytes = b"",
    *,
    seq: int = 0,
    ack: int = 0,
    linktype: int = LINKTYPE_ETHERNET,
    ident: int = 0,
    **link_kw: Any,
) -> bytes:
    """An IPv4/TCP packet (with correct checksums) wrapped for ``linktype``."""
    seg = tcp(sport, dport, flags, seq, ack, payload, ip_src=src, ip_dst=dst)
    return wrap(ipv4(src, dst, PROTO_TCP, seg, ident=ident), linktype, **link_kw)


def ip4_udp_frame(
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    sport: int = 40000,
    dport: int = 53,
    payload: bytes = b"",
    *,
    linktype: int = LINKTYPE_ETHERNET,
    ident: int = 0,
    **link_kw: Any,
) -> bytes:
    """An IPv4/UDP packet (with correct checksums) wrapped for ``linktype``."""
    dgram = udp(sport, dport, payload, ip_src=src, ip_dst=dst)
    return wrap(ipv4(src, dst, PROTO_UDP, dgram, ident=ident), linktype, **link_kw)


def ip6_tcp_frame(
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    sport: int = 40000,
    dport: int = 443,
    flags: str = "PA",
    payload: bytes = b"",
    *,
    seq: int = 0,
    ack: int = 0,
    linktype: int = LINKTYPE_ETHERNET,
    **link_kw: Any,
) -> bytes:
    """An IPv6/TCP packet (with correct checksum) wrapped for ``linktype``."""
    seg = tcp(sport, dport, flags, seq, ack, payload, ip_src=src, ip_dst=dst)
    return wrap(ipv6(src, dst, PROTO_TCP, seg), linktype, **link_kw)


def ip6_udp_frame(
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    sport: int = 40000,
    dport: int = 53,
    payload: bytes = b"",
    *,
    linktype: int = LINKTYPE_ETHERNET,
    **link_kw: Any,
) -> bytes:
    """An IPv6/UDP packet (with correct checksum) wrapped for ``linktype``."""
    dgram = udp(sport, dport, payload, ip_src=src, ip_dst=dst)
    return wrap(ipv6(src, dst, PROTO_UDP, dgram), linktype, **link_kw)


def ipv4_fragments(
    src: str | bytes,
    dst: str | bytes,
    proto: int,
    l4: bytes,
    frag_size: int,
    *,
    ident: int = 1,
    **ip_kw: Any,
) -> list[bytes]:
    """Split the upper-layer bytes ``l4`` (e.g. a whole UDP datagram) into IPv4 fragments.

    ``frag_size`` (a multiple of 8) is the payload per fragment; only the first fragment
    carries the transport header. Returns the IP packets in order.
    """
    if frag_size <= 0 or frag_size % 8:
        raise ValueError("frag_size must be a positive multiple of 8")
    out = []
    for off in range(0, len(l4), frag_size):
        chunk = l4[off : off + frag_size]
        more = off + frag_size < len(l4)
        out.append(
            ipv4(
                src,
                dst,
                proto,
                chunk,
                ident=ident,
                more_fragments=more,
                frag_offset=off // 8,
                **ip_kw,
            )
        )
    return out


def ipv6_fragments(
    src: str | bytes,
    dst: str | bytes,
    next_header: int,
    l4: bytes,
    frag_size: int,
    *,
    ident: int = 1,
    ext_before: Sequence[tuple[int, bytes]] = (),
    **ip_kw: Any,
) -> list[bytes]:
    """Split the upper-layer bytes ``l4`` into IPv6 fragments (fragment header 44 each).

    ``ext_before`` are the per-fragment (unfragmentable) headers placed before the fragment
    header, e.g. hop-by-hop. ``frag_size`` (a multiple of 8) is the fragmentable payload per
    fragment; only the first fragment carries the transport header.
    """
    if frag_size <= 0 or frag_size % 8:
        raise ValueError("frag_size must be a positive multiple of 8")
    out = []
    for off in range(0, len(l4), frag_size):
        more = off + frag_size < len(l4)
        exts = [*ext_before, ipv6_fragment_ext(off // 8, more, ident)]
        out.append(
            ipv6(src, dst, next_header, l4[off : off + frag_size], ext_headers=exts, **ip_kw)
        )
    return out


# --------------------------------------------------------------------------------------------
# pcap
# --------------------------------------------------------------------------------------------


@dataclass
class Rec:
    """One capture record.

    ``ts_ns``: integer nanoseconds since the epoch. ``wire_len``: original length (default the
    length of ``data``). ``caplen``: captured length; ``data`` is truncated to it. A ``caplen``
    larger than ``data`` is written as-is in the record header (for corrupt/truncated-file
    tests) with only ``data`` following. ``interface_id`` is used by :func:`pcapng_bytes`'s
    record convenience only.
    """

    ts_ns: int
    data: bytes
    wire_len: int | None = None
    caplen: int | None = None
    interface_id: int = 0

    @property
    def body(self) -> bytes:
        """The bytes actually written after the record header."""
        return self.data if self.caplen is None else self.data[: self.caplen]

    @property
    def incl_len(self) -> int:
        """The captured length written in the record header."""
        return len(self.data) if self.caplen is None else self.caplen

    @property
    def orig_len(self) -> int:
        """The original (wire) length written in the record header."""
        return len(self.data) if self.wire_len is None else self.wire_len


RecordLike: TypeAlias = Rec | tuple[Timestamp, bytes]


def as_rec(record: RecordLike) -> Rec:
    """Normalise a ``Rec`` or ``(ts, data)`` tuple (ts as int ns or Fraction/Decimal seconds)."""
    if isinstance(record, Rec):
        return record
    ts, data = record
    return Rec(to_ns(ts), data)


def pcap_header(
    linktype: int,
    *,
    byteorder: ByteOrder = "<",
    nanosecond: bool = False,
    snaplen: int = 262144,
    version: tuple[int, int] = (2, 4),
    thiszone: int = 0,
    sigfigs: int = 0,
    magic: int | None = None,
) -> bytes:
    """The 24-byte pcap global header. ``linktype`` may include FCS bits in its upper bits."""
    if magic is None:
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    return struct.pack(
        f"{byteorder}IHHiIII",
        magic,
        version[0],
        version[1],
        thiszone,
        sigfigs,
        snaplen,
        linktype,
    )


def pcap_record(rec: RecordLike, *, byteorder: ByteOrder = "<", nanosecond: bool = False) -> bytes:
    """One 16-byte pcap record header + data. µs files floor the ns timestamp to µs."""
    r = as_rec(rec)
    sec, ns = divmod(r.ts_ns, NS_PER_S)
    frac = ns if nanosecond else ns // 1000
    return struct.pack(f"{byteorder}IIII", sec, frac, r.incl_len, r.orig_len) + r.body


def pcap_bytes(
    records: Iterable[RecordLike],
    linktype: int,
    *,
    byteorder: ByteOrder = "<",
    nanosecond: bool = False,
    snaplen: int = 262144,
    version: tuple[int, int] = (2, 4),
    thiszone: int = 0,
    magic: int | None = None,
) -> bytes:
    """A classic pcap file.

    Magic 0xa1b2c3d4 (µs) or 0xa1b23c4d (ns, ``nanosecond=True``), written in ``byteorder``
    along with every other header field. ``magic`` overrides the magic number (the record
    layout still follows ``nanosecond``).
    """
    out = [
        pcap_header(
            linktype,
            byteorder=byteorder,
            nanosecond=nanosecond,
            snaplen=snaplen,
            version=version,
            thiszone=thiszone,
            magic=magic,
        )
    ]
    out += [pcap_record(r, byteorder=byteorder, nanosecond=nanosecond) for r in records]
    return b"".join(out)


# --------------------------------------------------------------------------------------------
# pcapng
# --------------------------------------------------------------------------------------------

Option = tuple[int, bytes]


def options_bytes(options: Sequence[Option], byteorder: ByteOrder, *, end: bool = True) -> bytes:
    """Encode pcapng options (code, value) each padded to 32 bits, plus opt_endofopt.

    An empty list encodes to nothing at all (options are optional).
    """
    if not options:
        return b""
    out = b"".join(
        struct.pack(f"{byteorder}HH", code, len(value)) + pad4(value) for code, value in options
    )
    if end:
        out += struct.pack(f"{byteorder}HH", OPT_ENDOFOPT, 0)
    return out


def block(
    block_type: int,
    body: bytes,
    byteorder: ByteOrder,
    *,
    total_length: int | None = None,
    trailing_length: int | None = None,
) -> bytes:
    """A generic pcapng block: type, total length, body padded to 32 bits, total length again.

    ``total_length`` / ``trailing_length`` override the two length fields (corruption tests).
    """
    body = pad4(body)
    length = 12 + len(body)
    lead = length if total_length is None else total_length
    trail = lead if trailing_length is None else trailing_length
    return (
        struct.pack(f"{byteorder}II", block_type, lead) + body + struct.pack(f"{byteorder}I", trail)
    )


def tsresol_units(tsresol: int | None) -> int:
    """Timestamp units per second for an ``if_tsresol`` byte (None = default 10^6)."""
    if tsresol is None:
        return 1_000_000
    if tsresol & 0x80:
        return 1 << (tsresol & 0x7F)
    return int(10**tsresol)


@dataclass
class Interface:
    """An Interface Description Block.

    ``tsresol`` is the raw ``if_tsresol`` byte (6 = µs, 9 = ns, ``0x80 | 20`` = 2^-20 s); None
    omits the option (default µs). ``tsoffset`` is ``if_tsoffset`` in whole seconds, added by
    readers to every timestamp. ``options`` are extra raw options appended after those.
    """

    linktype: int
    snaplen: int = 0
    tsresol: int | None = None
    tsoffset: int | None = None
    name: str | None = None
    fcslen: int | None = None
    options: list[Option] = field(default_factory=list)
    reserved: int = 0

    @property
    def units(self) -> int:
        """Timestamp units per second."""
        return tsresol_units(self.tsresol)

    def ticks(self, ts_ns: int) -> int:
        """The 64-bit timestamp value a block on this interface stores for ``ts_ns``.

        Floors when the resolution cannot represent ``ts_ns`` exactly.
        """
        rel = ts_ns - (self.tsoffset or 0) * NS_PER_S
        return (rel * self.units) // NS_PER_S

    def ticks_to_ns(self, ticks: int) -> Fraction:
        """The exact time (ns, possibly fractional) that ``ticks`` stands for."""
        return Fraction(ticks * NS_PER_S, self.units) + (self.tsoffset or 0) * NS_PER_S

    def encode(self, byteorder: ByteOrder) -> bytes:
        opts: list[Option] = []
        if self.name is not None:
            opts.append((IF_NAME, self.name.encode()))
        if self.tsresol is not None:
            opts.append((IF_TSRESOL, bytes([self.tsresol])))
        if self.fcslen is not None:
            opts.append((IF_FCSLEN, bytes([self.fcslen])))
        if self.tsoffset is not None:
            opts.append((IF_TSOFFSET, struct.pack(f"{byteorder}q", self.tsoffset)))
        opts += self.options
        body = struct.pack(f"{byteorder}HHI", self.linktype, self.reserved, self.snaplen)
        return block(PCAPNG_IDB, body + options_bytes(opts, byteorder), byteorder)


def _ts_words(ticks: int) -> tuple[int, int]:
    return (ticks >> 32) & 0xFFFFFFFF, ticks & 0xFFFFFFFF


@dataclass
class EPB:
    """An Enhanced Packet Block.

    ``ts_ns`` is converted to the interface's resolution (after subtracting its
    ``if_tsoffset``); ``ts_ticks`` writes a raw 64-bit timestamp instead. ``caplen`` truncates
    ``data`` (see :class:`Rec`); ``wire_len`` defaults to ``len(data)``.
    """

    interface_id: int
    ts_ns: int
    data: bytes
    wire_len: int | None = None
    caplen: int | None = None
    comment: str | None = None
    flags: int | None = None
    options: list[Option] = field(default_factory=list)
    ts_ticks: int | None = None

    def encode(self, byteorder: ByteOrder, iface: Interface | None) -> bytes:
        r = Rec(self.ts_ns, self.data, self.wire_len, self.caplen)
        if self.ts_ticks is not None:
            ticks = self.ts_ticks
        else:
            ticks = (iface or Interface(LINKTYPE_ETHERNET)).ticks(self.ts_ns)
        hi, lo = _ts_words(ticks)
        opts: list[Option] = []
        if self.comment is not None:
            opts.append((OPT_COMMENT, self.comment.encode()))
        if self.flags is not None:
            opts.append((EPB_FLAGS, struct.pack(f"{byteorder}I", self.flags)))
        opts += self.options
        body = struct.pack(f"{byteorder}IIIII", self.interface_id, hi, lo, r.incl_len, r.orig_len)
        return block(PCAPNG_EPB, pad4(body + r.body) + options_bytes(opts, byteorder), byteorder)


@dataclass
class SPB:
    """A Simple Packet Block: no interface id (always 0), no timestamp, original length only.

    The captured length is implied by the block length; readers take
    ``min(orig_len, snaplen of interface 0)`` and ignore the padding. When ``caplen`` is None
    and interface 0 has a non-zero snaplen, ``data`` is truncated to that snaplen; an explicit
    ``caplen`` truncates regardless (inconsistent with the format unless it matches).
    """

    data: bytes
    wire_len: int | None = None
    caplen: int | None = None

    def encode(self, byteorder: ByteOrder, iface: Interface | None = None) -> bytes:
        caplen = self.caplen
        if caplen is None and iface is not None and iface.snaplen:
            caplen = min(len(self.data), iface.snaplen)
        r = Rec(0, self.data, self.wire_len, caplen)
        return block(PCAPNG_SPB, struct.pack(f"{byteorder}I", r.orig_len) + r.body, byteorder)


@dataclass
class OPB:
    """An obsolete Packet Block (type 2): 16-bit interface id, 16-bit drops count, timestamp."""

    interface_id: int
    ts_ns: int
    data: bytes
    drops: int = 0
    wire_len: int | None = None
    caplen: int | None = None
    comment: str | None = None
    options: list[Option] = field(default_factory=list)
    ts_ticks: int | None = None

    def encode(self, byteorder: ByteOrder, iface: Interface | None) -> bytes:
        r = Rec(self.ts_ns, self.data, self.wire_len, self.caplen)
        if self.ts_ticks is not None:
            ticks = self.ts_ticks
        else:
            ticks = (iface or Interface(LINKTYPE_ETHERNET)).ticks(self.ts_ns)
        hi, lo = _ts_words(ticks)
        opts: list[Option] = []
        if self.comment is not None:
            opts.append((OPT_COMMENT, self.comment.encode()))
        opts += self.options
        body = struct.pack(
            f"{byteorder}HHIIII", self.interface_id, self.drops, hi, lo, r.incl_len, r.orig_len
        )
        return block(PCAPNG_OPB, pad4(body + r.body) + options_bytes(opts, byteorder), byteorder)


@dataclass
class RawBlock:
    """Any block given by type and body (body is padded; lengths are added).

    ``body_fn`` may be used instead of ``body`` when the body depends on the section's byte
    order: it is called with the byte order.
    """

    block_type: int
    body: bytes = b""
    total_length: int | None = None
    trailing_length: int | None = None
    body_fn: Callable[[ByteOrder], bytes] | None = None

    def encode(self, byteorder: ByteOrder) -> bytes:
        body = self.body
        if self.body_fn is not None:
            body = self.body_fn(byteorder)
        return block(
            self.block_type,
            body,
            byteorder,
            total_length=self.total_length,
            trailing_length=self.trailing_length,
        )


def name_resolution_block(
    ipv4_names: Sequence[tuple[str, Sequence[str]]] = (),
    ipv6_names: Sequence[tuple[str, Sequence[str]]] = (),
) -> RawBlock:
    """A Name Resolution Block (type 4) mapping addresses to names; readers may skip it."""

    def body(bo: ByteOrder) -> bytes:
        out = b""
        for rtype, items, conv in ((1, ipv4_names, ip4), (2, ipv6_names, ip6)):
            for addr, names in items:
                value = conv(addr) + b"".join(n.encode() + b"\x00" for n in names)
                out += struct.pack(f"{bo}HH", rtype, len(value)) + pad4(value)
        return out + struct.pack(f"{bo}HH", 0, 0)

    return RawBlock(PCAPNG_NRB, body_fn=body)


def interface_statistics_block(
    interface_id: int,
    ts_ticks: int,
    *,
    ifrecv: int | None = None,
    ifdrop: int | None = None,
    comment: str | None = None,
) -> RawBlock:
    """An Interface Statistics Block (type 5) with optional isb_ifrecv / isb_ifdrop."""

    def body(bo: ByteOrder) -> bytes:
        hi, lo = _ts_words(ts_ticks)
        opts: list[Option] = []
        if comment is not None:
            opts.append((OPT_COMMENT, comment.encode()))
        if ifrecv is not None:
            opts.append((ISB_IFRECV, struct.pack(f"{bo}Q", ifrecv)))
        if ifdrop is not None:
            opts.append((ISB_IFDROP, struct.pack(f"{bo}Q", ifdrop)))
        return struct.pack(f"{bo}III", interface_id, hi, lo) + options_bytes(opts, bo)

    return RawBlock(PCAPNG_ISB, body_fn=body)


def custom_block(pen: int, data: bytes, *, copyable: bool = True) -> RawBlock:
    """A Custom Block (0x00000BAD, or 0x40000BAD if not copyable): PEN + data."""

    def body(bo: ByteOrder) -> bytes:
        return struct.pack(f"{bo}I", pen) + data

    return RawBlock(PCAPNG_CB_COPY if copyable else PCAPNG_CB_NOCOPY, body_fn=body)


SectionBlock: TypeAlias = Interface | EPB | SPB | OPB | RawBlock | bytes


@dataclass
class Section:
    """A pcapng section: a Section Header Block in ``byteorder`` followed by ``blocks``.

    Interfaces are numbered 0, 1, ... in the order their :class:`Interface` appears in this
    section; packet blocks use that to convert timestamps. ``bytes`` items are inserted
    verbatim (for hand-made corruption). ``section_length`` is written in the SHB: -1 =
    unspecified (default), None = the real length of the section's other blocks.
    """

    blocks: list[SectionBlock] = field(default_factory=list)
    byteorder: ByteOrder = "<"
    version: tuple[int, int] = (1, 0)
    section_length: int | None = -1
    hardware: str | None = None
    os: str | None = None
    userappl: str | None = None
    comment: str | None = None
    options: list[Option] = field(default_factory=list)

    def encode(self) -> bytes:
        bo = self.byteorder
        interfaces: list[Interface] = []
        parts: list[bytes] = []
        for blk in self.blocks:
            if isinstance(blk, Interface):
                interfaces.append(blk)
                parts.append(blk.encode(bo))
            elif isinstance(blk, (EPB, OPB)):
                iid = blk.interface_id
                iface = interfaces[iid] if iid < len(interfaces) else None
                parts.append(blk.encode(bo, iface))
            elif isinstance(blk, SPB):
                parts.append(blk.encode(bo, interfaces[0] if interfaces else None))
            elif isinstance(blk, RawBlock):
                parts.append(blk.encode(bo))
            elif isinstance(blk, bytes):
                parts.append(blk)
            else:
                raise TypeError(f"unsupported block {blk!r}")
        rest = b"".join(parts)
        opts: list[Option] = []
        for code, text in (
            (OPT_COMMENT, self.comment),
            (SHB_HARDWARE, self.hardware),
            (SHB_OS, self.os),
            (SHB_USERAPPL, self.userappl),
        ):
            if text is not None:
                opts.append((code, text.encode()))
        opts += self.options
        slen = len(rest) if self.section_length is None else self.section_length
        body = struct.pack(f"{bo}IHHq", PCAPNG_BOM, self.version[0], self.version[1], slen)
        return block(PCAPNG_SHB, body + options_bytes(opts, bo), bo) + rest


def pcapng_bytes(sections: Section | Iterable[Section]) -> bytes:
    """A pcapng file made of one or more sections (each may use its own byte order)."""
    if isinstance(sections, Section):
        sections = [sections]
    return b"".join(s.encode() for s in sections)


def pcapng_simple(
    records: Iterable[RecordLike],
    linktype: int,
    *,
    byteorder: ByteOrder = "<",
    tsresol: int | None = None,
    snaplen: int = 0,
) -> bytes:
    """Convenience: one section, one interface, one EPB per record."""
    blocks: list[SectionBlock] = [Interface(linktype, snaplen=snaplen, tsresol=tsresol)]
    for rec in records:
        r = as_rec(rec)
        blocks.append(EPB(r.interface_id, r.ts_ns, r.data, r.wire_len, r.caplen))
    return pcapng_bytes(Section(blocks, byteorder=byteorder))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed, deterministic (mtime 0)."""
    return gzip.compress(data, mtime=0)


def write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (creating parent directories) and return the Path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p
