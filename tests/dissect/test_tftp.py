"""TFTP dissector: requests, options, the answer from a new port; bytes, captures and corpus."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowaudit.dissect import dissect, tftp
from tests.dissect.test_dhcp import (
    UdpFrame,
    random_payloads,
    tshark_protocols_by_stream,
    udp_corpus_files,
    udp_streams,
)
from tests.dissect.tshark_streams import oracle_files, tshark_fields
from tests.protobytes.dhcp import pxe_discover
from tests.protobytes.tftp import (
    BOOT_FILE,
    ERROR_FILE_NOT_FOUND,
    ERROR_OPTION_REFUSED,
    PXE_OPTIONS,
    ack,
    data,
    error,
    file_blocks,
    oack,
    rrq,
    wrq,
)
from tests.protobytes.wol import magic_packet
from tests.scapy_flows import flow_table, payloads_of, udp_exchange, write_capture

PXE_OPTIONS_FACT = dict(PXE_OPTIONS)


def _facts(opcode: str, **expected: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "opcode": opcode,
        "filename": None,
        "mode": None,
        "options": {},
        "block": None,
        "error_code": None,
        "error_message": None,
        "request": opcode in ("RRQ", "WRQ"),
    }
    facts.update(expected)
    return facts


# (case, c2s, s2c, the whole facts expected)
CASES: list[tuple[str, bytes, bytes, dict[str, Any] | None]] = [
    (
        "pxe-rrq-with-options",
        rrq(BOOT_FILE, "octet", PXE_OPTIONS),
        b"",
        _facts("RRQ", filename=BOOT_FILE, mode="octet", options=PXE_OPTIONS_FACT),
    ),
    (
        "wrq-netascii",
        wrq("zz.bin", "netascii"),
        b"",
        _facts("WRQ", filename="zz.bin", mode="netascii"),
    ),
    (
        "mode-and-option-names-are-case-insensitive",
        rrq("a.txt", "OcTeT", [("BlkSize", "1468"), ("TSIZE", "0")]),
        b"",
        _facts("RRQ", filename="a.txt", mode="octet", options={"blksize": "1468", "tsize": "0"}),
    ),
    (
        # Datagrams back to back: the zero octet of the next opcode ends the options.
        "request-retransmitted",
        rrq(BOOT_FILE, "octet", PXE_OPTIONS) + rrq(BOOT_FILE, "octet", [("timeout", "1")]),
        b"",
        _facts("RRQ", filename=BOOT_FILE, mode="octet", options=PXE_OPTIONS_FACT),
    ),
    (
        "repeated-option-first-wins",
        rrq("f", "octet", [("blksize", "1456"), ("blksize", "8")]),
        b"",
        _facts("RRQ", filename="f", mode="octet", options={"blksize": "1456"}),
    ),
    (
        "option-cut-by-the-window-is-left-out",
        rrq("f", "octet", [("tsize", "0")]) + b"blksize\x00145",
        b"",
        _facts("RRQ", filename="f", mode="octet", options={"tsize": "0"}),
    ),
    (
        "empty-file-name-is-still-a-request",  # RFC 1350 does not forbid it; tshark reads it too
        rrq(""),
        b"",
        _facts("RRQ", filename="", mode="octet"),
    ),
    (
        "mail-mode",
        wrq("root", "mail"),
        b"",
        _facts("WRQ", filename="root", mode="mail"),
    ),
    (
        # The answer flow, from the server's new port: OACK, the client's ACK 0.
        "oack-answered-by-ack-0",
        oack(PXE_OPTIONS),
        ack(0),
        _facts("OACK", options=PXE_OPTIONS_FACT),
    ),
    (
        "first-data-block-answered-by-ack-1",
        data(1, b"x" * 512) + data(2, b"tail"),
        ack(1) + ack(2),
        _facts("DATA", block=1),
    ),
    (
        "wrq-answered-by-ack-0-then-data-1",
        ack(0) + ack(1),
        data(1, b"payload"),
        _facts("ACK", block=0),
    ),
    (
        "last-ack-of-a-one-block-read",
        ack(1),
        b"",
        _facts("ACK", block=1),
    ),
    (
        "error-file-not-found",
        error(ERROR_FILE_NOT_FOUND, "File not found"),
        b"",
        _facts("ERROR", error_code=1, error_message="File not found"),
    ),
    (
        "error-option-negotiation-refused",  # RFC 2347: the client refuses an OACK
        error(ERROR_OPTION_REFUSED, ""),
        b"",
        _facts("ERROR", error_code=8, error_message=""),
    ),
    (
        "error-text-with-line-breaks",
        error(0, "Access denied\r\nsee log"),
        b"",
        _facts("ERROR", error_code=0, error_message="Access denied\r\nsee log"),
    ),
    (
        "server-side-only",
        b"",
        data(1, b"x"),
        _facts("DATA", block=1),
    ),
    (
        # Note 4 of the ports page: a server set to answer from port 69 keeps one flow.
        "server-answering-from-port-69",
        rrq(BOOT_FILE),
        data(1, b"MZ"),
        _facts("RRQ", filename=BOOT_FILE, mode="octet"),
    ),
    (
        "request-beside-anything",
        rrq("f"),
        b"\x17\x03\x03 not tftp",
        _facts("RRQ", filename="f", mode="octet"),
    ),
    ("empty", b"", b"", None),
    ("data-block-2-is-mid-transfer", data(2, b"x" * 512), b"", None),
    ("data-block-0", data(0, b"x"), b"", None),
    ("ack-block-2", ack(2), b"", None),
    ("error-code-9", error(9, "nine"), b"", None),
    ("error-without-nul", error(0, "x")[:-1], b"", None),
    ("error-binary-text", b"\x00\x05\x00\x00\x01\x02\x00", b"", None),
    ("oack-without-options", oack([]), b"", None),
    ("oack-value-unterminated", oack([("blksize", "1456")])[:-1], b"", None),
    ("oack-control-octet-in-name", b"\x00\x06blk\x01size\x001456\x00", b"", None),
    ("request-mode-binary", rrq("f", "binary"), b"", None),
    ("request-empty-mode", rrq("", ""), b"", None),
    ("request-control-octet-in-name", rrq("a\x07b"), b"", None),
    ("request-without-nul", b"\x00\x01file", b"", None),
    ("opcode-7", b"\x00\x07\x00\x01", b"", None),
    ("opcode-high-octet-set", b"\x01\x01\x00\x01", b"", None),
    ("three-octets", b"\x00\x04\x00", b"", None),
    ("data-1-answered-by-garbage", data(1, b"x"), b"\x16\x03\x01\x00\x05", None),
    ("garbage-then-a-request-back", b"\x16\x03\x01\x00\x05", rrq("f"), None),
    ("dhcp-discover", pxe_discover("00:15:5d:01:02:03", 1), b"", None),
    ("wake-on-lan", magic_packet("00:15:5d:01:02:03"), b"", None),
    ("binary", bytes(range(256)), bytes(range(255, -1, -1)), None),
]


@pytest.mark.parametrize(
    ("c2s", "s2c", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cases(c2s: bytes, s2c: bytes, expected: dict[str, Any] | None) -> None:
    assert tftp.parse(c2s, s2c) == expected


def test_text_is_cut_to_256_characters() -> None:
    facts = tftp.parse(rrq("d/" * 200, "octet", [("x" * 300, "y" * 300)]), b"")
    assert facts is not None
    assert facts["filename"] == ("d/" * 200)[:256]
    assert facts["options"] == {"x" * 256: "y" * 256}


# --- tiny captures through the flow table ------------------------------------------------------

CLIENT, SERVER = "10.0.0.50", "10.0.0.5"


def _flows(path: Path) -> dict[int, tuple[bytes, bytes]]:
    """server port -> (c2s, s2c) of each flow of the capture."""
    table = flow_table(path)
    c2s, s2c = table.payloads.columns()
    ports = table.columns["server_port"].tolist()
    return {int(port): (c2s[k], s2c[k]) for k, port in enumerate(ports)}


def test_tiny_capture_rrq_to_69_and_data_from_an_ephemeral_port(tmp_path: Path) -> None:
    """The request is one flow; the answer, from the server's new port, is another.

    The answering side sends first, so it is that flow's client (flows.py: the first sender of
    a UDP flow between two non-service ports is the client).
    """
    blocks = file_blocks(b"\x4d\x5a" + b"\x00" * 700)
    request = udp_exchange(CLIENT, SERVER, 2070, 69, [("c", rrq(BOOT_FILE))])
    answer = udp_exchange(
        SERVER,
        CLIENT,
        50123,
        2070,
        [("c", blocks[0]), ("s", ack(1)), ("c", blocks[1]), ("s", ack(2))],
        start=1_700_000_000.01,
    )
    flows = _flows(write_capture(tmp_path / "tftp.pcap", request + answer))
    assert sorted(flows) == [69, 2070]
    assert tftp.parse(*flows[69]) == _facts("RRQ", filename=BOOT_FILE, mode="octet")
    assert flows[2070][0].startswith(blocks[0])
    assert tftp.parse(*flows[2070]) == _facts("DATA", block=1)
    assert [dissect("udp", *flows[port])[0] for port in (69, 2070)] == ["tftp", "tftp"]


def test_tiny_capture_negotiated_read(tmp_path: Path) -> None:
    """RFC 2347: the answer flow opens with OACK; the client acknowledges it with block 0."""
    request = udp_exchange(CLIENT, SERVER, 2071, 69, [("c", rrq(BOOT_FILE, "octet", PXE_OPTIONS))])
    answer = udp_exchange(
        SERVER,
        CLIENT,
        50124,
        2071,
        [("c", oack(PXE_OPTIONS)), ("s", ack(0)), ("c", data(1, b"x" * 1456)), ("s", ack(1))],
        start=1_700_000_000.01,
    )
    flows = payloads_of(write_capture(tmp_path / "tftp.pcap", request + answer))
    facts = [tftp.parse(c2s, s2c) for _, c2s, s2c in flows]
    assert facts == [
        _facts("RRQ", filename=BOOT_FILE, mode="octet", options=PXE_OPTIONS_FACT),
        _facts("OACK", options=PXE_OPTIONS_FACT),
    ]


@pytest.mark.tshark
def test_tshark_reads_our_bytes_as_we_mean_them(tmp_path: Path, tshark: str) -> None:
    packets = udp_exchange(CLIENT, SERVER, 2072, 69, [("c", rrq(BOOT_FILE, "octet", PXE_OPTIONS))])
    packets += udp_exchange(
        SERVER,
        CLIENT,
        50125,
        2072,
        [("c", oack(PXE_OPTIONS)), ("s", ack(0)), ("c", error(ERROR_FILE_NOT_FOUND, "gone"))],
        start=1_700_000_000.01,
    )
    path = write_capture(tmp_path / "tftp.pcap", packets)
    fields = ["tftp.opcode", "tftp.source_file", "tftp.type", "tftp.option.name"]
    fields += ["tftp.option.value", "tftp.block", "tftp.error.code", "tftp.error.message"]
    rows = tshark_fields(tshark, path, "tftp", fields)
    assert [row["tftp.opcode"] for row in rows] == [["1"], ["6"], ["4"], ["5"]]
    assert rows[0]["tftp.source_file"] == [BOOT_FILE]
    assert rows[0]["tftp.type"] == ["octet"]
    assert rows[0]["tftp.option.name"] == [name for name, _ in PXE_OPTIONS]
    assert rows[1]["tftp.option.value"] == [value for _, value in PXE_OPTIONS]
    assert rows[2]["tftp.block"] == ["0"]
    assert (rows[3]["tftp.error.code"], rows[3]["tftp.error.message"]) == (["1"], ["gone"])


# --- never raise; random bytes are not TFTP ------------------------------------------------------


def _check_json_ready(facts: dict[str, Any] | None) -> None:
    if facts is None:
        return
    json.dumps(facts)
    for value in [*facts.values(), *facts["options"], *facts["options"].values()]:
        if isinstance(value, str):
            assert len(value) <= 256


def test_every_truncation_and_random_bytes_never_raise() -> None:
    messages = [
        rrq(BOOT_FILE, "octet", PXE_OPTIONS) * 2,
        oack(PXE_OPTIONS),
        error(ERROR_OPTION_REFUSED, "no"),
        data(1, b"\x00" * 20),
        ack(0),
    ]
    for message in messages:
        for cut in range(len(message) + 1):
            for other in (b"", ack(1), message[:cut]):
                _check_json_ready(tftp.parse(message[:cut], other))
                _check_json_ready(tftp.parse(other, message[:cut]))
    generator = random.Random(69)
    for _ in range(5000):
        noise = generator.randbytes(generator.randrange(0, 200))
        # Behind an opcode, to get past the first check; printable noise reaches the strings.
        opcode = bytes([0, generator.randrange(1, 7)])
        if generator.random() < 0.5:
            noise = bytes(generator.choice(b"ab\x00.\x01OCTET\xff") for _ in range(len(noise)))
        _check_json_ready(tftp.parse(opcode + noise, noise))


def test_random_payloads_are_not_tftp() -> None:
    taken = sum(tftp.parse(c2s, s2c) is not None for c2s, s2c in random_payloads(seed=69))
    print(f"TFTP false positives on 100,000 random payloads: {taken} ({taken / 100_000:.4%})")
    assert taken == 0


# --- the real corpus against tshark ------------------------------------------------------------

FIELDS = (
    "tftp.opcode",
    "tftp.source_file",
    "tftp.destination_file",
    "tftp.type",
    "tftp.option.name",
    "tftp.option.value",
    "tftp.block",
    "tftp.error.code",
    "tftp.error.message",
)


def _expected(frame: UdpFrame) -> dict[str, Any]:
    """What tshark shows of the packet the dissector reads first, as the dissector's facts."""
    shown = frame.fields

    def first(field: str) -> str:
        return (shown.get(field) or [""])[0]

    opcode = int(first("tftp.opcode"))
    facts = _facts(tftp.OPCODE_NAMES[opcode])
    if opcode in tftp.REQUESTS:
        # tshark also names the file on later packets (it tracks the transfer): requests only.
        facts["filename"] = first(
            "tftp.source_file" if opcode == tftp.RRQ else "tftp.destination_file"
        )
        facts["mode"] = first("tftp.type").lower()
    if opcode in (*tftp.REQUESTS, tftp.OACK):
        names, values = shown.get("tftp.option.name", []), shown.get("tftp.option.value", [])
        # Not strict: tshark_fields drops empty values, as in the malformed RRQ of ndpi_tftp.
        facts["options"] = {key.lower(): value for key, value in zip(names, values, strict=False)}
    if opcode in (tftp.DATA, tftp.ACK):
        facts["block"] = int(first("tftp.block"))
    if opcode == tftp.ERROR:
        facts["error_code"] = int(first("tftp.error.code"))
        facts["error_message"] = first("tftp.error.message")
    return facts


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    """Every UDP stream tshark dissects as TFTP, against the first packet the dissector reads.

    By design, a request whose mode is not an RFC 1350 mode is not TFTP to the dissector:
    tshark dissects anything sent to port 69 (ndpi_tftp.pcap has an RRQ whose file name and
    mode are empty, followed by ``=`` pairs); the classifier still has the port.
    """
    outcomes: Counter[str] = Counter()
    disagreements = []
    files = oracle_files(corpus, "tftp")
    assert {path.name for path in files} >= {"ndpi_tftp.pcap", "sv_tftp_wrq.pcap"}
    for path in files:
        for number, stream in sorted(udp_streams(tshark, path, "tftp", FIELDS).items()):
            frames = stream.kept_in_reading_order()
            if not frames:
                outcomes["nothing kept whole"] += 1
                continue
            expected = _expected(frames[0])
            facts = tftp.parse(stream.flow.c2s, stream.flow.s2c)
            if expected["request"] and expected["mode"] not in tftp.MODES:
                outcomes["not an RFC 1350 mode (by design)"] += 1
                assert facts is None, (path.name, number)
            elif facts == expected:
                outcomes[f"agree {expected['opcode']}"] += 1
            else:
                disagreements.append(
                    f"{path.name} stream {number}: ours {facts}, tshark {expected}"
                )
    print(f"TFTP streams vs tshark: {dict(outcomes)}")
    assert not disagreements, "\n".join(disagreements)
    assert sum(n for outcome, n in outcomes.items() if outcome.startswith("agree")) == 10


@pytest.mark.corpus
@pytest.mark.tshark
def test_corpus_other_udp_streams_are_not_tftp(corpus: Path, tshark: str) -> None:
    checked = 0
    for path in udp_corpus_files(corpus):
        protocols = tshark_protocols_by_stream(tshark, path)
        for number, stream in udp_streams(tshark, path, "udp", ()).items():
            if "tftp" in protocols[number]:
                continue
            checked += 1
            assert tftp.parse(stream.flow.c2s, stream.flow.s2c) is None, (path.name, number)
    print(f"non-TFTP UDP streams checked: {checked}")
    assert checked >= 100
