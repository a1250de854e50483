"""Packets on the wire: complete TCP conversations and UDP exchanges between fixed hosts.

A ``Wire`` collects Ethernet/IPv4 frames with a clock that only moves forward by fixed steps,
so the same calls always give byte-identical captures. TCP conversations have their handshake
(RFC 9293 3.5), every message cut into MSS-sized segments with the peer's acknowledgement
numbers, and an orderly close (FIN from the client, FIN from the server, last ACK).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

# (direction, payload): "c" client to server, "s" server to client.
Exchange = Sequence[tuple[str, bytes]]

MSS = 1460
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
# Windows' default TTL (what a Windows host puts in its own packets).
WINDOWS_TTL = 128


def mac_of(address: str) -> str:
    """A locally administered MAC derived from the IPv4 address (stable across builds)."""
    ip = ipaddress.IPv4Address(address)
    if ip.is_multicast:
        # RFC 1112 6.4: 01-00-5E and the low 23 bits of the group address.
        low = int(ip) & 0x7FFFFF
        return f"01:00:5e:{low >> 16:02x}:{(low >> 8) & 0xFF:02x}:{low & 0xFF:02x}"
    if address == "255.255.255.255" or address.endswith(".255"):
        return BROADCAST_MAC
    return "02:00:" + ":".join(f"{octet:02x}" for octet in ip.packed)


class Wire:
    """Frames of one capture, in the order they are added, with a deterministic clock."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.000250) -> None:
        self.packets: list[Any] = []
        self.clock = start
        self.step = step
        self._ip_id: dict[str, int] = {}

    def pause(self, seconds: float) -> None:
        """Let time pass between conversations."""
        self.clock += seconds

    def frame(self, src: str, dst: str, layer: Any) -> None:
        ident = self._ip_id.get(src, 0x1000 + (int(ipaddress.IPv4Address(src)) & 0xFFF) * 8)
        self._ip_id[src] = (ident + 1) & 0xFFFF
        packet = (
            Ether(src=mac_of(src), dst=mac_of(dst))
            / IP(src=src, dst=dst, ttl=WINDOWS_TTL, id=ident, flags="DF")
            / layer
        )
        self.clock += self.step
        packet.time = round(self.clock, 6)
        self.packets.append(packet)

    def tcp(
        self,
        client: str,
        client_port: int,
        server: str,
        server_port: int,
        exchange: Exchange,
    ) -> None:
        """One TCP conversation: handshake, the messages in order, orderly close."""
        seq = {"c": 0x10000000 + client_port * 4099, "s": 0x60000000 + server_port * 7919}
        ends = {
            "c": (client, server, client_port, server_port),
            "s": (server, client, server_port, client_port),
        }

        def send(side: str, flags: str, data: bytes = b"") -> None:
            src, dst, sport, dport = ends[side]
            other = "s" if side == "c" else "c"
            ack = 0 if flags == "S" else seq[other]
            window = 64240 if side == "c" else 65535
            segment = TCP(
                sport=sport, dport=dport, flags=flags, seq=seq[side], ack=ack, window=window
            )
            self.frame(src, dst, segment / data if data else segment)
            seq[side] = (seq[side] + len(data) + (1 if ("S" in flags or "F" in flags) else 0)) & (
                0xFFFFFFFF
            )

        send("c", "S")
        send("s", "SA")
        send("c", "A")
        last = "c"
        for side, data in exchange:
            for at in range(0, len(data), MSS):
                send(side, "PA", data[at : at + MSS])
            last = side
        if last == "c":
            send("s", "A")
        send("c", "FA")
        send("s", "FA")
        send("c", "A")

    def udp(
        self,
        client: str,
        client_port: int,
        server: str,
        server_port: int,
        exchange: Exchange,
    ) -> None:
        """One datagram per message, client to server ("c") or back ("s")."""
        for side, data in exchange:
            if side == "c":
                self.frame(client, server, UDP(sport=client_port, dport=server_port) / data)
            else:
                self.frame(server, client, UDP(sport=server_port, dport=client_port) / data)

    def write(self, path: Path) -> Path:
        wrpcap(str(path), self.packets)
        return path
