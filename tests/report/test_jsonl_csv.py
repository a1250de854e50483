"""JSONL for SIEMs (one record per flow and per finding, each with the run id and the capture's
SHA-256) and CSV (round-trips through ``csv.reader``, formula cells neutralised)."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import audit
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.report import ReportOptions
from flowaudit.report.audit import CSV_FINDING_FIELDS, CSV_FLOW_FIELDS, csv_cell, write_csv
from flowaudit.site import load_site
from tests.protobytes import http, tls
from tests.sample import SAMPLE, SITE, invoke
from tests.scapy_flows import tcp_session, write_capture
from tests.test_cli_analyze import SITE_YAML


def _run(*args: str) -> str:
    return invoke("analyze", *args, "--fail-on", "never").output


def _json(*args: str) -> dict[str, Any]:
    return json.loads(_run(*args, "--format", "json"))  # type: ignore[no-any-return]


def test_jsonl_one_record_per_flow_and_finding_with_run_id_and_sha(tmp_path: Path) -> None:
    second = write_capture(
        tmp_path / "second.pcap",
        tcp_session(
            "10.10.1.30", "10.10.0.12", 51000, 443, [("c", tls.tls_client_hello("mp"))],
            start=1_700_000_100.0,
        ),
    )  # fmt: skip
    args = (str(SAMPLE), str(second), "--site", str(SITE))
    lines = _run(*args, "--format", "jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    report = _json(*args)
    kinds = [record["record"] for record in records]
    assert kinds == ["run"] + ["flow"] * len(report["flows"]) + ["finding"] * len(
        report["findings"]
    )
    assert len(report["flows"]) == 47
    run_ids = {record["run_id"] for record in records}
    assert len(run_ids) == 1 and len(run_ids.pop()) == 36
    sha = {info["path"]: info["sha256"] for info in report["captures"]}
    assert len(set(sha.values())) == 2
    for record in records[1:]:
        assert record["capture_sha256"] == sha[record["capture"]], record
    flows = [record for record in records if record["record"] == "flow"]
    assert [flow["capture"] for flow in flows].count(str(second)) == 1
    # a flow record is the report's flow plus where it came from and its findings' ids
    by_id = {flow["id"]: flow for flow in report["flows"]}
    for flow in flows:
        assert {k: flow[k] for k in by_id[flow["id"]]} == by_id[flow["id"]]
    finding_ids = {f["id"]: f["flow_ids"] for f in report["findings"]}
    for flow in flows:
        for finding_id in flow["finding_ids"]:
            assert flow["id"] in finding_ids[finding_id]
    findings = [record for record in records if record["record"] == "finding"]
    assert [f["id"] for f in findings] == list(finding_ids)
    assert all(f["fingerprint"] and f["match"]["rule"] == f["rule"] for f in findings)
    assert records[0]["captures"] == report["captures"]
    assert records[0]["summary"] == report["summary"]


def test_csv_flows_and_findings_round_trip() -> None:
    report = _json(str(SAMPLE), "--site", str(SITE))
    rows = list(csv.reader(io.StringIO(_run(str(SAMPLE), "--site", str(SITE), "--format", "csv"))))
    assert tuple(rows[0]) == CSV_FLOW_FIELDS
    assert len(rows) == 1 + len(report["flows"])
    for row, flow in zip(rows[1:], report["flows"], strict=True):
        cells = dict(zip(rows[0], row, strict=True))
        for name in ("id", "client", "server_port", "service", "verdict", "first_seen"):
            assert cells[name] == str(flow[name])
        assert cells["matrix_rule"] == (flow["matrix_rule"] or "")
    found = list(
        csv.DictReader(
            io.StringIO(
                _run(str(SAMPLE), "--site", str(SITE), "--format", "csv", "--table", "findings")
            )
        )
    )
    assert tuple(found[0]) == CSV_FINDING_FIELDS
    assert [row["id"] for row in found] == [f["id"] for f in report["findings"]]
    for row, finding in zip(found, report["findings"], strict=True):
        assert row["detail"] == finding["detail"]
        assert row["flow_ids"] == " ".join(str(i) for i in finding["flow_ids"])
        assert row["fingerprint"] == finding["fingerprint"]


# How a cell that starts like a formula is shown: quoted; tab and CR are escaped instead.
FORMULA_STARTS = [
    ("=", "'="),
    ("+", "'+"),
    ("-", "'-"),
    ("@", "'@"),
    ("\t", "\\x09"),
    ("\r", "\\x0d"),
]


@pytest.mark.parametrize(("start", "shown"), FORMULA_STARTS)
def test_formula_cells_are_neutralised(start: str, shown: str) -> None:
    hostile = f'{start}HYPERLINK("http://evil","x")'
    guarded = shown + hostile[1:]
    assert csv_cell(hostile) == guarded
    assert csv_cell("10.10.0.12") == "10.10.0.12" and csv_cell(-1) == -1
    table = build_flow_table([str(SAMPLE)], FlowConfig())
    result = audit(table, load_site(SITE))
    result.findings[0].detail = hostile
    result.findings[0].accepted = {"justification": hostile}
    out = io.StringIO()
    write_csv(result, out, ReportOptions(table="findings"))
    row = dict(
        zip(CSV_FINDING_FIELDS, list(csv.reader(io.StringIO(out.getvalue())))[1], strict=True)
    )
    assert row["detail"] == guarded
    assert row["accepted"] == guarded


def test_flows_csv_guards_cells_as_analyze_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a capture whose name is a formula (and carries a bidi override), and a payload whose
    # base64 starts with "+"
    name = '=HYPERLINK("evil")\u202e.pcap'
    payload = b"\xf8 first bytes"
    write_capture(
        tmp_path / name, tcp_session("10.10.1.21", "10.10.0.12", 50001, 80, [("c", payload)])
    )
    monkeypatch.chdir(tmp_path)
    done = invoke("flows", name, "--format", "csv", "--payload")
    (row,) = csv.DictReader(io.StringIO(done.stdout))
    assert row["first_file"] == row["last_file"] == '\'=HYPERLINK("evil")\\u202e.pcap'
    encoded = base64.b64encode(payload).decode()
    assert encoded.startswith("+") and row["c2s_payload"] == "'" + encoded
    assert base64.b64decode(row["c2s_payload"]) == payload  # the decoder skips the quote
    assert (row["client"], row["server_port"], row["packets"]) == ("10.10.1.21", "80", "7")


def test_control_characters_are_escaped_in_csv_and_kept_in_json(tmp_path: Path) -> None:
    # an HTTP path with a right-to-left override and a C1 control (NEL), as UTF-8 on the wire
    path = "/ccm_system/request?gpj.\u202eexe\u0085"
    request = http.http_request("CCM_POST", path.encode().decode("latin-1"), (("Host", "mp"),))
    capture = write_capture(
        tmp_path / "c.pcap",
        tcp_session("10.10.1.21", "10.10.0.12", 50002, 80, [("c", request)]),
    )
    (tmp_path / "site.yaml").write_text(SITE_YAML)
    args = (str(capture), "--site", str(tmp_path / "site.yaml"))
    text = _run(*args, "--format", "csv", "--table", "findings")
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["rule"] == "plaintext-http"
    assert "/ccm_system/request?gpj.\\u202eexe\\x85 in clear text" in row["detail"]
    assert "\u202e" not in text and "\u0085" not in text
    flows = _run(*args, "--format", "csv")
    assert "\u202e" not in flows and "\u0085" not in flows
    # JSON and JSONL keep the true string, written as JSON escapes (ASCII only)
    for fmt in ("json", "jsonl"):
        written = _run(*args, "--format", fmt)
        assert written.isascii() and "\\u202e" in written
    (finding,) = _json(*args)["findings"]
    assert path in finding["detail"]
