"""The bounded record of a conversation, and Framed's reading of headers with bodies skipped."""

from __future__ import annotations

import struct

from flowaudit.stream import base

AT = base.At(1, 0)


def test_operations_past_the_bound_are_counted_by_name() -> None:
    record = base.Record()
    for number in range(base.MAX_OPERATIONS + 300):
        record.op(AT, 0, "dcerpc", "NetrServerReqChallenge" if number % 2 else "Other")
    assert len(record.operations) == base.MAX_OPERATIONS
    assert record.operations_dropped == 300
    assert record.dropped_by == {"dcerpc NetrServerReqChallenge": 150, "dcerpc Other": 150}


def test_the_runs_budget_is_shared_and_said() -> None:
    budget = [3]
    first, second = base.Record(budget=budget), base.Record(budget=budget)
    for _ in range(2):
        first.op(AT, 0, "smb2", "READ")
        second.op(AT, 0, "smb2", "READ")
    assert len(first.operations) + len(second.operations) == 3
    assert budget == [0]
    assert second.truncated == ["operations of the whole run past their bound"]


class Lengths(base.Framed):
    """4-byte big-endian length prefix; keeps 8 bytes of each PDU."""

    PROTOCOL = "lengths"
    HEADER = 4

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bytes, int]] = []

    def pdu_length(self, side: int, head: bytes) -> int | None:
        return 4 + struct.unpack(">I", head[:4])[0]

    def keep(self, side: int, head: bytes, total: int) -> int:
        return 8

    def pdu(self, side: int, data: bytes, total: int, at: base.At) -> None:
        self.seen.append((side, data, total))


def _pdu(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_bodies_past_the_kept_bytes_are_skipped_not_held() -> None:
    reader = Lengths()
    big = _pdu(b"ABCD" + b"x" * 1_000_000)
    stream = big + _pdu(b"EFGH")
    for start in range(0, len(stream), 1448):
        reader.data(0, stream[start : start + 1448], AT)
        assert len(reader._buf[0]) < 8
    assert reader.seen == [(0, big[:8], 1_000_008), (0, _pdu(b"EFGH"), 8)]


def test_a_gap_inside_a_skipped_body_costs_nothing() -> None:
    reader = Lengths()
    first = _pdu(b"ABCD" + b"x" * 100)
    reader.data(0, first[:20], AT)
    reader.gap(0, 50, AT)  # inside the body's skipped part
    reader.data(0, first[70:] + _pdu(b"EFGH"), AT)
    assert [data for _, data, _ in reader.seen] == [first[:8], _pdu(b"EFGH")]
    assert reader.record.truncated == []


def test_a_gap_where_a_header_is_due_stops_the_side_and_says_so() -> None:
    reader = Lengths()
    reader.data(0, _pdu(b"ABCD"), AT)
    reader.gap(0, 5, AT)
    reader.data(0, _pdu(b"EFGH"), AT)
    assert len(reader.seen) == 1
    assert reader.record.truncated == ["lengths: 5 bytes missing, rest of the side unread"]
