"""Write the matrix in force (``flowaudit matrix``): JSON, CSV or a terminal table, and the
roles it names (in the table and in JSON).

With a site file the alternate ports it names replace the documented ones, and the reverse
direction of a note-5 pair (site system to site server) lists the site systems the site file
says must not start connections (``site-server-initiates``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import IO, Any

from flowaudit.audit import site_system_to_site_server
from flowaudit.matrix import (
    ANY_ROLE,
    CLIENT_ROLES,
    PEER_ROLES,
    ROLES,
    SITE_SYSTEM_ROLES,
    load_rules,
    rules_in_force,
)
from flowaudit.report.terminal import plain_table
from flowaudit.signatures import ports_text

FIELDS = (
    "id",
    "client_role",
    "server_role",
    "proto",
    "ports",
    "service",
    "bidirectional",
    "reference",
)


def matrix_rows(site_path: str | None) -> list[dict[str, Any]]:
    """The rules in force as dicts (the fields of ``FIELDS`` first)."""
    from flowaudit.site import load_site

    site = load_site(site_path) if site_path else None
    rules = rules_in_force(load_rules(), site.ports if site else None)
    withdrawn = [str(n) for n in site.site_server_initiates] if site else []
    rows = []
    for rule in rules:
        row = rule.to_dict()
        if withdrawn and site_system_to_site_server(rule):
            row["not_started_by"] = withdrawn
        rows.append(row)
    return rows


# What each role a site file may name is, in a few words (``flowaudit matrix`` lists them).
ROLE_KINDS = {
    "site-server": "the site server",
    "internet": "peer: a public address outside every role (not named in a site file)",
    "console": "administrator's console",
    "out-of-band-management-console": "administrator's console",
    "amt-management-controller": "managed hardware (Intel AMT)",
    "cloud-based-distribution-point": "cloud service",
}


def role_kind(role: str) -> str:
    if role in ROLE_KINDS:
        return ROLE_KINDS[role]
    if role in SITE_SYSTEM_ROLES:
        return "site system"
    if role in CLIENT_ROLES:
        return "ConfigMgr client"
    if role in PEER_ROLES:
        return "peer of the site: judged only against a site role"
    return "other host"


def role_rows(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every role of the matrix: what it is, and how many rules in force name it as client and
    as server (rules of ``any`` host, the Windows Server rows, apply to each as well)."""
    return [
        {
            "role": role,
            "kind": role_kind(role),
            "client_rules": sum(rule["client_role"] == role for rule in rules),
            "server_rules": sum(rule["server_role"] == role for rule in rules),
        }
        for role in ROLES
    ]


def write_matrix(site_path: str | None, fmt: str, out: IO[str]) -> None:
    rows = matrix_rows(site_path)
    roles = role_rows(rows)
    if fmt == "json":
        json.dump({"rules": rows, "roles": roles}, out, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow([ports_text(row[k]) if k == "ports" else row[k] for k in FIELDS])
        return
    # Plain fixed-width tables, as wide as their cells (a terminal may fold long lines, but
    # no cell is ever wrapped or cut): grep finds every rule id and role.
    _write_table(
        out,
        ("id", "client role", "server role", "proto", "ports", "service", "<-->"),
        [
            (
                row["id"],
                row["client_role"],
                row["server_role"],
                row["proto"],
                ports_text(row["ports"]),
                row["service"],
                "yes" if row["bidirectional"] else "",
            )
            for row in rows
        ],
    )
    out.write(f"{len(rows)} rules\n\n")
    _write_table(
        out,
        ("role", "what it is", "rules as client", "rules as server"),
        [
            (role["role"], role["kind"], str(role["client_rules"]), str(role["server_rules"]))
            for role in roles
        ],
        right=("rules as client", "rules as server"),
    )
    anywhere = sum(ANY_ROLE in (row["client_role"], row["server_role"]) for row in rows)
    out.write(f"{len(roles)} roles; {anywhere} rules more are between any hosts (role any)\n")


def _write_table(
    out: IO[str], headers: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[str] = ()
) -> None:
    for line in plain_table(headers, cells, right=right):
        out.write(line + "\n")
