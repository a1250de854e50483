"""Operations and identities of an audit as rows: one per operation, one per identity, and
the identities gathered per host. The CSV, terminal and HTML views read these; none
computes anything of its own."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowaudit.audit import AuditResult

FLOW_KEYS = ("flow_id", "client", "client_port", "server", "server_port", "service")
OPERATION_FIELDS = (
    *FLOW_KEYS,
    "time",
    "frame",
    "direction",
    "protocol",
    "operation",
    "target",
    "status",
)
IDENTITY_FIELDS = (
    *FLOW_KEYS,
    "protocol",
    "method",
    "account",
    "domain",
    "workstation",
    "realm",
    "service_principal",
    "carrier",
    "outcome",
)


def _flow_part(flow: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "flow_id": flow["id"],
        "client": flow["client"],
        "client_port": flow["client_port"],
        "server": flow["server"],
        "server_port": flow["server_port"],
        "service": flow["service"],
    }


def operation_rows(result: AuditResult) -> Iterator[dict[str, Any]]:
    """Every operation of every flow, in flow order, with its flow's ends and service."""
    for flow in result.flows:
        operations = (flow.get("facts") or {}).get("operations")
        if not operations:
            continue
        part = _flow_part(flow)
        for entry in operations:
            yield {**part, **{name: entry.get(name) for name in OPERATION_FIELDS[len(FLOW_KEYS) :]}}


def identity_rows(result: AuditResult) -> Iterator[dict[str, Any]]:
    """Every identity of every flow, with its flow's ends and service (a Kerberos service
    principal is ``service_principal`` here, beside the flow's service)."""
    for flow in result.flows:
        identities = (flow.get("facts") or {}).get("identities")
        if not identities:
            continue
        part = _flow_part(flow)
        for entry in identities:
            row = dict(part)
            for name in IDENTITY_FIELDS[len(FLOW_KEYS) :]:
                key = "service" if name == "service_principal" else name
                row[name] = entry.get(key)
            yield row


def account_name(row: Mapping[str, Any]) -> str:
    """``DOMAIN\\account``, ``account@REALM`` or the service principal: who, in one string."""
    account, domain = row.get("account"), row.get("domain")
    if account:
        if domain:
            return f"{domain}\\{account}"
        realm = row.get("realm")
        return f"{account}@{realm}" if realm else str(account)
    if row.get("method") == "anonymous":
        return "(anonymous)"
    principal = row.get("service_principal") or row.get("service")
    return f"(ticket for {principal})" if principal else "(unnamed)"


def identities_by_host(result: AuditResult) -> list[dict[str, Any]]:
    """Per client address: each account it authenticated as, with protocol, method, the
    servers it reached, outcomes and the number of flows."""
    hosts: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {}
    seen: dict[tuple[str, tuple[str, str, str]], set[str]] = {}
    for row in identity_rows(result):
        key = (account_name(row), str(row.get("protocol") or ""), str(row.get("method") or ""))
        entry = hosts.setdefault(row["client"], {}).setdefault(
            key,
            {
                "account": key[0],
                "protocol": key[1],
                "method": key[2],
                "servers": [],
                "outcomes": [],
                "flows": 0,
            },
        )
        entry["flows"] += 1
        servers = seen.setdefault((row["client"], key), set())
        if row["server"] not in servers:  # (a set: one account may reach thousands)
            servers.add(row["server"])
            entry["servers"].append(row["server"])
        outcome = row.get("outcome")
        if outcome and outcome not in entry["outcomes"]:
            entry["outcomes"].append(outcome)
    return [
        {"host": host, "identities": list(found.values())} for host, found in sorted(hosts.items())
    ]
