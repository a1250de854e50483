"""Is a report still evidence? ``flowaudit verify REPORT.json`` re-hashes what it names.

A report records the SHA-256 and size of every capture and of the site, accept and baseline
files it rests on (DESIGN.md, principle 5), and the SHA-256 of its own content
(``report_sha256``). Verification reads each file again and says, one line per file, whether it
still matches, and whether the report's content still hashes to its digest; the signature
tables are compared with the ones this installation carries (a difference means a re-run would
judge with other tables, not that the evidence was altered). ``rerun_findings`` audits the
captures again and holds the findings against the report's.

A report may come from anyone, so the paths it names are handled with care: only regular
files are opened (a FIFO, device, directory or socket is refused without being opened),
nothing under ``/proc``, ``/sys`` or ``/dev`` is read, a file whose size is not the recorded
one is never hashed, and a path that cannot be used fails its own line only.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowaudit.signatures import tables_sha256

STDIN = "-"  # as flowaudit.capture.source.STDIN; importing that loads the capture reader

CHUNK = 1 << 20
# The report's digest of its own content (all of it but this field).
DIGEST_FIELD = "report_sha256"
# What a report may not make ``verify`` read, whatever path it names (after symbolic links).
REFUSED_TREES = ("/proc", "/sys", "/dev")
# A path longer than this is shortened in the lines ``verify`` prints.
SHOWN_PATH_CHARS = 160

Progress = Callable[[int], None] | None


def report_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of a report's canonical JSON (sorted keys, no spaces, UTF-8), without its
    digest field: what ``analyze`` stores in ``report_sha256`` and ``verify`` recomputes.

    The document is taken as the JSON writer writes it (``default=str``; its keys are all
    strings), so that the report read back hashes the same."""
    content = {key: value for key, value in document.items() if key != DIGEST_FIELD}
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    # Lone surrogates (bytes of the capture that are not UTF-8) pass as they are, both ways.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def shown_path(path: str | Path) -> str:
    """A path for a line of output: shortened in the middle when very long."""
    text = str(path)
    if len(text) <= SHOWN_PATH_CHARS:
        return text
    return f"{text[:100]}...({len(text)} characters)...{text[-40:]}"


@dataclass(frozen=True)
class Check:
    """One file held against the report: ``ok``, ``changed``, ``missing`` or ``refused`` (not
    a regular file, or where verify does not read); the report's own content: ``ok``,
    ``edited`` or ``missing``; tables: ``ok`` or ``differ``. ``found`` is the file that
    matched, when one did."""

    kind: str  # report | capture | site | accept | baseline | signatures
    path: str
    status: str
    detail: str = ""
    found: str | None = None

    @property
    def line(self) -> str:
        return f"{self.status:<8} {self.kind} {shown_path(self.path)}" + (
            f": {self.detail}" if self.detail else ""
        )


def file_sha256(path: Path, progress: Progress = None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest(), size


def _candidates(recorded: str, report_path: Path) -> list[Path]:
    """Where a file the report names may be now: as named (an absolute path, or relative to
    the current folder), then beside the report (its recorded relative path from the report's
    folder, then its name alone), without repeats."""
    named = Path(recorded)
    folder = report_path.parent
    paths = [named] if named.is_absolute() else [named, folder / named]
    if named.name:
        paths.append(folder / named.name)
    return list(dict.fromkeys(paths))


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refused_tree(path: Path) -> str | None:
    real = os.path.realpath(path)
    for tree in REFUSED_TREES:
        if real == tree or real.startswith(tree + "/"):
            return tree
    return None


def _look(path: Path) -> os.stat_result | tuple[str, str] | None:
    """The file's status when it is a regular file verify may read; (check status, reason)
    when it is there but refused or unusable; None when nothing is there. Nothing is
    opened."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return "missing", f"cannot read ({exc.strerror})"
    except ValueError:
        return "refused", "not a usable path (it holds a NUL character)"
    tree = _refused_tree(path)
    if tree is not None:
        return "refused", f"under {tree}: not read"
    if not stat.S_ISREG(info.st_mode):
        return "refused", f"{_kind_of(info.st_mode)}: not read"
    return info


def located_files(document: Mapping[str, Any], report_path: Path) -> list[Path]:
    """The regular files ``verify_report`` will likely hash (for a progress bar's total)."""
    found = []
    for recorded in _recorded_files(document):
        path = recorded.get("path")
        if not isinstance(path, str) or path == STDIN:
            continue
        for candidate in _candidates(path, report_path):
            if isinstance(_look(candidate), os.stat_result):
                found.append(candidate)
                break
    return found


def _recorded_files(document: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    yield from document["captures"]
    site = document.get("site") or {}
    if site.get("path"):
        yield site
    for kind, recorded in sorted((document.get("inputs") or {}).items()):
        if kind != "site" and isinstance(recorded, dict):
            yield recorded


def _check(
    kind: str, recorded: Mapping[str, Any], report_path: Path, progress: Progress = None
) -> Check:
    name = str(recorded.get("path"))
    want = recorded.get("sha256")
    size = recorded.get("size")
    if name == STDIN:
        return Check(
            kind,
            name,
            "missing",
            f"read from standard input, cannot be read again (the report has SHA-256 {want})",
        )
    if not want:
        return Check(kind, name, "missing", "the report holds no SHA-256 for it (--no-sha256)")
    first_problem = None
    # A file of the same name that does not match (a decoy here) does not hide the right one.
    for path in _candidates(name, report_path):
        where = "" if str(path) == name else f" (at {shown_path(path)})"
        looked = _look(path)
        if looked is None:
            continue
        if not isinstance(looked, os.stat_result):  # (a stat result is a tuple too)
            status, reason = looked
            first_problem = first_problem or Check(kind, name, status, f"{reason}{where}")
            continue
        if size is not None and looked.st_size != size:
            # Never hashed: a size is evidence enough, and a foreign report must not make
            # verify read whatever large file it names.
            detail = f"size differs (recorded {size}, found {looked.st_size}){where}"
            first_problem = first_problem or Check(kind, name, "changed", detail)
            continue
        try:
            got, read = file_sha256(path, progress)
        except OSError as exc:
            first_problem = first_problem or Check(
                kind, name, "missing", f"cannot read ({exc.strerror}){where}"
            )
            continue
        if got == want and size in (None, read):
            return Check(kind, name, "ok", f"SHA-256 {got}{where}", found=str(path))
        detail = (
            f"SHA-256 differs: found {got}, the report has {want}{where}"
            if got != want
            else f"size differs (recorded {size}, read {read}){where}"  # it changed meanwhile
        )
        first_problem = first_problem or Check(kind, name, "changed", detail)
    return first_problem or Check(kind, name, "missing", "not found here or beside the report")


def content_check(document: Mapping[str, Any]) -> Check:
    """The report's content held against the digest it carries (``report_sha256``)."""
    recorded = document.get(DIGEST_FIELD)
    if recorded is None:
        return Check(
            "report",
            "content",
            "missing",
            f"the report carries no digest ({DIGEST_FIELD}): its content cannot be checked",
        )
    content = {key: value for key, value in document.items() if key != "_evidence"}
    try:
        got = report_digest(content)
    except (RecursionError, ValueError):
        return Check("report", "content", "edited", "its content cannot be hashed")
    if got == recorded:
        return Check("report", "content", "ok", "digest matches")
    return Check(
        "report",
        "content",
        "edited",
        f"was edited after it was written (it hashes to {got}, its digest is {recorded})",
    )


def verify_report(
    document: dict[str, Any], report_path: Path, progress: Progress = None
) -> list[Check]:
    """The report's own content against its digest, every file it rests on re-hashed, and the
    signature tables compared."""
    checks = [content_check(document)]
    captures = [_check("capture", info, report_path, progress) for info in document["captures"]]
    checks.extend(captures)
    if not captures:
        checks.append(Check("capture", "-", "missing", "the report names no capture"))
    site = document.get("site") or {}
    if site.get("path"):
        checks.append(_check("site", site, report_path, progress))
    for kind, recorded in sorted((document.get("inputs") or {}).items()):
        if kind != "site" and isinstance(recorded, dict):
            checks.append(_check(kind, recorded, report_path, progress))
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
    """The evidence holds: the report's content is what was written, it names a capture, and
    every file is there and unchanged (tables may differ)."""
    files = [check for check in checks if check.kind != "signatures"]
    has_capture = any(check.kind == "capture" for check in files)
    return has_capture and all(check.status == "ok" for check in files)


# --- re-run ---------------------------------------------------------------------------------

_FlowKey = tuple[str, str, tuple[int, ...]]
_SHOWN_FLOW_IDS = 10


def _finding_key(rule: str, severity: str, flow_ids: Iterable[int]) -> _FlowKey:
    return (rule, severity, tuple(sorted(flow_ids)))


def _finding_text(key: _FlowKey) -> str:
    rule, severity, flow_ids = key
    ids = ", ".join(str(i) for i in flow_ids[:_SHOWN_FLOW_IDS])
    more = f", ... ({len(flow_ids)} flows)" if len(flow_ids) > _SHOWN_FLOW_IDS else ""
    return f"{severity} {rule}: flows {ids}{more}" if flow_ids else f"{severity} {rule}: no flows"


@dataclass(frozen=True)
class Rerun:
    """The findings of a new audit of the captures held against the report's."""

    missing: list[str]  # in the report, not found again
    extra: list[str]  # found again, not in the report

    @property
    def same(self) -> bool:
        return not self.missing and not self.extra

    @property
    def lines(self) -> list[str]:
        return [f"- {text} (in the report, not found again)" for text in self.missing] + [
            f"+ {text} (found again, not in the report)" for text in self.extra
        ]


def rerun_findings(
    document: Mapping[str, Any],
    checks: list[Check],
    options: Mapping[str, Any],
    progress: Progress = None,
) -> Rerun:
    """Audit the captures the checks found again, with the site file they found and the
    options of the report's command (``options``: ``analyze``'s parameters), and compare the
    findings (rule, severity, flows) with the report's. Accept files and baselines change no
    finding's rule, severity or flows, so they are not read."""
    from flowaudit.audit import audit
    from flowaudit.config import FlowConfig
    from flowaudit.filters import make_filters, select_result
    from flowaudit.flows import build_flow_table
    from flowaudit.site import load_site

    captures = [check.found for check in checks if check.kind == "capture" and check.found]
    sites = [check.found for check in checks if check.kind == "site" and check.found]
    filters = make_filters(
        hosts=options.get("filter_hosts") or (),
        nets=options.get("filter_nets") or (),
        since=options.get("filter_since"),
        until=options.get("filter_until"),
        services=options.get("filter_services") or (),
        verdicts=options.get("filter_verdicts") or (),
        rules=options.get("filter_rules") or (),
        min_severity=options.get("filter_min_severity"),
    )
    engine = options.get("engine", "native")
    config = FlowConfig(
        payload_bytes=options["payload_bytes"],
        idle_timeout=options["idle_timeout"],
        conversations=bool(options.get("conversations")) and engine != "pyshark",
    )
    table = build_flow_table(captures, config, engine=engine, progress=progress)
    result = select_result(audit(table, load_site(sites[0]) if sites else None), filters)
    again = Counter(_finding_key(f.rule, f.severity, f.flow_ids) for f in result.findings)
    recorded = Counter(
        _finding_key(f["rule"], f["severity"], f["flow_ids"]) for f in document["findings"]
    )
    return Rerun(
        missing=[_finding_text(key) for key in sorted((recorded - again).elements())],
        extra=[_finding_text(key) for key in sorted((again - recorded).elements())],
    )
