"""Pivots from a flow into other tools: its Community ID and a Wireshark display filter.

The Community ID is the published flow hash (Community ID v1, corelight/community-id-spec):
Zeek (``policy/protocols/conn/community-id-logging``), Suricata (eve ``community_id``),
Arkime, Elastic and Wireshark (the ``communityid`` post-dissector) write the same string for
the same flow, so it joins a flow of this report to the logs of a SIEM by string equality.

The display filter selects the flow's frames in Wireshark or ``tshark -Y``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
import struct
from collections.abc import Mapping
from typing import Any

# IP protocol numbers (IANA) of the transports the spec hashes with ports.
ICMP = 1
TCP = 6
UDP = 17
ICMPV6 = 58
SCTP = 132
PROTO_NUMBERS = {"icmp": ICMP, "tcp": TCP, "udp": UDP, "icmpv6": ICMPV6, "sctp": SCTP}

# The ICMP messages that have a counterpart (request and answer), as the spec takes them from
# Zeek (ICMP4_counterpart / ICMP6_counterpart): such a message hashes as the "port" pair
# (type, counterpart type), so that both directions get one id; any other message is one-way
# and hashes as (type, code), its endpoints never swapped.
_ICMP4_COUNTERPART = {
    8: 0,  # echo request / echo reply
    0: 8,
    13: 14,  # timestamp / timestamp reply
    14: 13,
    15: 16,  # information request / reply
    16: 15,
    10: 9,  # router solicitation / router advertisement
    9: 10,
    17: 18,  # address mask request / reply
    18: 17,
}
_ICMP6_COUNTERPART = {
    128: 129,  # echo request / echo reply
    129: 128,
    133: 134,  # router solicitation / router advertisement
    134: 133,
    135: 136,  # neighbor solicitation / neighbor advertisement
    136: 135,
    130: 131,  # multicast listener query / report
    131: 130,
    139: 140,  # node information query / reply ("who are you")
    140: 139,
    144: 145,  # home agent address discovery request / reply
    145: 144,
}


def community_id(
    proto_number: int,
    src: str,
    sport: int | None,
    dst: str,
    dport: int | None,
    seed: int = 0,
) -> str:
    """The Community ID v1 of a flow, ``"1:"`` and the base64 of a SHA-1.

    For ICMP (1) and ICMPv6 (58) ``sport`` is the message type and ``dport`` its code. For a
    protocol without ports (neither TCP, UDP, SCTP nor the ICMPs) the ports are ignored: the
    hash covers the addresses and the protocol alone.

    The hash input, in network byte order: the seed (2 bytes), the smaller endpoint's address,
    the other address (4 or 16 bytes each), the protocol (1 byte), a zero byte of padding, then,
    for protocols with ports, the smaller endpoint's port and the other port (2 bytes each).
    The smaller endpoint is the one with the smaller address, or, with equal addresses, the
    smaller port; a one-way ICMP message keeps its direction.
    """
    saddr = ipaddress.ip_address(src).packed
    daddr = ipaddress.ip_address(dst).packed
    if len(saddr) != len(daddr):
        raise ValueError(f"addresses of two families: {src} and {dst}")
    ports: tuple[int, int] | None = None
    one_way = False
    if proto_number in (TCP, UDP, SCTP):
        ports = (int(sport or 0), int(dport or 0))
    elif proto_number in (ICMP, ICMPV6):
        counterparts = _ICMP4_COUNTERPART if proto_number == ICMP else _ICMP6_COUNTERPART
        kind, code = int(sport or 0), int(dport or 0)
        if kind in counterparts:
            ports = (kind, counterparts[kind])
        else:
            ports, one_way = (kind, code), True
    if not one_way:
        first = (saddr, ports[0]) if ports else (saddr, 0)
        second = (daddr, ports[1]) if ports else (daddr, 0)
        if not first < second:
            saddr, daddr = daddr, saddr
            if ports:
                ports = (ports[1], ports[0])
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BB", proto_number, 0)
    if ports:
        data += struct.pack("!HH", *ports)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def flow_community_id(flow: Mapping[str, Any]) -> str:
    """The Community ID of a flow record (``proto`` "tcp" or "udp", client and server)."""
    return community_id(
        PROTO_NUMBERS[flow["proto"]],
        flow["client"],
        flow["client_port"],
        flow["server"],
        flow["server_port"],
    )


def display_filter(flow: Mapping[str, Any]) -> str:
    """A Wireshark display filter that selects the flow's frames, and none other.

    Each direction of the flow (``ip.src``/``ip.dst``, ``ipv6.*`` for an IPv6 flow, with the
    transport's source and destination ports): a flow between the same two addresses and the
    same two port numbers the other way round is not selected. The addresses are those of the
    first IP header (``#1``): a copy of the flow inside a tunnel to or from other addresses
    (GRE, ERSPAN) is not selected. The flow's frame range, ``frame.number >= first &&
    frame.number <= last``, tells it apart from an earlier or later flow of the same addresses
    and ports (a port reused), and numbers frames of one capture file, as Wireshark does. ICMP
    errors that quote the flow's packets are left out (``!icmp``/``!icmpv6``).

    Not selected: IP fragments after a datagram's first (they carry no ports; flowaudit counts
    them to the flow). A flow whose frames lie in several capture files (``first_file`` and
    ``last_file`` differ) gets no frame range: frame numbers count per file, so no single
    range selects its frames; the filter then selects every flow of the addresses and ports in
    each file.
    """
    first_file = flow.get("first_file", flow.get("file"))
    last_file = flow.get("last_file", first_file)
    frames = (flow["first_frame"], flow["last_frame"]) if first_file == last_file else None
    return _filter_text(
        flow["proto"],
        flow["client"],
        flow["client_port"],
        flow["server"],
        flow["server_port"],
        frames,
    )


def _filter_text(
    proto: str, client: str, client_port: int, server: str, server_port: int, frames: Any
) -> str:
    field = "ipv6" if ":" in client else "ip"
    if proto in ("tcp", "udp", "sctp"):
        forth = (
            f"{field}.src#1 == {client} && {field}.dst#1 == {server} && "
            f"{proto}.srcport == {client_port} && {proto}.dstport == {server_port}"
        )
        back = (
            f"{field}.src#1 == {server} && {field}.dst#1 == {client} && "
            f"{proto}.srcport == {server_port} && {proto}.dstport == {client_port}"
        )
        # An ICMP error quotes the header of the packet it answers, and Wireshark dissects
        # the quoted addresses and ports as fields of the ICMP frame: without this, a "port
        # unreachable" answering a datagram of the flow would be selected with it.
        guard = " && " + ("!icmpv6" if field == "ipv6" else "!icmp")
    else:
        # a protocol without ports: by its name, or its number ("ip-N" flows)
        number = proto[3:] if proto.startswith("ip-") else None
        what = (
            (f"ipv6.nxt == {number}" if field == "ipv6" else f"ip.proto == {number}")
            if number
            else proto
        )
        forth = f"{field}.src#1 == {client} && {field}.dst#1 == {server} && {what}"
        back = f"{field}.src#1 == {server} && {field}.dst#1 == {client} && {what}"
        guard = ""
    text = f"(({forth}) || ({back})){guard}"
    if frames is not None:
        text += f" && frame.number >= {frames[0]} && frame.number <= {frames[1]}"
    return text


def _packed(address: str) -> bytes:
    """An address in network byte order (inet_pton: ten times ipaddress's speed)."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except OSError:
        return ipaddress.ip_address(address).packed


def pivot_columns(
    proto: list[str],
    client: list[str],
    client_port: list[int],
    server: list[str],
    server_port: list[int],
    first_frame: list[int],
    last_frame: list[int],
    one_file: list[bool],
) -> tuple[list[str], list[str]]:
    """The ``community_id`` and ``wireshark_filter`` columns of the audit's flows (one value a
    flow; ``one_file`` says whether the flow's frames are all in one capture file).

    The same as ``community_id`` and ``display_filter`` flow by flow, made for many flows:
    each address is parsed once (measured: 30,000 flows in 0.4 s flow by flow, 0.06 s here)."""
    packed = {a: _packed(a) for a in {*client, *server}}
    ids = []
    filters = []
    sha1, b64, pack = hashlib.sha1, base64.b64encode, struct.pack
    rows = zip(
        proto, client, client_port, server, server_port, first_frame, last_frame, one_file,
        strict=True,
    )  # fmt: skip
    for p, c, cp, s, sp, ff, lf, same in rows:
        a, b = packed[c], packed[s]
        if (b, sp) < (a, cp):
            a, b, x, y = b, a, sp, cp
        else:
            x, y = cp, sp
        digest = sha1(b"\0\0" + a + b + pack("!BBHH", PROTO_NUMBERS[p], 0, x, y)).digest()
        ids.append("1:" + b64(digest).decode("ascii"))
        filters.append(_filter_text(p, c, cp, s, sp, (ff, lf) if same else None))
    return ids, filters
