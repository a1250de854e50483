"""Shared fixtures: where the real corpus is, whether tshark (the oracle) is here, the facts of
the ports page (``tests/data``), a check that every report a test makes matches the JSON Schema
the package ships, and a check that a run leaves the repository as it found it.

Under CI (``CI`` set) no test may vanish for want of an input: a missing corpus, tshark or the
like fails there (``missing``), and a corpus parametrisation that found no capture yields one
failing case instead of none.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent

# --- a run leaves the repository as it found it ----------------------------------------------
#
# The caches of the tools the tests run go outside the repository (set here, before a test
# uses hypothesis; the tools the tests start inherit them): mypy's and ruff's
# (tests/test_quality.py) and hypothesis's example database (else .hypothesis/ in the working
# directory). pytest's own cache is off (``-p no:cacheprovider`` in pyproject.toml). A
# developer's own setting wins.
CACHES = Path(tempfile.gettempdir()) / "flowaudit-test-caches"
CACHE_VARIABLES = {
    "MYPY_CACHE_DIR": "mypy",
    "RUFF_CACHE_DIR": "ruff",
    "HYPOTHESIS_STORAGE_DIRECTORY": "hypothesis",
}
for _variable, _folder in CACHE_VARIABLES.items():
    os.environ.setdefault(_variable, str(CACHES / _folder))

# What a run may add to the repository: Python's own bytecode (written at every import unless
# PYTHONDONTWRITEBYTECODE is set; pytest writes its rewritten test modules the same way), and
# the virtual environment and git's folder, which are not the tree's files.
UNWATCHED_FOLDERS = frozenset({".git", ".venv"})


def tree_files(root: Path) -> set[str]:
    """Every file under ``root`` (as a path relative to it), but bytecode in ``__pycache__``
    folders and the folders of ``UNWATCHED_FOLDERS``."""
    found = set()
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in UNWATCHED_FOLDERS]
        in_pycache = Path(folder).name == "__pycache__"
        for name in names:
            if not (in_pycache and name.endswith(".pyc")):
                found.add(os.path.relpath(os.path.join(folder, name), root))
    return found


_FILES_AT_START: set[str] = set()


def pytest_sessionstart(session: pytest.Session) -> None:
    _FILES_AT_START.update(tree_files(REPO))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    added = sorted(tree_files(REPO) - _FILES_AT_START) if _FILES_AT_START else []
    if added:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_sep("=", f"the tests left {len(added)} new files in {REPO}", red=True)
            for name in added[:20]:
                reporter.write_line(f"{name}  (a test writes there: give it tmp_path)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def under_ci() -> bool:
    """Whether the tests run in CI (``CI`` set, as CI services set it, and not "false")."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """An input a test needs is not here: skip it locally, fail it in CI."""
    if under_ci():
        pytest.fail(f"{what}: required in CI (.ci/run provides it)", pytrace=False)
    pytest.skip(f"{what}: not here")


def corpus_dir() -> Path:
    """The corpus folder: ``FLOWAUDIT_CORPUS``, else ``../shared/corpus`` beside the repo."""
    return Path(os.environ.get("FLOWAUDIT_CORPUS", REPO.parent / "shared" / "corpus"))


# What ``corpus_files`` gives in CI when the corpus has no capture: one path that no capture
# has, so that a test parametrised over the corpus fails (``pytest_runtest_setup``) where an
# empty parameter set would skip it unseen.
NO_CORPUS = "(no corpus capture)"


def corpus_files() -> list[Path]:
    folder = corpus_dir()
    found = (
        sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap")
        )
        if folder.is_dir()
        else []
    )
    if not found and under_ci():
        return [folder / NO_CORPUS]
    return found


def pytest_runtest_setup(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(
        isinstance(value, Path) and value.name == NO_CORPUS for value in callspec.params.values()
    ):
        pytest.fail(
            f"no corpus capture in {corpus_dir()}: the corpus tests must run in CI "
            "(FLOWAUDIT_CORPUS)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The corpus folder, with captures in it (skipped locally without, failed in CI)."""
    folder = corpus_dir()
    if not folder.is_dir():
        if "FLOWAUDIT_CORPUS" in os.environ:
            pytest.fail(f"FLOWAUDIT_CORPUS={folder} is not a folder")
        missing(f"the corpus at {folder}")
    if not any(path.name != NO_CORPUS for path in corpus_files()):
        missing(f"no corpus capture in {folder}")
    return folder


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        missing("tshark (the oracle; .ci/run installs it)")
    return path


# --- the ports page, as facts the project carries ---------------------------------------------

PORTS_PAGE_FACTS = REPO / "tests" / "data" / "ports_page.tsv"
PORTS_PAGE_COLUMNS = (
    "kind",
    "section",
    "row",
    "proto",
    "port",
    "client_role",
    "server_role",
    "bidirectional",
    "notes",
    "alternate",
)


def ports_page_facts() -> list[dict[str, str]]:
    """The rows of ``tests/data/ports_page.tsv``: each table row of Microsoft's ports page
    (``kind`` "row": section, row, transport, port, roles, direction, notes, alternate port),
    and each sentence of the page the matrix quotes (``kind`` "quote": section and sentence in
    ``row``, the other columns left out). ``tests/test_matrix.py`` makes it from the page and
    checks it against the page where the page is at hand."""
    lines = PORTS_PAGE_FACTS.read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    assert tuple(rows[0]) == PORTS_PAGE_COLUMNS, rows[0]
    return [dict(zip(PORTS_PAGE_COLUMNS, row + [""] * 10, strict=False)) for row in rows[1:]]


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
