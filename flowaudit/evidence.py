"""Is a report still evidence? ``flowaudit verify REPORT.json`` re-hashes what it names.

A report records the SHA-256 and size of every capture and of the site, accept and baseline
files it rests on (DESIGN.md, principle 5). Verification reads each file again and says, one
line per file, whether it still matches; the signature tables are compared with the ones this
installation carries (a difference means a re-run would judge with other tables, not that the
evidence was altered).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowaudit.signatures import tables_sha256

CHUNK = 1 << 20


@dataclass(frozen=True)
class Check:
    """One file held against the report: ``ok``, ``changed`` or ``missing``."""

    kind: str  # capture | site | accept | baseline | signatures
    path: str
    status: str
    detail: str = ""

    @property
    def line(self) -> str:
        return f"{self.status:<8} {self.kind} {self.path}" + (
            f": {self.detail}" if self.detail else ""
        )


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _locate(recorded: str, report_path: Path) -> Path | None:
    """The file as named (relative to here), else beside the report."""
    candidates = [Path(recorded)]
    if not Path(recorded).is_absolute():
        candidates.append(report_path.parent / recorded)
    return next((path for path in candidates if path.is_file()), None)


def _check(kind: str, recorded: dict[str, Any], report_path: Path) -> Check:
    name = str(recorded.get("path"))
    want = recorded.get("sha256")
    if not want:
        return Check(kind, name, "missing", "the report holds no SHA-256 for it (--no-sha256)")
    path = _locate(name, report_path)
    if path is None:
        return Check(kind, name, "missing", "not found here or beside the report")
    try:
        got, size = file_sha256(path)
    except OSError as exc:
        return Check(kind, name, "missing", f"cannot read ({exc.strerror})")
    if got != want:
        return Check(kind, name, "changed", f"SHA-256 {got}, the report has {want}")
    if recorded.get("size") not in (None, size):
        return Check(kind, name, "changed", f"{size} bytes, the report has {recorded['size']}")
    return Check(kind, name, "ok", f"SHA-256 {got}")


def verify_report(document: dict[str, Any], report_path: Path) -> list[Check]:
    """Every file the report rests on, re-hashed; the signature tables compared."""
    checks = [_check("capture", info, report_path) for info in document["captures"]]
    site = document.get("site") or {}
    if site.get("path"):
        checks.append(_check("site", site, report_path))
    for kind, recorded in sorted((document.get("inputs") or {}).items()):
        if kind != "site" and isinstance(recorded, dict):
            checks.append(_check(kind, recorded, report_path))
    recorded_tables = (document.get("signatures") or {}).get("sha256") or {}
    here = tables_sha256()
    differ = sorted(
        name for name in {*recorded_tables, *here} if recorded_tables.get(name) != here.get(name)
    )
    checks.append(
        Check(
            "signatures",
            "flowaudit tables",
            "differ" if differ else "ok",
            f"this installation's {', '.join(differ)} differ from the report's "
            "(a re-run would judge with other tables)"
            if differ
            else "the report's tables are the ones installed here",
        )
    )
    return checks


def verified(checks: list[Check]) -> bool:
    """The evidence holds: every file is there and unchanged (tables may differ)."""
    return all(check.status == "ok" for check in checks if check.kind != "signatures")
