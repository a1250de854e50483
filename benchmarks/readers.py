"""The reference readers the benchmark times; each walks a pcap and prints one JSON line.

    python benchmarks/readers.py {floor,dpkt,scapy,nfstream} FILE

The line holds what the reader counted (``packets``, ``flows``, ``tcp_flows``, ``udp_flows``)
and ``loop_s``, the time spent after imports.  Flows are keyed on the direction-free 5-tuple
(VLAN tags ignored), except NFStream, which uses its own definition.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

FlowKey = tuple[int, tuple[bytes, int], tuple[bytes, int]]
Counts = dict[str, Any]


def _summary(flows: dict[FlowKey, list[int]]) -> Counts:
    """Totals of a {5-tuple: [packets, bytes]} table."""
    tcp = sum(1 for k in flows if k[0] == 6)
    return {
        "flows": len(flows),
        "tcp_flows": tcp,
        "udp_flows": len(flows) - tcp,
        "flow_packets": sum(v[0] for v in flows.values()),
    }


def read_floor(path: str) -> Counts:
    """Read the file in 8 MiB blocks and do nothing else: the I/O floor."""
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(view):
            total += n
    return {"bytes": total}


def read_dpkt(path: str) -> Counts:
    """dpkt's pcap reader and Ethernet/VLAN/IP/IPv6/TCP/UDP parsers, flows in a dict."""
    import dpkt

    flows: dict[FlowKey, list[int]] = {}
    packets = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            packets += 1
            eth = dpkt.ethernet.Ethernet(buf)  # 802.1Q tags are unwrapped by dpkt
            ip = eth.data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            l4 = ip.data
            if not isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                continue
            a, b = (ip.src, l4.sport), (ip.dst, l4.dport)
            key: FlowKey = (ip.p, a, b) if a <= b else (ip.p, b, a)
            entry = flows.get(key)
            if entry is None:
                flows[key] = [1, len(buf)]
            else:
                entry[0] += 1
                entry[1] += len(buf)
    return {"packets": packets, **_summary(flows)}


def read_scapy(path: str) -> Counts:
    """scapy's PcapReader with its default dissection; 5-tuple from the IP/IPv6/TCP/UDP layers."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader

    flows: dict[FlowKey, list[int]] = {}
    packets = 0
    with PcapReader(path) as reader:
        for pkt in reader:
            packets += 1
            if IP in pkt:
                net = pkt[IP]
                src, dst, proto = net.src, net.dst, net.proto
            elif IPv6 in pkt:
                net = pkt[IPv6]
                src, dst, proto = net.src, net.dst, net.nh
            else:
                continue
            if TCP in pkt:
                l4 = pkt[TCP]
            elif UDP in pkt:
                l4 = pkt[UDP]
            else:
                continue
            a, b = (src, l4.sport), (dst, l4.dport)
            key: FlowKey = (proto, a, b) if a <= b else (proto, b, a)
            entry = flows.get(key)
            if entry is None:
                flows[key] = [1, len(pkt)]
            else:
                entry[0] += 1
                entry[1] += len(pkt)
    return {"packets": packets, **_summary(flows)}


def read_nfstream(path: str, meters: int = 0) -> Counts:
    """NFStream without statistics or nDPI dissection; flows as NFStream defines them."""
    from nfstream import NFStreamer

    streamer = NFStreamer(
        source=path,
        statistical_analysis=False,
        n_dissections=0,
        idle_timeout=120,
        active_timeout=1800,
        n_meters=meters,
    )
    flows = tcp = udp = packets = 0
    for flow in streamer:
        flows += 1
        packets += flow.bidirectional_packets
        if flow.protocol == 6:
            tcp += 1
        elif flow.protocol == 17:
            udp += 1
    return {
        "flows": flows,
        "tcp_flows": tcp,
        "udp_flows": udp,
        "flow_packets": packets,
        "n_meters": streamer.n_meters,
    }


READERS: dict[str, Callable[[str], Counts]] = {
    "floor": read_floor,
    "dpkt": read_dpkt,
    "scapy": read_scapy,
    "nfstream": read_nfstream,
}


def main(argv: list[str] | None = None) -> int:
    """Command line: run one reader, print its JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reader", choices=sorted(READERS))
    ap.add_argument("file")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    counts = READERS[args.reader](args.file)
    counts["loop_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
