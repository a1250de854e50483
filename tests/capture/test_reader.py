"""The native capture reader on hand-built files: containers, link layers, IP, damage.

Every capture here is written byte by byte by ``tests/capbuild.py`` (itself checked against
tshark in ``tests/test_capbuild.py``), so each expected value below is known independently of
the code under test: timestamps to the nanosecond, frame numbers, wire and captured lengths,
addresses and ports after every link layer flowaudit reads, and what a damaged file yields.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowaudit.capture.batch import FRAG_FIRST, FRAG_LATER, FRAG_NONE, L3_IPV4, L3_IPV6, L3_NONE
from flowaudit.capture.reader import CaptureInfo, CaptureReader
from flowaudit.capture.walk import MAX_RECORD
from flowaudit.errors import CaptureFormatError, InputError
from flowaudit.flows import FlowConfig, FlowTable, build_flow_table
from tests import capbuild as cb

NS = 1_000_000_000
T0 = 1_700_000_000_123_456_789  # deliberately not a whole microsecond
SRC4, DST4 = "10.0.0.1", "10.0.0.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"

COLUMNS = (
    "frame",
    "ts_ns",
    "wire_len",
    "l3",
    "proto",
    "sport",
    "dport",
    "tcp_flags",
    "tcp_seq",
    "payload_len",
    "payload_cap",
    "l2_multicast",
    "frag",
    "frag_id",
)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _address(hi: int, lo: int) -> str:
    value = ipaddress.IPv6Address((int(hi) << 64) | int(lo))
    return str(value.ipv4_mapped) if value.ipv4_mapped else str(value)


class Packets:
    """Every packet of one file, columns copied out of the (reused) batches."""

    def __init__(self, reader: CaptureReader) -> None:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
        self.src: list[str] = []
        self.dst: list[str] = []
        self.payload: list[bytes] = []
        self.batch_sizes: list[int] = []
        for batch in reader.batches():
            self.batch_sizes.append(len(batch))
            for name in COLUMNS:
                parts[name].append(getattr(batch, name).copy())
            for k in range(len(batch)):
                self.src.append(_address(batch.src_hi[k], batch.src_lo[k]))
                self.dst.append(_address(batch.dst_hi[k], batch.dst_lo[k]))
                start = int(batch.payload_off[k])
                self.payload.append(bytes(batch.buffer[start : start + int(batch.payload_cap[k])]))
        self.info: CaptureInfo = reader.info
        self.columns = {
            name: (np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64))
            for name, chunks in parts.items()
        }

    def __getitem__(self, name: str) -> list[int]:
        return [int(v) for v in self.columns[name]]

    def __len__(self) -> int:
        return len(self.src)


def read(path: Path, **kwargs: Any) -> Packets:
    return Packets(CaptureReader(path, **kwargs))


def flows(paths: list[Path], **config: Any) -> FlowTable:
    return build_flow_table(paths, FlowConfig(**config))


def pcap(tmp_path: Path, name: str, records: list[cb.Rec], linktype: int, **kw: Any) -> Path:
    return cb.write(tmp_path / name, cb.pcap_bytes(records, linktype, **kw))


def eth_tcp(
    sport: int, dport: int = 445, flags: str = "PA", payload: bytes = b"", **kw: Any
) -> bytes:
    return cb.ip4_tcp_frame(SRC4, DST4, sport, dport, flags, payload, **kw)


def eth_udp(sport: int, dport: int = 9999, payload: bytes = b"", **kw: Any) -> bytes:
    return cb.ip4_udp_frame(SRC4, DST4, sport, dport, payload, **kw)


def raw_udp(sport: int, dport: int = 9999, payload: bytes = b"") -> bytes:
    return cb.ip4_udp_frame(SRC4, DST4, sport, dport, payload, linktype=cb.LINKTYPE_RAW)


# ------------------------------------------------------------------------------------------
# classic pcap
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nanosecond", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize("byteorder", ["<", ">"], ids=["le", "be"])
def test_pcap_timestamps_frames_and_lengths(
    tmp_path: Path, byteorder: cb.ByteOrder, nanosecond: bool
) -> None:
    times = [T0, T0 + 1_001, T0 + 2 * NS + 999_999]
    full = eth_tcp(40000, payload=b"p" * 200, seq=7)
    records = [
        cb.Rec(times[0], eth_tcp(40000, payload=b"hello")),
        cb.Rec(times[1], eth_udp(40001, payload=b"x" * 33)),
        cb.Rec(times[2], full, caplen=54),  # headers only: snaplen cut the payload
    ]
    path = pcap(
        tmp_path,
        "t.pcap",
        records,
        cb.LINKTYPE_ETHERNET,
        byteorder=byteorder,
        nanosecond=nanosecond,
    )
    packets = read(path)

    expected_ts = [t if nanosecond else t - t % 1000 for t in times]
    assert packets["ts_ns"] == expected_ts
    assert packets["frame"] == [1, 2, 3]
    wire = [len(records[0].data), len(records[1].data), len(full)]
    assert packets["wire_len"] == wire
    assert packets["sport"] == [40000, 40001, 40000]
    assert packets["proto"] == [6, 17, 6]
    # The cut frame still says how much payload the IP header claims, but has none of it.
    assert packets["payload_len"] == [5, 33, 200]
    assert packets["payload_cap"] == [5, 33, 0]
    assert packets.payload == [b"hello", b"x" * 33, b""]

    info = packets.info
    assert (info.format, info.compression, info.linktypes) == ("pcap", None, ["ethernet"])
    assert info.packets == 3
    assert info.ip_packets == 3
    assert info.bytes == sum(wire)  # wire lengths, not captured lengths
    assert info.first_seen_ns == expected_ts[0]
    assert info.last_seen_ns == expected_ts[2]
    assert info.warnings == []

    table = flows([path])
    tcp_flow = table.flows[table.flows["proto"] == "tcp"]
    assert tcp_flow["bytes"].tolist() == [wire[0] + wire[2]]
    assert table.flows["bytes"].sum() == sum(wire)


def test_pcap_upper_bits_of_linktype_are_fcs_length(tmp_path: Path) -> None:
    # pcap-savefile(5): the upper bits of the link-type field carry FCS information.
    linktype = cb.LINKTYPE_ETHERNET | (1 << 26) | (4 << 28)
    path = pcap(tmp_path, "fcs.pcap", [cb.Rec(T0, eth_udp(1234))], linktype)
    packets = read(path)
    assert packets.info.linktypes == ["ethernet"]
    assert packets["sport"] == [1234]


# ------------------------------------------------------------------------------------------
# pcapng
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("byteorder", ["<", ">"], ids=["le", "be"])
def test_pcapng_section_byte_order(tmp_path: Path, byteorder: cb.ByteOrder) -> None:
    times = [T0, T0 + 5_000, T0 + 3 * NS]
    data = cb.pcapng_simple(
        [cb.Rec(t, eth_udp(50000 + k, payload=b"n" * k)) for k, t in enumerate(times)],
        cb.LINKTYPE_ETHERNET,
        byteorder=byteorder,
        tsresol=9,
    )
    packets = read(cb.write(tmp_path / "t.pcapng", data))
    assert packets.info.format == "pcapng"
    assert packets["ts_ns"] == times
    assert packets["frame"] == [1, 2, 3]
    assert packets["sport"] == [50000, 50001, 50002]
    assert packets.payload == [b"", b"n", b"nn"]
    assert packets.info.linktypes == ["ethernet"]


def test_pcapng_interfaces_resolutions_offsets_and_block_kinds(tmp_path: Path) -> None:
    if_usec = cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=6, name="eth0")
    if_nsec = cb.Interface(cb.LINKTYPE_RAW, tsresol=9, tsoffset=1_600_000_000)
    if_bin = cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=0x80 | 20, tsoffset=7)
    t = [T0 + k * 1_234_567_891 for k in range(6)]
    blocks: list[cb.SectionBlock] = [
        if_usec,
        if_nsec,
        if_bin,
        cb.EPB(0, t[0], eth_udp(1001)),
        cb.name_resolution_block([(SRC4, ["host-a"])]),
        cb.EPB(1, t[1], raw_udp(1002)),
        cb.SPB(eth_udp(1003)),  # no timestamp: takes the one of the block before it
        cb.interface_statistics_block(0, 12345, ifrecv=10, ifdrop=0),
        cb.custom_block(32473, b"custom data"),
        cb.custom_block(32473, b"not to copy", copyable=False),
        cb.RawBlock(0x7A7A7A7A, b"an unknown block type"),
        cb.OPB(0, t[3], eth_udp(1004)),
        cb.EPB(2, t[4], eth_udp(1005)),
        cb.RawBlock(cb.PCAPNG_DSB, b"\x00" * 20),
        cb.EPB(1, t[5], raw_udp(1006)),
    ]
    packets = read(cb.write(tmp_path / "ifaces.pcapng", cb.pcapng_bytes(cb.Section(blocks))))

    binary = math.floor(if_bin.ticks_to_ns(if_bin.ticks(t[4])))
    expected = [t[0] - t[0] % 1000, t[1], t[1], t[3] - t[3] % 1000, binary, t[5]]
    assert packets["ts_ns"] == expected
    assert binary != t[4] and abs(binary - t[4]) < 1000  # 2^-20 s is ~954 ns
    assert packets["sport"] == [1001, 1002, 1003, 1004, 1005, 1006]
    assert packets["frame"] == [1, 2, 3, 4, 5, 6]
    assert packets["l3"] == [L3_IPV4] * 6
    assert packets.info.packets == 6  # NRB, ISB, custom, DSB and unknown blocks are no packets
    assert sorted(packets.info.linktypes) == ["ethernet", "raw"]
    assert packets.info.first_seen_ns == expected[0]
    assert packets.info.last_seen_ns == expected[5]
    assert packets.info.warnings == []


def test_pcapng_spb_length_and_timestamp_after_epb_on_other_interface(tmp_path: Path) -> None:
    frame = eth_udp(2001, payload=b"s" * 100)
    blocks: list[cb.SectionBlock] = [
        cb.Interface(cb.LINKTYPE_ETHERNET, snaplen=60, tsresol=9),
        cb.Interface(cb.LINKTYPE_RAW, tsresol=3),  # milliseconds
        cb.EPB(1, T0, raw_udp(2000)),
        cb.SPB(frame),  # cut to interface 0's snap length of 60
    ]
    packets = read(cb.write(tmp_path / "spb.pcapng", cb.pcapng_bytes(cb.Section(blocks))))
    millis = T0 - T0 % 1_000_000
    assert packets["ts_ns"] == [millis, millis]
    assert packets["wire_len"] == [len(raw_udp(2000)), len(frame)]
    assert packets["sport"] == [2000, 2001]
    assert packets["payload_len"] == [0, 100]
    assert packets["payload_cap"] == [0, 60 - 14 - 20 - 8]


@pytest.mark.parametrize("first_order", ["<", ">"], ids=["le-then-be", "be-then-le"])
def test_pcapng_second_section_renumbers_interfaces(tmp_path: Path, first_order: str) -> None:
    second_order: cb.ByteOrder = ">" if first_order == "<" else "<"
    first = cb.Section(
        [
            cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=6),
            cb.Interface(cb.LINKTYPE_RAW, tsresol=9),
            cb.EPB(0, T0, eth_udp(3000)),
            cb.EPB(1, T0 + 1, raw_udp(3001)),
        ],
        byteorder=first_order,  # type: ignore[arg-type]
    )
    # In the next section interface 0 is raw IP with ns resolution, interface 1 Ethernet with
    # a resolution of 10^-2 s: a reader that kept the first section's table decodes them wrong.
    second = cb.Section(
        [
            cb.Interface(cb.LINKTYPE_RAW, tsresol=9),
            cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=2),
            cb.EPB(0, T0 + 10 * NS + 3, raw_udp(3002)),
            cb.EPB(1, T0 + 11 * NS, eth_udp(3003)),
            cb.SPB(raw_udp(3004)),
        ],
        byteorder=second_order,
    )
    data = cb.pcapng_bytes([first, second])
    packets = read(cb.write(tmp_path / "two-sections.pcapng", data))
    t11 = T0 + 11 * NS
    assert packets["sport"] == [3000, 3001, 3002, 3003, 3004]
    assert packets["ts_ns"] == [
        T0 - T0 % 1000,
        T0 + 1,
        T0 + 10 * NS + 3,
        t11 - t11 % 10_000_000,
        t11 - t11 % 10_000_000,
    ]
    assert packets["frame"] == [1, 2, 3, 4, 5]
    assert packets.info.warnings == []


# ------------------------------------------------------------------------------------------
# gzip, and kinds decided by magic, never by name
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "gzipped"),
    [
        ("capture.bin", "pcap", True),  # gzip pcap, name says nothing
        ("capture.pcap", "pcapng", True),  # gzip pcapng called .pcap
        ("capture.pcap", "pcapng", False),  # pcapng called .pcap
        ("capture.pcapng.gz", "pcap", False),  # plain pcap called .gz
    ],
)
def test_kind_and_compression_by_magic(tmp_path: Path, name: str, kind: str, gzipped: bool) -> None:
    records = [cb.Rec(T0 + k * 1000, eth_udp(4000 + k, payload=b"z" * k)) for k in range(5)]
    if kind == "pcap":
        data = cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET)
    else:
        data = cb.pcapng_simple(records, cb.LINKTYPE_ETHERNET)
    stored = cb.gzip_bytes(data) if gzipped else data
    path = cb.write(tmp_path / name, stored)
    packets = read(path, sha256=True)
    assert packets.info.format == kind
    assert packets.info.compression == ("gzip" if gzipped else None)
    assert packets["sport"] == [4000, 4001, 4002, 4003, 4004]
    assert packets["ts_ns"] == [T0 - T0 % 1000 + k * 1000 for k in range(5)]
    assert packets.info.size == len(stored)
    assert packets.info.sha256 == hashlib.sha256(stored).hexdigest()  # of the file as stored


# ------------------------------------------------------------------------------------------
# link layers
# ------------------------------------------------------------------------------------------

# (link type, keyword arguments for the IPv4 frame, for the IPv6 frame; None: not carried)
LINK_CASES: dict[str, tuple[int, dict[str, Any] | None, dict[str, Any] | None, str]] = {
    "ethernet": (cb.LINKTYPE_ETHERNET, {}, {}, "ethernet"),
    "vlan": (cb.LINKTYPE_ETHERNET, {"vlans": [10]}, {"vlans": [4094]}, "ethernet"),
    "qinq-88a8": (cb.LINKTYPE_ETHERNET, {"vlans": [100, 10]}, {"vlans": [100, 10]}, "ethernet"),
    "qinq-9100": (
        cb.LINKTYPE_ETHERNET,
        {"vlans": [100, 10], "qinq_outer_tpid": cb.ETH_QINQ_OLD},
        {"vlans": [7, 8], "qinq_outer_tpid": cb.ETH_QINQ_OLD},
        "ethernet",
    ),
    "three-tags": (cb.LINKTYPE_ETHERNET, {"vlans": [1, 2, 3]}, None, "ethernet"),
    "sll": (cb.LINKTYPE_LINUX_SLL, {}, {"pkttype": cb.PACKET_OUTGOING}, "linux-sll"),
    "sll2": (cb.LINKTYPE_LINUX_SLL2, {}, {"pkttype": cb.PACKET_OUTGOING}, "linux-sll2"),
    "raw-101": (cb.LINKTYPE_RAW, {}, {}, "raw"),
    "raw-12": (cb.DLT_RAW, {}, {}, "raw"),
    "raw-14": (cb.DLT_RAW_OPENBSD, {}, {}, "raw"),
    "ipv4-228": (cb.LINKTYPE_IPV4, {}, None, "ipv4"),
    "ipv6-229": (cb.LINKTYPE_IPV6, None, {}, "ipv6"),
    "null-le": (cb.LINKTYPE_NULL, {}, {}, "null"),
    "null-be": (cb.LINKTYPE_NULL, {"byteorder": ">"}, {"byteorder": ">"}, "null"),
    "null-inet6-10": (cb.LINKTYPE_NULL, None, {"family": cb.AF_INET6_LINUX}, "null"),
    "null-inet6-24": (cb.LINKTYPE_NULL, None, {"family": cb.AF_INET6_BSD}, "null"),
    "null-inet6-28": (cb.LINKTYPE_NULL, None, {"family": cb.AF_INET6_FREEBSD}, "null"),
    "null-inet6-30": (cb.LINKTYPE_NULL, None, {"family": cb.AF_INET6_DARWIN}, "null"),
    "null-inet6-30-be": (
        cb.LINKTYPE_NULL,
        None,
        {"family": cb.AF_INET6_DARWIN, "byteorder": ">"},
        "null",
    ),
    "loop": (cb.LINKTYPE_LOOP, {}, {}, "loop"),
}


@pytest.mark.parametrize("case", list(LINK_CASES))
def test_link_layers(tmp_path: Path, case: str) -> None:
    linktype, v4_kw, v6_kw, name = LINK_CASES[case]
    records: list[cb.Rec] = []
    expected: list[tuple[int, str, str, int, int, int, bytes]] = []
    if v4_kw is not None:
        frame = cb.ip4_tcp_frame(
            SRC4, DST4, 40000, 445, "PA", b"smb!", seq=1, linktype=linktype, **v4_kw
        )
        records.append(cb.Rec(T0, frame))
        expected.append((L3_IPV4, SRC4, DST4, 6, 40000, 445, b"smb!"))
    if v6_kw is not None:
        frame = cb.ip6_udp_frame(SRC6, DST6, 40001, 53, b"dns?", linktype=linktype, **v6_kw)
        records.append(cb.Rec(T0 + 1000, frame))
        expected.append((L3_IPV6, SRC6, DST6, 17, 40001, 53, b"dns?"))
    path = pcap(tmp_path, f"{case}.pcap", records, linktype)
    packets = read(path)
    got = [
        (
            packets["l3"][k],
            packets.src[k],
            packets.dst[k],
            packets["proto"][k],
            packets["sport"][k],
            packets["dport"][k],
            packets.payload[k],
        )
        for k in range(len(packets))
    ]
    assert got == expected
    assert packets.info.linktypes == [name]

    table = flows([path])
    assert sorted(table.flows["server_port"]) == sorted(e[5] for e in expected)


def test_llc_snap_encapsulated_ip_over_ethernet(tmp_path: Path) -> None:
    packet = cb.ipv4(SRC4, DST4, cb.PROTO_UDP, cb.udp(40000, 137, b"nbns"))
    snap = b"\xaa\xaa\x03" + b"\x00\x00\x00" + struct.pack("!H", cb.ETH_IPV4) + packet
    frame = cb.ether(cb.MAC_B, cb.MAC_A, len(snap), snap)  # 802.3 length field, not a type
    packets = read(pcap(tmp_path, "snap.pcap", [cb.Rec(T0, frame)], cb.LINKTYPE_ETHERNET))
    assert packets["l3"] == [L3_IPV4]
    assert (packets.src, packets.dst) == ([SRC4], [DST4])
    assert (packets["sport"], packets["dport"]) == ([40000], [137])
    assert packets.payload == [b"nbns"]


def test_vlan_tagged_ipv6_tcp(tmp_path: Path) -> None:
    frame = cb.ip6_tcp_frame(
        SRC6, DST6, 50000, 443, "S", seq=99, vlans=[5, 6], qinq_outer_tpid=cb.ETH_QINQ
    )
    packets = read(pcap(tmp_path, "q6.pcap", [cb.Rec(T0, frame)], cb.LINKTYPE_ETHERNET))
    assert packets["l3"] == [L3_IPV6]
    assert packets["tcp_flags"] == [0x02]
    assert packets["tcp_seq"] == [99]
    assert packets["dport"] == [443]


# ------------------------------------------------------------------------------------------
# IPv6 extension headers, fragments
# ------------------------------------------------------------------------------------------

IPV6_EXTENSIONS = [
    (cb.PROTO_HOPOPTS, b"\x05\x02\x00\x00"),  # router alert
    (cb.PROTO_IPV6_ROUTING, bytes([2, 1]) + b"\x00" * 4 + cb.ip6("2001:db8::99")),
    (cb.PROTO_IPV6_DSTOPTS, bytes([0x1E, 4]) + b"abcd"),
]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ipv6_extension_headers_before_transport(tmp_path: Path, transport: str) -> None:
    if transport == "tcp":
        proto, l4 = cb.PROTO_TCP, cb.tcp(40000, 8530, "PA", 1, 1, b"GET / HTTP/1.1\r\n")
    else:
        proto, l4 = cb.PROTO_UDP, cb.udp(40000, 8530, b"GET / HTTP/1.1\r\n")
    packet = cb.ipv6(SRC6, DST6, proto, l4, ext_headers=IPV6_EXTENSIONS)
    assert len(packet) > 40 + 8 + 24 + 8  # the chain is really there
    frame = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, packet)
    packets = read(pcap(tmp_path, "ext.pcap", [cb.Rec(T0, frame)], cb.LINKTYPE_ETHERNET))
    assert packets["proto"] == [proto]
    assert (packets["sport"], packets["dport"]) == ([40000], [8530])
    assert packets.payload == [b"GET / HTTP/1.1\r\n"]
    table = flows([cb.write(tmp_path / "again.pcap", cb.pcap_bytes([cb.Rec(T0, frame)], 1))])
    row = table.flows.iloc[0]
    assert (row["proto"], row["client_port"], row["server_port"]) == (transport, 40000, 8530)


def test_ipv6_authentication_header_before_udp(tmp_path: Path) -> None:
    ah_body = struct.pack("!HII", 0, 0x1000, 1) + b"\x00" * 12  # SPI, sequence, ICV
    packet = cb.ipv6(
        SRC6, DST6, cb.PROTO_UDP, cb.udp(500, 4500, b"ike"), ext_headers=[(cb.PROTO_AH, ah_body)]
    )
    frame = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, packet)
    packets = read(pcap(tmp_path, "ah.pcap", [cb.Rec(T0, frame)], cb.LINKTYPE_ETHERNET))
    assert (packets["proto"], packets["sport"], packets["dport"]) == ([17], [500], [4500])
    assert packets.payload == [b"ike"]


def test_ipv4_fragments_count_to_the_flow_of_their_first(tmp_path: Path) -> None:
    datagram = cb.udp(40000, 9999, b"F" * 100)  # 108 bytes: fragments of 48, 48, 12
    first_flow = cb.ipv4_fragments(SRC4, DST4, cb.PROTO_UDP, datagram, 48, ident=0x1234)
    # Another host's datagram with the same IP identification, interleaved.
    other = cb.ipv4_fragments(
        "10.0.0.3", DST4, cb.PROTO_UDP, cb.udp(40003, 9999, b"G" * 60), 48, ident=0x1234
    )
    orphan = cb.ipv4(SRC4, DST4, cb.PROTO_UDP, b"O" * 16, ident=0x7777, frag_offset=6)
    reply = cb.ipv4(DST4, SRC4, cb.PROTO_UDP, cb.udp(9999, 40000, b"ok"))
    order = [first_flow[0], other[0], first_flow[1], orphan, other[1], first_flow[2], reply]
    frames = [cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, p) for p in order]
    path = pcap(
        tmp_path,
        "frag4.pcap",
        [cb.Rec(T0 + k * 1000, f) for k, f in enumerate(frames)],
        cb.LINKTYPE_ETHERNET,
    )

    packets = read(path)
    assert packets["frag"] == [
        FRAG_FIRST,
        FRAG_FIRST,
        FRAG_LATER,
        FRAG_LATER,
        FRAG_LATER,
        FRAG_LATER,
        FRAG_NONE,
    ]
    assert packets["frag_id"][:3] == [0x1234, 0x1234, 0x1234]
    assert packets["sport"] == [40000, 40003, 0, 0, 0, 0, 9999]  # only first fragments: ports

    table = flows([path])
    assert table.orphan_fragments == 1
    by_client = {row.client: row for row in table.flows.itertuples()}
    assert set(by_client) == {SRC4, "10.0.0.3"}
    mine = by_client[SRC4]
    assert (mine.client_port, mine.server, mine.server_port) == (40000, DST4, 9999)
    assert (mine.c2s_packets, mine.s2c_packets) == (3, 1)
    assert mine.c2s_bytes == len(frames[0]) + len(frames[2]) + len(frames[5])
    assert mine.bytes == mine.c2s_bytes + len(frames[6])
    theirs = by_client["10.0.0.3"]
    assert (theirs.packets, theirs.bytes) == (2, len(frames[1]) + len(frames[4]))
    assert table.flows["packets"].sum() == len(frames) - 1  # the orphan is in no flow


def test_ipv6_fragments_after_hop_by_hop(tmp_path: Path) -> None:
    datagram = cb.udp(40000, 5353, b"M" * 90)
    pieces = cb.ipv6_fragments(
        SRC6,
        DST6,
        cb.PROTO_UDP,
        datagram,
        40,
        ident=0xABCDEF01,
        ext_before=[(cb.PROTO_HOPOPTS, b"")],
    )
    assert len(pieces) == 3
    frames = [cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, p) for p in pieces]
    path = pcap(
        tmp_path,
        "frag6.pcap",
        [cb.Rec(T0 + k, f) for k, f in enumerate(frames)],
        cb.LINKTYPE_ETHERNET,
    )
    packets = read(path)
    assert packets["frag"] == [FRAG_FIRST, FRAG_LATER, FRAG_LATER]
    assert packets["frag_id"] == [0xABCDEF01] * 3
    assert packets["proto"] == [17, 17, 17]
    assert packets["sport"] == [40000, 0, 0]
    table = flows([path])
    assert table.orphan_fragments == 0
    assert len(table.flows) == 1
    row = table.flows.iloc[0]
    assert (row["client"], row["client_port"], row["server"], row["server_port"]) == (
        SRC6,
        40000,
        DST6,
        5353,
    )
    assert (row["packets"], row["bytes"]) == (3, sum(len(f) for f in frames))


def test_ipv6_later_fragment_without_first_is_orphan(tmp_path: Path) -> None:
    pieces = cb.ipv6_fragments(SRC6, DST6, cb.PROTO_UDP, cb.udp(1, 2, b"q" * 80), 40, ident=5)
    frames = [cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, p) for p in pieces[1:]]
    path = pcap(tmp_path, "orphan6.pcap", [cb.Rec(T0, f) for f in frames], 1)
    table = flows([path])
    assert table.orphan_fragments == 2
    assert len(table.flows) == 0
    assert table.captures[0].packets == 2


# ------------------------------------------------------------------------------------------
# non-IP, ICMP, Ethernet padding
# ------------------------------------------------------------------------------------------


def _arp_request() -> bytes:
    body = struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        0x0800,
        6,
        4,
        1,
        cb.mac(cb.MAC_A),
        cb.ip4(SRC4),
        b"\x00" * 6,
        cb.ip4(DST4),
    )
    return cb.ether("ff:ff:ff:ff:ff:ff", cb.MAC_A, cb.ETH_ARP, body, pad_to_min=True)


def test_non_ip_frames_are_packets_but_no_flow(tmp_path: Path) -> None:
    records = [
        cb.Rec(T0, _arp_request()),
        cb.Rec(T0 + 1, eth_udp(6000)),
        cb.Rec(T0 + 2, _arp_request()),
        cb.Rec(T0 + 3, cb.ether(cb.MAC_B, cb.MAC_A, 0x0842, b"\xff" * 6 + b"\x02" * 96)),  # WoL
    ]
    path = pcap(tmp_path, "arp.pcap", records, cb.LINKTYPE_ETHERNET)
    packets = read(path)
    assert packets["l3"] == [L3_NONE, L3_IPV4, L3_NONE, L3_NONE]
    assert packets.info.packets == 4
    assert packets.info.ip_packets == 1
    assert packets.info.bytes == sum(len(r.data) for r in records)
    table = flows([path])
    assert len(table.flows) == 1
    assert table.flows.iloc[0]["client_port"] == 6000


def test_icmp_flows_keyed_by_address_pair(tmp_path: Path) -> None:
    records = [
        cb.Rec(T0, cb.wrap(cb.ipv4(SRC4, DST4, cb.PROTO_ICMP, cb.icmp_echo(7, 1)), 1)),
        cb.Rec(
            T0 + 1000,
            cb.wrap(cb.ipv4(DST4, SRC4, cb.PROTO_ICMP, cb.icmp_echo(7, 1, reply=True)), 1),
        ),
        cb.Rec(T0 + 2000, cb.wrap(cb.ipv4(SRC4, DST4, cb.PROTO_ICMP, cb.icmp_echo(8, 2)), 1)),
        cb.Rec(
            T0 + 3000,
            cb.wrap(
                cb.ipv6(SRC6, DST6, cb.PROTO_ICMPV6, cb.icmp6_echo(1, 1, ip_src=SRC6, ip_dst=DST6)),
                1,
            ),
        ),
    ]
    table = flows([pcap(tmp_path, "icmp.pcap", records, cb.LINKTYPE_ETHERNET)])
    got = table.flows[
        [
            "proto",
            "client",
            "client_port",
            "server",
            "server_port",
            "packets",
            "c2s_packets",
            "s2c_packets",
        ]
    ].values.tolist()
    assert got == [
        ["icmp", SRC4, 0, DST4, 0, 3, 2, 1],
        ["icmpv6", SRC6, 0, DST6, 0, 1, 1, 0],
    ]


def test_ethernet_padding_is_not_payload(tmp_path: Path) -> None:
    ack = eth_tcp(40000, 445, "A", seq=1001, ack=1, pad_to_min=True)
    assert len(ack) == 60  # 54 bytes of headers, 6 of padding
    data = eth_tcp(40000, 445, "PA", b"\x00SMB", seq=1001, ack=1)
    small_udp = cb.ip4_udp_frame(SRC4, DST4, 137, 137, b"ab", pad_to_min=True)
    records = [cb.Rec(T0, ack), cb.Rec(T0 + 1, data), cb.Rec(T0 + 2, small_udp)]
    path = pcap(tmp_path, "pad.pcap", records, cb.LINKTYPE_ETHERNET)
    packets = read(path)
    assert packets["payload_len"] == [0, 4, 2]
    assert packets["payload_cap"] == [0, 4, 2]
    assert packets.payload == [b"", b"\x00SMB", b"ab"]
    table = flows([path])
    by_port = {row.server_port: row for row in table.flows.itertuples()}
    assert by_port[445].c2s_payload == b"\x00SMB"  # not six zero bytes of padding first
    assert by_port[137].c2s_payload == b"ab"
    assert by_port[445].c2s_bytes == 60 + len(data)


# ------------------------------------------------------------------------------------------
# records across chunk and batch boundaries
# ------------------------------------------------------------------------------------------


COUNT = 12_000


def _many_records(count: int) -> list[cb.Rec]:
    return [
        cb.Rec(T0 + k * 1_000, eth_udp(1024 + k % 60000, payload=bytes([k % 251]) * (k % 173)))
        for k in range(count)
    ]


@pytest.mark.parametrize("container", ["pcap", "pcapng", "pcap.gz", "pcapng.gz"])
def test_small_chunks_and_batches_keep_every_record(tmp_path: Path, container: str) -> None:
    records = _many_records(COUNT)  # ~1.8 MB: several buffer fills even at the minimum
    if container.startswith("pcapng"):
        data = cb.pcapng_simple(records, cb.LINKTYPE_ETHERNET, tsresol=9)
    else:
        data = cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET, nanosecond=True)
    if container.endswith(".gz"):
        data = cb.gzip_bytes(data)
    path = cb.write(tmp_path / f"many.{container}", data)
    packets = read(path, chunk_bytes=4093, batch_packets=97)
    assert len(packets.batch_sizes) > 40
    assert max(packets.batch_sizes) == 97
    assert packets["frame"] == list(range(1, COUNT + 1))
    assert packets["ts_ns"] == [r.ts_ns for r in records]
    assert packets["sport"] == [1024 + k for k in range(COUNT)]
    assert packets.payload == [bytes([k % 251]) * (k % 173) for k in range(COUNT)]
    assert packets.info.packets == COUNT
    assert packets.info.bytes == sum(len(r.data) for r in records)
    assert packets.info.warnings == []


def test_pcapng_large_block_straddling_a_small_chunk(tmp_path: Path) -> None:
    # A record left over at a chunk's end that needs a bigger buffer must be carried into it.
    blocks: list[cb.SectionBlock] = [cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9)]
    for k in range(100):
        blocks.append(cb.EPB(0, T0 + k, eth_udp(7000 + k, payload=b"a" * 1000)))
    big = eth_udp(7100, payload=b"b" * 1400) + b"z" * 200_000  # a jumbo record (< 256 kB)
    blocks.append(cb.EPB(0, T0 + 100, big))
    for k in range(101, 105):
        blocks.append(cb.EPB(0, T0 + k, eth_udp(7000 + k, payload=b"c")))
    path = cb.write(tmp_path / "jumbo.pcapng", cb.pcapng_bytes(cb.Section(blocks)))
    assert read(path)["sport"] == list(range(7000, 7105))  # default chunk: fine
    packets = read(path, chunk_bytes=1000, batch_packets=64)
    assert packets.info.warnings == []
    assert packets["sport"] == list(range(7000, 7105))
    assert packets["wire_len"][100] == len(big)


# ------------------------------------------------------------------------------------------
# truncation and damage: a warning, and the packets before it
# ------------------------------------------------------------------------------------------


def _three_packet_pcap() -> tuple[bytes, list[cb.Rec]]:
    records = [cb.Rec(T0 + k * NS, eth_udp(8000 + k, payload=b"d" * 50)) for k in range(3)]
    return cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET), records


def _assert_kept(info: CaptureInfo, packets: Packets, count: int, words: str) -> None:
    assert packets["sport"] == [8000 + k for k in range(count)]
    assert info.packets == count
    assert len(info.warnings) >= 1
    assert any(words in w for w in info.warnings), info.warnings


def test_pcap_cut_in_the_middle_of_a_record(tmp_path: Path) -> None:
    data, _ = _three_packet_pcap()
    path = cb.write(tmp_path / "cut.pcap", data[:-30])
    packets = read(path)
    _assert_kept(packets.info, packets, 2, "cut short")
    assert len(packets.info.warnings) == 1
    table = flows([path])
    assert len(table.flows) == 2
    assert table.captures[0].warnings == packets.info.warnings


def test_pcap_cut_inside_a_record_header(tmp_path: Path) -> None:
    data, _ = _three_packet_pcap()
    one_record = 16 + len(eth_udp(8000, payload=b"d" * 50))
    path = cb.write(tmp_path / "cut-header.pcap", data[: 24 + 2 * one_record + 7])
    packets = read(path)
    _assert_kept(packets.info, packets, 2, "cut short")


def test_pcap_record_length_of_4gb_after_good_packets(tmp_path: Path) -> None:
    data, _ = _three_packet_pcap()
    bad = struct.pack("<IIII", 1_700_000_100, 0, 0xFFFFFFFF, 0xFFFFFFFF) + b"\x00" * 64
    path = cb.write(tmp_path / "4gb.pcap", data + bad + data[24:])
    packets = read(path)
    _assert_kept(packets.info, packets, 3, "damaged")
    assert "4294967295" in packets.info.warnings[0]


def test_pcapng_cut_mid_block(tmp_path: Path) -> None:
    records = [cb.Rec(T0 + k * NS, eth_udp(8000 + k, payload=b"d" * 50)) for k in range(3)]
    data = cb.pcapng_simple(records, cb.LINKTYPE_ETHERNET)
    path = cb.write(tmp_path / "cut.pcapng", data[:-40])
    packets = read(path)
    _assert_kept(packets.info, packets, 2, "cut short")


def test_pcapng_malformed_block_length_after_good_packets(tmp_path: Path) -> None:
    records = [cb.Rec(T0 + k * NS, eth_udp(8000 + k, payload=b"d" * 50)) for k in range(2)]
    data = cb.pcapng_simple(records, cb.LINKTYPE_ETHERNET)
    bad = struct.pack("<II", cb.PCAPNG_EPB, 13) + b"\x00" * 40  # length not a multiple of 4
    packets = read(cb.write(tmp_path / "bad-block.pcapng", data + bad))
    _assert_kept(packets.info, packets, 2, "malformed")


def test_pcapng_epb_on_undeclared_interface_after_good_packets(tmp_path: Path) -> None:
    blocks: list[cb.SectionBlock] = [
        cb.Interface(cb.LINKTYPE_ETHERNET),
        cb.EPB(0, T0, eth_udp(8000)),
        cb.EPB(0, T0 + 1000, eth_udp(8001)),
        cb.EPB(3, T0 + 2000, eth_udp(8002)),
    ]
    packets = read(cb.write(tmp_path / "if3.pcapng", cb.pcapng_bytes(cb.Section(blocks))))
    _assert_kept(packets.info, packets, 2, "damaged")


def test_gzip_stream_cut_short(tmp_path: Path) -> None:
    records = [
        cb.Rec(T0 + k * 1000, eth_udp(8000 + k, payload=bytes(range(256)) * 4)) for k in range(400)
    ]
    whole = cb.gzip_bytes(cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET))
    path = cb.write(tmp_path / "cut.pcap.gz", whole[: len(whole) // 2])
    packets = read(path)
    count = packets.info.packets
    assert 0 < count < 400
    _assert_kept(packets.info, packets, count, "gzip")
    assert packets.info.compression == "gzip"


# ------------------------------------------------------------------------------------------
# not a capture at all: errors, before any packet
# ------------------------------------------------------------------------------------------


def _text(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "notes.pcap", b"this is a text file, not a capture\n" * 4)


def _empty(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "empty.pcap", b"")


def _short_header(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "short.pcap", cb.pcap_header(cb.LINKTYPE_ETHERNET)[:10])


def _first_record_4gb(tmp_path: Path) -> Path:
    header = cb.pcap_header(cb.LINKTYPE_ETHERNET)
    return cb.write(tmp_path / "4gb.pcap", header + struct.pack("<IIII", 0, 0, 2**32 - 1, 60))


def _unknown_linktype(tmp_path: Path) -> Path:
    return pcap(tmp_path, "147.pcap", [cb.Rec(T0, b"\x01" * 40)], 147)


def _pcapng_unknown_linktype(tmp_path: Path) -> Path:
    data = cb.pcapng_simple([cb.Rec(T0, b"\x01" * 40), cb.Rec(T0 + 1, b"\x02" * 40)], 147)
    return cb.write(tmp_path / "147.pcapng", data)


def _directory(tmp_path: Path) -> Path:
    folder = tmp_path / "a-folder.pcap"
    folder.mkdir()
    return folder


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "no-such-file.pcap"


def _gzip_of_text(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "text.pcap.gz", gzip.compress(b"hello, not a capture" * 10))


def _gzip_garbage(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "garbage.gz", b"\x1f\x8b" + bytes(range(7, 250)) * 3)


ERROR_CASES = {
    "text": (_text, CaptureFormatError, "text"),
    "empty": (_empty, CaptureFormatError, "empty"),
    "short-header": (_short_header, CaptureFormatError, "header"),
    "first-record-4gb": (_first_record_4gb, CaptureFormatError, "4294967295"),
    "unknown-linktype": (_unknown_linktype, CaptureFormatError, "147"),
    "pcapng-unknown-linktype": (_pcapng_unknown_linktype, CaptureFormatError, "147"),
    "directory": (_directory, InputError, "directory"),
    "missing": (_missing, InputError, "no such file"),
    "gzip-of-text": (_gzip_of_text, CaptureFormatError, "gzip"),
    "gzip-garbage": (_gzip_garbage, CaptureFormatError, "gzip"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_not_a_capture_raises(tmp_path: Path, case: str) -> None:
    make, error, words = ERROR_CASES[case]
    path = make(tmp_path)
    with pytest.raises(error) as raised:
        read(path)
    message = str(raised.value)
    assert str(path) in message  # says where
    assert words in message  # and what
    assert "\n" not in message
    with pytest.raises(error):
        flows([path])


def test_error_in_second_file_of_a_set(tmp_path: Path) -> None:
    good = pcap(tmp_path, "good.pcap", [cb.Rec(T0, eth_udp(1))], cb.LINKTYPE_ETHERNET)
    with pytest.raises(CaptureFormatError, match=r"notes\.pcap"):
        flows([good, _text(tmp_path)])


def test_pcapng_with_one_unsupported_interface_among_good_ones_warns(tmp_path: Path) -> None:
    blocks: list[cb.SectionBlock] = [
        cb.Interface(cb.LINKTYPE_ETHERNET),
        cb.Interface(147),
        cb.EPB(0, T0, eth_udp(1)),
        cb.EPB(1, T0 + 1000, b"\x01" * 40),
    ]
    packets = read(cb.write(tmp_path / "mixed.pcapng", cb.pcapng_bytes(cb.Section(blocks))))
    assert packets.info.packets == 2
    assert packets["l3"] == [L3_IPV4, L3_NONE]
    assert any("147" in w for w in packets.info.warnings)


def test_pcapng_unknown_block_larger_than_the_buffer_is_skipped(tmp_path: Path) -> None:
    blocks: list[cb.SectionBlock] = [
        cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9),
        cb.EPB(0, T0, eth_udp(9000)),
        cb.custom_block(32473, b"\xee" * 700_000),  # runs on past a whole buffer
        cb.EPB(0, T0 + 1, eth_udp(9001)),
        cb.RawBlock(0x7A7A7A7A, b"\xdd" * 300_000),
        cb.EPB(0, T0 + 2, eth_udp(9002)),
    ]
    path = cb.write(tmp_path / "skip.pcapng", cb.pcapng_bytes(cb.Section(blocks)))
    for kwargs in ({}, {"chunk_bytes": 1000, "batch_packets": 2}):
        packets = read(path, **kwargs)
        assert packets["sport"] == [9000, 9001, 9002]
        assert packets["ts_ns"] == [T0, T0 + 1, T0 + 2]
        assert packets.info.warnings == []


def test_pcapng_cut_inside_a_skipped_block(tmp_path: Path) -> None:
    blocks: list[cb.SectionBlock] = [
        cb.Interface(cb.LINKTYPE_ETHERNET),
        cb.EPB(0, T0, eth_udp(8000)),
        cb.EPB(0, T0 + 1000, eth_udp(8001)),
        cb.custom_block(32473, b"\xee" * 600_000),
    ]
    data = cb.pcapng_bytes(cb.Section(blocks))
    packets = read(cb.write(tmp_path / "cut-skip.pcapng", data[:-1000]), chunk_bytes=1000)
    _assert_kept(packets.info, packets, 2, "cut short")


def test_many_sections_and_interfaces_across_small_chunks(tmp_path: Path) -> None:
    sections = []
    expected_ports: list[int] = []
    for s in range(6):
        order: cb.ByteOrder = "<" if s % 2 else ">"
        blocks: list[cb.SectionBlock] = [
            cb.Interface(cb.LINKTYPE_RAW, tsresol=9, name="x" * 3000),  # a long IDB
            cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9),
        ]
        for k in range(300):
            port = 10000 + s * 1000 + k
            expected_ports.append(port)
            if k % 2:
                blocks.append(cb.EPB(1, T0 + port, eth_udp(port, payload=b"e" * 400)))
            else:
                blocks.append(cb.EPB(0, T0 + port, raw_udp(port, payload=b"r" * 400)))
        sections.append(cb.Section(blocks, byteorder=order))
    path = cb.write(tmp_path / "sections.pcapng", cb.pcapng_bytes(sections))
    packets = read(path, chunk_bytes=1500, batch_packets=50)
    assert packets["sport"] == expected_ports
    assert packets["ts_ns"] == [T0 + p for p in expected_ports]
    assert packets.payload == [b"e" * 400 if k % 2 else b"r" * 400 for k in range(1800)]
    assert packets.info.warnings == []


@pytest.mark.parametrize("straddler", ["section-header", "interface-block"])
def test_header_blocks_straddling_a_buffer_fill(tmp_path: Path, straddler: str) -> None:
    # The reader's buffer holds chunk_bytes + MAX_RECORD + 4096 bytes; put the second section's
    # SHB (or its IDB) across the end of the first fill, at a range of offsets.
    chunk = 1000
    fill = chunk + MAX_RECORD + 4096
    interface = cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9)
    big = eth_udp(1, payload=b"b" * 60_000) + b"z" * 140_000  # trailing bytes beyond IP
    head = cb.pcapng_bytes(cb.Section([interface, cb.EPB(0, T0, big)]))
    shb = len(cb.pcapng_bytes(cb.Section([])))
    for back in range(4, 120, 4):
        end_of_first = fill - back - (shb if straddler == "interface-block" else 0)
        filler_len = end_of_first - len(head) - 32  # EPB: 28 header bytes + data + 4
        filler = eth_udp(2, payload=b"f" * 1000)
        filler += b"\x00" * (filler_len - len(filler))
        first = cb.Section([interface, cb.EPB(0, T0, big), cb.EPB(0, T0 + 1, filler)])
        second = cb.Section(
            [cb.Interface(cb.LINKTYPE_RAW, tsresol=6), cb.EPB(0, T0 + 2000, raw_udp(3))],
            byteorder=">",
        )
        data = cb.pcapng_bytes([first, second])
        assert len(cb.pcapng_bytes(first)) == end_of_first
        path = cb.write(tmp_path / f"straddle-{back}.pcapng", data)
        packets = read(path, chunk_bytes=chunk)
        assert packets["sport"] == [1, 2, 3], back
        assert packets["ts_ns"] == [T0, T0 + 1, T0 + 2000 - T0 % 1000], back
        assert packets.info.warnings == [], back
