"""The audit: classified flows x the expected matrix -> a verdict per flow and findings.

Every TCP/UDP flow gets a verdict:

* ``expected``: a rule of the matrix in force allows it (roles, transport, service, port); the
  rule is its ``matrix_rule``. Traffic to a multicast or broadcast address is judged by the
  sender's role (a rule's ``group_sender``): a distribution point streaming to a group on
  63000-64000 is expected, a client doing so is not.
* ``unexpected``: both ends have roles and no rule allows it. One finding says why:
  ``wrong-direction`` (the pair is allowed, but the other side started it, including a site
  system the site file says must not start connections to the site server, ports page note 5),
  ``non-standard-port`` (the pair may use that service, on other ports) or ``unexpected-flow``.
* ``unknown``: an end has no role (neither in the site nor inferred), so no rule can judge it.

Independent of the verdict, payload facts raise findings of their own (plaintext HTTP, SMB1,
SMB signing not required, SQL without encryption, legacy TLS, RPC on an unannounced port, a
known service on a non-standard port, the Messaging SDK's user agent, LDAP simple binds).
Flows with the same finding rule, roles, service and port share one finding.
"""

from __future__ import annotations

import gc
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from flowaudit.matrix import (
    PEER_ROLES,
    SITE_SYSTEM_ROLES,
    Rule,
    client_facing_roles,
    judged_pair,
    load_rules,
    rules_in_force,
)
from flowaudit.pivots import pivot_columns
from flowaudit.report.flowtable import endpoint
from flowaudit.signatures import (
    BY_PAYLOAD,
    BY_TFTP_REQUEST,
    SEVERITIES,
    Classified,
    Signatures,
    alternate_ports,
    classify,
    load_signatures,
    port_in,
    ports_text,
    tables_sha256,
)
from flowaudit.site import INTERNET, SOURCE_INFERRED, Site, infer_site, is_group

if TYPE_CHECKING:
    from flowaudit.capture.reader import CaptureInfo
    from flowaudit.flows import FlowTable

EXPECTED = "expected"
UNEXPECTED = "unexpected"
UNKNOWN_VERDICT = "unknown"
VERDICTS = (EXPECTED, UNEXPECTED, UNKNOWN_VERDICT)
LEGACY_TLS = {"SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1"}
# What a finding or communication names instead of the port when the port changes from run to
# run (a dynamic RPC port), or says nothing (a flow of no known service).
DYNAMIC_PORT = "dynamic"


def port_key(
    service: str | None, server_port: int | None, evidence: str | None = None
) -> int | str | None:
    """The port a finding or communication is matched by across runs: the server port, but
    ``"dynamic"`` for dynamic RPC (the endpoint mapper hands out another each time), WDS
    multicast (each session takes a port of the DP's range) and a TFTP answer (from a port the
    server picks for it, ports page note 4), and None for flows of no known service (grouped
    by role pair alone)."""
    if service == "unknown":
        return None
    if service in ("rpc-dynamic", "multicast") or evidence == BY_TFTP_REQUEST:
        return DYNAMIC_PORT
    return server_port


# What identifies a finding across runs (``Finding.match``): what it says, and the address of
# an end only where that end holds no role (nothing else tells such findings apart).
MATCH_KEYS = (
    "rule",
    "client_role",
    "server_role",
    "service",
    "port",
    "qualifier",
    "client",
    "server",
)


@dataclass
class Finding:
    id: str
    rule: str
    severity: str
    title: str
    detail: str
    flow_ids: list[int]
    reference: str
    client_role: str | None = None
    server_role: str | None = None
    service: str | None = None
    server_port: int | None = None
    matrix_rule: str | None = None
    # What else tells findings of one rule, roles, service and port apart (the endpoint of a
    # plaintext-http finding, the TLS version of legacy-tls, ...).
    qualifier: str | None = None
    # The port it is matched by (``port_key``), and the address of an end that holds no role.
    match_port: int | str | None = None
    client: str | None = None
    server: str | None = None
    # Set by a baseline (``new`` or ``known``) and by an accept file (the entry that accepts it).
    baseline: str | None = None
    accepted: dict[str, Any] | None = None
    # Flow id -> Community ID of the flows the audit gave it (``community_ids`` reads it
    # through ``flow_ids``, so a finding whose flows a filter narrows names only those).
    community_of: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def community_ids(self) -> list[str]:
        """The Community IDs of its flows, each once, in flow order (flows of one address and
        port pair share one): the pivot into Zeek, Suricata or a SIEM."""
        return list(
            dict.fromkeys(self.community_of[i] for i in self.flow_ids if i in self.community_of)
        )

    def match(self) -> dict[str, Any]:
        """What identifies this finding across runs: never flow ids, and addresses only of an
        end that holds no role."""
        return dict(
            zip(
                MATCH_KEYS,
                (
                    self.rule,
                    self.client_role,
                    self.server_role,
                    self.service,
                    self.match_port,
                    self.qualifier,
                    self.client,
                    self.server,
                ),
                strict=True,
            )
        )

    @property
    def fingerprint(self) -> str:
        """A short stable hash of ``match()`` (SARIF's partialFingerprints, baselines)."""
        text = json.dumps(self.match(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def active(self) -> bool:
        """Not accepted: counts for ``--fail-on`` and the summary's open findings."""
        return self.accepted is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "flow_ids": self.flow_ids,
            "community_ids": self.community_ids,
            "reference": self.reference,
            "client_role": self.client_role,
            "server_role": self.server_role,
            "service": self.service,
            "server_port": self.server_port,
            "matrix_rule": self.matrix_rule,
            "match": self.match(),
            "fingerprint": self.fingerprint,
            "baseline": self.baseline,
            "accepted": self.accepted,
        }


COMMUNICATION_KEY = ("client_role", "server_role", "proto", "service", "port", "verdict")


@dataclass
class AuditResult:
    """Everything a report shows; every output format is a view of this."""

    captures: list[CaptureInfo]
    site: Site
    rules: list[Rule]
    addresses: set[str]  # every address seen in a TCP/UDP flow
    flow_columns: dict[str, list[Any]]  # FLOW_FIELDS -> one value per TCP/UDP flow
    findings: list[Finding]
    signatures_sha256: dict[str, str]
    other_flows: int = 0  # flows of other IP protocols (ICMP, ESP, ...), not judged
    # UTC, ending in "Z" as every other time of the report
    generated_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    command: list[str] = field(default_factory=list)
    # One id per run, carried by every JSONL record so that a SIEM can tell runs apart.
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Files besides the captures and the site file (which ``site`` names) that decided the
    # result: {"accept"|"baseline": {path, sha256, size}} (a report names every input it rests
    # on).
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The filters a report shows (``flowaudit.filters.select_result``): the options given, the
    # times they came to, and the flows and findings kept of all; None: the whole capture.
    filters: dict[str, Any] | None = None

    @cached_property
    def hosts(self) -> list[dict[str, Any]]:
        """The report's ``hosts``: every address seen that holds a role, with its evidence."""
        return self.site.hosts(self.addresses)

    @cached_property
    def flows(self) -> list[dict[str, Any]]:
        """The flows as the report's records (made on first use: the audit keeps columns)."""
        from flowaudit.report.flowtable import iso_times

        columns = dict(self.flow_columns)
        for name, values in columns.items():
            if isinstance(values, np.ndarray):
                columns[name] = (
                    iso_times(values, "us") if values.dtype.kind == "M" else values.tolist()
                )
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        return [dict(zip(names, row, strict=True)) for row in rows]

    @cached_property
    def findings_by_flow(self) -> dict[int, list[Finding]]:
        """Each flow id's findings, in the findings' order (what a flow row names)."""
        by_flow: dict[int, list[Finding]] = {}
        for finding in self.findings:
            for flow_id in finding.flow_ids:
                by_flow.setdefault(flow_id, []).append(finding)
        return by_flow

    @cached_property
    def communications(self) -> list[dict[str, Any]]:
        """The flows folded by role pair, transport, service, port and verdict: what the role x
        role picture shows and what ``flowaudit diff`` compares (never addresses)."""
        columns = self.flow_columns
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        rows = zip(
            columns["client_role"],
            columns["server_role"],
            columns["proto"],
            columns["service"],
            columns["server_port"],
            columns["verdict"],
            columns["plaintext"],
            columns["matrix_rule"],
            columns["evidence"],
            columns["id"],
            columns["packets"],
            columns["bytes"],
            strict=True,
        )
        for client_role, server_role, proto, service, port, verdict, plain, rule, by, *rest in rows:
            key = (client_role, server_role, proto, service, port_key(service, port, by), verdict)
            group = groups.get(key)
            if group is None:
                group = groups[key] = dict(zip(COMMUNICATION_KEY, key, strict=True))
                group.update(
                    plaintext=False, matrix_rule=rule, flows=0, packets=0, bytes=0, flow_ids=[]
                )
            flow_id, packets, size = rest
            group["plaintext"] = group["plaintext"] or bool(plain)
            group["flows"] += 1
            group["packets"] += int(packets)
            group["bytes"] += int(size)
            group["flow_ids"].append(int(flow_id))
        return sorted(groups.values(), key=communication_order)

    def summary(self) -> dict[str, Any]:
        active = [f for f in self.findings if f.active]
        by_severity = Counter(f.severity for f in active)
        verdicts = Counter(self.flow_columns["verdict"])
        return {
            "flows": len(self.flow_columns["id"]),
            "other_flows": self.other_flows,
            "verdicts": {v: verdicts.get(v, 0) for v in VERDICTS},
            "services": dict(Counter(self.flow_columns["service"]).most_common()),
            "rules": dict(Counter(f.rule for f in active).most_common()),
            "severities": {s: by_severity.get(s, 0) for s in reversed(SEVERITIES)},
            "findings": len(active),
            "accepted": len(self.findings) - len(active),
            "new": sum(1 for f in active if f.baseline == "new"),
            "known": sum(1 for f in active if f.baseline == "known"),
            "roles_inferred": self.site.source == SOURCE_INFERRED,
        }

    def worst_severity(self, *, new_only: bool = False) -> str | None:
        """The highest severity of the findings that count: not accepted (and, with
        ``new_only``, not ``known`` from a baseline)."""
        ranks = [
            SEVERITIES.index(f.severity)
            for f in self.findings
            if f.active and not (new_only and f.baseline == "known")
        ]
        return SEVERITIES[max(ranks)] if ranks else None


def communication_order(group: Mapping[str, Any]) -> tuple[Any, ...]:
    """Unexpected first, then by roles, transport, service and port (as text)."""
    return (
        VERDICTS.index(group["verdict"]) if group["verdict"] != UNEXPECTED else -1,
        *(str(group[name]) for name in COMMUNICATION_KEY[:5]),
    )


# (proto, service, server port, note 5 withdraws site system -> site server, client roles,
# server roles, server is a group, TFTP answer, (client, server) declared internet-facing)
JudgeKey = tuple[
    str, str, int, bool, tuple[str, ...], tuple[str, ...], bool, bool, tuple[bool, bool]
]


@dataclass(frozen=True)
class _Judgement:
    verdict: str
    rule: Rule | None
    client_role: str | None
    server_role: str | None
    finding: str | None  # unexpected-flow | wrong-direction | non-standard-port


def _acting(rule_role: str, held: tuple[str, ...]) -> str | None:
    """The role a host acted in under a rule: the rule's, or for "any" the host's own first."""
    if rule_role != "any":
        return rule_role
    return held[0] if held else None


def site_system_to_site_server(rule: Rule) -> bool:
    """A rule the site file's ``site-server-initiates`` withdraws (ports page, note 5).

    Note 5's option ("Require the site server to initiate connections to this site system")
    is a property of every site system, so it withdraws every rule by which a site system
    starts a connection to the site server, whether or not the page's row cites note 5.
    """
    return rule.server_role == "site-server" and rule.client_role in SITE_SYSTEM_ROLES


class Judge:
    """Holds flows against the rules in force; judgements are cached by what decides them."""

    def __init__(self, rules: Sequence[Rule], site: Site) -> None:
        self.site = site
        self.by_service: dict[tuple[str, str], list[Rule]] = {}
        # Page order, except that a row presupposing a configuration (multicast) yields to a
        # general row allowing the same flow (a client's SMB to a DP is "Client to Server
        # Shares", not multicast).
        for rule in sorted(rules, key=lambda rule: rule.when is not None):
            self.by_service.setdefault((rule.proto, rule.service), []).append(rule)
        self._cache: dict[tuple[Any, ...], _Judgement] = {}
        self.note5 = bool(site.site_server_initiates)
        # Without a site file a SQL Server is known by its protocol alone: nothing says it is
        # the site database, so it is a peer like a domain controller.
        self.peer_roles = PEER_ROLES | (
            {"sql-server"} if site.source == SOURCE_INFERRED else frozenset()
        )

    @staticmethod
    def _holds(role: str, roles: tuple[str, ...]) -> bool:
        return role == "any" or role in roles

    @staticmethod
    def _in_force(rule: Rule, note5: bool, facing: tuple[bool, bool] = (False, False)) -> bool:
        # Note 5: "Require the site server to initiate connections to this site system".
        if note5 and site_system_to_site_server(rule):
            return False
        # The internet-based clients' installation rows hold only for a site system the site
        # file declares internet-facing.
        if rule.internet_facing_end == "client":
            return facing[0]
        if rule.internet_facing_end == "server":
            return facing[1]
        return True

    def judge(
        self,
        proto: str,
        service: str,
        port: int,
        client: str,
        server: str,
        tftp_answer: bool,
    ) -> _Judgement:
        """The verdict on one flow, from its ends' roles in the site."""
        group = is_group(server)
        note5 = self.note5 and self.site.site_server_must_initiate(client)
        client_roles = self.site.roles_of(client)
        server_roles = () if group else self.site.roles_of(server)
        facing = (self.site.is_internet_facing(client), self.site.is_internet_facing(server))
        return self.judge_key(
            (proto, service, port, note5, client_roles, server_roles, group, tftp_answer, facing)
        )

    def judge_key(self, key: JudgeKey) -> _Judgement:
        """The judgement of one (proto, service, port, note5, client roles, server roles,
        group, tftp answer): what decides a verdict, so that equal keys are judged once."""
        cached = self._cache.get(key)
        if cached is None:
            cached = self._judge(*key)
            self._cache[key] = cached
        return cached

    def _judge(
        self,
        proto: str,
        service: str,
        port: int,
        note5: bool,
        croles: tuple[str, ...],
        sroles: tuple[str, ...],
        group: bool,
        tftp_answer: bool,
        facing: tuple[bool, bool] = (False, False),
    ) -> _Judgement:
        candidates = self.by_service.get((proto, service), [])
        for rule in candidates:
            if not self._in_force(rule, note5, facing):
                continue
            if tftp_answer:
                # Note 4: the TFTP daemon answers from a dynamic port; the answer flow runs from
                # the server role back to the client role.
                if not rule.answer_from_dynamic:
                    continue
                if self._holds(rule.server_role, croles) and self._holds(rule.client_role, sroles):
                    return _Judgement(
                        EXPECTED,
                        rule,
                        _acting(rule.server_role, croles),
                        _acting(rule.client_role, sroles),
                        None,
                    )
                # the client's first ACK was the answer flow's first datagram
                if self._holds(rule.client_role, croles) and self._holds(rule.server_role, sroles):
                    return _Judgement(
                        EXPECTED,
                        rule,
                        _acting(rule.client_role, croles),
                        _acting(rule.server_role, sroles),
                        None,
                    )
                continue
            if not rule.allows_port(port):
                continue
            if group:
                acting = next((r for r in rule.group_senders if self._holds(r, croles)), None)
                if acting is not None:
                    return _Judgement(EXPECTED, rule, _acting(acting, croles), None, None)
                continue
            if self._holds(rule.client_role, croles) and self._holds(rule.server_role, sroles):
                return _Judgement(
                    EXPECTED,
                    rule,
                    _acting(rule.client_role, croles),
                    _acting(rule.server_role, sroles),
                    None,
                )
        first_client = croles[0] if croles else None
        first_server = sroles[0] if sroles else None
        if not croles or (not sroles and not group):
            return _Judgement(UNKNOWN_VERDICT, None, first_client, first_server, None)
        if not judged_pair(croles, sroles, self.peer_roles):
            # Nothing of the site's at stake: two peers (domain controllers, internet hosts),
            # or a client and the internet. No rule allows it, none forbids it.
            return _Judgement(UNKNOWN_VERDICT, None, first_client, first_server, None)
        if not group:
            for rule in candidates:
                if (
                    rule.allows_port(port)
                    and self._holds(rule.client_role, sroles)
                    and self._holds(rule.server_role, croles)
                ):
                    return _Judgement(
                        UNEXPECTED,
                        rule,
                        _acting(rule.server_role, croles),
                        _acting(rule.client_role, sroles),
                        "wrong-direction",
                    )
            # A site system to site server rule of a note-5 pair that the site file withdrew.
            for rule in candidates:
                if (
                    not self._in_force(rule, note5, facing)
                    and rule.allows_port(port)
                    and self._holds(rule.client_role, croles)
                    and self._holds(rule.server_role, sroles)
                ):
                    return _Judgement(
                        UNEXPECTED,
                        rule,
                        _acting(rule.client_role, croles),
                        _acting(rule.server_role, sroles),
                        "wrong-direction",
                    )
            for rule in candidates:
                pair = (
                    self._holds(rule.client_role, croles) and self._holds(rule.server_role, sroles)
                ) or (
                    self._holds(rule.client_role, sroles) and self._holds(rule.server_role, croles)
                )
                if pair and not rule.allows_port(port):
                    return _Judgement(
                        UNEXPECTED, None, first_client, first_server, "non-standard-port"
                    )
        else:
            # To a group: a rule lets the sender's role send this service, on another port.
            for rule in candidates:
                if not rule.allows_port(port) and any(
                    self._holds(r, croles) for r in rule.group_senders
                ):
                    return _Judgement(
                        UNEXPECTED, None, first_client, first_server, "non-standard-port"
                    )
        return _Judgement(UNEXPECTED, None, first_client, first_server, "unexpected-flow")


class _Row(Mapping[str, Any]):
    """One flow of the audit's columns, read field by field (no dict is built per flow)."""

    __slots__ = ("columns", "index")

    def __init__(self, columns: dict[str, list[Any]], index: int) -> None:
        self.columns = columns
        self.index = index

    def __getitem__(self, name: str) -> Any:
        return self.columns[name][self.index]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


class _Where:
    """A flow as findings name it ("client (role) -> server:port (role) tcp service"), made
    only when a finding needs it."""

    __slots__ = ("flow",)

    def __init__(self, flow: Mapping[str, Any]) -> None:
        self.flow = flow

    def __format__(self, spec: str) -> str:
        flow = self.flow
        return (
            f"{flow['client']} ({flow['client_role'] or 'no role'}) -> "
            f"{endpoint(flow['server'], flow['server_port'])} "
            f"({flow['server_role'] or 'no role'}) {flow['proto']} {flow['service']}"
        )


class _Findings:
    """Collects flows into findings keyed by rule and what the flows share."""

    def __init__(self, signatures: Signatures) -> None:
        self.signatures = signatures
        self.groups: dict[tuple[Any, ...], Finding] = {}
        self.by_flow: dict[int, set[str]] = {}  # flow id -> rule ids of its findings
        # findings (by identity) -> how many of their flows' starts were not captured
        self.startless: dict[int, int] = {}

    def add(
        self,
        rule_id: str,
        flow_id: int,
        detail: str,
        *,
        key: tuple[Any, ...] = (),
        severity: str | None = None,
        client_role: str | None = None,
        server_role: str | None = None,
        service: str | None = None,
        server_port: int | None = None,
        match_port: int | str | None = None,
        client: str | None = None,
        server: str | None = None,
        matrix_rule: str | None = None,
        reference: str | None = None,
        start_missing: bool = False,
    ) -> None:
        # Flows of no known service group by role pair alone, not one finding per port, and
        # dynamic ports by "dynamic" (``port_key``); an end of no role by its address.
        client = client if client_role is None else None
        server = server if server_role is None else None
        group_key = (
            rule_id,
            severity,
            client_role,
            server_role,
            service,
            match_port,
            client,
            server,
        )
        group_key += key
        finding = self.groups.get(group_key)
        if finding is None:
            spec = self.signatures.findings[rule_id]
            finding = Finding(
                id="",
                rule=rule_id,
                severity=severity or spec.severity,
                title=spec.title,
                detail=detail,
                flow_ids=[],
                reference=reference or spec.reference,
                client_role=client_role,
                server_role=server_role,
                service=service,
                server_port=server_port,
                matrix_rule=matrix_rule,
                qualifier="/".join(str(part) for part in key) if key else None,
                match_port=match_port,
                client=client,
                server=server,
            )
            self.groups[group_key] = finding
        rules = self.by_flow.setdefault(flow_id, set())
        if not finding.flow_ids or finding.flow_ids[-1] != flow_id:
            finding.flow_ids.append(flow_id)  # flows arrive in id order: no repeats
            if start_missing:
                self.startless[id(finding)] = self.startless.get(id(finding), 0) + 1
        rules.add(rule_id)

    def finished(self) -> list[Finding]:
        findings = sorted(
            self.groups.values(),
            key=lambda f: (-SEVERITIES.index(f.severity), f.rule, f.flow_ids[0]),
        )
        for number, finding in enumerate(findings, 1):
            finding.id = f"F{number:04d}"
            flows = len(finding.flow_ids)
            startless = self.startless.get(id(finding), 0)
            if flows == 1 and startless:
                finding.detail += "; the start of the flow was not captured"
            elif flows > 1:
                finding.detail += f" ({flows} flows"
                if startless:
                    finding.detail += (
                        "; the start of none was captured"
                        if startless == flows
                        else f"; the start of {startless} was not captured"
                    )
                finding.detail += ")"
        return findings


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the audit builds its per-flow lists.

    The audit allocates a few objects per flow and makes no reference cycles; with collection
    on, the collector walks the growing heap again and again: measured on the benchmark capture
    (30,000 flows), classify + audit took 0.42 s with it and 0.19 s without.

    Only the collector's on/off state is touched, and put back as it was (no ``gc.freeze``:
    moving what the audit made out of the collector's reach after it saved nothing measurable,
    0.81 s of CPU with it and 0.82 s without for audit and JSON report of that capture).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def audit(
    table: FlowTable,
    site: Site | None = None,
    *,
    signatures: Signatures | None = None,
    rules: Sequence[Rule] | None = None,
) -> AuditResult:
    """Classify and judge every flow of ``table``; ``site`` None infers the roles."""
    signatures = signatures or load_signatures()
    columns = table.columns
    site_ports = site.ports if site is not None else {}
    with _no_cycle_collection():
        classified = classify(table, site_ports, signatures)
        if site is None:
            site = infer_site(columns, classified, signatures)
        in_force = list(rules) if rules is not None else rules_in_force(load_rules(), site.ports)
        judge = Judge(in_force, site)
        flows, findings, other = _judge_flows(table, classified, site, judge, signatures)
        addresses = {*flows["client"], *flows["server"]}
        finished = findings.finished()
        community_of = dict(zip(flows["id"], flows["community_id"], strict=True))
        for finding in finished:
            finding.community_of = {i: community_of[i] for i in finding.flow_ids}
    return AuditResult(
        captures=list(table.captures),
        site=site,
        rules=in_force,
        addresses=addresses,
        flow_columns=flows,
        findings=finished,
        signatures_sha256=tables_sha256(),
        other_flows=other,
    )


FLOW_FIELDS = (
    "id",
    "proto",
    "client",
    "client_port",
    "server",
    "server_port",
    "first_seen",
    "last_seen",
    "packets",
    "bytes",
    "service",
    "evidence",
    "protocol",
    "client_role",
    "server_role",
    "client_roles",
    "server_roles",
    "verdict",
    "matrix_rule",
    "plaintext",
    "first_frame",
    "last_frame",
    "file",
    "community_id",
    "wireshark_filter",
    "facts",
)
_TABLE_COLUMNS = {
    "id": "id",
    "proto": "proto",
    "client": "client",
    "client_port": "client_port",
    "server": "server",
    "server_port": "server_port",
}
_LATER_COLUMNS = {
    "first_seen": "first_seen",
    "last_seen": "last_seen",
    "packets": "packets",
    "bytes": "bytes",
    "first_frame": "first_frame",
    "last_frame": "last_frame",
    "file": "first_file",
}


def _judge_flows(
    table: FlowTable,
    classified: Classified,
    site: Site,
    judge: Judge,
    signatures: Signatures,
) -> tuple[dict[str, list[Any]], _Findings, int]:
    """The audited flows as columns (``FLOW_FIELDS``), the findings, and the flows not judged."""
    columns = table.columns
    proto = columns["proto"].tolist()
    keep = [row for row, name in enumerate(proto) if name in ("tcp", "udp")]
    every = len(keep) == len(proto)

    def take(values: list[Any]) -> list[Any]:
        return values if every else [values[row] for row in keep]

    out: dict[str, Any] = {
        name: take(columns[source].tolist()) for name, source in _TABLE_COLUMNS.items()
    }
    # Columns the judge does not read stay numpy arrays until a report asks for the flows
    # (AuditResult.flows); times stay datetime64.
    for name, source in _LATER_COLUMNS.items():
        out[name] = columns[source] if every else columns[source][keep]
    for name in ("service", "evidence", "protocol", "plaintext", "facts"):
        out[name] = take(getattr(classified, name))
    start_seen = take(columns["start_seen"].tolist())
    _turn_tftp_answers(out)
    # Pivots into a SIEM and Wireshark (flowaudit/pivots.py), after the TFTP turn: the filter
    # names the client first.
    last_file = columns["last_file"] if every else columns["last_file"][keep]
    out["community_id"], out["wireshark_filter"] = pivot_columns(
        out["proto"],
        out["client"],
        out["client_port"],
        out["server"],
        out["server_port"],
        out["first_frame"].tolist(),
        out["last_frame"].tolist(),
        (np.asarray(out["file"]) == np.asarray(last_file)).tolist(),
    )
    client, server = out["client"], out["server"]
    service, evidence, facts_column = out["service"], out["evidence"], out["facts"]
    server_port = out["server_port"]
    roles = {address: site.roles_of(address) for address in {*client, *server}}
    groups = {address: is_group(address) for address in set(server)}
    note5 = {
        address: judge.note5 and site.site_server_must_initiate(address) for address in set(client)
    }
    group_column = [groups[address] for address in server]
    client_roles = [roles[address] for address in client]
    server_roles = [() if g else roles[a] for a, g in zip(server, group_column, strict=True)]
    tftp_column = [value == BY_TFTP_REQUEST for value in evidence]
    facing = {address: site.is_internet_facing(address) for address in {*client, *server}}
    keys = list(
        zip(
            out["proto"],
            service,
            server_port,
            [note5[address] for address in client],
            client_roles,
            server_roles,
            group_column,
            tftp_column,
            [(facing[c], facing[v]) for c, v in zip(client, server, strict=True)],
            strict=True,
        )
    )
    verdict_of = {key: judge.judge_key(key) for key in dict.fromkeys(keys)}
    judgements = [verdict_of[key] for key in keys]
    for k in [
        k for k, (t, s) in enumerate(zip(tftp_column, start_seen, strict=True)) if t or not s
    ]:
        facts = facts_column[k] = dict(facts_column[k])
        if tftp_column[k]:
            facts["answer_to"] = int(columns["id"][facts["answer_to"]])
        if not start_seen[k]:
            facts["start_seen"] = False
    out["client_role"] = [j.client_role for j in judgements]
    out["server_role"] = [j.server_role for j in judgements]
    out["client_roles"] = client_roles  # tuples: JSON writes them as arrays
    out["server_roles"] = server_roles
    out["verdict"] = [j.verdict for j in judgements]
    # The rule that allowed the flow; a wrong-direction flow was allowed by none (its finding
    # names the rule it breaks).
    out["matrix_rule"] = [
        j.rule.id if j.rule is not None and j.verdict == EXPECTED else None for j in judgements
    ]
    findings = _Findings(signatures)
    for k, judgement in enumerate(judgements):
        facts = facts_column[k]
        if judgement.finding is None and not facts and evidence[k] != BY_PAYLOAD:
            continue
        record = _Row(out, k)
        _flow_findings(findings, signatures, site, record, judgement, bool(start_seen[k]))
    return out, findings, len(proto) - len(keep)


def _turn_tftp_answers(out: dict[str, Any]) -> None:
    """Make the TFTP client the client of an answer flow that the server's first DATA opened.

    The daemon answers from a port of its own (ports page, note 4; RFC 1350 4), so the flow
    table, which takes the first sender as client, calls the server the client. The client is
    the host that asked on 69, as anyone reads the transfer.
    """
    evidence, facts = out["evidence"], out["facts"]
    for k, how in enumerate(evidence):
        if how != BY_TFTP_REQUEST or facts[k].get("tftp_server") != out["client"][k]:
            continue
        out["client"][k], out["server"][k] = out["server"][k], out["client"][k]
        out["client_port"][k], out["server_port"][k] = out["server_port"][k], out["client_port"][k]
        facts[k] = {**facts[k], "opened_by": "server"}


def _flow_findings(
    findings: _Findings,
    signatures: Signatures,
    site: Site,
    record: Mapping[str, Any],
    judgement: _Judgement,
    start_seen: bool,
) -> None:
    flow_id = record["id"]
    service = record["service"]
    facts = record["facts"]
    common = {
        "client_role": judgement.client_role,
        "server_role": judgement.server_role,
        "service": service,
        "server_port": record["server_port"],
        "match_port": port_key(service, record["server_port"], record["evidence"]),
        "client": record["client"],
        "server": record["server"],
    }
    where = _Where(record)
    if judgement.finding == "wrong-direction":
        assert judgement.rule is not None
        findings.add(
            "wrong-direction",
            flow_id,
            f"{where}: the matrix has {judgement.rule.client_role} start this "
            f"({judgement.rule.id})",
            matrix_rule=judgement.rule.id,
            reference=judgement.rule.reference,
            start_missing=not start_seen,
            **common,
        )
    elif judgement.finding == "non-standard-port":
        findings.add(
            "non-standard-port",
            flow_id,
            f"{where}: the matrix allows {service} between these roles, not on port "
            f"{record['server_port']}",
            **common,
        )
    elif judgement.finding == "unexpected-flow":
        findings.add(
            "unexpected-flow",
            flow_id,
            f"{where}: no rule of the ports matrix allows this",
            start_missing=not start_seen,
            **common,
        )
    _payload_findings(findings, signatures, site, record, facts, common, where)


def _payload_findings(
    findings: _Findings,
    signatures: Signatures,
    site: Site,
    flow: Mapping[str, Any],
    facts: Mapping[str, Any],
    common: Mapping[str, Any],
    where: _Where,
) -> None:
    if not facts and flow["evidence"] != BY_PAYLOAD:
        return
    flow_id = flow["id"]
    service = flow["service"]
    port = flow["server_port"]
    protocol = flow["protocol"]
    # A known service (by its bytes) off every port documented for it.
    if (
        flow["evidence"] == BY_PAYLOAD
        and service not in ("rpc-dynamic", "https", "unknown")
        and not _already(findings, "non-standard-port", flow_id)
    ):
        documented = signatures.services[service].ports.get(flow["proto"], ())
        alternate = alternate_ports(service, site.ports)
        if documented and not port_in(port, documented) and not port_in(port, alternate):
            findings.add(
                "non-standard-port",
                flow_id,
                f"{where}: {service} recognised from its bytes on port {port}, documented on "
                f"{ports_text(documented, ', ')}",
                **common,
            )
    http = facts.get("http")
    if http:
        _http_findings(findings, signatures, site, flow, http, common, where)
    smb = facts.get("smb")
    if smb:
        if smb.get("version") == 1:
            findings.add(
                "smb1",
                flow_id,
                f"{where}: SMB1" + (f" ({smb['dialect']})" if smb.get("dialect") else ""),
                **common,
            )
        if smb.get("signing_required") is False:
            findings.add(
                "smb-signing-not-required",
                flow_id,
                f"{where}: the server's NEGOTIATE response does not require signing"
                + (" (dialect " + smb["dialect"] + ")" if smb.get("dialect") else ""),
                **common,
            )
    tds = facts.get("tds")
    if tds and tds.get("prelogin"):
        client_enc, server_enc = tds.get("client_encryption"), tds.get("server_encryption")
        if "NOT_SUP" in (client_enc, server_enc):
            findings.add(
                "sql-encryption-off",
                flow_id,
                f"{where}: PRELOGIN encryption client {client_enc}, server {server_enc}: "
                "nothing is encrypted, not even the login",
                severity="high",
                key=("none",),
                **common,
            )
        elif server_enc == "OFF":
            findings.add(
                "sql-encryption-off",
                flow_id,
                f"{where}: PRELOGIN encryption client {client_enc}, server OFF: only the login "
                "packet is encrypted",
                key=("login-only",),
                **common,
            )
    tls = facts.get("tls") or (tds or {}).get("tls")
    if tls:
        version = tls.get("version") or (
            None if tls.get("server_hello") else tls.get("client_max_version")
        )
        if version in LEGACY_TLS:
            findings.add(
                "legacy-tls",
                flow_id,
                f"{where}: {version} "
                + ("negotiated" if tls.get("version") else "is the most the client offers"),
                severity="high" if version.startswith("SSL") else None,
                key=(version,),
                **common,
            )
    if service == "rpc-dynamic" and flow["evidence"] == BY_PAYLOAD:
        findings.add(
            "rpc-unannounced-port",
            flow_id,
            f"{where}: DCE/RPC bind on port {port}, which no endpoint mapper or DCOM reply in "
            "the capture announced",
            **common,
        )
    ldap = facts.get("ldap")
    if ldap and ldap.get("simple_bind_with_password") and protocol == "ldap":
        findings.add(
            "ldap-cleartext-bind",
            flow_id,
            f"{where}: LDAP simple bind with a password, without TLS",
            **common,
        )


def _already(findings: _Findings, rule_id: str, flow_id: int) -> bool:
    return rule_id in findings.by_flow.get(flow_id, ())


def _http_findings(
    findings: _Findings,
    signatures: Signatures,
    site: Site,
    flow: Mapping[str, Any],
    http: Mapping[str, Any],
    common: Mapping[str, Any],
    where: _Where,
) -> None:
    flow_id = flow["id"]
    if signatures.agent_kind(http.get("user_agent")) == "sdk":
        findings.add(
            "sdk-user-agent",
            flow_id,
            f"{where}: User-Agent {http.get('user_agent')!r} on {_request_text(http)}",
            **common,
        )
    if flow["service"] != "http" or site.security == "http":
        return  # (WinRM over HTTP is its own row of the matrix, not client communication)
    endpoint = signatures.endpoint_for(http.get("path"))
    server_roles = set(flow["server_roles"])
    if endpoint is None and not (server_roles & client_facing_roles()):
        return  # not ConfigMgr client communication (e.g. a site system to the internet)
    if INTERNET in server_roles and endpoint is None:
        return
    if endpoint is not None:
        carries = endpoint.carries
        what = f"{endpoint.title} ({endpoint.name}), carries {carries}"
    else:
        carries = "other"
        what = "no known ConfigMgr endpoint"
    severity = signatures.plaintext_severity.get(carries, "low")
    note = ""
    if site.security == "https-or-ehttp" and endpoint is not None and not endpoint.ehttp:
        severity = "info"
        note = "; Enhanced HTTP leaves this on HTTP by design"
    findings.add(
        "plaintext-http",
        flow_id,
        f"{where}: {_request_text(http)} in clear text: {what}; the site is {site.security}{note}",
        severity=severity,
        key=(endpoint.name if endpoint else None,),
        **common,
    )


def _request_text(http: Mapping[str, Any]) -> str:
    """``METHOD path`` of the first request, or what stands in for one the dissector could not
    read (a response alone, or a request line it refused)."""
    if http.get("method") is None:
        return "an HTTP exchange whose request was not read"
    return f"{http['method']} {http.get('path')}"


def severity_at_least(result: AuditResult, threshold: str, *, new_only: bool = False) -> bool:
    """Whether a finding that counts reaches ``threshold`` (``never``: no finding does).

    Accepted findings never count; with ``new_only``, neither do findings a baseline knew.
    """
    if threshold == "never":
        return False
    worst = result.worst_severity(new_only=new_only)
    return worst is not None and SEVERITIES.index(worst) >= SEVERITIES.index(threshold)
