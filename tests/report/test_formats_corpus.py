"""Every format of ``analyze`` from the bundled sample and from every capture of the real
corpus: each is produced without error and reads back as what it claims to be, with the same
flows and findings as the JSON report."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from flowaudit.audit import AuditResult, audit
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.report import AUDIT_FORMATS, ReportOptions, audit_writer
from flowaudit.site import load_site
from tests.conftest import REPO, corpus_files
from tests.sample import SAMPLE


def _write(result: AuditResult, fmt: str, table: str | None = None) -> str:
    out = io.StringIO()
    audit_writer(fmt)(result, out, ReportOptions(table=table))
    return out.getvalue()


def _check_every_format(result: AuditResult) -> None:
    report = json.loads(_write(result, "json"))
    flows, findings = len(report["flows"]), len(report["findings"])
    records = [json.loads(line) for line in _write(result, "jsonl").splitlines()]
    assert [r["record"] for r in records].count("flow") == flows
    assert [r["record"] for r in records].count("finding") == findings
    assert len(list(csv.reader(io.StringIO(_write(result, "csv"))))) == 1 + flows
    rows = list(csv.reader(io.StringIO(_write(result, "csv", "findings"))))
    assert len(rows) == 1 + findings
    sarif = json.loads(_write(result, "sarif"))
    assert sarif["version"] == "2.1.0"
    assert len(sarif["runs"][0]["results"]) == findings
    html = _write(result, "html")
    assert html.lstrip().lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert html.count("<tr") >= flows
    text = _write(result, "table")
    assert text.splitlines()[0].startswith(result.captures[0].path)


def test_the_registry_names_every_format() -> None:
    assert set(AUDIT_FORMATS) == {"table", "json", "jsonl", "csv", "html", "sarif"}


def test_every_format_from_the_sample() -> None:
    table = build_flow_table([str(SAMPLE)], FlowConfig(sha256=True))
    for site in (load_site(REPO / "samples" / "site.yaml"), None):
        _check_every_format(audit(table, site))


@pytest.mark.corpus
@pytest.mark.parametrize("capture", corpus_files(), ids=lambda path: path.name)
def test_every_format_from_the_corpus(corpus: Path, capture: Path) -> None:
    table = build_flow_table([str(capture)], FlowConfig(sha256=True))
    result = audit(table)
    _check_every_format(result)
