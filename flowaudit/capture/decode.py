"""Compiled packet decoder: link layer, IPv4/IPv6 and TCP/UDP headers into batch columns.

One pass over the records a walker found, writing the ``PacketBatch`` columns in place. No
per-packet Python object is made. ``decode_records`` runs in C (``flowaudit/_kernels.c``);
``decode_records_py`` here is its specification and fallback (``kernels.py``).

Header layouts: IEEE 802.3 / 802.1Q (VLAN, QinQ), Linux cooked capture v1 and v2 (tcpdump.org
linktypes LINUX_SLL, LINUX_SLL2), BSD loopback
(LINKTYPE_NULL, LINKTYPE_LOOP), raw IP; RFC 791 (IPv4), RFC 8200 (IPv6 and its extension
headers), RFC 9293 (TCP), RFC 768 (UDP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowaudit.capture import kernels
from flowaudit.capture._bytes import be16, be32, be64, le32
from flowaudit.capture.batch import (
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    L3_IPV4,
    L3_IPV6,
    L3_NONE,
)

# Link types flowaudit decodes (tcpdump.org/linktypes.html), and their names for reports.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW as most BSDs and Linux number it in files
LINKTYPE_RAW_DLT14 = 14  # DLT_RAW as OpenBSD numbers it
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES: dict[int, str] = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_RAW_DLT12: "raw",
    LINKTYPE_RAW_DLT14: "raw",
    LINKTYPE_RAW: "raw",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_IPV6: "ipv6",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
# 802.1Q, 802.1ad (QinQ service tag), and the pre-standard QinQ TPIDs still seen in captures.
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200)
IPV4_MAPPED = 0x0000FFFF00000000

# IPv6 extension headers walked over to reach the transport (RFC 8200 section 4, RFC 6564).
IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_AH = 51
IPV6_DEST_OPTS = 60
IPV6_MOBILITY = 135
IPV6_HIP = 139
IPV6_SHIM6 = 140


def _is_vlan(ethertype: int) -> bool:
    return (
        ethertype == 0x8100 or ethertype == 0x88A8 or ethertype == 0x9100 or (ethertype == 0x9200)
    )


def _bsd_family_to_ethertype(family: int) -> int:
    # AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD/OpenBSD), 28 (FreeBSD),
    # 30 (macOS) -- Wireshark's packet-null.c accepts all of them.
    if family == 2:
        return ETHERTYPE_IPV4
    if family == 10 or family == 24 or family == 28 or family == 30:
        return ETHERTYPE_IPV6
    return -1


def decode_records_py(
    buf: Any,
    count: int,
    rec_offset: Any,
    rec_caplen: Any,
    rec_if: Any,
    if_linktype: Any,
    l3: Any,
    proto: Any,
    src_hi: Any,
    src_lo: Any,
    dst_hi: Any,
    dst_lo: Any,
    sport: Any,
    dport: Any,
    tcp_flags: Any,
    tcp_seq: Any,
    payload_off: Any,
    payload_len: Any,
    payload_cap: Any,
    l2_multicast: Any,
    frag: Any,
    frag_id: Any,
) -> None:
    """Decode ``count`` records into the columns (a link type not decoded leaves L3_NONE)."""
    for i in range(count):
        start = int(rec_offset[i])
        end = min(start + int(rec_caplen[i]), buf.shape[0])  # never past the buffer, whatever a
        # damaged record claims
        interface = int(rec_if[i])
        linktype = int(if_linktype[interface]) if 0 <= interface < if_linktype.shape[0] else -1
        l3[i] = L3_NONE
        proto[i] = 0
        src_hi[i] = 0
        src_lo[i] = 0
        dst_hi[i] = 0
        dst_lo[i] = 0
        sport[i] = 0
        dport[i] = 0
        tcp_flags[i] = 0
        tcp_seq[i] = 0
        payload_off[i] = 0
        payload_len[i] = 0
        payload_cap[i] = 0
        l2_multicast[i] = False
        frag[i] = FRAG_NONE
        frag_id[i] = 0
        if start < 0 or start > end:
            continue

        # ---- link layer -> ethertype (or IP version) and position of the network header
        pos = start
        ethertype = -1
        if linktype == LINKTYPE_ETHERNET:
            if end - pos < 14:
                continue
            l2_multicast[i] = (int(buf[pos]) & 1) == 1  # I/G bit of the destination address
            ethertype = be16(buf, pos + 12)
            pos += 14
        elif linktype == LINKTYPE_LINUX_SLL:
            if end - pos < 16:
                continue
            packet_type = be16(buf, pos)
            l2_multicast[i] = packet_type == 1 or packet_type == 2  # broadcast, multicast
            ethertype = be16(buf, pos + 14)
            pos += 16
        elif linktype == LINKTYPE_LINUX_SLL2:
            if end - pos < 20:
                continue
            ethertype = be16(buf, pos)
            packet_type = int(buf[pos + 10])
            l2_multicast[i] = packet_type == 1 or packet_type == 2
            pos += 20
        elif linktype == LINKTYPE_NULL:
            if end - pos < 4:
                continue
            family = le32(buf, pos)
            if family > 0xFFFF:  # written on a big-endian host
                family = be32(buf, pos)
            ethertype = _bsd_family_to_ethertype(family)
            pos += 4
        elif linktype == LINKTYPE_LOOP:
            if end - pos < 4:
                continue
            ethertype = _bsd_family_to_ethertype(be32(buf, pos))
            pos += 4
        elif (
            linktype == LINKTYPE_RAW
            or linktype == LINKTYPE_RAW_DLT12
            or linktype == LINKTYPE_RAW_DLT14
            or linktype == LINKTYPE_IPV4
            or linktype == LINKTYPE_IPV6
        ):
            if end - pos < 1:
                continue
            version = int(buf[pos]) >> 4
            if version == 4:
                ethertype = ETHERTYPE_IPV4
            elif version == 6:
                ethertype = ETHERTYPE_IPV6
        else:
            continue  # not a link type decoded here: the reader counts and reports these

        # 802.1Q / QinQ tags, then 802.2 LLC/SNAP encapsulation of an EtherType.
        while _is_vlan(ethertype) and end - pos >= 4:
            ethertype = be16(buf, pos + 2)
            pos += 4
        if 0 <= ethertype < 0x0600 and end - pos >= 8:
            if int(buf[pos]) == 0xAA and int(buf[pos + 1]) == 0xAA and int(buf[pos + 2]) == 0x03:
                ethertype = be16(buf, pos + 6)
                pos += 8

        # ---- network layer
        transport = -1
        l4 = 0
        l4_end = 0  # end of the transport segment as the IP header says it
        if ethertype == ETHERTYPE_IPV4:
            if end - pos < 20 or (int(buf[pos]) >> 4) != 4:
                continue
            header_len = (int(buf[pos]) & 0x0F) * 4
            if header_len < 20 or end - pos < header_len:
                continue
            total_len = be16(buf, pos + 2)
            if total_len < header_len:  # 0 under TCP segmentation offload: trust the capture
                total_len = end - pos
            l3[i] = L3_IPV4
            transport = int(buf[pos + 9])
            proto[i] = transport
            src_lo[i] = IPV4_MAPPED | be32(buf, pos + 12)
            dst_lo[i] = IPV4_MAPPED | be32(buf, pos + 16)
            flags_offset = be16(buf, pos + 6)
            fragment_offset = flags_offset & 0x1FFF
            more_fragments = (flags_offset & 0x2000) != 0
            if fragment_offset != 0 or more_fragments:
                frag_id[i] = be16(buf, pos + 4)
                frag[i] = FRAG_LATER if fragment_offset != 0 else FRAG_FIRST
            l4 = pos + header_len
            l4_end = pos + total_len
        elif ethertype == ETHERTYPE_IPV6:
            if end - pos < 40 or (int(buf[pos]) >> 4) != 6:
                continue
            l3[i] = L3_IPV6
            src_hi[i] = be64(buf, pos + 8)
            src_lo[i] = be64(buf, pos + 16)
            dst_hi[i] = be64(buf, pos + 24)
            dst_lo[i] = be64(buf, pos + 32)
            payload_length = be16(buf, pos + 4)
            l4_end = pos + 40 + payload_length if payload_length else end  # 0: jumbogram
            next_header = int(buf[pos + 6])
            l4 = pos + 40
            while True:
                if (
                    next_header == IPV6_HOP_BY_HOP
                    or next_header == IPV6_ROUTING
                    or next_header == IPV6_DEST_OPTS
                    or next_header == IPV6_MOBILITY
                    or next_header == IPV6_HIP
                    or next_header == IPV6_SHIM6
                ):
                    if end - l4 < 2:
                        break
                    following = int(buf[l4])
                    l4 += (int(buf[l4 + 1]) + 1) * 8
                    next_header = following
                elif next_header == IPV6_AH:
                    if end - l4 < 2:
                        break
                    following = int(buf[l4])
                    l4 += (int(buf[l4 + 1]) + 2) * 4  # RFC 4302 section 2.2
                    next_header = following
                elif next_header == IPV6_FRAGMENT:
                    if end - l4 < 8:
                        break
                    following = int(buf[l4])
                    offset_flags = be16(buf, l4 + 2)
                    frag_id[i] = be32(buf, l4 + 4)
                    frag[i] = FRAG_LATER if (offset_flags >> 3) != 0 else FRAG_FIRST
                    if (offset_flags >> 3) == 0 and (offset_flags & 1) == 0:
                        frag[i] = FRAG_NONE  # an atomic fragment (RFC 6946): whole packet
                    l4 += 8
                    next_header = following
                else:
                    break
            proto[i] = next_header
            transport = next_header
        else:
            continue

        if frag[i] == FRAG_LATER:
            continue  # no transport header here; flows.py maps it by its fragment id
        cap_end = min(end, l4_end)

        # ---- transport layer
        if transport == IPPROTO_TCP:
            if cap_end - l4 < 4:
                continue
            sport[i] = be16(buf, l4)
            dport[i] = be16(buf, l4 + 2)
            if cap_end - l4 < 14:
                continue
            tcp_seq[i] = be32(buf, l4 + 4)
            tcp_flags[i] = int(buf[l4 + 13])
            header_len = (int(buf[l4 + 12]) >> 4) * 4
            data = l4 + header_len
            if header_len < 20 or data > l4_end:
                continue  # a bogus data offset: ports and flags, no payload
            payload_off[i] = data
            payload_len[i] = l4_end - data
            payload_cap[i] = max(0, cap_end - data)
        elif transport == IPPROTO_UDP:
            if cap_end - l4 < 4:
                continue
            sport[i] = be16(buf, l4)
            dport[i] = be16(buf, l4 + 2)
            data = l4 + 8
            if data > l4_end:
                continue
            if cap_end - l4 >= 6:
                datagram = be16(buf, l4 + 4)  # the UDP length bounds the payload (RFC 768)
                if 8 <= datagram < l4_end - l4 and frag[i] == FRAG_NONE:
                    l4_end = l4 + datagram
                    cap_end = min(cap_end, l4_end)
            payload_off[i] = data
            payload_len[i] = l4_end - data
            payload_cap[i] = max(0, cap_end - data)


decode_records: Callable[..., None] = decode_records_py
if kernels.compiled is not None:
    decode_records = kernels.compiled.decode_records
