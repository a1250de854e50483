"""Hostile or bulky bytes cost the stream readers and the engine work in proportion to what
there is to read: frames that say nothing are passed over in one search, a side read no more
and the body segments a reader skips are counted without a Python turn per segment, and the
cyclic garbage collector does not walk the conversations while a batch is fed.

Work is counted in lines of flowaudit executed (``tests/dissect/work.py``), never timed.
"""

from __future__ import annotations

import gc
import random
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import flowaudit.stream as stream
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.stream import base, engine
from flowaudit.stream import http as http_stream
from flowaudit.stream import smb as smb_stream
from tests import capbuild as cb
from tests.dissect.work import lines_run
from tests.protobytes import smb as smbbytes

A_ADDR, B_ADDR = "10.0.0.1", "10.0.0.2"
SEGMENT = 1000


def _tcp(seq: int, payload: bytes, *, forward: bool = True, flags: str = "PA") -> bytes:
    src, dst = (A_ADDR, B_ADDR) if forward else (B_ADDR, A_ADDR)
    ports = (40000, 445) if forward else (445, 40000)
    return cb.ip4_tcp_frame(src, dst, ports[0], ports[1], flags, payload, seq=seq)


def _capture(tmp_path: Path, frames: Sequence[bytes]) -> Path:
    records = [cb.Rec(1_700_000_000_000_000_000 + k * 1000, f) for k, f in enumerate(frames)]
    return cb.write(tmp_path / "t.pcap", cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET))


def _conversations(path: Path) -> dict[int, dict[str, Any]]:
    return build_flow_table([path], FlowConfig(conversations=True)).conversations


class _Sides:
    """Segments of both sides with their sequence numbers, after a handshake."""

    def __init__(self) -> None:
        self.frames = [_tcp(999, b"", flags="S"), _tcp(4999, b"", forward=False, flags="SA")]
        self.next = [1000, 5000]

    def send(self, side: int, payload: bytes) -> None:
        self.frames.append(_tcp(self.next[side], payload, forward=side == 0))
        self.next[side] += len(payload)


# --- SMB: frames that say nothing, frames too short to be SMB ------------------------------------


def _feed(conversation: base.Dissector, side: int, data: bytes) -> None:
    for start in range(0, len(data), SEGMENT):
        conversation.data(side, data[start : start + SEGMENT], base.At(start, start))


def test_smb_passes_over_runs_of_keep_alives_and_empty_session_messages() -> None:
    negotiate = smbbytes.negotiate_request([smbbytes.DIALECT_311])
    empty = (b"\x85\x00\x00\x00" + b"\x00\x00\x00\x00") * 8192  # 64 KiB that say nothing

    def read(filler: bytes) -> smb_stream.Conversation:
        conversation = smb_stream.Conversation(base.Record())
        _feed(conversation, 0, negotiate + filler + negotiate)
        return conversation

    # one frame read at a time would be 8,192 frames of a dozen lines and more
    assert lines_run(read, empty) < lines_run(read, b"") + len(empty) // 8
    assert [op["operation"] for op in read(empty).record.operations] == ["NEGOTIATE"] * 2


def test_an_smb_session_message_too_short_for_a_protocol_id_ends_the_side() -> None:
    conversation = smb_stream.Conversation(base.Record())
    negotiate = smbbytes.negotiate_request([smbbytes.DIALECT_311])
    _feed(conversation, 0, negotiate + b"\x00\x00\x00\x02ab" * 1000 + negotiate)
    assert "smb: not smb any more" in conversation.record.truncated
    assert len(conversation.record.operations) == 1


# --- HTTP: binary where header fields should be --------------------------------------------------


def test_http_stops_at_a_nul_in_the_header_section() -> None:
    """Random bytes after a request line: RFC 9110 5.5 makes a NUL in a field invalid, so the
    side ends there, not 64 KiB later at the header section's bound."""
    request = b"CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp\r\n"
    noise = random.Random(5).randbytes(64 * 1024).replace(b"\n\n", b"\n.")
    conversation = http_stream.Conversation(base.Record())
    lines = lines_run(_feed, conversation, 0, request + noise)
    assert conversation.record.truncated == ["http: not HTTP any more"]
    assert lines < 2000


def test_http_reads_a_binary_body_after_its_header_section() -> None:
    body = bytes(range(256)) * 4
    request = b"POST /x HTTP/1.1\r\nHost: mp\r\nContent-Length: 1024\r\n\r\n" + body
    conversation = http_stream.Conversation(base.Record())
    _feed(conversation, 0, request * 3)
    assert conversation.record.truncated == []
    assert [op["operation"] for op in conversation.record.operations] == ["POST"] * 3


# --- the engine: sides read no more, bodies skipped ----------------------------------------------


class _Skipper(base.Dissector):
    """Reads a 4-byte length, skips that many bytes, reads the next length, ...; raises on a
    length of 0xdeadbeef (a reader's fault)."""

    PROTOCOL = "skipper"

    def __init__(self, record: base.Record) -> None:
        super().__init__(record)
        self.calls = [0, 0]
        self.lengths: list[list[int]] = [[], []]
        self.messages: list[dict[str, int]] = []  # objects the collector tracks, kept

    def data(self, side: int, data: bytes | memoryview, at: base.At) -> None:
        self.calls[side] += 1
        length = int.from_bytes(bytes(data[:4]), "big")
        if length == 0xDEADBEEF:
            raise ValueError("a reader's fault")
        self.lengths[side].append(length)
        self.messages.append({"side": side, "length": length})
        self.skip[side] = length - (len(data) - 4)

    def facts(self) -> dict[str, Any]:
        return {"calls": self.calls, "lengths": self.lengths}


@pytest.fixture
def skipper(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("skipper")
    module.PROTOCOL = "skipper"  # type: ignore[attr-defined]
    module.TRANSPORTS = ("tcp",)  # type: ignore[attr-defined]
    module.claims = lambda ports, first: True  # type: ignore[attr-defined]
    module.Conversation = _Skipper  # type: ignore[attr-defined]
    monkeypatch.setattr(stream, "_LOADED", {"tcp": [module], "udp": []})
    yield


def _bodies(sides: _Sides, side: int, segments: int) -> int:
    """One message whose body spans ``segments`` segments; its bytes."""
    body = segments * SEGMENT - 4
    sides.send(side, body.to_bytes(4, "big") + bytes(SEGMENT - 4))
    for _ in range(segments - 1):
        sides.send(side, bytes(SEGMENT))
    return segments * SEGMENT


def _stream_lines(path: Path) -> int:
    return lines_run(_conversations, path, within="stream")


def test_segments_inside_a_skipped_body_cost_no_python_turn_each(
    tmp_path: Path, skipper: None
) -> None:
    costs = []
    for segments in (10, 210):
        sides = _Sides()
        sides.send(0, b"\x00\x00\x00\x00")
        total = _bodies(sides, 1, segments)
        sides.send(1, b"\x00\x00\x00\x00")  # the next message, read
        path = _capture(tmp_path, sides.frames)
        found = _conversations(path)[0]
        assert found["conversation"]["skipper"]["lengths"] == [[0], [total - 4, 0]]
        assert found["conversation"]["s2c"]["bytes"] == total + 4
        costs.append(_stream_lines(path))
    assert costs[1] - costs[0] < 200 * 4  # 200 more segments, a few lines each at most


def test_a_side_read_no_more_is_passed_over(tmp_path: Path) -> None:
    sides = _Sides()
    sides.send(0, smbbytes.negotiate_request([smbbytes.DIALECT_311]))
    sides.send(1, smbbytes.negotiate_response(smbbytes.DIALECT_311))
    for _ in range(200):  # not SMB: the reader stops the client side at the first
        sides.send(0, b"\x42" * SEGMENT)
    path = _capture(tmp_path, sides.frames)
    calls = [0]
    original = smb_stream.Conversation.data

    def counted(self: Any, side: int, data: Any, at: base.At) -> None:
        calls[0] += 1
        original(self, side, data, at)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(smb_stream.Conversation, "data", counted)
        found = _conversations(path)[0]
    assert "smb: not smb any more" in found["truncated"]
    assert found["conversation"]["c2s"]["bytes"] == sides.next[0] - 1000
    assert calls[0] <= 4


def test_segments_passed_over_after_a_reader_fails_are_not_counted(
    tmp_path: Path, skipper: None
) -> None:
    sides = _Sides()
    sides.send(1, (20 * SEGMENT).to_bytes(4, "big") + bytes(SEGMENT - 4))  # a long body
    for _ in range(5):
        sides.send(1, bytes(SEGMENT))
    sides.send(0, (0xDEADBEEF).to_bytes(4, "big"))  # the reader raises here
    for _ in range(5):
        sides.send(1, bytes(SEGMENT))
    found = _conversations(_capture(tmp_path, sides.frames))[0]
    assert any("reader stopped" in why for why in found["truncated"])
    assert found["conversation"]["s2c"]["bytes"] == 6 * SEGMENT  # as one by one


def test_no_cyclic_collection_while_a_batch_is_fed(tmp_path: Path, skipper: None) -> None:
    sides = _Sides()
    for _ in range(3000):  # an object kept per message: thousands of them
        sides.send(0, b"\x00\x00\x00\x00")
        sides.send(1, b"\x00\x00\x00\x00")
    path = _capture(tmp_path, sides.frames)
    feeding = [False]
    collections = [0]

    def on_collect(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and feeding[0]:
            collections[0] += 1

    original = engine.StreamEngine._feed

    def feed(self: Any, *args: Any) -> None:
        feeding[0] = True
        try:
            original(self, *args)
        finally:
            feeding[0] = False

    gc.callbacks.append(on_collect)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(engine.StreamEngine, "_feed", feed)
            found = _conversations(path)[0]
    finally:
        gc.callbacks.remove(on_collect)
    assert found["conversation"]["skipper"]["calls"] == [3000, 3000]
    assert collections[0] == 0
    assert gc.isenabled()
