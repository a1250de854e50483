"""The DHCP and TFTP stream dissectors: every datagram of a UDP flow; bytes, fuzz, tshark.

Until the engine feeds them, the tests feed the datagrams themselves: a flow is tshark's
``udp.stream`` (the 5-tuple, like the engine's flow table; the engine also splits a flow after
an idle timeout, which none of the streams compared here comes near), side A the sender of its
first datagram, and the module asked to claim the flow from that datagram and its ports.
"""

from __future__ import annotations

import json
import random
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from flowaudit.stream import dhcp, tftp
from flowaudit.stream.base import MAX_OPERATIONS, A, At, B, Record
from tests.conftest import REPO
from tests.dissect.tshark_streams import oracle_files, tshark_fields
from tests.protobytes import dhcp as dhcp_bytes
from tests.protobytes import tftp as tftp_bytes

LAB_PXE = REPO / "lab" / "captures" / "pxe.pcap"
CLIENT_MAC = "02:00:00:00:01:64"
SERVER = "10.77.0.13"

Datagram = tuple[int, bytes]  # (side, payload)


def feed(module: ModuleType, datagrams: Iterable[Datagram]) -> tuple[Record, dict[str, Any]]:
    """Feed ``datagrams`` (frame numbers from 1) to a new conversation; its record and facts."""
    conversation = module.Conversation(Record())
    for frame, (side, payload) in enumerate(datagrams, start=1):
        conversation.datagram(side, payload, At(frame, frame * 1000))
    conversation.end()
    return conversation.record, conversation.facts()


def names(record: Record) -> list[str]:
    return [entry["operation"] for entry in record.operations]


def json_ready(record: Record, facts: dict[str, Any]) -> None:
    json.dumps({"operations": record.operations, "facts": facts, "counters": record.counters})


# --- DHCP: real bytes ---------------------------------------------------------------------------

PXE_DORA: list[Datagram] = [
    (A, dhcp_bytes.pxe_discover(CLIENT_MAC, 0x53AA812E)),
    (
        B,
        dhcp_bytes.pxe_offer(
            CLIENT_MAC, 0x53AA812E, server=SERVER, offered="10.77.1.100", siaddr=SERVER
        ),
    ),
    (A, dhcp_bytes.pxe_request(CLIENT_MAC, 0x53AA812E, server=SERVER, requested="10.77.1.100")),
    (B, dhcp_bytes.pxe_ack(CLIENT_MAC, 0x53AA812E, server=SERVER, offered="10.77.1.100")),
]


def test_dhcp_claims_by_port_and_bytes() -> None:
    discover = PXE_DORA[0][1]
    assert dhcp.claims((68, 67), discover)
    assert dhcp.claims((67, 68), PXE_DORA[1][1])
    # PXE 2.1 2.2.4: the same messages between client and boot server on 4011.
    assert dhcp.claims((68, 4011), discover)
    assert dhcp.claims((49152, 4011), dhcp_bytes.binl_request(CLIENT_MAC, 7, client="10.0.0.5"))
    assert not dhcp.claims((53, 5353), discover)  # not a DHCP port
    assert not dhcp.claims((68, 67), discover[:239])  # cut before the magic cookie
    assert not dhcp.claims((68, 67), b"\x03" + discover[1:])  # op 3 is no BOOTP op
    solicit = dhcp_bytes.dhcpv6_solicit(dhcp_bytes.duid_ll(CLIENT_MAC), 0x1234)
    assert dhcp.claims((546, 547), solicit)
    assert not dhcp.claims((68, 67), solicit)  # DHCPv6 on the DHCPv4 ports
    assert not dhcp.claims((546, 547), discover)  # and the other way round
    assert not dhcp.claims((546, 547), b"\x01\x00\x00\x01")  # SOLICIT without a client id


def test_dhcp_pxe_dora_one_operation_per_message() -> None:
    record, facts = feed(dhcp, PXE_DORA)
    assert names(record) == ["DISCOVER", "OFFER", "REQUEST", "ACK"]
    assert [entry["side"] for entry in record.operations] == [A, B, A, B]
    assert {entry["protocol"] for entry in record.operations} == {"dhcp"}
    assert {entry["target"] for entry in record.operations} == {CLIENT_MAC}
    assert {entry["xid"] for entry in record.operations} == {"53aa812e"}
    discover, offer, request, ack = record.operations
    assert discover["options"][0] == 53  # the option codes in the order they were sent
    assert {93, 94, 97, 60} <= set(discover["options"])
    assert discover["vendor_class"] == "PXEClient:Arch:00007:UNDI:003016"
    assert discover["client_arch"] == 7
    assert "your_address" not in discover and "server_id" not in discover
    assert offer["your_address"] == "10.77.1.100"
    assert offer["server_id"] == SERVER
    assert offer["next_server"] == SERVER
    assert offer["boot_file"] == "smsboot\\x64\\wdsmgfw.efi"
    assert request["requested_address"] == "10.77.1.100"
    assert request["server_id"] == SERVER
    assert ack["your_address"] == "10.77.1.100"
    assert facts == {
        "message_types": ["DISCOVER", "OFFER", "REQUEST", "ACK"],
        "messages": 4,
        "clients": [CLIENT_MAC],
        "client_duids": [],
        "unread": 0,
    }
    json_ready(record, facts)


def test_dhcp_plain_bootp_inform_and_ciaddr() -> None:
    inform = dhcp_bytes.dhcp_message(
        dhcp_bytes.DHCPINFORM, 9, "00:11:22:33:44:55", ciaddr="192.168.1.20"
    )
    bootp = dhcp_bytes.bootp(dhcp_bytes.BOOTREQUEST, 10, "00:11:22:33:44:55")
    record, facts = feed(dhcp, [(A, inform), (A, bootp)])
    assert names(record) == ["INFORM", "BOOTREQUEST"]  # RFC 951: no option 53
    assert record.operations[0]["client_address"] == "192.168.1.20"
    assert facts["clients"] == ["00:11:22:33:44:55"]


def test_dhcpv6_solicit_advertise_and_relay() -> None:
    client_duid = dhcp_bytes.duid_llt(CLIENT_MAC)
    server_duid = dhcp_bytes.duid_ll("02:00:00:00:00:01")
    solicit = dhcp_bytes.dhcpv6_solicit(client_duid, 0xABCDEF)
    advertise = dhcp_bytes.dhcpv6_advertise(client_duid, server_duid, 0xABCDEF)
    relay = dhcp_bytes.dhcpv6_relay_forward(solicit, client_mac=CLIENT_MAC)
    record, facts = feed(dhcp, [(A, solicit), (B, advertise), (A, relay)])
    assert names(record) == ["SOLICIT", "ADVERTISE", "RELAY-FORW"]
    assert {entry["protocol"] for entry in record.operations} == {"dhcpv6"}
    assert {entry["target"] for entry in record.operations} == {client_duid.hex()}
    first, second, third = record.operations
    assert first["xid"] == second["xid"] == "abcdef"
    assert first["vendor_class"] == "PXEClient:Arch:00007:UNDI:003016"
    assert first["client_arch"] == 7
    assert second["server_id"] == server_duid.hex()
    assert second["boot_file"] == "tftp://[2001:db8:100::5]/boot/x64/wdsmgfw.efi"
    assert third["relayed"] == "SOLICIT" and "xid" not in third
    assert third["peer_address"] == "fe80::82e0:1dff:fe00:fcea"
    assert 9 in third["options"] and 1 in third["relayed_options"]
    assert facts["clients"] == [CLIENT_MAC]  # from the DUID-LLT
    assert facts["client_duids"] == [client_duid.hex()]


def test_dhcp_a_datagram_that_is_no_message_is_counted() -> None:
    record, facts = feed(dhcp, [PXE_DORA[0], (A, b"\x01" * 300), (B, b"")])
    assert names(record) == ["DISCOVER"]
    assert facts["unread"] == 2 and record.counters == {"not_dhcp": 2}
    assert record.truncated == ["dhcp: a datagram is not a DHCP message"]


def test_dhcp_datagrams_twice_are_messages_twice() -> None:
    """RFC 2131 4.1: a client retransmits; a datagram seen twice is recorded twice."""
    once, once_facts = feed(dhcp, PXE_DORA)
    twice, twice_facts = feed(dhcp, [each for each in PXE_DORA for _ in (0, 1)])
    assert names(twice) == [name for name in names(once) for _ in (0, 1)]
    assert twice_facts["message_types"] == [t for t in once_facts["message_types"] for _ in (0, 1)]
    assert twice_facts["clients"] == once_facts["clients"]
    strip = ("frame", "ts_ns")
    for index, entry in enumerate(once.operations):
        for copy in twice.operations[2 * index : 2 * index + 2]:
            assert {k: v for k, v in copy.items() if k not in strip} == {
                k: v for k, v in entry.items() if k not in strip
            }


def test_dhcp_bounds() -> None:
    record, facts = feed(dhcp, [PXE_DORA[0]] * (MAX_OPERATIONS + 10))
    assert len(record.operations) == MAX_OPERATIONS and record.operations_dropped == 10
    assert len(facts["message_types"]) == dhcp.MAX_TYPES
    assert facts["messages"] == MAX_OPERATIONS + 10


# --- TFTP: real bytes ---------------------------------------------------------------------------

BOOT_FILE = tftp_bytes.BOOT_FILE


def transfer(content: bytes, block_size: int = 512) -> list[Datagram]:
    """DATA from the server (B), each ACKed by the client (A)."""
    out: list[Datagram] = []
    for packet in tftp_bytes.file_blocks(content, block_size):
        out.append((B, packet))
        out.append((A, tftp_bytes.ack(int.from_bytes(packet[2:4], "big"))))
    return out


def test_tftp_claims() -> None:
    request = tftp_bytes.rrq(BOOT_FILE, options=tftp_bytes.PXE_OPTIONS)
    assert tftp.claims((50000, 69), request)
    assert tftp.claims((50000, 69), tftp_bytes.wrq("up.bin", "netascii"))
    assert not tftp.claims((50000, 69), tftp_bytes.data(1, b"x"))  # answers come from a new port
    assert not tftp.claims((50000, 69), b"\x00\x01\x00octet\x00\x00"[:3])
    assert not tftp.claims((50000, 69), tftp_bytes.rrq("a", "binary"))  # RFC 1350: no such mode
    assert not tftp.claims((50000, 53), request)
    # The transfer flow opens from the server's new port (RFC 1350 4).
    assert tftp.claims((40682, 57787), tftp_bytes.data(1, b"x" * 512))
    assert tftp.claims((40682, 57787), tftp_bytes.oack(tftp_bytes.PXE_OPTIONS))
    assert tftp.claims((2087, 57509), tftp_bytes.ack(0))  # a WRQ answered
    assert tftp.claims((2087, 57509), tftp_bytes.error(1, "File not found"))
    assert not tftp.claims((2087, 57509), tftp_bytes.data(2, b"x"))  # not a first packet
    assert not tftp.claims((2087, 57509), tftp_bytes.ack(0) + b"\x00")  # an ACK is 4 octets
    assert not tftp.claims((2087, 57509), tftp_bytes.ack(7))
    assert not tftp.claims((2087, 57509), tftp_bytes.error(12, "?"))  # no such code
    assert not tftp.claims((2087, 443), tftp_bytes.data(1, b"x"))  # a well-known port
    assert not tftp.claims((2087, 57509), b"\x00\x06")  # OACK without options


def test_tftp_request_flow() -> None:
    request = tftp_bytes.rrq(BOOT_FILE, options=tftp_bytes.PXE_OPTIONS)
    record, facts = feed(tftp, [(A, request)])
    (entry,) = record.operations
    assert entry["operation"] == "RRQ" and entry["target"] == BOOT_FILE
    assert entry["mode"] == "octet"
    assert entry["options"] == {"blksize": "1456", "tsize": "0", "windowsize": "4"}
    assert facts["filename"] == BOOT_FILE and facts["blocks"] == 0 and not facts["complete"]
    assert "TRANSFER" not in names(record)


def test_tftp_transfer_with_options_is_one_summary() -> None:
    content = bytes(range(256)) * 20  # 5120 octets: 3 blocks of 1456 and one of 752
    datagrams = [
        (B, tftp_bytes.oack([("blksize", "1456"), ("tsize", "5120")])),
        (A, tftp_bytes.ack(0)),
    ]
    datagrams += transfer(content, 1456)
    record, facts = feed(tftp, datagrams)
    assert names(record) == ["OACK", "TRANSFER"]
    oack, summary = record.operations
    assert oack["options"] == {"blksize": "1456", "tsize": "5120"} and oack["side"] == B
    assert summary["side"] == B  # the data's sender: the server, though the client ACKed first
    assert summary["frame"] == 2  # where the exchange began
    expected = {
        "blocks": 4,
        "bytes": 5120,
        "last_block": 4,
        "retransmitted": 0,
        "acks": 5,
        "block_size": 1456,
        "complete": True,
    }
    assert {key: summary[key] for key in expected} == expected
    assert facts == {**expected, "errors": [], "filename": None}
    json_ready(record, facts)


def test_tftp_incomplete_transfer_and_error() -> None:
    datagrams = transfer(b"x" * 1024)[:2]  # the first block, then the client gives up
    datagrams.append((A, tftp_bytes.error(tftp_bytes.ERROR_DISK_FULL, "disk full")))
    record, facts = feed(tftp, datagrams)
    assert names(record) == ["TRANSFER", "ERROR"]
    error = record.operations[1]
    assert error["status"] == "Disk full or allocation exceeded"
    assert error["code"] == 3 and error["message"] == "disk full"
    assert facts["blocks"] == 1 and facts["complete"] is False
    assert facts["errors"] == [
        {"code": 3, "status": "Disk full or allocation exceeded", "message": "disk full"}
    ]


@pytest.mark.parametrize(
    ("code", "status"),
    [(0, "Not defined"), (1, "File not found"), (2, "Access violation"),
     (5, "Unknown transfer ID"), (8, "Option negotiation failed"), (42, "Error 42")],
)  # fmt: skip
def test_tftp_error_names(code: int, status: str) -> None:
    record, _ = feed(tftp, [(B, tftp_bytes.error(code, "why"))])
    assert record.operations[0]["status"] == status


def test_tftp_a_file_of_whole_blocks_ends_with_an_empty_one() -> None:
    _, facts = feed(tftp, transfer(b"y" * 1024))  # RFC 1350 6: 512, 512, then 0 octets
    assert (facts["blocks"], facts["bytes"], facts["complete"]) == (3, 1024, True)
    _, facts = feed(tftp, transfer(b"y" * 1024)[:4])  # the empty block not seen
    assert (facts["blocks"], facts["complete"]) == (2, False)


@pytest.mark.parametrize("wrap_to", [0, 1])
def test_tftp_block_numbers_wrap(wrap_to: int) -> None:
    """70 000 blocks of 8 octets (RFC 2348 smallest blksize): the numbers wrap once, after
    65535, to 0 or (some servers) to 1, and every block is counted once."""
    count = 70_000
    datagrams: list[Datagram] = [(B, tftp_bytes.oack([("blksize", "8")])), (A, tftp_bytes.ack(0))]
    number = last = 1
    for index in range(count):
        payload = b"z" * (8 if index < count - 1 else 3)
        datagrams.append((B, struct.pack(">HH", 3, number) + payload))
        last = number
        number = number + 1 if number < 65535 else wrap_to
    _, facts = feed(tftp, datagrams)
    assert facts["blocks"] == count and facts["retransmitted"] == 0
    assert facts["bytes"] == 8 * (count - 1) + 3
    assert facts["last_block"] == last == (4464 if wrap_to == 0 else 4465)
    assert facts["complete"] is True


def test_tftp_datagrams_twice() -> None:
    """A datagram seen twice (a retransmission): DATA counted once in blocks and bytes and
    once more in ``retransmitted``; requests, OACKs and errors are recorded again."""
    datagrams = [(B, tftp_bytes.oack([("blksize", "512")])), (A, tftp_bytes.ack(0))]
    datagrams += transfer(b"q" * 1300)
    datagrams.append((A, tftp_bytes.error(0, "done")))
    once, once_facts = feed(tftp, datagrams)
    twice, twice_facts = feed(tftp, [each for each in datagrams for _ in (0, 1)])
    assert names(twice) == ["OACK", "OACK", "TRANSFER", "ERROR", "ERROR"]
    assert names(once) == ["OACK", "TRANSFER", "ERROR"]
    for key in ("blocks", "bytes", "last_block", "complete", "block_size"):
        assert twice_facts[key] == once_facts[key], key
    assert once_facts["retransmitted"] == 0
    assert twice_facts["retransmitted"] == once_facts["blocks"] == 3
    assert twice_facts["acks"] == 2 * once_facts["acks"]
    assert twice_facts["errors"] == once_facts["errors"] * 2


def test_tftp_retransmitted_block_and_reordered_ack() -> None:
    blocks = transfer(b"r" * 700)  # DATA 1, ACK 1, DATA 2, ACK 2
    _, facts = feed(tftp, [blocks[0], blocks[0], blocks[1], blocks[2], blocks[0], blocks[3]])
    assert (facts["blocks"], facts["retransmitted"], facts["bytes"]) == (2, 2, 700)


def test_tftp_not_tftp_datagram_is_counted() -> None:
    record, facts = feed(tftp, [(A, b"\x00\x09junk"), (A, b"")])
    assert record.operations == [] and record.counters == {"not_tftp": 2}
    assert facts["blocks"] == 0


# --- fuzz -----------------------------------------------------------------------------------------

SAMPLES: list[bytes] = [payload for _, payload in PXE_DORA] + [
    dhcp_bytes.dhcpv6_solicit(dhcp_bytes.duid_ll(CLIENT_MAC), 5),
    dhcp_bytes.dhcpv6_advertise(
        dhcp_bytes.duid_ll(CLIENT_MAC), dhcp_bytes.duid_uuid(), 5, vendor_class=None
    ),
    dhcp_bytes.dhcpv6_relay_forward(
        dhcp_bytes.dhcpv6_information_request(dhcp_bytes.duid_uuid(), 9)
    ),
    tftp_bytes.rrq(BOOT_FILE, options=tftp_bytes.PXE_OPTIONS),
    tftp_bytes.oack(tftp_bytes.PXE_OPTIONS),
    tftp_bytes.data(1, b"d" * 512),
    tftp_bytes.ack(0),
    tftp_bytes.error(1, "File not found"),
]


@pytest.mark.parametrize("module", [dhcp, tftp], ids=["dhcp", "tftp"])
def test_random_bytes_and_truncations_never_raise(module: ModuleType) -> None:
    generator = random.Random(20261206)
    conversation = module.Conversation(Record())
    fed = 0
    for sample in SAMPLES:
        for cut in range(len(sample) + 1):
            for ports in ((68, 67), (546, 547), (50000, 69), (2087, 57509)):
                module.claims(ports, sample[:cut])
            conversation.datagram(cut % 2, sample[:cut], At(fed, fed))
            fed += 1
        for _ in range(300):  # a few octets changed anywhere
            mutated = bytearray(sample)
            for _ in range(generator.randint(1, 4)):
                mutated[generator.randrange(len(mutated))] = generator.randrange(256)
            conversation.datagram(A, bytes(mutated), At(fed, fed))
            fed += 1
    for _ in range(20_000):
        size = generator.choice([0, 1, 2, 3, 4, 5, 8, 20, 236, 240, 300, 600, 1500])
        blob = generator.randbytes(size)
        if generator.random() < 0.5 and size >= 2:  # a plausible opcode / message type first
            blob = bytes([0, generator.randrange(8)]) + blob[2:]
        for ports in ((68, 67), (547, 546), (4011, 68), (49999, 69), (3000, 4000)):
            assert module.claims(ports, blob) in (True, False)
        conversation.datagram(generator.randrange(2), blob, At(fed, fed))
        fed += 1
    conversation.end()
    facts = conversation.facts()
    record = conversation.record
    assert record.counters.get("not_dhcp", 0) + record.counters.get("not_tftp", 0) < fed
    assert len(record.operations) <= MAX_OPERATIONS
    json_ready(record, facts)


def test_random_bytes_are_rarely_claimed() -> None:
    generator = random.Random(7)
    claimed: Counter[str] = Counter()
    for _ in range(50_000):
        blob = generator.randbytes(generator.choice([4, 12, 48, 300, 600]))
        claimed["dhcp"] += dhcp.claims((68, 67), blob) or dhcp.claims((546, 547), blob)
        claimed["tftp"] += tftp.claims((50000, 69), blob) or tftp.claims((3000, 4000), blob)
    assert claimed == Counter({"dhcp": 0, "tftp": 0})


# --- tshark agreement on real captures ----------------------------------------------------------


@dataclass
class Flow:
    """A UDP conversation as tshark numbers it, fed to the module that claims it."""

    stream: int
    module: ModuleType | None
    record: Record
    facts: dict[str, Any]
    frames: list[int]


def _endpoint(row: dict[str, list[str]], which: str) -> tuple[str, int]:
    address = (row.get(f"ip.{which}") or row.get(f"ipv6.{which}") or [""])[-1]
    return address, int(row[f"udp.{which}port"][0])


def flows_of(tshark: str, path: Path) -> dict[int, Flow]:
    """Every UDP stream of ``path``: claimed by dhcp, else tftp (``stream.MODULES`` order), and
    fed every datagram; side A is the sender of the first datagram with a payload."""
    fields = ["frame.number", "frame.time_epoch", "udp.stream", "ip.src", "ipv6.src"]
    fields += ["udp.srcport", "ip.dst", "ipv6.dst", "udp.dstport", "udp.payload"]
    by_stream: dict[int, list[dict[str, list[str]]]] = defaultdict(list)
    for row in tshark_fields(tshark, path, "udp && !icmp && !icmpv6", fields):
        by_stream[int(row["udp.stream"][0])].append(row)
    flows = {}
    for number, rows in by_stream.items():
        datagrams = []
        for row in rows:
            payload = bytes.fromhex((row.get("udp.payload") or [""])[0].replace(":", ""))
            if payload:
                datagrams.append((row, payload))
        if not datagrams:
            continue
        first_row, first = datagrams[0]
        side_a = _endpoint(first_row, "src")
        ports = (side_a[1], _endpoint(first_row, "dst")[1])
        module = next((m for m in (dhcp, tftp) if m.claims(ports, first)), None)
        record = Record()
        facts: dict[str, Any] = {}
        if module is not None:
            conversation = module.Conversation(record)
            for row, payload in datagrams:
                ts_ns = int(Decimal(row["frame.time_epoch"][0]) * 1_000_000_000)
                side = A if _endpoint(row, "src") == side_a else B
                conversation.datagram(side, payload, At(int(row["frame.number"][0]), ts_ns))
            conversation.end()
            facts = conversation.facts()
        flows[number] = Flow(
            number, module, record, facts, [int(r["frame.number"][0]) for r, _ in datagrams]
        )
    return flows


def _by_stream(
    tshark: str, path: Path, display_filter: str, fields: list[str]
) -> dict[int, list[dict[str, list[str]]]]:
    rows: dict[int, list[dict[str, list[str]]]] = defaultdict(list)
    for row in tshark_fields(tshark, path, display_filter, ["udp.stream", "frame.number", *fields]):
        rows[int(row["udp.stream"][0])].append(row)
    return rows


def _one(row: dict[str, list[str]], field: str) -> str | None:
    values = row.get(field) or []
    return values[0] if values else None


def _address(row: dict[str, list[str]], field: str) -> str | None:
    """An address field; 0.0.0.0 (the field not used, RFC 2131 2) as None, as ours."""
    value = _one(row, field)
    return None if value == "0.0.0.0" else value


V4_NAMES = {str(number): name for number, name in dhcp.first_bytes.MESSAGE_TYPES_V4.items()}
V6_NAMES = {str(number): name for number, name in dhcp.first_bytes.MESSAGE_TYPES_V6.items()}
V4_FIELDS = ["dhcp.option.dhcp", "dhcp.id", "dhcp.hw.mac_addr", "dhcp.ip.your"]
V4_FIELDS += ["dhcp.option.dhcp_server_id", "dhcp.option.vendor_class_id", "dhcp.ip.server"]
V4_FIELDS += ["dhcp.option.requested_ip_address", "dhcp.option.bootfile_name", "dhcp.file"]
V6_FIELDS = ["dhcpv6.msgtype", "dhcpv6.xid", "dhcpv6.duid.bytes"]


def dhcp_captures(corpus: Path) -> list[Path]:
    files = [*oracle_files(corpus, "dhcp_bootp"), *oracle_files(corpus, "dhcpv6")]
    return [*dict.fromkeys(files), LAB_PXE]


def compare_dhcp(tshark: str, path: Path, outcomes: Counter[str], problems: list[str]) -> None:
    """Per stream tshark shows DHCP in: the message types in order (``dhcp.option.dhcp`` /
    ``dhcpv6.msgtype``) and, message by message, frame, xid, client and addresses."""
    flows = flows_of(tshark, path)
    v4 = _by_stream(tshark, path, "dhcp", V4_FIELDS)
    v6 = _by_stream(tshark, path, "dhcpv6", V6_FIELDS)
    for number in sorted({*v4, *v6}):
        flow = flows.get(number)
        if flow is None or flow.module is not dhcp:
            outcomes["stream not claimed"] += 1
            problems.append(f"{path.name} stream {number}: not claimed")
            continue
        ours = {entry["frame"]: entry for entry in flow.record.operations}
        expected_types = []
        for row in v4.get(number, []) + v6.get(number, []):
            frame = int(row["frame.number"][0])
            entry = ours.get(frame, {})
            if number in v4:
                # BOOTP without option 53 has no dhcp.option.dhcp; tshark calls it BOOTP.
                name = V4_NAMES.get(_one(row, "dhcp.option.dhcp") or "", "BOOTREQUEST/BOOTREPLY")
                xid = (_one(row, "dhcp.id") or "")[2:].rjust(8, "0")
                checks: dict[str, tuple[Any, Any]] = {
                    "type": (entry.get("operation"), name),
                    "xid": (entry.get("xid"), xid),
                    "client": (entry.get("target"), _one(row, "dhcp.hw.mac_addr")),
                    "your_address": (entry.get("your_address"), _address(row, "dhcp.ip.your")),
                    "server_id": (entry.get("server_id"), _one(row, "dhcp.option.dhcp_server_id")),
                    "vendor_class": (
                        entry.get("vendor_class"), _one(row, "dhcp.option.vendor_class_id")
                    ),
                    "next_server": (entry.get("next_server"), _address(row, "dhcp.ip.server")),
                    "requested_address": (
                        entry.get("requested_address"),
                        _one(row, "dhcp.option.requested_ip_address"),
                    ),
                    # RFC 2132 9.5: option 67, else the file field.
                    "boot_file": (
                        entry.get("boot_file"),
                        _one(row, "dhcp.option.bootfile_name") or _one(row, "dhcp.file"),
                    ),
                }  # fmt: skip
            else:
                # A relay message shows the relayed types too; the first is the datagram's.
                name = V6_NAMES.get(_one(row, "dhcpv6.msgtype") or "", "?")
                v6_xid = _one(row, "dhcpv6.xid")
                # dhcpv6.duid.bytes lists the whole DUIDs of the message (client's and server's,
                # in option order); the client's (RFC 8415 21.2), which ours names, is among them.
                duids = [value.replace(":", "") for value in row.get("dhcpv6.duid.bytes", [])]
                target = entry.get("target") or ""
                checks = {
                    "type": (entry.get("operation"), name),
                    "xid": (entry.get("xid"), v6_xid and v6_xid[2:].rjust(6, "0")),
                    "client": (target in duids, True),
                }
            expected_types.append(name)
            for field, (mine, theirs) in checks.items():
                if mine == theirs:
                    outcomes[f"{field} agree"] += 1
                else:
                    outcomes[f"{field} disagree"] += 1
                    problems.append(
                        f"{path.name} frame {frame} {field}: ours {mine}, tshark {theirs}"
                    )
        if flow.facts["message_types"] == expected_types:
            outcomes["stream message types agree"] += 1
        else:
            outcomes["stream message types disagree"] += 1
            problems.append(f"{path.name} stream {number}: {flow.facts} vs {expected_types}")


@pytest.mark.corpus
@pytest.mark.tshark
def test_dhcp_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """Every DHCP/DHCPv6 stream of the corpus and the lab's dnsmasq PXE capture, frame by frame.

    Measured (zeek_dhcp_dora, sv_smb2_mixed_windows_lan, ppp_dhcpv6_pxeclient,
    sv_smb_psexec_add_user, lab pxe): every field below agrees on every message.
    """
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    captures = dhcp_captures(corpus)
    assert {"zeek_dhcp_dora.pcap", "ppp_dhcpv6_pxeclient.pcap", "pxe.pcap"} <= {
        path.name for path in captures
    }
    for path in captures:
        compare_dhcp(tshark, path, outcomes, problems)
    print(f"DHCP vs tshark: {dict(outcomes)}")
    assert not problems, "\n".join(problems[:40])
    assert outcomes["stream message types agree"] >= 10

    # The lab's dnsmasq: the broadcast flow holds both clients' DISCOVER and REQUEST.
    broadcast = flows_of(tshark, LAB_PXE)[0]
    assert broadcast.facts["message_types"] == ["DISCOVER", "REQUEST", "DISCOVER", "REQUEST"]
    assert broadcast.facts["clients"] == ["02:00:00:00:01:64", "02:00:00:00:01:65"]
    offer = next(
        entry
        for flow in flows_of(tshark, LAB_PXE).values()
        for entry in flow.record.operations
        if entry["operation"] == "OFFER"
    )
    assert offer["boot_file"] == "smsboot/x64/wdsnbp.com"
    assert offer["next_server"] == SERVER


@pytest.mark.corpus
@pytest.mark.tshark
def test_streams_tshark_does_not_call_dhcp_or_tftp_are_not_claimed(
    corpus: Path, tshark: str
) -> None:
    """DNS, NetBIOS, LLMNR, SSDP, CLDAP, NTP, WoL, Kerberos...: no UDP stream of the corpus
    that tshark dissects as neither DHCP nor TFTP is claimed by either module."""
    checked = 0
    paths = sorted({*dhcp_captures(corpus), *tftp_captures(corpus), *corpus.glob("*.pcap*")})
    for path in paths:
        protocols: dict[int, set[str]] = defaultdict(set)
        for row in tshark_fields(tshark, path, "udp", ["udp.stream", "frame.protocols"]):
            protocols[int(row["udp.stream"][0])].update(
                (_one(row, "frame.protocols") or "").split(":")
            )
        for number, flow in flows_of(tshark, path).items():
            if protocols[number] & {"dhcp", "dhcpv6", "tftp"}:
                continue
            checked += 1
            assert flow.module is None, (path.name, number, protocols[number])
    print(f"other UDP streams checked: {checked}")
    assert checked >= 100


TFTP_FIELDS = ["tftp.opcode", "tftp.source_file", "tftp.destination_file", "tftp.block"]
TFTP_FIELDS += ["tftp.block.full", "tftp.error.code", "udp.length"]
OPCODES = {"1": "RRQ", "2": "WRQ", "3": "DATA", "4": "ACK", "5": "ERROR", "6": "OACK"}


def tftp_captures(corpus: Path) -> list[Path]:
    return [corpus / "sv_tftp_wrq.pcap", corpus / "ndpi_tftp.pcap", LAB_PXE]


def compare_tftp(tshark: str, path: Path, outcomes: Counter[str], problems: list[str]) -> None:
    """Per stream tshark shows TFTP in: opcode counts (DATA and ACK from the summary), request
    file names, and the DATA blocks: frames, distinct blocks, highest block, data octets."""
    flows = flows_of(tshark, path)
    for number, rows in sorted(_by_stream(tshark, path, "tftp", TFTP_FIELDS).items()):
        flow = flows.get(number)
        if flow is None or flow.module is not tftp:
            outcomes["stream not claimed"] += 1
            problems.append(f"{path.name} stream {number}: not claimed")
            continue
        facts = flow.facts
        theirs: Counter[str] = Counter(OPCODES[_one(row, "tftp.opcode") or ""] for row in rows)
        mine: Counter[str] = Counter(
            entry["operation"]
            for entry in flow.record.operations
            if entry["operation"] != "TRANSFER"
        )
        mine["DATA"] = facts["blocks"] + facts["retransmitted"]
        mine["ACK"] = facts["acks"]
        checks: dict[str, tuple[Any, Any]] = {"opcodes": (+mine, +theirs)}
        requests = [row for row in rows if _one(row, "tftp.opcode") in ("1", "2")]
        # tshark leaves an empty file name out (ndpi_tftp stream 1: ``00 01 00 "octet" 00``);
        # ours is the empty string the request carries.
        checks["file names"] = (
            [e["target"] for e in flow.record.operations if e["operation"] in ("RRQ", "WRQ")],
            [
                _one(row, "tftp.source_file") or _one(row, "tftp.destination_file") or ""
                for row in requests
            ],
        )
        data = [row for row in rows if _one(row, "tftp.opcode") == "3"]
        full = [int(_one(row, "tftp.block.full") or _one(row, "tftp.block") or 0) for row in data]
        seen: dict[int, int] = {}
        for block, row in zip(full, data, strict=True):
            seen.setdefault(block, int(_one(row, "udp.length") or 0) - 8 - 4)
        checks["blocks"] = (
            (facts["blocks"], facts["retransmitted"]),
            (len(seen), len(full) - len(seen)),
        )
        checks["last block"] = (facts["last_block"], max(full) % 65536 if full else None)
        checks["bytes"] = (facts["bytes"], sum(seen.values()))
        for field, (ours, tsharks) in checks.items():
            if ours == tsharks:
                outcomes[f"{field} agree"] += 1
            else:
                outcomes[f"{field} disagree"] += 1
                problems.append(
                    f"{path.name} stream {number} {field}: ours {ours}, tshark {tsharks}"
                )


@pytest.mark.corpus
@pytest.mark.tshark
def test_tftp_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """sv_tftp_wrq (a WRQ, its transfer opened by the server's ACK 0), ndpi_tftp (read
    requests, a retransmitted DATA block, an OACK flow), lab pxe (dnsmasq serving wdsnbp.com).

    One difference by design: ndpi_tftp stream 0 is an RRQ whose file name and mode are both
    empty (``00 01 00 00``, then zeros): tshark calls it TFTP, it is no request by RFC 1350 5
    (the mode must be netascii, octet or mail), so nobody claims that flow.
    """
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    for path in tftp_captures(corpus):
        compare_tftp(tshark, path, outcomes, problems)
    print(f"TFTP vs tshark: {dict(outcomes)}")
    assert problems == ["ndpi_tftp.pcap stream 0: not claimed"], "\n".join(problems)
    assert outcomes["opcodes agree"] >= 10 and outcomes["blocks agree"] >= 10

    # The lab transfer: 81 blocks of wdsnbp.com, the last one short.
    lab = [flow for flow in flows_of(tshark, LAB_PXE).values() if flow.module is tftp]
    request = next(flow for flow in lab if flow.record.operations[0]["operation"] == "RRQ")
    assert request.record.operations[0]["target"] == "smsboot/x64/wdsnbp.com"
    data = next(flow for flow in lab if flow.facts["blocks"])
    assert (data.facts["blocks"], data.facts["complete"], data.facts["retransmitted"]) == (
        81,
        True,
        0,
    )
    assert data.record.operations[0]["operation"] == "TRANSFER"
    assert data.record.operations[0]["side"] == A  # the server's port sent the first packet


@pytest.mark.corpus
@pytest.mark.tshark
def test_the_engine_gives_the_same_operations(
    corpus: Path, tshark: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``engine.conversations`` (its flow table, idle timeout and claims) records the same
    operations as the datagrams fed here from tshark's streams. Only the DHCP and TFTP modules
    are offered, so that this test is about them alone.

    Flows differ in one way, by design: the engine's flow table ends a UDP flow after 60 s
    idle (``DEFAULT_IDLE_TIMEOUT``), tshark's ``udp.stream`` never does, so a DHCPv6 client
    soliciting every few minutes (sv_smb2_mixed_windows_lan) is one stream to tshark and
    several flows to the engine. The operations, frame by frame, are the same.
    """
    import flowaudit.stream as stream_package
    from flowaudit.stream.engine import conversations

    monkeypatch.setattr(stream_package, "_LOADED", {"tcp": [], "udp": [dhcp, tftp]})
    keys = ("frame", "operation", "target", "status")
    counts: Counter[str] = Counter()
    for path in sorted({*dhcp_captures(corpus), *tftp_captures(corpus)}):
        streams = [flow for flow in flows_of(tshark, path).values() if flow.module is not None]
        flows = conversations([str(path)])
        mine = sorted(
            tuple(entry.get(key) for key in keys)
            for flow in streams
            for entry in flow.record.operations
        )
        engine = sorted(
            tuple(entry.get(key) for key in keys) for flow in flows for entry in flow["operations"]
        )
        assert engine == mine, path.name
        # Every stream starts an engine flow (a split adds flows, never moves a start).
        assert {flow.frames[0] for flow in streams} <= {flow["first_frame"] for flow in flows}
        counts["streams"] += len(streams)
        counts["engine flows"] += len(flows)
        counts["operations"] += len(mine)
    print(f"engine vs fed here: {dict(counts)}")
    assert counts["operations"] >= 100  # 95 DHCP messages, 12 TFTP operations (measured)
