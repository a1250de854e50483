"""Build ``samples/configmgr_site.pcap``: a small, deterministic capture of a ConfigMgr site.

Run ``python samples/make_sample.py`` (needs scapy) to rebuild it; the capture is committed so
the README's first command needs nothing but flowaudit. Hosts (as in ``samples/site.yaml``):

    10.10.0.10  site server           10.10.0.11  SQL Server
    10.10.0.12  management point      10.10.0.13  distribution point
    10.10.0.5   domain controller     10.10.1.0/24 clients

Each TCP connection has its handshake, data in both directions and its close; the payloads are
the first bytes of the real protocols (HTTP with ConfigMgr paths, a TLS ClientHello, SMB2
NEGOTIATE, TDS PRELOGIN, LDAP bind to the global catalog). One plaintext HTTP policy request
and one VLAN-tagged frame are in on purpose.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from scapy.all import DNS, DNSQR, IP, TCP, UDP, Dot1Q, Ether, wrpcap  # type: ignore[import-untyped]

SITE_SERVER, SQL, MP, DP, DC = "10.10.0.10", "10.10.0.11", "10.10.0.12", "10.10.0.13", "10.10.0.5"
CLIENT1, CLIENT2 = "10.10.1.21", "10.10.1.22"
START = 1_700_000_000.0
MAC = {
    SITE_SERVER: "00:15:5d:00:00:10",
    SQL: "00:15:5d:00:00:11",
    MP: "00:15:5d:00:00:12",
    DP: "00:15:5d:00:00:13",
    DC: "00:15:5d:00:00:05",
    CLIENT1: "00:15:5d:00:01:21",
    CLIENT2: "00:15:5d:00:01:22",
}


def http_request(method: str, path: str, host: str, agent: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def tls_client_hello(server_name: str) -> bytes:
    name = server_name.encode()
    sni = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    versions = struct.pack("!HHBHH", 43, 5, 4, 0x0304, 0x0303)
    extensions = sni + versions
    hello = (
        b"\x03\x03"
        + bytes(range(32))
        + b"\x00"
        + b"\x00\x04\x13\x01\xc0\x2f"
        + b"\x01\x00"
        + struct.pack("!H", len(extensions))
        + extensions
    )
    handshake = b"\x01" + struct.pack("!I", len(hello))[1:] + hello
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def smb2_negotiate() -> bytes:
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b"")
    dialects = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311]
    body = struct.pack("<HHHHI16sIHH", 36, len(dialects), 1, 0, 0x7F, b"\x11" * 16, 0, 0, 0)
    body += b"".join(struct.pack("<H", d) for d in dialects)
    message = header + body
    return struct.pack("!I", len(message)) + message  # NetBIOS session service length


def tds_prelogin(packet_type: int = 0x12) -> bytes:
    """PRELOGIN (0x12) or its answer (0x04, tabular result) with VERSION and ENCRYPTION."""
    options = struct.pack("!BHH", 0, 11, 6) + struct.pack("!BHH", 1, 17, 1) + b"\xff"
    data = options + b"\x0f\x00\x07\xd0\x00\x00" + b"\x00"  # version, ENCRYPT_OFF
    return struct.pack("!BBHHBB", packet_type, 1, 8 + len(data), 0, 1, 0) + data


def ldap_bind() -> bytes:
    dn = b"cn=sccm,dc=contoso,dc=com"
    bind = b"\x02\x01\x03" + b"\x04" + bytes([len(dn)]) + dn + b"\x80\x00"
    op = b"\x60" + bytes([len(bind)]) + bind
    message = b"\x02\x01\x01" + op
    return b"\x30" + bytes([len(message)]) + message


class Capture:
    def __init__(self) -> None:
        self.packets: list = []
        self.clock = START

    def frame(self, src: str, dst: str, layer: object, vlan: int | None = None) -> None:
        ether = Ether(src=MAC.get(src, "00:00:5e:00:53:01"), dst=MAC.get(dst, "01:00:5e:7f:00:01"))
        packet = (
            ether / Dot1Q(vlan=vlan) / IP(src=src, dst=dst) / layer
            if vlan
            else (ether / IP(src=src, dst=dst) / layer)
        )
        self.clock += 0.0137
        packet.time = self.clock
        self.packets.append(packet)

    def tcp_session(
        self,
        client: str,
        cport: int,
        server: str,
        sport: int,
        request: bytes,
        reply: bytes,
        vlan: int | None = None,
    ) -> None:
        cseq, sseq = 1000 + cport, 5000 + sport

        def seg(
            src: str, dst: str, sp: int, dp: int, flags: str, seq: int, ack: int, data: bytes = b""
        ) -> None:
            self.frame(
                src,
                dst,
                TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=64240) / data,
                vlan,
            )

        seg(client, server, cport, sport, "S", cseq, 0)
        seg(server, client, sport, cport, "SA", sseq, cseq + 1)
        seg(client, server, cport, sport, "A", cseq + 1, sseq + 1)
        seg(client, server, cport, sport, "PA", cseq + 1, sseq + 1, request)
        seg(server, client, sport, cport, "PA", sseq + 1, cseq + 1 + len(request), reply)
        cfin, sfin = cseq + 1 + len(request), sseq + 1 + len(reply)
        seg(client, server, cport, sport, "FA", cfin, sfin)
        seg(server, client, sport, cport, "FA", sfin, cfin + 1)
        seg(client, server, cport, sport, "A", cfin + 1, sfin + 1)


def build() -> list:
    cap = Capture()
    cap.frame(CLIENT1, DC, UDP(sport=53001, dport=53) / DNS(rd=1, qd=DNSQR(qname="mp.contoso.com")))
    cap.tcp_session(
        CLIENT1,
        50001,
        MP,
        443,
        tls_client_hello("mp.contoso.com"),
        b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00",
    )
    cap.tcp_session(
        CLIENT1,
        50002,
        MP,
        80,
        http_request(
            "CCM_POST",
            "/ccm_system/request",
            "mp.contoso.com",
            "ccmhttp",
            b"<Msg><ID/><Body>policy request</Body></Msg>",
        ),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    cap.tcp_session(
        CLIENT2,
        50003,
        DP,
        80,
        http_request(
            "GET", "/SMS_DP_SMSPKG$/PS100004/sccm?/setup.exe", "dp.contoso.com", "SMS CCM 5.0"
        ),
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nMZ\x90\x00",
    )
    cap.tcp_session(SITE_SERVER, 50004, SQL, 1433, tds_prelogin(), tds_prelogin(0x04))
    cap.tcp_session(SITE_SERVER, 50005, DP, 445, smb2_negotiate(), smb2_negotiate())
    cap.tcp_session(
        MP,
        50006,
        DC,
        3268,
        ldap_bind(),
        b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00",
        vlan=10,
    )
    cap.tcp_session(
        CLIENT2,
        50007,
        MP,
        10123,
        tls_client_hello("mp.contoso.com"),
        b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00",
    )
    for block in range(3):
        cap.frame(DP, "239.255.0.1", UDP(sport=63001, dport=63001) / (bytes([block]) * 512))
    return cap.packets


def main() -> None:
    out = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("configmgr_site.pcap")
    )
    packets = build()
    wrpcap(str(out), packets)
    print(f"wrote {out}: {len(packets)} packets")


if __name__ == "__main__":
    main()
