"""Generate a large synthetic ConfigMgr-site classic pcap quickly, with vectorised numpy.

The capture is little-endian, microsecond, Ethernet (linktype 1).  Every flow has a unique
bidirectional 5-tuple, TCP flows carry a proper handshake, correct seq/ack numbers and a
FIN/RST close (or none, for sessions still open at the end), packets of all flows are
interleaved in time, about 5 % of flows are IPv6 and about 10 % of frames carry an 802.1Q tag.
A JSON sidecar (``<stem>.truth.json``) records the ground truth.  ``--slice N`` instead copies
the first N packets of an existing capture to another file.
"""

from __future__ import annotations

import argparse
import json
import mmap
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

TCP = 6
UDP = 17
EPHEMERAL_LO = 49152
EPHEMERAL_HI = 65535
SNAPLEN = 65535
BASE_EPOCH_S = 1_710_234_000  # 2024-03-12 09:00:00 UTC
MAX_GAP_US = 30_000_000  # no flow is idle longer than this (NFStream's idle timeout is 120 s)
CHUNK_PACKETS = 262_144
ORDINARY_SHARE = 0.78  # of the packets; bulk content transfers carry the rest

# TCP flags
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10

# close kinds of a TCP flow
CLOSE_FIN, CLOSE_RST, CLOSE_NONE = 0, 1, 2
CLOSE_PACKETS = np.array([3, 1, 0], dtype=np.int64)

# payload fill patterns
FILLS = ("zero", "ff", "random")

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


def ip4(text: str) -> int:
    """Dotted quad to int."""
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _host_pools() -> dict[str, I64]:
    """Address pools (IPv4 as ints; IPv6 addresses embed them) the services draw from."""
    ws = np.arange(6000, dtype=np.int64)
    workstations = ip4("10.10.0.0") + (ws // 250) * 256 + ws % 250 + 2
    subnets = np.arange(24, dtype=np.int64)

    def hosts(*names: str) -> I64:
        return np.array([ip4(n) for n in names], dtype=np.int64)

    return {
        "ws": workstations,
        "admin": ip4("10.0.1.50") + np.arange(10, dtype=np.int64),
        "dc": hosts("10.0.0.2", "10.0.0.3"),
        "dhcp": hosts("10.0.0.5"),
        "site": hosts("10.0.0.10"),
        "mp": hosts("10.0.0.11", "10.0.0.16"),
        "dp": hosts("10.0.0.12", "10.0.0.13", "10.0.0.14"),
        "smbsrv": hosts("10.0.0.10", "10.0.0.12", "10.0.0.13", "10.0.0.14"),
        "sitesys": hosts("10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.15", "10.0.0.30"),
        "sqlcli": hosts("10.0.0.10", "10.0.0.11", "10.0.0.15", "10.0.0.16"),
        "sql": hosts("10.0.0.20"),
        "ssb_a": hosts("10.0.0.10", "10.0.0.40"),
        "ssb_b": hosts("10.0.0.20", "10.0.0.41"),
        "sup": hosts("10.0.0.30"),
        "bcast": ip4("10.10.0.255") + subnets * 256,
        "mcast": ip4("239.255.0.1") + np.arange(4, dtype=np.int64) * 256,
    }


@dataclass(frozen=True)
class Service:
    """One kind of flow: who talks to whom on which port, and how its packets look.

    ``median``/``lo_n``/``hi_n`` count data packets (TCP: besides handshake and close).
    Payload sizes per direction (c = initiator to responder, s = back): a packet is a pure
    ACK (payload 0) with probability ``*_ack``, full-sized (``full`` or the MSS) with
    probability ``*_full``, else uniform in [``*_lo``, ``*_hi``].
    """

    name: str
    proto: int
    port: int
    share: float  # weight among ordinary flows (0 for bulk-only services)
    median: float
    sigma: float
    lo_n: int
    hi_n: int
    initiators: str
    responders: str
    port_hi: int = 0  # responder port range upper bound; 0 = fixed port
    init_port: int = 0  # 0 = ephemeral initiator port, else this fixed port
    pattern: str = "random"  # random | alternate | oneway
    p_s2c: float = 0.5
    c_ack: float = 0.0
    c_full: float = 0.0
    c_lo: int = 40
    c_hi: int = 400
    s_ack: float = 0.0
    s_full: float = 0.0
    s_lo: int = 40
    s_hi: int = 400
    full: int = 0  # size of a "full" payload; 0 = MSS
    gap_ms: float = 10.0  # mean gap between data packets
    v6: bool = True  # may run over IPv6
    bulk: bool = False  # a content transfer (sized from the bulk budget)
    elastic: bool = True  # sizes are scaled to meet the packet budget


# fmt: off
SERVICES: tuple[Service, ...] = (
    # ---- TCP, ordinary -------------------------------------------------------------------------
    Service("smb", TCP, 445, 8.0, 14, 1.0, 1, 400, "ws", "smbsrv", p_s2c=0.55,
            c_ack=0.4, c_lo=60, c_hi=300, s_ack=0.3, s_full=0.05, s_lo=80, s_hi=700),
    Service("rpc-epmap", TCP, 135, 4.0, 4, 0.3, 2, 12, "ws", "sitesys", pattern="alternate",
            c_lo=72, c_hi=220, s_lo=100, s_hi=180, gap_ms=3),
    Service("rpc-dyn", TCP, EPHEMERAL_LO, 5.0, 10, 0.9, 2, 300, "ws", "sitesys",
            port_hi=EPHEMERAL_HI, c_ack=0.2, c_lo=80, c_hi=600, s_ack=0.2, s_lo=80, s_hi=1200),
    Service("sql", TCP, 1433, 3.0, 20, 1.2, 2, 3000, "sqlcli", "sql", p_s2c=0.6,
            c_ack=0.3, c_lo=60, c_hi=700, s_ack=0.3, s_full=0.05, s_lo=60, s_hi=900, gap_ms=20),
    Service("service-broker", TCP, 4022, 0.3, 16, 1.0, 2, 400, "ssb_a", "ssb_b",
            c_ack=0.3, c_lo=200, c_hi=1400, s_ack=0.6, s_lo=60, s_hi=300, gap_ms=800),
    Service("client-notify", TCP, 10123, 4.0, 6, 0.6, 1, 60, "ws", "mp",
            c_lo=20, c_hi=120, s_ack=0.5, s_lo=20, s_hi=200, gap_ms=6000),
    Service("http-mp", TCP, 80, 11.0, 8, 0.8, 2, 200, "ws", "mp", p_s2c=0.55,
            c_ack=0.4, c_lo=200, c_hi=700, s_ack=0.3, s_full=0.08, s_lo=150, s_hi=900),
    Service("https-mp", TCP, 443, 9.0, 12, 0.8, 2, 300, "ws", "mp", p_s2c=0.55,
            c_ack=0.4, c_lo=90, c_hi=600, s_ack=0.3, s_full=0.08, s_lo=90, s_hi=900),
    Service("wsus", TCP, 8530, 3.0, 10, 0.8, 2, 300, "ws", "sup", p_s2c=0.6,
            c_ack=0.4, c_lo=200, c_hi=700, s_ack=0.3, s_full=0.12, s_lo=200, s_hi=1000),
    Service("wsus-ssl", TCP, 8531, 1.5, 12, 0.8, 2, 300, "ws", "sup", p_s2c=0.6,
            c_ack=0.4, c_lo=90, c_hi=600, s_ack=0.3, s_full=0.12, s_lo=90, s_hi=1000),
    Service("ldap", TCP, 389, 6.0, 6, 0.7, 2, 120, "ws", "dc", pattern="alternate",
            c_lo=60, c_hi=300, s_lo=80, s_hi=900, gap_ms=4),
    Service("ldaps", TCP, 636, 1.0, 8, 0.7, 2, 120, "sitesys", "dc",
            c_ack=0.2, c_lo=60, c_hi=500, s_ack=0.1, s_lo=80, s_hi=1400, gap_ms=4),
    Service("gc", TCP, 3268, 1.5, 6, 0.7, 2, 120, "sitesys", "dc", pattern="alternate",
            c_lo=60, c_hi=400, s_lo=80, s_hi=1400, gap_ms=4),
    Service("gc-ssl", TCP, 3269, 0.5, 8, 0.7, 2, 120, "sitesys", "dc",
            c_ack=0.2, c_lo=60, c_hi=500, s_ack=0.1, s_lo=80, s_hi=1400, gap_ms=4),
    Service("kerberos", TCP, 88, 4.0, 2, 0.2, 2, 6, "ws", "dc", pattern="alternate",
            c_lo=1200, c_hi=1460, s_lo=1300, s_hi=1460, gap_ms=2),
    Service("rdp", TCP, 3389, 0.5, 300, 0.8, 20, 6000, "admin", "ws", p_s2c=0.6,
            c_ack=0.5, c_lo=40, c_hi=200, s_ack=0.2, s_full=0.03, s_lo=60, s_hi=700,
            gap_ms=100),
    Service("remote-control", TCP, 2701, 0.3, 250, 0.8, 20, 5000, "admin", "ws", p_s2c=0.65,
            c_ack=0.5, c_lo=40, c_hi=200, s_ack=0.2, s_full=0.03, s_lo=60, s_hi=700,
            gap_ms=120),
    Service("winrm", TCP, 5985, 1.0, 14, 0.7, 2, 300, "admin", "sitesys", p_s2c=0.5,
            c_ack=0.3, c_lo=200, c_hi=1000, s_ack=0.3, s_lo=200, s_hi=1000, gap_ms=15),
    Service("winrm-ssl", TCP, 5986, 0.5, 14, 0.7, 2, 300, "admin", "sitesys", p_s2c=0.5,
            c_ack=0.3, c_lo=200, c_hi=1000, s_ack=0.3, s_lo=200, s_hi=1000, gap_ms=15),
    # ---- UDP, ordinary -------------------------------------------------------------------------
    Service("dns", UDP, 53, 19.0, 2, 0.15, 2, 4, "ws", "dc", pattern="alternate",
            c_lo=32, c_hi=70, s_lo=48, s_hi=300, gap_ms=1, elastic=False),
    Service("kerberos-udp", UDP, 88, 1.0, 2, 0.1, 2, 4, "ws", "dc", pattern="alternate",
            c_lo=180, c_hi=400, s_lo=200, s_hi=1400, gap_ms=2, elastic=False),
    Service("cldap", UDP, 389, 2.0, 2, 0.1, 2, 4, "ws", "dc", pattern="alternate",
            c_lo=150, c_hi=220, s_lo=150, s_hi=250, gap_ms=1, elastic=False),
    Service("dhcp", UDP, 67, 1.0, 2, 0.2, 2, 4, "ws", "dhcp", init_port=68,
            pattern="alternate", c_lo=300, c_hi=350, s_lo=300, s_hi=360, gap_ms=2, v6=False,
            elastic=False),
    Service("binl-pxe", UDP, 4011, 0.3, 2, 0.3, 2, 6, "ws", "dp", init_port=68,
            pattern="alternate", c_lo=300, c_hi=550, s_lo=300, s_hi=600, gap_ms=5, v6=False,
            elastic=False),
    Service("tftp-data", UDP, EPHEMERAL_LO, 0.2, 600, 0.5, 200, 20000, "dp", "ws",
            port_hi=EPHEMERAL_HI, pattern="alternate", c_full=1.0, full=1460, s_lo=4, s_hi=4,
            gap_ms=0.4, v6=False),
    Service("tftp-rrq", UDP, 69, 0.0, 1, 0.0, 1, 1, "ws", "dp", pattern="oneway",
            c_lo=40, c_hi=70, v6=False, elastic=False),
    Service("netbios-ns", UDP, 137, 2.0, 2, 0.2, 1, 4, "ws", "sitesys", init_port=137,
            pattern="alternate", c_lo=50, c_hi=50, s_lo=62, s_hi=62, gap_ms=1, v6=False,
            elastic=False),
    Service("netbios-dgm", UDP, 138, 1.0, 1, 0.2, 1, 3, "ws", "bcast", init_port=138,
            pattern="oneway", c_lo=180, c_hi=240, gap_ms=900, v6=False, elastic=False),
    Service("wake-on-lan", UDP, 9, 0.5, 2, 0.4, 1, 5, "site", "bcast", pattern="oneway",
            c_lo=102, c_hi=102, gap_ms=300, v6=False, elastic=False),
    # ---- bulk content transfers (sized from the bulk budget) ------------------------------------
    Service("smb-content", TCP, 445, 3.0, 0, 0.0, 50, 10**9, "ws", "smbsrv", p_s2c=0.66,
            c_ack=0.95, c_lo=100, c_hi=200, s_full=0.95, s_lo=200, s_hi=1400, gap_ms=0.12,
            bulk=True),
    Service("http-content", TCP, 80, 3.0, 0, 0.0, 50, 10**9, "ws", "dp", p_s2c=0.66,
            c_ack=0.95, c_lo=200, c_hi=500, s_full=0.95, s_lo=200, s_hi=1400, gap_ms=0.15,
            bulk=True),
    Service("https-content", TCP, 443, 2.0, 0, 0.0, 50, 10**9, "ws", "dp", p_s2c=0.66,
            c_ack=0.95, c_lo=90, c_hi=500, s_full=0.95, s_lo=200, s_hi=1400, gap_ms=0.15,
            bulk=True),
    Service("wsus-content", TCP, 8530, 1.5, 0, 0.0, 50, 10**9, "ws", "sup", p_s2c=0.66,
            c_ack=0.95, c_lo=200, c_hi=500, s_full=0.95, s_lo=200, s_hi=1400, gap_ms=0.15,
            bulk=True),
    Service("wds-multicast", UDP, 63000, 0.0, 0, 0.0, 50, 10**9, "dp", "mcast", port_hi=64000,
            pattern="oneway", c_lo=1385, c_hi=1385, gap_ms=0.3, v6=False,
            bulk=True),
)
# fmt: on
SERVICE_INDEX = {s.name: i for i, s in enumerate(SERVICES)}


@dataclass
class Flows:
    """Per-flow attributes (arrays of one length)."""

    svc: I64
    proto: I64
    v6: I64
    vlan: I64
    c_ip: I64
    s_ip: I64
    c_port: I64
    s_port: I64
    n: I64
    t0: I64
    close: I64


def _draw_sizes(rng: np.random.Generator, svc: I64) -> I64:
    """Data-packet counts for ordinary flows, lognormal per service, clipped."""
    med = np.array([s.median for s in SERVICES])[svc]
    sig = np.array([s.sigma for s in SERVICES])[svc]
    lo = np.array([s.lo_n for s in SERVICES])[svc]
    hi = np.array([s.hi_n for s in SERVICES])[svc]
    raw = np.exp(np.log(np.maximum(med, 1e-9)) + sig * rng.standard_normal(svc.size))
    return np.clip(np.rint(raw), lo, hi).astype(np.int64)


def _pick(rng: np.random.Generator, pools: dict[str, I64], names: list[str]) -> I64:
    """One random address from each named pool."""
    out = np.empty(len(names), dtype=np.int64)
    arr = np.array(names)
    for name in sorted(set(names)):
        sel = np.flatnonzero(arr == name)
        out[sel] = rng.choice(pools[name], size=sel.size)
    return out


def _responder_ports(rng: np.random.Generator, svc: I64) -> I64:
    lo = np.array([s.port for s in SERVICES])[svc]
    hi = np.array([s.port_hi or s.port for s in SERVICES])[svc]
    return lo + (rng.random(svc.size) * (hi - lo + 1)).astype(np.int64)


def _initiator_ports(rng: np.random.Generator, svc: I64) -> I64:
    fixed = np.array([s.init_port for s in SERVICES])[svc]
    eph = rng.integers(EPHEMERAL_LO, EPHEMERAL_HI + 1, size=svc.size)
    # WDS multicast senders pick from the multicast port range too
    mc = svc == SERVICE_INDEX["wds-multicast"]
    eph[mc] = rng.integers(63000, 64001, size=int(mc.sum()))
    return np.where(fixed > 0, fixed, eph)


def _flow_keys(f: Flows) -> npt.NDArray[np.void]:
    """Canonical (direction-free) 5-tuple per flow, as a structured array for np.unique."""
    a = (f.c_ip << 16) | f.c_port
    b = (f.s_ip << 16) | f.s_port
    keys = np.empty(f.svc.size, dtype=[("p", "i8"), ("v", "i8"), ("lo", "i8"), ("hi", "i8")])
    keys["p"], keys["v"] = f.proto, f.v6
    keys["lo"], keys["hi"] = np.minimum(a, b), np.maximum(a, b)
    return keys


def _make_unique(rng: np.random.Generator, f: Flows, pools: dict[str, I64]) -> None:
    """Redraw endpoints of flows whose 5-tuple repeats an earlier one, until all are unique."""
    fixed = np.array([s.init_port for s in SERVICES])[f.svc]
    for _ in range(1000):
        _, first = np.unique(_flow_keys(f), return_index=True)
        dup = np.setdiff1d(np.arange(f.svc.size), first)
        if dup.size == 0:
            return
        eph = dup[fixed[dup] == 0]
        f.c_port[eph] = _initiator_ports(rng, f.svc[eph])
        fix = dup[fixed[dup] != 0]
        names = [SERVICES[int(i)].initiators for i in f.svc[fix]]
        f.c_ip[fix] = _pick(rng, pools, names)
    raise RuntimeError("could not make the 5-tuples unique; too many flows for the host pools")


def plan_flows(rng: np.random.Generator, packets: int, flows: int, span_s: float) -> Flows:
    """Choose every flow's service, endpoints, size, start time and close kind."""
    pools = _host_pools()
    n_bulk = max(2, round(flows * 0.0015))
    n_mcast = min(3, max(1, n_bulk // 10))
    weights = np.array([s.share for s in SERVICES])
    ordinary_w = np.where([s.bulk for s in SERVICES], 0.0, weights)
    bulk_w = np.where([s.bulk and s.proto == TCP for s in SERVICES], weights, 0.0)
    n_ord = flows - n_bulk
    if n_ord < 1:
        raise ValueError("need more flows")
    svc_ord = rng.choice(len(SERVICES), size=n_ord, p=ordinary_w / ordinary_w.sum())
    # each TFTP transfer comes with its read request (a separate flow to port 69):
    # replace as many DNS-or-other small flows as there are transfers
    tftp = np.flatnonzero(svc_ord == SERVICE_INDEX["tftp-data"])
    others = np.flatnonzero(svc_ord != SERVICE_INDEX["tftp-data"])
    replaced = rng.choice(others, size=min(tftp.size, others.size), replace=False)
    svc_ord[replaced] = SERVICE_INDEX["tftp-rrq"]
    svc_bulk = np.concatenate(
        [
            np.full(n_mcast, SERVICE_INDEX["wds-multicast"]),
            rng.choice(len(SERVICES), size=n_bulk - n_mcast, p=bulk_w / bulk_w.sum()),
        ]
    ).astype(np.int64)
    svc = np.concatenate([svc_ord, svc_bulk]).astype(np.int64)
    proto = np.array([s.proto for s in SERVICES])[svc]
    is_bulk = np.array([s.bulk for s in SERVICES])[svc]

    # close kind (TCP only) and the per-flow packet overhead it implies
    close = rng.choice(3, size=svc.size, p=[0.85, 0.10, 0.05])
    close[proto != TCP] = CLOSE_NONE
    close[is_bulk & (proto == TCP)] = CLOSE_FIN
    overhead = np.where(proto == TCP, 3 + CLOSE_PACKETS[close], 0)

    # ordinary sizes, scaled so that ordinary flows carry ORDINARY_SHARE of the packets
    data = np.zeros(svc.size, dtype=np.int64)
    data[: svc_ord.size] = _draw_sizes(rng, svc_ord)
    elastic = np.array([s.elastic for s in SERVICES])[svc] & ~is_bulk
    lo_n = np.array([s.lo_n for s in SERVICES])[svc]
    hi_n = np.array([s.hi_n for s in SERVICES])[svc]
    target_ord = ORDINARY_SHARE * packets
    fixed_part = (overhead + np.where(elastic, 0, data))[~is_bulk].sum()
    el_sum = data[elastic].sum()
    if el_sum > 0 and target_ord > fixed_part:
        scale = (target_ord - fixed_part) / el_sum
        scaled = np.rint(data[elastic] * scale).astype(np.int64)
        data[elastic] = np.clip(scaled, lo_n[elastic], hi_n[elastic])
    n = data + overhead
    budget = packets - int(n[~is_bulk].sum())
    bulk_min = int((overhead[is_bulk] + 50).sum())
    if budget < bulk_min:
        raise ValueError(
            f"{packets} packets are too few for {flows} flows; use more packets or fewer flows"
        )
    # bulk sizes: heavy-tailed split of the remaining budget
    w = rng.pareto(1.1, size=n_bulk) + 0.2
    share = w / w.sum()
    extra = np.floor(share * (budget - bulk_min)).astype(np.int64)
    n[is_bulk] = overhead[is_bulk] + 50 + extra
    n[np.flatnonzero(is_bulk)[np.argmax(extra)]] += packets - int(n.sum())
    assert int(n.sum()) == packets

    # endpoints
    init_names = [SERVICES[int(i)].initiators for i in svc]
    resp_names = [SERVICES[int(i)].responders for i in svc]
    f = Flows(
        svc=svc,
        proto=proto,
        v6=np.zeros(svc.size, dtype=np.int64),
        vlan=np.zeros(svc.size, dtype=np.int64),
        c_ip=_pick(rng, pools, init_names),
        s_ip=_pick(rng, pools, resp_names),
        c_port=_initiator_ports(rng, svc),
        s_port=_responder_ports(rng, svc),
        n=n,
        t0=np.zeros(svc.size, dtype=np.int64),
        close=close.astype(np.int64),
    )
    # IPv6 for ~5 % of all flows, drawn among the services that can run over it
    v6_ok = np.array([s.v6 for s in SERVICES])[svc] & ~is_bulk
    p6 = min(1.0, 0.05 * svc.size / max(1, int(v6_ok.sum())))
    f.v6 = (v6_ok & (rng.random(svc.size) < p6)).astype(np.int64)
    # tie each TFTP read request to a transfer: same workstation and port, server port 69
    rrq = np.flatnonzero(svc == SERVICE_INDEX["tftp-rrq"])
    k = min(rrq.size, tftp.size)
    f.c_ip[rrq[:k]] = f.s_ip[tftp[:k]]
    f.c_port[rrq[:k]] = f.s_port[tftp[:k]]
    f.s_ip[rrq[:k]] = f.c_ip[tftp[:k]]
    _make_unique(rng, f, pools)

    # start times: uniform over the span; a read request precedes its transfer by a few ms
    span_us = int(span_s * 1e6)
    f.t0 = rng.integers(0, span_us, size=svc.size).astype(np.int64)
    f.t0[rrq[:k]] = np.maximum(0, f.t0[tftp[:k]] - rng.integers(2000, 9000, size=k))

    # VLAN tags on whole flows until ~10 % of the frames are tagged
    order = rng.permutation(svc.size)
    target, tagged = 0.10 * packets, 0
    vids = np.array([10, 20, 30, 110], dtype=np.int64)
    for i in order:
        if tagged + n[i] <= target * 1.01:
            f.vlan[i] = vids[rng.integers(0, vids.size)]
            tagged += int(n[i])
        if tagged >= target:
            break
    return f


def _segmented_exclusive_cumsum(x: I64, starts: I64, fid: I64) -> I64:
    """Sum of x over the earlier packets of the same flow."""
    cs = np.cumsum(x)
    base = cs[starts] - x[starts]
    return cs - x - base[fid]


@dataclass
class Packets:
    """Per-packet attributes, in time order."""

    ts: I64
    fid: I64
    dirn: I64  # 0 initiator->responder, 1 back
    payload: I64
    flags: I64
    seq: I64
    ack: I64
    l4len: I64
    ipid: I64
    win: I64


def _param(name: str, svc: I64) -> npt.NDArray[Any]:
    return np.array([getattr(s, name) for s in SERVICES])[svc]


def build_packets(rng: np.random.Generator, f: Flows) -> Packets:
    """Expand the flows into packets (directions, sizes, flags, seq/ack, times), time-sorted."""
    nflows = f.svc.size
    total = int(f.n.sum())
    starts = np.concatenate([[0], np.cumsum(f.n)[:-1]]).astype(np.int64)
    fid = np.repeat(np.arange(nflows, dtype=np.int64), f.n)
    pos = np.arange(total, dtype=np.int64) - starts[fid]
    n = f.n[fid]
    svc = f.svc[fid]
    is_tcp = f.proto[fid] == TCP
    close = f.close[fid]
    n_close = np.where(is_tcp, CLOSE_PACKETS[close], 0)
    first_close = n - n_close
    in_hs = is_tcp & (pos < 3)
    in_close = is_tcp & (pos >= first_close)
    in_data = ~in_hs & ~in_close

    # directions
    pattern = _param("pattern", f.svc)
    dpos = np.where(is_tcp, pos - 3, pos)  # position within the data phase
    p_s2c = _param("p_s2c", f.svc)[fid]
    dirn = (rng.random(total) < p_s2c).astype(np.int64)
    alt = (pattern == "alternate")[fid]
    dirn[alt] = dpos[alt] % 2
    dirn[(pattern == "oneway")[fid]] = 0
    dirn[in_data & is_tcp & (dpos == 0)] = 0  # the client speaks first
    dirn[in_hs] = np.array([0, 1, 0])[pos[in_hs]]
    closer = rng.integers(0, 2, size=nflows)[fid]
    cpos = pos - first_close
    fin = in_close & (close == CLOSE_FIN)
    dirn[fin] = np.where(cpos[fin] == 1, 1 - closer[fin], closer[fin])
    rst = in_close & (close == CLOSE_RST)
    dirn[rst] = closer[rst]

    # payload sizes
    u = rng.random(total)
    c2s = dirn == 0
    p_ack = np.where(c2s, _param("c_ack", svc), _param("s_ack", svc))
    p_full = np.where(c2s, _param("c_full", svc), _param("s_full", svc))
    lo = np.where(c2s, _param("c_lo", svc), _param("s_lo", svc))
    hi = np.where(c2s, _param("c_hi", svc), _param("s_hi", svc))
    v6 = f.v6[fid] == 1
    mss = np.where(v6, 1440, 1460)
    full = _param("full", svc)
    full = np.where(full > 0, full, mss)
    mid = lo + (rng.random(total) * (hi - lo + 1)).astype(np.int64)
    payload = np.where(u < p_ack, 0, np.where(u < p_ack + p_full, full, mid))
    payload = np.minimum(payload, mss).astype(np.int64)
    # a pure ACK only right after new data from the peer (no duplicate ACKs)
    prev = np.maximum(np.arange(total) - 1, 0)
    acks_new = (pos > 0) & (dirn[prev] != dirn) & (payload[prev] > 0)
    must_carry = in_data & is_tcp & ~acks_new
    payload[must_carry] = np.maximum(payload[must_carry], lo[must_carry])
    payload[~in_data] = 0

    # TCP flags and header lengths
    flags = np.where(payload > 0, PSH | ACK, ACK).astype(np.int64)
    flags[in_hs & (pos == 0)] = SYN
    flags[in_hs & (pos == 1)] = SYN | ACK
    flags[fin & (cpos < 2)] = FIN | ACK
    flags[rst] = RST | ACK
    flags[~is_tcp] = 0
    l4len = np.where(is_tcp, np.where(in_hs & (pos < 2), 32, 20), 8).astype(np.int64)

    # seq/ack: SYN and FIN take one sequence number each
    seqlen = payload + ((flags & SYN) > 0) + ((flags & FIN) > 0)
    sent_c = _segmented_exclusive_cumsum(np.where(c2s, seqlen, 0), starts, fid)
    sent_s = _segmented_exclusive_cumsum(np.where(c2s, 0, seqlen), starts, fid)
    isn = rng.integers(0, 2**32, size=(2, nflows), dtype=np.int64)
    isn_c, isn_s = isn[0][fid], isn[1][fid]
    seq = np.where(c2s, isn_c + sent_c, isn_s + sent_s) & 0xFFFFFFFF
    ack = np.where(c2s, isn_s + sent_s, isn_c + sent_c) & 0xFFFFFFFF
    ack[flags == SYN] = 0
    seq[~is_tcp] = 0
    ack[~is_tcp] = 0

    # times: RTT-sized gaps in the handshake and close, service-specific gaps in the data
    rtt = (rng.gamma(2.0, 400.0, size=nflows) + 80).astype(np.int64)[fid]
    gap_mean = _param("gap_ms", f.svc)[fid] * 1000.0
    gaps = np.minimum(rng.exponential(1.0, size=total) * gap_mean, MAX_GAP_US).astype(np.int64)
    gaps[in_hs] = np.where(pos[in_hs] == 1, rtt[in_hs], 30 + rtt[in_hs] // 10)
    gaps[in_close] = rtt[in_close] // 2
    gaps = np.maximum(gaps, 1)
    gaps[pos == 0] = 0
    ts = f.t0[fid] + np.cumsum(gaps) - (np.cumsum(gaps)[starts] - gaps[starts])[fid]

    ipid = (rng.integers(0, 65536, size=nflows)[fid] + pos) & 0xFFFF
    # window: unscaled in SYNs, scaled by 256 (the SYN's WS=8) afterwards
    win_fl = rng.choice(np.array([513, 1026, 2053, 4106, 8212, 16425]), size=(2, nflows))
    win = np.where(c2s, win_fl[0][fid], win_fl[1][fid]).astype(np.int64)
    syn_win = rng.choice(np.array([64240, 65535, 8192]), size=nflows)[fid]
    win[(flags & SYN) > 0] = syn_win[(flags & SYN) > 0]

    order = np.argsort(ts, kind="stable")
    return Packets(
        ts=ts[order],
        fid=fid[order],
        dirn=dirn[order],
        payload=payload[order],
        flags=flags[order],
        seq=seq[order],
        ack=ack[order],
        l4len=l4len[order],
        ipid=ipid[order],
        win=win[order],
    )


def _be(values: npt.NDArray[Any], nbytes: int) -> U8:
    """Big-endian bytes of each value, shape (n, nbytes)."""
    wide = {2: ">u2", 4: ">u4", 8: ">u8"}[8 if nbytes > 4 else (4 if nbytes > 2 else 2)]
    raw = np.ascontiguousarray(values.astype(wide)).view(np.uint8)
    width = raw.size // max(1, values.size)
    return raw.reshape(values.size, width)[:, width - nbytes :]


def _mac(ip: I64, kind: I64) -> I64:
    """MAC per endpoint: 00:15:5d + low 24 address bits; broadcast or IPv4-multicast MACs."""
    unicast = (0x00155D << 24) | (ip & 0xFFFFFF)
    mcast = (0x01005E << 24) | (ip & 0x7FFFFF)
    return np.where(kind == 2, 0xFFFFFFFFFFFF, np.where(kind == 1, mcast, unicast))


V6_PREFIX = np.frombuffer(bytes.fromhex("fd00cafe0000000000000000"), dtype=np.uint8)
# SYN options as Windows sends them: MSS (1460 / 1440 over IPv6), NOP, WS=8, NOP, NOP, SACK_PERM
SYN_OPTIONS = {
    False: np.frombuffer(bytes.fromhex("020405b4 01 030308 01 01 0402"), np.uint8),
    True: np.frombuffer(bytes.fromhex("020405a0 01 030308 01 01 0402"), np.uint8),
}


def _ones_sum(block: U8) -> npt.NDArray[np.uint64]:
    """Per-row sum of the big-endian 16-bit words of an even-width byte block (unfolded)."""
    words = block.astype(np.uint64)
    return ((words[:, 0::2] << 8) | words[:, 1::2]).sum(axis=1)


def _fold(s: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Ones'-complement checksum of an unfolded word sum."""
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(np.uint64)


def _records(
    p: Packets, f: Flows, sel: slice, fill: U8, fill_byte: int | None, resp_kind: I64
) -> tuple[U8, int, I64]:
    """Bytes of the pcap records of packets[sel] (pcap record header + frame), the frame
    bytes, and where in those bytes each packet's transport payload starts.

    TCP/UDP checksums are computed when the payload is a constant fill (``fill_byte``); with
    random payload they are left zero (as with checksum offload).  IPv4 header checksums are
    always right.
    """
    fid = p.fid[sel]
    cnt = fid.size
    dirn = p.dirn[sel]
    payload = p.payload[sel]
    l4len = p.l4len[sel]
    v6 = f.v6[fid]
    vlan = f.vlan[fid]
    l2len = np.where(vlan > 0, 18, 14)
    l3len = np.where(v6 == 1, 40, 20)
    frame = np.maximum(60, l2len + l3len + l4len + payload)
    rec = 16 + frame
    off = np.concatenate([[0], np.cumsum(rec)[:-1]]).astype(np.int64)
    total = int(rec.sum())
    buf = np.empty(total, dtype=np.uint8)
    for i in range(0, total, fill.size):
        j = min(total, i + fill.size)
        buf[i:j] = fill[: j - i]

    c_ip, s_ip = f.c_ip[fid], f.s_ip[fid]
    src_ip = np.where(dirn == 0, c_ip, s_ip)
    dst_ip = np.where(dirn == 0, s_ip, c_ip)
    src_port = np.where(dirn == 0, f.c_port[fid], f.s_port[fid])
    dst_port = np.where(dirn == 0, f.s_port[fid], f.c_port[fid])
    rk = resp_kind[fid]
    src_mac = _mac(src_ip, np.zeros(cnt, dtype=np.int64))
    dst_mac = _mac(dst_ip, np.where(dirn == 0, rk, 0))
    ts = p.ts[sel] + BASE_EPOCH_S * 1_000_000
    ttl = np.where(dirn == 0, 128, 127)

    cls = (vlan > 0) * 6 + v6 * 3 + np.select([l4len == 8, l4len == 20], [0, 1], 2)
    for code in np.unique(cls):
        m = np.flatnonzero(cls == code)
        has_vlan, is_v6, l4 = bool(code // 6), bool((code // 3) % 2), int(l4len[m[0]])
        h2 = 18 if has_vlan else 14
        h3 = 40 if is_v6 else 20
        width = 16 + h2 + h3 + l4
        rows = np.zeros((m.size, width), dtype=np.uint8)
        hdr = np.stack([ts[m] // 1_000_000, ts[m] % 1_000_000, frame[m], frame[m]], axis=1)
        rows[:, 0:16] = hdr.astype("<u4").view(np.uint8).reshape(m.size, 16)
        rows[:, 16:22] = _be(dst_mac[m], 6)
        rows[:, 22:28] = _be(src_mac[m], 6)
        o = 28
        if has_vlan:
            rows[:, 28:30] = (0x81, 0x00)
            rows[:, 30:32] = _be(vlan[m], 2)
            o = 32
        rows[:, o : o + 2] = (0x86, 0xDD) if is_v6 else (0x08, 0x00)
        o += 2
        l4_and_payload = l4 + payload[m]
        proto = f.proto[fid[m]]
        if is_v6:
            rows[:, o] = 0x60
            rows[:, o + 4 : o + 6] = _be(l4_and_payload, 2)
            rows[:, o + 6] = proto
            rows[:, o + 7] = ttl[m]
            rows[:, o + 8 : o + 20] = V6_PREFIX
            rows[:, o + 20 : o + 24] = _be(src_ip[m], 4)
            rows[:, o + 24 : o + 36] = V6_PREFIX
            rows[:, o + 36 : o + 40] = _be(dst_ip[m], 4)
        else:
            rows[:, o] = 0x45
            rows[:, o + 2 : o + 4] = _be(20 + l4_and_payload, 2)
            rows[:, o + 4 : o + 6] = _be(p.ipid[sel][m], 2)
            rows[:, o + 6] = 0x40  # don't fragment
            rows[:, o + 8] = ttl[m]
            rows[:, o + 9] = proto
            rows[:, o + 12 : o + 16] = _be(src_ip[m], 4)
            rows[:, o + 16 : o + 20] = _be(dst_ip[m], 4)
            rows[:, o + 10 : o + 12] = _be(_fold(_ones_sum(rows[:, o : o + 20])), 2)
        q = o + h3
        rows[:, q : q + 2] = _be(src_port[m], 2)
        rows[:, q + 2 : q + 4] = _be(dst_port[m], 2)
        if l4 == 8:
            rows[:, q + 4 : q + 6] = _be(l4_and_payload, 2)
        else:
            rows[:, q + 4 : q + 8] = _be(p.seq[sel][m], 4)
            rows[:, q + 8 : q + 12] = _be(p.ack[sel][m], 4)
            rows[:, q + 12] = (l4 // 4) << 4
            rows[:, q + 13] = p.flags[sel][m]
            rows[:, q + 14 : q + 16] = _be(p.win[sel][m], 2)
            if l4 == 32:
                rows[:, q + 20 : q + 32] = SYN_OPTIONS[is_v6]
        if fill_byte is not None:
            # pseudo-header (addresses, protocol, length) + transport header + payload
            addr = rows[:, o + 8 : o + 40] if is_v6 else rows[:, o + 12 : o + 20]
            s = _ones_sum(addr) + _ones_sum(rows[:, q : q + l4])
            s += (proto + l4_and_payload).astype(np.uint64)
            if fill_byte:  # words of 0xFFFF add nothing; an odd last byte adds 0xFF00
                s += ((payload[m] % 2) * (fill_byte << 8)).astype(np.uint64)
            csum = _fold(s)
            if l4 == 8:
                rows[:, q + 6 : q + 8] = _be(np.where(csum == 0, 0xFFFF, csum), 2)
            else:
                rows[:, q + 16 : q + 18] = _be(csum, 2)
        # frames shorter than the Ethernet minimum are padded with zeros
        short = np.flatnonzero(frame[m] > h2 + h3 + l4_and_payload)
        if short.size:
            pad_at = off[m[short]] + 16 + h2 + h3 + l4_and_payload[short]
            pad_len = frame[m[short]] - (h2 + h3 + l4_and_payload[short])
            idx = np.repeat(pad_at, pad_len) + (
                np.arange(int(pad_len.sum())) - np.repeat(np.cumsum(pad_len) - pad_len, pad_len)
            )
            buf[idx] = 0
        buf[off[m][:, None] + np.arange(width)] = rows
    return buf, int(frame.sum()), off + 16 + l2len + l3len + l4len


Prefixes = Callable[[Flows, "Packets"], tuple[I64, I64, U8]]
_NONE = np.zeros(0, dtype=np.int64)
_NO_U8 = np.zeros(0, dtype=np.uint8)


def truth_path(capture: Path) -> Path:
    """Where the ground-truth sidecar of a capture lives."""
    return capture.with_name(capture.stem + ".truth.json")


def generate(
    out: Path,
    packets: int = 2_000_000,
    flows: int | None = None,
    seed: int = 1,
    span_s: float = 900.0,
    fill: str = "ff",
    verbose: bool = True,
    prefixes: Prefixes | None = None,
) -> dict[str, Any]:
    """Write the capture and its sidecar; return the ground truth.

    ``prefixes(flows, packets)``, if given, says which bytes open some packets' payloads
    (over the fill): packet indices (ascending, in time order), the length of each prefix (at
    most the packet's payload) and the prefixes' bytes, one after the other.
    """
    t_start = time.perf_counter()
    if flows is None:
        flows = max(10, round(packets * 30_000 / 2_000_000))
    rng = np.random.default_rng(seed)
    f = plan_flows(rng, packets, flows, span_s)
    p = build_packets(rng, f)
    prefixed, prefix_len, prefix_bytes = prefixes(f, p) if prefixes else (_NONE, _NONE, _NO_U8)
    prefix_at = np.concatenate([[0], np.cumsum(prefix_len)]).astype(np.int64)
    t_plan = time.perf_counter() - t_start

    fill_byte = {"zero": 0, "ff": 0xFF}.get(fill)
    if fill_byte is None:
        pool = rng.integers(0, 256, size=1 << 20, dtype=np.uint8)
    else:
        pool = np.full(1 << 20, fill_byte, dtype=np.uint8)
    resp_pool = np.array([s.responders for s in SERVICES])[f.svc]
    resp_kind = np.where(resp_pool == "bcast", 2, np.where(resp_pool == "mcast", 1, 0))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    frame_bytes = 0
    with tmp.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))
        for a in range(0, packets, CHUNK_PACKETS):
            chunk = slice(a, min(packets, a + CHUNK_PACKETS))
            buf, fb, payload_at = _records(p, f, chunk, pool, fill_byte, resp_kind)
            frame_bytes += fb
            lo, hi = np.searchsorted(prefixed, [chunk.start, chunk.stop])
            if hi > lo:
                lengths = prefix_len[lo:hi]
                dest = np.repeat(payload_at[prefixed[lo:hi] - chunk.start], lengths)
                dest += np.arange(dest.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
                buf[dest] = prefix_bytes[prefix_at[lo] : prefix_at[hi]]
            buf.tofile(fh)
    tmp.replace(out)
    elapsed = time.perf_counter() - t_start

    svc_names = np.array([s.name for s in SERVICES])
    per_service = {
        str(name): {"flows": int((f.svc == i).sum()), "packets": int(f.n[f.svc == i].sum())}
        for i, name in enumerate(svc_names)
    }
    is_tcp = f.proto == TCP
    vlan_frames = int(f.n[f.vlan > 0].sum())
    truth: dict[str, Any] = {
        "file": out.name,
        "bytes": out.stat().st_size,
        "packets": packets,
        "frame_bytes": frame_bytes,
        "flows": int(f.svc.size),
        "tcp_flows": int(is_tcp.sum()),
        "udp_flows": int((~is_tcp).sum()),
        "ipv6_flows": int(f.v6.sum()),
        "vlan_flows": int((f.vlan > 0).sum()),
        "vlan_frames": vlan_frames,
        "tcp_closed_fin": int((is_tcp & (f.close == CLOSE_FIN)).sum()),
        "tcp_closed_rst": int((is_tcp & (f.close == CLOSE_RST)).sum()),
        "tcp_open_at_end": int((is_tcp & (f.close == CLOSE_NONE)).sum()),
        "largest_flow_packets": int(f.n.max()),
        "duration_s": round(float(p.ts[-1] - p.ts[0]) / 1e6, 3),
        "seed": seed,
        "span_s": span_s,
        "fill": fill,
        "per_service": per_service,
        "note": "flows = distinct bidirectional 5-tuples (VLAN not part of the key); "
        "each TCP flow has exactly one SYN; no flow idles longer than 30 s",
        "generation_s": round(elapsed, 2),
    }
    truth_path(out).write_text(json.dumps(truth, indent=2) + "\n")
    if verbose:
        print(
            f"wrote {out}: {packets:,} packets, {truth['bytes']:,} bytes "
            f"(avg frame {frame_bytes / packets:.0f} B), {truth['flows']:,} flows "
            f"({truth['tcp_flows']:,} TCP, {truth['udp_flows']:,} UDP, "
            f"{truth['ipv6_flows']:,} IPv6), {vlan_frames / packets:.1%} frames VLAN-tagged, "
            f"{truth['duration_s']:.0f} s of traffic; planned in {t_plan:.1f} s, "
            f"total {elapsed:.1f} s"
        )
    return truth


def write_slice(src: Path, dst: Path, count: int) -> int:
    """Copy the first ``count`` packets of a classic little-endian pcap; return how many."""
    with src.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:4] != b"\xd4\xc3\xb2\xa1":
            raise ValueError(f"{src} is not a little-endian microsecond pcap")
        off, done, size = 24, 0, len(mm)
        while done < count and off + 16 <= size:
            (incl,) = struct.unpack_from("<I", mm, off + 8)
            off += 16 + incl
            done += 1
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        with tmp.open("wb") as out:
            out.write(mm[: min(off, size)])
        tmp.replace(dst)
    return done


def slice_path(capture: Path, count: int) -> Path:
    """Default path of the first-``count``-packets slice of a capture."""
    return capture.with_name(f"{capture.stem}.first{count}.pcap")


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--flows", type=int, default=None, help="default: packets * 0.015")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--span", type=float, default=900.0, help="seconds over which flows start")
    ap.add_argument(
        "--fill",
        choices=FILLS,
        default="ff",
        help="payload bytes (ff: no dissector of tshark loops on it; zero makes KRB5-over-TCP "
        "parse thousands of empty records per segment)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "capture.pcap")
    ap.add_argument(
        "--slice",
        type=int,
        metavar="N",
        help="don't generate: copy the first N packets of --out to --slice-out",
    )
    ap.add_argument("--slice-out", type=Path, help="default: <out stem>.first<N>.pcap")
    args = ap.parse_args(argv)
    if args.slice is not None:
        dst = args.slice_out or slice_path(args.out, args.slice)
        t0 = time.perf_counter()
        done = write_slice(args.out, dst, args.slice)
        print(
            f"wrote {dst}: first {done:,} packets of {args.out}, {dst.stat().st_size:,} bytes "
            f"in {time.perf_counter() - t0:.2f} s"
        )
        return 0
    generate(args.out, args.packets, args.flows, args.seed, args.span, args.fill)
    return 0


if __name__ == "__main__":
    sys.exit(main())
