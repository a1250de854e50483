"""Write an ``AuditResult`` as SARIF 2.1.0, so that findings show in code-scanning dashboards.

One run per analysis (SARIF 2.1.0 §3.14): the tool's rules are every finding kind of
``signatures/findings.yaml``, whether or not it fired; each finding is one result (§3.27); the
captures are the run's artifacts, with their SHA-256. A capture is neither text nor a binary
whose byte offsets mean anything to a viewer, so a result points at its capture file without
a region; the frame numbers, 5-tuples and times of the finding's flows are in the result's
property bag. Baseline marks become ``baselineState``, accept-file entries ``suppressions``.

Strings from the capture (addresses, URL paths, user agents in a finding's detail) reach SARIF
only through ``json.dump``, which escapes quotes and control characters. A message string has
two more rules (§3.11.5, §3.11.6): braces are placeholders and brackets open embedded links,
so in the messages flowaudit writes, literal ones are escaped (``message_text``).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import IO, Any
from urllib.parse import quote

from flowaudit import __version__
from flowaudit.audit import FLOW_FIELDS, AuditResult, Finding
from flowaudit.capture.source import STDIN
from flowaudit.report import ReportOptions
from flowaudit.signatures import FindingRule, load_signatures

SARIF_VERSION = "2.1.0"
# The OASIS standard's schema (SARIF 2.1.0 Plus Errata 01), named by the log's "$schema".
SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL_NAME = "flowaudit"
# SARIF 2.1.0 §3.27.10 level: "error" a serious problem, "warning" a problem, "note" something
# worth knowing that is not a problem in itself.
LEVEL_OF_SEVERITY = {
    "critical": "error",
    "high": "error",
    "medium": "warning",
    "low": "note",
    "info": "note",
}
# GitHub code scanning ranks a rule's alerts by its property "security-severity", a number
# from 0.0 to 10.0 written as a string (over 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium,
# 0.1-3.9 low).
SECURITY_SEVERITY = {
    "critical": "9.5",
    "high": "8.0",
    "medium": "5.5",
    "low": "3.0",
    "info": "1.0",
}
RULE_TAGS = ("security", "network", "configmgr")
# SARIF 2.1.0 §3.27.24 baselineState: a finding the baseline report had is "unchanged".
BASELINE_STATE = {"new": "new", "known": "unchanged"}
# The key of result.partialFingerprints: "name/vN", versioned so that a change of what
# Finding.match() holds can start a new key instead of silently re-matching old alerts.
FINGERPRINT_KEY = "flowauditMatch/v1"
# The flow fields each result carries as evidence (DESIGN.md principle 5), under the names of
# the JSON report's flows; frame numbers count from 1 in the capture file named by ``file``,
# as Wireshark numbers them.
FLOW_EVIDENCE_FIELDS = tuple(
    name
    for name in FLOW_FIELDS
    if name not in ("evidence", "protocol", "client_roles", "server_roles", "plaintext", "facts")
)
# SARIF 2.1.0 §3.5.3 GUID-valued strings, as the schema spells them.
_GUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)


def write_sarif(result: AuditResult, out: IO[str], options: ReportOptions | None = None) -> None:
    json.dump(sarif_log(result), out, indent=1)
    out.write("\n")


def sarif_log(result: AuditResult) -> dict[str, Any]:
    """The sarifLog object (§3.13) as a Python object: one run."""
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [sarif_run(result)]}


def sarif_run(result: AuditResult) -> dict[str, Any]:
    """The run object (§3.14) of one ``flowaudit analyze``."""
    finding_rules = list(load_signatures().findings.values())
    rule_index = {rule.id: index for index, rule in enumerate(finding_rules)}
    artifact_index = {info.path: index for index, info in enumerate(result.captures)}
    flows_by_id = {flow["id"]: flow for flow in result.flows}
    # §3.27.23: the suppressions of a run's results are all present or all absent, so that a
    # viewer can tell "not accepted" (an empty list) from "no accept file was read".
    with_suppressions = "accept" in result.inputs or any(
        finding.accepted is not None for finding in result.findings
    )
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "version": __version__,
                "rules": [reporting_descriptor(rule) for rule in finding_rules],
            }
        },
        "invocations": [invocation(result, artifact_index)],
        "artifacts": [artifact(info.path, info.size, info.sha256) for info in result.captures],
        "results": [
            sarif_result(finding, rule_index, artifact_index, flows_by_id, with_suppressions)
            for finding in result.findings
        ],
        "automationDetails": automation_details(result.run_id),
        "properties": {
            "site": {
                "name": result.site.name,
                "security": result.site.security,
                "source": result.site.source,
                "path": result.site.path,
                "sha256": result.site.sha256,
            },
            "signaturesSha256": result.signatures_sha256,
            "inputs": result.inputs,
        },
    }
    # §3.14.5 baselineGuid: the automationDetails.guid of the baseline's run, which for a
    # flowaudit report is its run id.
    baseline_run = result.inputs.get("baseline", {}).get("run_id")
    if isinstance(baseline_run, str) and _GUID.match(baseline_run):
        run["baselineGuid"] = baseline_run
    return run


def message_text(text: str) -> str:
    """Literal text as a plain text message: braces doubled (§3.11.5, "{0}" is a placeholder)
    and brackets escaped with a backslash (§3.11.6), so that text from a capture can form
    neither a placeholder nor an embedded link."""
    escaped = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return escaped.replace("{", "{{").replace("}", "}}")


def rule_name(rule_id: str) -> str:
    """A rule id as §3.49.7 would have a rule's name: one PascalCase identifier."""
    return "".join(part[:1].upper() + part[1:] for part in rule_id.split("-"))


def reporting_descriptor(rule: FindingRule) -> dict[str, Any]:
    """A finding kind as a rule (§3.49 reportingDescriptor)."""
    markdown = f"{rule.help}\n\n**Reference:** {rule.reference}\n\n<{rule.url}>"
    return {
        "id": rule.id,
        "name": rule_name(rule.id),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.reference},
        "help": {"text": rule.help, "markdown": markdown},
        "helpUri": rule.url,
        # §3.50.3 reportingConfiguration.level: the level of the rule's default severity; a
        # finding of another severity (plaintext-http, by endpoint) sets its own level.
        "defaultConfiguration": {"level": LEVEL_OF_SEVERITY[rule.severity]},
        "properties": {
            "severity": rule.severity,
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "tags": list(RULE_TAGS),
        },
    }


def artifact_uri(path: str) -> str:
    """A file path as a URI reference (§3.10): a relative path stays relative (forward slashes,
    percent-encoded, so that a colon in a file name cannot read as a scheme), an absolute one
    becomes a ``file:`` URI."""
    if Path(path).is_absolute():
        return Path(path).as_uri()
    return quote(PurePath(path).as_posix(), safe="/")


def artifact_location(path: str, index: int | None = None) -> dict[str, Any]:
    """An artifactLocation (§3.4); standard input has no URI, only a description."""
    location: dict[str, Any] = (
        {"description": {"text": "standard input"}}
        if path == STDIN
        else {"uri": artifact_uri(path)}
    )
    if index is not None:
        location["index"] = index  # the artifact's place in run.artifacts
    return location


def artifact(path: str, size: int | None, sha256: str | None) -> dict[str, Any]:
    """A capture as an artifact (§3.24): its location, length in bytes and SHA-256."""
    entry: dict[str, Any] = {"location": artifact_location(path), "roles": ["analysisTarget"]}
    if size is not None:  # unknown for a pipe
        entry["length"] = size
    if sha256:  # hash names are those of the IANA registry: "sha-256"
        entry["hashes"] = {"sha-256": sha256}
    return entry


def capture_location(path: str, artifact_index: Mapping[str, int]) -> dict[str, Any]:
    """A location (§3.28) that is a whole capture file: a physicalLocation without a region."""
    return {
        "physicalLocation": {"artifactLocation": artifact_location(path, artifact_index.get(path))}
    }


def flow_evidence(flow: Mapping[str, Any]) -> dict[str, Any]:
    return {name: flow.get(name) for name in FLOW_EVIDENCE_FIELDS}


def sarif_result(
    finding: Finding,
    rule_index: Mapping[str, int],
    artifact_index: Mapping[str, int],
    flows_by_id: Mapping[int, Mapping[str, Any]],
    with_suppressions: bool = False,
) -> dict[str, Any]:
    """One finding as a result (§3.27)."""
    flows = [flows_by_id[flow_id] for flow_id in finding.flow_ids if flow_id in flows_by_id]
    entry: dict[str, Any] = {"ruleId": finding.rule}
    if finding.rule in rule_index:
        entry["ruleIndex"] = rule_index[finding.rule]  # into tool.driver.rules
    entry["level"] = LEVEL_OF_SEVERITY[finding.severity]
    entry["message"] = {"text": message_text(finding.detail)}
    # §3.27.12 locations: the capture of the finding's first flow; the other captures holding
    # its flows are relatedLocations (§3.27.22).
    files = list(dict.fromkeys(flow["file"] for flow in flows))
    if files:
        entry["locations"] = [capture_location(files[0], artifact_index)]
    if len(files) > 1:
        entry["relatedLocations"] = [
            {"id": number, **capture_location(path, artifact_index)}
            for number, path in enumerate(files[1:], 1)
        ]
    entry["partialFingerprints"] = {FINGERPRINT_KEY: finding.fingerprint}
    if finding.baseline in BASELINE_STATE:
        entry["baselineState"] = BASELINE_STATE[finding.baseline]
    if with_suppressions:
        entry["suppressions"] = [] if finding.accepted is None else [suppression(finding.accepted)]
    # §3.8 property bag: camelCase names; the flows and the match keep the JSON report's names.
    entry["properties"] = {
        "findingId": finding.id,
        "severity": finding.severity,
        "flowIds": list(finding.flow_ids),
        "communityIds": finding.community_ids,
        "flows": [flow_evidence(flow) for flow in flows],
        "match": finding.match(),
        "matrixRule": finding.matrix_rule,
        "reference": finding.reference,
    }
    return entry


def suppression(accepted: Mapping[str, Any]) -> dict[str, Any]:
    """An accept-file entry as a suppression (§3.35): kept outside the capture ("external"),
    reviewed ("accepted"). Its location is the entry in the accept file, a text file, so the
    region's startLine is the YAML line the entry starts on."""
    entry: dict[str, Any] = {
        "kind": "external",
        "status": "accepted",
        "justification": accepted.get("justification") or "",
    }
    source = accepted.get("file")
    if source:
        physical: dict[str, Any] = {"artifactLocation": artifact_location(str(source))}
        line = accepted.get("line")
        if isinstance(line, int) and line >= 1:
            physical["region"] = {"startLine": line}
        entry["location"] = {"physicalLocation": physical}
    entry["properties"] = {"expires": accepted.get("expires"), "entry": accepted.get("entry")}
    return entry


def sarif_time(text: str | None) -> str | None:
    """An ISO 8601 time as SARIF writes it (§3.9: UTC, ending in "Z"); None if unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def invocation(result: AuditResult, artifact_index: Mapping[str, int]) -> dict[str, Any]:
    """How the run was started (§3.20). The result's ``generated_at`` is taken when the audit
    has finished, so it is the end time; the start is not recorded."""
    entry: dict[str, Any] = {"executionSuccessful": True}
    if result.command:
        entry["commandLine"] = shlex.join(result.command)
        entry["arguments"] = list(result.command[1:])
    end = sarif_time(result.generated_at)
    if end is not None:
        entry["endTimeUtc"] = end
    notifications = capture_warnings(result, artifact_index)
    if notifications:
        entry["toolExecutionNotifications"] = notifications
    return entry


def capture_warnings(
    result: AuditResult, artifact_index: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Each capture's warnings (a truncated file, ...) as notifications (§3.58)."""
    return [
        {
            "level": "warning",
            "message": {"text": message_text(warning)},
            "locations": [capture_location(info.path, artifact_index)],
        }
        for info in result.captures
        for warning in info.warnings
    ]


def automation_details(run_id: str) -> dict[str, Any]:
    """The run's runAutomationDetails (§3.17). Its id is "category/instance": the category
    ``flowaudit`` stays the same from run to run (GitHub code scanning matches alerts within
    a category), the run id is the instance; the guid (§3.17.4) is the run id too."""
    details: dict[str, Any] = {"id": f"{TOOL_NAME}/{run_id}"}
    if _GUID.match(run_id):
        details["guid"] = run_id
    return details
