"""Replays a capture's flows into a stream dissector, independently of the engine.

tshark lists every TCP/UDP packet (its ``tcp.stream``/``udp.stream``, sequence number and
payload); TCP is put in order per side here (retransmissions dropped, overlaps trimmed, holes
reported as gaps) and fed to ``Conversation.data``/``gap``; UDP payloads to ``datagram``. Side A
is the sender of the flow's first packet. Flows are keyed by tshark's stream index, so that
per-flow values can be compared with tshark's own fields for the same stream.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from flowaudit.stream.base import At, Dissector, Record

_FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "tcp.stream",
    "udp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "udp.srcport",
    "tcp.dstport",
    "udp.dstport",
    "tcp.seq_raw",
    "tcp.flags",
    "tcp.payload",
    "udp.payload",
]
_MOD = 1 << 32


@dataclass
class Flow:
    transport: str
    stream: int
    ports: tuple[int, int] = (0, 0)  # of the first packet with a payload
    first: bytes = b""
    events: list[tuple[str, int, Any, At]] = field(default_factory=list)

    def side_bytes(self, side: int) -> bytes:
        return b"".join(e[2] for e in self.events if e[1] == side and e[0] == "data")


def _run(args: list[str]) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout


SEP = "\x1f"  # joins a field's occurrences: DNs and URIs hold commas


def tshark_lists(path: Path, display_filter: str, fields: list[str]) -> list[list[list[str]]]:
    """Per frame matching the filter, each field's occurrences (a list per field)."""
    out = _run(
        ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
        + [x for f in fields for x in ("-e", f)]
        + ["-E", "separator=\t", "-E", "occurrence=a", "-E", f"aggregator={SEP}"]
    )
    rows = []
    for line in out.splitlines():
        cols = (line.split("\t") + [""] * len(fields))[: len(fields)]
        rows.append([col.split(SEP) if col else [] for col in cols])
    return rows


class _Side:
    def __init__(self) -> None:
        self.next: int | None = None
        self.held: dict[int, tuple[bytes, At]] = {}


def flows(path: Path) -> dict[tuple[str, int], Flow]:
    """Every TCP/UDP flow of the capture, keyed by (transport, tshark stream index)."""
    rows = _run(
        ["tshark", "-n", "-r", str(path), "-Y", "(tcp or udp) and not icmp and not icmpv6"]
        + ["-T", "fields"]
        + [x for f in _FIELDS for x in ("-e", f)]
        + ["-E", "separator=\t", "-E", "occurrence=f"]
    )
    found: dict[tuple[str, int], Flow] = {}
    first_sender: dict[tuple[str, int], tuple[str, str]] = {}
    sides: dict[tuple[str, int], tuple[_Side, _Side]] = defaultdict(lambda: (_Side(), _Side()))
    for line in rows.splitlines():
        cols = line.split("\t")
        if len(cols) < len(_FIELDS):
            cols += [""] * (len(_FIELDS) - len(cols))
        (frame, epoch, tstream, ustream, ip4, ip6, tsport, usport, tdport, udport) = cols[:10]
        seq_raw, flags, tpay, upay = cols[10:14]
        transport = "tcp" if tstream else "udp"
        stream = tstream or ustream
        if not stream:
            continue
        key = (transport, int(stream))
        sport = tsport or usport
        dport = tdport or udport
        sender = (ip4 or ip6, sport)
        at = At(int(frame), int(float(epoch) * 1e9))
        flow = found.setdefault(key, Flow(transport, int(stream)))
        first_sender.setdefault(key, sender)
        side = 0 if first_sender[key] == sender else 1
        payload = bytes.fromhex(tpay or upay) if (tpay or upay) else b""
        if payload and not flow.first:
            flow.first, flow.ports = payload, (int(sport), int(dport))
        if transport == "udp":
            if payload:
                flow.events.append(("datagram", side, payload, at))
            continue
        state = sides[key][side]
        seq = int(seq_raw) if seq_raw else 0
        if flags and int(flags, 16) & 0x02:  # SYN
            state.next = (seq + 1) % _MOD
        if not payload:
            continue
        if state.next is None:
            state.next = seq
        state.held.setdefault(seq, (payload, at))
        _drain(flow, side, state)
    for key, (a, b) in sides.items():
        for side, state in ((0, a), (1, b)):
            _drain(flow := found[key], side, state, final=True)
    return found


def _drain(flow: Flow, side: int, state: _Side, final: bool = False) -> None:
    """Delivers the held segments that are next in sequence (all of them when ``final``)."""
    while state.held and state.next is not None:
        expected: int = state.next
        seq = min(state.held, key=lambda s: (s - expected) % _MOD)
        payload, at = state.held[seq]
        ahead = (seq - expected) % _MOD
        if ahead >= _MOD // 2:  # starts before the expected byte: trim the old part
            behind = _MOD - ahead
            del state.held[seq]
            if behind < len(payload):
                flow.events.append(("data", side, payload[behind:], at))
                state.next = (expected + len(payload) - behind) % _MOD
            continue
        if ahead and not final:
            return  # a hole: wait for the segment that fills it
        del state.held[seq]
        if ahead:  # a hole never filled
            flow.events.append(("gap", side, ahead, at))
        flow.events.append(("data", side, payload, at))
        state.next = (seq + len(payload)) % _MOD


def replay(
    module: ModuleType, flow: Flow, events: list[tuple[str, int, Any, At]] | None = None
) -> Dissector:
    """A ``module.Conversation`` fed the flow's events, ended."""
    conversation: Dissector = module.Conversation(Record())
    for kind, side, value, at in flow.events if events is None else events:
        if kind == "data":
            conversation.data(side, value, at)
        elif kind == "gap":
            conversation.gap(side, value, at)
        else:
            conversation.datagram(side, value, at)
    conversation.end()
    return conversation


def feed_sides(module: ModuleType, chunks: list[tuple[int, bytes]]) -> Dissector:
    """A conversation fed ``(side, bytes)`` chunks in order, all at frame 1."""
    conversation: Dissector = module.Conversation(Record())
    for side, data in chunks:
        conversation.data(side, data, At(1, 0))
    conversation.end()
    return conversation


def outcome(conversation: Dissector) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Operations (without frame and time, which depend on how bytes were split) and
    identities."""
    ops = [
        {k: v for k, v in op.items() if k not in ("frame", "ts_ns")}
        for op in conversation.record.operations
    ]
    return ops, conversation.record.identities
