"""Write the matrix in force (``flowaudit matrix``): JSON, CSV or a terminal table.

With a site file the alternate ports it names replace the documented ones, and the reverse
direction of a note-5 pair (site system to site server) lists the site systems the site file
says must not start connections (``site-server-initiates``).
"""

from __future__ import annotations

import csv
import json
from typing import IO, Any

from flowaudit.audit import site_system_to_site_server
from flowaudit.matrix import load_rules, rules_in_force
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


def write_matrix(site_path: str | None, fmt: str, out: IO[str]) -> None:
    rows = matrix_rows(site_path)
    if fmt == "json":
        json.dump({"rules": rows}, out, indent=1)
        out.write("\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow([ports_text(row[k]) if k == "ports" else row[k] for k in FIELDS])
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, highlight=False, width=None if out.isatty() else 200)
    view = Table(box=None, pad_edge=False)
    for title in ("id", "client role", "server role", "proto", "ports", "service", "<-->"):
        view.add_column(title, overflow="fold")
    for row in rows:
        view.add_row(
            row["id"],
            row["client_role"],
            row["server_role"],
            row["proto"],
            ports_text(row["ports"]),
            row["service"],
            "yes" if row["bidirectional"] else "",
        )
    console.print(view)
    console.print(f"{len(rows)} rules", markup=False)
