"""Shared fixtures: where the real corpus is, whether tshark (the oracle) is here, and a check
that every report a test makes matches the JSON Schema the package ships."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path:
    """The corpus folder: ``FLOWAUDIT_CORPUS``, else ``../shared/corpus`` beside the repo."""
    return Path(os.environ.get("FLOWAUDIT_CORPUS", REPO.parent / "shared" / "corpus"))


def corpus_files() -> list[Path]:
    folder = corpus_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap")
    )


@pytest.fixture(scope="session")
def corpus() -> Path:
    folder = corpus_dir()
    if not folder.is_dir():
        if "FLOWAUDIT_CORPUS" in os.environ:
            pytest.fail(f"FLOWAUDIT_CORPUS={folder} is not a folder")
        pytest.skip(f"no corpus at {folder}")
    return folder


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is required in CI (the oracle); .ci/run installs it")
        pytest.skip("tshark not installed")
    return path


# --- every report the tests make matches the schema the package ships -----------------------
#
# ``report_document`` and ``jsonl_records`` are wrapped for each test: what they return is
# written as ``write_json``/``write_jsonl`` would write it (``default=str``, so that a value
# JSON cannot hold shows up as the string it would become) and validated against
# ``flowaudit/report/report-v1.schema.json``. A test that made an invalid report fails at its
# teardown: raising inside the CLI would only turn into an exit code that the test may expect.

_SCHEMA_PROBLEMS: list[str] = []
_MAX_PROBLEMS = 20


@functools.cache
def report_validators() -> tuple[Any, Any]:
    """(validator of a JSON report, validator of one JSONL record), built once per session."""
    from jsonschema import Draft202012Validator

    from flowaudit.report.schema import jsonl_schema, load_schema

    checker = Draft202012Validator.FORMAT_CHECKER  # date, ipv4, ipv6, uuid (and more if here)
    return (
        Draft202012Validator(load_schema(), format_checker=checker),
        Draft202012Validator(jsonl_schema(), format_checker=checker),
    )


def schema_problems(document: Any, *, record: bool = False) -> list[str]:
    """Where ``document`` (a report, or with ``record`` one JSONL record) breaks the schema,
    one line each; the document is taken as it would be written, through JSON."""
    written = json.loads(json.dumps(document, default=str))
    validator = report_validators()[1 if record else 0]
    errors = sorted(validator.iter_errors(written), key=lambda error: error.json_path)
    return [f"{error.json_path}: {error.message[:300]}" for error in errors[:_MAX_PROBLEMS]]


def _checked(original: Callable[..., Any], *, records: bool) -> Callable[..., Any]:
    """``original`` (``report_document``, or with ``records`` ``jsonl_records``), noting where
    what it returns breaks the schema."""

    def checked_document(result: Any) -> dict[str, Any]:
        document: dict[str, Any] = original(result)
        _SCHEMA_PROBLEMS.extend(f"report: {line}" for line in schema_problems(document))
        return document

    def checked_records(result: Any) -> Iterator[dict[str, Any]]:
        for number, record in enumerate(original(result), 1):
            found = schema_problems(record, record=True)
            _SCHEMA_PROBLEMS.extend(f"JSONL record {number}: {line}" for line in found)
            yield record

    checked: Callable[..., Any] = functools.wraps(original)(
        checked_records if records else checked_document
    )
    checked.__dict__["schema_checked"] = True
    return checked


@functools.cache
def _wrappers() -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """name -> (the function of flowaudit.report.audit, the same checked against the schema)."""
    from flowaudit.report import audit as report_audit

    return {
        name: (original, _checked(original, records=name == "jsonl_records"))
        for name, original in (
            ("report_document", report_audit.report_document),
            ("jsonl_records", report_audit.jsonl_records),
        )
    }


@pytest.fixture(autouse=True)
def _reports_match_the_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The module's own functions look each other up as module globals; a module (of the
    # package or of the tests) that imported one by name is patched too. One imported during
    # the test binds the checked function, which reports here as well.
    wrappers = _wrappers()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("flowaudit", "tests")):
            continue
        for attribute, (original, checked) in wrappers.items():
            if getattr(module, attribute, None) is original:
                monkeypatch.setattr(module, attribute, checked)
    _SCHEMA_PROBLEMS.clear()
    yield
    problems = _SCHEMA_PROBLEMS[:_MAX_PROBLEMS]
    _SCHEMA_PROBLEMS.clear()
    if problems:
        pytest.fail(
            "a report made by this test breaks flowaudit/report/report-v1.schema.json:\n  "
            + "\n  ".join(problems),
            pytrace=False,
        )
