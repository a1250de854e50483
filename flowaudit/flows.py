"""The flow table: packet batches in, one row per bidirectional flow out (a pandas DataFrame).

A flow is keyed by its 5-tuple (addresses, ports, IP protocol) in either direction; protocols
without ports (ICMP, ESP, GRE, ...) are keyed by address pair and protocol. Rules:

* TCP: the sender of the SYN is the client. A SYN whose sequence number differs from the first
  one seen from that side starts a new flow on the same 5-tuple (port reuse after FIN/RST), as
  Wireshark's ``tcp.stream`` does. TCP flows never end by time, as in tshark's tables.
* UDP and other protocols: the first packet's sender is the client, except that a multicast or
  broadcast destination is always the server side, a first packet sent from a service port
  to an ephemeral one marks the start as not seen, and a DHCP server (UDP 67, DHCPv6 547)
  answering a client's port (68, 546) is the server whoever sent first. A flow idle for longer than
  ``FlowConfig.idle_timeout`` ends; the next packet opens a new one.
* Where the start was not captured (TCP without SYN, UDP answered before asked), the side on
  the service port is the server and ``start_seen`` is false.
* IPv4/IPv6 fragments count to the flow of their first fragment (which carries the ports).

Counts per direction use each frame's original length on the wire (tshark's ``bytes``).
Memory grows with the number of flows: batches are folded in as they come (``FlowAssembler``).
"""

from __future__ import annotations

import itertools
import os
import socket
import stat
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowaudit.capture.batch import IPPROTO_TCP, IPPROTO_UDP, PacketBatch
from flowaudit.capture.reader import CaptureInfo, CaptureReader
from flowaudit.capture.source import STDIN
from flowaudit.config import FlowConfig
from flowaudit.errors import FlowauditError, UsageError
from flowaudit.flow_kernel import (
    DONE,
    FIN_A,
    FIN_B,
    FLOW_DTYPE,
    FRAG_CACHE,
    HANDSHAKE,
    NEED_ROWS,
    NEED_SLOTS,
    NEED_TABLE,
    RST_SEEN,
    SYN_A,
    SYN_B,
    SYNACK_A,
    SYNACK_B,
    rebuild_table,
    update_flows,
)
from flowaudit.payload_arena import FlowPayloads, PayloadArena
from flowaudit.stream.directions import facts_with_directions

if TYPE_CHECKING:
    import pandas as pd

    from flowaudit.stream.engine import StreamEngine


# Registered ports above 1023 on which Configuration Manager and Windows serve (the ports page
# and its Windows Server section). Used only to tell the server side of a flow
# whose start was not captured; every port below 1024 counts as a service port too.
SERVICE_PORTS = frozenset(
    {
        1433,
        1434,
        2701,
        2702,
        3268,
        3269,
        3389,
        4011,
        4022,
        5355,
        5985,
        5986,
        8005,
        8530,
        8531,
        9389,
        10123,
        16992,
        16993,
        16994,
        16995,
        25536,
        1900,
        3702,
        5353,
    }
)

PROTO_NAMES = {
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "icmpv6",
    103: "pim",
    112: "vrrp",
    132: "sctp",
}

# Values of the ``direction_by`` column: what decided which side is the client.
BY_SYN = "syn"
BY_SYN_ACK = "syn-ack"
BY_GROUP = "multicast"
BY_PORT = "port"
BY_FIRST = "first-packet"

FLOW_COLUMNS = [
    "id",
    "proto",
    "client",
    "client_port",
    "server",
    "server_port",
    "first_seen",
    "last_seen",
    "duration",
    "packets",
    "bytes",
    "c2s_packets",
    "c2s_bytes",
    "s2c_packets",
    "s2c_bytes",
    "tcp_flags",
    "handshake",
    "start_seen",
    "direction_by",
    "first_file",
    "first_frame",
    "last_file",
    "last_frame",
    "c2s_payload",
    "s2c_payload",
]


@dataclass
class FlowTable:
    """The flows of a capture set and what each capture file held.

    ``columns`` holds the table as numpy arrays (timestamps as ``datetime64[ns]``, UTC), one
    entry per name in ``FLOW_COLUMNS`` but the payloads, which ``payloads`` keeps (their
    lengths are the columns ``c2s_payload_len`` and ``s2c_payload_len``), plus
    ``proto_number``. ``flows`` is the whole table, payload bytes included, as a pandas
    DataFrame made when first asked for, so that writers that only stream rows out pay
    neither for pandas nor for copying payloads.
    """

    columns: dict[str, Any]
    payloads: FlowPayloads
    captures: list[CaptureInfo] = field(default_factory=list)
    orphan_fragments: int = 0
    # Facts of whole conversations (``flowaudit.stream``) by table row, for the flows an
    # incremental dissector read (only when ``FlowConfig.conversations`` is on).
    conversations: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.columns["id"])

    @cached_property
    def flows(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(self.columns)
        for name in ("first_seen", "last_seen"):
            frame[name] = frame[name].dt.tz_localize("UTC")
        frame["c2s_payload"], frame["s2c_payload"] = self.payloads.columns()
        return frame[[*FLOW_COLUMNS, *(c for c in frame.columns if c not in FLOW_COLUMNS)]]


class FlowAssembler:
    """Folds ``PacketBatch``es into flow state; ``table()`` gives the finished ``FlowTable``."""

    def __init__(self, config: FlowConfig | None = None, file_names: Sequence[str] = ()) -> None:
        self.config = config or FlowConfig()
        self.file_names = list(file_names)
        self._flows = np.zeros(4096, dtype=FLOW_DTYPE)
        self._rows = 0
        self._table = np.full(16384, -1, dtype=np.int64)
        self._arena = PayloadArena(self.config.payload_bytes)
        self._slots = 0
        self._frag_keys = np.zeros((FRAG_CACHE, 5), dtype=np.uint64)
        self._frag_rows = np.full(FRAG_CACHE, -1, dtype=np.int64)
        self._orphans = np.zeros(1, dtype=np.int64)
        self._idle_ns = int(self.config.idle_timeout * 1e9)
        self._pkt_row = np.zeros(0, dtype=np.int64)
        self._pkt_fwd = np.zeros(0, dtype=np.bool_)
        self._streams: StreamEngine | None = None
        if self.config.conversations:
            from flowaudit.stream.engine import StreamEngine

            self._streams = StreamEngine()

    def add(self, batch: PacketBatch) -> None:
        start, count = 0, len(batch)
        if len(self._pkt_row) < count:
            self._pkt_row = np.zeros(count, dtype=np.int64)
            self._pkt_fwd = np.zeros(count, dtype=np.bool_)
        while start < count:
            start, self._rows, self._slots, status = update_flows(
                start,
                count,
                batch.file_index,
                batch.frame,
                batch.ts_ns,
                batch.wire_len,
                *batch.decoded(),
                batch.buffer,
                self._flows,
                self._rows,
                self._table,
                self._arena.array,
                self._slots,
                self._frag_keys,
                self._frag_rows,
                self._idle_ns,
                self._orphans,
                self._pkt_row,
                self._pkt_fwd,
            )
            if status == NEED_ROWS:
                grown = np.zeros(len(self._flows) * 2, dtype=FLOW_DTYPE)
                grown[: self._rows] = self._flows[: self._rows]
                self._flows = grown
            elif status == NEED_TABLE:
                self._table = np.full(len(self._table) * 2, -1, dtype=np.int64)
                rebuild_table(self._flows, self._rows, self._table)
            elif status == NEED_SLOTS:
                self._arena.grow(self._slots, self._slot_lengths())
            else:
                assert status == DONE
        self._arena.prepare(self._slots)
        if self._streams is not None:
            self._streams.add(batch, self._pkt_row[:count], self._pkt_fwd[:count], self._flows)

    @property
    def orphan_fragments(self) -> int:
        return int(self._orphans[0])

    def table(self, captures: Sequence[CaptureInfo] = ()) -> FlowTable:
        """The finished flow table, ordered by first packet (ids from 1); call it once."""
        flows = self._flows[: self._rows]
        order = np.argsort(flows["first_ts"], kind="stable")
        flows = flows[order]
        columns, payloads = _flow_columns(flows, self._arena, self._slot_lengths(), self.file_names)
        conversations: dict[int, dict[str, Any]] = {}
        if self._streams is not None:
            # rows of the assembler -> rows of the table (ordered by first packet)
            position = np.empty(len(order), dtype=np.int64)
            position[order] = np.arange(len(order))
            client_is_a = _client_is_a(flows)[0]
            for row, facts in self._streams.finish(self._flows[: self._rows]).items():
                at = int(position[row])
                conversations[at] = facts_with_directions(
                    facts, bool(client_is_a[at]), self.file_names
                )
        return FlowTable(
            columns=columns,
            payloads=payloads,
            captures=list(captures),
            orphan_fragments=self.orphan_fragments,
            conversations=conversations,
        )

    def _slot_lengths(self) -> np.ndarray:
        flows = self._flows[: self._rows]
        lengths = np.zeros(self._slots, dtype=np.int64)
        for slot, length in (("pay_slot_ab", "pay_len_ab"), ("pay_slot_ba", "pay_len_ba")):
            used = flows[slot] >= 0
            lengths[flows[slot][used]] = flows[length][used]
        return lengths


def _service_port(ports: np.ndarray) -> np.ndarray:
    return (ports < 1024) | np.isin(ports, np.array(sorted(SERVICE_PORTS), dtype=np.uint16))


def _client_is_a(flows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decide per flow whether side a is the client, whether the start was seen, and why."""
    n = len(flows)
    tcp_bits = flows["tcp"]
    is_tcp = flows["proto"] == IPPROTO_TCP
    a_port, b_port = flows["a_port"], flows["b_port"]
    a_service, b_service = _service_port(a_port), _service_port(b_port)
    # Port rule for flows whose start was not seen: the service side is the server; if both or
    # neither look like service ports, the lower port is; equal ports leave it to who sent first.
    port_says_a_server = np.where(a_service != b_service, a_service, a_port < b_port)

    client_is_a = np.ones(n, dtype=bool)
    start_seen = np.ones(n, dtype=bool)
    direction_by = np.full(n, BY_FIRST, dtype=object)

    syn_a = is_tcp & ((tcp_bits & SYN_A) != 0)
    syn_b = is_tcp & ((tcp_bits & SYN_B) != 0) & ~syn_a
    synack_b = is_tcp & ~syn_a & ~syn_b & ((tcp_bits & SYNACK_B) != 0)
    synack_a = is_tcp & ~syn_a & ~syn_b & ~synack_b & ((tcp_bits & SYNACK_A) != 0)
    tcp_no_start = is_tcp & ~(syn_a | syn_b | synack_a | synack_b)

    direction_by[syn_a | syn_b] = BY_SYN
    client_is_a[syn_b] = False
    direction_by[synack_a | synack_b] = BY_SYN_ACK
    client_is_a[synack_a] = False
    start_seen[synack_a | synack_b] = False
    direction_by[tcp_no_start] = BY_PORT
    start_seen[tcp_no_start] = False
    client_is_a[tcp_no_start & port_says_a_server] = False

    other = ~is_tcp
    group = other & flows["b_group"]
    direction_by[group] = BY_GROUP
    answered_first = other & ~group & port_says_a_server & (a_port != b_port) & a_service
    answered_first &= ~b_service
    client_is_a[answered_first] = False
    start_seen[answered_first] = False
    direction_by[answered_first] = BY_PORT
    # DHCP servers listen on 67 and clients on 68 (RFC 2131 4.1), DHCPv6 servers on 547 and
    # clients on 546 (RFC 8415 7.2): a server may answer straight to the address it leases,
    # opening a flow of its own after the client's broadcast; that flow's server is still the
    # side on 67 (547), and its start is the exchange's, which was seen.
    dhcp_a_server = (
        other & ~group & (((a_port == 67) & (b_port == 68)) | ((a_port == 547) & (b_port == 546)))
    )
    client_is_a[dhcp_a_server] = False
    start_seen[dhcp_a_server] = True
    direction_by[dhcp_a_server] = BY_PORT
    return client_is_a, start_seen, direction_by


_OCTETS = np.array([str(octet) for octet in range(256)], dtype=object)


def _addresses(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Text form of 128-bit addresses; IPv4-mapped ones as dotted quads.

    Each distinct address is formatted once; IPv4 ones by numpy over object arrays (a scan of
    a million destinations is a million distinct addresses: no Python loop per address).
    """
    out = np.empty(len(hi), dtype=object)
    mapped = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    if mapped.any():
        v4, where = np.unique(lo[mapped] & np.uint64(0xFFFFFFFF), return_inverse=True)
        octet = [
            _OCTETS[((v4 >> np.uint64(shift)) & np.uint64(255)).astype(np.intp)]
            for shift in (24, 16, 8, 0)
        ]
        text = octet[0] + "." + octet[1] + "." + octet[2] + "." + octet[3]
        out[mapped] = text[where]
    other = ~mapped
    if other.any():
        pairs = np.empty(int(other.sum()), dtype=[("hi", ">u8"), ("lo", ">u8")])
        pairs["hi"], pairs["lo"] = hi[other], lo[other]
        distinct, where = np.unique(pairs, return_inverse=True)
        raw = distinct.tobytes()
        text = np.array(
            [
                socket.inet_ntop(socket.AF_INET6, raw[16 * k : 16 * k + 16])
                for k in range(len(distinct))
            ],
            dtype=object,
        )
        out[other] = text[where]
    return out


def _flag_names(bits: int) -> str:
    seen = []
    if bits & 1:
        seen.append("SYN")
    if bits & 2:
        seen.append("SYN-ACK")
    if bits & 4:
        seen.append("FIN")
    if bits & 8:
        seen.append("RST")
    return ",".join(seen)


# The TCP flags a flow saw, named, by the four bits SYN, SYN-ACK, FIN, RST.
_FLAG_NAMES = np.array([_flag_names(bits) for bits in range(16)], dtype=object)


def _flag_text(flows: np.ndarray) -> np.ndarray:
    bits = flows["tcp"]
    key = (
        ((bits & (SYN_A | SYN_B)) != 0).astype(np.intp)
        | (((bits & (SYNACK_A | SYNACK_B)) != 0).astype(np.intp) << 1)
        | (((bits & (FIN_A | FIN_B)) != 0).astype(np.intp) << 2)
        | (((bits & RST_SEEN) != 0).astype(np.intp) << 3)
    )
    key[flows["proto"] != IPPROTO_TCP] = 0
    return _FLAG_NAMES[key]


def _flow_columns(
    flows: np.ndarray, arena: PayloadArena, slot_lengths: np.ndarray, file_names: Sequence[str]
) -> tuple[dict[str, Any], FlowPayloads]:
    n = len(flows)
    client_is_a, start_seen, direction_by = _client_is_a(flows)

    def pick(a_field: str, b_field: str) -> tuple[np.ndarray, np.ndarray]:
        a, b = flows[a_field], flows[b_field]
        return np.where(client_is_a, a, b), np.where(client_is_a, b, a)

    c_hi, s_hi = pick("a_hi", "b_hi")
    c_lo, s_lo = pick("a_lo", "b_lo")
    c_port, s_port = pick("a_port", "b_port")
    c2s_packets, s2c_packets = pick("pkts_ab", "pkts_ba")
    c2s_bytes, s2c_bytes = pick("bytes_ab", "bytes_ba")
    c_slot, s_slot = pick("pay_slot_ab", "pay_slot_ba")
    proto = flows["proto"]
    names = np.array([PROTO_NAMES.get(int(p), f"ip-{int(p)}") for p in range(256)], dtype=object)
    files = np.array(list(file_names) or [""], dtype=object)
    payloads = FlowPayloads(arena, slot_lengths, c_slot, s_slot)
    c2s_payload_len, s2c_payload_len = payloads.lengths()
    first_file = files[np.clip(flows["first_file"], 0, len(files) - 1)] if n else files[:0]
    last_file = files[np.clip(flows["last_file"], 0, len(files) - 1)] if n else files[:0]
    columns = {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "proto": names[proto],
        "client": _addresses(c_hi, c_lo),
        "client_port": c_port.astype(np.int64),
        "server": _addresses(s_hi, s_lo),
        "server_port": s_port.astype(np.int64),
        "first_seen": flows["first_ts"].astype("datetime64[ns]"),
        "last_seen": flows["last_ts"].astype("datetime64[ns]"),
        "duration": (flows["last_ts"] - flows["first_ts"]) / 1e9,
        "packets": (c2s_packets + s2c_packets).astype(np.int64),
        "bytes": (c2s_bytes + s2c_bytes).astype(np.int64),
        "c2s_packets": c2s_packets.astype(np.int64),
        "c2s_bytes": c2s_bytes.astype(np.int64),
        "s2c_packets": s2c_packets.astype(np.int64),
        "s2c_bytes": s2c_bytes.astype(np.int64),
        "tcp_flags": _flag_text(flows),
        "handshake": (flows["tcp"] & HANDSHAKE) != 0,
        "start_seen": start_seen,
        "direction_by": direction_by,
        "first_file": first_file,
        "first_frame": flows["first_frame"].astype(np.int64),
        "last_file": last_file,
        "last_frame": flows["last_frame"].astype(np.int64),
        "c2s_payload_len": c2s_payload_len,
        "s2c_payload_len": s2c_payload_len,
        "proto_number": proto.astype(np.int64),
    }
    return columns, payloads


def _first_timestamp(path: str) -> int | None:
    """Timestamp of the first packet of a file, to order a capture set.

    None if it has none, or if the native reader cannot read its start: the engine that
    reads the set says what is wrong with it then (tshark may read what this reader cannot).
    """
    reader = CaptureReader(path, chunk_bytes=1 << 20, batch_packets=1)
    try:
        with closing(reader.batches()) as batches:
            for batch in batches:
                return int(batch.ts_ns[0])
    except FlowauditError:
        return None
    return None


def iter_native_batches(
    paths: Sequence[str],
    config: FlowConfig,
    progress: Callable[[int], None] | None,
    infos: list[CaptureInfo],
) -> Iterable[PacketBatch]:
    for index, path in enumerate(paths):
        reader = CaptureReader(
            path, index, sha256=config.sha256, progress=progress, background=True
        )
        infos.append(reader.info)
        yield from reader.batches()


def order_capture_set(paths: Sequence[str | Path]) -> list[str]:
    """Files of one capture set in the order of their first packet (rotated -C/-G pieces).

    Ordering reads the start of each file once more, so it is done only for a set of several
    regular files; a pipe, a FIFO or standard input can be read only once, and so only alone.
    A lone file is checked as it is read, before any output is written.
    """
    names = [str(p) for p in paths]
    if len(names) < 2:
        return names
    for name in names:
        if name == STDIN or (os.path.exists(name) and not _regular_file(name)):
            raise UsageError(
                f"{name}: a pipe or standard input can only be read alone, not with other files"
            )
    starts = {name: _first_timestamp(name) for name in names}
    return sorted(names, key=lambda name: (starts[name] is None, starts[name] or 0))


def _regular_file(name: str) -> bool:
    return stat.S_ISREG(os.stat(name).st_mode)


def _overlap_warnings(infos: Sequence[CaptureInfo]) -> None:
    """Warn where a file of the set starts before the one read before it ended."""
    for before, after in itertools.pairwise(infos):
        if (
            before.last_seen_ns is not None
            and after.first_seen_ns is not None
            and after.first_seen_ns < before.last_seen_ns
        ):
            after.warnings.append(
                f"overlaps in time with {before.path}: files are read one after the other, "
                "so a flow with packets in both may be split or miscounted"
            )


def build_flow_table(
    paths: Sequence[str | Path],
    config: FlowConfig | None = None,
    *,
    engine: str = "native",
    progress: Callable[[int], None] | None = None,
) -> FlowTable:
    """Read a capture set and assemble its flow table."""
    config = config or FlowConfig()
    ordered = order_capture_set(paths)
    assembler = FlowAssembler(config, ordered)
    infos: list[CaptureInfo] = []
    if engine == "native":
        batches = iter_native_batches(ordered, config, progress, infos)
    elif engine == "pyshark":
        from flowaudit.capture.pyshark_engine import iter_pyshark_batches

        if STDIN in ordered:
            raise UsageError("the pyshark engine reads files, not standard input (-)")

        batches = iter_pyshark_batches(ordered, config, progress, infos)
    else:
        raise UsageError(f"unknown engine {engine!r} (native or pyshark)")
    for batch in batches:
        assembler.add(batch)
    _overlap_warnings(infos)
    return assembler.table(infos)


__all__ = [
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "FlowAssembler",
    "FlowConfig",
    "FlowTable",
    "build_flow_table",
]
