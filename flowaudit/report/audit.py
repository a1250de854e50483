"""Write an ``AuditResult`` (``flowaudit analyze``): the JSON report, CSV, or a terminal view.

The JSON document is the contract of DESIGN.md (``flowaudit/report/v1``); CSV and the terminal
are views of the same result and compute nothing of their own. Strings from the capture are
hostile: CSV cells that a spreadsheet would read as a formula are neutralised, and control
characters never reach the terminal.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Iterable
from typing import IO, Any

from flowaudit import __version__
from flowaudit.audit import FLOW_FIELDS, AuditResult
from flowaudit.report.flowtable import capture_dicts

SCHEMA = "flowaudit/report/v1"
FORMATS = ("table", "json", "csv")
# The flows' fields but the nested ones, and the rule ids of each flow's findings.
CSV_FLOW_FIELDS = (
    *(name for name in FLOW_FIELDS if name not in ("client_roles", "server_roles", "facts")),
    "findings",
)
# Unicode categories never sent to a terminal as they are: controls (C0/C1), format
# characters (bidi overrides, zero-width joiners), line and paragraph separators, unassigned
# and private-use code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})


def report_document(result: AuditResult) -> dict[str, Any]:
    """The JSON report as a Python object."""
    site = result.site
    return {
        "schema": SCHEMA,
        "tool": {"name": "flowaudit", "version": __version__},
        "generated_at": result.generated_at,
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
        "hosts": result.hosts,
        "flows": result.flows,
        "findings": [finding.to_dict() for finding in result.findings],
        "summary": result.summary(),
    }


def write_json(result: AuditResult, out: IO[str]) -> None:
    json.dump(report_document(result), out, indent=1, default=str)
    out.write("\n")


def _csv_cell(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting with = + - @ tab or CR is quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_csv(result: AuditResult, out: IO[str], table: str = "flows") -> None:
    """The flows (one row each, with the ids of their findings), or the findings."""
    writer = csv.writer(out, lineterminator="\n")
    if table == "findings":
        fields = ("id", "rule", "severity", "title", "detail", "flow_ids", "reference")
        writer.writerow(fields)
        for finding in result.findings:
            row = finding.to_dict()
            row["flow_ids"] = " ".join(str(i) for i in finding.flow_ids)
            writer.writerow([_csv_cell(row[name]) for name in fields])
        return
    by_flow: dict[int, list[str]] = {}
    for finding in result.findings:
        for flow_id in finding.flow_ids:
            by_flow.setdefault(flow_id, []).append(finding.rule)
    writer.writerow(CSV_FLOW_FIELDS)
    for flow in result.flows:
        row = dict(flow, findings=" ".join(by_flow.get(flow["id"], [])))
        writer.writerow([_csv_cell(row[name]) for name in CSV_FLOW_FIELDS])


def clean(text: Any) -> str:
    """Text safe for a terminal: control and format characters (C0, C1, and Unicode's Cf,
    Zl, Zp such as the bidi overrides that reorder what a terminal shows) as escapes."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(
        _escape(char) if unicodedata.category(char) in _ESCAPED_CATEGORIES else char
        for char in value
    )


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _lines(result: AuditResult) -> Iterable[str]:
    summary = result.summary()
    for info in result.captures:
        yield clean(f"{info.path}: {info.packets} packets, {info.bytes} bytes")
        for warning in info.warnings:
            yield clean(f"  warning: {warning}")
    site = result.site
    if site.source == "inferred":
        yield "roles: inferred from the traffic (no site file)"
    else:
        yield clean(f"site: {site.name or '-'} ({site.path}), security {site.security}")
    verdicts = ", ".join(f"{count} {name}" for name, count in summary["verdicts"].items())
    yield f"flows: {summary['flows']} ({verdicts})"
    severities = ", ".join(
        f"{count} {name}" for name, count in summary["severities"].items() if count
    )
    yield f"findings: {len(result.findings)}" + (f" ({severities})" if severities else "")


def write_table(result: AuditResult, out: IO[str], *, color: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, no_color=not color, highlight=False, width=None if color else 160)
    for line in _lines(result):
        console.print(Text(line))
    if result.hosts:
        hosts = Table(title="hosts", box=None, pad_edge=False, title_justify="left")
        for title in ("ip", "roles", "source"):
            hosts.add_column(title, overflow="fold")
        for host in result.hosts:
            hosts.add_row(
                *(Text(clean(v)) for v in (host["ip"], ", ".join(host["roles"]), host["source"]))
            )
        console.print(hosts)
    if result.findings:
        view = Table(title="findings", box=None, pad_edge=False, title_justify="left")
        for title in ("id", "severity", "rule", "flows", "detail"):
            view.add_column(title, overflow="fold")
        for finding in result.findings:
            flow_ids = ",".join(str(i) for i in finding.flow_ids[:8])
            if len(finding.flow_ids) > 8:
                flow_ids += ",…"
            view.add_row(
                *(
                    Text(clean(v))
                    for v in (finding.id, finding.severity, finding.rule, flow_ids, finding.detail)
                )
            )
        console.print(view)
    flows = Table(title="flows", box=None, pad_edge=False, title_justify="left")
    for title in ("id", "proto", "client", "server", "service", "roles", "verdict", "rule"):
        flows.add_column(title, overflow="fold")
    for flow in result.flows:
        roles = f"{flow['client_role'] or '?'} -> {flow['server_role'] or '?'}"
        flows.add_row(
            *(
                Text(clean(v))
                for v in (
                    flow["id"],
                    flow["proto"],
                    f"{flow['client']}:{flow['client_port']}",
                    f"{flow['server']}:{flow['server_port']}",
                    flow["service"] + (" (plaintext)" if flow["plaintext"] else ""),
                    roles,
                    flow["verdict"],
                    flow["matrix_rule"] or "",
                )
            )
        )
    console.print(flows)
