"""JSONL for SIEMs (one record per flow and per finding, each with the run id and the capture's
SHA-256) and CSV (round-trips through ``csv.reader``, formula cells neutralised)."""

from __future__ import annotations

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
from tests.protobytes import tls
from tests.sample import SAMPLE, SITE, invoke
from tests.scapy_flows import tcp_session, write_capture


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


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_cells_are_neutralised(start: str) -> None:
    hostile = f'{start}HYPERLINK("http://evil","x")'
    assert csv_cell(hostile) == "'" + hostile
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
    assert row["detail"] == "'" + hostile
    assert row["accepted"] == "'" + hostile
