"""Hostile bytes cost the first-bytes dissectors work in proportion to them, with a small
constant: random or repetitive input is passed over by searches that run in C, and no loop
turns once per byte or once per repetition of a count field.

Work is counted in lines of flowaudit executed (``tests/dissect/work.py``), never timed.
"""

from __future__ import annotations

import random
import struct

from flowaudit.dissect import dcerpc, dhcp, smb, tftp
from tests.dissect.work import lines_run
from tests.protobytes import dcerpc as rpcbytes
from tests.protobytes import dhcp as dhcpbytes
from tests.protobytes import smb as smbbytes
from tests.protobytes import tftp as tftpbytes

KIB = 1024


def _random(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


# --- DCE/RPC: endpoint mapper towers -------------------------------------------------------------


def test_epm_towers_passes_over_random_bytes_without_a_python_loop_per_byte() -> None:
    stub = _random(64 * KIB)
    assert lines_run(dcerpc.epm_towers, stub) < len(stub) // 16


def test_epm_towers_work_stays_linear_where_every_offset_could_start_a_tower() -> None:
    # tower_length 0 and a floor count of 3 at every sixth byte: each place is looked at once
    stub = b"\x00\x00\x00\x00\x03\x00" * (64 * KIB // 6)
    assert lines_run(dcerpc.epm_towers, stub) < 2 * len(stub)
    assert dcerpc.epm_towers(stub) == []


def test_epm_towers_still_finds_a_tower_after_random_bytes() -> None:
    tower = rpcbytes.tcp_tower(rpcbytes.SVCCTL, "10.1.2.3", 49700)
    stub = _random(10 * KIB) + struct.pack("<I", len(tower)) + tower + _random(KIB, seed=2)
    assert ("10.1.2.3", 49700) in dcerpc.epm_towers(stub)


def test_an_epm_reply_of_random_bytes_costs_little_in_parse() -> None:
    client = rpcbytes.bind(1, [rpcbytes.EPM]) + rpcbytes.request(
        2, rpcbytes.EPT_MAP, rpcbytes.ept_map_request(rpcbytes.SVCCTL)
    )
    server = rpcbytes.bind_ack(1, "135") + rpcbytes.response(2, _random(4000))
    facts = dcerpc.parse(client, server)
    assert facts is not None and facts["announced"] == []
    assert lines_run(dcerpc.parse, client, server) < 1500


# --- DHCP: Pad options ---------------------------------------------------------------------------


def _discover(padding: int) -> bytes:
    """A DHCPDISCOVER whose options are separated by ``padding`` Pad octets (RFC 2132 3.1)."""
    message = dhcpbytes.dhcp_message(1, 0x1234, "00:15:5d:00:00:01", end=False)
    vendor = dhcpbytes.option(60, b"PXEClient:Arch:00007:UNDI:003016")
    return message + bytes(padding) + vendor + bytes(padding) + b"\xff"


def test_dhcp_passes_over_pad_options_in_one_step() -> None:
    padded, plain = _discover(1400), _discover(0)
    assert dhcp.parse(padded, b"") == dhcp.parse(plain, b"")
    assert dhcp.parse(padded, b"")["pxe"] is True  # type: ignore[index]
    assert lines_run(dhcp.parse, padded, b"") < lines_run(dhcp.parse, plain, b"") + 50


def test_dhcp_option_instances_are_joined_in_order() -> None:
    """RFC 3396: the data of several instances of one option, joined (without a copy of the
    whole so far per instance)."""
    message = dhcpbytes.dhcp_message(1, 1, "00:15:5d:00:00:01", end=False)
    pieces = [bytes([65 + k % 26]) * 200 for k in range(40)]
    message += b"".join(dhcpbytes.option(60, piece) for piece in pieces) + b"\xff"
    found = dhcp.message(message)
    assert found is not None
    assert found["options"][60] == b"".join(pieces)
    assert list(found["options"]) == [53, 60]


# --- TFTP: strings and options -------------------------------------------------------------------


def test_tftp_checks_a_long_file_name_without_a_python_loop_per_octet() -> None:
    request = tftpbytes.rrq("boot/" + "x" * 1400 + ".wim")
    facts = tftp.parse(request, b"")
    assert facts is not None and facts["filename"].startswith("boot/xxx")
    assert lines_run(tftp.parse, request, b"") < 300


def test_tftp_reads_at_most_32_option_pairs_even_when_names_repeat() -> None:
    oack = b"\x00\x06" + b"a\x00b\x00" * 2000
    assert lines_run(tftp.parse, b"", oack) < 2000
    facts = tftp.parse(b"", oack)
    assert facts is not None and facts["options"] == {"a": "b"}


# --- SMB: keep-alives, Unicode paths -------------------------------------------------------------


def test_smb_passes_over_a_run_of_keep_alives_in_one_step() -> None:
    negotiate = smbbytes.negotiate_request([smbbytes.DIALECT_311])
    answer = smbbytes.negotiate_response(smbbytes.DIALECT_311)
    keep_alives = b"\x85\x00\x00\x00" * 500
    facts = smb.parse(keep_alives + negotiate, keep_alives + answer)
    assert facts == smb.parse(negotiate, answer)
    assert facts is not None and facts["dialect"] == "3.1.1"
    work = lines_run(smb.parse, keep_alives + negotiate, keep_alives + answer)
    assert work < lines_run(smb.parse, negotiate, answer) + 50


def test_smb1_unicode_tree_path_is_found_without_a_python_loop_per_character() -> None:
    path = "\\\\SERVER\\" + "S" * 900
    request = smbbytes.smb1_tree_connect_andx_request(path)
    facts = smb.parse(request, b"")
    assert facts is not None and facts["tree_paths"] == [path[:256]]
    assert lines_run(smb.parse, request, b"") < 300
