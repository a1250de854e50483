"""``flowaudit analyze`` and ``flowaudit matrix``: formats, exit codes (0/1/2), one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowaudit.cli import cli
from tests.protobytes import http, smb, tls
from tests.sample import run_module
from tests.scapy_flows import tcp_session, write_capture

SITE_YAML = """\
site: PS1
security: https-or-ehttp
roles:
  site-server: [10.10.0.10]
  management-point: [10.10.0.12]
  distribution-point: [10.10.0.13]
  client: [10.10.1.0/24]
options: {site-server-initiates: [10.10.0.13]}
"""
REPORT_FLOW_FIELDS = {
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
    "service",
    "evidence",
    "client_role",
    "server_role",
    "verdict",
    "matrix_rule",
    "plaintext",
    "facts",
}
FINDING_FIELDS = {"id", "rule", "severity", "flow_ids", "title", "detail", "reference"}


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    packets = [
        # expected: HTTPS from a client to the MP
        *tcp_session("10.10.1.21", "10.10.0.12", 50001, 443, [("c", tls.tls_client_hello("mp"))]),
        # plaintext policy request (high), with the SDK's user agent (high)
        *tcp_session(
            "10.10.1.21",
            "10.10.0.12",
            50002,
            80,
            [
                (
                    "c",
                    http.http_request(
                        "CCM_POST",
                        "/ccm_system/request",
                        (("Host", "mp"), ("User-Agent", "ConfigMgr Messaging HTTP Sender")),
                    ),
                )
            ],
            start=1_700_000_001.0,
        ),
        # wrong direction: the DP starts SMB to the site server, which must initiate
        *tcp_session(
            "10.10.0.13",
            "10.10.0.10",
            50003,
            445,
            smb.smb2_conversation(server_signing_required=True),
            start=1_700_000_002.0,
        ),
    ]
    write_capture(tmp_path / "site.pcap", packets)
    (tmp_path / "site.yaml").write_text(SITE_YAML)
    return tmp_path


def _analyze_json(site_dir: Path, *extra: str) -> dict:
    result = CliRunner().invoke(
        cli,
        [
            "analyze",
            str(site_dir / "site.pcap"),
            "--site",
            str(site_dir / "site.yaml"),
            "--format",
            "json",
            *extra,
        ],
        standalone_mode=False,
        catch_exceptions=False,
    )
    return json.loads(result.output)


def test_json_report_contract(site_dir: Path) -> None:
    report = _analyze_json(site_dir)
    assert report["schema"] == "flowaudit/report/v1"
    assert report["tool"]["name"] == "flowaudit"
    assert len(report["captures"][0]["sha256"]) == 64
    assert set(report["signatures"]["sha256"]) >= {"matrix.yaml", "services.yaml"}
    assert report["site"]["source"] == "site" and not report["site"]["roles_inferred"]
    flows = {flow["server_port"]: flow for flow in report["flows"]}
    for flow in flows.values():
        assert set(flow) >= REPORT_FLOW_FIELDS
    assert (flows[443]["verdict"], flows[443]["service"]) == ("expected", "https")
    assert flows[443]["matrix_rule"] == "client-to-management-point-https"
    assert (flows[80]["service"], flows[80]["plaintext"]) == ("http", True)
    assert flows[445]["verdict"] == "unexpected"
    rules = {finding["rule"]: finding for finding in report["findings"]}
    assert {"plaintext-http", "sdk-user-agent", "wrong-direction"} <= set(rules)
    for finding in report["findings"]:
        assert set(finding) >= FINDING_FIELDS
    assert rules["wrong-direction"]["flow_ids"] == [flows[445]["id"]]
    assert rules["plaintext-http"]["severity"] == "high"
    assert "carries policy" in rules["plaintext-http"]["detail"]
    assert report["summary"]["verdicts"] == {"expected": 2, "unexpected": 1, "unknown": 0}


def test_inferred_roles_are_said_so(site_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["analyze", str(site_dir / "site.pcap"), "--format", "json"], standalone_mode=False
    )
    report = json.loads(result.output)
    assert report["site"]["roles_inferred"] is True
    hosts = {host["ip"]: host for host in report["hosts"]}
    assert "management-point" in hosts["10.10.0.12"]["roles"]
    assert hosts["10.10.0.12"]["source"] == "inferred"
    assert hosts["10.10.0.12"]["evidence"]


def test_csv_tables_and_formula_guard(site_dir: Path) -> None:
    for table, first in (("flows", "id"), ("findings", "id")):
        result = CliRunner().invoke(
            cli,
            [
                "analyze",
                str(site_dir / "site.pcap"),
                "--site",
                str(site_dir / "site.yaml"),
                "--format",
                "csv",
                "--table",
                table,
            ],
            standalone_mode=False,
        )
        rows = list(csv.reader(io.StringIO(result.output)))
        assert rows[0][0] == first and len(rows) > 1
        assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


@pytest.mark.parametrize(("fail_on", "code"), [("high", 1), ("never", 0), ("info", 1)])
def test_exit_code_follows_fail_on(site_dir: Path, fail_on: str, code: int) -> None:
    done = run_module(
        "analyze",
        "site.pcap",
        "--site",
        "site.yaml",
        "--fail-on",
        fail_on,
        "--format",
        "json",
        cwd=site_dir,
    )
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout)["schema"] == "flowaudit/report/v1"


@pytest.mark.parametrize(
    ("site_text", "message"),
    [
        ("roles:\n  clients: [10.0.0.0/8]\n", "site.yaml:2: roles.clients: unknown role"),
        (
            "roles:\n  client: [10.0.0.0/40]\n",
            "site.yaml:2: roles.client.0: '10.0.0.0/40' is not an IP address or CIDR",
        ),
    ],
)
def test_bad_site_file_is_one_line_exit_2(site_dir: Path, site_text: str, message: str) -> None:
    (site_dir / "site.yaml").write_text(site_text)
    done = run_module("analyze", "site.pcap", "--site", "site.yaml", cwd=site_dir)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_table_output_names_findings(site_dir: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["analyze", str(site_dir / "site.pcap"), "--site", str(site_dir / "site.yaml")],
        standalone_mode=False,
    )
    assert "plaintext-http" in result.output and "wrong-direction" in result.output
    assert "\x1b[" not in result.output  # no colour when not a terminal


def test_matrix_json_and_site_ports(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["matrix", "--format", "json"], standalone_mode=False)
    rules = {rule["id"]: rule for rule in json.loads(result.output)["rules"]}
    for rule in rules.values():
        assert {
            "id",
            "client_role",
            "server_role",
            "proto",
            "ports",
            "service",
            "bidirectional",
            "reference",
        } <= set(rule)
    assert rules["client-to-management-point-http"]["ports"] == [80]
    assert rules["client-to-multicast-distribution-point-multicast"]["ports"] == [[63000, 64000]]
    (tmp_path / "site.yaml").write_text("ports: {http: 8080, https: 8443}\n")
    result = CliRunner().invoke(
        cli,
        ["matrix", "--site", str(tmp_path / "site.yaml"), "--format", "json"],
        standalone_mode=False,
    )
    rules = {rule["id"]: rule for rule in json.loads(result.output)["rules"]}
    assert rules["client-to-management-point-http"]["ports"] == [8080]
    assert rules["client-to-management-point-https"]["ports"] == [8443]


def test_matrix_csv_and_table() -> None:
    result = CliRunner().invoke(cli, ["matrix", "--format", "csv"], standalone_mode=False)
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0] == [
        "id",
        "client_role",
        "server_role",
        "proto",
        "ports",
        "service",
        "bidirectional",
        "reference",
    ]
    assert any(row[4] == "dynamic" for row in rows[1:])
    table = CliRunner().invoke(cli, ["matrix"], standalone_mode=False)
    assert "rules" in table.output


def test_report_records_the_command_as_typed(site_dir: Path) -> None:
    done = run_module(
        "analyze", "site.pcap", "--site", "site.yaml", "-o", "r.json", "--format", "json",
        "--fail-on", "never", cwd=site_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((site_dir / "r.json").read_text())
    assert report["command"] == [
        "flowaudit", "analyze", "site.pcap", "--site", "site.yaml", "-o", "r.json", "--format",
        "json", "--fail-on", "never",
    ]  # fmt: skip
    # Called from another program (no argv of its own): the options given, spelled out.
    in_process = _analyze_json(site_dir, "--no-sha256")
    assert in_process["command"] == [
        "flowaudit", "analyze", str(site_dir / "site.pcap"), "--site", str(site_dir / "site.yaml"),
        "--format", "json", "--no-sha256",
    ]  # fmt: skip


def test_an_output_that_cannot_be_written_fails_before_the_capture_is_read(tmp_path: Path) -> None:
    # The capture does not exist either: the output is checked first, so it is what is named.
    for command in ("analyze", "flows"):
        done = run_module(command, "missing.pcap", "-o", "no/such/folder/r.json", cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr == (
            "flowaudit: error: no/such/folder/r.json: cannot write (no folder no/such/folder)\n"
        )
