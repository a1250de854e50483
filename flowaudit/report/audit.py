"""Write an ``AuditResult`` (``flowaudit analyze``) as the JSON report, JSONL records or CSV.

The JSON document is the contract of DESIGN.md (``flowaudit/report/v1``); JSONL and CSV are
views of the same result and compute nothing of their own. Strings from the capture are
hostile: CSV cells show control and format characters escaped, as the terminal does, and
cells that a spreadsheet would read as a formula are neutralised. JSON and JSONL keep the true
strings: their encoder writes every character outside ASCII as a ``\\u`` escape.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

from flowaudit import __version__
from flowaudit.audit import FLOW_FIELDS, AuditResult
from flowaudit.report import ReportOptions
from flowaudit.report.conversations import (
    IDENTITY_FIELDS,
    OPERATION_FIELDS,
    identity_rows,
    operation_rows,
)
from flowaudit.report.flowtable import capture_dicts
from flowaudit.report.terminal import clean

SCHEMA = "flowaudit/report/v1"
# The flows' fields but the nested ones, and the rule ids of each flow's findings.
CSV_FLOW_FIELDS = (
    *(name for name in FLOW_FIELDS if name not in ("client_roles", "server_roles", "facts")),
    "findings",
)
CSV_FINDING_FIELDS = (
    "id",
    "rule",
    "severity",
    "title",
    "detail",
    "flow_ids",
    "reference",
    "client_role",
    "server_role",
    "service",
    "server_port",
    "fingerprint",
    "baseline",
    "accepted",
)


def report_document(result: AuditResult) -> dict[str, Any]:
    """The JSON report as a Python object."""
    site = result.site
    return {
        "schema": SCHEMA,
        "tool": {"name": "flowaudit", "version": __version__},
        "generated_at": result.generated_at,
        "run_id": result.run_id,
        "command": result.command,
        "captures": capture_dicts(result.captures),
        "signatures": {"sha256": result.signatures_sha256},
        "site": {
            "name": site.name,
            "security": site.security,
            "source": site.source,
            "path": site.path,
            "sha256": site.sha256,
            "roles_inferred": site.source == "inferred",
        },
        "inputs": result.inputs,
        "filters": result.filters,
        "hosts": result.hosts,
        "flows": result.flows,
        "communications": result.communications,
        "findings": [finding.to_dict() for finding in result.findings],
        "summary": result.summary(),
    }


# Lists of the report written one element a line: compact (json's C encoder; with an indent
# Python's own encoder writes every value, ten times slower on reports with whole
# conversations), and a line a flow or finding is what grep and diff want.
LINE_LISTS = ("hosts", "flows", "communications", "findings")


def write_json(result: AuditResult, out: IO[str], options: ReportOptions | None = None) -> None:
    """The JSON report: the document's fields indented, the elements of its long lists one a
    line."""
    document = report_document(result)
    # The digest of the content (of the data, not of this layout): `flowaudit verify` checks it
    from flowaudit.evidence import DIGEST_FIELD, report_digest

    document[DIGEST_FIELD] = report_digest(document)
    encode = json.JSONEncoder(default=str).encode  # one encoder for every element
    out.write("{")
    for number, (name, value) in enumerate(document.items()):
        out.write("," if number else "")
        out.write(f"\n {json.dumps(name)}: ")
        if name in LINE_LISTS and isinstance(value, list) and value:
            out.write("[")
            for index, item in enumerate(value):
                out.write(",\n  " if index else "\n  ")
                out.write(encode(item))
            out.write("\n ]")
        else:
            out.write(json.dumps(value, indent=1, default=str).replace("\n", "\n "))
    out.write("\n}\n")


def jsonl_records(result: AuditResult) -> Iterator[dict[str, Any]]:
    """One record for the run, then one per flow and one per finding, for a SIEM: each carries
    the run id and the SHA-256 of the capture its (first) flow came from."""
    sha_of = {info.path: info.sha256 for info in result.captures}
    common = {"run_id": result.run_id, "generated_at": result.generated_at}
    document = report_document(result)
    yield {
        "record": "run",
        **common,
        **{
            name: document[name]
            for name in (
                "tool",
                "command",
                "captures",
                "signatures",
                "site",
                "inputs",
                "filters",
                "summary",
            )
        },
    }
    file_of: dict[int, str] = {}
    findings_of = result.findings_by_flow
    for flow in result.flows:
        file_of[flow["id"]] = flow["file"]
        yield {
            "record": "flow",
            **common,
            "capture": flow["file"],
            "capture_sha256": sha_of.get(flow["file"]),
            **flow,
            "finding_ids": [finding.id for finding in findings_of.get(flow["id"], ())],
        }
    for finding in document["findings"]:
        first_file = file_of.get(finding["flow_ids"][0]) if finding["flow_ids"] else None
        yield {
            "record": "finding",
            **common,
            "capture": first_file,
            "capture_sha256": sha_of.get(first_file) if first_file else None,
            **finding,
        }


def write_jsonl(result: AuditResult, out: IO[str], options: ReportOptions | None = None) -> None:
    for record in jsonl_records(result):
        out.write(json.dumps(record, default=str, separators=(",", ":")))
        out.write("\n")


def csv_cell(value: Any) -> Any:
    """A cell safe to open: text with its control and format characters (C0, C1, bidi
    overrides) shown escaped, as the terminal shows them (``\\u202e``), and quoted with ``'``
    when a spreadsheet would read it as a formula (starting with = + - or @; tab and CR, the
    other starts OWASP names, are escaped by then)."""
    if type(value) is not str:  # numbers, None, booleans: as they are (the hot path)
        return value
    shown = value if value.isprintable() else clean(value)
    return "'" + shown if shown[:1] in _FORMULA_STARTS else shown


_FORMULA_STARTS = ("=", "+", "-", "@")


def write_csv(result: AuditResult, out: IO[str], options: ReportOptions | None = None) -> None:
    """The flows (one row each, with the rule ids of their findings), the findings, the
    operations or the identities (``--table``)."""
    writer = csv.writer(out, lineterminator="\n")
    if options is not None and options.table in ("operations", "identities"):
        fields, rows = (
            (OPERATION_FIELDS, operation_rows(result))
            if options.table == "operations"
            else (IDENTITY_FIELDS, identity_rows(result))
        )
        writer.writerow(fields)
        for row in rows:
            writer.writerow([csv_cell(row[name]) for name in fields])
        return
    if options is not None and options.table == "findings":
        writer.writerow(CSV_FINDING_FIELDS)
        for finding in result.findings:
            row = finding.to_dict()
            row["flow_ids"] = " ".join(str(i) for i in finding.flow_ids)
            row["accepted"] = (finding.accepted or {}).get("justification")
            writer.writerow([csv_cell(row[name]) for name in CSV_FINDING_FIELDS])
        return
    findings_of = result.findings_by_flow
    writer.writerow(CSV_FLOW_FIELDS)
    writer.writerows(
        [
            csv_cell(" ".join(f.rule for f in findings_of.get(flow["id"], ())))
            if name == "findings"
            else csv_cell(flow[name])
            for name in CSV_FLOW_FIELDS
        ]
        for flow in result.flows
    )
