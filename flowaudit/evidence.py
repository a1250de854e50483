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

from flowaudit.capture.source import STDIN
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


def _candidates(recorded: str, report_path: Path) -> list[Path]:
    """Where a file the report names may be now: as named (from here), then beside the report
    (its recorded path, then its name alone), without repeats."""
    named = Path(recorded)
    found: list[Path] = []
    for path in (named, report_path.parent / named, report_path.parent / named.name):
        if path not in found and path.is_file():
            found.append(path)
    return found


def _check(kind: str, recorded: dict[str, Any], report_path: Path) -> Check:
    name = str(recorded.get("path"))
    want = recorded.get("sha256")
    if name == STDIN:
        return Check(
            kind,
            name,
            "missing",
            f"read from standard input, cannot be read again (the report has SHA-256 {want})",
        )
    if not want:
        return Check(kind, name, "missing", "the report holds no SHA-256 for it (--no-sha256)")
    candidates = _candidates(name, report_path)
    if not candidates:
        return Check(kind, name, "missing", "not found here or beside the report")
    first_problem = None
    # A file of the same name that does not match (a decoy here) does not hide the right one.
    for path in candidates:
        try:
            got, size = file_sha256(path)
        except OSError as exc:
            first_problem = first_problem or Check(
                kind, name, "missing", f"{path}: cannot read ({exc.strerror})"
            )
            continue
        where = "" if str(path) == name else f" (at {path})"
        if got == want and recorded.get("size") in (None, size):
            return Check(kind, name, "ok", f"SHA-256 {got}{where}")
        first_problem = first_problem or Check(
            kind, name, "changed", f"SHA-256 {got}{where}, the report has {want}"
        )
    assert first_problem is not None
    return first_problem


def verify_report(document: dict[str, Any], report_path: Path) -> list[Check]:
    """Every file the report rests on, re-hashed; the signature tables compared."""
    checks = [_check("capture", info, report_path) for info in document["captures"]]
    if not checks:
        checks.append(Check("capture", "-", "missing", "the report names no capture"))
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
    """The evidence holds: the report names a capture, and every file is there and unchanged
    (tables may differ)."""
    files = [check for check in checks if check.kind != "signatures"]
    has_capture = any(check.kind == "capture" for check in files)
    return has_capture and all(check.status == "ok" for check in files)
