"""Self-check of tests/capbuild.py: the captures it builds are valid according to tshark.

flowaudit's reader tests rely on capbuild writing correct files; this module proves that
independently of flowaudit by reading every shape back with tshark (skipped when tshark is not
on PATH) and, for the byte-level details tshark does not expose, with plain ``struct``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import pytest

try:
    from tests import capbuild as cb
except ModuleNotFoundError:  # tests/ on sys.path itself (rootdir-less / no tests package)
    import capbuild as cb  # type: ignore[no-redef, import-not-found, unused-ignore]

T0 = 1_700_000_000_123_456_789  # ns; deliberately not a whole microsecond
SRC4, DST4 = "10.1.2.3", "10.9.8.7"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"
# High ports nobody registers a dissector on, so tshark stops at udp/data or tcp.
SPORT, DPORT = 40123, 40456

BASE_FIELDS = (
    "frame.number",
    "frame.len",
    "frame.cap_len",
    "frame.time_epoch",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "udp.srcport",
    "vlan.id",
    "_ws.malformed",
)
CHECKSUM_PREFS = (
    "ip.check_checksum:TRUE",
    "tcp.check_checksum:TRUE",
    "udp.check_checksum:TRUE",
)
GOOD = "1"  # *.checksum.status: 0 bad, 1 good, 2 unverified

TSHARK = shutil.which("tshark")
F = TypeVar("F", bound=Callable[..., None])


def needs_tshark(fn: F) -> F:
    """Mark a test as using tshark (the independent oracle).

    Skipped without tshark, except under CI (like conftest's ``tshark`` fixture), where the
    test runs and fails in :func:`run_tshark`.
    """
    skip = TSHARK is None and not os.environ.get("CI")
    marked: F = pytest.mark.tshark(pytest.mark.skipif(skip, reason="tshark not on PATH")(fn))
    return marked


def run_tshark(
    path: Path, fields: Sequence[str] = BASE_FIELDS, prefs: Sequence[str] = ()
) -> list[dict[str, str]]:
    """Run tshark on ``path``; one dict per frame, repeated fields joined with ``,``."""
    assert TSHARK is not None, "tshark is required (CI is set)"
    cmd = [TSHARK, "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a"]
    cmd += ["-E", "aggregator=,", "-E", "separator=/t"]
    for pref in prefs:
        cmd += ["-o", pref]
    for f in fields:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    errors = [
        line
        for line in proc.stderr.splitlines()
        if line.strip() and "This could be dangerous" not in line
    ]
    assert proc.returncode == 0 and not errors, (proc.returncode, proc.stderr)
    rows = [dict(zip(fields, line.split("\t"), strict=True)) for line in proc.stdout.splitlines()]
    for row in rows:
        assert row.get("_ws.malformed", "") == "", row
    return rows


def epoch_ns(text: str) -> int:
    """tshark's ``frame.time_epoch`` text (``S.fffffffff``) as integer ns, exactly."""
    sec, _, frac = text.partition(".")
    return int(sec) * cb.NS_PER_S + int(frac.ljust(9, "0")[:9])


def col(rows: list[dict[str, str]], name: str) -> list[str]:
    return [r[name] for r in rows]


def tcp4(sport: int = SPORT, payload: bytes = b"", flags: str = "PA") -> bytes:
    seg = cb.tcp(sport, DPORT, flags, 1000, 2000, payload, ip_src=SRC4, ip_dst=DST4)
    return cb.ipv4(SRC4, DST4, cb.PROTO_TCP, seg, ident=7)


def udp4(sport: int = SPORT, payload: bytes = b"hello") -> bytes:
    dgram = cb.udp(sport, DPORT, payload, ip_src=SRC4, ip_dst=DST4)
    return cb.ipv4(SRC4, DST4, cb.PROTO_UDP, dgram)


def udp6(sport: int = SPORT, payload: bytes = b"hello6") -> bytes:
    dgram = cb.udp(sport, DPORT, payload, ip_src=SRC6, ip_dst=DST6)
    return cb.ipv6(SRC6, DST6, cb.PROTO_UDP, dgram)


def walk_pcapng(data: bytes) -> list[tuple[str, int, int]]:
    """Independent block walk: (byte order, type, total length), checking both length fields."""
    out = []
    off = 0
    bo = "<"
    while off < len(data):
        (btype,) = struct.unpack_from("<I", data, off)
        if btype == cb.PCAPNG_SHB:
            (bom,) = struct.unpack_from("<I", data, off + 8)
            bo = "<" if bom == cb.PCAPNG_BOM else ">"
            assert struct.unpack_from(f"{bo}I", data, off + 8)[0] == cb.PCAPNG_BOM
        btype, length = struct.unpack_from(f"{bo}II", data, off)
        assert length % 4 == 0 and length >= 12
        (trail,) = struct.unpack_from(f"{bo}I", data, off + length - 4)
        assert trail == length
        out.append((bo, btype, length))
        off += length
    assert off == len(data)
    return out


# ------------------------------------------------------------------------------------------
# Pure byte-level checks (no tshark needed)
# ------------------------------------------------------------------------------------------


def test_ipv4_header_fields_and_checksum() -> None:
    pkt = cb.ipv4(
        SRC4,
        DST4,
        17,
        b"x" * 11,
        ident=0xBEEF,
        more_fragments=True,
        frag_offset=3,
        ttl=9,
        options=b"\x94\x04\x00",
    )
    assert pkt[0] == 0x46  # IHL 6: 3 option bytes padded to 4
    assert struct.unpack("!H", pkt[2:4])[0] == len(pkt) == 24 + 11
    assert struct.unpack("!H", pkt[4:6])[0] == 0xBEEF
    assert struct.unpack("!H", pkt[6:8])[0] == 0x2000 | 3
    assert pkt[8] == 9 and pkt[9] == 17
    assert cb.checksum(pkt[:24]) == 0
    df = cb.ipv4(SRC4, DST4, 6, b"", flags_df=True)
    assert struct.unpack("!H", df[6:8])[0] == 0x4000


def test_ipv6_extension_chain_layout() -> None:
    pkt = cb.ipv6(
        SRC6,
        DST6,
        cb.PROTO_UDP,
        b"u" * 8,
        ext_headers=[
            (cb.PROTO_HOPOPTS, bytes([5, 2, 0, 0])),
            (cb.PROTO_IPV6_DSTOPTS, bytes(range(1, 7)) + b"\x00" * 4),
            cb.ipv6_fragment_ext(5, True, 0xCAFEBABE),
        ],
    )
    assert pkt[6] == cb.PROTO_HOPOPTS
    assert struct.unpack("!H", pkt[4:6])[0] == len(pkt) - 40
    hbh = pkt[40:48]
    assert hbh[0] == cb.PROTO_IPV6_DSTOPTS and hbh[1] == 0
    dst = pkt[48:64]  # 2 + 10 bytes -> padded to 16
    assert dst[0] == cb.PROTO_IPV6_FRAGMENT and dst[1] == 1
    assert dst[12:14] == b"\x01\x02"  # PadN covering the last 4 bytes
    frag = pkt[64:72]
    assert frag == cb.ipv6_fragment_header(cb.PROTO_UDP, 5, True, 0xCAFEBABE)
    assert frag[0] == cb.PROTO_UDP and struct.unpack("!HI", frag[2:]) == (5 << 3 | 1, 0xCAFEBABE)
    # Pad1 when exactly one byte is missing.
    one = cb.ipv6_ext_header(cb.PROTO_HOPOPTS, 59, b"\x01\x03\x00\x00\x00")
    assert len(one) == 8 and one[-1] == 0


def test_transport_checksums_verify() -> None:
    seg = cb.tcp(1, 2, "SA", 5, 6, b"abc", b"\x02\x04\x05\xb4", ip_src=SRC4, ip_dst=DST4)
    assert seg[12] >> 4 == 6 and seg[13] == 0x12
    assert cb.checksum(cb._pseudo_header(SRC4, DST4, 6, len(seg)) + seg) == 0
    dg = cb.udp(1, 2, b"abc", ip_src=SRC6, ip_dst=DST6)
    assert cb.checksum(cb._pseudo_header(SRC6, DST6, 17, len(dg)) + dg) == 0
    assert cb.checksum(cb.icmp_echo(1, 2, b"ping")) == 0
    assert cb.tcp(1, 2, "S")[16:18] == b"\x00\x00"  # no addresses: checksum left 0


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_header_bytes(byteorder: cb.ByteOrder, nanosecond: bool) -> None:
    data = cb.pcap_bytes(
        [cb.Rec(T0, b"\xaa" * 30, wire_len=100, caplen=20)],
        101,
        byteorder=byteorder,
        nanosecond=nanosecond,
        snaplen=1234,
    )
    magic = cb.PCAP_MAGIC_NS if nanosecond else cb.PCAP_MAGIC_US
    assert data[:4] == struct.pack(f"{byteorder}I", magic)
    assert struct.unpack(f"{byteorder}IHHiIII", data[:24]) == (magic, 2, 4, 0, 0, 1234, 101)
    sec, frac, incl, orig = struct.unpack(f"{byteorder}IIII", data[24:40])
    assert (sec, incl, orig) == (T0 // cb.NS_PER_S, 20, 100)
    assert frac == (123_456_789 if nanosecond else 123_456)
    assert len(data) == 40 + 20


def test_timestamp_conversions() -> None:
    assert cb.to_ns(Fraction(3, 2)) == 1_500_000_000
    one_ns_past = Fraction(1_700_000_000) + Fraction(1, 10**9)
    assert cb.as_rec((one_ns_past, b"")).ts_ns == 1_700_000_000 * 10**9 + 1
    with pytest.raises(TypeError):
        cb.to_ns(1.5)  # type: ignore[arg-type]
    iface = cb.Interface(1, tsresol=0x80 | 20, tsoffset=100)
    ticks = iface.ticks(T0)
    assert iface.ticks_to_ns(ticks) <= T0 < iface.ticks_to_ns(ticks + 1)
    assert cb.Interface(1, tsresol=9).ticks(T0) == T0
    assert cb.Interface(1).ticks(T0) == T0 // 1000


def test_pcapng_block_lengths_both_ends() -> None:
    data = cb.pcapng_bytes(
        [
            cb.Section(
                [
                    cb.Interface(1, tsresol=9, tsoffset=5, name="eth0"),
                    cb.EPB(0, T0, b"\x01" * 13, comment="odd length"),
                    cb.SPB(b"\x02" * 7),
                    cb.OPB(0, T0, b"\x03" * 5, drops=2),
                    cb.custom_block(32473, b"abc"),
                    cb.name_resolution_block([(SRC4, ["a.example"])], [(SRC6, ["b.example"])]),
                    cb.interface_statistics_block(0, 1, ifrecv=3, ifdrop=1),
                ],
                byteorder=">",
                section_length=None,
            ),
            cb.Section([cb.Interface(101), cb.EPB(0, T0, b"\x45")], byteorder="<"),
        ]
    )
    blocks = walk_pcapng(data)
    assert [(bo, t) for bo, t, _ in blocks] == [
        (">", cb.PCAPNG_SHB),
        (">", cb.PCAPNG_IDB),
        (">", cb.PCAPNG_EPB),
        (">", cb.PCAPNG_SPB),
        (">", cb.PCAPNG_OPB),
        (">", cb.PCAPNG_CB_COPY),
        (">", cb.PCAPNG_NRB),
        (">", cb.PCAPNG_ISB),
        ("<", cb.PCAPNG_SHB),
        ("<", cb.PCAPNG_IDB),
        ("<", cb.PCAPNG_EPB),
    ]
    # section_length=None writes the real length of the first section's other blocks.
    shb_len = blocks[0][2]
    (slen,) = struct.unpack_from(">q", data, 16)
    assert slen == sum(length for _, _, length in blocks[1:8])
    assert struct.unpack_from("<q", data, shb_len + slen + 16) == (-1,)
    # EPB timestamp at ns resolution with a 5 s offset.
    epb_off = shb_len + blocks[1][2]
    hi, lo = struct.unpack_from(">II", data, epb_off + 12)
    assert (hi << 32 | lo) == T0 - 5 * cb.NS_PER_S


# ------------------------------------------------------------------------------------------
# tshark round trips
# ------------------------------------------------------------------------------------------


@needs_tshark
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_tshark(tmp_path: Path, byteorder: cb.ByteOrder, nanosecond: bool) -> None:
    frames = [
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, tcp4(40001, b"abc")),
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, udp4(40002, b"q" * 200)),
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, udp6(40003)),
    ]
    times = [T0, T0 + 1, T0 + 2 * cb.NS_PER_S + 999]
    recs: list[cb.RecordLike] = [
        cb.Rec(times[0], frames[0]),
        cb.Rec(times[1], frames[1], caplen=60),  # truncated: 60 bytes of the wire length
        (Fraction(times[2], cb.NS_PER_S), frames[2]),  # (seconds as Fraction, data)
    ]
    data = cb.pcap_bytes(recs, cb.LINKTYPE_ETHERNET, byteorder=byteorder, nanosecond=nanosecond)
    path = cb.write(tmp_path / "t.pcap", data)
    rows = run_tshark(path, (*BASE_FIELDS, "frame.encap_type"))
    assert len(rows) == 3
    assert col(rows, "frame.len") == [str(len(f)) for f in frames]
    assert col(rows, "frame.cap_len") == [str(len(frames[0])), "60", str(len(frames[2]))]
    want = times if nanosecond else [t // 1000 * 1000 for t in times]
    assert [epoch_ns(t) for t in col(rows, "frame.time_epoch")] == want
    assert col(rows, "ip.src") == [SRC4, SRC4, ""]
    assert col(rows, "ipv6.src") == ["", "", SRC6]
    assert col(rows, "tcp.srcport") == ["40001", "", ""]
    assert col(rows, "udp.srcport") == ["", "40002", "40003"]
    assert col(rows, "frame.encap_type") == ["1"] * 3


@needs_tshark
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_pcapng_single_section_tshark(tmp_path: Path, byteorder: cb.ByteOrder) -> None:
    f1 = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, tcp4(40001, b"x" * 5))  # odd: padding
    f2 = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, udp4(40002, b"y" * 100))
    sec = cb.Section(
        [
            cb.Interface(cb.LINKTYPE_ETHERNET),  # no if_tsresol: microseconds
            cb.EPB(0, T0, f1, comment="first packet"),
            cb.EPB(0, T0 + 10**9, f2, caplen=50),
        ],
        byteorder=byteorder,
        userappl="capbuild",
    )
    path = cb.write(tmp_path / "t.pcapng", cb.pcapng_bytes(sec))
    assert path.read_bytes()[8:12] == struct.pack(f"{byteorder}I", cb.PCAPNG_BOM)
    fields = (*BASE_FIELDS, "frame.comment", "frame.interface_id", "frame.section_number")
    rows = run_tshark(path, fields)
    assert len(rows) == 2
    assert col(rows, "frame.len") == [str(len(f1)), str(len(f2))]
    assert col(rows, "frame.cap_len") == [str(len(f1)), "50"]
    assert [epoch_ns(t) for t in col(rows, "frame.time_epoch")] == [
        T0 // 1000 * 1000,
        (T0 + 10**9) // 1000 * 1000,
    ]
    assert col(rows, "frame.comment") == ["first packet", ""]
    assert col(rows, "tcp.srcport") == ["40001", ""]
    assert col(rows, "udp.srcport") == ["", "40002"]
    assert col(rows, "frame.interface_id") == ["0", "0"]
    assert col(rows, "frame.section_number") == ["1", "1"]


@needs_tshark
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_pcapng_interfaces_linktypes_and_resolutions_tshark(
    tmp_path: Path, byteorder: cb.ByteOrder
) -> None:
    if_eth_ns = cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9, name="eth0", snaplen=65535)
    if_raw_pow2 = cb.Interface(cb.LINKTYPE_RAW, tsresol=0x80 | 20, tsoffset=100)
    if_dlt12_us = cb.Interface(cb.DLT_RAW, tsresol=6, tsoffset=-50)
    if_eth_ms = cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=3)
    t = [T0, T0 + 3, T0 + 5_000, T0 + 7_000_000]
    sec = cb.Section(
        [
            if_eth_ns,
            if_raw_pow2,
            cb.EPB(1, t[0], udp4(40001)),
            if_dlt12_us,  # interfaces may be declared after packets of earlier ones
            if_eth_ms,
            cb.EPB(0, t[1], cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, tcp4(40002))),
            cb.EPB(2, t[2], udp6(40003)),
            cb.EPB(3, t[3], cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, udp6(40004))),
        ],
        byteorder=byteorder,
    )
    path = cb.write(tmp_path / "ifaces.pcapng", cb.pcapng_bytes(sec))
    fields = (*BASE_FIELDS, "frame.interface_id", "frame.interface_name", "frame.encap_type")
    rows = run_tshark(path, fields)
    assert col(rows, "frame.interface_id") == ["1", "0", "2", "3"]
    assert col(rows, "frame.interface_name") == ["unknown", "eth0", "unknown", "unknown"]
    assert col(rows, "frame.encap_type") == ["7", "1", "7", "1"]  # 7 = WTAP_ENCAP_RAW_IP
    assert col(rows, "ip.src") == [SRC4, SRC4, "", ""]
    assert col(rows, "ipv6.src") == ["", "", SRC6, SRC6]
    assert col(rows, "udp.srcport") == ["40001", "", "40003", "40004"]
    assert col(rows, "tcp.srcport") == ["", "40002", "", ""]
    # tshark truncates ticks -> ns; 2^-20 s ticks cannot hold T0 exactly.
    pow2 = if_raw_pow2.ticks_to_ns(if_raw_pow2.ticks(t[0]))
    assert pow2 != t[0] and t[0] - pow2 < 954
    want = [int(pow2), t[1], t[2] // 1000 * 1000, t[3] // 10**6 * 10**6]
    assert [epoch_ns(x) for x in col(rows, "frame.time_epoch")] == want


@needs_tshark
def test_pcapng_block_kinds_tshark(tmp_path: Path) -> None:
    frame = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, tcp4(40001, b"z" * 30))
    assert len(frame) > 48
    sec = cb.Section(
        [
            cb.Interface(cb.LINKTYPE_ETHERNET, snaplen=48),
            cb.RawBlock(0x0BAD0000, b"unknown block type, must be skipped"),
            cb.EPB(0, T0, frame, caplen=48),
            cb.name_resolution_block([(SRC4, ["src.example"])], [(SRC6, ["v6.example"])]),
            cb.SPB(frame),  # no timestamp; captured length = min(orig len, snaplen 48)
            cb.interface_statistics_block(0, cb.Interface(1).ticks(T0), ifrecv=3, ifdrop=0),
            cb.OPB(0, T0 + 2_000, frame[:48], drops=7, wire_len=len(frame), comment="old"),
            cb.RawBlock(cb.PCAPNG_DSB + 0x100, b"\x00" * 8),  # another unknown type
            cb.custom_block(32473, b"custom data"),
        ],
        byteorder="<",
    )
    path = cb.write(tmp_path / "kinds.pcapng", cb.pcapng_bytes(sec))
    assert [t for _, t, _ in walk_pcapng(path.read_bytes())] == [
        cb.PCAPNG_SHB, cb.PCAPNG_IDB, 0x0BAD0000, cb.PCAPNG_EPB, cb.PCAPNG_NRB, cb.PCAPNG_SPB,
        cb.PCAPNG_ISB, cb.PCAPNG_OPB, cb.PCAPNG_DSB + 0x100, cb.PCAPNG_CB_COPY,
    ]  # fmt: skip
    fields = (*BASE_FIELDS, "frame.comment", "frame.drop_count", "frame.cb_pen")
    rows = run_tshark(path, fields)
    # tshark skips unknown blocks, NRB and ISB, but shows a Custom Block as its own record.
    assert len(rows) == 4
    assert col(rows, "frame.cb_pen") == ["", "", "", "32473"]
    pkts = rows[:3]
    assert col(pkts, "frame.len") == [str(len(frame))] * 3
    assert col(pkts, "frame.cap_len") == ["48"] * 3
    assert col(pkts, "ip.src") == [SRC4] * 3
    assert col(pkts, "tcp.srcport") == ["40001"] * 3
    times = col(pkts, "frame.time_epoch")
    assert epoch_ns(times[0]) == T0 // 1000 * 1000
    assert times[1] == ""  # SPB carries no timestamp
    assert epoch_ns(times[2]) == (T0 + 2_000) // 1000 * 1000
    assert col(pkts, "frame.drop_count") == ["", "", "7"]
    assert col(pkts, "frame.comment") == ["", "", "old"]


@needs_tshark
@pytest.mark.parametrize("first", ["<", ">"])
def test_pcapng_second_section_other_byteorder_tshark(tmp_path: Path, first: cb.ByteOrder) -> None:
    other: cb.ByteOrder = ">" if first == "<" else "<"
    eth = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, udp4(40001))
    sections = [
        cb.Section([cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9), cb.EPB(0, T0, eth)], first),
        cb.Section(
            [
                cb.Interface(cb.LINKTYPE_RAW),
                cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9),
                cb.EPB(1, T0 + 1, eth),
                cb.EPB(0, T0 + 2_000, udp6(40002)),
            ],
            other,
        ),
    ]
    data = cb.pcapng_bytes(sections)
    assert [bo for bo, t, _ in walk_pcapng(data) if t == cb.PCAPNG_SHB] == [first, other]
    path = cb.write(tmp_path / "two_sections.pcapng", data)
    fields = (*BASE_FIELDS, "frame.section_number", "frame.interface_id", "frame.encap_type")
    rows = run_tshark(path, fields)
    assert col(rows, "frame.section_number") == ["1", "2", "2"]
    assert col(rows, "frame.interface_id") == ["0", "1", "0"]
    assert col(rows, "frame.encap_type") == ["1", "1", "7"]
    assert col(rows, "udp.srcport") == ["40001", "40001", "40002"]
    want = [T0, T0 + 1, T0 // 1000 * 1000 + 2_000]  # third packet: default µs resolution
    assert [epoch_ns(t) for t in col(rows, "frame.time_epoch")] == want


@needs_tshark
def test_vlan_and_qinq_tshark(tmp_path: Path) -> None:
    pkt = udp4(40001)
    frames = [
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, pkt),
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, pkt, [10]),
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, pkt, [0xA000 | 11]),  # PCP 5, VID 11
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, pkt, [100, 200]),  # 0x88a8 outer
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, pkt, [100, 200], cb.ETH_QINQ_OLD),
        cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, udp6(40002), [300, 400]),
    ]
    assert frames[3][12:14] == b"\x88\xa8" and frames[3][16:18] == b"\x81\x00"
    assert frames[4][12:14] == b"\x91\x00" and frames[4][16:18] == b"\x81\x00"
    path = cb.write(
        tmp_path / "vlan.pcap",
        cb.pcap_bytes([cb.Rec(T0 + i, f) for i, f in enumerate(frames)], 1, nanosecond=True),
    )
    fields = (*BASE_FIELDS, "vlan.priority", "ieee8021ad.id", "eth.type")
    rows = run_tshark(path, fields)
    assert col(rows, "frame.len") == [str(len(f)) for f in frames]
    assert col(rows, "eth.type") == ["0x0800", "0x8100", "0x8100", "0x88a8", "0x9100", "0x88a8"]
    # tshark: 0x88a8 is the 802.1ad dissector (S-tag in ieee8021ad.id), the inner C-tag then
    # goes through the 802.1Q dissector; 0x9100 is handled by the 802.1Q dissector itself.
    assert col(rows, "ieee8021ad.id") == ["", "", "", "100", "", "300"]
    assert col(rows, "vlan.id") == ["", "10", "11", "200", "100,200", "400"]
    assert col(rows, "vlan.priority") == ["", "0", "5", "0", "0,0", "0"]
    assert col(rows, "udp.srcport") == ["40001"] * 5 + ["40002"]
    assert col(rows, "ip.src") == [SRC4] * 5 + [""]
    assert col(rows, "ipv6.src") == [""] * 5 + [SRC6]


@needs_tshark
def test_linux_cooked_v1_v2_tshark(tmp_path: Path) -> None:
    v1 = [
        cb.sll(udp4(40001), cb.ETH_IPV4, cb.PACKET_OUTGOING),
        cb.sll(udp6(40002), cb.ETH_IPV6, cb.PACKET_HOST, addr=None),
    ]
    v2 = [
        cb.sll2(udp4(40001), cb.ETH_IPV4, cb.PACKET_OUTGOING, ifindex=3),
        cb.sll2(udp6(40002), cb.ETH_IPV6, cb.PACKET_BROADCAST, ifindex=7),
    ]
    assert [len(f) - len(p) for f, p in zip(v1, (udp4(40001), udp6(40002)), strict=True)] == [
        16,
        16,
    ]
    assert [len(f) - len(p) for f, p in zip(v2, (udp4(40001), udp6(40002)), strict=True)] == [
        20,
        20,
    ]
    fields = (*BASE_FIELDS, "frame.encap_type", "sll.pkttype", "sll.etype", "sll.ifindex")
    p1 = cb.write(
        tmp_path / "sll.pcap", cb.pcap_bytes([(T0, f) for f in v1], cb.LINKTYPE_LINUX_SLL)
    )
    p2 = cb.write(
        tmp_path / "sll2.pcap", cb.pcap_bytes([(T0, f) for f in v2], cb.LINKTYPE_LINUX_SLL2)
    )
    r1, r2 = run_tshark(p1, fields), run_tshark(p2, fields)
    assert col(r1, "frame.encap_type") == ["25", "25"]
    assert col(r2, "frame.encap_type") == ["210", "210"]
    assert col(r1, "sll.pkttype") == ["4", "0"]
    assert col(r2, "sll.pkttype") == ["4", "1"]
    assert col(r1, "sll.etype") == col(r2, "sll.etype") == ["0x0800", "0x86dd"]
    assert col(r2, "sll.ifindex") == ["3", "7"]
    for rows in (r1, r2):
        assert col(rows, "ip.src") == [SRC4, ""]
        assert col(rows, "ipv6.src") == ["", SRC6]
        assert col(rows, "udp.srcport") == ["40001", "40002"]


@needs_tshark
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_null_loopback_tshark(tmp_path: Path, byteorder: cb.ByteOrder) -> None:
    frames = [
        cb.null_loopback(udp4(40001), cb.AF_INET, byteorder),
        cb.null_loopback(udp6(40002), cb.AF_INET6_BSD, byteorder),
        cb.null_loopback(udp6(40003), cb.AF_INET6_FREEBSD, byteorder),
        cb.null_loopback(udp6(40004), cb.AF_INET6_DARWIN, byteorder),
        cb.null_loopback(udp6(40005), cb.AF_INET6_LINUX, byteorder),
    ]
    # The family is in the capturing host's byte order, whatever the file's byte order.
    assert frames[0][:4] == struct.pack(f"{byteorder}I", 2)
    file_bo: cb.ByteOrder = ">" if byteorder == "<" else "<"
    path = cb.write(
        tmp_path / "null.pcap",
        cb.pcap_bytes([(T0, f) for f in frames], cb.LINKTYPE_NULL, byteorder=file_bo),
    )
    rows = run_tshark(path, (*BASE_FIELDS, "frame.encap_type", "null.family"))
    assert col(rows, "frame.encap_type") == ["15"] * 5
    assert col(rows, "null.family") == ["2", "24", "28", "30", "10"]
    assert col(rows, "ip.src") == [SRC4, "", "", "", ""]
    assert col(rows, "ipv6.src")[:4] == ["", SRC6, SRC6, SRC6]
    assert col(rows, "udp.srcport")[:4] == ["40001", "40002", "40003", "40004"]
    # AF_INET6 = 10 (Linux) is not a LINKTYPE_NULL value: tshark 4.0 leaves it undecoded,
    # so the last frame is only checked for its family above.


@needs_tshark
def test_loop_tshark(tmp_path: Path) -> None:
    frames = [cb.loop(udp4(40001), cb.AF_INET), cb.loop(udp6(40002), cb.AF_INET6_BSD)]
    assert frames[1][:4] == b"\x00\x00\x00\x18"
    path = cb.write(
        tmp_path / "loop.pcap", cb.pcap_bytes([(T0, f) for f in frames], cb.LINKTYPE_LOOP)
    )
    rows = run_tshark(path, (*BASE_FIELDS, "frame.encap_type", "null.family"))
    assert col(rows, "frame.encap_type") == ["174", "174"]  # WTAP_ENCAP_LOOP
    assert col(rows, "null.family") == ["2", "24"]
    assert col(rows, "ip.src") == [SRC4, ""]
    assert col(rows, "ipv6.src") == ["", SRC6]
    assert col(rows, "udp.srcport") == ["40001", "40002"]


@needs_tshark
@pytest.mark.parametrize("container", ["pcap", "pcapng"])
@pytest.mark.parametrize("linktype", [cb.LINKTYPE_RAW, cb.DLT_RAW, cb.DLT_RAW_OPENBSD])
def test_raw_ip_tshark(tmp_path: Path, linktype: int, container: str) -> None:
    recs = [cb.Rec(T0, cb.raw(tcp4(40001))), cb.Rec(T0 + 1_000, cb.raw(udp6(40002)))]
    if container == "pcap":
        data = cb.pcap_bytes(recs, linktype)
    else:
        data = cb.pcapng_simple(recs, linktype, byteorder=">")
    path = cb.write(tmp_path / f"raw{linktype}.{container}", data)
    rows = run_tshark(path, (*BASE_FIELDS, "frame.encap_type"))
    # Wireshark maps 101, 12 and 14 all to WTAP_ENCAP_RAW_IP (7).
    assert col(rows, "frame.encap_type") == ["7", "7"]
    assert col(rows, "ip.src") == [SRC4, ""]
    assert col(rows, "ipv6.src") == ["", SRC6]
    assert col(rows, "tcp.srcport") == ["40001", ""]
    assert col(rows, "udp.srcport") == ["", "40002"]
    assert [epoch_ns(t) for t in col(rows, "frame.time_epoch")] == [
        T0 // 1000 * 1000,
        (T0 + 1_000) // 1000 * 1000,
    ]


@needs_tshark
@pytest.mark.parametrize("linktype", [1, 113, 276, 0, 108, 101, 12])
def test_wrap_every_linktype_tshark(tmp_path: Path, linktype: int) -> None:
    frames = [
        cb.ip4_tcp_frame(SRC4, DST4, 40001, DPORT, "SA", linktype=linktype),
        cb.ip4_udp_frame(SRC4, DST4, 40002, DPORT, b"u", linktype=linktype),
        cb.ip6_tcp_frame(SRC6, DST6, 40003, DPORT, "PA", b"p", linktype=linktype),
        cb.ip6_udp_frame(SRC6, DST6, 40004, DPORT, b"v", linktype=linktype),
    ]
    path = cb.write(tmp_path / "wrap.pcapng", cb.pcapng_simple([(T0, f) for f in frames], linktype))
    fields = (*BASE_FIELDS, "tcp.checksum.status", "udp.checksum.status")
    rows = run_tshark(path, fields, CHECKSUM_PREFS)
    assert col(rows, "ip.src") == [SRC4, SRC4, "", ""]
    assert col(rows, "ipv6.src") == ["", "", SRC6, SRC6]
    assert col(rows, "tcp.srcport") == ["40001", "", "40003", ""]
    assert col(rows, "udp.srcport") == ["", "40002", "", "40004"]
    assert col(rows, "tcp.checksum.status") == [GOOD, "", GOOD, ""]
    assert col(rows, "udp.checksum.status") == ["", GOOD, "", GOOD]


@needs_tshark
def test_tcp_flags_and_icmp_tshark(tmp_path: Path) -> None:
    flags = ["S", "SA", "A", "PA", "FA", "R", "RA"]
    frames = [
        cb.ip4_tcp_frame(SRC4, DST4, 40001, DPORT, f, b"d" if "P" in f else b"",
                         seq=0xFFFFFFF0 + i, ack=i)
        for i, f in enumerate(flags)
    ]  # fmt: skip
    frames.append(cb.wrap(cb.ipv4(SRC4, DST4, cb.PROTO_ICMP, cb.icmp_echo(9, 1, b"ping")), 1))
    frames.append(
        cb.wrap(cb.ipv4(DST4, SRC4, cb.PROTO_ICMP, cb.icmp_echo(9, 1, b"ping", reply=True)), 1)
    )
    icmp6 = cb.icmp6_echo(9, 2, b"ping6", ip_src=SRC6, ip_dst=DST6)
    frames.append(cb.wrap(cb.ipv6(SRC6, DST6, cb.PROTO_ICMPV6, icmp6), 1))
    path = cb.write(tmp_path / "flags.pcap", cb.pcap_bytes([(T0, f) for f in frames], 1))
    fields = (
        *BASE_FIELDS, "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.checksum.status",
        "ip.checksum.status", "icmp.type", "icmp.ident", "icmp.checksum.status",
        "icmpv6.type", "icmpv6.checksum.status",
    )  # fmt: skip
    rows = run_tshark(path, fields, CHECKSUM_PREFS)
    n = len(flags)
    assert col(rows, "tcp.flags")[:n] == [f"0x{cb.tcp_flags(f):04x}" for f in flags]
    assert col(rows, "tcp.seq_raw")[:n] == [str(0xFFFFFFF0 + i) for i in range(n)]
    assert col(rows, "tcp.ack_raw")[:n] == [str(i) for i in range(n)]
    assert col(rows, "tcp.checksum.status")[:n] == [GOOD] * n
    assert col(rows, "ip.checksum.status") == [GOOD] * (n + 2) + [""]
    assert col(rows, "icmp.type")[n:] == ["8", "0", ""]
    assert col(rows, "icmp.ident")[n:] == ["9", "9", ""]
    assert col(rows, "icmp.checksum.status")[n:] == [GOOD, GOOD, ""]
    assert col(rows, "icmpv6.type")[n:] == ["", "", "128"]
    assert col(rows, "icmpv6.checksum.status")[-1] == GOOD


@needs_tshark
def test_ipv6_extension_headers_tshark(tmp_path: Path) -> None:
    dgram = cb.udp(40001, DPORT, b"x" * 20, ip_src=SRC6, ip_dst=DST6)
    router_alert = bytes([5, 2, 0, 0])
    rpl_empty = bytes([3, 0, 0, 0, 0, 0])  # RPL source route, segments left 0, no addresses
    tunnel_limit = bytes([4, 1, 4])
    pkt = cb.ipv6(
        SRC6,
        DST6,
        cb.PROTO_UDP,
        dgram,
        ext_headers=[
            (cb.PROTO_HOPOPTS, router_alert),
            (cb.PROTO_IPV6_DSTOPTS, b""),
            (cb.PROTO_IPV6_ROUTING, rpl_empty),
            cb.ipv6_fragment_ext(0, False, 0x1234),  # atomic fragment
            (cb.PROTO_IPV6_DSTOPTS, tunnel_limit),
        ],
    )
    frame = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV6, pkt)
    path = cb.write(tmp_path / "v6ext.pcap", cb.pcap_bytes([(T0, frame)], 1, nanosecond=True))
    fields = (
        *BASE_FIELDS, "ipv6.plen", "ipv6.nxt", "ipv6.hopopts.nxt", "ipv6.hopopts.len_oct",
        "ipv6.dstopts.nxt", "ipv6.dstopts.len_oct", "ipv6.routing.nxt", "ipv6.routing.type",
        "ipv6.fraghdr.nxt", "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident",
        "udp.checksum.status", "_ws.expert.message",
    )  # fmt: skip
    (row,) = run_tshark(path, fields, CHECKSUM_PREFS)
    assert row["ipv6.plen"] == str(5 * 8 + len(dgram))
    assert row["ipv6.nxt"] == "0"
    assert row["ipv6.hopopts.nxt"] == "60"
    assert row["ipv6.hopopts.len_oct"] == "8"
    assert row["ipv6.dstopts.nxt"] == "43,17"
    assert row["ipv6.dstopts.len_oct"] == "8,8"
    assert row["ipv6.routing.nxt"] == "44"
    assert row["ipv6.routing.type"] == "3"
    assert row["ipv6.fraghdr.nxt"] == "60"
    assert (row["ipv6.fraghdr.offset"], row["ipv6.fraghdr.more"]) == ("0", "0")
    assert row["ipv6.fraghdr.ident"] == "0x00001234"
    assert row["ipv6.src"] == SRC6 and row["udp.srcport"] == "40001"
    assert row["udp.checksum.status"] == GOOD
    assert row["_ws.expert.message"] == ""
    assert epoch_ns(row["frame.time_epoch"]) == T0


@needs_tshark
def test_ipv6_fragments_tshark(tmp_path: Path) -> None:
    dgram = cb.udp(40001, DPORT, bytes(range(100)), ip_src=SRC6, ip_dst=DST6)
    frags = cb.ipv6_fragments(
        SRC6, DST6, cb.PROTO_UDP, dgram, 64, ident=77, ext_before=[(0, bytes([5, 2, 0, 0]))]
    )
    path = cb.write(tmp_path / "f6.pcap", cb.pcap_bytes([(T0, cb.raw(f)) for f in frags], 101))
    fields = (*BASE_FIELDS, "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "udp.length", "data.len")
    off = run_tshark(path, fields, ("ipv6.defragment:FALSE",))
    assert col(off, "ipv6.fraghdr.offset") == ["0", "8"]
    assert col(off, "ipv6.fraghdr.more") == ["1", "0"]
    assert col(off, "udp.srcport") == ["40001", ""]  # only the first carries the UDP header
    on = run_tshark(path, fields, ("ipv6.defragment:TRUE",))
    assert col(on, "udp.length") == ["", str(len(dgram))]
    assert col(on, "data.len") == ["64", "100"]


@needs_tshark
def test_ipv4_fragments_tshark(tmp_path: Path) -> None:
    payload = bytes(range(100))
    dgram = cb.udp(40001, DPORT, payload, ip_src=SRC4, ip_dst=DST4)
    frags = cb.ipv4_fragments(SRC4, DST4, cb.PROTO_UDP, dgram, 48, ident=0x4242)
    assert [len(f) - 20 for f in frags] == [48, 48, 12]
    frames = [cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, f) for f in frags]
    recs = [cb.Rec(T0 + i * 1_000, f) for i, f in enumerate(frames)]
    path = cb.write(tmp_path / "frag.pcap", cb.pcap_bytes(recs, 1, byteorder=">"))
    fields = (
        *BASE_FIELDS, "ip.id", "ip.flags.mf", "ip.frag_offset", "ip.len", "ip.checksum.status",
        "udp.length", "udp.checksum.status", "data.len",
    )  # fmt: skip
    prefs = (*CHECKSUM_PREFS, "ip.defragment:FALSE")
    off = run_tshark(path, fields, prefs)
    assert col(off, "ip.id") == ["0x4242"] * 3
    assert col(off, "ip.flags.mf") == ["1", "1", "0"]
    assert col(off, "ip.frag_offset") == ["0", "6", "12"]  # in 8-byte units, as on the wire
    assert col(off, "ip.len") == ["68", "68", "32"]
    assert col(off, "ip.checksum.status") == [GOOD] * 3
    assert col(off, "udp.srcport") == ["40001", "", ""]  # only the first carries UDP
    on = run_tshark(path, fields, (*CHECKSUM_PREFS, "ip.defragment:TRUE"))
    assert col(on, "udp.srcport") == ["", "", "40001"]  # dissected on reassembly
    assert col(on, "udp.length") == ["", "", str(len(dgram))]
    assert col(on, "udp.checksum.status")[-1] == GOOD
    assert col(on, "data.len")[-1] == str(len(payload))


@needs_tshark
def test_gzip_tshark(tmp_path: Path) -> None:
    frame = cb.ether(cb.MAC_B, cb.MAC_A, cb.ETH_IPV4, udp4(40001))
    pcap = cb.pcap_bytes([cb.Rec(T0, frame), cb.Rec(T0 + 7, frame)], 1, nanosecond=True)
    gz = cb.gzip_bytes(pcap)
    assert gz[:2] == b"\x1f\x8b" and gzip.decompress(gz) == pcap
    assert cb.gzip_bytes(pcap) == gz  # deterministic
    path = cb.write(tmp_path / "t.pcap.gz", gz)
    rows = run_tshark(path)
    assert [epoch_ns(t) for t in col(rows, "frame.time_epoch")] == [T0, T0 + 7]
    assert col(rows, "udp.srcport") == ["40001", "40001"]
    ng = cb.pcapng_simple([(T0, frame)], 1, tsresol=9, byteorder=">")
    (row,) = run_tshark(cb.write(tmp_path / "t.pcapng.gz", cb.gzip_bytes(ng)))
    assert epoch_ns(row["frame.time_epoch"]) == T0
