"""Wake-on-LAN dissector: the magic packet, SecureOn password; bytes, captures and the corpus."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from flowaudit.config import FlowConfig
from flowaudit.dissect import dissect, wol
from flowaudit.flows import build_flow_table
from tests.dissect.test_dhcp import (
    random_payloads,
    tshark_protocols_by_stream,
    udp_corpus_files,
    udp_streams,
)
from tests.dissect.tshark_streams import oracle_files, tshark_fields
from tests.protobytes.dhcp import pxe_discover
from tests.protobytes.tftp import data, rrq
from tests.protobytes.wol import WAKEUP_PROXY_PORT, WOL_PORT, magic_packet
from tests.scapy_flows import payloads_of, udp_exchange, write_capture

TARGET = "00:15:5d:01:02:03"
OTHER = "00:90:27:85:cf:01"
PACKET = magic_packet(TARGET)


def _facts(target_mac: str = TARGET, secureon_password: bool = False) -> dict[str, Any]:
    return {"target_mac": target_mac, "secureon_password": secureon_password}


# (case, c2s, s2c, the whole facts expected)
CASES: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = [
    ("magic-packet", PACKET, b"", _facts()),
    ("secureon-4", magic_packet(TARGET, b"\xc0\xa8\x01\x01"), b"", _facts(secureon_password=True)),
    ("secureon-6", magic_packet(TARGET, b"secret"), b"", _facts(secureon_password=True)),
    (
        # Datagrams back to back: a second packet right after the first is no password.
        "two-packets-back-to-back",
        PACKET + magic_packet(OTHER),
        b"",
        _facts(),
    ),
    (
        "two-packets-each-with-a-password",
        magic_packet(TARGET, b"pass") + magic_packet(TARGET, b"pass"),
        b"",
        _facts(secureon_password=True),
    ),
    (
        "after-a-tool-header",
        b"WAKE\x00\x01\x00\x00" + b"\x00" * 12 + PACKET,
        b"",
        _facts(),
    ),
    (
        # Trailing bytes of unknown meaning: no password can be told apart from them.
        "inside-a-larger-datagram",
        b"header" + PACKET + b"trailer bytes",
        b"",
        _facts(),
    ),
    (
        # The MAC's own leading 0xFF octets extend the run of 0xFF before it.
        "mac-starting-with-ff-octets",
        magic_packet("ff:ff:ff:00:11:22"),
        b"",
        _facts("ff:ff:ff:00:11:22"),
    ),
    (
        "ff-octets-before-the-sync-stream",
        b"\xff" * 9 + PACKET,
        b"",
        _facts(),
    ),
    ("server-side-only", b"", PACKET, _facts()),
    (
        "last-start-in-the-first-datagram-span",
        b"\x00" * (wol.SEARCH_SPAN - wol.MAGIC_LENGTH) + PACKET,
        b"",
        _facts(),
    ),
    ("beyond-the-first-datagram-span", b"\x00" * (wol.SEARCH_SPAN - 101) + PACKET, b"", None),
    ("broadcast-target-is-fill", b"\xff" * 200, b"", None),
    ("zero-target-is-fill", b"\xff" * 6 + b"\x00" * 96, b"", None),
    ("fifteen-repeats", PACKET[:-6], b"", None),
    ("one-repeat-differs", PACKET[:50] + b"\x01" + PACKET[51:], b"", None),
    ("five-octet-sync-stream", PACKET[1:], b"", None),
    ("empty", b"", b"", None),
    ("dhcp-discover", pxe_discover(TARGET, 1), b"", None),
    ("tftp", rrq("wol.bin"), data(1, b"\xff" * 100), None),
    ("binary", bytes(range(256)) * 4, bytes(range(255, -1, -1)), None),
]


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cases(c2s: bytes, s2c: bytes, expected: dict[str, Any] | None) -> None:
    assert wol.parse(c2s, s2c) == expected


@pytest.mark.parametrize(
    ("destination", "port"),
    [("255.255.255.255", WOL_PORT), ("10.0.1.255", WAKEUP_PROXY_PORT)],
    ids=["wake-on-lan-9-broadcast", "wakeup-proxy-25536"],
)
def test_tiny_capture(tmp_path: Path, destination: str, port: int) -> None:
    packets = udp_exchange("10.0.0.10", destination, 50000, port, [("c", PACKET)])
    [(transport, c2s, s2c)] = payloads_of(write_capture(tmp_path / "wol.pcap", packets))
    assert (transport, c2s, s2c) == ("udp", PACKET, b"")
    assert wol.parse(c2s, s2c) == _facts()
    assert dissect("udp", c2s, s2c) == ("wol", _facts())


@pytest.mark.tshark
def test_tshark_reads_our_bytes_as_we_mean_them(tmp_path: Path, tshark: str) -> None:
    packets = udp_exchange("10.0.0.10", "255.255.255.255", 50000, WOL_PORT, [("c", PACKET)])
    packets += udp_exchange(
        "10.0.0.11", "255.255.255.255", 50001, WOL_PORT, [("c", magic_packet(OTHER, b"pass"))]
    )
    path = write_capture(tmp_path / "wol.pcap", packets)
    rows = tshark_fields(tshark, path, "wol", ["wol.mac", "wol.passwd"])
    assert [row["wol.mac"] for row in rows] == [[TARGET] * 16, [OTHER] * 16]
    # tshark 4.0 renders a 4-octet password as an IPv4 address ("pass" = 112.97.115.115) and
    # keeps the first four characters of that text as the field's bytes: only presence counts.
    assert [row.get("wol.passwd") for row in rows] == [[], [b"112.".hex()]]


# --- never raise; random bytes are not Wake-on-LAN -----------------------------------------------


def test_every_truncation_and_random_bytes_never_raise() -> None:
    messages = [PACKET + magic_packet(OTHER, b"secret"), b"\xff" * 300, b"\xff" * 7 + PACKET]
    for message in messages:
        for cut in range(len(message) + 1):
            for facts in (wol.parse(message[:cut], b""), wol.parse(b"", message[:cut])):
                json.dumps(facts)
    generator = random.Random(9)
    for _ in range(3000):
        # Octets drawn mostly from 0xFF and a few values, to make runs and near-misses.
        noise = bytes(
            generator.choice(b"\xff\xff\xff\x00\x15\x5d") for _ in range(generator.randrange(300))
        )
        json.dumps(wol.parse(noise, noise[::-1]))


def test_random_payloads_are_not_wol() -> None:
    taken = sum(wol.parse(c2s, s2c) is not None for c2s, s2c in random_payloads(seed=9))
    print(f"WoL false positives on 100,000 random payloads: {taken} ({taken / 100_000:.4%})")
    assert taken == 0


# --- the real corpus against tshark ------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """ppp_wol.pcap: one magic packet over UDP 9, three as raw Ethernet frames.

    Raw Ethernet magic packets (EtherType 0x0842) have no IP, so they make no flow: the flow
    table holds the UDP one alone and the dissector never sees the others, by design.
    """
    [path] = oracle_files(corpus, "wol")
    assert path.name == "ppp_wol.pcap"
    streams = udp_streams(tshark, path, "wol", ("wol.mac", "wol.passwd"))
    assert list(streams) == [0]
    [frame] = streams[0].kept_in_reading_order()
    facts = wol.parse(streams[0].flow.c2s, streams[0].flow.s2c)
    expected = _facts(frame.fields["wol.mac"][0], bool(frame.fields.get("wol.passwd")))
    assert facts == expected == _facts(OTHER)

    raw = tshark_fields(tshark, path, "wol && !ip && !ipv6", ["eth.type"])
    assert [row["eth.type"] for row in raw] == [["0x0842"]] * 3
    assert len(build_flow_table([path], FlowConfig(idle_timeout=0))) == 1


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_other_udp_streams_are_not_wol(corpus: Path, tshark: str) -> None:
    checked = 0
    for path in udp_corpus_files(corpus):
        protocols = tshark_protocols_by_stream(tshark, path)
        for number, stream in udp_streams(tshark, path, "udp", ()).items():
            if "wol" in protocols[number]:
                continue
            checked += 1
            assert wol.parse(stream.flow.c2s, stream.flow.s2c) is None, (path.name, number)
    print(f"non-WoL UDP streams checked: {checked}")
    assert checked >= 100
