"""The lab's recordings of real software, held against what a person expects of them.

Each ``lab/expect/<scenario>.yaml`` says, flow by flow and finding by finding, what flowaudit
should report on ``<scenario>.pcap`` with the lab's site file and without one, and why (the
format is in ``lab/README.md``). The expectations are checked on the recording committed in
``lab/captures/`` (on every machine) and on a fresh recording of the lab in ``FLOWAUDIT_LAB``
(``.ci/run`` records one on every CI run; under ``CI`` a missing recording fails).

An expectation that flowaudit does not meet yet carries ``pending: <why>``: it must still fail
(strict xfail), so that the day it holds somebody removes the marker.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowaudit.audit import AuditResult, audit
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.signatures import load_signatures
from flowaudit.site import load_site
from tests.conftest import REPO

LAB = REPO / "lab"
EXPECT = LAB / "expect"
SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")
MATCH_KEYS = ("client", "server", "proto", "client_port", "server_port", "service")
FLOW_KEYS = (
    "service",
    "verdict",
    "client_role",
    "server_role",
    "plaintext",
    "evidence",
    "matrix_rule",
)


def hosts() -> dict[str, str]:
    """Lab host names to addresses (``lab/hosts.tsv``)."""
    names = {}
    for line in (LAB / "hosts.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, address = line.split("\t")[:2]
        names[name] = address
    return names


def scenarios() -> list[str]:
    return sorted(path.stem for path in EXPECT.glob("*.yaml"))


def fresh_dir() -> Path | None:
    value = os.environ.get("FLOWAUDIT_LAB")
    return Path(value) if value else None


@cache
def expectations(scenario: str) -> dict[str, Any]:
    data = yaml.safe_load((EXPECT / f"{scenario}.yaml").read_text())
    assert isinstance(data, dict), f"{scenario}.yaml: expected a mapping"
    return data


@cache
def audited(capture: str, with_site: bool) -> AuditResult:
    # as ``analyze`` reads: whole conversations
    table = build_flow_table([capture], FlowConfig(conversations=True))
    site = load_site(LAB / "site.yaml") if with_site else None
    return audit(table, site)


# --- matching -------------------------------------------------------------------------------


def _address(value: str) -> str:
    names = hosts()
    if value in names:
        return names[value]
    return str(ipaddress.ip_address(value))


def holds(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` is what ``expected`` asks for (README: values and operators)."""
    if isinstance(expected, Mapping):
        if "not" in expected:
            return not holds(expected["not"], actual)
        if "one_of" in expected:
            return any(holds(option, actual) for option in expected["one_of"])
        if "contains" in expected:
            wanted = expected["contains"]
            if isinstance(actual, str):
                return isinstance(wanted, str) and wanted.lower() in actual.lower()
            return isinstance(actual, list) and any(holds(wanted, item) for item in actual)
        if "present" in expected:
            return (actual is not None) == bool(expected["present"])
        # A mapping without an operator asks for those keys of a mapping (others may be there).
        return isinstance(actual, Mapping) and all(
            holds(value, actual.get(key)) for key, value in expected.items()
        )
    if isinstance(expected, str) and isinstance(actual, str):
        return expected.lower() == actual.lower()
    return bool(expected == actual)


def fact(facts: Mapping[str, Any], dotted: str) -> Any:
    value: Any = facts
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def matching_flows(result: AuditResult, match: Mapping[str, Any]) -> list[dict[str, Any]]:
    unknown = set(match) - set(MATCH_KEYS)
    assert not unknown, f"unknown match keys {sorted(unknown)}"
    wanted = dict(match)
    for end in ("client", "server"):
        if end in wanted and isinstance(wanted[end], str):
            wanted[end] = _address(wanted[end])
    return [
        flow
        for flow in result.flows
        if all(holds(value, flow[key]) for key, value in wanted.items())
    ]


def flow_problems(flow: Mapping[str, Any], expect: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, wanted in expect.items():
        if key == "facts":
            for dotted, value in wanted.items():
                got = fact(flow["facts"], dotted)
                if not holds(value, got):
                    problems.append(f"facts.{dotted}: expected {value!r}, got {got!r}")
            continue
        assert key in FLOW_KEYS, f"unknown flow key {key!r}"
        if not holds(wanted, flow[key]):
            problems.append(f"{key}: expected {wanted!r}, got {flow[key]!r}")
    return problems


def describe(flow: Mapping[str, Any]) -> str:
    return (
        f"flow {flow['id']} {flow['client']}:{flow['client_port']} -> "
        f"{flow['server']}:{flow['server_port']} {flow['proto']} {flow['service']} "
        f"({flow['client_role']} -> {flow['server_role']}, {flow['verdict']})"
    )


def finding_flows(result: AuditResult, entry: Mapping[str, Any]) -> set[int]:
    """The flows an entry's ``match`` selects (every flow without one)."""
    return {flow["id"] for flow in matching_flows(result, entry.get("match") or {})}


def findings_like(result: AuditResult, entry: Mapping[str, Any]) -> list[Any]:
    flows = finding_flows(result, entry)
    found = []
    for finding in result.findings:
        if finding.rule != entry["rule"]:
            continue
        if "severity" in entry and not holds(entry["severity"], finding.severity):
            continue
        if flows & set(finding.flow_ids):
            found.append(finding)
    return found


# --- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    scenario: str
    with_site: bool
    kind: str  # flow | present | absent | no-other-high
    index: int
    entry: Mapping[str, Any]

    @property
    def pending(self) -> str | None:
        return self.entry.get("pending")


def checks(scenario: str) -> Iterator[Check]:
    data = expectations(scenario)
    for index, entry in enumerate(data.get("flows") or []):
        for with_site, part in ((True, "with_site"), (False, "without_site")):
            if part in entry:
                yield Check(scenario, with_site, "flow", index, entry)
    for with_site, part in ((True, "with_site"), (False, "without_site")):
        findings = (data.get("findings") or {}).get(part)
        if not findings:
            continue
        for kind in ("present", "absent"):
            for index, entry in enumerate(findings.get(kind) or []):
                yield Check(scenario, with_site, kind, index, entry)
        if findings.get("no_other_high"):
            yield Check(scenario, with_site, "no-other-high", 0, findings)


def case_id(check: Check, source: str) -> str:
    site = "site" if check.with_site else "nosite"
    return f"{check.scenario}-{source}-{site}-{check.kind}{check.index}"


def cases() -> list[Any]:
    out = []
    for scenario in scenarios():
        for source in ("committed", "fresh"):
            for check in checks(scenario):
                marks = []
                if check.pending:
                    marks.append(pytest.mark.xfail(reason=check.pending, strict=True))
                out.append(pytest.param(check, source, id=case_id(check, source), marks=marks))
    return out


def capture_of(scenario: str, source: str) -> str:
    name = expectations(scenario).get("capture", f"{scenario}.pcap")
    if source == "committed":
        path = LAB / "captures" / name
        assert path.is_file(), f"{path} is missing: record the lab and commit a copy"
        return str(path)
    folder = fresh_dir()
    if folder is None:
        if os.environ.get("CI"):
            pytest.fail("FLOWAUDIT_LAB is not set: .ci/run records the lab and sets it")
        pytest.skip("FLOWAUDIT_LAB not set: no fresh recording of the lab (lab/README.md)")
    path = folder / name
    assert path.is_file(), f"{path} is missing: the lab did not record {scenario}"
    return str(path)


def test_every_scenario_has_expectations_and_a_recording() -> None:
    assert scenarios(), "lab/expect holds no scenario"
    for scenario in scenarios():
        assert (LAB / "scenarios" / f"{scenario}.sh").is_file(), scenario
        assert (LAB / "captures" / expectations(scenario)["capture"]).is_file(), scenario
        for entry in expectations(scenario).get("flows") or []:
            assert entry.get("why"), f"{scenario}: a flow expectation without why: {entry}"


@pytest.mark.parametrize(("check", "source"), cases())
def test_lab_expectation(check: Check, source: str) -> None:
    result = audited(capture_of(check.scenario, source), check.with_site)
    part = "with_site" if check.with_site else "without_site"
    entry = check.entry
    if check.kind == "flow":
        flows = matching_flows(result, entry["match"])
        least = entry.get("min_count", 1)
        assert len(flows) >= least, (
            f"{entry['why']}\n{len(flows)} flows match {entry['match']}, expected >= {least}"
        )
        problems = [
            f"{describe(flow)}: {problem}"
            for flow in flows
            for problem in flow_problems(flow, entry[part])
        ]
        assert not problems, entry["why"] + "\n" + "\n".join(problems)
    elif check.kind == "present":
        found = findings_like(result, entry)
        raised = sorted({(f.rule, f.severity) for f in result.findings})
        assert found, f"{entry.get('why')}\nno {entry['rule']} finding; raised: {raised}"
    elif check.kind == "absent":
        found = findings_like(result, entry)
        assert not found, f"{entry.get('why')}\n" + "\n".join(f.detail for f in found)
    else:
        allowed = [
            finding
            for present in entry.get("present") or []
            for finding in findings_like(result, present)
        ]
        extra = [
            finding
            for finding in result.findings
            if SEVERITY_ORDER.index(finding.severity) >= SEVERITY_ORDER.index("high")
            and finding not in allowed
        ]
        assert not extra, f"HIGH findings beyond the planted ones ({part}):\n" + "\n".join(
            f"{f.rule} {f.severity}: {f.detail}" for f in extra
        )


# Finding rules no real software in the lab produces, and why (lab/README.md, "What the lab
# cannot run"); each is produced by the scenario captures of tests/scenarios.
NOT_IN_THE_LAB = {
    "sql-encryption-off": "no real SQL Server in Debian or PyPI",
    "rpc-unannounced-port": "needs a capture that missed the endpoint-mapper exchange",
    "unexpected-flow": "no real software here makes a communication no rule explains",
}


def _rules_of_findings() -> set[str]:
    return set(load_signatures().findings)


def _planted() -> set[str]:
    """The finding rules the lab's expectations require of its recordings."""
    return {
        entry["rule"]
        for scenario in scenarios()
        for part in ("with_site", "without_site")
        for entry in ((expectations(scenario).get("findings") or {}).get(part) or {}).get("present")
        or []
    }


def test_every_finding_rule_is_planted_in_the_lab_or_said_why() -> None:
    planted = _planted()
    rules = _rules_of_findings()
    assert set(NOT_IN_THE_LAB) <= rules
    assert rules - set(NOT_IN_THE_LAB) <= planted, "a rule no lab flow produces"
    assert not planted & set(NOT_IN_THE_LAB), "planted now: drop it from NOT_IN_THE_LAB"


def test_every_finding_rule_is_produced_by_a_test_capture() -> None:
    """By a scenario capture built from the specs or by a committed lab recording (audited on
    every machine)."""
    produced = _planted()
    for path in (REPO / "tests" / "scenarios").glob("*.yaml"):
        for flow in yaml.safe_load(path.read_text())["flows"]:
            produced.update(flow["findings"])
    assert _rules_of_findings() - produced == set()
