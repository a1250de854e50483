"""Views of flowaudit's results: terminal tables, JSON, JSONL, CSV, HTML, SARIF, Parquet.

The audit's formats are registered here by name; each is a function
``write(result, out, options)`` in its own module, imported only when asked for, and each is a
view of the same ``AuditResult``: none recomputes anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowaudit.audit import AuditResult


@dataclass(frozen=True)
class ReportOptions:
    """What a view may be told beyond the result: colour and width for a terminal (None: not
    a terminal), and ``--table`` (CSV: flows, the default, or findings; the terminal view adds
    every flow with ``flows``)."""

    color: bool = False
    table: str | None = None
    width: int | None = None


# format name -> "module:function"
AUDIT_FORMATS = {
    "table": "flowaudit.report.terminal:write_table",
    "json": "flowaudit.report.audit:write_json",
    "jsonl": "flowaudit.report.audit:write_jsonl",
    "csv": "flowaudit.report.audit:write_csv",
    "html": "flowaudit.report.html:write_html",
    "sarif": "flowaudit.report.sarif:write_sarif",
}

Writer = Callable[["AuditResult", IO[str], ReportOptions], None]


def audit_writer(fmt: str) -> Writer:
    """The writer of one of ``AUDIT_FORMATS``."""
    module_name, _, function = AUDIT_FORMATS[fmt].partition(":")
    writer: Any = getattr(importlib.import_module(module_name), function)
    return writer
