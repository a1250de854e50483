"""The lab's 100 MiB SMB3 copy (``lab/scenarios/copy.sh``, recorded afresh by CI, never
committed): every byte counted per file, from READ and WRITE headers alone.

smbclient reads ``big.bin`` (104,857,600 bytes) in 8 MiB READs answered across thousands of
segments, and writes ``up.bin`` (10,485,760 bytes). The stream reader keeps no body: the counts
come from each READ response's DataLength and each WRITE request's Length. tshark sums the same
fields (a READ response's data length is ``smb2.olb.length``, a WRITE request's
``smb2.write_length``): both must equal the files' sizes. A
segment missing inside a body would be a gap the reader passes over (its length is known).
The lab's bridge reorders some 64 KB segments (GSO): flowaudit holds them until the hole fills;
tshark reassembles them only with ``tcp.reassemble_out_of_order`` on (off by default, when it
misses the READ responses they belong to).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowaudit.stream import engine
from tests.stream.common import tshark_fields

BIG = 104_857_600
UP = 10_485_760
OUT_OF_ORDER = ("tcp.reassemble_out_of_order:TRUE",)


def copy_capture() -> Path:
    folder = os.environ.get("FLOWAUDIT_LAB")
    path = Path(folder) / "copy.pcap" if folder else None
    if path is None or not path.is_file():
        if os.environ.get("CI"):
            pytest.fail("FLOWAUDIT_LAB/copy.pcap missing: .ci/run records the lab")
        pytest.skip("no fresh lab recording (FLOWAUDIT_LAB): bash lab/record.sh DIR copy")
    return path


def test_a_100_mib_copy_is_read_with_its_byte_counts() -> None:
    path = copy_capture()
    smb = [flow for flow in engine.conversations([str(path)]) if flow["server_port"] == 445]
    assert len(smb) == 1
    conversation = smb[0]["conversation"]["smb"]
    files = {entry["name"]: entry for entry in conversation["files"]}
    assert files["FileLib\\big.bin"]["bytes_read"] == BIG
    assert files["FileLib\\up.bin"]["bytes_written"] == UP
    assert any(tree.endswith("\\SCCMContentLib$") for tree in conversation["trees"])
    reads = [
        entry
        for entry in smb[0]["operations"]
        if entry["operation"] == "READ" and entry.get("target") == "FileLib\\big.bin"
    ]
    assert reads and all(entry["status"] == "STATUS_SUCCESS" for entry in reads)


def test_tshark_counts_the_same_bytes() -> None:
    path = copy_capture()
    answered = "smb2.cmd == 8 && smb2.flags.response == 1 && smb2.nt_status == 0"
    read = sum(
        int(value)
        for (lengths,) in tshark_fields(path, answered, ("smb2.olb.length",), OUT_OF_ORDER)
        for value in lengths.split(",")
        if value
    )
    asked = "smb2.cmd == 9 && smb2.flags.response == 0"
    write = sum(
        int(value)
        for (lengths,) in tshark_fields(path, asked, ("smb2.write_length",), OUT_OF_ORDER)
        for value in lengths.split(",")
        if value
    )
    assert (read, write) == (BIG, UP)
