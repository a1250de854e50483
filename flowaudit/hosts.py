"""One host at a time: ``flowaudit hosts`` and the HTML report's host section.

A view of an ``AuditResult`` (nothing is recomputed): every address seen at an end of a
TCP/UDP flow, not only the role holders, with

* its roles and their evidence (``AuditResult.hosts``);
* the services it served (as the flow's server) and used (as its client): flows, packets and
  bytes of each;
* its first and last packet, its packets and bytes (the sum over its flows: a flow from an
  address to itself counts once), its peers (distinct addresses at the other end);
* the TLS certificates it presented (subject and issuer CN of flows where it is the server);
* the identities it authenticated as (``facts.identities`` of flows where it is the client);
* the findings that name one of its flows, by severity.

``timeline(result, address)`` is one host's flows in time order, with service, peer, verdict
and findings.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from flowaudit.report.conversations import account_name

if TYPE_CHECKING:
    from flowaudit.audit import AuditResult

HOST_CSV_FIELDS = (
    "ip",
    "roles",
    "evidence",
    "flows",
    "packets",
    "bytes",
    "first_seen",
    "last_seen",
    "peers",
    "served",
    "used",
    "certificates",
    "identities",
    "findings",
)
TIMELINE_FIELDS = (
    "id",
    "first_seen",
    "last_seen",
    "direction",
    "proto",
    "local_port",
    "peer",
    "peer_port",
    "service",
    "verdict",
    "matrix_rule",
    "local_role",
    "peer_role",
    "packets",
    "bytes",
    "first_frame",
    "last_frame",
    "findings",
)


def _tally(table: dict[str, dict[str, int]], key: str, packets: int, size: int) -> None:
    entry = table.setdefault(key, {"flows": 0, "packets": 0, "bytes": 0})
    entry["flows"] += 1
    entry["packets"] += packets
    entry["bytes"] += size


def host_records(result: AuditResult) -> list[dict[str, Any]]:
    """One record per address seen, in address order (IPv4 before IPv6)."""
    from flowaudit.signatures import SEVERITIES

    roles = {host["ip"]: host for host in result.hosts}
    findings_of = result.findings_by_flow
    records: dict[str, dict[str, Any]] = {}
    peers: dict[str, set[str]] = {}
    findings_seen: dict[str, dict[str, str]] = {}
    certificates: dict[str, Counter[tuple[Any, ...]]] = {}
    identities: dict[str, Counter[tuple[str, str, str]]] = {}

    def record(address: str) -> dict[str, Any]:
        found = records.get(address)
        if found is None:
            held = roles.get(address, {})
            found = records[address] = {
                "ip": address,
                "roles": list(held.get("roles", [])),
                "source": held.get("source"),
                "evidence": list(held.get("evidence", [])),
                "flows": 0,
                "packets": 0,
                "bytes": 0,
                "first_seen": None,
                "last_seen": None,
                "peers": 0,
                "served": {},
                "used": {},
                "certificates": [],
                "identities": [],
                "findings": {},
            }
            peers[address] = set()
            findings_seen[address] = {}
        return found

    for flow in result.flows:
        client, server = flow["client"], flow["server"]
        packets, size = int(flow["packets"]), int(flow["bytes"])
        service = str(flow["service"])
        facts = flow.get("facts") or {}
        for address, peer in (
            ((client, server), (server, client)) if client != server else ((client, server),)
        ):
            host = record(address)
            host["flows"] += 1
            host["packets"] += packets
            host["bytes"] += size
            if host["first_seen"] is None or flow["first_seen"] < host["first_seen"]:
                host["first_seen"] = flow["first_seen"]
            if host["last_seen"] is None or flow["last_seen"] > host["last_seen"]:
                host["last_seen"] = flow["last_seen"]
            peers[address].add(peer)
            for finding in findings_of.get(flow["id"], ()):
                findings_seen[address][finding.id] = finding.severity
        _tally(record(server)["served"], service, packets, size)
        _tally(record(client)["used"], service, packets, size)
        tls = facts.get("tls") or {}
        if tls.get("cert_subject_cn") or tls.get("cert_issuer_cn"):
            certificates.setdefault(server, Counter())[
                (
                    tls.get("cert_subject_cn"),
                    tls.get("cert_issuer_cn"),
                    tls.get("cert_subject"),
                    tls.get("cert_issuer"),
                    tls.get("cert_self_signed"),
                )
            ] += 1
        for entry in facts.get("identities") or ():
            key = (
                account_name(entry),
                str(entry.get("protocol") or ""),
                str(entry.get("outcome") or ""),
            )
            identities.setdefault(client, Counter())[key] += 1
    for address, host in records.items():
        host["peers"] = len(peers[address])
        severities = Counter(findings_seen[address].values())
        host["findings"] = {s: severities[s] for s in reversed(SEVERITIES) if severities[s]}
        host["certificates"] = [
            {
                "subject_cn": subject,
                "issuer_cn": issuer,
                "subject": subject_dn,
                "issuer": issuer_dn,
                "self_signed": self_signed,
                "flows": count,
            }
            for (subject, issuer, subject_dn, issuer_dn, self_signed), count in sorted(
                certificates.get(address, Counter()).items(), key=lambda item: -item[1]
            )
        ]
        host["identities"] = [
            {"account": account, "protocol": protocol, "outcome": outcome or None, "flows": count}
            for (account, protocol, outcome), count in sorted(
                identities.get(address, Counter()).items(), key=lambda item: -item[1]
            )
        ]
        for side in ("served", "used"):
            host[side] = dict(sorted(host[side].items(), key=lambda item: -item[1]["bytes"]))
    return [records[address] for address in sorted(records, key=address_order)]


def address_order(address: str) -> tuple[int, Any]:
    import ipaddress

    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (2, address)
    return (parsed.version, int(parsed))


def timeline(result: AuditResult, address: str) -> list[dict[str, Any]]:
    """Every flow of ``address`` in time order: direction (``out`` when it is the client),
    peer, service, verdict and findings."""
    findings_of = result.findings_by_flow
    rows = []
    for flow in result.flows:
        if address not in (flow["client"], flow["server"]):
            continue
        out = flow["client"] == address
        rows.append(
            {
                "id": flow["id"],
                "first_seen": flow["first_seen"],
                "last_seen": flow["last_seen"],
                "direction": "out" if out else "in",
                "proto": flow["proto"],
                "local_port": flow["client_port"] if out else flow["server_port"],
                "peer": flow["server"] if out else flow["client"],
                "peer_port": flow["server_port"] if out else flow["client_port"],
                "service": flow["service"],
                "verdict": flow["verdict"],
                "matrix_rule": flow["matrix_rule"],
                "local_role": flow["client_role"] if out else flow["server_role"],
                "peer_role": flow["server_role"] if out else flow["client_role"],
                "packets": flow["packets"],
                "bytes": flow["bytes"],
                "first_frame": flow["first_frame"],
                "last_frame": flow["last_frame"],
                "findings": [
                    {"id": f.id, "rule": f.rule, "severity": f.severity}
                    for f in findings_of.get(flow["id"], ())
                ],
            }
        )
    rows.sort(key=lambda row: (row["first_seen"], row["id"]))
    return rows


# --- text forms -----------------------------------------------------------------------------


def services_text(services: Mapping[str, Mapping[str, int]], limit: int = 4) -> str:
    """``smb 3/12.5kB, http 1/900B +2``: flows and bytes of each service, largest first."""
    parts = [f"{name} {v['flows']}/{_size(v['bytes'])}" for name, v in services.items()]
    return ", ".join(parts[:limit]) + (f" +{len(parts) - limit}" if len(parts) > limit else "")


def _size(count: int) -> str:
    if count < 1000:
        return f"{count}B"
    size = count / 1000
    for unit in ("kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f}{unit}"
        size /= 1000
    return f"{size:.1f}GB"  # pragma: no cover


def certificates_text(certificates: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(
        (c["subject"] or f"CN={c['subject_cn'] or '?'}")
        + (" (self-signed)" if c["self_signed"] else f" by {c['issuer_cn'] or '?'}")
        + (f" x{c['flows']}" if c["flows"] > 1 else "")
        for c in certificates
    )


def identities_text(identities: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{i['account']} ({i['protocol']}{', ' + i['outcome'] if i['outcome'] else ''})"
        for i in identities
    )


def findings_text(findings: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {severity}" for severity, count in findings.items())


def _host_cells(host: Mapping[str, Any]) -> dict[str, str]:
    return {
        "ip": host["ip"],
        "roles": ", ".join(host["roles"]),
        "evidence": "; ".join(host["evidence"]),
        "flows": str(host["flows"]),
        "packets": str(host["packets"]),
        "bytes": str(host["bytes"]),
        "first_seen": str(host["first_seen"]),
        "last_seen": str(host["last_seen"]),
        "peers": str(host["peers"]),
        "served": services_text(host["served"], limit=1000),
        "used": services_text(host["used"], limit=1000),
        "certificates": certificates_text(host["certificates"]),
        "identities": identities_text(host["identities"]),
        "findings": findings_text(host["findings"]),
    }


def _timeline_cells(row: Mapping[str, Any]) -> dict[str, str]:
    cells = {name: "" if row[name] is None else str(row[name]) for name in TIMELINE_FIELDS}
    cells["findings"] = " ".join(f"{f['id']}:{f['rule']}" for f in row["findings"])
    return cells


# --- writers --------------------------------------------------------------------------------


def write_hosts(result: AuditResult, out: IO[str], fmt: str, host: str | None = None) -> None:
    """``flowaudit hosts``: the host list, or with ``host`` that host's timeline."""
    from flowaudit.report.terminal import clean, plain_table

    if host is not None:
        summary = next((h for h in host_records(result) if h["ip"] == host), None)
        rows = timeline(result, host)
        if fmt == "json":
            json.dump({"host": summary, "timeline": rows}, out, indent=1, default=str)
            out.write("\n")
        elif fmt == "csv":
            _write_csv(out, TIMELINE_FIELDS, (_timeline_cells(row) for row in rows))
        else:
            if summary is None:
                out.write(f"{host}: no flow of this address in the capture\n")
                return
            for line in _host_summary(summary):
                out.write(clean(line) + "\n")
            headers: tuple[str, ...] = (
                "id",
                "first seen",
                "dir",
                "peer",
                "service",
                "verdict",
                "findings",
            )
            table = [
                [
                    clean(value)
                    for value in (
                        row["id"],
                        row["first_seen"],
                        "->" if row["direction"] == "out" else "<-",
                        _endpoint(row["peer"], row["peer_port"])
                        + f" {row['proto']}"
                        + (
                            f" (from :{row['local_port']})"
                            if row["direction"] == "out"
                            else f" (to :{row['local_port']})"
                        ),
                        row["service"],
                        row["verdict"],
                        _timeline_cells(row)["findings"],
                    )
                ]
                for row in rows
            ]
            for line in plain_table(headers, table, right=("id",)):
                out.write(line + "\n")
        return
    records = host_records(result)
    if fmt == "json":
        json.dump({"hosts": records}, out, indent=1, default=str)
        out.write("\n")
    elif fmt == "csv":
        _write_csv(out, HOST_CSV_FIELDS, (_host_cells(h) for h in records))
    else:
        headers = ("host", "roles", "flows", "bytes", "peers", "served", "used", "findings")
        table = [
            [
                clean(value)
                for value in (
                    h["ip"],
                    ", ".join(h["roles"]) or "-",
                    h["flows"],
                    h["bytes"],
                    h["peers"],
                    services_text(h["served"]) or "-",
                    services_text(h["used"]) or "-",
                    findings_text(h["findings"]) or "-",
                )
            ]
            for h in records
        ]
        for line in plain_table(headers, table, right=("flows", "bytes", "peers")):
            out.write(line + "\n")
        out.write(f"{len(records)} hosts\n")
        extra = [h for h in records if h["certificates"] or h["identities"]]
        for h in extra:
            if h["certificates"]:
                out.write(
                    clean(f"{h['ip']} presented {certificates_text(h['certificates'])}") + "\n"
                )
            if h["identities"]:
                out.write(
                    clean(f"{h['ip']} authenticated as {identities_text(h['identities'])}") + "\n"
                )


def _endpoint(address: str, port: Any) -> str:
    from flowaudit.report.flowtable import endpoint

    return endpoint(address, port)


def _host_summary(host: Mapping[str, Any]) -> Iterator[str]:
    yield f"host {host['ip']}: {', '.join(host['roles']) or 'no role'}"
    for evidence in host["evidence"]:
        yield f"  evidence: {evidence}"
    yield (
        f"  {host['flows']} flows, {host['packets']} packets, {host['bytes']} bytes, "
        f"{host['peers']} peers, {host['first_seen']} .. {host['last_seen']}"
    )
    if host["served"]:
        yield f"  served: {services_text(host['served'], limit=1000)}"
    if host["used"]:
        yield f"  used: {services_text(host['used'], limit=1000)}"
    if host["certificates"]:
        yield f"  presented: {certificates_text(host['certificates'])}"
    if host["identities"]:
        yield f"  authenticated as: {identities_text(host['identities'])}"
    if host["findings"]:
        yield f"  findings: {findings_text(host['findings'])}"


def _write_csv(out: IO[str], fields: tuple[str, ...], rows: Iterable[Mapping[str, str]]) -> None:
    from flowaudit.report.audit import csv_cell

    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: csv_cell(value) for name, value in row.items()})
