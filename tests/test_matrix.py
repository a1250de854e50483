"""The expected matrix: every row of the ports page is a rule, and the loader puts rules in force.

The coverage tests hold ``matrix.yaml`` to the facts of the page that the project carries
(``tests/data/ports_page.tsv``): every (section, row, transport, port) of its role-pair tables
must be a rule with the same section, row, transport and port, the page's direction, roles and
notes; every rule said to come from a table must be a row of the page; every rule taken from
the page's prose quotes a sentence of it. The facts are made here from the page itself
(Microsoft's text, not in the project; ``../shared/seeds/001_*.txt`` where it is at hand): its
tables ("Description | UDP | TCP |" then one Description/UDP/TCP triple per row) are parsed on
their own, and ``test_the_facts_are_the_pages`` checks the file against the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from flowaudit.errors import InputError
from flowaudit.matrix import (
    ALTERNATE_KEYS,
    EXPANSIONS,
    INTERNET_SITE_SYSTEM_ROLES,
    MATRIX_ROLES,
    ROLES,
    SITE_SYSTEM,
    SITE_SYSTEM_ROLES,
    WINDOWS_SERVICES_SENTENCE,
    Rule,
    _rules_of,
    check_wsus_ports,
    load_rules,
    rules_in_force,
)
from flowaudit.yamlfile import read_yaml
from tests.conftest import PORTS_PAGE_COLUMNS, PORTS_PAGE_FACTS, ports_page_facts

SEEDS = Path(__file__).parents[2] / "shared" / "seeds"
TABLE = Path(__file__).parents[1] / "signatures" / "matrix.yaml"

# The page's computer names and their role ids (the list).
PAGE_ROLES = {
    "Asset Intelligence Synchronization Point": "asset-intelligence-synchronization-point",
    "Application Catalog Web Service Point": "application-catalog-web-service-point",
    "Application Catalog Website Point": "application-catalog-website-point",
    "AMT Management Controller": "amt-management-controller",
    "Client": "client",
    "Cloud-Based Distribution Point": "cloud-based-distribution-point",
    "Configuration Manager Console": "console",
    "Distribution Point": "distribution-point",
    "Distribution Point Configured for Multicast": "distribution-point",
    "Distribution Point Configured for PXE": "distribution-point",
    "Domain Controller": "domain-controller",
    "Endpoint Protection Point": "endpoint-protection-point",
    "Enrollment Point": "enrollment-point",
    "Enrollment Proxy Point": "enrollment-proxy-point",
    "Exchange Online": "exchange-online",
    "Exchange Server Connector": "exchange-server-connector",
    "Fallback Status Point": "fallback-status-point",
    "Global Catalog Domain Controller": "domain-controller",
    "Internet": "internet",
    "Mac Computer": "mac-computer",
    "Management Point": "management-point",
    "Microsoft": "microsoft",
    "Mobile Device": "mobile-device",
    "On Premises Exchange Server": "on-premises-exchange-server",
    "Out of Band Management Console": "out-of-band-management-console",
    "Out of Band Service Point": "out-of-band-service-point",
    "Reporting Services Point": "reporting-services-point",
    "Site Server": "site-server",
    "SMS Provider": "sms-provider",
    "Software Update Point": "software-update-point",
    "SQL Server": "sql-server",
    "State Migration Point": "state-migration-point",
    "System Health Validator": "system-health-validator",
    "Upstream WSUS Server": "upstream-wsus-server",
    "Windows Intune": "windows-intune",
    "Windows Intune Connector": "windows-intune-connector",
}

# Tables of the page that are not between two named computers, and the roles they get.
# Encoded differently from the page, on purpose:
# - "Client to Server Shares": the page names no server ("whenever they connect to UNC
#   shares", e.g. a CCMSetup.exe /source: path), so the server is any site system (another
#   client is not a server; a file server without a role leaves the flow unknown).
# - "Ports Used by Windows Server": the page names no roles at all: `any` to `any`.
# Role pairs a table row also holds, besides the one above: the site server's shares
# (CCMSetup.exe /source:\\<site server>\SMS_<site>\Client) are server shares too.
EXTRA_PAIRS = {"Client to Server Shares": {("client", "site-server")}}
OTHER_TABLES = {
    "Client to Server Shares": ("client", "site-system"),
    "Ports Used by Windows Server": ("any", "any"),
}

# Rules taken from the page's prose, not from a table row: (section, the page's words,
# transport, port). The words must be on the page. Deliberate encodings:
# - "Client --> System Health Validator" has no table, only text: DHCP enforcement (UDP 67
#   and 68), IPsec enforcement (TCP 80 or 443 to the Health Registration Authority, which is
#   taken as the system health validator), UDP 500 for IPsec negotiation (service `ike`).
#   "the additional ports needed for the IPsec filters" names no port: not encoded.
# - "Connections to Microsoft SQL Server": 4022 is SQL Server to SQL Server (intersite); 1433
#   is one rule per site system role the page lists under it.
# - "Installation Requirements for Site Systems that Support Internet-Based Clients": the
#   bullets, with "site system" as the pseudo-role `site-system`; the "< -->" SMB bullet also
#   carries note 5 (site server <-> site systems), which the page does not cite there, so that
#   "Require the site server to initiate connections" withdraws its site-system direction too.
# Not encoded at all: the ICMP echo of wake-up proxy ("Client --> Client"): ICMP has no port.
SHV = "Client --> System Health Validator"
SQL = "Connections to Microsoft SQL Server"
INSTALL = "Installation Requirements for Site Systems that Support Internet-Based Clients"
INTRASITE = (
    "Intrasite communication between the SQL Server database engine and various "
    "Configuration Manager site system roles default to port TCP 1433."
)
EPM_SITE_SYSTEM = "Site server --> site system: RPC endpoint mapper using UDP and TCP port 135."
EPM_DP = "Site server --> distribution point: RPC endpoint mapper using UDP and TCP port 135."
PROSE: list[tuple[str, str, str, int | str]] = [
    (SHV, "DHCP enforcement will use ports UDP 67 and 68.", "udp", 67),
    (SHV, "DHCP enforcement will use ports UDP 67 and 68.", "udp", 68),
    (
        SHV,
        "IPsec enforcement will use ports TCP 80 or 443 to the Health Registration Authority",
        "tcp",
        80,
    ),
    (
        SHV,
        "IPsec enforcement will use ports TCP 80 or 443 to the Health Registration Authority",
        "tcp",
        443,
    ),
    (SHV, "port UDP 500 for IPsec negotiation", "udp", 500),
    (
        SQL,
        "Intersite communications use the SQL Server Service Broker, which defaults to port "
        "TCP 4022.",
        "tcp",
        4022,
    ),
    (SQL, INTRASITE, "tcp", 1433),
    (INSTALL, EPM_SITE_SYSTEM, "udp", 135),
    (INSTALL, EPM_SITE_SYSTEM, "tcp", 135),
    (INSTALL, "Site server --> site system: RPC dynamic TCP ports.", "tcp", "dynamic"),
    (
        INSTALL,
        "Site server < --> site system: Server message blocks (SMB) using TCP port 445.",
        "tcp",
        445,
    ),
    (INSTALL, EPM_DP, "udp", 135),
    (INSTALL, EPM_DP, "tcp", 135),
    (INSTALL, "Site server --> distribution point: RPC dynamic TCP ports", "tcp", "dynamic"),
]
# "The following site system roles communicate directly with the SQL Server database:"
SQL_ROLES = {
    "application-catalog-web-service-point",
    "enrollment-point",
    "management-point",
    "site-server",
    "reporting-services-point",
    "sms-provider",
}

PortValue = int | tuple[int, int] | str


@dataclass(frozen=True)
class PageEntry:
    """One (section, row, transport, port) of a table of the page."""

    section: str
    row: str
    proto: str
    port: PortValue
    client_role: str
    server_role: str
    bidirectional: bool
    notes: frozenset[int]
    alternate: bool  # "Alternate Port Available" (note 2)


def collapse(text: str) -> str:
    return " ".join(text.split())


def normalise_arrows(text: str) -> str:
    """The page writes its arrows "-- >", "< -- >", "< -->", and breaks them across lines."""
    text = re.sub(r"<\s?--\s?>", "<-->", text)
    return re.sub(r"(?<!<)--\s?>", "-->", text)


_NAMES = "|".join(re.escape(name) for name in sorted(PAGE_ROLES, key=len, reverse=True))
_TITLE = re.compile(rf"({_NAMES}) (<\s?--\s?>|--\s?>) ({_NAMES})")
_PORT_CELL = re.compile(
    r"(?P<value>--|DYNAMIC|\d+-\d+|\d+(?: (?:and|or) \d+)?)"
    r"(?: \(See note (?P<note>\d)(?P<rest>.*)\))?"
)


def _section_of(head: str) -> tuple[str, str, str, bool, frozenset[int]]:
    """The title of the table whose header cell is ``head``: the last title before it."""
    candidates: list[tuple[int, str, str, str, bool]] = []
    for match in _TITLE.finditer(head):
        left, arrow, right = match.groups()
        both = arrow.startswith("<")
        title = f"{left} {'<-->' if both else '-->'} {right}"
        candidates.append((match.start(), title, PAGE_ROLES[left], PAGE_ROLES[right], both))
    for heading, (client, server) in OTHER_TABLES.items():
        at = head.rfind(heading)
        if at >= 0:
            candidates.append((at, heading, client, server, False))
    assert candidates, f"no section title before a table: {head[-200:]!r}"
    start, title, client, server, both = max(candidates)
    notes = frozenset({5}) if "(See note 5" in head[start:] else frozenset()
    return title, client, server, both, notes


def _ports_of(value: str) -> list[PortValue]:
    if value == "--":
        return []
    if value == "DYNAMIC":
        return ["dynamic"]
    if re.fullmatch(r"\d+-\d+", value):
        low, high = value.split("-")
        return [(int(low), int(high))]
    return [int(part) for part in re.findall(r"\d+", value)]


def page_entries(page: str) -> Iterator[PageEntry]:
    cells = page.split("|")
    for index in range(len(cells) - 2):
        head = collapse(cells[index])
        if not (
            head.endswith("Description")
            and collapse(cells[index + 1]) == "UDP"
            and collapse(cells[index + 2]) == "TCP"
        ):
            continue
        section, client, server, both, section_notes = _section_of(head[: -len("Description")])
        at = index + 3
        while at + 2 < len(cells):
            udp = _PORT_CELL.fullmatch(collapse(cells[at + 1]))
            tcp = _PORT_CELL.fullmatch(collapse(cells[at + 2]))
            if udp is None or tcp is None:
                break
            row = collapse(cells[at])
            for proto, match in (("udp", udp), ("tcp", tcp)):
                note = match["note"]
                notes = section_notes | ({int(note)} if note else set())
                alternate = "Alternate Port Available" in (match["rest"] or "")
                for port in _ports_of(match["value"]):
                    yield PageEntry(
                        section, row, proto, port, client, server, both, notes, alternate
                    )
            at += 3


def _port_text(port: PortValue) -> str:
    return f"{port[0]}-{port[1]}" if isinstance(port, tuple) else str(port)


def _port_value(text: str) -> PortValue:
    if text == "dynamic":
        return text
    low, _, high = text.partition("-")
    return (int(low), int(high)) if high else int(low)


def facts_text(page: str) -> str:
    """``tests/data/ports_page.tsv`` as it follows from the page: a row per (section, row,
    transport, port) of its tables, then the sentences the matrix quotes (``PROSE``, the
    Windows services sentence) with their sections."""
    yes = {True: "yes", False: "no"}
    lines = [
        '# Facts of Microsoft\'s documentation page "Ports used in Configuration Manager"',
        "# (System Center 2012 Configuration Manager; (c) Microsoft): the role pairs, ports,",
        "# notes and row names of its tables, and the sentences flowaudit's matrix quotes.",
        "# Made by tests/test_matrix.py (facts_text) from the page, which is not in the project.",
        "\t".join(PORTS_PAGE_COLUMNS),
    ]
    for entry in page_entries(page):
        cells = (
            "row",
            entry.section,
            entry.row,
            entry.proto,
            _port_text(entry.port),
            entry.client_role,
            entry.server_role,
            yes[entry.bidirectional],
            ",".join(str(note) for note in sorted(entry.notes)),
            yes[entry.alternate],
        )
        lines.append("\t".join(cells))
    text = collapse(page)
    quotes = [(section, words) for section, words, _, _ in PROSE]
    quotes.append(("Ports used in Configuration Manager", WINDOWS_SERVICES_SENTENCE))
    for section, words in dict.fromkeys(quotes):
        assert words in text, f"{words!r} is not on the page"
        lines.append("\t".join(("quote", section, words)))
    return "\n".join(lines) + "\n"


def test_the_facts_are_the_pages() -> None:
    found = sorted(SEEDS.glob("001_*.txt"))
    if not found:
        pytest.skip(f"the page is not at {SEEDS}: the facts the project carries stand alone")
    made = facts_text(found[0].read_text(encoding="utf-8"))
    assert PORTS_PAGE_FACTS.read_text(encoding="utf-8") == made, (
        f"{PORTS_PAGE_FACTS} differs from the page: python -c 'from tests.test_matrix import "
        "write_facts; write_facts()'"
    )


def write_facts() -> None:
    """Write ``tests/data/ports_page.tsv`` from the page beside the repository."""
    page = sorted(SEEDS.glob("001_*.txt"))[0].read_text(encoding="utf-8")
    PORTS_PAGE_FACTS.write_text(facts_text(page), encoding="utf-8")


@pytest.fixture(scope="module")
def page() -> str:
    """The page's sentences that the matrix quotes, with their sections, as one text."""
    return "\n".join(
        f"{fact['section']} | {fact['row']}"
        for fact in ports_page_facts()
        if fact["kind"] == "quote"
    )


@pytest.fixture(scope="module")
def entries() -> list[PageEntry]:
    return [
        PageEntry(
            fact["section"],
            fact["row"],
            fact["proto"],
            _port_value(fact["port"]),
            fact["client_role"],
            fact["server_role"],
            fact["bidirectional"] == "yes",
            frozenset(int(note) for note in fact["notes"].split(",") if note),
            fact["alternate"] == "yes",
        )
        for fact in ports_page_facts()
        if fact["kind"] == "row"
    ]


RULES = load_rules()


def _holds(rule: Rule, port: PortValue) -> bool:
    if port == "dynamic":
        return rule.ports is None
    return rule.ports is not None and port in rule.ports


# --- (a) coverage: the page against the table, both ways --------------------------------


def test_the_page_parser_sees_every_table(entries: list[PageEntry]) -> None:
    # A parser that silently found nothing would make the coverage test pass vacuously.
    sections = {entry.section for entry in entries}
    assert len(sections) == 60  # as many as the page has "Description | UDP | TCP" headers
    assert "Site Server <--> State Migration Point" in sections
    assert "Ports Used by Windows Server" in sections
    assert len(entries) == 145
    rpc = PageEntry(
        "Management Point <--> Site Server",
        "RPC",
        "tcp",
        "dynamic",
        "management-point",
        "site-server",
        True,
        frozenset({5}),
        False,
    )
    assert rpc in entries


def test_every_row_of_the_page_is_a_rule(entries: list[PageEntry]) -> None:
    problems = []
    for entry in entries:
        where = f"{entry.section} / {entry.row} / {entry.proto} {entry.port}"
        same_row = [
            rule
            for rule in RULES
            if (rule.section, rule.row, rule.proto) == (entry.section, entry.row, entry.proto)
        ]
        matching = [rule for rule in same_row if _holds(rule, entry.port)]
        if not matching:
            problems.append(f"missing: {where}")
            continue
        for rule in matching:
            pair = (rule.client_role, rule.server_role)
            if pair != (entry.client_role, entry.server_role) and pair not in EXTRA_PAIRS.get(
                entry.section, ()
            ):
                problems.append(f"{rule.id}: roles {rule.client_role} --> {rule.server_role}")
            if rule.bidirectional != entry.bidirectional:
                problems.append(f"{rule.id}: bidirectional should be {entry.bidirectional}")
            if set(rule.notes) != set(entry.notes):
                problems.append(f"{rule.id}: notes {rule.notes}, the page cites {entry.notes}")
            wants_alternate = entry.alternate or 3 in entry.notes
            if (rule.alternate is not None) != wants_alternate:
                problems.append(f"{rule.id}: alternate {rule.alternate!r} at {where}")
            if rule.source != "ports-page" or rule.from_text:
                problems.append(f"{rule.id}: a table row is source ports-page, not from_text")
    assert not problems, "\n".join(problems)


def test_every_table_rule_is_a_row_of_the_page(entries: list[PageEntry]) -> None:
    on_page: dict[tuple[str, str, str], set[PortValue]] = {}
    for entry in entries:
        on_page.setdefault((entry.section, entry.row, entry.proto), set()).add(entry.port)
    invented = []
    for rule in RULES:
        if rule.source != "ports-page" or rule.from_text:
            continue
        ports = on_page.get((rule.section, rule.row, rule.proto))
        written = {"dynamic"} if rule.ports is None else set(rule.ports)
        if ports is None or not written <= ports:
            invented.append(f"{rule.id}: {rule.section} / {rule.row} / {rule.proto} {written}")
    assert not invented, "\n".join(invented)


def test_the_state_migration_point_pair_has_no_rpc_dynamic_row() -> None:
    # The page lists SMB and the endpoint mapper for this pair but no RPC row: none invented.
    section = "Site Server <--> State Migration Point"
    assert sorted(r.service for r in RULES if r.section == section) == [
        "rpc-epm",
        "rpc-epm",
        "smb",
    ]


def test_every_prose_rule_is_on_the_page(page: str) -> None:
    text = normalise_arrows(collapse(page))
    problems = []
    for section, words, proto, port in PROSE:
        if normalise_arrows(section) not in text and section not in text:
            problems.append(f"section {section!r} is not on the page")
        if words not in collapse(page):
            problems.append(f"{words!r} is not on the page")
        if not any(
            rule.from_text
            and (rule.section, rule.row, rule.proto) == (section, words, proto)
            and _holds(rule, port)
            for rule in RULES
        ):
            problems.append(f"no rule for {section} / {words} / {proto} {port}")
    listed = {(section, words, proto) for section, words, proto, _ in PROSE}
    for rule in RULES:
        if rule.from_text and (rule.section, rule.row, rule.proto) not in listed:
            problems.append(f"{rule.id}: prose rule not listed in PROSE")
    assert not problems, "\n".join(problems)


def test_the_sql_server_list_gives_one_rule_per_role_it_names() -> None:
    intrasite = [rule for rule in RULES if rule.row == INTRASITE]
    assert {rule.client_role for rule in intrasite} == SQL_ROLES
    assert all(rule.server_role == "sql-server" and rule.ports == (1433,) for rule in intrasite)


def test_windows_services_rest_on_the_pages_sentence(page: str) -> None:
    assert WINDOWS_SERVICES_SENTENCE in collapse(page)
    services = [rule for rule in RULES if rule.source == "windows-services"]
    dc = ("any", "domain-controller")
    link = ("any", "any")  # link-local protocols and DHCPv6 are between any hosts
    expected = {
        ("kerberos", "udp"): dc,
        ("kerberos", "tcp"): dc,
        ("kpasswd", "udp"): dc,
        ("kpasswd", "tcp"): dc,
        ("ntp", "udp"): dc,
        ("ldap", "udp"): dc,
        ("ldap", "tcp"): dc,
        ("ldaps", "tcp"): dc,
        ("gc-ldap", "tcp"): dc,
        ("gc-ldaps", "tcp"): dc,
        ("adws", "tcp"): dc,
        ("netbios-ssn", "tcp"): dc,
        ("dns", "udp"): dc,
        ("dns", "tcp"): dc,
        ("smb", "tcp"): dc,
        ("rpc-epm", "tcp"): dc,
        ("rpc-dynamic", "tcp"): dc,
        ("dhcpv6", "udp"): link,
        ("llmnr", "udp"): link,
        ("llmnr", "tcp"): link,
        ("mdns", "udp"): link,
        ("ssdp", "udp"): link,
        ("ws-discovery", "udp"): link,
        ("rdp-udp", "udp"): ("console", "client"),
    }
    assert {(rule.service, rule.proto) for rule in services} == set(expected)
    for rule in services:
        assert (rule.client_role, rule.server_role) == expected[(rule.service, rule.proto)]
        assert WINDOWS_SERVICES_SENTENCE in rule.reference
    # They come after every rule of the page, so a page rule is named first when both allow.
    sources = [rule.source for rule in RULES]
    assert sources == sorted(sources, key=lambda source: source == "windows-services")


def test_page_notes_shape_the_special_rows() -> None:
    by_id = {rule.id: rule for rule in RULES}
    multicast = by_id["client-to-multicast-distribution-point-multicast"]
    assert (multicast.ports, multicast.group_sender) == (((63000, 64000),), "server")
    tftp = by_id["client-to-pxe-distribution-point-tftp"]
    assert (tftp.ports, tftp.answer_from_dynamic, tftp.notes) == ((69,), True, (4,))
    dhcp = by_id["client-to-pxe-distribution-point-pxe-dhcp"]
    assert (dhcp.ports, dhcp.group_sender) == ((67, 68), "either")
    assert by_id["client-to-software-update-point-http"].ports == (80, 8530)
    assert by_id["client-to-software-update-point-https"].alternate == "wsus-https"
    # Every other rule is judged by its initiator when it goes to a group.
    others = [
        r
        for r in RULES
        if r not in (multicast, dhcp) and r.service not in ("pxe-dhcp", "dhcp", "dhcpv6")
    ]
    assert {rule.group_sender for rule in others} == {"client"}


# --- (b) both directions of every <--> ------------------------------------------------------


def test_every_two_way_section_is_in_force_both_ways(entries: list[PageEntry]) -> None:
    in_force = rules_in_force(RULES)
    by_key = {(r.section, r.row, r.proto, r.client_role, r.server_role): r for r in in_force}
    two_way = [entry for entry in entries if entry.bidirectional]
    assert len({entry.section for entry in two_way}) == 14
    for entry in two_way:
        key = (entry.section, entry.row, entry.proto)
        forward = by_key.get((*key, entry.client_role, entry.server_role))
        backward = by_key.get((*key, entry.server_role, entry.client_role))
        assert forward is not None, f"no {entry.client_role} --> {entry.server_role}: {key}"
        assert backward is not None, f"no {entry.server_role} --> {entry.client_role}: {key}"
        assert _holds(forward, entry.port) and _holds(backward, entry.port)
        if entry.client_role != entry.server_role:
            assert (forward.reverse, backward.reverse) == (False, True)
            assert backward.id == forward.id + "-reverse"


def test_reverse_rules_swap_roles_and_only_two_way_rules_have_one() -> None:
    in_force = rules_in_force(RULES)
    ids = [rule.id for rule in in_force]
    assert len(ids) == len(set(ids))
    by_id = {rule.id: rule for rule in in_force}
    for rule in in_force:
        if rule.reverse:
            forward = by_id[rule.id.removesuffix("-reverse")]
            assert forward.bidirectional and not forward.reverse
            assert (rule.client_role, rule.server_role) == (
                forward.server_role,
                forward.client_role,
            )
            assert (rule.proto, rule.ports, rule.service, rule.notes, rule.reference) == (
                forward.proto,
                forward.ports,
                forward.service,
                forward.notes,
                forward.reference,
            )
        elif not rule.bidirectional:
            assert rule.id + "-reverse" not in by_id
    written_two_way = sum(rule.bidirectional * _expands_to(rule) for rule in RULES)
    assert sum(rule.reverse for rule in in_force) == written_two_way


def _site_system(rule: Rule) -> bool:
    return any(p in (rule.client_role, rule.server_role) for p in EXPANSIONS)


def _expands_to(rule: Rule) -> int:
    pseudo = [p for p in EXPANSIONS if p in (rule.client_role, rule.server_role)]
    return len(EXPANSIONS[pseudo[0]]) if pseudo else 1


def test_site_system_becomes_each_site_system_role() -> None:
    assert set(SITE_SYSTEM_ROLES) <= set(ROLES)
    in_force = rules_in_force(RULES)
    assert not any(_site_system(rule) for rule in in_force)
    smb = [
        r
        for r in in_force
        if r.id.startswith("internet-install-site-server-to-") and r.id.endswith("-smb")
    ]
    # "Management points and distribution points that support internet-based clients, the
    # software update point, and the fallback status point": those four only.
    assert [r.server_role for r in smb] == list(INTERNET_SITE_SYSTEM_ROLES)
    assert smb[0].id == "internet-install-site-server-to-management-point-smb"
    back = {
        r.client_role for r in in_force if r.id.endswith("-smb-reverse") and r.row == smb[0].row
    }
    assert back == set(INTERNET_SITE_SYSTEM_ROLES)
    assert all(5 in r.notes for r in in_force if r.row == smb[0].row)
    shares = [r.server_role for r in in_force if r.id.startswith("client-to-") and "shares" in r.id]
    assert set(SITE_SYSTEM_ROLES) <= set(shares)
    written = sum(_expands_to(r) for r in RULES)
    assert len(in_force) == written + sum(r.reverse for r in in_force)


def test_rules_in_force_keep_the_written_order() -> None:
    expected = []
    for rule in RULES:
        pseudo = [p for p in EXPANSIONS if p in (rule.client_role, rule.server_role)]
        name = pseudo[0] if pseudo else SITE_SYSTEM
        for role in EXPANSIONS[pseudo[0]] if pseudo else (SITE_SYSTEM,):
            expected.append(rule.id.replace(name, role))
            if rule.bidirectional:
                expected.append(rule.id.replace(name, role) + "-reverse")
    assert [rule.id for rule in rules_in_force(RULES)] == expected


# --- (c) alternate ports --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ports"),
    [
        ("http", (8080,)),
        ("https", (8443,)),
        ("client-notification", (10124,)),
        ("sql", (1500,)),
        ("sql-service-broker", (4023,)),
        ("wsus-http", (8530,)),
        ("wsus-https", (8531,)),
        ("wake-on-lan", (12287,)),
        ("wakeup-proxy", (25537,)),
    ],
)
def test_alternate_ports_replace_only_their_own_rules(key: str, ports: tuple[int, ...]) -> None:
    documented = rules_in_force(RULES)
    custom = rules_in_force(RULES, {key: ports})
    assert [rule.id for rule in custom] == [rule.id for rule in documented]
    changed = 0
    for before, after in zip(documented, custom, strict=True):
        if before.alternate == key:
            assert after.ports == ports and after.allows_port(ports[0])
            changed += 1
        else:
            assert after == before
    assert changed > 0


def test_the_site_http_port_leaves_wsus_alone() -> None:
    by_id = {rule.id: rule for rule in rules_in_force(RULES, {"http": (8080,)})}
    assert by_id["client-to-management-point-http"].ports == (8080,)
    assert not by_id["client-to-management-point-http"].allows_port(80)
    assert by_id["client-to-software-update-point-http"].ports == (80, 8530)
    wsus = rules_in_force(RULES, {"wsus-http": (8530,), "wsus-https": (8531,)})
    by_id = {rule.id: rule for rule in wsus}
    assert by_id["site-server-to-software-update-point-http-reverse"].ports == (8530,)
    assert by_id["client-to-software-update-point-https"].ports == (8531,)
    assert by_id["client-to-management-point-http"].ports == (80,)


def test_alternate_keys_are_site_file_port_keys() -> None:
    from flowaudit.site import PORT_KEYS

    assert set(ALTERNATE_KEYS) <= set(PORT_KEYS)
    assert {rule.alternate for rule in RULES} - {None} <= set(ALTERNATE_KEYS)


# --- (d) note 3 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "problem"),
    [
        ({"wsus-http": (80,), "wsus-https": (443,)}, None),
        ({"wsus-http": (8530,), "wsus-https": (8531,)}, None),
        ({"wsus-http": (8080,), "wsus-https": (8081,)}, None),
        ({"wsus-http": (8530,)}, None),
        ({"wsus-https": (8531,)}, None),
        ({}, None),
        (
            {"wsus-http": (80,), "wsus-https": (8531,)},
            "wsus-https must be 443 when wsus-http is 80 (ports page, note 3)",
        ),
        (
            {"wsus-http": (8530,), "wsus-https": (443,)},
            "wsus-https must be 8531 when wsus-http is 8530 (ports page, note 3)",
        ),
        (
            {"wsus-http": (8530,), "wsus-https": (8532,)},
            "wsus-https must be 8531 when wsus-http is 8530 (ports page, note 3)",
        ),
        (
            {"wsus-http": ((8530, 8540),), "wsus-https": (8531,)},
            "wsus-http and wsus-https must be single ports",
        ),
        (
            {"wsus-http": (80, 8530), "wsus-https": (443,)},
            "wsus-http and wsus-https must be single ports",
        ),
    ],
)
def test_wsus_https_port_follows_the_http_port(
    ports: dict[str, tuple[Any, ...]], problem: str | None
) -> None:
    assert check_wsus_ports(ports) == problem


# --- (e) validation -------------------------------------------------------------------------

GOOD_RULE = """\
  - id: r-one
    section: "Client --> Management Point"
    row: "Hypertext Transfer Protocol (HTTP)"
    client_role: client
    server_role: management-point
    bidirectional: false
    proto: tcp
    ports: [80]
    service: http
    source: ports-page
"""
HEAD = 'version: 1\ndocument: "Ports used in Configuration Manager"\nsource: "x"\nrules:\n'


def _edit(field: str, value: str | None, extra: str = "") -> str:
    lines = []
    for line in GOOD_RULE.splitlines():
        if line.strip().startswith(f"{field}:") or line.startswith(f"  - {field}:"):
            if value is None:
                continue
            prefix = line[: line.index(field)]
            line = f"{prefix}{field}: {value}"
        lines.append(line)
    return HEAD + "\n".join(lines) + "\n" + extra


BAD_TABLES = [
    (
        _edit("ports", "[70000]"),
        "bad.yaml:12: rule 1 (r-one): ports: 70000 is not a port (1-65535)",
    ),
    (_edit("ports", "[0]"), "bad.yaml:12: rule 1 (r-one): ports: 0 is not a port (1-65535)"),
    (
        _edit("ports", "[[9000, 8000]]"),
        "bad.yaml:12: rule 1 (r-one): ports: [9000, 8000]: lo is above hi",
    ),
    (
        _edit("ports", "[[1, 2, 3]]"),
        "bad.yaml:12: rule 1 (r-one): ports: [1, 2, 3] is not a [lo, hi] range",
    ),
    (_edit("ports", "[true]"), "bad.yaml:12: rule 1 (r-one): ports: True is not a port"),
    (
        _edit("ports", "[]"),
        "bad.yaml:12: rule 1 (r-one): ports: expected a list of ports and [lo, hi] ranges, or "
        '"dynamic"',
    ),
    (
        _edit("ports", "any"),
        "bad.yaml:12: rule 1 (r-one): ports: expected a list of ports and [lo, hi] ranges, or "
        '"dynamic"',
    ),
    (
        _edit("proto", "sctp"),
        "bad.yaml:11: rule 1 (r-one): proto: unknown proto 'sctp' (expected one of tcp, udp)",
    ),
    (
        _edit("client_role", "toaster"),
        "bad.yaml:8: rule 1 (r-one): client_role: unknown role 'toaster' "
        "(expected one of site-server, ",
    ),
    (
        _edit("server_role", "Management Point"),
        "bad.yaml:9: rule 1 (r-one): server_role: unknown role 'Management Point' ",
    ),
    (
        _edit("service", "gopher"),
        "bad.yaml:13: rule 1 (r-one): service: unknown service 'gopher' (expected one of smb, ",
    ),
    (_edit("service", None), "bad.yaml:5: rule 1 (r-one): service: missing"),
    (
        _edit("source", None, "    colour: red\n"),
        "bad.yaml:14: rule 1 (r-one): colour: unknown key",
    ),
    (
        _edit("source", "a-blog"),
        "bad.yaml:14: rule 1 (r-one): source: unknown source 'a-blog' "
        "(expected one of ports-page, windows-services)",
    ),
    (
        _edit("bidirectional", "'yes'"),
        "bad.yaml:10: rule 1 (r-one): bidirectional: 'yes' is not true or false",
    ),
    (
        _edit("source", "ports-page", "    group_sender: everyone\n"),
        "bad.yaml:15: rule 1 (r-one): group_sender: unknown group sender 'everyone' "
        "(expected one of client, server, either)",
    ),
    (
        _edit("source", "ports-page", "    notes: [6]\n"),
        "bad.yaml:15: rule 1 (r-one): notes: 6 is not a note of the page (1-5)",
    ),
    (
        _edit("source", "ports-page", "    notes: [2, 2]\n"),
        "bad.yaml:15: rule 1 (r-one): notes: a note is given twice",
    ),
    (
        _edit("source", "ports-page", "    alternate: ftp\n"),
        "bad.yaml:15: rule 1 (r-one): alternate: unknown alternate 'ftp' (expected one of http, ",
    ),
    (
        _edit("source", "ports-page", "    answer_from_dynamic: 1\n"),
        "bad.yaml:15: rule 1 (r-one): answer_from_dynamic: 1 is not true or false",
    ),
    (_edit("id", "Client_MP"), "bad.yaml:5: rule 1 (Client_MP): id: 'Client_MP' is not kebab-case"),
    (
        _edit("id", "r-one-reverse"),
        "bad.yaml:5: rule 1 (r-one-reverse): id: '-reverse' is kept for the reverse of a <--> rule",
    ),
    (
        _edit("server_role", "site-system"),
        "bad.yaml:5: rule 1 (r-one): id: a rule with the role site-system needs it in its id",
    ),
    (_edit("row", '""'), "bad.yaml:7: rule 1 (r-one): row: expected non-empty text"),
    (HEAD + GOOD_RULE + GOOD_RULE, "bad.yaml:15: rule 2 (r-one): id: given twice"),
    (HEAD + "  - just text\n", "bad.yaml:5: rule 1: expected a mapping"),
    # A key given twice is read by the line-numbered reader (libyaml would keep the last).
    (_edit("source", "ports-page", "    service: https\n"), "bad.yaml:15: service: given twice"),
    (
        HEAD.replace("version: 1", "version: 2") + GOOD_RULE,
        "bad.yaml:1: version: 2 is not a version this flowaudit reads (1)",
    ),
    (HEAD + GOOD_RULE + "colour: red\n", "bad.yaml:15: colour: unknown key"),
    (
        _edit("source", "ports-page", "    when: pxe\n"),
        "bad.yaml:15: rule 1 (r-one): when: unknown when 'pxe' (expected one of multicast)",
    ),
    (HEAD.replace('source: "x"\n', "") + GOOD_RULE, "bad.yaml:1: source: missing"),
    (HEAD.replace("rules:\n", "rules: {}\n"), "bad.yaml:4: rules: expected a list of rules"),
    ("rules: [\n", "bad.yaml:2: not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TABLES)
def test_a_bad_table_is_one_line_naming_file_rule_and_field(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_rules(text, name="bad.yaml")
    got = str(caught.value)
    assert "\n" not in got
    assert got.startswith(message), got


def test_the_good_rule_of_the_bad_table_cases_loads() -> None:
    # Each bad case differs from this one in the field it names, and only there.
    [rule] = load_rules(HEAD + GOOD_RULE, name="good.yaml")
    assert (rule.id, rule.ports, rule.group_sender, rule.notes) == ("r-one", (80,), "client", ())


def test_the_fast_reader_reads_the_table_as_the_line_numbered_one_does() -> None:
    text = TABLE.read_text(encoding="utf-8")
    assert load_rules(text) == list(_rules_of(read_yaml(text, "matrix.yaml")))


def test_the_installed_table_is_cached_but_each_call_gets_its_own_list() -> None:
    first, second = load_rules(), load_rules()
    assert first == second and first is not second
    first.clear()
    assert load_rules() == second


def test_every_written_role_and_service_is_known() -> None:
    assert set(ROLES) <= set(MATRIX_ROLES)
    assert {"any", "site-system"}.isdisjoint(ROLES)
    assert len(ROLES) == len(set(ROLES)) == 33


# --- (f) to_dict, reference, ports ----------------------------------------------------------


def test_to_dict_is_json_ready_with_ports_as_the_table_writes_them() -> None:
    by_id = {rule.id: rule for rule in rules_in_force(RULES)}
    http = by_id["client-to-management-point-http"].to_dict()
    assert http == {
        "id": "client-to-management-point-http",
        "client_role": "client",
        "server_role": "management-point",
        "proto": "tcp",
        "ports": [80],
        "service": "http",
        "bidirectional": False,
        "reference": 'Ports used in Configuration Manager: "Client --> Management Point", '
        'row "Hypertext Transfer Protocol (HTTP)"',
        "section": "Client --> Management Point",
        "row": "Hypertext Transfer Protocol (HTTP)",
        "notes": [2],
        "alternate": "http",
        "source": "ports-page",
    }
    assert by_id["client-to-multicast-distribution-point-multicast"].to_dict()["ports"] == [
        [63000, 64000]
    ]
    assert by_id["client-to-software-update-point-http"].to_dict()["ports"] == [80, 8530]
    rpc = by_id["management-point-to-site-server-rpc-dynamic-reverse"].to_dict()
    assert (rpc["ports"], rpc["client_role"], rpc["bidirectional"]) == (
        "dynamic",
        "site-server",
        True,
    )
    for rule in by_id.values():
        assert json.loads(json.dumps(rule.to_dict())) == rule.to_dict()


def test_prose_rules_say_text_not_row() -> None:
    [ike] = [rule for rule in RULES if rule.service == "ike"]
    assert ike.reference == (
        'Ports used in Configuration Manager: "Client --> System Health Validator", '
        'text "port UDP 500 for IPsec negotiation"'
    )


@pytest.mark.parametrize(
    ("ports", "port", "allowed"),
    [
        ((80,), 80, True),
        ((80,), 81, False),
        ((80, 8530), 8530, True),
        (((63000, 64000),), 63000, True),
        (((63000, 64000),), 64000, True),
        (((63000, 64000),), 64001, False),
        (((63000, 64000),), 62999, False),
        (None, 49731, True),
        (None, 1, True),
    ],
)
def test_allows_port(ports: Any, port: int, allowed: bool) -> None:
    rule = replace(RULES[0], ports=ports)
    assert rule.allows_port(port) is allowed
    assert rule.dynamic is (ports is None)
