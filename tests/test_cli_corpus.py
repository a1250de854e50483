"""The ``flowaudit flows`` command on the real corpus, as a user runs it (a separate process).

The deliberately broken files give what could be read plus a warning and exit 0; the empty
one gives an empty table; with stderr on a terminal the progress bar runs and the output is
unchanged.
"""

from __future__ import annotations

import gzip
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.corpus


def _run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowaudit", *args],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize(
    ("name", "warning", "packets"),
    [
        ("otrf_winrm_psremoting_trailing_byte.cap", "cut short", 153),
        ("sv_tls_corrupt_record.pcap", "more than 262144", 6),
    ],
)
def test_broken_capture_reports_what_was_read(
    corpus: Path, name: str, warning: str, packets: int
) -> None:
    result = _run("flows", str(corpus / name), "--format", "json")
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowaudit: warning: ") and warning in lines[0]
    report = json.loads(result.stdout)
    assert report["captures"][0]["packets"] == packets
    assert report["captures"][0]["warnings"]
    assert sum(flow["packets"] for flow in report["flows"]) <= packets
    assert report["flows"]


def test_empty_capture_gives_an_empty_table(corpus: Path) -> None:
    result = _run("flows", str(corpus / "zeek_empty.pcap"), "--format", "json")
    assert (result.returncode, result.stderr) == (0, "")
    report = json.loads(result.stdout)
    assert report["flows"] == []
    assert report["captures"][0]["packets"] == 0
    csv_result = _run("flows", str(corpus / "zeek_empty.pcap"), "--format", "csv")
    assert csv_result.stdout.splitlines()[0].startswith("id,proto,client,client_port")
    assert len(csv_result.stdout.splitlines()) == 1


def test_pcapng_behind_a_pcap_name_is_read_as_pcapng(corpus: Path) -> None:
    result = _run("flows", str(corpus / "ndpi_tftp.pcap"), "--format", "json")
    report = json.loads(result.stdout)
    assert report["captures"][0]["format"] == "pcapng"
    assert report["captures"][0]["packets"] == 109


def test_progress_bar_on_a_terminal_leaves_the_output_alone(corpus: Path) -> None:
    capture = str(corpus / "sv_smb2_async_read_big.pcap")
    plain = _run("flows", capture, "--format", "csv")
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "flowaudit", "flows", capture, "--format", "csv"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            check=False,
            env={**os.environ, "COLUMNS": "100"},
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    assert result.stdout == plain.stdout


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_capture_piped_on_standard_input(corpus: Path, compressed: bool) -> None:
    capture = corpus / "otrf_psexec_dcerpc_tcp_epm.cap"
    data = capture.read_bytes()
    if compressed:
        data = gzip.compress(data)
    piped = subprocess.run(
        [sys.executable, "-m", "flowaudit", "flows", "-", "--format", "json"],
        input=data,
        capture_output=True,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    from_file = json.loads(_run("flows", str(capture), "--format", "json").stdout)
    report = json.loads(piped.stdout)
    assert report["captures"][0]["packets"] == 329
    assert report["captures"][0]["compression"] == ("gzip" if compressed else None)
    assert report["captures"][0]["size"] is None  # a pipe has no size

    def rows(flows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in f.items() if not k.endswith("_file")} for f in flows]

    assert rows(report["flows"]) == rows(from_file["flows"])
    assert {f["first_file"] for f in report["flows"]} == {"-"}


def test_standard_input_is_read_alone(corpus: Path) -> None:
    result = _run("flows", "-", str(corpus / "zeek_tls12.pcap"), input="")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "can only be read alone" in result.stderr


def test_text_on_standard_input_is_one_line_exit_2() -> None:
    result = _run("flows", "-", input="hello, this is not a capture\n")
    assert result.returncode == 2
    assert result.stderr == (
        "flowaudit: error: -: not a pcap or pcapng capture: it looks like text\n"
    )


def test_reader_that_goes_away_is_not_an_error(corpus: Path) -> None:
    # `flowaudit flows big.pcap | head -1`: exit 0 and nothing on stderr, not click's exit 1.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowaudit",
            "flows",
            str(corpus / "sv_smb2_mixed_windows_lan.pcap"),
            "--format",
            "json",
            "--payload",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert stderr == b""


@pytest.mark.parametrize("value", ["inf", "nan", "1e30"])
def test_impossible_idle_timeout_is_one_line(corpus: Path, value: str) -> None:
    result = _run("flows", str(corpus / "zeek_tls12.pcap"), "--idle-timeout", value)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "idle" in result.stderr


def test_named_pipe_alone_is_read_once(corpus: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    capture = corpus / "zeek_tls12.pcap"
    writer = subprocess.Popen(["sh", "-c", f"cat '{capture}' > '{fifo}'"])
    result = _run("flows", str(fifo), "--format", "json", timeout=60)
    writer.wait(timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["captures"][0]["packets"] == 22


def test_table_folds_long_addresses_instead_of_cutting_them(corpus: Path) -> None:
    result = _run("flows", str(corpus / "zeek_ldap_vlan_ipv6.pcapng"))
    assert result.returncode == 0
    assert "\u2026" not in result.stdout  # no ellipsis: nothing is cut off
    assert "2a00:6020:ad0b:8381:c8c2:18f1:4b9d" in result.stdout
    assert ":7524]:49695" in result.stdout
