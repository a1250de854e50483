"""The stream engine: every byte of a claimed flow, in order, once; gaps said; bounds kept.

A recording module stands in for the dissectors here (registered for the test only): it keeps
what the engine hands it, so the tests see exactly the delivery. On real captures, the bytes
delivered per side agree with tshark's "Follow TCP Stream" of the same stream.
"""

from __future__ import annotations

import os
import subprocess
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import flowaudit.stream as stream
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.stream import base, engine
from tests import capbuild as cb
from tests.conftest import corpus_dir
from tests.stream.common import corpus_file, lab_capture, need_tshark

A_ADDR, B_ADDR = "10.0.0.1", "10.0.0.2"


class Recorder(base.Dissector):
    PROTOCOL = "recorder"

    def __init__(self, record: base.Record) -> None:
        super().__init__(record)
        self.got: list[list[Any]] = [[], []]

    def data(self, side: int, data: bytes | memoryview, at: base.At) -> None:
        self.got[side].append(bytes(data))

    def gap(self, side: int, length: int, at: base.At) -> None:
        self.got[side].append(length)

    def datagram(self, side: int, data: bytes, at: base.At) -> None:
        self.got[side].append(("datagram", data, at.frame))

    def facts(self) -> dict[str, Any]:
        return {"got": self.got}


def _module(claims: Any = None) -> types.ModuleType:
    module = types.ModuleType("recorder")
    module.PROTOCOL = "recorder"  # type: ignore[attr-defined]
    module.TRANSPORTS = ("tcp", "udp")  # type: ignore[attr-defined]
    module.claims = claims or (lambda ports, first: True)  # type: ignore[attr-defined]
    module.Conversation = Recorder  # type: ignore[attr-defined]
    return module


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = _module()
    monkeypatch.setattr(stream, "_LOADED", {"tcp": [module], "udp": [module]})
    yield


def _tcp(
    seq: int, payload: bytes = b"", flags: str = "PA", *, forward: bool = True, sport: int = 40000
) -> bytes:
    src, dst = (A_ADDR, B_ADDR) if forward else (B_ADDR, A_ADDR)
    ports = (sport, 445) if forward else (445, sport)
    return cb.ip4_tcp_frame(src, dst, ports[0], ports[1], flags, payload, seq=seq)


def _run(tmp_path: Path, frames: Sequence[bytes | cb.Rec]) -> dict[int, dict[str, Any]]:
    records = [
        frame if isinstance(frame, cb.Rec) else cb.Rec(1_700_000_000_000_000_000 + k * 1000, frame)
        for k, frame in enumerate(frames)
    ]
    path = cb.write(tmp_path / "t.pcap", cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET))
    table = build_flow_table([path], FlowConfig(conversations=True))
    return table.conversations


def _got(conversations: dict[int, dict[str, Any]], row: int = 0) -> list[list[Any]]:
    return conversations[row]["conversation"]["recorder"]["got"]


def test_in_order_bytes_after_a_syn_are_delivered_once_each(tmp_path: Path, recorder: None) -> None:
    frames = [
        _tcp(999, flags="S"),
        _tcp(4999, flags="SA", forward=False),
        _tcp(1000, b"hello "),
        _tcp(1006, b"world"),
        _tcp(5000, b"answer", forward=False),
    ]
    got = _got(_run(tmp_path, frames))
    assert got == [[b"hello ", b"world"], [b"answer"]]


def test_segments_out_of_order_are_delivered_in_order(tmp_path: Path, recorder: None) -> None:
    frames = [_tcp(999, flags="S"), _tcp(1006, b"world"), _tcp(1000, b"hello ")]
    facts = _run(tmp_path, frames)[0]
    assert facts["conversation"]["recorder"]["got"][0] == [b"hello ", b"world"]
    assert facts["conversation"]["c2s"]["out_of_order"] == 1
    assert "truncated" not in facts


def test_retransmissions_and_overlaps_give_only_new_bytes(tmp_path: Path, recorder: None) -> None:
    frames = [
        _tcp(999, flags="S"),
        _tcp(1000, b"abcd"),
        _tcp(1000, b"abcd"),  # retransmission
        _tcp(1002, b"cdEF"),  # overlaps "cd", brings "EF"
    ]
    facts = _run(tmp_path, frames)[0]
    assert facts["conversation"]["recorder"]["got"][0] == [b"abcd", b"EF"]
    c2s = facts["conversation"]["c2s"]
    assert c2s["retransmitted_bytes"] == 4
    assert c2s["overlapping_bytes"] == 2
    assert c2s["bytes"] == 6


def test_a_hole_never_filled_is_a_gap_at_the_end(tmp_path: Path, recorder: None) -> None:
    frames = [_tcp(999, flags="S"), _tcp(1000, b"abc"), _tcp(1010, b"xyz")]
    facts = _run(tmp_path, frames)[0]
    assert facts["conversation"]["recorder"]["got"][0] == [b"abc", 7, b"xyz"]
    assert facts["conversation"]["c2s"]["missing_bytes"] == 7


def test_a_segment_cut_by_the_snap_length_is_delivered_then_a_gap(
    tmp_path: Path, recorder: None
) -> None:
    whole = _tcp(1000, b"0123456789")
    frames: list[bytes | cb.Rec] = [
        _tcp(999, flags="S"),
        cb.Rec(1_700_000_000_000_000_000, whole, caplen=len(whole) - 4),
        _tcp(1010, b"next"),
    ]
    got = _got(_run(tmp_path, frames))
    assert got[0] == [b"012345", 4, b"next"]


def test_sequence_numbers_wrap_around(tmp_path: Path, recorder: None) -> None:
    start = 2**32 - 3
    frames = [_tcp(start - 1, flags="S"), _tcp(start, b"abcdef"), _tcp(3, b"ghi")]
    assert _got(_run(tmp_path, frames))[0] == [b"abcdef", b"ghi"]


def test_without_a_syn_the_first_segment_starts_the_side(tmp_path: Path, recorder: None) -> None:
    frames = [_tcp(7000, b"mid"), _tcp(7003, b"stream")]
    assert _got(_run(tmp_path, frames))[0] == [b"mid", b"stream"]


def test_held_segments_are_bounded(
    tmp_path: Path, recorder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MAX_HELD_SEGMENTS", 2)
    frames = [_tcp(999, flags="S"), _tcp(1000, b"a")]
    frames += [_tcp(1002 + k, bytes([0x41 + k])) for k in range(4)]  # byte 1001 never comes
    facts = _run(tmp_path, frames)[0]
    # the third held segment gives the hole up at once, not at the end of the capture
    assert facts["conversation"]["recorder"]["got"][0] == [b"a", 1, b"A", b"B", b"C", b"D"]


def test_the_runs_bound_gives_up_the_oldest_holes_first(
    tmp_path: Path, recorder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MAX_HELD_TOTAL", 10)
    frames = [
        _tcp(999, flags="S"),
        _tcp(1000, b"a"),
        _tcp(1002, b"12345678"),  # flow 1 ends holding 8 bytes after a hole it never fills
        _tcp(2999, flags="S", sport=40001),
        _tcp(3000, b"x", sport=40001),
        _tcp(3002, b"zzz", sport=40001),  # past the bound: flow 1's hole goes, not this one
        _tcp(3001, b"y", sport=40001),
    ]
    conversations = _run(tmp_path, frames)
    assert conversations[0]["conversation"]["recorder"]["got"][0] == [b"a", 1, b"12345678"]
    assert conversations[1]["conversation"]["recorder"]["got"][0] == [b"x", b"y", b"zzz"]
    assert "missing_bytes" not in conversations[1]["conversation"]["c2s"]


def test_a_keep_alive_before_the_first_segment_does_not_make_a_gap(
    tmp_path: Path, recorder: None
) -> None:
    # no SYN captured; the side's first packet is a keep-alive one byte before its data
    frames = [_tcp(6999, b""), _tcp(6999, b"\x00", flags="A"), _tcp(7000, b"data")]
    facts = _run(tmp_path, frames)[0]
    assert facts["conversation"]["recorder"]["got"][0] == [b"\x00", b"data"]


def test_a_syn_ack_seen_only_again_later_costs_no_byte(tmp_path: Path, recorder: None) -> None:
    frames = [
        _tcp(999, flags="S"),
        _tcp(1000, b"ask"),
        _tcp(5000, b"", flags="A", forward=False),  # the server's first packet: an ACK
        _tcp(4999, flags="SA", forward=False),  # its SYN+ACK again
        _tcp(5000, b"resp", forward=False),
    ]
    assert _got(_run(tmp_path, frames))[1] == [b"resp"]


def test_bytes_before_the_first_segment_read_are_said_not_read(
    tmp_path: Path, recorder: None
) -> None:
    frames = [_tcp(7004, b"bbbb"), _tcp(7000, b"aaaa")]  # no SYN: reordered at the start
    facts = _run(tmp_path, frames)[0]
    assert facts["conversation"]["recorder"]["got"][0] == [b"bbbb"]
    assert facts["conversation"]["c2s"]["before_start_bytes"] == 4
    assert "retransmitted_bytes" not in facts["conversation"]["c2s"]
    assert facts["truncated"] == ["bytes sent before the first segment read (start not captured)"]


def test_ip_fragments_of_a_claimed_flow_are_said_not_read(tmp_path: Path, recorder: None) -> None:
    first = cb.ip4_udp_frame(A_ADDR, B_ADDR, 68, 67, b"one")
    big = cb.udp(68, 67, b"x" * 64)
    pieces = cb.ipv4_fragments(A_ADDR, B_ADDR, cb.PROTO_UDP, big, 32, ident=7)
    frames = [first, *(cb.ether(cb.MAC_A, cb.MAC_B, cb.ETH_IPV4, piece) for piece in pieces)]
    facts = _run(tmp_path, frames)[0]
    assert [item[1] for item in facts["conversation"]["recorder"]["got"][0]] == [b"one"]
    assert facts["truncated"] == ["IP-fragmented packets are not reassembled (not read)"]


def test_every_udp_datagram_is_delivered(tmp_path: Path, recorder: None) -> None:
    frames = [
        cb.ip4_udp_frame(A_ADDR, B_ADDR, 68, 67, b"one"),
        cb.ip4_udp_frame(B_ADDR, A_ADDR, 67, 68, b"two"),
        cb.ip4_udp_frame(A_ADDR, B_ADDR, 68, 67, b"three"),
    ]
    got = _got(_run(tmp_path, frames))
    assert [item[1] for item in got[0]] == [b"one", b"three"]
    assert [(item[1], item[2]) for item in got[1]] == [(b"two", 2)]


def test_flows_nobody_claims_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(lambda ports, first: first.startswith(b"mine"))
    monkeypatch.setattr(stream, "_LOADED", {"tcp": [module], "udp": [module]})
    frames = [
        _tcp(1000, b"mine, all of it"),
        _tcp(1000, b"not mine", sport=40001),
        _tcp(1008, b" and more", sport=40001),
    ]
    conversations = _run(tmp_path, frames)
    assert list(conversations) == [0]


def test_the_number_of_conversations_read_is_bounded(
    tmp_path: Path, recorder: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MAX_CONVERSATIONS", 1)
    frames = [_tcp(1000, b"first"), _tcp(1000, b"second", sport=40001)]
    conversations = _run(tmp_path, frames)
    assert conversations[0]["conversation"]["recorder"]["got"][0] == [b"first"]
    assert "more than 1 conversations" in conversations[1]["truncated"][0]


def test_a_reader_that_fails_stops_its_flow_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Failing(Recorder):
        def data(self, side: int, data: bytes | memoryview, at: base.At) -> None:
            raise ValueError("bug")

    module = _module()
    module.Conversation = Failing  # type: ignore[attr-defined]
    monkeypatch.setattr(stream, "_LOADED", {"tcp": [module], "udp": []})
    conversations = _run(tmp_path, [_tcp(1000, b"x")])
    assert conversations[0]["truncated"] == ["recorder: reader stopped at frame 1 (ValueError)"]


# ---- real captures: the bytes delivered are tshark's "Follow TCP Stream"

FOLLOWED = [
    "sv_smb2_async_read_big.pcap",
    "otrf_psexec_dcerpc_tcp_epm.cap",
    "zeek_smb2_kerberos.pcap",
    "ndpi_windowsupdate_http.pcap",
    "arkime_smb_windows10.pcap",
    "lab:ad.pcap",
]
STREAMS_PER_CAPTURE = 6


def _follow(path: Path, number: int) -> tuple[tuple[str, int], tuple[str, int], bytes, bytes]:
    """(node 0, node 1, bytes from node 0, bytes from node 1) of tshark's follow of a stream;
    node 0 sent the stream's first packet."""
    text = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-q", "-z", f"follow,tcp,raw,{number}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    nodes: list[tuple[str, int]] = []
    sent: list[list[bytes]] = [[], []]
    for line in text.splitlines():
        if line.startswith(("Node 0:", "Node 1:")):
            host, _, port = line.split(None, 2)[2].rpartition(":")
            nodes.append((host.strip("[]"), int(port)))
        elif len(nodes) == 2 and not line.startswith("="):
            sent[1 if line.startswith("\t") else 0].append(bytes.fromhex(line.strip()))
    return nodes[0], nodes[1], b"".join(sent[0]), b"".join(sent[1])


def _stream_numbers(path: Path) -> list[int]:
    """The largest TCP streams of a capture (by frames with payload), tshark's numbers."""
    text = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "tcp.stream", "-Y", "tcp.len>0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: dict[int, int] = {}
    for line in text.split():
        counts[int(line)] = counts.get(int(line), 0) + 1
    return sorted(counts, key=lambda n: -counts[n])[:STREAMS_PER_CAPTURE]


@pytest.mark.parametrize("name", FOLLOWED)
def test_delivered_bytes_equal_tshark_follow(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    need_tshark()
    path = lab_capture(name[4:]) if name.startswith("lab:") else corpus_file(name)
    module = _module()
    monkeypatch.setattr(stream, "_LOADED", {"tcp": [module], "udp": []})
    by_ends: dict[frozenset[tuple[str, int]], dict[str, Any]] = {}
    for flow in engine.conversations([str(path)]):
        if flow["proto"] == "tcp":
            client = (flow["client"], flow["client_port"])
            by_ends[frozenset({client, (flow["server"], flow["server_port"])})] = flow
    numbers = _stream_numbers(path)
    assert numbers
    for number in numbers:
        node0, node1, sent0, sent1 = _follow(path, number)
        # (no port reuse within these captures: one flow per pair of ends)
        flow = by_ends.get(frozenset({node0, node1}))
        assert flow is not None, f"{name}: tshark stream {number} not read"
        # side A (0) of the recorder sent the flow's first packet, as tshark's node 0 did;
        # the bytes, not only their counts, are compared (order and duplicates show)
        got = flow["conversation"]["recorder"]["got"]
        delivered = [
            b"".join(part for part in got[side] if isinstance(part, bytes)) for side in (0, 1)
        ]
        assert delivered[0] == sent0, f"{name}: stream {number}, node 0"
        assert delivered[1] == sent1, f"{name}: stream {number}, node 1"


def test_the_corpus_is_read_without_a_reader_stopping() -> None:
    """Every capture of the corpus through the real stream modules: no reader fails."""
    folder = corpus_dir()
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"corpus {folder} missing under CI")
        pytest.skip("corpus not here")
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".pcap", ".cap", ".pcapng"):
            continue
        for flow in engine.conversations([str(path)]):
            for why in flow.get("truncated") or []:
                assert "reader stopped" not in why, f"{path.name} flow {flow['id']}: {why}"


class Noting(Recorder):
    def data(self, side: int, data: bytes | memoryview, at: base.At) -> None:
        self.record.op(at, side, "noting", "SEGMENT")


def test_operations_in_a_later_file_of_the_set_name_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module()
    module.Conversation = Noting  # type: ignore[attr-defined]
    monkeypatch.setattr(stream, "_LOADED", {"tcp": [module], "udp": []})
    first = cb.write(
        tmp_path / "a.pcap",
        cb.pcap_bytes(
            [cb.Rec(1_700_000_000_000_000_000, _tcp(1000, b"one"))], cb.LINKTYPE_ETHERNET
        ),
    )
    second = cb.write(
        tmp_path / "b.pcap",
        cb.pcap_bytes(
            [cb.Rec(1_700_000_001_000_000_000, _tcp(1003, b"two"))], cb.LINKTYPE_ETHERNET
        ),
    )
    [flow] = engine.conversations([str(first), str(second)])
    assert [(entry["frame"], entry.get("file")) for entry in flow["operations"]] == [
        (1, None),
        (1, str(second)),
    ]
