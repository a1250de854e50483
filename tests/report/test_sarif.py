"""``flowaudit analyze --format sarif``: valid SARIF 2.1.0 that says what the findings say.

Every document is validated against the official SARIF 2.1.0 JSON Schema (OASIS, as
SchemaStore publishes it), which is not in the repository: ``FLOWAUDIT_SARIF_SCHEMA`` names
it (.ci/run fetches it). Without it the schema tests skip locally and fail in CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from click.testing import CliRunner

from flowaudit import __version__
from flowaudit.audit import audit
from flowaudit.cli import cli
from flowaudit.report.sarif import artifact_uri, message_text, write_sarif
from flowaudit.signatures import load_signatures
from flowaudit.site import load_site
from tests.conftest import REPO
from tests.protobytes import http, smb
from tests.scapy_flows import flow_table, tcp_session, write_capture

SAMPLE = "samples/configmgr_site.pcap"
SAMPLE_SITE = "samples/site.yaml"
# Written out here, not imported, so that a change of the writer's tables shows as a failure.
EXPECTED_LEVEL = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}
EXPECTED_SECURITY_SEVERITY = {
    "critical": 9.5,
    "high": 8.0,
    "medium": 5.5,
    "low": 3.0,
    "info": 1.0,
}
SMALL_SITE = """\
site: PS1
security: https-or-ehttp
roles:
  site-server: [10.10.0.10]
  management-point: [10.10.0.12]
  distribution-point: [10.10.0.13]
  client: [10.10.1.0/24]
"""
# A request path with what a SARIF message must not take literally: a placeholder and an
# embedded link (SARIF 2.1.0 §3.11.5, §3.11.6), a quote and a backslash (JSON).
HOSTILE_PATH = '/ccm_system/request?q={0}[here](1)"\\'
SDK_AGENT = "ConfigMgr Messaging HTTP Sender"
ACCEPT_SMB1 = """\
accept:
  - rule: smb1
    match: {server_role: distribution-point}
    justification: "CHG-1"
"""

Validator = Any  # jsonschema.Draft4Validator (jsonschema ships no type hints)


# --- the schema -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sarif_validator() -> Validator:
    """A Draft 4 validator of the SARIF 2.1.0 schema that ``FLOWAUDIT_SARIF_SCHEMA`` names."""
    location = os.environ.get("FLOWAUDIT_SARIF_SCHEMA")
    if not location:
        if os.environ.get("CI"):
            pytest.fail("FLOWAUDIT_SARIF_SCHEMA is required in CI (.ci/run fetches the schema)")
        pytest.skip("FLOWAUDIT_SARIF_SCHEMA not set: no SARIF 2.1.0 schema to validate against")
    path = Path(location)
    if not path.is_file():
        pytest.fail(f"FLOWAUDIT_SARIF_SCHEMA={location} is not a file")
    schema = json.loads(path.read_text(encoding="utf-8"))
    title = schema.get("title", "")
    assert "SARIF" in title and "2.1.0" in title, f"{location} is not the SARIF 2.1.0 schema"
    assert "draft-04" in schema.get("$schema", "")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def schema_errors(validator: Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(document)
    ]


# --- running flowaudit ------------------------------------------------------------------------


def analyze(monkeypatch: pytest.MonkeyPatch, out: Path, *args: str) -> str:
    """Run ``flowaudit analyze ARGS -o OUT`` as a user would (``sys.argv`` is the command
    line the report records) and return what it wrote."""
    argv = ["analyze", *args, "--fail-on", "never", "-o", str(out)]
    monkeypatch.setattr(sys, "argv", ["flowaudit", *argv])
    CliRunner().invoke(cli, argv, standalone_mode=False, catch_exceptions=False)
    return out.read_text(encoding="utf-8")


@pytest.fixture
def sample_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., tuple[dict[str, Any], str]]:
    """Analyze the bundled sample from the repository (relative paths, as in CI); returns
    (document, raw text); the format is SARIF unless given."""
    monkeypatch.chdir(REPO)
    counter = iter(range(1000))

    def run(*extra: str, fmt: str = "sarif") -> tuple[dict[str, Any], str]:
        out = tmp_path / f"run{next(counter)}.{fmt}"
        raw = analyze(monkeypatch, out, SAMPLE, "--site", SAMPLE_SITE, "--format", fmt, *extra)
        return json.loads(raw), raw

    return run


@pytest.fixture
def small_captures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Two tiny captures (run from their folder, named relatively):

    * ``a.pcap``: plaintext HTTP to the MP with the SDK's user agent and a hostile path, and
      SMB1 to the DP;
    * ``b.pcap``, cut short: the same plaintext request from another client (the plaintext-http
      finding spans both captures).
    """
    monkeypatch.chdir(tmp_path)
    request = http.http_request(
        "CCM_POST", HOSTILE_PATH, (("Host", "mp"), ("User-Agent", SDK_AGENT))
    )
    write_capture(
        tmp_path / "a.pcap",
        [
            *tcp_session("10.10.1.21", "10.10.0.12", 50002, 80, [("c", request)]),
            *tcp_session(
                "10.10.1.22",
                "10.10.0.13",
                50003,
                445,
                [("c", smb.smb1_negotiate_request()), ("s", smb.smb1_negotiate_response(0))],
                start=1_700_000_002.0,
            ),
        ],
    )
    second = write_capture(
        tmp_path / "b.pcap",
        tcp_session("10.10.1.23", "10.10.0.12", 50004, 80, [("c", request)], start=1_700_000_005),
    )
    second.write_bytes(second.read_bytes()[:-10])  # the last record cut short: a warning
    (tmp_path / "site.yaml").write_text(SMALL_SITE)
    return ["a.pcap", "b.pcap"]


def only_run(document: dict[str, Any]) -> dict[str, Any]:
    assert document["version"] == "2.1.0"
    assert len(document["runs"]) == 1
    run: dict[str, Any] = document["runs"][0]
    return run


def unescape_message(text: str) -> str:
    """The literal text of a message that ``message_text`` wrote (§3.11.5, §3.11.6)."""
    text = text.replace("{{", "{").replace("}}", "}")
    return re.sub(r"\\([\\\[\]])", r"\1", text)


# --- validity ---------------------------------------------------------------------------------


def write_baseline(sample_run: Callable[..., Any], path: Path) -> dict[str, Any]:
    """A JSON report of the sample without its first finding (which is then "new")."""
    old, _ = sample_run(fmt="json")
    old["dropped"] = old["findings"].pop(0)
    path.write_text(json.dumps(old))
    return old


@pytest.mark.parametrize("variant", ["plain", "baseline", "accept"])
def test_sample_sarif_is_valid(
    sarif_validator: Validator, sample_run: Callable[..., Any], tmp_path: Path, variant: str
) -> None:
    extra: list[str] = []
    if variant == "baseline":
        write_baseline(sample_run, tmp_path / "old.json")
        extra = ["--baseline", str(tmp_path / "old.json")]
    elif variant == "accept":
        (tmp_path / "accept.yaml").write_text(ACCEPT_SMB1)
        extra = ["--accept", str(tmp_path / "accept.yaml")]
    document, _ = sample_run(*extra)
    assert schema_errors(sarif_validator, document) == []
    results = only_run(document)["results"]
    assert results, "the sample has findings"
    if variant == "baseline":
        assert all("baselineState" in r for r in results)
    if variant == "accept":
        assert any(r["suppressions"] for r in results)


def test_small_captures_sarif_is_valid(
    sarif_validator: Validator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    small_captures: list[str],
) -> None:
    out = tmp_path / "out.sarif"
    raw = analyze(monkeypatch, out, *small_captures, "--site", "site.yaml", "--format", "sarif")
    document = json.loads(raw)
    assert schema_errors(sarif_validator, document) == []
    run = only_run(document)
    rules = {result["ruleId"] for result in run["results"]}
    assert {"plaintext-http", "sdk-user-agent", "smb1"} <= rules


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d["runs"][0]["results"][0].update(level="severe"), id="level"),
        pytest.param(lambda d: d["runs"][0]["results"][0].pop("message"), id="no-message"),
        pytest.param(lambda d: d.update(version="2.0.0"), id="version"),
        pytest.param(
            lambda d: d["runs"][0]["results"][0].update(baselineState="known"), id="baseline"
        ),
        pytest.param(
            lambda d: d["runs"][0]["artifacts"][0].update(length=-2), id="artifact-length"
        ),
        pytest.param(lambda d: d["runs"][0]["automationDetails"].update(guid="run-1"), id="guid"),
    ],
)
def test_validator_rejects_broken_sarif(
    sarif_validator: Validator,
    sample_run: Callable[..., Any],
    mutate: Callable[[dict[str, Any]], Any],
) -> None:
    """The validation is real: a document the writer got wrong fails it."""
    document, _ = sample_run()
    assert schema_errors(sarif_validator, document) == []
    mutate(document)
    assert schema_errors(sarif_validator, document) != []


# --- content ----------------------------------------------------------------------------------


def test_one_result_per_finding(sample_run: Callable[..., Any]) -> None:
    report, _ = sample_run(fmt="json")
    document, _ = sample_run()
    run = only_run(document)
    findings = report["findings"]
    results = run["results"]
    assert len(results) == len(findings)
    rules = run["tool"]["driver"]["rules"]
    flows = {flow["id"]: flow for flow in report["flows"]}
    for finding, result in zip(findings, results, strict=True):
        assert result["ruleId"] == finding["rule"]
        assert rules[result["ruleIndex"]]["id"] == finding["rule"]
        assert result["level"] == EXPECTED_LEVEL[finding["severity"]]
        assert unescape_message(result["message"]["text"]) == finding["detail"]
        assert result["partialFingerprints"] == {"flowauditMatch/v1": finding["fingerprint"]}
        assert "baselineState" not in result and "suppressions" not in result
        evidence = result["properties"]
        assert evidence["findingId"] == finding["id"]
        assert evidence["severity"] == finding["severity"]
        assert evidence["flowIds"] == finding["flow_ids"]
        assert evidence["match"] == finding["match"]
        assert evidence["matrixRule"] == finding["matrix_rule"]
        assert evidence["reference"] == finding["reference"]
        for flow_id, flow in zip(finding["flow_ids"], evidence["flows"], strict=True):
            expected = flows[flow_id]
            for name in expected:
                if name in (
                    "evidence",
                    "protocol",
                    "client_roles",
                    "server_roles",
                    "plaintext",
                    "facts",
                ):
                    continue  # what a flow says, not where it is: in the report, not here
                assert flow[name] == expected[name], name
            assert 1 <= flow["first_frame"] <= flow["last_frame"]
        # the capture is the location, as a whole file: no line/column region
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert "region" not in physical
        assert physical["artifactLocation"] == {"uri": SAMPLE, "index": 0}
    assert len({r["partialFingerprints"]["flowauditMatch/v1"] for r in results}) == len(results)


def test_every_finding_kind_is_a_rule(sample_run: Callable[..., Any]) -> None:
    document, _ = sample_run()
    driver = only_run(document)["tool"]["driver"]
    assert driver["name"] == "flowaudit"
    assert driver["version"] == __version__
    assert "informationUri" not in driver  # there is no project site to name
    kinds = load_signatures().findings
    rules = driver["rules"]
    assert [rule["id"] for rule in rules] == list(kinds)
    fired = {result["ruleId"] for result in only_run(document)["results"]}
    assert set(kinds) - fired, "rules that did not fire are listed too"
    for rule in rules:
        kind = kinds[rule["id"]]
        assert rule["helpUri"] == kind.url and urlsplit(kind.url).scheme == "https"
        assert rule["help"]["text"] == kind.help
        assert kind.help in rule["help"]["markdown"] and kind.url in rule["help"]["markdown"]
        assert rule["shortDescription"]["text"] == kind.title
        assert rule["fullDescription"]["text"] == kind.reference
        assert rule["name"] and " " not in rule["name"]
        assert rule["defaultConfiguration"]["level"] == EXPECTED_LEVEL[kind.severity]
        properties = rule["properties"]
        assert float(properties["security-severity"]) == EXPECTED_SECURITY_SEVERITY[kind.severity]
        assert isinstance(properties["security-severity"], str)
        assert properties["tags"] == ["security", "network", "configmgr"]


def test_artifact_is_the_capture_with_its_hash(sample_run: Callable[..., Any]) -> None:
    document, _ = sample_run()
    run = only_run(document)
    capture = REPO / SAMPLE
    (artifact,) = run["artifacts"]
    assert artifact["location"] == {"uri": SAMPLE}
    assert artifact["length"] == capture.stat().st_size
    assert artifact["hashes"] == {"sha-256": hashlib.sha256(capture.read_bytes()).hexdigest()}
    assert artifact["roles"] == ["analysisTarget"]


def test_invocation_and_automation_details(sample_run: Callable[..., Any]) -> None:
    report, _ = sample_run(fmt="json")
    document, _ = sample_run()
    run = only_run(document)
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is True
    assert shlex.split(invocation["commandLine"])[:6] == [
        "flowaudit",
        "analyze",
        SAMPLE,
        "--site",
        SAMPLE_SITE,
        "--format",
    ]
    end = invocation["endTimeUtc"]
    assert end.endswith("Z") and datetime.fromisoformat(end.replace("Z", "+00:00"))
    details = run["automationDetails"]
    assert re.fullmatch(r"[0-9a-f-]{36}", details["guid"])
    assert details["id"] == f"flowaudit/{details['guid']}"
    assert details["guid"] != report["run_id"], "each run has its own id"
    assert run["properties"]["site"]["path"] == SAMPLE_SITE


def test_fingerprints_are_stable_across_runs(sample_run: Callable[..., Any]) -> None:
    first, _ = sample_run()
    second, _ = sample_run()
    assert only_run(first)["automationDetails"] != only_run(second)["automationDetails"]

    def fingerprints(document: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
        return [(r["ruleId"], r["partialFingerprints"]) for r in only_run(document)["results"]]

    assert fingerprints(first) == fingerprints(second)


def test_baseline_state(sample_run: Callable[..., Any], tmp_path: Path) -> None:
    old = write_baseline(sample_run, tmp_path / "old.json")
    dropped = old["dropped"]
    document, _ = sample_run("--baseline", str(tmp_path / "old.json"))
    run = only_run(document)
    states = {
        r["partialFingerprints"]["flowauditMatch/v1"]: r["baselineState"] for r in run["results"]
    }
    assert states.pop(dropped["fingerprint"]) == "new"
    assert states and set(states.values()) == {"unchanged"}
    assert run["baselineGuid"] == old["run_id"]


def test_unchanged_when_the_baseline_is_the_same_capture(
    sample_run: Callable[..., Any], tmp_path: Path
) -> None:
    _, raw = sample_run(fmt="json")
    (tmp_path / "same.json").write_text(raw)
    document, _ = sample_run("--baseline", str(tmp_path / "same.json"))
    assert {r["baselineState"] for r in only_run(document)["results"]} == {"unchanged"}


def test_accepted_findings_are_suppressed(sample_run: Callable[..., Any], tmp_path: Path) -> None:
    accept = tmp_path / "accept.yaml"
    accept.write_text(ACCEPT_SMB1)
    document, _ = sample_run("--accept", str(accept))
    results = only_run(document)["results"]
    accepted = [r for r in results if r["suppressions"]]
    (smb1,) = accepted
    assert smb1["ruleId"] == "smb1"
    assert smb1["properties"]["match"]["server_role"] == "distribution-point"
    (suppression,) = smb1["suppressions"]
    assert suppression["kind"] == "external"
    assert suppression["status"] == "accepted"
    assert suppression["justification"] == "CHG-1"
    physical = suppression["location"]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == artifact_uri(str(accept))
    assert physical["region"] == {"startLine": 2}  # the entry's line in the accept file
    # §3.27.23: all results carry suppressions once an accept file was read
    assert all(r["suppressions"] == [] for r in results if r is not smb1)


def test_small_captures_content(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small_captures: list[str]
) -> None:
    base = ["--site", "site.yaml"]
    report = json.loads(
        analyze(monkeypatch, tmp_path / "r.json", *small_captures, *base, "--format", "json")
    )
    raw = analyze(monkeypatch, tmp_path / "r.sarif", *small_captures, *base, "--format", "sarif")
    run = only_run(json.loads(raw))
    assert [a["location"]["uri"] for a in run["artifacts"]] == small_captures
    for artifact, name in zip(run["artifacts"], small_captures, strict=True):
        digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert artifact["hashes"]["sha-256"] == digest
    by_rule = {r["ruleId"]: r for r in run["results"]}
    details = {f["rule"]: f["detail"] for f in report["findings"]}
    # hostile text: a literal of the message, neither a placeholder nor an embedded link
    agent = by_rule["sdk-user-agent"]["message"]["text"]
    assert "{{0}}" in agent and "\\[here\\](1)" in agent
    assert unescape_message(agent) == details["sdk-user-agent"]
    assert HOSTILE_PATH in details["sdk-user-agent"]
    # one finding, flows in both captures: located in the first, related to the second
    plaintext = by_rule["plaintext-http"]
    assert plaintext["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "a.pcap",
        "index": 0,
    }
    (related,) = plaintext["relatedLocations"]
    assert related["physicalLocation"]["artifactLocation"] == {"uri": "b.pcap", "index": 1}
    assert [flow["file"] for flow in plaintext["properties"]["flows"]] == small_captures
    # the cut-short capture's warning is a notification on that capture
    (warning,) = run["invocations"][0]["toolExecutionNotifications"]
    assert warning["level"] == "warning"
    assert warning["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "b.pcap"
    assert report["captures"][1]["warnings"] == [unescape_message(warning["message"]["text"])]


def test_control_characters_stay_json_escapes(tmp_path: Path, small_captures: list[str]) -> None:
    """Text from a capture with control characters (an ANSI escape, a bell, a NUL) is written
    as JSON escapes and reads back the same."""
    result = audit(flow_table(tmp_path / "a.pcap"), load_site(tmp_path / "site.yaml"))
    hostile = "GET /\x1b[31mred\x07\x00 {1} ]["
    result.findings[0].detail = hostile
    out = tmp_path / "out.sarif"
    with out.open("w", encoding="utf-8") as stream:
        write_sarif(result, stream)
    raw = out.read_text(encoding="utf-8")
    assert not [c for c in raw if ord(c) < 0x20 and c != "\n"]
    assert "\\u001b" in raw and "\\u0007" in raw and "\\u0000" in raw
    message = json.loads(raw)["runs"][0]["results"][0]["message"]["text"]
    assert unescape_message(message) == hostile


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("samples/configmgr_site.pcap", "samples/configmgr_site.pcap"),
        ("capture 1.pcap", "capture%201.pcap"),
        ("c:evil.pcap", "c%3Aevil.pcap"),  # a colon in a relative name is no scheme
        ("/data/caps/site#2.pcap", "file:///data/caps/site%232.pcap"),
    ],
)
def test_artifact_uri(path: str, uri: str) -> None:
    assert artifact_uri(path) == uri


def test_message_text_escapes_placeholders_and_links() -> None:
    assert message_text("a {0} b") == "a {{0}} b"
    assert message_text("[x](1) \\") == "\\[x\\](1) \\\\"
    assert unescape_message(message_text("{[\\]}")) == "{[\\]}"
