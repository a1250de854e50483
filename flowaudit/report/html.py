"""Write an ``AuditResult`` as one self-contained HTML page an auditor can attach to a ticket.

The page is a view of the result (its header names every input with its SHA-256, then a role x
role picture of the communications, the findings with their flows, and a sortable, filterable
table of every flow); it computes nothing of its own. It loads nothing: the style and the small
script are inlined from ``templates/`` and allowed by a Content-Security-Policy that names
their SHA-256 hashes, so that nothing else on the page can run.

Text from the capture is hostile (DESIGN.md, principle 7): every value goes through jinja2's
autoescape, and control and format characters (bidi overrides) are shown escaped first, as in
the terminal view.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePath
from typing import IO, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from flowaudit import __version__
from flowaudit.audit import EXPECTED, UNEXPECTED, UNKNOWN_VERDICT, AuditResult, Finding
from flowaudit.matrix import ROLES
from flowaudit.report import ReportOptions
from flowaudit.report.conversations import account_name, identities_by_host
from flowaudit.report.flowtable import capture_dicts, endpoint
from flowaudit.report.terminal import clean, filters_line
from flowaudit.signatures import load_signatures
from flowaudit.site import SOURCE_INFERRED

TEMPLATE = "report.html.j2"
STYLE = "report.css"
SCRIPT = "report.js"
PLAINTEXT = "plaintext"
NO_ROLE = "no role"
# The colour of a role x role cell: its worst communication, in this order (worst first).
CELL_CLASSES = (UNEXPECTED, PLAINTEXT, UNKNOWN_VERDICT, EXPECTED)
LEGEND = (
    (EXPECTED, "a row of the ports matrix allows it"),
    (PLAINTEXT, "allowed or not, the payload travelled in clear text"),
    (UNKNOWN_VERDICT, "an end holds no role, so no row can judge it"),
    (UNEXPECTED, "no row of the ports matrix allows it (role pair, direction or port)"),
)
# A finding lists at most this many of its flows; the flow table holds them all (its
# ``findings`` column names each flow's findings, and a link filters the table by finding).
FLOWS_PER_FINDING = 100
# A link that shows a communication's flows in the flow table names their ids in the URL;
# beyond this many the link would weigh more than the cell.
LINKED_FLOW_IDS = 200
# What the flow table's ``facts`` column shows of each protocol's facts (the findings show all).
FACT_SUMMARY_FIELDS = {
    "http": ("method", "path", "host", "user_agent", "status"),
    "tls": ("version", "sni", "cert_subject_cn", "cert_issuer_cn", "cert_self_signed", "ja4"),
    "smb": ("dialect", "signing_required", "shares"),
    "tds": ("client_encryption", "server_encryption", "instance"),
    "dcerpc": ("interfaces",),
    "kerberos": ("msg_type", "realm", "cname", "sname"),
    "ldap": ("operation", "base_dn", "simple_bind_with_password"),
    "dhcp": ("message_type", "vendor_class", "boot_file"),
    "tftp": ("opcode", "filename"),
    "rdp": ("cookie", "selected_protocol"),
    "wol": ("target_mac",),
}
FIELDS_OF_OTHER_PROTOCOLS = 4
# Facts of a whole conversation: shown as their own lists, not among the protocol facts.
CONVERSATION_LISTS = ("operations", "identities")  # shown as tables of their own
CONVERSATION_FACTS = (*CONVERSATION_LISTS, "conversation", "truncated")
# Operations listed under a flow in the flow table (the JSON report holds every one kept).
OPERATIONS_PER_FLOW = 50


@dataclass(frozen=True)
class CommunicationChip:
    """One communication inside a role x role cell."""

    service: str
    port: str  # "445/tcp", or the transport alone ("rpc-dynamic" names no port)
    css_class: str
    flows: int
    tooltip: str
    flow_ids_fragment: str | None  # "ids=1,2,3" for a link into the flow table, if short


@dataclass(frozen=True)
class RoleCell:
    css_class: str
    chips: list[CommunicationChip]


@dataclass(frozen=True)
class RoleMatrix:
    client_roles: list[str]
    server_roles: list[str]
    cells: dict[tuple[str, str], RoleCell]


@dataclass(frozen=True)
class FlowRow:
    """One flow as the page shows it: display text only, in the flow table's column order."""

    id: int
    css_class: str
    proto: str
    client: str
    server: str
    service: str
    plaintext: bool
    client_role: str
    server_role: str
    verdict: str
    matrix_rule: str
    first_seen: str
    last_seen: str
    packets: int
    bytes: int
    frames: str
    file: str
    findings: str
    facts: str
    operations: list[tuple[str, ...]] = field(default_factory=list)
    more_operations: int = 0
    # Pivots (flowaudit/pivots.py): the Community ID and a Wireshark display filter, as text
    # to copy.
    community_id: str = ""
    wireshark_filter: str = ""


@dataclass(frozen=True)
class FindingView:
    finding: Finding
    url: str | None
    help: str | None
    flows: list[FlowRow]
    flow_facts: dict[int, list[tuple[str, str]]]
    more_flows: int


def write_html(result: AuditResult, out: IO[str], options: ReportOptions | None = None) -> None:
    """Render the report page of ``result`` into ``out``."""
    environment = _environment()
    style = _static_block(environment, STYLE, "</style")
    script = _static_block(environment, SCRIPT, "</script")
    template = environment.get_template(TEMPLATE)
    context = report_context(result)
    context.update(
        style=Markup(style),
        script=Markup(script),
        content_security_policy=content_security_policy(style, script),
    )
    for chunk in template.generate(context):
        out.write(chunk)


def content_security_policy(style: str, script: str) -> str:
    """Nothing may load or run but the page's own style and script, named by their hashes."""
    return (
        "default-src 'none'; "
        f"style-src '{csp_hash(style)}'; "
        f"script-src '{csp_hash(script)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


def csp_hash(block: str) -> str:
    """The CSP source expression of an inline block: 'sha256-' and its base64 digest."""
    digest = hashlib.sha256(block.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("flowaudit.report", "templates"),
        autoescape=select_autoescape(["html", "html.j2"], default=True),
        undefined=StrictUndefined,
        finalize=_shown,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["quantity"] = quantity
    return environment


def _shown(value: Any) -> Any:
    """What every ``{{ }}`` shows, before autoescape: nothing for None, and text with its
    control and format characters (bidi overrides reorder a page too) escaped visibly."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value  # the page's own style and script, and macros' output (escaped already)
    if isinstance(value, str):
        return clean(value)
    return value


def _static_block(environment: Environment, name: str, closing_tag: str) -> str:
    """The text of one of the page's own inline blocks (as the template folder holds it)."""
    assert environment.loader is not None
    text: str = environment.loader.get_source(environment, name)[0]
    if closing_tag in text.lower():
        raise ValueError(f"templates/{name} must not contain {closing_tag}")
    return text


def quantity(count: int | None) -> str:
    """A byte count as people read it (1.4 MB), or "unknown" (a pipe has no size)."""
    if count is None:
        return "unknown"
    if count < 1000:
        return f"{count} B"
    size = count / 1000
    for unit in ("kB", "MB"):
        if size < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def report_context(result: AuditResult) -> dict[str, Any]:
    """Everything the template shows, as display values."""
    site = result.site
    summary = result.summary()
    findings_of = result.findings_by_flow
    many_files = len(result.captures) > 1
    rows = [_flow_row(flow, findings_of) for flow in result.flows]
    rows_by_id = {row.id: row for row in rows}
    facts_by_id = {flow["id"]: flow["facts"] for flow in result.flows}
    findings = [_finding_view(f, rows_by_id, facts_by_id) for f in result.findings]
    return {
        "title": page_title(result),
        "tool_version": __version__,
        "generated_at": result.generated_at,
        "run_id": result.run_id,
        "command": shlex.join(result.command) if result.command else "",
        "filters": filters_line(result.filters) if result.filters else None,
        "site": {
            "name": site.name,
            "security": site.security,
            "path": site.path,
            "sha256": site.sha256,
            "inferred": summary["roles_inferred"],
        },
        "captures": capture_dicts(result.captures),
        "inputs": sorted(result.inputs.items()),
        "accept_file": result.inputs.get("accept", {}).get("path"),
        "signatures_sha256": sorted(result.signatures_sha256.items()),
        "summary": summary,
        "hosts": result.hosts,
        "host_list": host_rows(result),
        "identities": identities_by_host(result),
        "matrix": role_matrix(result.communications),
        "legend": LEGEND,
        "open_findings": [view for view in findings if view.finding.active],
        "accepted_findings": [view for view in findings if not view.finding.active],
        "flows": rows,
        "many_files": many_files,
        "verdict_choices": (UNEXPECTED, EXPECTED, UNKNOWN_VERDICT, PLAINTEXT),
    }


def captures_label(paths: Sequence[str]) -> str:
    """The captures by file name, as a title names them: the first two and how many more."""
    names = [PurePath(path).name or path for path in paths]
    if len(names) > 3:
        return f"{names[0]}, {names[1]} and {len(names) - 2} more"
    return ", ".join(names) or "no capture"


def page_title(result: AuditResult) -> dict[str, str | None]:
    """What the page is about, for its <title> and heading: the site (by name, else by its
    file; None when roles were inferred) and the captures."""
    site = result.site
    site_label = None
    if site.source != SOURCE_INFERRED:
        site_label = site.name or (PurePath(site.path).name if site.path else "(unnamed)")
    return {
        "site": site_label,
        "captures": captures_label([info.path for info in result.captures]),
    }


def host_rows(result: AuditResult) -> list[dict[str, Any]]:
    """Every address seen (not only role holders), as the host section shows it
    (``flowaudit.hosts``): roles and evidence, traffic, services, certificates, identities,
    findings, and the flow filter that shows exactly its flows."""
    from urllib.parse import quote

    from flowaudit.hosts import (
        certificates_text,
        findings_text,
        host_records,
        identities_text,
        services_text,
    )

    return [
        {
            "ip": host["ip"],
            "roles": ", ".join(host["roles"]),
            "evidence": "; ".join(host["evidence"]),
            "flows": host["flows"],
            "packets": host["packets"],
            "bytes": quantity(host["bytes"]),
            "peers": host["peers"],
            "seen": f"{host['first_seen']} .. {host['last_seen']}",
            "served": services_text(host["served"], limit=8),
            "used": services_text(host["used"], limit=8),
            "certificates": certificates_text(host["certificates"]),
            "identities": identities_text(host["identities"]),
            "findings": findings_text(host["findings"]),
            "fragment": "filter=" + quote(f"host:{host['ip']}", safe=":"),
        }
        for host in host_records(result)
    ]


# --- the role x role picture ----------------------------------------------------------------


def communication_class(communication: Mapping[str, Any]) -> str:
    """The colour of one communication: its verdict, but plaintext over expected/unknown."""
    if communication["verdict"] == UNEXPECTED:
        return UNEXPECTED
    if communication["plaintext"]:
        return PLAINTEXT
    return str(communication["verdict"])


def worst_class(classes: Iterable[str]) -> str:
    return min(classes, key=CELL_CLASSES.index)


def role_label(role: str | None) -> str:
    return role if role is not None else NO_ROLE


def role_order(role: str) -> tuple[int, str]:
    """Roles in the order of the matrix's ``ROLES``; others by name; "no role" last."""
    if role == NO_ROLE:
        return (len(ROLES) + 1, role)
    return (ROLES.index(role) if role in ROLES else len(ROLES), role)


def role_matrix(communications: Sequence[Mapping[str, Any]]) -> RoleMatrix:
    """Client roles x server roles, each cell the communications between them."""
    chips: dict[tuple[str, str], list[CommunicationChip]] = {}
    for communication in communications:
        pair = (
            role_label(communication["client_role"]),
            role_label(communication["server_role"]),
        )
        chips.setdefault(pair, []).append(_chip(communication))
    cells = {
        pair: RoleCell(worst_class(chip.css_class for chip in found), found)
        for pair, found in chips.items()
    }
    return RoleMatrix(
        client_roles=sorted({client for client, _ in cells}, key=role_order),
        server_roles=sorted({server for _, server in cells}, key=role_order),
        cells=cells,
    )


def _chip(communication: Mapping[str, Any]) -> CommunicationChip:
    service, port, proto = (communication[name] for name in ("service", "port", "proto"))
    port_text = f"{port}/{proto}" if isinstance(port, int) else proto
    css_class = communication_class(communication)
    flows = communication["flows"]
    tooltip = (
        f"{css_class}: {flows} flow{'s' if flows != 1 else ''}, {communication['packets']} "
        f"packets, {quantity(communication['bytes'])}"
        + (f"; matrix rule {communication['matrix_rule']}" if communication["matrix_rule"] else "")
    )
    flow_ids = communication["flow_ids"]
    fragment = (
        "ids=" + ",".join(str(flow_id) for flow_id in flow_ids)
        if len(flow_ids) <= LINKED_FLOW_IDS
        else None
    )
    return CommunicationChip(service, port_text, css_class, flows, tooltip, fragment)


# --- flows and findings ---------------------------------------------------------------------


def _flow_row(flow: Mapping[str, Any], findings_of: Mapping[int, list[Finding]]) -> FlowRow:
    operations = flow["facts"].get("operations") or []
    conversation = flow["facts"].get("conversation") or {}
    return FlowRow(
        id=flow["id"],
        css_class=f"{flow['verdict']} {PLAINTEXT}" if flow["plaintext"] else flow["verdict"],
        proto=flow["proto"],
        client=endpoint(flow["client"], flow["client_port"]),
        server=endpoint(flow["server"], flow["server_port"]),
        service=flow["service"],
        plaintext=bool(flow["plaintext"]),
        client_role=role_label(flow["client_role"]),
        server_role=role_label(flow["server_role"]),
        verdict=flow["verdict"],
        matrix_rule=flow["matrix_rule"] or "",
        first_seen=flow["first_seen"],
        last_seen=flow["last_seen"],
        packets=flow["packets"],
        bytes=flow["bytes"],
        frames=f"{flow['first_frame']}–{flow['last_frame']}",
        file=flow["file"],
        findings=" ".join(finding.id for finding in findings_of.get(flow["id"], ())),
        facts=facts_summary(flow["facts"]),
        operations=[_operation_cells(entry) for entry in operations[:OPERATIONS_PER_FLOW]],
        more_operations=max(0, len(operations) - OPERATIONS_PER_FLOW)
        + int(conversation.get("operations_dropped") or 0),
        community_id=flow.get("community_id") or "",
        wireshark_filter=flow.get("wireshark_filter") or "",
    )


def _operation_cells(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """frame, direction, protocol, operation, target, status of one operation."""
    return tuple(
        "" if entry.get(name) is None else str(entry.get(name))
        for name in ("frame", "direction", "protocol", "operation", "target", "status")
    )


def _finding_view(
    finding: Finding,
    rows_by_id: Mapping[int, FlowRow],
    facts_by_id: Mapping[int, Mapping[str, Any]],
) -> FindingView:
    rule = load_signatures().findings.get(finding.rule)
    shown = finding.flow_ids[:FLOWS_PER_FINDING]
    return FindingView(
        finding=finding,
        url=rule.url if rule is not None else None,
        help=rule.help if rule is not None else None,
        flows=[rows_by_id[flow_id] for flow_id in shown],
        flow_facts={flow_id: flattened_facts(facts_by_id[flow_id]) for flow_id in shown},
        more_flows=len(finding.flow_ids) - len(shown),
    )


def _fact_text(value: Any) -> str | None:
    """One fact value as text; None for nothing worth showing."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_item_text(item) for item in value)
    return str(value)


def _item_text(item: Any) -> str:
    """An element of a list of facts: a named thing by its name (a DCE/RPC interface), other
    records as their fields."""
    if not isinstance(item, Mapping):
        return str(item)
    if item.get("name"):
        return str(item["name"])
    return " ".join(f"{name}={value}" for name, value in item.items() if value is not None)


def facts_summary(facts: Mapping[str, Any]) -> str:
    """The few facts of a flow that tell it apart in the flow table (HTTP request line, SNI,
    SMB dialect and shares, ...), as one line of text."""
    parts: list[str] = []
    for protocol, detail in facts.items():
        if protocol in CONVERSATION_FACTS:
            continue
        if protocol == "start_seen":
            if detail is False:
                parts.append("start not captured")
            continue
        if not isinstance(detail, Mapping):
            text = _fact_text(detail)
            if text is not None:
                parts.append(f"{protocol.replace('_', ' ')} {text}")
            continue
        names = FACT_SUMMARY_FIELDS.get(protocol)
        if names is None:
            names = tuple(
                name for name, value in detail.items() if not isinstance(value, (dict, list))
            )[:FIELDS_OF_OTHER_PROTOCOLS]
        shown = [
            f"{name.replace('_', ' ')} {text}"
            for name in names
            if (text := _fact_text(detail.get(name))) is not None
        ]
        parts.append(f"{protocol}: " + ", ".join(shown) if shown else protocol)
    identities = facts.get("identities") or []
    if identities:
        accounts = sorted({account_name(entry) for entry in identities})
        parts.append("identities: " + ", ".join(accounts))
    if facts.get("truncated"):
        parts.append("not all read: " + "; ".join(facts["truncated"]))
    return "; ".join(parts)


def flattened_facts(facts: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Every fact of a flow as (dotted name, text), for a finding's evidence."""
    out: list[tuple[str, str]] = []
    for name, value in facts.items():
        if not prefix and name in CONVERSATION_LISTS:
            continue  # listed under the flow in the flow table, and per host
        if isinstance(value, Mapping):
            out.extend(flattened_facts(value, f"{prefix}{name}."))
            continue
        text = _fact_text(value)
        if text is not None:
            out.append((f"{prefix}{name}", text))
    return out
