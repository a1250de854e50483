"""Tiny captures built with scapy: a TCP conversation or UDP exchange carrying given payloads.

Tests hand real protocol bytes to ``tcp_session``/``udp_exchange``, write the packets with
``write_capture`` and read them back through the flow table, so that a dissector is tested on
exactly what the flow table keeps of a capture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP  # type: ignore[import-untyped]
from scapy.layers.l2 import Ether  # type: ignore[import-untyped]
from scapy.utils import wrpcap  # type: ignore[import-untyped]

from flowaudit.config import FlowConfig
from flowaudit.flows import FlowTable, build_flow_table

# (direction, payload): "c" is client to server, "s" server to client.
Exchange = Sequence[tuple[str, bytes]]

_MSS = 1460


def tcp_session(
    client: str,
    server: str,
    client_port: int,
    server_port: int,
    exchange: Exchange,
    *,
    start: float = 1_700_000_000.0,
    handshake: bool = True,
    close: bool = True,
) -> list[Any]:
    """Packets of one TCP connection: handshake, each payload (cut to MSS segments), FIN/ACK."""
    packets: list[Any] = []
    t = start
    seq = {"c": 1000, "s": 5000}
    ends = {
        "c": (client, server, client_port, server_port),
        "s": (server, client, server_port, client_port),
    }

    def send(side: str, flags: str, data: bytes = b"") -> None:
        nonlocal t
        src, dst, sport, dport = ends[side]
        other = "s" if side == "c" else "c"
        pkt = (
            Ether()
            / IP(src=src, dst=dst)
            / TCP(sport=sport, dport=dport, flags=flags, seq=seq[side], ack=seq[other])
            / data
        )
        pkt.time = t
        t += 0.001
        packets.append(pkt)
        seq[side] += len(data) + (1 if ("S" in flags or "F" in flags) else 0)

    if handshake:
        seq["c"] -= 1
        send("c", "S")
        seq["s"] -= 1
        send("s", "SA")
        send("c", "A")
    for side, data in exchange:
        for at in range(0, len(data), _MSS):
            send(side, "PA", data[at : at + _MSS])
    if close:
        send("c", "FA")
        send("s", "FA")
        send("c", "A")
    return packets


def udp_exchange(
    client: str,
    server: str,
    client_port: int,
    server_port: int,
    exchange: Exchange,
    *,
    start: float = 1_700_000_000.0,
) -> list[Any]:
    """One datagram per payload, client to server ("c") or back ("s")."""
    packets: list[Any] = []
    for k, (side, data) in enumerate(exchange):
        if side == "c":
            pkt = Ether() / IP(src=client, dst=server) / UDP(sport=client_port, dport=server_port)
        else:
            pkt = Ether() / IP(src=server, dst=client) / UDP(sport=server_port, dport=client_port)
        pkt = pkt / data
        pkt.time = start + k * 0.001
        packets.append(pkt)
    return packets


def write_capture(path: Path, packets: Sequence[Any]) -> Path:
    """Write the packets as a classic pcap (Ethernet) and return the path."""
    wrpcap(str(path), list(packets))
    return path


def flow_table(path: Path, payload_bytes: int = 2048) -> FlowTable:
    """The flow table flowaudit reads from ``path``."""
    return build_flow_table([path], FlowConfig(payload_bytes=payload_bytes))


def payloads_of(path: Path, payload_bytes: int = 2048) -> list[tuple[str, bytes, bytes]]:
    """(transport, client-to-server bytes, server-to-client bytes) of every flow in the capture."""
    table = flow_table(path, payload_bytes)
    c2s, s2c = table.payloads.columns()
    return list(zip(table.columns["proto"].tolist(), c2s, s2c, strict=True))
