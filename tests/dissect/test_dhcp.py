"""DHCP/PXE dissector: DHCPv4, PXE boot server (BINL) and DHCPv6; bytes, captures, corpus.

The UDP counterpart of ``tshark_streams.stream_payloads`` lives here too (``udp_streams``): it
matches tshark's ``udp.stream`` to the flow table's flows by endpoints and says, frame by frame,
whether the datagram is wholly inside the bytes flowaudit kept of its direction; the TFTP and
Wake-on-LAN tests use it as well.
"""

from __future__ import annotations

import csv
import functools
import ipaddress
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from flowaudit.config import FlowConfig
from flowaudit.dissect import dhcp, dissect
from flowaudit.flows import build_flow_table
from tests.dissect.common import check_json_ready
from tests.dissect.tshark_streams import StreamPayload, oracle_files, tshark_fields
from tests.protobytes.dhcp import (
    ADVERTISE,
    ARCH_X86_BIOS,
    BOOTREQUEST,
    DHCPACK,
    DHCPDISCOVER,
    DHCPINFORM,
    ENTERPRISE_MICROSOFT,
    OPTION_BOOTFILE,
    OPTION_OVERLOAD,
    OPTION_VENDOR_CLASS,
    PXE_VENDOR_CLASS,
    SOLICIT,
    V6_CLIENT_ID,
    V6_ELAPSED_TIME,
    V6_VENDOR_CLASS,
    binl_ack,
    binl_request,
    bootp,
    dhcp_message,
    dhcpv6_advertise,
    dhcpv6_information_request,
    dhcpv6_message,
    dhcpv6_relay_forward,
    dhcpv6_solicit,
    duid_ll,
    duid_llt,
    duid_uuid,
    option,
    pxe_ack,
    pxe_discover,
    pxe_offer,
    pxe_request,
    v6_vendor_class,
)
from tests.protobytes.tftp import rrq
from tests.protobytes.wol import magic_packet
from tests.scapy_flows import flow_table, payloads_of, udp_exchange, write_capture

CLIENT_MAC = "00:15:5d:01:02:03"
SERVER_DUID = duid_llt("00:0c:29:70:3d:d8")
PXE_SERVER = "10.0.0.5"
OFFERED = "10.0.0.50"
BOOT_FILE = "smsboot\\x64\\wdsmgfw.efi"

DISCOVER = pxe_discover(CLIENT_MAC, 0x1234)
OFFER = pxe_offer(CLIENT_MAC, 0x1234, server=PXE_SERVER, offered=OFFERED)
REQUEST = pxe_request(CLIENT_MAC, 0x1234, server=PXE_SERVER, requested=OFFERED)
ACK = pxe_ack(CLIENT_MAC, 0x1234, server=PXE_SERVER, offered=OFFERED)
BINL_REQUEST = binl_request(CLIENT_MAC, 0x1235, client=OFFERED)
BINL_ACK = binl_ack(
    CLIENT_MAC, 0x1235, server=PXE_SERVER, client=OFFERED, boot_file=BOOT_FILE, bcd="\\x.bcd"
)
SOLICIT_PXE = dhcpv6_solicit(duid_ll(CLIENT_MAC), 0xABCDEF)
ADVERTISE_PXE = dhcpv6_advertise(duid_ll(CLIENT_MAC), SERVER_DUID, 0xABCDEF)
# A DNS query for "mp01" (RFC 1035 4.1): ID 0x0100 reads as a SOLICIT, QDCOUNT as option 1.
DNS_QUERY = bytes.fromhex("0100 0100 0001 0000 0000 0000 046d703031 00 0001 0001")


def _facts(**expected: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "version": 4,
        "message_type": None,
        "message_types": [],
        "vendor_class": None,
        "pxe": False,
        "client_arch": None,
        "boot_file": None,
        "tftp_server": None,
        "client_mac": CLIENT_MAC,
    }
    facts.update(expected)
    if facts["message_type"] is not None and not facts["message_types"]:
        facts["message_types"] = [facts["message_type"]]
    return facts


PXE_CLIENT = {"vendor_class": PXE_VENDOR_CLASS, "pxe": True, "client_arch": 7}
PXE_SERVER_FACTS = {"vendor_class": "PXEClient", "pxe": True, "tftp_server": PXE_SERVER}

# (case, c2s, s2c, the whole facts expected)
CASES: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = [
    ("pxe-discover", DISCOVER, b"", _facts(message_type="DISCOVER", **PXE_CLIENT)),
    (
        "client-datagrams-back-to-back-discover-request",
        DISCOVER + REQUEST,
        b"",
        _facts(message_type="DISCOVER", message_types=["DISCOVER", "REQUEST"], **PXE_CLIENT),
    ),
    (
        # The server's side of a broadcast DORA is a flow of its own (to 255.255.255.255:68).
        "server-datagrams-offer-ack-options-66-67",
        OFFER + ACK,
        b"",
        _facts(
            message_type="OFFER",
            message_types=["OFFER", "ACK"],
            boot_file=BOOT_FILE,  # option 67, its trailing NUL dropped
            **PXE_SERVER_FACTS,
        ),
    ),
    (
        "ack-boot-file-in-the-bootp-file-field-and-siaddr",
        ACK,
        b"",
        _facts(message_type="ACK", boot_file=BOOT_FILE, **PXE_SERVER_FACTS),
    ),
    (
        "binl-request-and-ack-on-4011",
        BINL_REQUEST,
        BINL_ACK,
        _facts(
            message_type="REQUEST",
            message_types=["REQUEST", "ACK"],
            boot_file=BOOT_FILE,
            tftp_server=PXE_SERVER,
            **PXE_CLIENT,
        ),
    ),
    (
        "server-side-only",
        b"",
        OFFER,
        _facts(message_type="OFFER", boot_file=BOOT_FILE, **PXE_SERVER_FACTS),
    ),
    (
        "x86-bios-architecture-zero-is-kept",
        pxe_discover(
            CLIENT_MAC, 7, arch=ARCH_X86_BIOS, vendor_class="PXEClient:Arch:00000:UNDI:002001"
        ),
        b"",
        _facts(
            message_type="DISCOVER",
            vendor_class="PXEClient:Arch:00000:UNDI:002001",
            pxe=True,
            client_arch=0,
        ),
    ),
    (
        "architecture-from-the-class-identifier-without-option-93",
        dhcp_message(DHCPDISCOVER, 9, CLIENT_MAC, [(OPTION_VENDOR_CLASS, b"PXEClient:Arch:00009")]),
        b"",
        _facts(
            message_type="DISCOVER", vendor_class="PXEClient:Arch:00009", pxe=True, client_arch=9
        ),
    ),
    (
        "windows-client-is-not-pxe",
        dhcp_message(DHCPINFORM, 3, CLIENT_MAC, [(OPTION_VENDOR_CLASS, b"MSFT 5.0")]),
        b"",
        _facts(message_type="INFORM", vendor_class="MSFT 5.0"),
    ),
    (
        # RFC 2132 9.3: with option 52 = 1 the file field holds options, not a file name.
        "option-overload-file-field-holds-option-67",
        dhcp_message(
            DHCPACK,
            4,
            CLIENT_MAC,
            [(OPTION_OVERLOAD, b"\x01")],
            file=option(OPTION_BOOTFILE, b"boot\\pxeboot.n12") + b"\xff",
        ),
        b"",
        _facts(message_type="ACK", boot_file="boot\\pxeboot.n12"),
    ),
    (
        "bootp-with-cookie-and-no-option-53",
        bootp(BOOTREQUEST, 5, CLIENT_MAC, [(OPTION_VENDOR_CLASS, b"PXEClient")]),
        b"",
        _facts(message_type="BOOTREQUEST", vendor_class="PXEClient", pxe=True),
    ),
    (
        "message-cut-after-option-53-by-the-window",
        OFFER[:243],
        b"",
        _facts(message_type="OFFER"),
    ),
    (
        "no-end-option",
        dhcp_message(DHCPDISCOVER, 6, CLIENT_MAC, end=False, pad_to=0),
        b"",
        _facts(message_type="DISCOVER"),
    ),
    (
        "dhcpv6-pxe-solicit",
        SOLICIT_PXE,
        b"",
        _facts(version=6, message_type="SOLICIT", **PXE_CLIENT),
    ),
    (
        "dhcpv6-solicit-retransmitted-and-advertise",
        SOLICIT_PXE + SOLICIT_PXE,
        ADVERTISE_PXE,
        _facts(
            version=6,
            message_type="SOLICIT",
            message_types=["SOLICIT", "ADVERTISE"],
            boot_file="tftp://[2001:db8:100::5]/boot/x64/wdsmgfw.efi",
            tftp_server="2001:db8:100::5",
            **PXE_CLIENT,
        ),
    ),
    (
        "dhcpv6-advertise-http-boot-url-names-no-tftp-server",
        dhcpv6_advertise(
            duid_ll(CLIENT_MAC),
            SERVER_DUID,
            1,
            boot_file_url="http://[2001:db8::1]:9090/ztp.py",
            vendor_class=None,
        ),
        b"",
        _facts(version=6, message_type="ADVERTISE", boot_file="http://[2001:db8::1]:9090/ztp.py"),
    ),
    (
        "dhcpv6-information-request-windows",
        dhcpv6_information_request(duid_llt(CLIENT_MAC), 77),
        b"",
        _facts(version=6, message_type="INFORMATION-REQUEST", vendor_class="MSFT 5.0"),
    ),
    (
        # UEFI firmware identifies itself by DUID-UUID: its MAC comes from the relay (RFC 6939).
        "dhcpv6-relay-forward-of-a-uuid-solicit",
        dhcpv6_relay_forward(dhcpv6_solicit(duid_uuid(), 1), client_mac=CLIENT_MAC),
        b"",
        _facts(version=6, message_type="RELAY-FORW", **PXE_CLIENT),
    ),
    (
        "dhcpv6-duid-uuid-has-no-mac",
        dhcpv6_solicit(duid_uuid(), 2, vendor_class=None, arch=None),
        b"",
        _facts(version=6, message_type="SOLICIT", client_mac=None),
    ),
    ("empty", b"", b"", None),
    ("bootp-header-without-cookie", DISCOVER[:236] + b"\x00" * 64, b"", None),
    ("cookie-one-octet-late", DISCOVER[:236] + b"\x00" + DISCOVER[236:], b"", None),
    ("op-3-is-no-bootp", b"\x03" + DISCOVER[1:], b"", None),
    (
        "dhcpv6-solicit-without-client-identifier",
        dhcpv6_message(SOLICIT, 1, [(V6_ELAPSED_TIME, b"\x00\x00")]),
        b"",
        None,
    ),
    (
        "dhcpv6-advertise-without-server-identifier",
        dhcpv6_message(ADVERTISE, 1, [(V6_CLIENT_ID, duid_ll(CLIENT_MAC))]),
        b"",
        None,
    ),
    (
        "dhcpv6-duid-of-unknown-type",
        dhcpv6_message(SOLICIT, 1, [(V6_CLIENT_ID, b"\x00\x09abcdefgh")]),
        b"",
        None,
    ),
    (
        "dhcpv6-option-code-0",
        dhcpv6_message(SOLICIT, 1, [(0, b""), (V6_CLIENT_ID, duid_ll(CLIENT_MAC))]),
        b"",
        None,
    ),
    (
        "dhcpv6-vendor-class-alone",
        dhcpv6_message(
            SOLICIT, 1, [(V6_VENDOR_CLASS, v6_vendor_class(ENTERPRISE_MICROSOFT, b"x"))]
        ),
        b"",
        None,
    ),
    ("dhcpv6-header-only", b"\x01\x00\x00\x01", b"", None),
    ("dns-query", DNS_QUERY, b"", None),
    ("tftp-rrq", rrq(BOOT_FILE), b"", None),
    ("wake-on-lan", magic_packet(CLIENT_MAC), b"", None),
    ("binary", bytes(range(256)) * 2, bytes(range(255, -1, -1)), None),
]


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cases(c2s: bytes, s2c: bytes, expected: dict[str, Any] | None) -> None:
    assert dhcp.parse(c2s, s2c) == expected


def test_a_later_message_cut_short_is_left_out() -> None:
    """Only a whole fixed header and cookie make a message; the first one stands alone."""
    facts = dhcp.parse(DISCOVER + REQUEST[:200], b"")
    assert facts is not None
    assert facts["message_types"] == ["DISCOVER"]


def test_text_is_cut_to_256_characters() -> None:
    long_class = b"PXEClient:" + b"x" * 245  # one option holds at most 255 octets
    message = dhcp_message(
        DHCPDISCOVER,
        1,
        CLIENT_MAC,
        [(OPTION_VENDOR_CLASS, long_class), (OPTION_VENDOR_CLASS, long_class)],
    )
    facts = dhcp.parse(message, b"")
    assert facts is not None
    # RFC 3396: two instances of an option are one, concatenated; the fact stops at 256.
    assert facts["vendor_class"] == (long_class * 2).decode()[:256]


# --- tiny captures through the flow table ------------------------------------------------------


def _by_server_port(path: Path) -> dict[int, tuple[bytes, bytes]]:
    flows = flow_table(path)
    c2s, s2c = flows.payloads.columns()
    ports = flows.columns["server_port"].tolist()
    return {int(port): (c2s[k], s2c[k]) for k, port in enumerate(ports)}


def test_tiny_capture_pxe_dora_to_broadcast(tmp_path: Path) -> None:
    """DISCOVER/REQUEST from 0.0.0.0:68 and OFFER/ACK from the server go to 255.255.255.255.

    They are two flows, each with the broadcast address as server. Today the flow table keeps
    the first datagram of each UDP direction (see test_udp_keeps_first_datagram_with_payload
    in tests/test_flows.py), so each flow shows its first message; should it keep them back
    to back, the dissector reads the second message too.
    """
    exchange = [
        ("0.0.0.0", 68, 67, DISCOVER),
        (PXE_SERVER, 67, 68, OFFER),
        ("0.0.0.0", 68, 67, REQUEST),
        (PXE_SERVER, 67, 68, ACK),
    ]
    packets = []
    for k, (source, source_port, destination_port, message) in enumerate(exchange):
        packets += udp_exchange(
            source,
            "255.255.255.255",
            source_port,
            destination_port,
            [("c", message)],
            start=1_700_000_000.0 + k,
        )
    flows = payloads_of(write_capture(tmp_path / "dora.pcap", packets))
    assert [(transport, s2c) for transport, _, s2c in flows] == [("udp", b""), ("udp", b"")]
    [client_kept, server_kept] = [c2s for _, c2s, _ in flows]
    assert client_kept in (DISCOVER, DISCOVER + REQUEST)
    assert server_kept in (OFFER, OFFER + ACK)
    assert dhcp.parse(client_kept, b"") == _facts(
        message_type="DISCOVER",
        message_types=["DISCOVER", "REQUEST"][: 1 + (client_kept != DISCOVER)],
        **PXE_CLIENT,
    )
    assert dhcp.parse(server_kept, b"") == _facts(
        message_type="OFFER",
        message_types=["OFFER", "ACK"][: 1 + (server_kept != OFFER)],
        boot_file=BOOT_FILE,
        **PXE_SERVER_FACTS,
    )
    assert [dissect("udp", c2s, s2c)[0] for _, c2s, s2c in flows] == ["dhcp", "dhcp"]


def test_tiny_capture_binl_request_to_4011(tmp_path: Path) -> None:
    packets = udp_exchange(OFFERED, PXE_SERVER, 68, 4011, [("c", BINL_REQUEST), ("s", BINL_ACK)])
    flows = _by_server_port(write_capture(tmp_path / "binl.pcap", packets))
    assert list(flows) == [4011]
    c2s, s2c = flows[4011]
    assert (c2s, s2c) == (BINL_REQUEST, BINL_ACK)
    assert dhcp.parse(c2s, s2c) == _facts(
        message_type="REQUEST",
        message_types=["REQUEST", "ACK"],
        boot_file=BOOT_FILE,
        tftp_server=PXE_SERVER,
        **PXE_CLIENT,
    )
    assert dissect("udp", c2s, s2c)[0] == "dhcp"


def test_tiny_capture_dhcpv6_solicit_to_multicast_and_advertise(tmp_path: Path) -> None:
    packets = []
    for k, (source, destination, ether_destination, ports, message) in enumerate(
        [
            ("fe80::215:5dff:fe01:203", "ff02::1:2", "33:33:00:01:00:02", (546, 547), SOLICIT_PXE),
            ("fe80::5", "fe80::215:5dff:fe01:203", CLIENT_MAC, (547, 546), ADVERTISE_PXE),
        ]
    ):
        packet = (
            Ether(dst=ether_destination)
            / IPv6(src=source, dst=destination)
            / UDP(sport=ports[0], dport=ports[1])
            / message
        )
        packet.time = 1_700_000_000.0 + k
        packets.append(packet)
    flows = payloads_of(write_capture(tmp_path / "dhcpv6.pcap", packets))
    facts = [dhcp.parse(c2s, s2c) for _, c2s, s2c in flows]
    assert [f["message_type"] if f else None for f in facts] == ["SOLICIT", "ADVERTISE"]
    assert facts[0] == _facts(version=6, message_type="SOLICIT", **PXE_CLIENT)
    assert facts[1] == _facts(
        version=6,
        message_type="ADVERTISE",
        vendor_class="PXEClient",
        pxe=True,
        boot_file="tftp://[2001:db8:100::5]/boot/x64/wdsmgfw.efi",
        tftp_server="2001:db8:100::5",
    )


@pytest.mark.tshark
def test_tshark_reads_our_bytes_as_we_mean_them(tmp_path: Path, tshark: str) -> None:
    """The spec-built bytes are real DHCP: tshark sees the same types, class, arch and file."""
    packets = udp_exchange("0.0.0.0", "255.255.255.255", 68, 67, [("c", DISCOVER)])
    packets += udp_exchange(OFFERED, PXE_SERVER, 68, 4011, [("c", BINL_REQUEST), ("s", BINL_ACK)])
    path = write_capture(tmp_path / "pxe.pcap", packets)
    fields = [
        "dhcp.option.dhcp",
        "dhcp.option.vendor_class_id",
        "dhcp.option.client_system_architecture",
        "dhcp.option.bootfile_name",
        "dhcp.option.tftp_server_name",
        "dhcp.hw.mac_addr",
    ]
    rows = tshark_fields(tshark, path, "dhcp", fields)
    assert [row["dhcp.option.dhcp"] for row in rows] == [["1"], ["3"], ["5"]]
    assert rows[0]["dhcp.option.vendor_class_id"] == [PXE_VENDOR_CLASS]
    assert rows[0]["dhcp.option.client_system_architecture"] == ["7"]
    assert rows[2]["dhcp.option.bootfile_name"] == [BOOT_FILE]
    assert rows[2]["dhcp.option.tftp_server_name"] == [PXE_SERVER]
    assert rows[0]["dhcp.hw.mac_addr"] == [CLIENT_MAC]


# --- never raise; random bytes are not DHCP ------------------------------------------------------


def test_every_truncation_and_random_bytes_never_raise() -> None:
    messages = [
        DISCOVER + REQUEST,
        OFFER,
        BINL_ACK,
        SOLICIT_PXE + SOLICIT_PXE,
        ADVERTISE_PXE,
        dhcpv6_relay_forward(dhcpv6_relay_forward(SOLICIT_PXE), client_mac=CLIENT_MAC),
    ]
    for message in messages:
        for cut in range(len(message) + 1):
            check_json_ready(dhcp.parse(message[:cut], b""))
            check_json_ready(dhcp.parse(b"", message[:cut]))
    generator = random.Random(67)
    for _ in range(3000):
        noise = generator.randbytes(generator.randrange(0, 400))
        # Behind a plausible header, to get past the first checks: a BOOTP header and cookie, or
        # a DHCPv6 type with a Client Identifier.
        if generator.random() < 0.5:
            noise = DISCOVER[:240] + noise
        elif generator.random() < 0.5:
            noise = SOLICIT_PXE[:22] + noise
        check_json_ready(dhcp.parse(noise, noise[::-1]))
    for message in messages:
        for _ in range(1000):
            mutated = bytearray(message)
            for _ in range(generator.randrange(1, 4)):
                mutated[generator.randrange(len(mutated))] = generator.getrandbits(8)
            check_json_ready(dhcp.parse(bytes(mutated), b""))


def random_payloads(seed: int, count: int = 100_000) -> list[tuple[bytes, bytes]]:
    """``count`` (c2s, s2c) pairs of random bytes, sizes spread from 1 to 2048 octets."""
    generator = random.Random(seed)
    sizes = [
        1,
        2,
        3,
        4,
        5,
        8,
        12,
        16,
        24,
        48,
        64,
        102,
        128,
        236,
        240,
        300,
        548,
        576,
        1024,
        1472,
        2048,
    ]
    pairs = []
    for _ in range(count):
        c2s = generator.randbytes(generator.choice(sizes))
        s2c = generator.randbytes(generator.choice(sizes)) if generator.random() < 0.5 else b""
        pairs.append((c2s, s2c))
    return pairs


def test_random_payloads_are_not_dhcp() -> None:
    taken = sum(dhcp.parse(c2s, s2c) is not None for c2s, s2c in random_payloads(seed=67))
    print(f"DHCP false positives on 100,000 random payloads: {taken} ({taken / 100_000:.4%})")
    assert taken == 0


# --- the real corpus against tshark ------------------------------------------------------------


@dataclass(frozen=True)
class UdpFrame:
    """One frame tshark shows of a UDP stream, and whether flowaudit kept all of its datagram."""

    number: int
    from_client: bool
    fields: dict[str, list[str]]
    kept: bool  # the whole datagram is inside the bytes kept of its direction
    started: bool  # its first octet is kept (the window may cut the datagram short)


@dataclass(frozen=True)
class UdpStream:
    """A UDP conversation: what flowaudit kept of it and tshark's frames of it."""

    flow: StreamPayload
    frames: list[UdpFrame]  # the frames matching the display filter, in capture order

    def kept_in_reading_order(self) -> list[UdpFrame]:
        """The wholly kept frames in the order a dissector reads them: client's, then server's."""
        client = [frame for frame in self.frames if frame.kept and frame.from_client]
        return client + [frame for frame in self.frames if frame.kept and not frame.from_client]


def _address(text: str) -> str:
    return str(ipaddress.ip_address(text))


@functools.cache
def udp_streams(
    tshark: str, path: Path, display_filter: str, fields: tuple[str, ...]
) -> dict[int, UdpStream]:
    """udp.stream -> the flow flowaudit made of it and tshark's ``fields`` of its frames.

    A stream is matched to the flow with the same endpoints (tshark, like FlowConfig with
    idle_timeout=0, never splits a UDP conversation by time). A datagram counts as kept when
    its bytes sit in the flow's payload of that direction where a back-to-back concatenation
    of the direction's datagrams would put them. Cached: the TFTP and Wake-on-LAN tests read
    the same captures (the answer is shared, not to be changed).
    """
    table = build_flow_table([path], FlowConfig(idle_timeout=0))
    c2s, s2c = table.payloads.columns()
    columns = table.columns
    flows: dict[frozenset[tuple[str, int]], StreamPayload] = {}
    for index in range(len(table)):
        if columns["proto"][index] != "udp":
            continue
        flow = StreamPayload(
            _address(str(columns["client"][index])),
            int(columns["client_port"][index]),
            _address(str(columns["server"][index])),
            int(columns["server_port"][index]),
            c2s[index],
            s2c[index],
        )
        flows[frozenset({(flow.client, flow.client_port), (flow.server, flow.server_port)})] = flow
    wanted = {
        int(row["frame.number"][0]): row
        for row in tshark_fields(tshark, path, display_filter, ["frame.number", *fields])
    }
    every = ["frame.number", "udp.stream", "ip.src", "ipv6.src", "udp.srcport"]
    every += ["ip.dst", "ipv6.dst", "udp.dstport", "udp.payload"]
    streams: dict[int, UdpStream] = {}
    offsets: dict[tuple[int, bool], int] = defaultdict(int)
    for row in tshark_fields(tshark, path, "udp && !icmp && !icmpv6", every):
        number = int(row["udp.stream"][0])
        source = (
            _address((row.get("ip.src") or row.get("ipv6.src") or [""])[-1]),
            int(row["udp.srcport"][0]),
        )
        destination = (
            _address((row.get("ip.dst") or row.get("ipv6.dst") or [""])[-1]),
            int(row["udp.dstport"][0]),
        )
        if number not in streams:
            matched = flows.get(frozenset({source, destination}))
            if matched is None:
                continue
            streams[number] = UdpStream(matched, [])
        stream = streams[number]
        from_client = source == (stream.flow.client, stream.flow.client_port)
        payload = bytes.fromhex((row.get("udp.payload") or [""])[0].replace(":", ""))
        at = offsets[number, from_client]
        offsets[number, from_client] = at + len(payload)
        kept = stream.flow.c2s if from_client else stream.flow.s2c
        frame = int(row["frame.number"][0])
        if frame in wanted and payload:
            stream.frames.append(
                UdpFrame(
                    frame,
                    from_client,
                    wanted[frame],
                    kept[at : at + len(payload)] == payload,
                    len(kept) > at and kept[at] == payload[0],
                )
            )
    return {number: stream for number, stream in streams.items() if stream.frames}


@functools.cache
def tshark_protocols_by_stream(tshark: str, path: Path) -> dict[int, set[str]]:
    """udp.stream -> every protocol name tshark put in ``frame.protocols`` for its frames."""
    protocols: dict[int, set[str]] = defaultdict(set)
    for row in tshark_fields(
        tshark, path, "udp && !icmp && !icmpv6", ["udp.stream", "frame.protocols"]
    ):
        protocols[int(row["udp.stream"][0])].update(
            (row.get("frame.protocols") or [""])[0].split(":")
        )
    return protocols


def udp_corpus_files(corpus: Path) -> list[Path]:
    """Every capture ORACLE.tsv says has UDP conversations."""
    with (corpus / "ORACLE.tsv").open(newline="") as table:
        return [
            corpus / row["local_filename"]
            for row in csv.DictReader(table, delimiter="\t")
            if row["udp_conversations"].isdigit() and int(row["udp_conversations"]) > 0
        ]


V4_FIELDS = [
    "dhcp.option.dhcp",
    "dhcp.option.vendor_class_id",
    "dhcp.option.client_system_architecture",
    "dhcp.option.bootfile_name",
    "dhcp.file",
    "dhcp.option.tftp_server_name",
    "dhcp.ip.server",
    "dhcp.hw.type",
    "dhcp.hw.mac_addr",
]
V6_FIELDS = [
    "dhcpv6.msgtype",
    "dhcpv6.vendorclass.data",
    "dhcpv6.option.type",
    "dhcpv6.duidll.link_layer_addr",
    "dhcpv6.duidllt.link_layer_addr",
]
V4_NAMES = {str(number): name for number, name in dhcp.MESSAGE_TYPES_V4.items()}
V6_NAMES = {str(number): name for number, name in dhcp.MESSAGE_TYPES_V6.items()}
# RFC 8415 16: the client messages that carry no Server Identifier, so that the one DUID
# tshark shows a link-layer address of is the client's.
V6_CLIENT_ONLY = {"SOLICIT", "CONFIRM", "REBIND", "INFORMATION-REQUEST"}


def _first_value(frames: list[UdpFrame], name: str, skip: str = "") -> str | None:
    for frame in frames:
        for value in frame.fields.get(name, []):
            if value != skip:
                return value
    return None


def _expected_v4(frames: list[UdpFrame]) -> dict[str, Any]:
    """The facts tshark shows, gathered the way the dissector gathers them."""
    names = [V4_NAMES[f.fields["dhcp.option.dhcp"][0]] for f in frames]
    vendor_class = _first_value(frames, "dhcp.option.vendor_class_id")
    arch = _first_value(frames, "dhcp.option.client_system_architecture")
    # Per message: option 66, else a non-zero siaddr; option 67, else the file field.
    servers = [
        _first_value([f], "dhcp.option.tftp_server_name")
        or _first_value([f], "dhcp.ip.server", skip="0.0.0.0")
        for f in frames
    ]
    boot_files = [
        _first_value([f], "dhcp.option.bootfile_name") or _first_value([f], "dhcp.file")
        for f in frames
    ]
    return {
        "version": 4,
        "message_type": names[0],
        "message_types": list(dict.fromkeys(names)),
        "vendor_class": vendor_class,
        "pxe": bool(vendor_class and vendor_class.startswith("PXEClient")) or arch is not None,
        "client_arch": None if arch is None else int(arch),
        "boot_file": next((name for name in boot_files if name), None),
        "tftp_server": next((server for server in servers if server), None),
        # tshark lists chaddr first, then the MAC of an option 61 of type 1.
        "client_mac": _first_value(frames[:1], "dhcp.hw.mac_addr"),
    }


def _expected_v6(frames: list[UdpFrame]) -> dict[str, Any]:
    """What tshark 4.0 shows of DHCPv6: types, vendor class, option codes (no arch, no URL)."""
    names = [V6_NAMES[f.fields["dhcpv6.msgtype"][0]] for f in frames]
    vendor_class = _first_value(frames, "dhcpv6.vendorclass.data")
    codes = {code for f in frames for code in f.fields.get("dhcpv6.option.type", [])}
    expected: dict[str, Any] = {
        "version": 6,
        "message_type": names[0],
        "message_types": list(dict.fromkeys(names)),
        "vendor_class": vendor_class,
        "pxe": bool(vendor_class and vendor_class.startswith("PXEClient"))
        or bool(codes & {"61", "62"}),
    }
    if names[0] in V6_CLIENT_ONLY:
        expected["client_mac"] = _first_value(
            frames[:1], "dhcpv6.duidll.link_layer_addr"
        ) or _first_value(frames[:1], "dhcpv6.duidllt.link_layer_addr")
    return expected


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """Every UDP stream tshark dissects as DHCP or DHCPv6, against the facts tshark shows.

    DHCPv4: every fact. DHCPv6: what tshark 4.0 has fields for (it shows neither the client
    architecture nor the boot-file-url); the client's MAC where the message carries only the
    client's DUID. Messages flowaudit did not keep whole are left out of tshark's side (the
    flow table keeps the first datagram of each direction); the dissector may read a message
    cut by the window, so its types must lie between the whole and the started messages.
    """
    outcomes: Counter[str] = Counter()
    disagreements = []
    v4_files = oracle_files(corpus, "dhcp_bootp")
    v6_files = oracle_files(corpus, "dhcpv6")
    assert "zeek_dhcp_dora.pcap" in {path.name for path in v4_files}
    assert "ppp_dhcpv6_pxeclient.pcap" in {path.name for path in v6_files}
    for path, version in [(p, 4) for p in v4_files] + [(p, 6) for p in v6_files]:
        display_filter, fields = ("dhcp", V4_FIELDS) if version == 4 else ("dhcpv6", V6_FIELDS)
        type_field, names = (
            ("dhcp.option.dhcp", V4_NAMES) if version == 4 else ("dhcpv6.msgtype", V6_NAMES)
        )
        for number, stream in sorted(
            udp_streams(tshark, path, display_filter, tuple(fields)).items()
        ):
            frames = stream.kept_in_reading_order()
            if not frames:
                outcomes["nothing kept whole"] += 1
                continue
            expected = _expected_v4(frames) if version == 4 else _expected_v6(frames)
            facts = dhcp.parse(stream.flow.c2s, stream.flow.s2c)
            ours = None if facts is None else {key: facts[key] for key in expected}
            started = {names[f.fields[type_field][0]] for f in stream.frames if f.started}
            if ours is not None and (
                set(expected["message_types"]) <= set(ours["message_types"]) <= started
            ):
                ours["message_types"] = expected["message_types"]
            if ours == expected:
                outcomes[f"v{version} agree"] += 1
            else:
                outcomes[f"v{version} disagree"] += 1
                disagreements.append(f"{path.name} stream {number}: ours {ours}, tshark {expected}")
    print(f"DHCP streams vs tshark: {dict(outcomes)}")
    assert not disagreements, "\n".join(disagreements)
    # zeek_dhcp_dora 4 + sv_smb2_mixed_windows_lan 3; DHCPv6: 2 + 3 + 3 (ORACLE.tsv).
    assert (outcomes["v4 agree"], outcomes["v6 agree"]) == (7, 8)


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_other_udp_streams_are_not_dhcp(corpus: Path, tshark: str) -> None:
    """DNS, NetBIOS, LLMNR, SSDP, CLDAP, NTP, TFTP, WoL...: none is taken for DHCP."""
    checked = 0
    for path in udp_corpus_files(corpus):
        protocols = tshark_protocols_by_stream(tshark, path)
        for number, stream in udp_streams(tshark, path, "udp", ()).items():
            if protocols[number] & {"dhcp", "dhcpv6"}:
                continue
            checked += 1
            assert dhcp.parse(stream.flow.c2s, stream.flow.s2c) is None, (path.name, number)
    print(f"non-DHCP UDP streams checked: {checked}")
    assert checked >= 100
