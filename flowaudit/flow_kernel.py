"""Compiled flow-state update: one pass over a ``PacketBatch`` into the running flow table.

Called by ``flows.py``; kept apart so that the Python side there reads as the specification and
this file as the loop. Flow state lives in one numpy structured array (``FLOW_DTYPE``), found by
an open-addressing hash table keyed by the bidirectional 5-tuple. Side ``a`` of a flow is the
sender of its first packet, side ``b`` the receiver; who is client and server is decided at the
end (``flows.py``) from what the flow saw.

When a resource runs out (flow rows, hash table, payload slots) the kernel stops with a status
and the index to resume from; Python grows the arrays and calls it again.

``update_flows`` and ``rebuild_table`` run in C (``flowaudit/_kernels.c``); the ``_py``
functions here are their specification, line for line, and the fallback (``kernels.py``).
They compute in Python ints, masking to the C widths where C wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flowaudit.capture import kernels
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
    ],
    align=True,  # the layout of the C struct Flow (flowaudit/_kernels.c), checked at import
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


M64 = 0xFFFFFFFFFFFFFFFF
M32 = 0xFFFFFFFF


def _mix(value: int) -> int:
    # splitmix64 finaliser
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & M64
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & M64
    value ^= value >> 31
    return value


def _pair_hash(
    s_hi: int, s_lo: int, d_hi: int, d_lo: int, s_port: int, d_port: int, proto: int
) -> int:
    # Symmetric in the two ends, so both directions of a flow land on the same chain.
    ports = (s_port ^ d_port) | ((s_port + d_port) << 17)
    return _mix((s_lo ^ d_lo) ^ _mix(s_hi ^ d_hi) ^ ((ports << 24) & M64) ^ proto)


def _frag_slot(s_hi: int, s_lo: int, d_hi: int, d_lo: int, key: int) -> int:
    return _mix(s_lo ^ ((d_lo << 1) & M64) ^ _mix(s_hi ^ d_hi) ^ key) & (FRAG_CACHE - 1)


def _key(f: Any) -> tuple[int, ...]:
    return (
        int(f["proto"]),
        int(f["a_port"]),
        int(f["b_port"]),
        int(f["a_lo"]),
        int(f["b_lo"]),
        int(f["a_hi"]),
        int(f["b_hi"]),
    )


def rebuild_table_py(flows: Any, n_flows: int, table: Any) -> None:
    """Re-insert every flow into an empty (all -1) table; later rows replace earlier ones."""
    mask = table.shape[0] - 1
    for row in range(n_flows):
        f = flows[row]
        key = _key(f)
        proto, a_port, b_port, a_lo, b_lo, a_hi, b_hi = key
        slot = _pair_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, proto) & mask
        while True:
            other = int(table[slot])
            if other < 0 or _key(flows[other]) == key:
                table[slot] = row
                break
            slot = (slot + 1) & mask


def update_flows_py(
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
    buflen = buf.shape[0]
    for i in range(start, count):
        pkt_row[i] = -1
        if l3[i] == L3_NONE:
            continue
        if max_payload > 0 and n_slots == arena.shape[0]:
            # Room for the one payload slot this packet may need, before anything is counted:
            # the caller grows the arena and resumes at this same packet.
            return i, n_flows, n_slots, NEED_SLOTS
        s_hi, s_lo = int(src_hi[i]), int(src_lo[i])
        d_hi, d_lo = int(dst_hi[i]), int(dst_lo[i])
        p = int(proto[i])
        ts = int(ts_ns[i])
        length = int(wire_len[i])

        if frag[i] == FRAG_LATER:
            # A later fragment has no ports: it belongs to the flow of its first fragment.
            key = int(frag_id[i]) | (p << 32)
            fslot = _frag_slot(s_hi, s_lo, d_hi, d_lo, key)
            row = int(frag_rows[fslot])
            if 0 <= row < n_flows and tuple(int(k) for k in frag_keys[fslot]) == (
                s_hi,
                s_lo,
                d_hi,
                d_lo,
                key,
            ):
                f = flows[row]
                if f["a_lo"] == s_lo and f["a_hi"] == s_hi:
                    f["pkts_ab"] += 1
                    f["bytes_ab"] += length
                else:
                    f["pkts_ba"] += 1
                    f["bytes_ba"] += length
                if ts > f["last_ts"]:
                    f["last_ts"] = ts
                f["last_file"] = file_index
                f["last_frame"] = frame[i]
            else:
                orphans[0] += 1
            continue

        s_port = int(sport[i])
        d_port = int(dport[i])
        flags = int(tcp_flags[i])
        seq = int(tcp_seq[i])

        # ---- find the flow of this 5-tuple (either direction)
        slot = _pair_hash(s_hi, s_lo, d_hi, d_lo, s_port, d_port, p) & mask
        row = -1
        forward = True
        while True:
            other = int(table[slot])
            if other < 0:
                break
            g_key = _key(flows[other])
            if g_key == (p, s_port, d_port, s_lo, d_lo, s_hi, d_hi):
                row, forward = other, True
                break
            if g_key == (p, d_port, s_port, d_lo, s_lo, d_hi, s_hi):
                row, forward = other, False
                break
            slot = (slot + 1) & mask

        # ---- does this packet start a new flow on a known 5-tuple?
        new_flow = row < 0
        if not new_flow:
            f = flows[row]
            if p == IPPROTO_TCP:
                # A SYN whose sequence number differs from the first one seen from that side
                # opens a new connection on a reused 5-tuple (as Wireshark's tcp.stream does,
                # epan/dissectors/packet-tcp.c); after FIN/RST that is a new flow too.
                if (flags & (TCP_SYN | TCP_ACK)) == TCP_SYN:
                    if forward:
                        known, base = (f["tcp"] & BASE_A) != 0, int(f["base_seq_ab"])
                    else:
                        known, base = (f["tcp"] & BASE_B) != 0, int(f["base_seq_ba"])
                    if known and base != seq:
                        new_flow = True
            elif idle_ns > 0 and ts - int(f["last_ts"]) > idle_ns:
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
            f["a_hi"], f["a_lo"], f["b_hi"], f["b_lo"] = s_hi, s_lo, d_hi, d_lo
            f["a_port"], f["b_port"], f["proto"], f["l3"] = s_port, d_port, p, l3[i]
            if l2_multicast[i]:
                f["b_group"] = True
            elif d_hi == 0 and (d_lo >> 32) == 0xFFFF:
                f["b_group"] = (d_lo & M32) >= 0xE0000000
            else:
                f["b_group"] = (d_hi >> 56) == 0xFF
            f["first_ts"] = f["last_ts"] = ts
            f["first_file"] = file_index
            f["first_frame"] = frame[i]
            for name in ("pkts_ab", "pkts_ba", "bytes_ab", "bytes_ba", "flags_ab", "flags_ba"):
                f[name] = 0
            f["tcp"] = 0
            f["pay_state_ab"] = f["pay_state_ba"] = PAY_NONE
            f["pay_slot_ab"] = f["pay_slot_ba"] = -1
            f["pay_len_ab"] = f["pay_len_ba"] = 0
        else:
            f = flows[row]

        pkt_row[i] = row
        pkt_fwd[i] = forward
        ab = "ab" if forward else "ba"
        # ---- counters
        f["pkts_" + ab] += 1
        f["bytes_" + ab] += length
        f["flags_" + ab] |= flags
        if ts < f["first_ts"]:
            f["first_ts"] = ts
        if ts > f["last_ts"]:
            f["last_ts"] = ts
        f["last_file"] = file_index
        f["last_frame"] = frame[i]

        # ---- TCP state seen
        if p == IPPROTO_TCP:
            tcp = int(f["tcp"])
            if forward and (tcp & BASE_A) == 0:
                tcp |= BASE_A
                f["base_seq_ab"] = seq
            elif not forward and (tcp & BASE_B) == 0:
                tcp |= BASE_B
                f["base_seq_ba"] = seq
            syn_ack = flags & (TCP_SYN | TCP_ACK)
            if syn_ack == TCP_SYN:
                tcp |= SYN_A if forward else SYN_B
            elif syn_ack == TCP_SYN | TCP_ACK:
                tcp |= SYNACK_A if forward else SYNACK_B
            elif flags & TCP_ACK:
                # the SYN sender acknowledges after the other side's SYN+ACK
                if (forward and (tcp & SYN_A) and (tcp & SYNACK_B)) or (
                    (not forward) and (tcp & SYN_B) and (tcp & SYNACK_A)
                ):
                    tcp |= HANDSHAKE
            if flags & TCP_FIN:
                tcp |= FIN_A if forward else FIN_B
            if flags & TCP_RST:
                tcp |= RST_SEEN
            f["tcp"] = tcp

        # ---- first payload bytes of each direction
        if max_payload > 0:
            state = int(f["pay_state_" + ab])
            claimed = int(payload_len[i])
            captured = int(payload_cap[i])
            if state != PAY_DONE:
                accept = False
                skip = 0  # leading bytes of this segment already kept
                if p == IPPROTO_TCP:
                    syn = 1 if (flags & TCP_SYN) else 0
                    following = (seq + claimed + syn) & M32
                    if state == PAY_NONE:
                        accept = claimed > 0
                        state = PAY_OPEN
                        advance = True
                    else:
                        gap = (seq - int(f["next_seq_" + ab])) & M32
                        gap = gap - (1 << 32) if gap >= 1 << 31 else gap  # as int32
                        accept = gap == 0 and claimed > 0
                        advance = gap == 0
                        if gap < 0 and -gap < claimed:
                            # a retransmission that also carries new bytes (coalesced
                            # segments): keep what follows the bytes already kept
                            skip = -gap
                            accept = advance = True
                        elif gap > 0:
                            state = PAY_DONE  # bytes before this segment were not captured
                        # else: a retransmission or keep-alive, already covered
                    if advance:
                        f["next_seq_" + ab] = following
                elif state == PAY_NONE and claimed > 0:
                    # UDP and others keep their first datagram with a payload, whole.
                    accept = True
                if accept and captured <= skip:
                    state = PAY_DONE  # the capture cut this segment off: the prefix ends
                elif accept:
                    slot_id = int(f["pay_slot_" + ab])
                    if slot_id < 0:
                        slot_id = n_slots
                        n_slots += 1
                        f["pay_slot_" + ab] = slot_id
                    have = int(f["pay_len_" + ab])
                    take = min(captured - skip, max_payload - have)
                    base = int(payload_off[i]) + skip
                    if base < 0 or base > buflen:
                        take = 0
                    take = max(0, min(take, buflen - base))
                    arena[slot_id, have : have + take] = buf[base : base + take]
                    have += take
                    f["pay_len_" + ab] = have
                    if have >= max_payload or captured < claimed:
                        state = PAY_DONE  # full, or the capture cut the segment short
                    elif p != IPPROTO_TCP:
                        state = PAY_DONE
                f["pay_state_" + ab] = state

        if frag[i] == FRAG_FIRST:
            key = int(frag_id[i]) | (p << 32)
            fslot = _frag_slot(s_hi, s_lo, d_hi, d_lo, key)
            frag_keys[fslot] = (s_hi, s_lo, d_hi, d_lo, key)
            frag_rows[fslot] = row
    return count, n_flows, n_slots, DONE


rebuild_table: Callable[..., None] = rebuild_table_py
update_flows: Callable[..., tuple[int, int, int, int]] = update_flows_py


def _layout_matches(module: Any) -> bool:
    layout = module.flow_layout()
    if layout.pop("itemsize") != FLOW_DTYPE.itemsize:
        return False
    fields: dict[str, Any] = dict(FLOW_DTYPE.fields or {})
    return set(layout) == set(fields) and all(fields[n][1] == at for n, at in layout.items())


if kernels.compiled is not None:
    if not _layout_matches(kernels.compiled):
        raise ImportError(
            "flowaudit._kernels was built for another FLOW_DTYPE: reinstall flowaudit"
        )
    rebuild_table = kernels.compiled.rebuild_table
    update_flows = kernels.compiled.update_flows
