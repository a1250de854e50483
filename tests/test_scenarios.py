"""Scenario captures against their expectations: every flow's service, verdict, plaintext flag,
roles, matrix rule (by the ports page's section and row) and findings.

The captures and site files come from ``tests/scenarios/build.py`` (real protocol bytes, checked
by tshark in ``test_scenarios_bytes.py``); the expectations are ``tests/scenarios/<name>.yaml``,
written from the issue's semantics, not from flowaudit's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import AuditResult, audit
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.site import load_site
from tests.conftest import REPO
from tests.scenarios.build import SCENARIOS, build, expectations

FIELDS = ("service", "verdict", "plaintext", "client_role", "server_role")


def _audited(name: str, folder: Path) -> AuditResult:
    if name == "sample":
        capture, site = REPO / "samples" / "configmgr_site.pcap", REPO / "samples" / "site.yaml"
    else:
        built = build(name, folder)
        capture, site = built.capture, built.site
    return audit(build_flow_table([capture], FlowConfig()), load_site(site))


def _key(flow: dict[str, Any]) -> tuple[Any, ...]:
    return (flow["proto"], flow["client"], flow["client_port"], flow["server"], flow["server_port"])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_flow_comes_out_as_expected(name: str, tmp_path: Path) -> None:
    result = _audited(name, tmp_path)
    rules = {rule.id: rule for rule in result.rules}
    findings: dict[int, set[str]] = {}
    for finding in result.findings:
        for flow_id in finding.flow_ids:
            findings.setdefault(flow_id, set()).add(finding.rule)
    flows = {_key(flow): flow for flow in result.flows}
    wanted = expectations(name)["flows"]
    assert sorted(flows) == sorted(_key(flow) for flow in wanted)
    problems = []
    for expected in wanted:
        flow = flows[_key(expected)]
        where = (
            f"{name}: {flow['client']}:{flow['client_port']} -> {flow['server']}:"
            f"{flow['server_port']}"
        )
        for field in FIELDS:
            if flow[field] != expected[field]:
                problems.append(f"{where}: {field} {flow[field]!r}, expected {expected[field]!r}")
        opened_by = flow["facts"].get("opened_by", "client")
        if opened_by != expected.get("opened_by", "client"):
            problems.append(f"{where}: opened by the {opened_by}")
        rule = rules.get(flow["matrix_rule"]) if flow["matrix_rule"] else None
        got = (rule.section, rule.row) if rule else (None, None)
        if got != (expected["matrix_section"], expected["matrix_row"]):
            problems.append(
                f"{where}: matrix rule {flow['matrix_rule']} {got}, expected "
                f"{(expected['matrix_section'], expected['matrix_row'])}"
            )
        if findings.get(flow["id"], set()) != set(expected["findings"]):
            problems.append(
                f"{where}: findings {sorted(findings.get(flow['id'], set()))}, expected "
                f"{sorted(expected['findings'])}"
            )
    assert not problems, "\n".join(problems)
