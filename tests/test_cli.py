"""``flowaudit flows``: each output format, warnings, and one-line errors with exit code 2.

Output is checked through click's ``CliRunner`` on ``flowaudit.cli.cli``; exit codes and what
reaches stderr are checked by running ``python -m flowaudit`` in a subprocess, the way a user
(or a script) meets them.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import struct
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from flowaudit.cli import cli
from flowaudit.errors import EXIT_BAD_INPUT, FlowauditError
from tests import capbuild as cb
from tests.sample import run_module

NS = 1_000_000_000
T0 = 1_700_000_000_000_000_000
T0_ISO = "2023-11-14T22:13:20"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6}|\.\d{9})Z$")
C4, S4 = "10.0.0.1", "10.0.0.2"
C6, S6 = "2001:db8::1", "2001:db8::2"
DESIGN_FIELDS = (
    "id",
    "proto",
    "client",
    "client_port",
    "server",
    "server_port",
    "first_seen",
    "last_seen",
    "packets",
    "bytes",
)


# ------------------------------------------------------------------------------------------
# captures
# ------------------------------------------------------------------------------------------


def _frames() -> list[cb.Rec]:
    return [
        cb.Rec(T0, cb.ip4_tcp_frame(C4, S4, 50000, 445, "S", seq=1000)),
        cb.Rec(T0 + 1_000, cb.ip4_tcp_frame(S4, C4, 445, 50000, "SA", seq=9, ack=1001)),
        cb.Rec(T0 + 2_000, cb.ip4_tcp_frame(C4, S4, 50000, 445, "A", seq=1001, ack=10)),
        cb.Rec(T0 + 3_000, cb.ip4_tcp_frame(C4, S4, 50000, 445, "PA", b"\xfeSMB\x00,=", seq=1001)),
        cb.Rec(T0 + NS, cb.ip6_udp_frame(C6, S6, 40000, 53, b"dns query")),
        cb.Rec(T0 + 2 * NS, cb.ip6_udp_frame(S6, C6, 53, 40000, b"dns answer")),
    ]


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "site.pcap", cb.pcap_bytes(_frames(), cb.LINKTYPE_ETHERNET))


def _truncated(tmp_path: Path) -> Path:
    data = cb.pcap_bytes(_frames(), cb.LINKTYPE_ETHERNET)
    return cb.write(tmp_path / "cut.pcap", data[:-5])


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# ------------------------------------------------------------------------------------------
# formats
# ------------------------------------------------------------------------------------------


def test_json(capture: Path) -> None:
    result = invoke("flows", str(capture), "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == "flowaudit/flows/v1"
    assert document["tool"]["name"] == "flowaudit"
    (info,) = document["captures"]
    assert info["path"] == str(capture)
    assert (info["format"], info["linktypes"], info["packets"]) == ("pcap", ["ethernet"], 6)
    assert info["bytes"] == sum(len(r.data) for r in _frames())
    assert info["first_seen"] == f"{T0_ISO}.000000Z"
    assert info["last_seen"] == "2023-11-14T22:13:22.000000Z"
    assert info["warnings"] == []

    flows = document["flows"]
    assert len(flows) == 2
    for flow in flows:
        assert set(DESIGN_FIELDS) <= set(flow)
        assert ISO_Z.match(flow["first_seen"]) and ISO_Z.match(flow["last_seen"])
        assert "c2s_payload" not in flow  # payload only with --payload
    smb, dns = flows
    assert {k: smb[k] for k in DESIGN_FIELDS} == {
        "id": 1,
        "proto": "tcp",
        "client": C4,
        "client_port": 50000,
        "server": S4,
        "server_port": 445,
        "first_seen": f"{T0_ISO}.000000Z",
        "last_seen": f"{T0_ISO}.000003Z",
        "packets": 4,
        "bytes": sum(len(r.data) for r in _frames()[:4]),
    }
    assert (smb["tcp_flags"], smb["handshake"], smb["start_seen"]) == ("SYN,SYN-ACK", True, True)
    assert smb["c2s_payload_len"] == 7
    assert {k: dns[k] for k in ("id", "proto", "client", "server", "server_port")} == {
        "id": 2,
        "proto": "udp",
        "client": C6,
        "server": S6,
        "server_port": 53,
    }
    assert (dns["first_seen"], dns["last_seen"]) == (
        "2023-11-14T22:13:21.000000Z",
        "2023-11-14T22:13:22.000000Z",
    )


def test_json_nanosecond_timestamps(tmp_path: Path) -> None:
    frame = cb.ip4_udp_frame(C4, S4, 40000, 53, b"q")
    data = cb.pcap_bytes([cb.Rec(T0 + 123_456_789, frame)], 1, nanosecond=True)
    path = cb.write(tmp_path / "ns.pcap", data)
    document = json.loads(invoke("flows", str(path), "--format", "json").stdout)
    assert document["flows"][0]["first_seen"] == f"{T0_ISO}.123456789Z"
    assert document["captures"][0]["first_seen"] == f"{T0_ISO}.123456789Z"


def test_json_payload_base64(capture: Path) -> None:
    result = invoke("flows", str(capture), "--format", "json", "--payload")
    assert result.exit_code == 0
    smb, dns = json.loads(result.stdout)["flows"]
    assert base64.b64decode(smb["c2s_payload"]) == b"\xfeSMB\x00,="
    assert smb["s2c_payload"] == ""
    assert base64.b64decode(dns["c2s_payload"]) == b"dns query"
    assert base64.b64decode(dns["s2c_payload"]) == b"dns answer"


def test_payload_bytes_option(capture: Path) -> None:
    result = invoke("flows", str(capture), "--format", "json", "--payload", "--payload-bytes", "3")
    smb, dns = json.loads(result.stdout)["flows"]
    assert base64.b64decode(smb["c2s_payload"]) == b"\xfeSM"
    assert base64.b64decode(dns["s2c_payload"]) == b"dns"


def test_idle_timeout_option(tmp_path: Path) -> None:
    frames = [
        cb.Rec(T0, cb.ip4_udp_frame(C4, S4, 40000, 9999, b"a")),
        cb.Rec(T0 + 100 * NS, cb.ip4_udp_frame(C4, S4, 40000, 9999, b"b")),
    ]
    path = cb.write(tmp_path / "idle.pcap", cb.pcap_bytes(frames, 1))
    default = json.loads(invoke("flows", str(path), "--format", "json").stdout)
    never = json.loads(invoke("flows", str(path), "--format", "json", "--idle-timeout", "0").stdout)
    assert [f["packets"] for f in default["flows"]] == [1, 1]
    assert [f["packets"] for f in never["flows"]] == [2]


def test_csv_round_trip(capture: Path) -> None:
    result = invoke("flows", str(capture), "--format", "csv", "--payload")
    assert result.exit_code == 0
    rows = list(csv.reader(io.StringIO(result.stdout)))
    header, body = rows[0], rows[1:]
    assert set(DESIGN_FIELDS) <= set(header)
    assert len(body) == 2
    assert all(len(row) == len(header) for row in body)
    smb = dict(zip(header, body[0], strict=True))
    dns = dict(zip(header, body[1], strict=True))
    assert (smb["client"], smb["client_port"], smb["server"], smb["server_port"]) == (
        C4,
        "50000",
        S4,
        "445",
    )
    assert (smb["packets"], smb["first_seen"]) == ("4", f"{T0_ISO}.000000Z")
    assert smb["tcp_flags"] == "SYN,SYN-ACK"  # a comma inside a field survives the round trip
    assert base64.b64decode(smb["c2s_payload"]) == b"\xfeSMB\x00,="
    assert (dns["client"], dns["server"], dns["proto"]) == (C6, S6, "udp")

    frame = pd.read_csv(io.StringIO(result.stdout))
    assert frame["id"].tolist() == [1, 2]
    assert frame["bytes"].tolist() == [
        sum(len(r.data) for r in _frames()[:4]),
        sum(len(r.data) for r in _frames()[4:]),
    ]


def test_csv_without_payload_has_lengths_only(capture: Path) -> None:
    rows = list(csv.reader(io.StringIO(invoke("flows", str(capture), "--format", "csv").stdout)))
    assert "c2s_payload" not in rows[0]
    assert rows[1][rows[0].index("c2s_payload_len")] == "7"


def test_parquet_output_file(capture: Path, tmp_path: Path) -> None:
    target = tmp_path / "flows.parquet"
    result = invoke("flows", str(capture), "--format", "parquet", "--output", str(target))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert target.read_bytes()[:4] == b"PAR1"
    table = pq.read_table(target)
    assert set(DESIGN_FIELDS) <= set(table.column_names)
    frame = pd.read_parquet(target)
    assert frame["client"].tolist() == [C4, C6]
    assert frame["server_port"].tolist() == [445, 53]
    assert all(isinstance(v, bytes) for v in frame["c2s_payload"])
    assert all(isinstance(v, bytes) for v in frame["s2c_payload"])
    assert frame["c2s_payload"].tolist() == [b"\xfeSMB\x00,=", b"dns query"]
    assert frame["s2c_payload"].tolist() == [b"", b"dns answer"]
    assert frame["first_seen"].iloc[0] == pd.Timestamp(T0, unit="ns", tz="UTC")


def test_parquet_to_piped_stdout(capture: Path) -> None:
    result = invoke("flows", str(capture), "--format", "parquet")
    assert result.exit_code == 0
    assert result.stdout_bytes[:4] == b"PAR1"
    frame = pd.read_parquet(io.BytesIO(result.stdout_bytes))
    assert len(frame) == 2


def test_table(capture: Path) -> None:
    result = invoke("flows", str(capture))  # table is the default
    assert result.exit_code == 0
    text = result.stdout
    assert f"{C4}:50000" in text
    assert f"{S4}:445" in text
    assert f"[{C6}]:40000" in text
    assert f"[{S6}]:53" in text
    assert "6 packets" in text
    assert "2 flows" in text
    assert "\x1b[" not in text  # no colour when not on a terminal


def test_output_file_for_text_formats(capture: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    result = invoke("flows", str(capture), "--format", "json", "-o", str(target))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert len(json.loads(target.read_text())["flows"]) == 2


def test_several_files_merge(tmp_path: Path) -> None:
    frames = _frames()
    first = cb.write(tmp_path / "b.pcap", cb.pcap_bytes(frames[:3], 1))
    second = cb.write(tmp_path / "a.pcap", cb.pcap_bytes(frames[3:], 1))
    document = json.loads(invoke("flows", str(second), str(first), "--format", "json").stdout)
    assert [c["path"] for c in document["captures"]] == [str(first), str(second)]
    assert [f["packets"] for f in document["flows"]] == [4, 2]


def test_library_errors_reach_the_runner_as_flowaudit_errors(tmp_path: Path) -> None:
    text = cb.write(tmp_path / "notes.txt", b"just text\n")
    result = CliRunner().invoke(cli, ["flows", str(text)])
    assert isinstance(result.exception, FlowauditError)
    assert result.exception.exit_code == EXIT_BAD_INPUT
    assert str(text) in str(result.exception)


# ------------------------------------------------------------------------------------------
# the command as a process: exit codes and stderr
# ------------------------------------------------------------------------------------------


def test_process_success_and_truncation_warning(tmp_path: Path) -> None:
    path = _truncated(tmp_path)
    proc = run_module("flows", str(path), "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"flowaudit: warning: {path}: ")
    assert "cut short" in lines[0]
    document = json.loads(proc.stdout)
    assert document["captures"][0]["packets"] == 5
    assert document["captures"][0]["warnings"]
    assert [f["packets"] for f in document["flows"]] == [4, 1]


def test_process_orphan_fragment_warning(tmp_path: Path) -> None:
    later = cb.ipv4(C4, S4, cb.PROTO_UDP, b"x" * 16, ident=42, frag_offset=3)
    frames = [
        cb.Rec(T0, cb.ip4_udp_frame(C4, S4, 40000, 53, b"q")),
        cb.Rec(T0 + 1, cb.wrap(later, 1)),
    ]
    path = cb.write(tmp_path / "orphan.pcap", cb.pcap_bytes(frames, 1))
    proc = run_module("flows", str(path), "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr.startswith("flowaudit: warning: 1 IP fragments")
    assert len(proc.stdout.splitlines()) == 2


def _text(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "readme.pcap", b"Not a capture, only some text.\n" * 3)


def _short_header(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "short.pcap", cb.pcap_header(1)[:10])


def _empty(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "empty.pcap", b"")


def _first_record_4gb(tmp_path: Path) -> Path:
    record = struct.pack("<IIII", 1, 0, 0xFFFFFFFF, 0xFFFFFFFF) + b"\x00" * 32
    return cb.write(tmp_path / "huge.pcap", cb.pcap_header(1) + record)


def _unknown_linktype(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "lt147.pcap", cb.pcap_bytes([cb.Rec(T0, b"\x00" * 32)], 147))


def _pcapng_unknown_linktype(tmp_path: Path) -> Path:
    data = cb.pcapng_simple([cb.Rec(T0, b"\x00" * 32)], 147)
    return cb.write(tmp_path / "lt147.pcapng", data)


def _directory(tmp_path: Path) -> Path:
    folder = tmp_path / "captures"
    folder.mkdir()
    return folder


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "gone.pcap"


def _gzip_garbage(tmp_path: Path) -> Path:
    return cb.write(tmp_path / "bad.pcap.gz", b"\x1f\x8b\x08\x00" + b"\xde\xad\xbe\xef" * 40)


GARBAGE = {
    "text": _text,
    "truncated-header": _short_header,
    "zero-length": _empty,
    "first-record-4gb": _first_record_4gb,
    "unknown-linktype": _unknown_linktype,
    "pcapng-unknown-linktype": _pcapng_unknown_linktype,
    "directory": _directory,
    "missing": _missing,
    "gzip-garbage": _gzip_garbage,
}


@pytest.mark.parametrize("case", list(GARBAGE))
@pytest.mark.parametrize("fmt", ["json", "table"])
def test_process_bad_input_one_line_exit_2(tmp_path: Path, case: str, fmt: str) -> None:
    path = GARBAGE[case](tmp_path)
    proc = run_module("flows", str(path), "--format", fmt, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("flowaudit: error: ")
    assert str(path) in lines[0]  # says where
    assert proc.stdout == ""  # nothing half-written


def test_process_bad_second_file_exit_2(tmp_path: Path, capture: Path) -> None:
    proc = run_module("flows", str(capture), str(_text(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("flowaudit: error: ")
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["flows"],  # no capture named
        ["flows", "CAPTURE", "--format", "xml"],
        ["flows", "CAPTURE", "--payload-bytes", "-1"],
        ["flows", "CAPTURE", "--idle-timeout", "soon"],
        ["nonsense"],
    ],
)
def test_process_usage_errors_exit_2(tmp_path: Path, capture: Path, args: list[str]) -> None:
    args = [str(capture) if a == "CAPTURE" else a for a in args]
    proc = run_module(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("flowaudit: error: ")


def test_process_version(tmp_path: Path) -> None:
    proc = run_module("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("flowaudit, version ")
