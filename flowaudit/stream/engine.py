"""Stream delivery: the flows a stream module claims get every later byte, in order.

Called by the flow assembler after each batch, with the row and side the flow kernel counted
each packet in. Per batch, in numpy: packets with a transport payload (not IP fragments) are
picked; a flow whose first payload is new is offered to ``flowaudit.stream.claim`` once; the
packets of claimed flows are then fed one by one, in capture order, to their dissector. Flows
nobody claims cost the picking and nothing else. Segments inside bytes a dissector skips (a
body it does not read, ``Dissector.skip``; a side it reads no more, ``base.SKIP_ALL``) are only
counted; once the following segments of a side in the batch are in order and within the skip,
they are counted together and not visited one by one (``_Runs``).

TCP is reassembled per side from the kernel's first sequence number of that side (plus one
after a SYN): a segment at the expected sequence number is delivered at once, and the segments
held out of order after it; a retransmission is counted and dropped; a segment overlapping
bytes already delivered gives only its new bytes (first copy wins, as most receivers do); a
segment the capture cut short (snap length) is delivered as far as captured, then the rest is
reported as a gap. Segments past a hole are held until the hole is filled, up to
``MAX_HELD_SEGMENTS``/``MAX_HELD_BYTES`` per side and ``MAX_HELD_TOTAL`` for the run: then the
hole is given up as a gap (the dissector resynchronises or stops, and says so). UDP datagrams
are delivered whole, each one.

Bounds: at most ``MAX_CONVERSATIONS`` flows are read in one run (later ones are named by their
first bytes as before and say ``truncated``), and ``MAX_OPERATIONS_TOTAL`` operations are kept
over the run (``base.Record.budget``).
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np

from flowaudit.capture.batch import FRAG_NONE, IPPROTO_TCP, IPPROTO_UDP, TCP_SYN, PacketBatch
from flowaudit.flow_kernel import SYN_A, SYN_B, SYNACK_A, SYNACK_B
from flowaudit.stream import claim
from flowaudit.stream.base import At, Dissector, Record

MAX_CONVERSATIONS = 200_000
MAX_OPERATIONS_TOTAL = 500_000
MAX_HELD_SEGMENTS = 256
MAX_HELD_BYTES = 4 * 1024 * 1024
MAX_HELD_TOTAL = 256 * 1024 * 1024
FIRST_BYTES = 512  # of a flow's first payload, offered to the claims

_UNDECIDED, _CLAIMED, _DECLINED, _REFUSED = 0, 1, 2, 3
_MOD = 1 << 32
_HALF = 1 << 31


class _Side:
    __slots__ = ("delivered", "held", "held_bytes", "next", "start", "stats")

    def __init__(self) -> None:
        self.next: int | None = None  # the sequence number expected next
        self.start = 0  # the sequence number the side's reading started at
        self.held: dict[int, tuple[int, bytes, At]] = {}  # seq -> (length, captured, where)
        self.held_bytes = 0
        self.delivered = 0
        self.stats: dict[str, int] = {}


class _Conversation:
    __slots__ = ("dissector", "failed", "protocol", "record", "row", "sides", "tcp")

    def __init__(
        self, row: int, protocol: str, dissector: Dissector, record: Record, tcp: bool
    ) -> None:
        self.row = row
        self.protocol = protocol
        self.dissector = dissector
        self.record = record
        self.tcp = tcp
        self.sides = (_Side(), _Side())
        self.failed = False


def _count(side: _Side, name: str, amount: int = 1) -> None:
    side.stats[name] = side.stats.get(name, 0) + amount


class StreamEngine:
    """Claims flows and delivers their bytes; ``finish`` gives each read flow's facts."""

    def __init__(self) -> None:
        self._state = np.zeros(4096, dtype=np.int8)
        self._conversations: dict[int, _Conversation] = {}
        self._budget = [MAX_OPERATIONS_TOTAL]
        self._held_total = 0
        # sides holding segments, oldest first: the run's bound gives up their holes first
        self._holders: dict[tuple[int, int], _Conversation] = {}
        self._refused = 0
        # conversations that failed in the batch being fed, with the packet they failed at
        self._failed_at: dict[int, int] = {}
        self._packet = 0  # the packet of the batch being fed
        self._owns_freeze: bool | None = None  # whether ``add`` may gc.freeze (see there)

    # ---- per batch

    def add(self, batch: PacketBatch, rows: np.ndarray, forward: np.ndarray, flows: Any) -> None:
        # The readers allocate a few objects per packet and make no reference cycles: with
        # Python's cyclic collector on, it would walk every conversation's record again and
        # again (a third of the time on the random-payload benchmark). It is paused while a
        # batch is fed, and what the conversations keep is moved out of its generations
        # (gc.freeze) until ``finish`` hands it back (gc.unfreeze) -- only when nothing else
        # in the process had frozen objects, so that the process is left as it was found.
        if self._owns_freeze is None:
            self._owns_freeze = gc.get_freeze_count() == 0
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._add(batch, rows, forward, flows)
        finally:
            if self._owns_freeze:
                gc.freeze()
            if enabled:
                gc.enable()

    def _add(self, batch: PacketBatch, rows: np.ndarray, forward: np.ndarray, flows: Any) -> None:
        if len(self._state) < len(flows):
            grown = np.zeros(max(len(flows), 2 * len(self._state)), dtype=np.int8)
            grown[: len(self._state)] = self._state
            self._state = grown
        picked = np.flatnonzero(
            (rows >= 0)
            & (batch.payload_len > 0)
            & (batch.frag == FRAG_NONE)
            & ((batch.proto == IPPROTO_TCP) | (batch.proto == IPPROTO_UDP))
        )
        if not picked.size:
            return
        picked_rows = rows[picked]
        state = self._state[picked_rows]
        new = state == _UNDECIDED
        if new.any():
            new_rows, first = np.unique(picked_rows[new], return_index=True)
            for row, packet in zip(new_rows.tolist(), picked[new][first].tolist(), strict=True):
                self._decide(row, packet, batch)
            state = self._state[picked_rows]
        fed = picked[state == _CLAIMED]
        if fed.size:
            self._feed(batch, fed, rows[fed], forward[fed], flows)
        fragmented = np.flatnonzero((rows >= 0) & (batch.frag != FRAG_NONE))
        for row in rows[fragmented].tolist():
            if self._state[row] == _CLAIMED:
                # IP reassembly is not done: the packet's payload is not delivered (for TCP
                # the bytes it carried become a gap)
                record = self._conversations[row].record
                record.count("ip_fragmented_packets")
                record.truncate("IP-fragmented packets are not reassembled (not read)")

    def _decide(self, row: int, packet: int, batch: PacketBatch) -> None:
        tcp = int(batch.proto[packet]) == IPPROTO_TCP
        start = int(batch.payload_off[packet])
        first = batch.buffer[start : start + min(int(batch.payload_cap[packet]), FIRST_BYTES)]
        module = claim(
            "tcp" if tcp else "udp",
            (int(batch.sport[packet]), int(batch.dport[packet])),
            first.tobytes(),
        )
        if module is None:
            self._state[row] = _DECLINED
            return
        if len(self._conversations) >= MAX_CONVERSATIONS:
            self._state[row] = _REFUSED
            self._refused += 1
            return
        record = Record(budget=self._budget)
        self._conversations[row] = _Conversation(
            row, module.PROTOCOL, module.Conversation(record), record, tcp
        )
        self._state[row] = _CLAIMED

    def _feed(
        self,
        batch: PacketBatch,
        packets: np.ndarray,
        rows: np.ndarray,
        forward: np.ndarray,
        flows: Any,
    ) -> None:
        runs = _Runs(batch, packets, rows, forward)
        passed, next_two = runs.passed, runs.next_two
        passing: list[tuple[_Conversation, int, np.ndarray]] = []
        self._failed_at = {}
        buffer = np.ascontiguousarray(batch.buffer).data
        file_index = batch.file_index
        conversations = self._conversations
        columns = zip(
            packets.tolist(),
            rows.tolist(),
            forward.tolist(),
            batch.frame[packets].tolist(),
            batch.ts_ns[packets].tolist(),
            batch.tcp_seq[packets].tolist(),
            batch.tcp_flags[packets].tolist(),
            batch.payload_off[packets].tolist(),
            batch.payload_len[packets].tolist(),
            batch.payload_cap[packets].tolist(),
            strict=True,
        )
        for position, fields in enumerate(columns):
            if passed[position]:
                continue
            packet, row, fwd, frame, ts, seq, flags, offset, length, captured = fields
            conversation = conversations[row]
            if conversation.failed:
                continue
            self._packet = packet
            side = 0 if fwd else 1
            try:
                if conversation.tcp:
                    if flags & TCP_SYN:
                        seq = (seq + 1) % _MOD  # data on a SYN follows its sequence number
                    sent = conversation.sides[side]
                    if seq == sent.next and captured == length and not sent.held:
                        # in order, whole, nothing held: the common case, delivered at once,
                        # or passed over inside a body the reader skips (bulk data)
                        sent.delivered += length
                        sent.next = (seq + length) % _MOD
                        dissector = conversation.dissector
                        skip = dissector.skip[side]
                        if skip >= length:
                            dissector.skip[side] = skip - length
                        else:
                            dissector.data(
                                side, buffer[offset : offset + captured], At(frame, ts, file_index)
                            )
                        two = next_two[position]
                        if two and dissector.skip[side] >= two and not sent.held:
                            # the side's next segments in this batch follow this one and lie
                            # inside what its reader skips: counted now, not one by one
                            rest, passed_bytes = runs.pass_over(position, dissector.skip[side])
                            passing.append((conversation, side, rest))
                            sent.delivered += passed_bytes
                            sent.next = (sent.next + passed_bytes) % _MOD
                            dissector.skip[side] -= passed_bytes
                        continue
                    at = At(frame, ts, file_index)
                    data = buffer[offset : offset + captured]
                    self._segment(conversation, side, seq, length, data, at, flows, row)
                else:
                    sent = conversation.sides[side]
                    sent.delivered += captured
                    _count(sent, "datagrams")
                    datagram = buffer[offset : offset + captured].tobytes()
                    conversation.dissector.datagram(side, datagram, At(frame, ts, file_index))
                    if captured < length:
                        conversation.record.truncate("datagrams cut short by the snap length")
            except Exception as error:  # a reader's fault never stops the audit
                self._fail(conversation, f"frame {frame}", error)
        for conversation, side, positions in passing:
            failed_at = self._failed_at.get(conversation.row)
            if failed_at is not None:  # one by one, the segments after it were not counted
                late = packets[positions] > failed_at
                conversation.sides[side].delivered -= int(runs.length[positions][late].sum())

    def _fail(self, conversation: _Conversation, where: str, error: Exception) -> None:
        """A reader raised: read no more of its flow, and let go of what the flow held."""
        conversation.failed = True
        self._failed_at.setdefault(conversation.row, self._packet)
        conversation.record.truncate(
            f"{conversation.protocol}: reader stopped at {where} ({type(error).__name__})"
        )
        for side, sent in enumerate(conversation.sides):
            self._held_total -= sum(len(item[1]) for item in sent.held.values())
            sent.held.clear()
            sent.held_bytes = 0
            self._holders.pop((conversation.row, side), None)

    # ---- TCP reassembly of one side

    def _segment(
        self,
        conversation: _Conversation,
        side: int,
        seq: int,
        length: int,
        data: memoryview,
        at: At,
        flows: Any,
        row: int,
    ) -> None:
        sent = conversation.sides[side]
        if sent.next is None:
            sent.next = sent.start = _first_sequence(flows[row], side, seq)
        delta = _offset(seq, sent.next)
        if delta > 0:
            self._hold(conversation, side, seq, length, data, at)
            return
        if delta < 0:
            if delta + length <= 0:
                if _offset(seq + length, sent.start) <= 0:
                    # bytes before the first segment read (no SYN seen, reordered at the
                    # start of the capture): not a retransmission, and not readable any more
                    _count(sent, "before_start_bytes", length)
                    conversation.record.truncate(
                        "bytes sent before the first segment read (start not captured)"
                    )
                else:
                    _count(sent, "retransmitted_bytes", length)
                return
            _count(sent, "overlapping_bytes", -delta)
        self._deliver(conversation, side, -delta, length, data, at)
        if sent.held:
            self._drain(conversation, side)

    def _deliver(
        self,
        conversation: _Conversation,
        side: int,
        cut: int,
        length: int,
        data: memoryview | bytes,
        at: At,
    ) -> None:
        """Deliver a segment from its byte ``cut`` on (the bytes before were delivered)."""
        sent = conversation.sides[side]
        captured = len(data)
        if cut < captured:
            conversation.dissector.data(side, data[cut:], at)
            sent.delivered += captured - cut
        if captured < length:
            missing = length - max(cut, captured)
            _count(sent, "missing_bytes", missing)
            _count(sent, "gaps")
            conversation.dissector.gap(side, missing, at)
        assert sent.next is not None
        sent.next = (sent.next + length - cut) % _MOD

    def _hold(
        self,
        conversation: _Conversation,
        side: int,
        seq: int,
        length: int,
        data: memoryview,
        at: At,
    ) -> None:
        sent = conversation.sides[side]
        _count(sent, "out_of_order")
        if seq in sent.held and sent.held[seq][0] >= length:
            _count(sent, "retransmitted_bytes", length)
            return
        captured = data.tobytes()
        previous = sent.held.get(seq)
        if previous is not None:
            sent.held_bytes -= len(previous[1])
            self._held_total -= len(previous[1])
        sent.held[seq] = (length, captured, at)
        sent.held_bytes += len(captured)
        self._held_total += len(captured)
        self._holders.setdefault((conversation.row, side), conversation)
        while sent.held and (
            len(sent.held) > MAX_HELD_SEGMENTS or sent.held_bytes > MAX_HELD_BYTES
        ):
            self._skip_hole(conversation, side)
        while self._held_total > MAX_HELD_TOTAL and self._holders:
            # the side that has held longest gives its holes up first (a flow that ended
            # with a hole, most often), not the one that is waiting now
            (_, oldest), holder = next(iter(self._holders.items()))
            try:
                while holder.sides[oldest].held:
                    self._skip_hole(holder, oldest)
            except Exception as error:  # as in _feed, but the fault is the holder's
                self._fail(holder, "a gap", error)

    def _skip_hole(self, conversation: _Conversation, side: int) -> None:
        """Give up waiting for the bytes before the first held segment: report them missing."""
        sent = conversation.sides[side]
        assert sent.next is not None
        base = sent.next
        seq = min(sent.held, key=lambda s: (s - base) % _MOD)
        hole = (seq - base) % _MOD
        at = sent.held[seq][2]
        _count(sent, "missing_bytes", hole)
        _count(sent, "gaps")
        conversation.dissector.gap(side, hole, at)
        sent.next = seq
        self._drain(conversation, side)

    def _drain(self, conversation: _Conversation, side: int) -> None:
        """Deliver the held segments that now follow (or overlap) what was delivered."""
        sent = conversation.sides[side]
        while sent.held:
            assert sent.next is not None
            base = sent.next
            ready = None
            for seq in sent.held:
                if _offset(seq, base) <= 0:
                    ready = seq
                    break
            if ready is None:
                return
            length, captured, at = sent.held.pop(ready)
            sent.held_bytes -= len(captured)
            self._held_total -= len(captured)
            if not sent.held:
                self._holders.pop((conversation.row, side), None)
            delta = _offset(ready, base)
            if delta + length <= 0:
                _count(sent, "retransmitted_bytes", length)
                continue
            if delta < 0:
                _count(sent, "overlapping_bytes", -delta)
            self._deliver(conversation, side, -delta, length, captured, at)

    # ---- the end

    def finish(self, flows: Any) -> dict[int, dict[str, Any]]:
        """Facts of every flow read (and of those refused), by assembler row; call it once."""
        enabled = gc.isenabled()
        gc.disable()  # as in ``add``
        try:
            return self._finish(flows)
        finally:
            if self._owns_freeze:
                gc.unfreeze()
                self._owns_freeze = None
            if enabled:
                gc.enable()

    def _finish(self, flows: Any) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for row, conversation in self._conversations.items():
            try:
                for side in (0, 1):
                    while conversation.sides[side].held and not conversation.failed:
                        self._skip_hole(conversation, side)
                conversation.dissector.end()
                summary = conversation.dissector.facts()
            except Exception as error:  # as in _feed
                self._fail(conversation, "the end", error)
                summary = {}
            out[row] = _facts(conversation, summary)
        if self._refused:
            why = (
                f"not read past the first bytes: more than {MAX_CONVERSATIONS} conversations "
                "in one run"
            )
            for row in np.flatnonzero(self._state[: len(flows)] == _REFUSED).tolist():
                out[row] = {"truncated": [why]}
        return out


class _Runs:
    """The segments of one batch's fed packets that follow one another on their side.

    A run is a side's segments in capture order, each whole, without SYN, and each starting
    where the one before it ended. ``next_two[i]``: the bytes of the two segments that follow
    the packet at position ``i`` in its run (0 when fewer follow). Once its reader skips at
    least that much, ``pass_over`` marks the segments inside the skipped bytes ``passed``,
    for the loop to count at once instead of one by one.
    """

    def __init__(
        self, batch: PacketBatch, packets: np.ndarray, rows: np.ndarray, forward: np.ndarray
    ) -> None:
        count = packets.size
        self.length = batch.payload_len[packets].astype(np.int64)
        keys = rows.astype(np.int64) * 2 + ~forward.astype(bool)
        order = np.argsort(keys, kind="stable")  # positions by side, in capture order
        keys = keys[order]
        seq = batch.tcp_seq[packets].astype(np.int64)[order]
        length = self.length[order]
        whole = (
            (batch.payload_cap[packets] == batch.payload_len[packets])
            & (batch.tcp_flags[packets] & TCP_SYN == 0)
        )[order]
        follows = np.zeros(count, dtype=bool)  # sorted index j continues the run of j - 1
        follows[1:] = (
            (keys[1:] == keys[:-1])
            & (seq[1:] == (seq[:-1] + length[:-1]) % _MOD)
            & whole[1:]
            & whole[:-1]
        )
        run_end = np.flatnonzero(np.r_[~follows[1:], True])  # the last sorted index of each
        self._end = run_end[np.cumsum(~follows) - 1]  # of the run of each sorted index
        self._sum = np.cumsum(length)
        two = np.zeros(count, dtype=np.int64)
        two[:-2] = length[1:-1] + length[2:]
        two[self._end < np.arange(count) + 2] = 0
        next_two = np.zeros(count, dtype=np.int64)
        next_two[order] = two
        self.next_two: list[int] = next_two.tolist()
        self._order = order
        self._sorted_at = np.empty(count, dtype=np.int64)
        self._sorted_at[order] = np.arange(count)
        self._passed = np.zeros(count, dtype=bool)
        self.passed = self._passed.data  # a memoryview: its items read as Python bools

    def pass_over(self, position: int, skip: int) -> tuple[np.ndarray, int]:
        """Mark passed the segments after ``position`` in its run that ``skip`` bytes cover;
        their positions and their bytes."""
        at = int(self._sorted_at[position])
        base = int(self._sum[at])
        last = int(np.searchsorted(self._sum, base + min(skip, 1 << 48), side="right")) - 1
        last = min(last, int(self._end[at]))
        rest = self._order[at + 1 : last + 1]
        self._passed[rest] = True
        return rest, int(self._sum[last]) - base


def _offset(seq: int, base: int) -> int:
    """How far ``seq`` lies after ``base`` in TCP's sequence space (RFC 9293 3.4: modulo
    2**32; negative when before, within half the space)."""
    delta = (seq - base) % _MOD
    return delta - _MOD if delta >= _HALF else delta


def _first_sequence(flow: Any, side: int, seq: int) -> int:
    """Where a side's reading starts: after its SYN when the SYN was the side's first packet
    (bytes between it and the first segment that came are then a hole), else at that first
    segment (``seq``): a capture that began mid-stream, or a SYN+ACK seen only again later."""
    if side == 0:
        base, syn = int(flow["base_seq_ab"]), int(flow["tcp"]) & (SYN_A | SYNACK_A)
    else:
        base, syn = int(flow["base_seq_ba"]), int(flow["tcp"]) & (SYN_B | SYNACK_B)
    if syn:
        start = (base + 1) % _MOD
        if (seq - start) % _MOD < MAX_HELD_BYTES:
            return start
    return seq


def _facts(conversation: _Conversation, summary: dict[str, Any]) -> dict[str, Any]:
    record = conversation.record
    stream: dict[str, Any] = {"protocol": conversation.protocol, conversation.protocol: summary}
    if record.operations_dropped:
        stream["operations_dropped"] = record.operations_dropped
        stream["operations_dropped_by"] = dict(record.dropped_by)
    if record.counters:
        stream["counters"] = dict(record.counters)
    stream["sides"] = [{"bytes": side.delivered, **side.stats} for side in conversation.sides]
    facts: dict[str, Any] = {
        "operations": record.operations,
        "identities": record.identities,
        "conversation": stream,
    }
    if record.truncated:
        facts["truncated"] = list(record.truncated)
    return facts


def conversations(paths: list[str], idle_timeout: float | None = None) -> list[dict[str, Any]]:
    """Every flow of a capture set that a stream module read: its 5-tuple, first frame and
    conversation facts (``operations``, ``identities``, ``conversation``, ``truncated``), in
    the flow table's order. For tests and tools; ``analyze`` reads the same facts."""
    from flowaudit.config import FlowConfig
    from flowaudit.flows import build_flow_table

    config = FlowConfig(conversations=True)
    if idle_timeout is not None:
        config = FlowConfig(conversations=True, idle_timeout=idle_timeout)
    table = build_flow_table(paths, config)
    columns = table.columns
    out = []
    for row in sorted(table.conversations):
        flow = {
            name: columns[name][row].item()
            if hasattr(columns[name][row], "item")
            else columns[name][row]
            for name in (
                "id",
                "proto",
                "client",
                "client_port",
                "server",
                "server_port",
                "first_frame",
                "last_frame",
            )
        }
        out.append({**flow, **table.conversations[row]})
    return out
