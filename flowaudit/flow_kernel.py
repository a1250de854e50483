"""Compiled flow-state update: one pass over a ``PacketBatch`` into the running flow table.

Called by ``flows.py``; kept apart so that the Python side there reads as the specification and
this file as the loop. Flow state lives in one numpy structured array (``FLOW_DTYPE``), found by
an open-addressing hash table keyed by the bidirectional 5-tuple. Side ``a`` of a flow is the
sender of its first packet, side ``b`` the receiver; who is client and server is decided at the
end (``flows.py``) from what the flow saw.

When a resource runs out (flow rows, hash table, payload slots) the kernel stops with a status
and the index to resume from; Python grows the arrays and calls it again.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from flowaudit.capture._bytes import NJIT
from flowaudit.capture.batch import (
    FRAG_FIRST,
    FRAG_LATER,
    IPPROTO_TCP,
    L3_NONE,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
)

FLOW_DTYPE = np.dtype(
    [
        ("a_hi", np.uint64),
        ("a_lo", np.uint64),
        ("b_hi", np.uint64),
        ("b_lo", np.uint64),
        ("a_port", np.uint16),
        ("b_port", np.uint16),
        ("proto", np.uint8),
        ("l3", np.uint8),
        ("b_group", np.bool_),  # the first packet went to a multicast/broadcast address
        ("first_ts", np.int64),
        ("last_ts", np.int64),
        ("first_file", np.int32),
        ("last_file", np.int32),
        ("first_frame", np.int64),
        ("last_frame", np.int64),
        ("pkts_ab", np.int64),
        ("pkts_ba", np.int64),
        ("bytes_ab", np.int64),
        ("bytes_ba", np.int64),
        ("flags_ab", np.uint8),
        ("flags_ba", np.uint8),
        ("tcp", np.uint16),  # TCP_* bits below
        ("base_seq_ab", np.uint32),
        ("base_seq_ba", np.uint32),
        ("next_seq_ab", np.uint32),
        ("next_seq_ba", np.uint32),
        ("pay_state_ab", np.uint8),
        ("pay_state_ba", np.uint8),
        ("pay_slot_ab", np.int32),
        ("pay_slot_ba", np.int32),
        ("pay_len_ab", np.int32),
        ("pay_len_ba", np.int32),
    ]
)

# Bits of the ``tcp`` field.
SYN_A = 0x001  # a sent a SYN without ACK
SYN_B = 0x002
SYNACK_A = 0x004  # a sent SYN+ACK
SYNACK_B = 0x008
HANDSHAKE = 0x010  # the SYN sender acknowledged the SYN+ACK: three-way handshake complete
FIN_A = 0x020
FIN_B = 0x040
RST_SEEN = 0x080
BASE_A = 0x100  # base_seq_ab holds the first sequence number seen from a
BASE_B = 0x200

# Payload capture states per direction.
PAY_NONE = 0  # nothing seen yet
PAY_OPEN = 1  # collecting; next_seq is the sequence number expected next
PAY_DONE = 2  # full, or a gap/truncation ended the contiguous prefix

# Kernel statuses.
DONE = 0
NEED_ROWS = 1
NEED_TABLE = 2
NEED_SLOTS = 3

# Fragment cache: (src, dst, proto, id) of recent first fragments -> flow row.
FRAG_CACHE = 1 << 16


@nb.njit(inline="always", **NJIT)
def _mix(value: np.uint64) -> np.uint64:
    # splitmix64 finaliser
    value ^= value >> np.uint64(30)
    value *= np.uint64(0xBF58476D1CE4E5B9)
    value ^= value >> np.uint64(27)
    value *= np.uint64(0x94D049BB133111EB)
    value ^= value >> np.uint64(31)
    return value


@nb.njit(inline="always", **NJIT)
def _pair_hash(
    s_hi: np.uint64,
    s_lo: np.uint64,
    d_hi: np.uint64,
    d_lo: np.uint64,
    s_port: int,
    d_port: int,
    proto: int,
) -> np.uint64:
    # Symmetric in the two ends, so both directions of a flow land on the same chain.
    ports = np.uint64((s_port ^ d_port) | ((s_port + d_port) << 17))
    return _mix((s_lo ^ d_lo) ^ _mix(s_hi ^ d_hi) ^ (ports << np.uint64(24)) ^ np.uint64(proto))


@nb.njit(**NJIT)
def rebuild_table(flows: Any, n_flows: int, table: Any) -> None:
    """Re-insert every flow into an empty (all -1) table; later rows replace earlier ones."""
    mask = table.shape[0] - 1
    for row in range(n_flows):
        f = flows[row]
        slot = _pair_hash(f.a_hi, f.a_lo, f.b_hi, f.b_lo, f.a_port, f.b_port, f.proto) & mask
        while True:
            other = table[slot]
            if other < 0:
                table[slot] = row
                break
            g = flows[other]
            if (
                g.proto == f.proto
                and g.a_port == f.a_port
                and g.b_port == f.b_port
                and g.a_lo == f.a_lo
                and g.b_lo == f.b_lo
                and g.a_hi == f.a_hi
                and g.b_hi == f.b_hi
            ):
                table[slot] = row
                break
            slot = (slot + 1) & mask


@nb.njit(**NJIT)
def update_flows(
    start: int,
    count: int,
    file_index: int,
    frame: Any,
    ts_ns: Any,
    wire_len: Any,
    l3: Any,
    proto: Any,
    src_hi: Any,
    src_lo: Any,
    dst_hi: Any,
    dst_lo: Any,
    sport: Any,
    dport: Any,
    tcp_flags: Any,
    tcp_seq: Any,
    payload_off: Any,
    payload_len: Any,
    payload_cap: Any,
    l2_multicast: Any,
    frag: Any,
    frag_id: Any,
    buf: Any,
    flows: Any,
    n_flows: int,
    table: Any,
    arena: Any,
    n_slots: int,
    frag_keys: Any,
    frag_rows: Any,
    idle_ns: int,
    orphans: Any,
    pkt_row: Any,
    pkt_fwd: Any,
) -> tuple[int, int, int, int]:
    """Fold packets ``start..count`` into ``flows``; returns (next index, rows, slots, status).

    ``pkt_row[i]`` is set to the row packet ``i`` was counted in (-1: none) and ``pkt_fwd[i]``
    to whether it was sent by side ``a``, for the stream engine that reads on.
    """
    mask = table.shape[0] - 1
    max_payload = arena.shape[1]
    for i in range(start, count):
        pkt_row[i] = -1
        if l3[i] == L3_NONE:
            continue
        if max_payload > 0 and n_slots == arena.shape[0]:
            # Room for the one payload slot this packet may need, before anything is counted:
            # the caller grows the arena and resumes at this same packet.
            return i, n_flows, n_slots, NEED_SLOTS
        s_hi = src_hi[i]
        s_lo = src_lo[i]
        d_hi = dst_hi[i]
        d_lo = dst_lo[i]
        p = proto[i]
        ts = ts_ns[i]
        length = wire_len[i]

        if frag[i] == FRAG_LATER:
            # A later fragment has no ports: it belongs to the flow of its first fragment.
            fslot = _mix(
                s_lo
                ^ (d_lo << np.uint64(1))
                ^ _mix(s_hi ^ d_hi)
                ^ np.uint64(frag_id[i] | (np.uint64(p) << np.uint64(32)))
            ) & np.uint64(FRAG_CACHE - 1)
            row = frag_rows[fslot]
            if (
                row >= 0
                and frag_keys[fslot, 0] == s_hi
                and frag_keys[fslot, 1] == s_lo
                and frag_keys[fslot, 2] == d_hi
                and frag_keys[fslot, 3] == d_lo
                and frag_keys[fslot, 4] == np.uint64(frag_id[i] | (np.uint64(p) << np.uint64(32)))
            ):
                f = flows[row]
                if f.a_lo == s_lo and f.a_hi == s_hi:
                    f.pkts_ab += 1
                    f.bytes_ab += length
                else:
                    f.pkts_ba += 1
                    f.bytes_ba += length
                if ts > f.last_ts:
                    f.last_ts = ts
                f.last_file = file_index
                f.last_frame = frame[i]
            else:
                orphans[0] += 1
            continue

        s_port = np.int64(sport[i])
        d_port = np.int64(dport[i])
        flags = tcp_flags[i]
        seq = tcp_seq[i]

        # ---- find the flow of this 5-tuple (either direction)
        slot = _pair_hash(s_hi, s_lo, d_hi, d_lo, s_port, d_port, p) & mask
        row = -1
        forward = True
        while True:
            other = table[slot]
            if other < 0:
                break
            g = flows[other]
            if g.proto == p:
                if (
                    g.a_port == s_port
                    and g.b_port == d_port
                    and g.a_lo == s_lo
                    and g.b_lo == d_lo
                    and g.a_hi == s_hi
                    and g.b_hi == d_hi
                ):
                    row = other
                    forward = True
                    break
                if (
                    g.a_port == d_port
                    and g.b_port == s_port
                    and g.a_lo == d_lo
                    and g.b_lo == s_lo
                    and g.a_hi == d_hi
                    and g.b_hi == s_hi
                ):
                    row = other
                    forward = False
                    break
            slot = (slot + 1) & mask

        # ---- does this packet start a new flow on a known 5-tuple?
        new_flow: Any = row < 0
        if not new_flow:
            f = flows[row]
            if p == IPPROTO_TCP:
                # A SYN whose sequence number differs from the first one seen from that side
                # opens a new connection on a reused 5-tuple (as Wireshark's tcp.stream does,
                # epan/dissectors/packet-tcp.c); after FIN/RST that is a new flow too.
                if (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN:
                    if forward:
                        known, base = (f.tcp & BASE_A) != 0, f.base_seq_ab
                    else:
                        known, base = (f.tcp & BASE_B) != 0, f.base_seq_ba
                    if known and base != seq:
                        new_flow = True
            elif idle_ns > 0 and ts - f.last_ts > idle_ns:
                new_flow = True  # idle timeout (see FlowConfig.idle_timeout)

        if new_flow:
            if n_flows == flows.shape[0]:
                return i, n_flows, n_slots, NEED_ROWS
            if row < 0 and 2 * (n_flows + 1) > table.shape[0]:
                return i, n_flows, n_slots, NEED_TABLE
            row = n_flows
            n_flows += 1
            table[slot] = row  # a new row for a reused 5-tuple replaces the old one here
            forward = True
            f = flows[row]
            f.a_hi = s_hi
            f.a_lo = s_lo
            f.b_hi = d_hi
            f.b_lo = d_lo
            f.a_port = s_port
            f.b_port = d_port
            f.proto = p
            f.l3 = l3[i]
            if l2_multicast[i]:
                f.b_group = True
            elif d_hi == 0 and (d_lo >> np.uint64(32)) == np.uint64(0xFFFF):
                f.b_group = (d_lo & np.uint64(0xFFFFFFFF)) >= np.uint64(0xE0000000)
            else:
                f.b_group = (d_hi >> np.uint64(56)) == np.uint64(0xFF)
            f.first_ts = ts
            f.last_ts = ts
            f.first_file = file_index
            f.first_frame = frame[i]
            f.pkts_ab = 0
            f.pkts_ba = 0
            f.bytes_ab = 0
            f.bytes_ba = 0
            f.flags_ab = 0
            f.flags_ba = 0
            f.tcp = 0
            f.pay_state_ab = PAY_NONE
            f.pay_state_ba = PAY_NONE
            f.pay_slot_ab = -1
            f.pay_slot_ba = -1
            f.pay_len_ab = 0
            f.pay_len_ba = 0
        else:
            f = flows[row]

        pkt_row[i] = row
        pkt_fwd[i] = forward
        # ---- counters
        if forward:
            f.pkts_ab += 1
            f.bytes_ab += length
            f.flags_ab |= flags
        else:
            f.pkts_ba += 1
            f.bytes_ba += length
            f.flags_ba |= flags
        if ts < f.first_ts:
            f.first_ts = ts
        if ts > f.last_ts:
            f.last_ts = ts
        f.last_file = file_index
        f.last_frame = frame[i]

        # ---- TCP state seen
        if p == IPPROTO_TCP:
            if forward and (f.tcp & BASE_A) == 0:
                f.tcp |= BASE_A
                f.base_seq_ab = seq
            elif not forward and (f.tcp & BASE_B) == 0:
                f.tcp |= BASE_B
                f.base_seq_ba = seq
            syn_ack = flags & (TCP_SYN | TCP_ACK)
            if syn_ack == TCP_SYN:
                f.tcp |= SYN_A if forward else SYN_B
            elif syn_ack == TCP_SYN | TCP_ACK:
                f.tcp |= SYNACK_A if forward else SYNACK_B
            elif flags & TCP_ACK:
                # the SYN sender acknowledges after the other side's SYN+ACK
                if (forward and (f.tcp & SYN_A) and (f.tcp & SYNACK_B)) or (
                    (not forward) and (f.tcp & SYN_B) and (f.tcp & SYNACK_A)
                ):
                    f.tcp |= HANDSHAKE
            if flags & TCP_FIN:
                f.tcp |= FIN_A if forward else FIN_B
            if flags & TCP_RST:
                f.tcp |= RST_SEEN

        # ---- first payload bytes of each direction
        if max_payload > 0:
            state = f.pay_state_ab if forward else f.pay_state_ba
            claimed = np.int64(payload_len[i])
            captured = np.int64(payload_cap[i])
            if state != PAY_DONE:
                accept: Any = False
                skip = np.int64(0)  # leading bytes of this segment already kept
                if p == IPPROTO_TCP:
                    syn = 1 if (flags & TCP_SYN) else 0
                    following = np.uint32(np.uint32(seq) + np.uint32(claimed + syn))
                    if state == PAY_NONE:
                        accept = claimed > 0
                        state = PAY_OPEN
                        advance = True
                    else:
                        expected = f.next_seq_ab if forward else f.next_seq_ba
                        gap = np.int32(np.uint32(seq) - np.uint32(expected))
                        accept = gap == 0 and claimed > 0
                        advance = gap == 0
                        if gap < 0 and -np.int64(gap) < claimed:
                            # a retransmission that also carries new bytes (coalesced
                            # segments): keep what follows the bytes already kept
                            skip = -np.int64(gap)
                            accept = advance = True
                        elif gap > 0:
                            state = PAY_DONE  # bytes before this segment were not captured
                        # else: a retransmission or keep-alive, already covered
                    if advance:
                        if forward:
                            f.next_seq_ab = following
                        else:
                            f.next_seq_ba = following
                else:
                    # UDP and others keep their first datagram with a payload, whole.
                    if state == PAY_NONE and claimed > 0:
                        accept = True
                if accept and captured <= skip:
                    state = PAY_DONE  # the capture cut this segment off: the prefix ends
                elif accept:
                    slot_id = f.pay_slot_ab if forward else f.pay_slot_ba
                    if slot_id < 0:
                        slot_id = n_slots
                        n_slots += 1
                        if forward:
                            f.pay_slot_ab = slot_id
                        else:
                            f.pay_slot_ba = slot_id
                    have = f.pay_len_ab if forward else f.pay_len_ba
                    take = min(captured - skip, max_payload - have)
                    base = payload_off[i] + skip
                    arena[slot_id, have : have + take] = buf[base : base + take]
                    have += take
                    if forward:
                        f.pay_len_ab = have
                    else:
                        f.pay_len_ba = have
                    if have >= max_payload or captured < claimed:
                        state = PAY_DONE  # full, or the capture cut the segment short
                    elif p != IPPROTO_TCP:
                        state = PAY_DONE
                if forward:
                    f.pay_state_ab = state
                else:
                    f.pay_state_ba = state

        if frag[i] == FRAG_FIRST:
            key = np.uint64(frag_id[i] | (np.uint64(p) << np.uint64(32)))
            fslot = _mix(s_lo ^ (d_lo << np.uint64(1)) ^ _mix(s_hi ^ d_hi) ^ key) & np.uint64(
                FRAG_CACHE - 1
            )
            frag_keys[fslot, 0] = s_hi
            frag_keys[fslot, 1] = s_lo
            frag_keys[fslot, 2] = d_hi
            frag_keys[fslot, 3] = d_lo
            frag_keys[fslot, 4] = key
            frag_rows[fslot] = row
    return count, n_flows, n_slots, DONE
