"""The report's JSON Schema (``flowaudit schema``): a valid Draft 2020-12 schema that every report
flowaudit writes (JSON and JSONL, in process and from a subprocess, over the sample and the real
corpus) satisfies, and that rejects what the contract rules out.

Reports made in process by any test are also checked by the hook in ``tests/conftest.py``.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import tests.conftest as conftest
from flowaudit.audit import VERDICTS, AuditResult, audit
from flowaudit.config import FlowConfig
from flowaudit.dissect import dissectors
from flowaudit.flows import build_flow_table
from flowaudit.matrix import ROLES, load_rules
from flowaudit.report import audit as report_audit
from flowaudit.report.schema import jsonl_schema_text, load_schema, schema_text
from flowaudit.signatures import (
    BY_EPM,
    BY_NOTHING,
    BY_PAYLOAD,
    BY_PORT,
    BY_TFTP_REQUEST,
    SEVERITIES,
    load_signatures,
)
from flowaudit.site import SECURITY_MODES, load_site
from tests.conftest import REPO, corpus_files, schema_problems
from tests.scapy_flows import tcp_session, write_capture
from tests.test_cli import invoke, run_module

SAMPLE = REPO / "samples" / "configmgr_site.pcap"
SAMPLE_SITE = REPO / "samples" / "site.yaml"


def analyze(capture: Path, fmt: str, *extra: str) -> str:
    """``flowaudit analyze CAPTURE --format FMT`` in process (click's CliRunner): its output."""
    result = invoke("analyze", str(capture), "--format", fmt, "--fail-on", "never", *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def sample_report() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(analyze(SAMPLE, "json", "--site", str(SAMPLE_SITE)))
    return document


@pytest.fixture(scope="module")
def sample_records() -> list[dict[str, Any]]:
    text = analyze(SAMPLE, "jsonl", "--site", str(SAMPLE_SITE))
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def sample_result() -> AuditResult:
    table = build_flow_table([str(SAMPLE)], FlowConfig(sha256=True))
    return audit(table, load_site(SAMPLE_SITE))


# --- the schema itself ----------------------------------------------------------------------


def test_schema_command_prints_a_draft_2020_12_schema() -> None:
    result = invoke("schema")
    assert result.exit_code == 0, result.output
    assert result.stdout == schema_text()
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://flowaudit.invalid/")  # RFC 2606: never resolves
    assert schema["properties"]["schema"] == {"const": "flowaudit/report/v1"}
    assert schema["title"] and schema["description"]


def test_jsonl_schema_is_a_schema_over_the_same_definitions() -> None:
    records = json.loads(jsonl_schema_text())
    Draft202012Validator.check_schema(records)
    assert records["$ref"] == "#/$defs/jsonl_record"
    assert records["$defs"] == load_schema()["$defs"]
    assert records["$id"] != load_schema()["$id"]


def test_schema_ships_with_the_package() -> None:
    """pyproject.toml ships ``flowaudit.report``'s ``*.json``; the file sits in that package."""
    path = Path(report_audit.__file__).with_name("report-v1.schema.json")
    assert path.read_text(encoding="utf-8") == schema_text()


def _enum(name: str) -> list[Any]:
    values: list[Any] = load_schema()["$defs"][name]["enum"]
    return values


def test_enumerations_match_the_code() -> None:
    """Each list the schema fixes is the one the code uses (a role, verdict, ... added to the
    code but not to the schema would make every report with it invalid)."""
    defs = load_schema()["$defs"]
    assert _enum("role") == list(ROLES)
    assert _enum("verdict") == list(VERDICTS)
    assert _enum("severity") == list(SEVERITIES)
    protocols = {name for name, _ in [*dissectors("tcp"), *dissectors("udp")]}
    assert set(_enum("protocol")) == {*protocols, None}
    evidence = defs["flow"]["properties"]["evidence"]["enum"]
    assert set(evidence) == {BY_PAYLOAD, BY_PORT, BY_EPM, BY_TFTP_REQUEST, BY_NOTHING}
    assert defs["site"]["properties"]["security"]["enum"] == list(SECURITY_MODES)
    summary = defs["summary"]["properties"]
    assert list(summary["verdicts"]["properties"]) == list(VERDICTS)
    assert set(summary["severities"]["properties"]) == set(SEVERITIES)


def test_names_of_the_tables_fit_the_name_pattern() -> None:
    """Services, finding rules and matrix rules are written as ``$defs/name``."""
    validator = Draft202012Validator(load_schema()["$defs"]["name"])
    signatures = load_signatures()
    names = [*signatures.services, *signatures.findings, *(rule.id for rule in load_rules())]
    assert [name for name in names if not validator.is_valid(name)] == []


def test_schema_names_every_field_the_sample_report_has(sample_report: dict[str, Any]) -> None:
    """Objects accept fields the schema does not name (for consumers of later versions), so
    this holds the schema to document each field the report has today."""
    schema = load_schema()
    defs = schema["$defs"]

    def unnamed(objects: list[dict[str, Any]], definition: dict[str, Any]) -> set[str]:
        return {key for item in objects for key in item} - set(definition["properties"])

    assert unnamed([sample_report], schema) == set()
    for field, name in (
        ("captures", "capture"),
        ("hosts", "host"),
        ("flows", "flow"),
        ("communications", "communication"),
        ("findings", "finding"),
    ):
        assert sample_report[field], field
        assert unnamed(sample_report[field], defs[name]) == set(), name
    for field in ("tool", "signatures", "site", "summary"):
        assert unnamed([sample_report[field]], defs[field]) == set(), field
    for flow in sample_report["flows"]:
        for protocol, facts in flow["facts"].items():
            if isinstance(facts, dict):
                assert unnamed([facts], defs[f"facts_{protocol}"]) == set(), protocol


# --- reports that must validate -------------------------------------------------------------


def test_sample_json_report_is_valid(sample_report: dict[str, Any]) -> None:
    assert schema_problems(sample_report) == []
    # (not vacuous: the sample has flows of every verdict but unknown, findings and facts)
    assert {flow["verdict"] for flow in sample_report["flows"]} >= {"expected", "unexpected"}
    assert sample_report["findings"] and sample_report["communications"]


def test_every_jsonl_record_is_valid(sample_records: list[dict[str, Any]]) -> None:
    kinds = [record["record"] for record in sample_records]
    assert kinds[0] == "run" and {"flow", "finding"} <= set(kinds)
    for number, record in enumerate(sample_records, 1):
        assert schema_problems(record, record=True) == [], f"line {number}"


@pytest.mark.parametrize("kind", ["run", "flow", "finding"])
def test_each_record_is_held_to_its_own_definition(
    sample_records: list[dict[str, Any]], kind: str
) -> None:
    """A record of one kind stripped of a field only its kind requires is invalid."""
    record = copy.deepcopy(next(r for r in sample_records if r["record"] == kind))
    field = {"run": "summary", "flow": "server_port", "finding": "severity"}[kind]
    del record[field]
    assert any(field in line for line in schema_problems(record, record=True))


def test_report_built_by_the_library_is_valid(sample_result: AuditResult) -> None:
    """The document as ``report_document`` returns it, with an empty ``command`` (a library
    caller's), and every record of ``jsonl_records``."""
    assert schema_problems(report_audit.report_document(sample_result)) == []
    for record in report_audit.jsonl_records(sample_result):
        assert schema_problems(record, record=True) == []


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_report_of_a_subprocess_is_valid(fmt: str, tmp_path: Path) -> None:
    """The hook in conftest sees only reports made in process: this one is ``python -m``'s."""
    out = tmp_path / f"report.{fmt}"
    run = run_module(
        "analyze",
        str(SAMPLE),
        "--format",
        fmt,
        "--site",
        str(SAMPLE_SITE),
        "--fail-on",
        "never",
        "-o",
        str(out),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    if fmt == "json":
        assert schema_problems(json.loads(out.read_text())) == []
    else:
        lines = out.read_text().splitlines()
        assert len(lines) > 1
        for number, line in enumerate(lines, 1):
            assert schema_problems(json.loads(line), record=True) == [], f"line {number}"


@pytest.mark.corpus
def test_report_of_every_corpus_capture_is_valid(corpus: Path) -> None:
    """Roles inferred (no site file), each capture of the real corpus alone; JSON and JSONL."""
    captures = corpus_files()
    assert captures, f"no captures in {corpus}"
    problems: dict[str, list[str]] = {}
    for capture in captures:
        found = schema_problems(json.loads(analyze(capture, "json")))
        for number, line in enumerate(analyze(capture, "jsonl").splitlines(), 1):
            found += [f"line {number}: {p}" for p in schema_problems(json.loads(line), record=True)]
        if found:
            problems[capture.name] = found
    assert problems == {}


def test_report_of_every_lab_capture_is_valid() -> None:
    """The lab's recordings of real software (whole conversations of every protocol read),
    with the lab's site file: JSON and JSONL."""
    lab = REPO / "lab"
    problems: dict[str, list[str]] = {}
    captures = sorted((lab / "captures").glob("*.pcap"))
    assert captures
    for capture in captures:
        site = ("--site", str(lab / "site.yaml"))
        found = schema_problems(json.loads(analyze(capture, "json", *site)))
        for number, line in enumerate(analyze(capture, "jsonl", *site).splitlines(), 1):
            found += [f"line {number}: {p}" for p in schema_problems(json.loads(line), record=True)]
        if found:
            problems[capture.name] = found
    assert problems == {}


# --- what the schema rules out --------------------------------------------------------------


def _drop(*path: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path
        target: Any = document
        for key in parents:
            target = target[key]
        del target[last]

    return mutate


def _put(value: Any, *path: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path
        target: Any = document
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


BROKEN = {
    "no run_id": (_drop("run_id"), "$"),
    "no summary": (_drop("summary"), "$"),
    "a flow without its verdict": (_drop("flows", 0, "verdict"), "$.flows[0]"),
    "a finding without its severity": (_drop("findings", 0, "severity"), "$.findings[0]"),
    "a capture without its sha256": (_drop("captures", 0, "sha256"), "$.captures[0]"),
    "a verdict of maybe": (_put("maybe", "flows", 0, "verdict"), "$.flows[0].verdict"),
    "a severity of urgent": (_put("urgent", "findings", 0, "severity"), "$.findings[0].severity"),
    "a sha256 of 63 hex digits": (
        _put("b" * 63, "captures", 0, "sha256"),
        "$.captures[0].sha256",
    ),
    "a server port of 70000": (_put(70000, "flows", 0, "server_port"), "$.flows[0].server_port"),
    "a port as text": (_put("53", "flows", 0, "client_port"), "$.flows[0].client_port"),
    "a communication port of -1": (
        _put(-1, "communications", 0, "port"),
        "$.communications[0].port",
    ),
    "a proto of sctp": (_put("sctp", "flows", 0, "proto"), "$.flows[0].proto"),
    "the matrix pseudo-role any": (
        _put("any", "flows", 0, "server_role"),
        "$.flows[0].server_role",
    ),
    "an expected flow without its rule": (
        _put(None, "flows", 0, "matrix_rule"),
        "$.flows[0].matrix_rule",
    ),
    "a time without a zone": (
        _put("2023-11-14T22:13:20", "flows", 0, "first_seen"),
        "$.flows[0].first_seen",
    ),
    "a run id that is no uuid": (_put("run-1", "run_id"), "$.run_id"),
    "a client that is no address": (_put("pc21", "flows", 0, "client"), "$.flows[0].client"),
    "a schema of v2": (_put("flowaudit/report/v2", "schema"), "$.schema"),
    "a finding of no flow": (_put([], "findings", 0, "flow_ids"), "$.findings[0].flow_ids"),
    "a summary without unknown": (_drop("summary", "verdicts", "unknown"), "$.summary.verdicts"),
    "an HTTP method that is a number": (
        _put({"http": {"method": 7}}, "flows", 0, "facts"),
        "$.flows[0].facts.http.method",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_schema_rejects(sample_report: dict[str, Any], case: str) -> None:
    mutate, where = BROKEN[case]
    document = copy.deepcopy(sample_report)
    assert document["flows"][0]["verdict"] == "expected"  # what some cases rely on
    mutate(document)
    problems = schema_problems(document)
    assert problems, f"{case}: accepted"
    assert any(line.startswith(where + ":") for line in problems), problems


def test_fields_may_be_added(sample_report: dict[str, Any]) -> None:
    """More may be added, none renamed (DESIGN.md): a new field breaks no consumer."""
    document = copy.deepcopy(sample_report)
    document["later"] = {"anything": 1}
    for name in ("flows", "findings", "communications", "captures", "hosts"):
        document[name][0]["later"] = True
    document["flows"][0]["facts"]["quic"] = {"version": 1}
    document["flows"][0]["facts"].setdefault("http", {})["later"] = "x"
    assert schema_problems(document) == []


# --- the hook -------------------------------------------------------------------------------


def test_hook_checks_reports_made_in_process(sample_result: AuditResult) -> None:
    """conftest wraps ``report_document`` (and ``jsonl_records``) for every test: an invalid
    document is noted for the test's teardown."""
    assert getattr(report_audit.report_document, "schema_checked", False)
    assert getattr(report_audit.jsonl_records, "schema_checked", False)
    problems = conftest._SCHEMA_PROBLEMS
    good_run_id = sample_result.run_id
    try:
        sample_result.run_id = "not-a-uuid"
        report_audit.report_document(sample_result)
        noted = list(problems)
        list(report_audit.jsonl_records(sample_result))
        noted_records = problems[len(noted) :]
    finally:
        sample_result.run_id = good_run_id
        problems.clear()  # (this test's own bad report must not fail it)
    assert noted and all(line.startswith("report: $.run_id: 'not-a-uuid'") for line in noted)
    # (jsonl_records builds the report too:) the run record, each flow and each finding
    assert {line.partition(":")[0] for line in noted_records} == {"report"} | {
        f"JSONL record {number}"
        for number in range(1, 2 + len(sample_result.flows) + len(sample_result.findings))
    }


def test_wrong_direction_against_an_any_rule_names_roles_hosts_hold(tmp_path: Path) -> None:
    """A domain controller that opens a connection to a client's Kerberos port: the rule
    (any -> domain-controller) is broken the other way round; the report must name the client's
    role, not the matrix's pseudo-role ``any``, which no accept file may name."""
    capture = write_capture(
        tmp_path / "dc-to-client-88.pcap",
        tcp_session("10.10.0.5", "10.10.1.7", 50001, 88, [("c", b"\x00\x00\x00\x04abcd")]),
    )
    site = tmp_path / "site.yaml"
    site.write_text("roles:\n  domain-controller: [10.10.0.5]\n  client: [10.10.1.0/24]\n")
    result = audit(build_flow_table([str(capture)], FlowConfig()), load_site(site))
    # the function itself, not the hook's wrapper: this test expects the problem
    document = inspect.unwrap(report_audit.report_document)(result)
    assert [flow["verdict"] for flow in document["flows"]] == ["unexpected"]
    assert schema_problems(document) == []
