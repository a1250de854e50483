"""The pyshark engine (flowaudit/capture/pyshark_engine.py): tshark's dissection as batches.

Real captures come from ``FLOWAUDIT_CORPUS`` (default ``../shared/corpus`` next to the
repository, read-only; attribution in its MANIFEST.tsv). Expected values were read off the raw
frame bytes (dpkt / a hex dump), not from tshark, and packet counts from the corpus's
ORACLE.tsv. What the corpus lacks (fragments, tunnels, ICMP errors, IPv6 extension headers,
nanosecond timestamps) is built here with scapy into ``tmp_path``.
"""

from __future__ import annotations

import gc
import hashlib
import ipaddress
import os
import struct
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import pytest

from flowaudit.capture import pyshark_engine
from flowaudit.capture.batch import (
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    L3_IPV4,
    L3_IPV6,
    L3_NONE,
    TCP_ACK,
    TCP_PSH,
    TCP_SYN,
    PacketBatch,
)
from flowaudit.capture.pyshark_engine import (
    PysharkReader,
    iter_pyshark_batches,
    pyshark_available,
    read_with_pyshark,
)
from flowaudit.errors import CaptureFormatError, EngineError, InputError
from tests.conftest import missing, under_ci

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("FLOWAUDIT_CORPUS", REPO_ROOT.parent / "shared" / "corpus"))

F = TypeVar("F", bound=Callable[..., Any])


def needs_tshark(test: F) -> F:
    """Mark a test as running tshark (marker ``tshark``) and skip it where it cannot (in CI it
    must run)."""
    skip = pytest.mark.skipif(
        not pyshark_available() and not under_ci(), reason="pyshark or tshark missing"
    )
    marked: F = pytest.mark.tshark(skip(test))
    return marked


# --- helpers --------------------------------------------------------------------------------


def corpus_file(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        missing(f"corpus capture {name} in {CORPUS}")
    return path


def oracle_packets(name: str) -> int:
    """Packet count tshark 4.0.17 gave for a corpus file (ORACLE.tsv, column ``packets``)."""
    oracle = CORPUS / "ORACLE.tsv"
    if not oracle.is_file():
        missing(f"ORACLE.tsv in {CORPUS}")
    lines = oracle.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if row["local_filename"] == name:
            return int(row["packets"].split()[0])  # "6 (then read error)" -> 6
    raise AssertionError(f"{name} not in ORACLE.tsv")


class Rows:
    """All batches of one read, concatenated, with a per-frame view for assertions."""

    def __init__(self, batches: list[PacketBatch]) -> None:
        self.batches = batches
        self.index = {
            int(batch.frame[i]): (batch, i) for batch in batches for i in range(len(batch))
        }

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, frame: int) -> dict[str, Any]:
        batch, i = self.index[frame]
        row: dict[str, Any] = {name: getattr(batch, name)[i].item() for name in COLUMNS}
        row["src"] = address(row["src_hi"], row["src_lo"])
        row["dst"] = address(row["dst_hi"], row["dst_lo"])
        start = row["payload_off"]
        row["payload"] = bytes(batch.buffer[start : start + row["payload_cap"]])
        return row


COLUMNS = (
    "frame", "ts_ns", "wire_len", "l3", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo",
    "sport", "dport", "tcp_flags", "tcp_seq", "payload_off", "payload_len", "payload_cap",
    "l2_multicast", "frag", "frag_id",
)  # fmt: skip


def address(hi: int, lo: int) -> str:
    ip = ipaddress.IPv6Address((hi << 64) | lo)
    return str(ip.ipv4_mapped or ip)


def read(path: Path, **kwargs: Any) -> tuple[PysharkReader, Rows]:
    reader = PysharkReader(path, kwargs.pop("file_index", 0), **kwargs)
    return reader, Rows(list(reader.batches()))


def tshark_processes_reading(path: Path) -> list[int]:
    """Pids of processes whose command line names ``path`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and b"tshark" in cmdline:
            pids.append(int(entry.name))
    return pids


# --- availability and bad input ---------------------------------------------------------------


def test_missing_tshark_is_an_engine_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pyshark_engine.shutil, "which", lambda name: None)
    assert not pyshark_available()
    with pytest.raises(EngineError, match="tshark"):
        PysharkReader(tmp_path / "any.pcap", 0)


def test_missing_pyshark_is_an_engine_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = pyshark_engine.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "pyshark" else real_find_spec(name, *args)

    monkeypatch.setattr(pyshark_engine.importlib.util, "find_spec", find_spec)
    assert not pyshark_available()
    with pytest.raises(EngineError, match="pyshark") as error:
        read_with_pyshark(tmp_path / "any.pcap", 0)
    assert "\n" not in str(error.value)


@needs_tshark
def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        PysharkReader(tmp_path / "absent.pcap", 0)


@needs_tshark
def test_file_tshark_cannot_read_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.pcap"
    path.write_text("this is not a capture\n" * 20)
    with pytest.raises(CaptureFormatError) as error:
        list(PysharkReader(path, 0).batches())
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message
    assert not tshark_processes_reading(path)


def pcap_bytes(linktype: int, records: list[bytes]) -> bytes:
    """A little-endian pcap file (microsecond timestamps) holding ``records`` as frames."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    body = b"".join(
        struct.pack("<IIII", 1_700_000_000 + n, 0, len(data), len(data)) + data
        for n, data in enumerate(records)
    )
    return header + body


ARP_REQUEST = bytes.fromhex(
    "ffffffffffff0011223344550806"  # Ethernet to broadcast, EtherType ARP
    "0001080006040001001122334455c0000201000000000000c0000202"
)


@needs_tshark
def test_unknown_link_type_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "linktype999.pcap"
    path.write_bytes(pcap_bytes(999, [ARP_REQUEST]))
    with pytest.raises(CaptureFormatError, match="999") as error:
        list(PysharkReader(path, 0).batches())
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@needs_tshark
def test_header_cut_short_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "header.pcap"
    path.write_bytes(pcap_bytes(1, [])[:10])
    with pytest.raises(CaptureFormatError):
        list(PysharkReader(path, 0).batches())


@needs_tshark
def test_first_packet_cut_short_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "first_cut.pcap"
    whole = pcap_bytes(1, [ARP_REQUEST, ARP_REQUEST])
    path.write_bytes(whole[: 24 + 16 + len(ARP_REQUEST) + 20])  # second record cut
    reader, rows = read(path)
    assert len(rows) == 1 and rows[1]["l3"] == L3_NONE and rows[1]["l2_multicast"]
    assert rows[1]["wire_len"] == len(ARP_REQUEST)
    assert len(reader.warnings) == 1 and "cut short" in reader.warnings[0]
    path.write_bytes(whole[: 24 + 16 + 10])  # first record cut: nothing read, still a warning
    reader, rows = read(path)
    assert len(rows) == 0 and len(reader.warnings) == 1


# --- real captures ----------------------------------------------------------------------------


@needs_tshark
@pytest.mark.corpus
@pytest.mark.parametrize(
    "name",
    [
        "sv_tftp_wrq.pcap",
        "zeek_ldap_vlan_ipv6.pcapng",
        "zeek_qinq.pcap",
        "zeek_linux_sll2.pcap",
        "zeek_smb2_kerberos.pcap",
        "ppp_wol.pcap",
        "zeek_snaplen68_truncated.pcap",
        "ndpi_tftp.pcap",  # pcapng behind a .pcap name
    ],
)
def test_packet_count_matches_the_oracle(name: str) -> None:
    reader, rows = read(corpus_file(name))
    assert reader.packets == len(rows) == oracle_packets(name)
    assert sorted(rows.index) == list(range(1, len(rows) + 1))
    assert reader.warnings == []


@needs_tshark
@pytest.mark.corpus
def test_udp_tftp_write_request() -> None:
    reader, rows = read(corpus_file("sv_tftp_wrq.pcap"), file_index=3)
    assert all(batch.file_index == 3 for batch in rows.batches)
    assert reader.linktypes == ["ethernet"]
    first = rows[1]
    assert first["ts_ns"] == 1_367_053_679_452_740_000
    assert first["wire_len"] == 62
    assert (first["l3"], first["proto"]) == (L3_IPV4, 17)
    assert (first["src"], first["sport"]) == ("192.168.0.1", 57509)
    assert (first["dst"], first["dport"]) == ("192.168.0.13", 69)
    assert first["src_hi"] == 0 and first["src_lo"] == 0x0000FFFF_C0A80001  # ::ffff:192.168.0.1
    assert first["payload_len"] == first["payload_cap"] == 20
    assert first["payload"] == b"\x00\x02rfc1350.txt\x00octet\x00"  # WRQ, RFC 1350 section 5
    assert (first["frag"], first["frag_id"]) == (FRAG_NONE, 0)  # frag_id only on fragments
    assert not first["l2_multicast"]
    ack = rows[2]
    assert (ack["src"], ack["sport"], ack["dst"], ack["dport"]) == (
        "192.168.0.13",
        2087,
        "192.168.0.1",
        57509,
    )
    assert ack["payload"] == b"\x00\x04\x00\x00"  # ACK of block 0
    assert reader.bytes == sum(int(batch.wire_len.sum()) for batch in rows.batches)


@needs_tshark
@pytest.mark.corpus
def test_tcp_handshake_flags_raw_sequence_and_padding() -> None:
    _, rows = read(corpus_file("zeek_smb2_kerberos.pcap"))
    syn = rows[1]
    assert (syn["src"], syn["sport"], syn["dst"], syn["dport"]) == (
        "10.10.34.184",
        56493,
        "172.19.23.143",
        445,
    )
    assert syn["tcp_flags"] == TCP_SYN
    assert syn["tcp_seq"] == 3_629_637_398  # the raw number, not tshark's relative 0
    assert rows[2]["tcp_flags"] == TCP_SYN | TCP_ACK
    assert rows[2]["tcp_seq"] == 1_580_874_867
    ack = rows[3]  # 60-byte frame: 54 bytes of headers and 6 of Ethernet padding
    assert ack["wire_len"] == 60
    assert ack["payload_len"] == ack["payload_cap"] == 0


@needs_tshark
@pytest.mark.corpus
def test_smb2_payload_bytes() -> None:
    _, rows = read(corpus_file("zeek_smb2_kerberos.pcap"))
    response = rows[6]
    assert response["tcp_flags"] == TCP_PSH | TCP_ACK
    assert response["sport"] == 445
    assert response["payload_len"] == response["payload_cap"] == 228
    assert response["payload"][:8] == b"\x00\x00\x00\xe0\xfeSMB"  # NBSS length, SMB2 header


@needs_tshark
@pytest.mark.corpus
def test_max_payload_caps_the_buffer_not_the_length() -> None:
    _, rows = read(corpus_file("zeek_smb2_kerberos.pcap"), max_payload=8)
    response = rows[6]
    assert response["payload_len"] == 228
    assert response["payload_cap"] == 8
    assert response["payload"] == b"\x00\x00\x00\xe0\xfeSMB"


@needs_tshark
@pytest.mark.corpus
def test_vlan_ipv6() -> None:
    _, rows = read(corpus_file("zeek_ldap_vlan_ipv6.pcapng"))
    syn = rows[1]
    assert (syn["l3"], syn["proto"]) == (L3_IPV6, 6)
    assert syn["src"] == "2a00:6020:ad0b:8381:c8c2:18f1:4b9d:7524"
    assert syn["dst"] == "2a00:6020:ad0b:8380::10"
    assert (syn["sport"], syn["dport"]) == (49695, 389)
    assert syn["src_hi"] == 0x2A006020AD0B8381 and syn["src_lo"] == 0xC8C218F14B9D7524
    assert syn["tcp_flags"] == TCP_SYN and syn["tcp_seq"] == 2_903_845_870
    assert syn["ts_ns"] == 1_725_966_551_231_155_000
    assert rows[2]["tcp_flags"] == TCP_SYN | TCP_ACK


@needs_tshark
@pytest.mark.corpus
def test_qinq_and_arp() -> None:
    _, rows = read(corpus_file("zeek_qinq.pcap"))
    bacnet = rows[1]  # two 802.1Q tags, then IPv4/UDP to the broadcast MAC
    assert (bacnet["src"], bacnet["dst"]) == ("172.19.51.37", "172.19.51.63")
    assert (bacnet["proto"], bacnet["sport"], bacnet["dport"]) == (17, 47808, 47808)
    assert bacnet["payload_len"] == 18
    assert bacnet["l2_multicast"]
    non_ip = [frame for frame in range(1, 6) if rows[frame]["l3"] == L3_NONE]
    assert len(non_ip) == 1  # the ARP frame
    arp = rows[non_ip[0]]
    assert arp["wire_len"] > 0
    assert (arp["proto"], arp["src_lo"], arp["sport"], arp["payload_cap"]) == (0, 0, 0, 0)


@needs_tshark
@pytest.mark.corpus
def test_linux_cooked_v2() -> None:
    reader, rows = read(corpus_file("zeek_linux_sll2.pcap"))
    assert reader.linktypes == ["linux-sll2"]
    ping = rows[1]
    assert (ping["l3"], ping["proto"], ping["src"], ping["dst"]) == (
        L3_IPV4,
        1,
        "192.0.2.1",
        "192.0.2.1",
    )
    assert ping["wire_len"] == 104
    ping6 = rows[3]
    assert (ping6["l3"], ping6["proto"], ping6["src"]) == (L3_IPV6, 58, "fe80::8c36:6ff:fe44:acaf")
    assert sum(rows[frame]["l3"] == L3_NONE for frame in range(1, 7)) == 2  # ARP
    assert not any(rows[frame]["l2_multicast"] for frame in range(1, 7))


@needs_tshark
@pytest.mark.corpus
def test_raw_wake_on_lan_frames_are_counted_but_not_ip() -> None:
    _, rows = read(corpus_file("ppp_wol.pcap"))
    magic = rows[1]  # EtherType 0x0842 to ff:ff:ff:ff:ff:ff
    assert magic["l3"] == L3_NONE and magic["wire_len"] == 120
    assert magic["l2_multicast"]
    over_udp = rows[2]
    assert (over_udp["dst"], over_udp["dport"]) == ("255.255.255.255", 9)
    assert over_udp["payload"][:6] == b"\xff" * 6


@needs_tshark
@pytest.mark.corpus
def test_truncated_capture_yields_packets_and_a_warning(capfd: pytest.CaptureFixture[str]) -> None:
    name = "otrf_winrm_psremoting_trailing_byte.cap"
    path = corpus_file(name)
    reader, rows = read(path)
    assert len(rows) == reader.packets == oracle_packets(name) == 153
    assert len(reader.warnings) == 1
    assert "cut short" in reader.warnings[0] and "153 packets" in reader.warnings[0]
    assert "\n" not in reader.warnings[0]
    gc.collect()
    assert capfd.readouterr().err == ""
    assert not tshark_processes_reading(path)


@needs_tshark
@pytest.mark.corpus
def test_damaged_capture_yields_packets_and_a_warning() -> None:
    name = "sv_tls_corrupt_record.pcap"
    reader, rows = read(corpus_file(name))
    assert len(rows) == oracle_packets(name) == 6
    assert len(reader.warnings) == 1 and "damaged" in reader.warnings[0]


@needs_tshark
@pytest.mark.corpus
def test_read_with_pyshark_hands_over_warnings() -> None:
    warnings: list[str] = []
    batches = read_with_pyshark(
        corpus_file("otrf_winrm_psremoting_trailing_byte.cap"), 1, warnings_out=warnings
    )
    assert sum(len(batch) for batch in batches) == 153
    assert len(warnings) == 1 and "cut short" in warnings[0]


@needs_tshark
@pytest.mark.corpus
def test_empty_capture_has_no_batches() -> None:
    reader, rows = read(corpus_file("zeek_empty.pcap"))
    assert len(rows) == 0 and rows.batches == []
    assert (reader.packets, reader.warnings, reader.linktypes) == (0, [], [])


@needs_tshark
@pytest.mark.corpus
def test_batches_are_bounded_and_self_contained() -> None:
    _, whole = read(corpus_file("sv_tftp_wrq.pcap"))
    reader, split = read(corpus_file("sv_tftp_wrq.pcap"), batch_size=7)
    assert [len(batch) for batch in split.batches] == [7] * 14 + [2]
    for batch in split.batches:
        assert batch.buffer.dtype == np.uint8
        ends = batch.payload_off.astype(np.int64) + batch.payload_cap
        assert int(ends.max()) <= len(batch.buffer)
        for name in COLUMNS:
            assert getattr(batch, name).dtype == getattr(whole.batches[0], name).dtype
    for frame in range(1, 101):
        assert split[frame] | {"payload_off": 0} == whole[frame] | {"payload_off": 0}
    assert reader.packets == 100


# --- built captures: what the corpus lacks ----------------------------------------------------


@pytest.fixture(scope="module")
def built_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import scapy.all as scapy  # type: ignore[import-untyped]

    Ether, IP, IPv6, UDP, TCP = scapy.Ether, scapy.IP, scapy.IPv6, scapy.UDP, scapy.TCP
    mac = {"dst": "00:11:22:33:44:55", "src": "00:66:77:88:99:aa"}
    frames = []
    # 1-3: a UDP datagram in three IPv4 fragments
    datagram = IP(src="10.0.0.1", dst="10.0.0.2", id=0x4242) / UDP(sport=5000, dport=69)
    frames += [Ether(**mac) / f for f in scapy.fragment(datagram / (b"A" * 3000), 1480)]
    # 4-6: a UDP datagram behind hop-by-hop options and a fragment header, in three fragments
    datagram6 = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / scapy.IPv6ExtHdrHopByHop()
        / scapy.IPv6ExtHdrFragment(id=0xABCDEF)
        / UDP(sport=6000, dport=7000)
        / (b"B" * 3000)
    )
    frames += [Ether(**mac) / f for f in scapy.fragment6(datagram6, 1500)]
    # 7: ICMP port unreachable quoting a UDP header
    frames.append(
        Ether(**mac)
        / IP(src="10.0.0.9", dst="10.0.0.1")
        / scapy.ICMP(type=3, code=3)
        / IP(src="10.0.0.1", dst="10.0.0.9")
        / UDP(sport=53, dport=999)
    )
    # 8: IP in IP carrying TCP; 9: GRE carrying UDP
    frames.append(
        Ether(**mac)
        / IP(src="1.1.1.1", dst="2.2.2.2")
        / IP(src="10.1.1.1", dst="10.2.2.2")
        / TCP(sport=80, dport=8080, flags="SA")
    )
    frames.append(
        Ether(**mac)
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / scapy.GRE()
        / IP(src="192.168.1.1", dst="192.168.1.2")
        / UDP(sport=1, dport=2)
    )
    # 10: two destination-options headers before UDP
    frames.append(
        Ether(dst="33:33:00:00:00:01", src=mac["src"])
        / IPv6(src="2001:db8::1", dst="ff02::1")
        / scapy.IPv6ExtHdrDestOpt()
        / scapy.IPv6ExtHdrDestOpt()
        / UDP(sport=5, dport=6)
        / b"zz"
    )
    # 11: TCP with every flag bit set and the largest sequence number; 12: padded segment
    frames.append(
        Ether(**mac) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags=0x1FF, seq=0xFFFFFFFF)
    )
    frames.append(
        Ether(**mac)
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=1, dport=2, flags="PA")
        / b"abc"
        / scapy.Padding(b"\x00" * 20)
    )
    # 13: TCP in a first IPv4 fragment (tshark gives no tcp.len there)
    frames.append(
        Ether(**mac)
        / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", id=9)
        / TCP(sport=1, dport=2, flags="PA")
        / b"tcpfrag"
    )
    # 14: a Mobility header (next header 59, none) as the last extension header
    frames.append(Ether(**mac) / IPv6(src="2001:db8::1", dst="2001:db8::2") / scapy.MIP6MH_BRR())
    for number, frame in enumerate(frames):
        frame.time = Decimal("1700000000.123456789") + number
    path = tmp_path_factory.mktemp("pyshark_engine") / "built.pcap"
    scapy.wrpcap(str(path), frames, nano=True)
    return path


@needs_tshark
def test_nanosecond_timestamps_are_exact(built_capture: Path) -> None:
    _, rows = read(built_capture)
    assert rows[1]["ts_ns"] == 1_700_000_000_123_456_789  # a float would give ...456_768
    assert rows[12]["ts_ns"] == 1_700_000_011_123_456_789


@needs_tshark
def test_ipv4_fragments_are_separate_frames(built_capture: Path) -> None:
    _, rows = read(built_capture)
    first, middle, last = rows[1], rows[2], rows[3]
    assert (first["frag"], first["sport"], first["dport"]) == (FRAG_FIRST, 5000, 69)
    assert first["payload_len"] == 1480 - 8  # this fragment's share of the datagram
    assert first["payload"][:4] == b"AAAA"
    for later in (middle, last):  # no transport header: no ports, no payload (as decode.py)
        assert later["frag"] == FRAG_LATER
        assert (later["sport"], later["dport"], later["proto"]) == (0, 0, 17)
        assert (later["payload_len"], later["payload_cap"]) == (0, 0)
    assert first["frag_id"] == middle["frag_id"] == last["frag_id"] == 0x4242
    assert {row["src"] for row in (first, middle, last)} == {"10.0.0.1"}


@needs_tshark
def test_ipv6_extension_headers_and_fragments(built_capture: Path) -> None:
    _, rows = read(built_capture)
    first, middle, last = rows[4], rows[5], rows[6]
    assert first["l3"] == L3_IPV6 and first["proto"] == 17  # not 0 (hop-by-hop) or 44
    assert (first["frag"], first["sport"], first["dport"]) == (FRAG_FIRST, 6000, 7000)
    assert (middle["frag"], last["frag"]) == (FRAG_LATER, FRAG_LATER)
    assert (middle["proto"], middle["sport"], middle["dport"]) == (17, 0, 0)
    assert first["frag_id"] == middle["frag_id"] == last["frag_id"] == 0xABCDEF
    assert first["src"] == "2001:db8::1" and first["dst"] == "2001:db8::2"
    two_options = rows[10]
    assert (two_options["proto"], two_options["sport"], two_options["dport"]) == (17, 5, 6)
    assert two_options["payload"] == b"zz" and two_options["frag"] == FRAG_NONE
    assert two_options["l2_multicast"]


@needs_tshark
def test_tcp_in_a_first_fragment_and_a_mobility_header(built_capture: Path) -> None:
    _, rows = read(built_capture)
    tcp = rows[13]
    assert (tcp["frag"], tcp["frag_id"], tcp["sport"], tcp["dport"]) == (FRAG_FIRST, 9, 1, 2)
    assert tcp["payload_len"] == 7 and tcp["payload"] == b"tcpfrag"
    assert rows[14]["proto"] == 59  # walked over the Mobility header (RFC 6275 6.1.1)


@needs_tshark
def test_icmp_error_keeps_the_outer_header(built_capture: Path) -> None:
    _, rows = read(built_capture)
    error = rows[7]
    assert (error["src"], error["dst"], error["proto"]) == ("10.0.0.9", "10.0.0.1", 1)
    assert (error["sport"], error["dport"], error["payload_cap"]) == (0, 0, 0)


@needs_tshark
def test_tunnels_keep_the_outer_header(built_capture: Path) -> None:
    _, rows = read(built_capture)
    ipip, gre = rows[8], rows[9]
    assert (ipip["src"], ipip["dst"], ipip["proto"], ipip["sport"]) == (
        "1.1.1.1",
        "2.2.2.2",
        4,
        0,
    )
    assert (gre["src"], gre["proto"], gre["sport"], gre["dport"]) == ("10.0.0.1", 47, 0, 0)


@needs_tshark
def test_flags_sequence_and_padding(built_capture: Path) -> None:
    _, rows = read(built_capture)
    all_flags = rows[11]
    assert all_flags["tcp_flags"] == 0xFF  # the NS/AE bit (0x100) is not in the low byte
    assert all_flags["tcp_seq"] == 0xFFFFFFFF
    padded = rows[12]
    assert padded["payload_len"] == padded["payload_cap"] == 3
    assert padded["payload"] == b"abc"
    assert padded["wire_len"] == 14 + 20 + 20 + 3 + 20


@needs_tshark
def test_stopping_early_leaves_no_tshark_and_no_noise(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import scapy.all as scapy  # type: ignore[import-untyped]

    frame = (
        scapy.Ether(dst="00:11:22:33:44:55", src="00:66:77:88:99:aa")
        / scapy.IP(src="10.0.0.1", dst="10.0.0.2")
        / scapy.UDP(sport=1, dport=2)
        / (b"x" * 1000)
    )
    path = tmp_path / "many.pcap"
    scapy.wrpcap(str(path), [frame] * 5000)
    reader = PysharkReader(path, 0, batch_size=100)
    batches = reader.batches()
    assert len(next(batches)) == 100
    batches.close()
    abandoned = PysharkReader(path, 0, batch_size=100).batches()
    assert len(next(abandoned)) == 100
    del abandoned
    gc.collect()
    assert not tshark_processes_reading(path)
    assert reader.warnings == []
    assert capfd.readouterr().err == ""


# --- the capture-set adapter flows.build_flow_table calls ---------------------------------------


@needs_tshark
@pytest.mark.corpus
def test_iter_pyshark_batches_fills_capture_infos() -> None:
    paths = [
        corpus_file("sv_tftp_wrq.pcap"),
        corpus_file("otrf_winrm_psremoting_trailing_byte.cap"),
    ]
    config: Any = SimpleNamespace(payload_bytes=16, sha256=True)
    infos: list[Any] = []
    progressed: list[int] = []
    batches = list(iter_pyshark_batches(paths, config, progressed.append, infos))
    assert [batch.file_index for batch in batches] == [0, 1]
    assert int(batches[0].payload_cap.max()) <= 16
    tftp, winrm = infos
    assert (tftp.format, tftp.compression, tftp.packets, tftp.ip_packets) == (
        "pcap",
        None,
        100,
        100,
    )
    assert tftp.linktypes == ["ethernet"] and tftp.warnings == []
    assert tftp.first_seen_ns == 1_367_053_679_452_740_000
    assert tftp.last_seen_ns is not None and tftp.last_seen_ns >= tftp.first_seen_ns
    assert tftp.bytes == int(batches[0].wire_len.sum())
    assert tftp.sha256 == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    assert winrm.packets == 153 and len(winrm.warnings) == 1
    assert sum(progressed) == sum(path.stat().st_size for path in paths)


@needs_tshark
@pytest.mark.corpus
def test_empty_pcap_still_names_its_link_type() -> None:
    config: Any = SimpleNamespace(payload_bytes=16, sha256=False)
    infos: list[Any] = []
    assert list(iter_pyshark_batches([corpus_file("zeek_empty.pcap")], config, None, infos)) == []
    assert infos[0].packets == 0 and infos[0].linktypes == ["ethernet"]
