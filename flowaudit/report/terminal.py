"""The terminal view of an ``AuditResult``: a one-screen summary, then the findings by severity
with their flows, the unexpected role pairs, and (``--table flows``) every flow.

Text from the capture is hostile: control and format characters are shown escaped, and every
cell is a rich ``Text`` (never read as markup). Colour only when asked for (the command gives
none when stdout is not a terminal or ``NO_COLOR`` is set).
"""

from __future__ import annotations

import textwrap
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from flowaudit.audit import UNEXPECTED, UNKNOWN_VERDICT, AuditResult, Finding, port_key
from flowaudit.report import ReportOptions
from flowaudit.report.conversations import (
    OPERATION_FIELDS,
    identities_by_host,
    operation_rows,
)
from flowaudit.report.flowtable import endpoint

# Unicode categories never sent to a terminal as they are: controls (C0/C1), format
# characters (bidi overrides, zero-width joiners), line and paragraph separators, unassigned
# and private-use code points.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})
SEVERITY_STYLES = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
VERDICT_STYLES = {"expected": "green", "unexpected": "bold red", "unknown": "dim"}
FLOWS_PER_FINDING = 5
# Lines are wrapped at this width when the view goes to a file or a pipe.
NOT_A_TERMINAL_WIDTH = 160


def clean(text: Any) -> str:
    """Text safe for a terminal: control and format characters (C0, C1, and Unicode's Cf,
    Zl, Zp such as the bidi overrides that reorder what a terminal shows) as escapes."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(
        _escape(char) if unicodedata.category(char) in _ESCAPED_CATEGORIES else char
        for char in value
    )


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def flow_line(flow: Mapping[str, Any]) -> str:
    """client -> server:port proto service (client role -> server role)."""
    return (
        f"{flow['client']} -> {endpoint(flow['server'], flow['server_port'])} {flow['proto']} "
        f"{flow['service']}{' (plaintext)' if flow['plaintext'] else ''} "
        f"({flow['client_role'] or 'no role'} -> {flow['server_role'] or 'no role'})"
    )


def _span(first: str | None, last: str | None) -> str:
    return f"{first} .. {last}" if first and last else "no packets"


def _summary_lines(result: AuditResult) -> Iterable[tuple[str, str]]:
    """(text, style) lines of the one-screen summary."""
    summary = result.summary()
    from flowaudit.report.flowtable import capture_dicts

    for info in capture_dicts(result.captures):
        yield (
            f"{info['path']}: {info['format'] or '?'}, {info['packets']} packets, "
            f"{info['bytes']} bytes, {_span(info['first_seen'], info['last_seen'])}",
            "",
        )
        for warning in info["warnings"]:
            yield f"  warning: {warning}", "yellow"
    site = result.site
    if site.source == "inferred":
        yield "roles: inferred from the traffic (no site file)", "yellow"
    else:
        yield f"site: {site.name or '-'} ({site.path}), security {site.security}", ""
    if result.filters:
        yield filters_line(result.filters), "bold"
    verdicts = ", ".join(f"{count} {name}" for name, count in summary["verdicts"].items())
    other = f"; {summary['other_flows']} of other protocols" if summary["other_flows"] else ""
    yield f"flows: {summary['flows']} ({verdicts}){other}", ""
    severities = ", ".join(
        f"{count} {name}" for name, count in summary["severities"].items() if count
    )
    line = f"findings: {summary['findings']}" + (f" ({severities})" if severities else "")
    extra = [f"{summary[name]} {name}" for name in ("new", "known", "accepted") if summary[name]]
    if extra:
        line += "; " + ", ".join(extra)
    yield line, ""


def filters_line(filters: Mapping[str, Any]) -> str:
    """The filters in force, as options, and what they kept of the whole capture."""
    words = []
    for name, value in filters["options"].items():
        option = "--" + name.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                words.append(f"{option} {item}")
    times = " ".join(
        f"{label} {filters[key]}"
        for label, key in (("from", "since_utc"), ("to", "until_utc"))
        if filters.get(key)
    )
    return (
        f"filters: {' '.join(words)}{f' ({times})' if times else ''}: "
        f"{filters['flows']} of {filters['flows_total']} flows, "
        f"{filters['findings']} of {filters['findings_total']} findings shown"
    )


def write_table(result: AuditResult, out: IO[str], options: ReportOptions | None = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    options = options or ReportOptions()
    console = Console(
        file=out,
        no_color=not options.color,
        force_terminal=options.color,
        highlight=False,
        width=options.width or NOT_A_TERMINAL_WIDTH,
    )

    def text(value: Any, style: str = "") -> Text:
        return Text(clean(value), style=style)

    for line, style in _summary_lines(result):
        console.print(text(line, style))
    flows_by_id = {flow["id"]: flow for flow in result.flows} if result.findings else {}
    active = [finding for finding in result.findings if finding.active]
    accepted = [finding for finding in result.findings if not finding.active]
    if active:
        console.print(text("findings", "bold"))
        for finding in active:
            _print_finding(console, finding, flows_by_id, text)
    unknown = unknown_lines(result)
    if unknown:
        console.file.write("\n".join(unknown) + "\n")
    pairs = [c for c in result.communications if c["verdict"] == UNEXPECTED]
    if pairs:
        view = Table(title="unexpected role pairs", box=None, pad_edge=False, title_justify="left")
        for title in ("client role", "server role", "proto", "service", "port", "flows"):
            view.add_column(title, overflow="fold")
        for pair in pairs:
            view.add_row(
                text(pair["client_role"] or "no role"),
                text(pair["server_role"] or "no role"),
                text(pair["proto"]),
                text(pair["service"]),
                text("-" if pair["port"] is None else pair["port"]),
                text(pair["flows"]),
            )
        console.print(view)
    if accepted:
        view = Table(title="accepted findings", box=None, pad_edge=False, title_justify="left")
        for title in ("id", "severity", "rule", "flows", "justification", "expires"):
            view.add_column(title, overflow="fold")
        for finding in accepted:
            why = finding.accepted or {}
            view.add_row(
                *(
                    text(value)
                    for value in (
                        finding.id,
                        finding.severity,
                        finding.rule,
                        len(finding.flow_ids),
                        why.get("justification", ""),
                        why.get("expires") or "-",
                    )
                )
            )
        console.print(view)
    if result.hosts:
        hosts = Table(title="roles", box=None, pad_edge=False, title_justify="left")
        for title in ("ip", "roles", "source"):
            hosts.add_column(title, overflow="fold")
        for host in result.hosts:
            hosts.add_row(
                *(text(value) for value in (host["ip"], ", ".join(host["roles"]), host["source"]))
            )
        console.print(hosts)
    _print_identities(console, result)
    if options.table == "flows":
        _print_flows(console, result)
    elif options.table == "operations":
        _print_operations(console, result)


UNKNOWN_GROUPS = 15
# Below this port a service with no name is still a well-known port of something.
HIGH_PORT = 1024


def _name_matches(name: str, pattern: str) -> bool:
    """A server name against a certificate's CN (``*.`` matches one label)."""
    name, pattern = name.lower().rstrip("."), pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return name == pattern


def oddities(flow: Mapping[str, Any]) -> list[str]:
    """What makes a flow nobody could judge worth a look: a self-signed certificate, a
    certificate whose CN is not the name the client asked for, no known service on a high
    port."""
    found = []
    tls = (flow.get("facts") or {}).get("tls") or {}
    subject, issuer = tls.get("cert_subject_cn"), tls.get("cert_issuer_cn")
    self_signed = tls.get("cert_self_signed")
    if self_signed is None and subject is not None:
        self_signed = subject == issuer
    if self_signed:
        found.append(f"self-signed {tls.get('cert_subject') or f'CN={subject}'}")
    sni = tls.get("sni")
    if sni and subject and not _name_matches(str(sni), str(subject)):
        # (the subjectAltName is not read: a certificate for several names may name this one)
        found.append(f"certificate CN={subject} for {sni} (subjectAltName not read)")
    if flow["service"] == "unknown" and (flow["server_port"] or 0) >= HIGH_PORT:
        found.append("unknown service on a high port")
    return found


def unknown_lines(result: AuditResult, limit: int = UNKNOWN_GROUPS) -> list[str]:
    """Flows whose verdict is ``unknown`` by transport, service and port: flows, bytes, how
    many clients and servers, an example pair and what is odd about them; the oddest and then
    the largest first, at most ``limit`` lines (cleaned for the terminal)."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for flow in result.flows:
        if flow["verdict"] != UNKNOWN_VERDICT:
            continue
        port = flow["server_port"]
        if flow["service"] != "unknown":  # dynamic RPC, TFTP answers: one group, not one a port
            port = port_key(flow["service"], port, flow["evidence"])
        key = (flow["proto"], flow["service"], port)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "flows": 0,
                "bytes": 0,
                "clients": set(),
                "servers": set(),
                "example": f"{flow['client']} -> {flow['server']}",
                "odd": {},
            }
        group["flows"] += 1
        group["bytes"] += int(flow["bytes"])
        group["clients"].add(flow["client"])
        group["servers"].add(flow["server"])
        for odd in oddities(flow):
            group["odd"][odd] = group["odd"].get(odd, 0) + 1
            # a self-signed certificate ranks first; a CN other than the SNI (which the
            # subjectAltName may explain) and an unknown service on a high port next
            group["rank"] = max(group.get("rank", 0), 2 if odd.startswith("self-signed") else 1)
    if not groups:
        return []
    ordered = sorted(
        groups.items(),
        key=lambda item: (-item[1].get("rank", 0), -item[1]["bytes"], str(item[0])),
    )
    total = sum(group["flows"] for group in groups.values())
    headers = ("proto", "service", "port", "flows", "bytes", "clients", "servers", "e.g.", "odd")
    rows = []
    for (proto, service, port), group in ordered[:limit]:
        odd = "; ".join(
            f"{text} ({count})" if count > 1 else text
            for text, count in sorted(group["odd"].items(), key=lambda item: -item[1])[:2]
        )
        rows.append(
            [
                clean(value)
                for value in (
                    proto,
                    service,
                    port,
                    group["flows"],
                    group["bytes"],
                    len(group["clients"]),
                    len(group["servers"]),
                    group["example"],
                    odd,
                )
            ]
        )
    lines = [
        f"unknown verdict: {total} flow{'s' if total != 1 else ''} nobody could judge "
        "(an end holds no role), by service"
    ]
    lines.extend(plain_table(headers, rows, right=("port", "flows", "bytes", "clients", "servers")))
    if len(ordered) > limit:
        rest = ordered[limit:]
        more = sum(group["flows"] for _, group in rest)
        lines.append(f"... and {len(rest)} more groups ({more} flows)")
    return lines


def _print_identities(console: Any, result: AuditResult) -> None:
    """Who authenticated from where: one row per host and account (a rich table: few rows,
    folded to the terminal's width)."""
    from rich.table import Table
    from rich.text import Text

    hosts = identities_by_host(result)
    if not hosts:
        return
    view = Table(title="identities", box=None, pad_edge=False, title_justify="left")
    for title in ("host", "account", "how", "servers", "outcome", "flows"):
        view.add_column(title, overflow="fold")
    for host in hosts:
        for identity in host["identities"]:
            servers = identity["servers"]
            view.add_row(
                *(
                    Text(clean(value))
                    for value in (
                        host["host"],
                        identity["account"],
                        " ".join(p for p in (identity["protocol"], identity["method"]) if p),
                        ", ".join(servers[:3])
                        + (f" +{len(servers) - 3}" if len(servers) > 3 else ""),
                        ", ".join(identity["outcomes"]) or "-",
                        identity["flows"],
                    )
                )
            )
    console.print(view)


def _print_operations(console: Any, result: AuditResult) -> None:
    # the operation's own fields but its time, after its flow's id
    names = ("flow_id", *OPERATION_FIELDS[OPERATION_FIELDS.index("frame") :])
    headers = ("flow", "frame", "dir", "protocol", "operation", "target", "status")
    rows = [
        [clean("" if row[name] is None else row[name]) for name in names]
        for row in operation_rows(result)
    ]
    console.file.write("operations\n")
    for text_line in plain_table(headers, rows, right=("flow", "frame")):
        console.file.write(text_line + "\n")


def _print_finding(
    console: Any, finding: Finding, flows_by_id: Mapping[int, Mapping[str, Any]], text: Any
) -> None:
    head = text(f"{finding.id} ", "bold")
    head.append(text(f"{finding.severity.upper():<8}", SEVERITY_STYLES.get(finding.severity, "")))
    head.append(text(f" {finding.rule}"))
    if finding.baseline:
        head.append(text(f" [{finding.baseline}]", "bold" if finding.baseline == "new" else "dim"))
    head.append(text(f"  {finding.title}", "dim"))
    console.print(head)
    _indented(console, text, finding.detail, 4)
    for flow_id in finding.flow_ids[:FLOWS_PER_FINDING]:
        flow = flows_by_id[flow_id]
        line = (
            f"flow {flow_id}: {flow_line(flow)}, {flow['first_seen']}, "
            f"frames {flow['first_frame']}-{flow['last_frame']}"
        )
        _indented(console, text, line, 6)
    if len(finding.flow_ids) > FLOWS_PER_FINDING:
        more = len(finding.flow_ids) - FLOWS_PER_FINDING
        _indented(console, text, f"... and {more} more flows", 6, "dim")


def _indented(console: Any, text: Any, line: str, indent: int, style: str = "") -> None:
    """``line`` wrapped to the console's width, every part under the first one."""
    margin = " " * indent
    wrapped = textwrap.fill(
        clean(line), width=max(console.width, 40), initial_indent=margin, subsequent_indent=margin
    )
    from rich.text import Text

    console.print(Text(wrapped, style=style), soft_wrap=True)  # cleaned before it was wrapped


def plain_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[str] = ()
) -> Iterator[str]:
    """Lines of a fixed-width table: one pass for the widths, one to write (a rich ``Table``
    lays out every cell again and again: 40 s for 60,000 flows). Cells are never cut; each
    must already be clean (``clean``)."""
    right_aligned = {headers.index(name) for name in right}
    widths = [len(name) for name in headers]
    for row in rows:
        for index, cell in enumerate(row):
            if len(cell) > widths[index]:
                widths[index] = len(cell)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if index in right_aligned else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    yield line(headers)
    for row in rows:
        yield line(row)


def _print_flows(console: Any, result: AuditResult) -> None:
    headers = (
        "id",
        "proto",
        "client",
        "server",
        "service",
        "roles",
        "verdict",
        "rule",
        "community id",
    )
    rows = [
        [
            clean(value)
            for value in (
                flow["id"],
                flow["proto"],
                endpoint(flow["client"], flow["client_port"]),
                endpoint(flow["server"], flow["server_port"]),
                flow["service"] + (" (plaintext)" if flow["plaintext"] else ""),
                f"{flow['client_role'] or 'no role'} -> {flow['server_role'] or 'no role'}",
                flow["verdict"],
                flow["matrix_rule"] or "",
                flow.get("community_id") or "",
            )
        ]
        for flow in result.flows
    ]
    console.file.write("flows\n")
    for text_line in plain_table(headers, rows, right=("id",)):
        console.file.write(text_line + "\n")
