"""The terminal view: a one-screen summary, findings by severity with their flows, the
unexpected role pairs; colour only on a terminal without NO_COLOR; nothing from the capture
reaches the terminal as a control character."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from tests.protobytes import http
from tests.sample import SAMPLE, SITE, invoke
from tests.scapy_flows import tcp_session, write_capture


def _view(*args: str) -> str:
    return invoke("analyze", *args, "--fail-on", "never").output


def test_summary_first_then_findings_by_severity_then_unexpected_pairs() -> None:
    lines = _view(str(SAMPLE), "--site", str(SITE)).splitlines()
    assert lines[0].startswith(f"{SAMPLE}: pcap, 397 packets, 73511 bytes, 2023-11-14T22:13:20")
    assert lines[1] == f"site: PS1 ({SITE}), security https-or-ehttp"
    assert lines[2] == "flows: 46 (42 expected, 4 unexpected, 0 unknown)"
    assert lines[3] == "findings: 17 (6 high, 6 medium, 4 low, 1 info)"
    assert lines[4] == "findings"
    headings = [line.split()[1] for line in lines if line.startswith("F00")]
    order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]
    assert headings == sorted(headings, key=order.index) and len(headings) == 17
    # each finding shows its flows: client -> server:port, service, roles, frames
    smb1 = lines.index(next(line for line in lines if " smb1 " in line))
    assert (
        lines[smb1 + 2]
        .strip()
        .startswith(
            "flow 18: 10.10.1.23 -> 10.10.0.13:445 tcp smb (client -> distribution-point), "
        )
    )
    assert lines[smb1 + 2].endswith("frames 153-160")
    pairs = lines.index(next(line for line in lines if line.startswith("unexpected role pairs")))
    assert pairs > smb1
    assert lines[pairs + 2].split() == ["client", "management-point", "tcp", "http", "443", "1"]
    assert lines.index(next(line for line in lines if line.startswith("roles"))) > pairs
    assert "flows" not in lines  # no flow table by default
    assert all(line == line.rstrip() for line in lines[:pairs])


def test_flows_table_on_request() -> None:
    lines = _view(str(SAMPLE), "--site", str(SITE), "--table", "flows").splitlines()
    at = lines.index("flows")
    assert lines[at + 1].split()[:3] == ["id", "proto", "client"]
    assert lines[at + 2].split()[:4] == ["1", "udp", "10.10.1.21:59001", "10.10.0.5:53"]
    assert len(lines) == at + 2 + 46


def test_accepted_and_baseline_states_show(tmp_path: Path) -> None:
    accept = tmp_path / "accept.yaml"
    accept.write_text(
        "accept:\n  - rule: smb1\n    justification: lab DP, ticket 7\n    expires: 2999-01-01\n"
    )
    lines = _view(str(SAMPLE), "--site", str(SITE), "--accept", str(accept)).splitlines()
    assert lines[3] == "findings: 16 (5 high, 6 medium, 4 low, 1 info); 1 accepted"
    at = lines.index(next(line for line in lines if line.startswith("accepted findings")))
    assert lines[at + 2].split()[:4] == ["F0005", "high", "smb1", "1"]
    assert "lab DP, ticket 7" in lines[at + 2] and "2999-01-01" in lines[at + 2]
    assert not any(" smb1 " in line for line in lines[:at])


def _hostile_capture(tmp_path: Path) -> Path:
    # A path may carry any byte from 0x80 (HTTP's request line has no room for C0): here a
    # bidi override (U+202E) and the C1 control sequence introducer (U+009B) as UTF-8.
    request = (
        b"GET /ccm_system/request\xe2\x80\xaeevil\xc2\x9b2J HTTP/1.1\r\nHost: mp\r\n"
        b"User-Agent: ccmhttp\r\n\r\n"
    )
    packets = tcp_session("10.10.1.21", "10.10.0.12", 50002, 80, [("c", request)])
    return write_capture(tmp_path / "hostile.pcap", packets)


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    text = _view(str(_hostile_capture(tmp_path)), "--site", str(SITE))
    assert "plaintext-http" in text  # the request was read and reported
    assert "/ccm_system/request\\u202eevil\\x9b2J" in text
    assert not any(char in text for char in "\x1b\x07\u202e\x9b")


def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Run the command with stdout on a pseudo-terminal; return what it printed."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowaudit", *args],
            stdout=terminal,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        os.close(terminal)
        chunks = []
        while True:
            ready, _, _ = select.select([controller], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=120)
    finally:
        os.close(controller)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_on_a_terminal_unless_no_color() -> None:
    args = ("analyze", str(SAMPLE), "--site", str(SITE), "--fail-on", "never")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env.update(TERM="xterm-256color", COLUMNS="160")
    coloured = _on_a_terminal(*args, env=env)
    assert "\x1b[" in coloured and "plaintext-http" in coloured
    plain = _on_a_terminal(*args, env={**env, "NO_COLOR": "1"})
    assert "plaintext-http" in plain
    assert "\x1b[" not in plain


def test_a_terminal_without_colour_keeps_its_width() -> None:
    args = ("analyze", str(SAMPLE), "--site", str(SITE), "--fail-on", "never")
    env = {k: v for k, v in os.environ.items() if k not in ("TERM",)}
    env.update(TERM="xterm-256color", COLUMNS="70", NO_COLOR="1")
    lines = _on_a_terminal(*args, env=env).replace("\r", "").splitlines()
    assert "findings" in lines
    assert max(len(line) for line in lines) <= 70
    assert max(len(line) for line in _view(*args[1:]).splitlines()) > 70  # a pipe: 160


def test_an_unread_request_is_named_as_such(tmp_path: Path) -> None:
    # The server's answer was read, the request line (a NUL in the path) was refused.
    packets = tcp_session(
        "10.10.1.21",
        "10.10.0.12",
        50003,
        80,
        [("c", b"GET /ccm\x00system HTTP/1.1\r\n\r\n"), ("s", http.http_response())],
    )
    text = _view(str(write_capture(tmp_path / "odd.pcap", packets)), "--site", str(SITE))
    assert "tcp http: an HTTP exchange whose request was not read in clear text" in text
    assert "None None" not in text
