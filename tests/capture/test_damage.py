"""Damaged and hostile capture shapes found in review: each gives one clear error or what was
read plus a warning -- never a crash, a hang or bytes read from outside a record."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from flowaudit.capture.reader import CaptureReader
from flowaudit.errors import CaptureFormatError
from flowaudit.flows import FlowConfig, build_flow_table
from tests import capbuild as cb

T0 = 1_700_000_000 * 10**9


def _frame(payload: bytes = b"hello", sport: int = 40000) -> bytes:
    return cb.ip4_tcp_frame(sport=sport, dport=445, payload=payload, seq=1)


def _pcapng(path: Path, *blocks: object) -> Path:
    section = cb.Section([cb.Interface(cb.LINKTYPE_ETHERNET, tsresol=9), *blocks])  # type: ignore[list-item]
    return cb.write(path, cb.pcapng_bytes(section))


def _read(path: Path, **kwargs: object) -> CaptureReader:
    reader = CaptureReader(path, **kwargs)  # type: ignore[arg-type]
    for _ in reader.batches():
        pass
    return reader


@pytest.mark.parametrize(("block_type", "length"), [(3, 12), (6, 28), (2, 24)])
def test_packet_block_shorter_than_its_header_ends_the_read(
    tmp_path: Path, block_type: int, length: int
) -> None:
    # An SPB needs 16 bytes around its data, EPB and OPB 32; what follows the short block
    # (an IPv6 header with a hop-by-hop chain) must never be decoded as its packet.
    ipv6_bait = b"\x86\xdd" + b"\x60" + b"\x00" * 5 + b"\x00" * 64
    blocks = [
        cb.EPB(0, T0, _frame()),
        struct.pack("<III", block_type, length, 0) + b"\x00" * (length - 12),
        cb.RawBlock(0x0BAD, ipv6_bait),
    ]
    reader = _read(_pcapng(tmp_path / "short.pcapng", *blocks))
    assert reader.info.packets == 1
    assert any("malformed pcapng block at byte" in w for w in reader.info.warnings)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ((cb.IF_TSRESOL, b"\x7f"), r"resolution 10\^-127"),
        ((cb.IF_TSRESOL, b"\xe4"), r"resolution 2\^-100"),
        ((cb.IF_TSOFFSET, struct.pack("<q", 2**40)), "offset"),
    ],
)
def test_impossible_interface_options_are_a_format_error(
    tmp_path: Path, option: tuple[int, bytes], message: str
) -> None:
    section = cb.Section(
        [cb.Interface(cb.LINKTYPE_ETHERNET, options=[option]), cb.EPB(0, T0, _frame())]
    )
    path = cb.write(tmp_path / "idb.pcapng", cb.pcapng_bytes(section))
    with pytest.raises(CaptureFormatError, match=message):
        _read(path)


def test_interface_option_running_past_its_block(tmp_path: Path) -> None:
    body = struct.pack("<HHI", cb.LINKTYPE_ETHERNET, 0, 0) + struct.pack("<HH", 2, 200) + b"ab"
    idb = cb.RawBlock(1, body)
    path = cb.write(
        tmp_path / "idb.pcapng", cb.pcapng_bytes(cb.Section([idb, cb.EPB(0, T0, _frame())]))
    )
    with pytest.raises(CaptureFormatError, match="option 2 runs past its block"):
        _read(path)


def test_damaged_interface_block_after_packets_keeps_them(tmp_path: Path) -> None:
    body = struct.pack("<HHI", cb.LINKTYPE_ETHERNET, 0, 0) + struct.pack("<HH", 9, 1) + b"\x7f"
    path = _pcapng(tmp_path / "late.pcapng", cb.EPB(0, T0, _frame()), cb.RawBlock(1, body))
    reader = _read(path)
    assert reader.info.packets == 1
    assert any("resolution" in w and "packets up to there" in w for w in reader.info.warnings)


def test_pcapng_cut_inside_its_section_header_is_not_a_capture(tmp_path: Path) -> None:
    whole = cb.pcapng_bytes(cb.Section([]))
    path = cb.write(tmp_path / "cut.pcapng", whole[:10])
    with pytest.raises(CaptureFormatError, match="section header cut short"):
        _read(path)


def test_buffers_of_batches_in_use_are_not_refilled(tmp_path: Path) -> None:
    # Chunks holding no packet (large skipped blocks) must not rotate the read-ahead buffers
    # into one a batch still points to.
    blocks: list[object] = [cb.EPB(0, T0, _frame(b"PAYLOAD-ONE-" * 4))]
    blocks += [cb.custom_block(32473, b"\xee" * 300_000) for _ in range(6)]
    blocks.append(cb.EPB(0, T0 + 1, _frame(b"PAYLOAD-TWO-" * 4)))
    path = _pcapng(tmp_path / "rot.pcapng", *blocks)
    reader = CaptureReader(path, chunk_bytes=1024, batch_packets=4, background=True)
    seen = []
    for batch in reader.batches():
        start, size = int(batch.payload_off[0]), int(batch.payload_cap[0])
        before = bytes(batch.buffer[start : start + size])
        time.sleep(0.2)  # the read-ahead thread runs on meanwhile
        assert bytes(batch.buffer[start : start + size]) == before
        seen.append(before)
    assert seen == [b"PAYLOAD-ONE-" * 4, b"PAYLOAD-TWO-" * 4]


def test_tcp_data_offset_below_five_gives_no_payload(tmp_path: Path) -> None:
    frame = bytearray(_frame(b"hello"))
    frame[14 + 20 + 12] = 0x00  # data offset 0
    path = cb.write(
        tmp_path / "doff.pcap", cb.pcap_bytes([cb.Rec(T0, bytes(frame))], cb.LINKTYPE_ETHERNET)
    )
    flows = build_flow_table([path]).flows
    assert flows["server_port"].tolist() == [445]
    assert flows["c2s_payload"].tolist() == [b""]


def test_segment_cut_to_nothing_ends_the_payload_prefix(tmp_path: Path) -> None:
    first = _frame(b"FIRST")
    second = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"SECOND", seq=6)
    records = [cb.Rec(T0, first, caplen=14 + 20 + 20), cb.Rec(T0 + 1, second)]
    path = cb.write(tmp_path / "cut.pcap", cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET))
    assert build_flow_table([path]).flows["c2s_payload"].tolist() == [b""]


def test_udp_length_bounds_the_payload(tmp_path: Path) -> None:
    frame = bytearray(cb.ip4_udp_frame(payload=b"abcdef"))
    frame[14 + 20 + 4 : 14 + 20 + 6] = struct.pack("!H", 10)  # the datagram holds 2 bytes
    path = cb.write(
        tmp_path / "udp.pcap", cb.pcap_bytes([cb.Rec(T0, bytes(frame))], cb.LINKTYPE_ETHERNET)
    )
    assert build_flow_table([path]).flows["c2s_payload"].tolist() == [b"ab"]


def test_large_payload_slots_reserve_what_the_machine_has(tmp_path: Path) -> None:
    path = cb.write(
        tmp_path / "one.pcap", cb.pcap_bytes([cb.Rec(T0, _frame())], cb.LINKTYPE_ETHERNET)
    )
    table = build_flow_table([path], FlowConfig(payload_bytes=262144))
    assert table.flows["c2s_payload"].tolist() == [b"hello"]


def test_gzip_whose_first_member_is_tiny(tmp_path: Path) -> None:
    import gzip

    data = cb.pcap_bytes([cb.Rec(T0, _frame())], cb.LINKTYPE_ETHERNET)
    path = cb.write(tmp_path / "multi.gz", gzip.compress(data[:2]) + gzip.compress(data[2:]))
    assert _read(path).info.packets == 1


def test_overlapping_files_are_read_but_flagged(tmp_path: Path) -> None:
    one = cb.pcap_bytes(
        [cb.Rec(T0, _frame(sport=1)), cb.Rec(T0 + 100 * 10**9, _frame(sport=2))],
        cb.LINKTYPE_ETHERNET,
    )
    two = cb.pcap_bytes([cb.Rec(T0 + 50 * 10**9, _frame(sport=3))], cb.LINKTYPE_ETHERNET)
    first, second = cb.write(tmp_path / "a.pcap", one), cb.write(tmp_path / "b.pcap", two)
    table = build_flow_table([second, first])
    assert [c.path for c in table.captures] == [str(first), str(second)]
    assert table.captures[0].warnings == []
    assert "overlaps in time with" in table.captures[1].warnings[0]


def test_coalesced_retransmission_adds_its_new_bytes(tmp_path: Path) -> None:
    first = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"aaaa", seq=1)
    again = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"aaaabbbbcccc", seq=1)
    # the original of the coalesced bytes, arriving late: already kept, not added again
    late = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"bbbbcccc", seq=5)
    then = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"dd", seq=13)
    records = [cb.Rec(T0 + k, frame) for k, frame in enumerate((first, again, then, late))]
    path = cb.write(tmp_path / "re.pcap", cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET))
    assert build_flow_table([path]).flows["c2s_payload"].tolist() == [b"aaaabbbbccccdd"]
