"""The expected communication matrix: load ``signatures/matrix.yaml`` and put its rules in force.

``matrix.yaml`` holds one rule per (row, transport) of Microsoft's "Ports used in
Configuration Manager" page, as written: a ``<-->`` row is one rule marked ``bidirectional``,
a rule may name the pseudo-role ``site-system``, and the documented ports stand. The rules *in
force* (``rules_in_force``) are what the audit holds flows against: each ``<-->`` rule also in
its reverse direction, ``site-system`` replaced by each site system role, and the site's
alternate ports (notes 2 and 3 of the page) in place of the documented ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from flowaudit.errors import InputError
from flowaudit.yamlfile import YamlDocument, read_yaml

PortSpec = int | tuple[int, int]

DOCUMENT = "Ports used in Configuration Manager"

# The roles of the ports page, as kebab-case ids, in the order a host's roles are listed.
# "Configuration Manager Console" is `console`; "Domain Controller" and "Global Catalog Domain
# Controller" are both `domain-controller`; "Distribution Point Configured for Multicast/PXE"
# is `distribution-point`.
ROLES: tuple[str, ...] = (
    "site-server",
    "sql-server",
    "management-point",
    "distribution-point",
    "software-update-point",
    "sms-provider",
    "fallback-status-point",
    "reporting-services-point",
    "state-migration-point",
    "enrollment-point",
    "enrollment-proxy-point",
    "endpoint-protection-point",
    "asset-intelligence-synchronization-point",
    "application-catalog-website-point",
    "application-catalog-web-service-point",
    "system-health-validator",
    "out-of-band-service-point",
    "out-of-band-management-console",
    "amt-management-controller",
    "exchange-server-connector",
    "exchange-online",
    "on-premises-exchange-server",
    "windows-intune-connector",
    "windows-intune",
    "cloud-based-distribution-point",
    "upstream-wsus-server",
    "console",
    "domain-controller",
    "mac-computer",
    "mobile-device",
    "microsoft",
    "internet",
    "client",
)

# Pseudo-roles that only the matrix uses (never a role a host holds in a site file).
ANY_ROLE = "any"  # any host: the "Ports Used by Windows Server" rows name no roles
SITE_SYSTEM = "site-system"  # the generic "site system" of the page's additional lists

# What "site system" stands for: the site system roles the page names that a site server
# installs and configures on a server of its own (note 5: "The site server initiates
# communication to configure the site system"), including the site database server ("Site
# server to site database server") and the SMS Provider. Left out: the site server itself
# (its own "Site Server <--> Site Server" row), the cloud-based distribution point (a cloud
# service the site server reaches over HTTPS only), and hosts that are not site systems.
SITE_SYSTEM_ROLES: tuple[str, ...] = (
    "management-point",
    "distribution-point",
    "software-update-point",
    "fallback-status-point",
    "reporting-services-point",
    "state-migration-point",
    "system-health-validator",
    "application-catalog-website-point",
    "application-catalog-web-service-point",
    "asset-intelligence-synchronization-point",
    "endpoint-protection-point",
    "enrollment-point",
    "enrollment-proxy-point",
    "out-of-band-service-point",
    "exchange-server-connector",
    "windows-intune-connector",
    "sms-provider",
    "sql-server",
)

# The site systems of "Installation Requirements for Site Systems that Support Internet-Based
# Clients": "Management points and distribution points that support internet-based clients,
# the software update point, and the fallback status point".
INTERNET_SITE_SYSTEM = "internet-site-system"
INTERNET_SITE_SYSTEM_ROLES: tuple[str, ...] = (
    "management-point",
    "distribution-point",
    "software-update-point",
    "fallback-status-point",
)
# What each pseudo-role stands for in the rules in force.
EXPANSIONS: dict[str, tuple[str, ...]] = {
    SITE_SYSTEM: SITE_SYSTEM_ROLES,
    INTERNET_SITE_SYSTEM: INTERNET_SITE_SYSTEM_ROLES,
}

MATRIX_ROLES: tuple[str, ...] = (*ROLES, ANY_ROLE, SITE_SYSTEM, INTERNET_SITE_SYSTEM)

# Roles of hosts that exist whether or not there is a ConfigMgr site: the matrix names them as
# the far end of a site's communications, but a flow between two of them (a workstation's
# domain controller talking to another, two hosts on the internet) is nothing the ports page
# says anything about, and is not judged (verdict unknown).
PEER_ROLES: frozenset[str] = frozenset(
    {
        "internet",
        "microsoft",
        "domain-controller",
        "exchange-online",
        "on-premises-exchange-server",
        "windows-intune",
        "upstream-wsus-server",
    }
)
# Hosts that are ConfigMgr clients, not site systems: their traffic to the internet (browsing,
# cloud services) is theirs, not the site's, and is not judged either.
CLIENT_ROLES: frozenset[str] = frozenset({"client", "mac-computer", "mobile-device"})


def judged_pair(
    client_roles: Sequence[str],
    server_roles: Sequence[str],
    peer_roles: frozenset[str] | set[str] = PEER_ROLES,
) -> bool:
    """Whether the matrix has anything to say about a flow between hosts of these roles.

    At least one end must hold a ConfigMgr role (not a peer role), and a ConfigMgr client
    talking with the internet is the client's own business: the ports page lists the site
    systems' internet communications, never a client's.
    """
    own_client = [r for r in client_roles if r not in peer_roles]
    own_server = [r for r in server_roles if r not in peer_roles]
    if not own_client and not own_server:
        return False
    internet_end = "internet" in client_roles or "internet" in server_roles
    if internet_end:
        own = own_client or own_server
        if all(r in CLIENT_ROLES for r in own):
            return False
    return True


@lru_cache(maxsize=1)
def service_names() -> tuple[str, ...]:
    """The services of ``services.yaml``: the one list of service names (a matrix rule may name
    no other, so every rule can match a flow the classifier names)."""
    table = resources.files("flowaudit.tables") / "services.yaml"
    data = yaml.load(table.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return tuple(data["services"])


# The site.yaml `ports` keys, which a rule's `alternate` may name.
ALTERNATE_KEYS: tuple[str, ...] = (
    "http",
    "https",
    "client-notification",
    "sql",
    "sql-service-broker",
    "rpc-dynamic",
    "wsus-http",
    "wsus-https",
    "wake-on-lan",
    "wakeup-proxy",
    "remote-control",
)

PROTOS = ("tcp", "udp")
GROUP_SENDERS = ("client", "server", "either")
SOURCES = ("ports-page", "windows-services")
NOTES = (1, 2, 3, 4, 5)
DYNAMIC = "dynamic"

# The page's sentence the `windows-services` rules rest on (its introduction).
WINDOWS_SERVICES_SENTENCE = (
    "The port listings that follow are used by Configuration Manager and do not include "
    "information for standard Windows services, such as Group Policy settings for Active "
    "Directory Domain Services and Kerberos authentication."
)

_REQUIRED = (
    "id",
    "section",
    "row",
    "client_role",
    "server_role",
    "bidirectional",
    "proto",
    "ports",
    "service",
    "source",
)
_OPTIONAL = ("alternate", "notes", "group_sender", "answer_from_dynamic", "from_text", "when")
# A row that presupposes a site system's configuration ("Distribution Point Configured for
# Multicast"): when a general row allows the same flow, the general row names it.
WHEN = ("multicast",)
_TOP_KEYS = ("version", "document", "source", "rules")
_ID_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_REVERSE_SUFFIX = "-reverse"


@dataclass(frozen=True)
class Rule:
    """One expected communication: who starts it, who answers, transport, ports, service."""

    id: str
    section: str
    row: str
    client_role: str
    server_role: str
    proto: str
    ports: tuple[PortSpec, ...] | None  # None: the RPC dynamic ports
    service: str
    bidirectional: bool
    alternate: str | None
    notes: tuple[int, ...]
    group_sender: str
    answer_from_dynamic: bool
    source: str
    reverse: bool = False  # the second direction of a <--> rule (its id ends in "-reverse")
    from_text: bool = False  # the page gives it in prose, not in a table row
    document: str = DOCUMENT
    # Which end ("client" or "server") stood for internet-site-system before the rule was put
    # in force: such a rule holds only for a site system the site file declares internet-facing.
    internet_facing_end: str | None = None
    when: str | None = None  # WHEN: the configuration the row presupposes

    @property
    def dynamic(self) -> bool:
        return self.ports is None

    @property
    def group_senders(self) -> tuple[str, ...]:
        """The roles that may send this rule's traffic to a multicast or broadcast group."""
        return {
            "client": (self.client_role,),
            "server": (self.server_role,),
            "either": (self.client_role, self.server_role),
        }[self.group_sender]

    @property
    def reference(self) -> str:
        """Where the rule comes from, quoting the page's section and row."""
        if self.source == "windows-services":
            return f'{self.document}: not listed there ("{WINDOWS_SERVICES_SENTENCE}"): {self.row}'
        kind = "text" if self.from_text else "row"
        return f'{self.document}: "{self.section}", {kind} "{self.row}"'

    def allows_port(self, port: int) -> bool:
        """Whether the server port is one of the rule's ports (any port for dynamic RPC)."""
        if self.ports is None:
            return True
        for spec in self.ports:
            if isinstance(spec, tuple):
                if spec[0] <= port <= spec[1]:
                    return True
            elif spec == port:
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ports as ints, ``[lo, hi]`` lists, or ``"dynamic"``."""
        ports: Any = (
            DYNAMIC
            if self.ports is None
            else [list(spec) if isinstance(spec, tuple) else spec for spec in self.ports]
        )
        return {
            "id": self.id,
            "client_role": self.client_role,
            "server_role": self.server_role,
            "proto": self.proto,
            "ports": ports,
            "service": self.service,
            "bidirectional": self.bidirectional,
            "reference": self.reference,
            "section": self.section,
            "row": self.row,
            "notes": list(self.notes),
            "alternate": self.alternate,
            "source": self.source,
        }


class _RuleChecker:
    """Validates one rule mapping; every error is one line naming file, rule and field."""

    def __init__(self, doc: YamlDocument, index: int, entry: Any) -> None:
        self.doc = doc
        self.index = index
        self.entry = entry
        self.rule_id = entry.get("id") if isinstance(entry, dict) else None

    def error(self, field: str | None, message: str) -> InputError:
        path: tuple[Any, ...] = (
            ("rules", self.index) if field is None else ("rules", self.index, field)
        )
        line = self.doc.line(path)
        where = f"{self.doc.name}:{line}" if line else self.doc.name
        label = f"rule {self.index + 1}"
        if isinstance(self.rule_id, str):
            label += f" ({self.rule_id})"
        return InputError(
            f"{where}: {label}: {field}: {message}" if field else f"{where}: {label}: {message}"
        )

    def text(self, field: str) -> str:
        value = self.entry[field]
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, "expected non-empty text")
        return value

    def flag(self, field: str, default: bool) -> bool:
        value = self.entry.get(field, default)
        if not isinstance(value, bool):
            raise self.error(field, f"{value!r} is not true or false")
        return value

    def choice(self, field: str, allowed: Sequence[str], default: str | None = None) -> str:
        value = self.entry.get(field, default)
        if value not in allowed:
            what = "role" if field.endswith("_role") else field.replace("_", " ")
            raise self.error(
                field, f"unknown {what} {value!r} (expected one of {', '.join(allowed)})"
            )
        return str(value)

    def ports(self) -> tuple[PortSpec, ...] | None:
        value = self.entry["ports"]
        if value == DYNAMIC:
            return None
        if not isinstance(value, list) or not value:
            raise self.error("ports", 'expected a list of ports and [lo, hi] ranges, or "dynamic"')
        specs: list[PortSpec] = []
        for item in value:
            if isinstance(item, list):
                if len(item) != 2 or not all(_is_int(p) for p in item):
                    raise self.error("ports", f"{item!r} is not a [lo, hi] range")
                low, high = item
                for port in (low, high):
                    self._check_port(port)
                if low > high:
                    raise self.error("ports", f"{item!r}: lo is above hi")
                specs.append((low, high))
            elif _is_int(item):
                self._check_port(item)
                specs.append(item)
            else:
                raise self.error("ports", f"{item!r} is not a port")
        return tuple(specs)

    def _check_port(self, port: int) -> None:
        if not 1 <= port <= 65535:
            raise self.error("ports", f"{port} is not a port (1-65535)")

    def notes(self) -> tuple[int, ...]:
        value = self.entry.get("notes", [])
        if not isinstance(value, list):
            raise self.error("notes", "expected a list of note numbers")
        for note in value:
            if not _is_int(note) or note not in NOTES:
                raise self.error("notes", f"{note!r} is not a note of the page (1-5)")
        if len(set(value)) != len(value):
            raise self.error("notes", "a note is given twice")
        return tuple(value)

    def check(self) -> Rule:
        if not isinstance(self.entry, dict):
            raise self.error(None, "expected a mapping")
        for key in self.entry:
            if key not in _REQUIRED and key not in _OPTIONAL:
                raise self.error(str(key), "unknown key")
        for key in _REQUIRED:
            if key not in self.entry:
                raise self.error(key, "missing")
        rule_id = self.text("id")
        if not _ID_PATTERN.fullmatch(rule_id):
            raise self.error("id", f"{rule_id!r} is not kebab-case")
        if rule_id.endswith(_REVERSE_SUFFIX):
            raise self.error("id", f"'{_REVERSE_SUFFIX}' is kept for the reverse of a <--> rule")
        client_role = self.choice("client_role", MATRIX_ROLES)
        server_role = self.choice("server_role", MATRIX_ROLES)
        for pseudo in EXPANSIONS:
            if pseudo in (client_role, server_role) and pseudo not in rule_id:
                raise self.error("id", f"a rule with the role {pseudo} needs it in its id")
        alternate = self.entry.get("alternate")
        if alternate is not None:
            alternate = self.choice("alternate", ALTERNATE_KEYS)
        return Rule(
            id=rule_id,
            section=self.text("section"),
            row=self.text("row"),
            client_role=client_role,
            server_role=server_role,
            proto=self.choice("proto", PROTOS),
            ports=self.ports(),
            service=self.choice("service", service_names()),
            bidirectional=self.flag("bidirectional", False),
            alternate=alternate,
            notes=self.notes(),
            group_sender=self.choice("group_sender", GROUP_SENDERS, "client"),
            answer_from_dynamic=self.flag("answer_from_dynamic", False),
            source=self.choice("source", SOURCES),
            from_text=self.flag("from_text", False),
            when=self.choice("when", WHEN) if "when" in self.entry else None,
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Unsupported(Exception):
    """A YAML feature the fast reader leaves to ``read_yaml`` (duplicate or merge keys)."""


_MERGE_TAG = "tag:yaml.org,2002:merge"
_CLoader: Any = getattr(yaml, "CSafeLoader", None)

if _CLoader is not None:

    class _FastLoader(_CLoader):
        """libyaml's safe loader that refuses what ``read_yaml`` would read differently."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
            keys = set()
            for key_node, _value in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    raise _Unsupported
                if (key_node.tag, key_node.value) in keys:
                    raise _Unsupported
                keys.add((key_node.tag, key_node.value))
            return super().construct_mapping(node, deep=deep)


def _fast_document(text: str | bytes, name: str) -> YamlDocument | None:
    """The data through libyaml, without line numbers; None when only ``read_yaml`` will do."""
    if _CLoader is None:
        return None
    try:
        data = yaml.load(text, Loader=_FastLoader)  # libyaml + SafeConstructor
    except (yaml.YAMLError, _Unsupported):
        return None
    return YamlDocument(name, data)


def _parse(text: str | bytes, name: str) -> tuple[Rule, ...]:
    """Validated rules. The table is read through libyaml first (the pure-Python reader with
    line numbers takes ~0.1 s on it); any error is found again with ``read_yaml`` so that the
    message names the line."""
    fast = _fast_document(text, name)
    if fast is not None:
        try:
            return _rules_of(fast)
        except InputError:
            pass
    return _rules_of(read_yaml(text, name))


def _rules_of(doc: YamlDocument) -> tuple[Rule, ...]:
    top = doc.data
    if not isinstance(top, dict):
        raise doc.error((), f"expected a mapping with the keys {', '.join(_TOP_KEYS)}")
    for key in top:
        if key not in _TOP_KEYS:
            raise doc.error((key,), "unknown key")
    for key in _TOP_KEYS:
        if key not in top:
            raise doc.error((key,), "missing")
    if top["version"] != 1:
        raise doc.error(
            ("version",), f"{top['version']!r} is not a version this flowaudit reads (1)"
        )
    if not isinstance(top["rules"], list):
        raise doc.error(("rules",), "expected a list of rules")
    document = top["document"]
    if not isinstance(document, str) or not document.strip():
        raise doc.error(("document",), "expected the title of the page the rules come from")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, entry in enumerate(top["rules"]):
        checker = _RuleChecker(doc, index, entry)
        rule = checker.check()
        if rule.id in seen:
            raise checker.error("id", "given twice")
        seen.add(rule.id)
        rules.append(replace(rule, document=document))
    return tuple(rules)


@lru_cache(maxsize=1)
def _default_rules() -> tuple[Rule, ...]:
    table = resources.files("flowaudit.tables") / "matrix.yaml"
    return _parse(table.read_bytes(), "matrix.yaml")


def load_rules(text: str | None = None, name: str = "matrix.yaml") -> list[Rule]:
    """The rules as written (validated); without ``text``, the installed ``matrix.yaml``."""
    if text is None:
        return list(_default_rules())
    return list(_parse(text, name))


def _reversed(rule: Rule) -> Rule:
    sender = {"client": "server", "server": "client"}.get(rule.group_sender, rule.group_sender)
    return replace(
        rule,
        id=rule.id + _REVERSE_SUFFIX,
        client_role=rule.server_role,
        server_role=rule.client_role,
        group_sender=sender,
        reverse=True,
        internet_facing_end={"client": "server", "server": "client"}.get(
            rule.internet_facing_end or ""
        ),
    )


def _site_systems(rule: Rule) -> Iterator[Rule]:
    """The rule, or one rule per role its pseudo-role (``site-system``, ...) stands for."""
    pseudo = next((p for p in EXPANSIONS if p in (rule.client_role, rule.server_role)), None)
    if pseudo is None:
        yield rule
        return
    facing_end = None
    if pseudo == INTERNET_SITE_SYSTEM:
        facing_end = "client" if rule.client_role == pseudo else "server"
    for role in EXPANSIONS[pseudo]:
        yield replace(
            rule,
            id=rule.id.replace(pseudo, role),
            client_role=role if rule.client_role == pseudo else rule.client_role,
            server_role=role if rule.server_role == pseudo else rule.server_role,
            internet_facing_end=facing_end,
        )


def rules_in_force(
    rules: Sequence[Rule], ports: Mapping[str, tuple[PortSpec, ...]] | None = None
) -> list[Rule]:
    """The rules the audit holds flows against, in the order written.

    Each rule whose role is ``site-system`` becomes one rule per ``SITE_SYSTEM_ROLES`` entry
    (``site-system`` in its id replaced by the role); each ``<-->`` rule is followed by its
    reverse (roles swapped, ``reverse=True``, id + ``-reverse``); and a rule whose ``alternate``
    key is in ``ports`` takes those ports instead of the documented ones (page note 2, "If a
    custom port has been defined, substitute that custom port"; note 3 for WSUS).
    """
    ports = ports or {}
    in_force: list[Rule] = []
    for written in rules:
        if written.alternate is not None and written.alternate in ports:
            written = replace(written, ports=tuple(ports[written.alternate]))
        for rule in _site_systems(written):
            in_force.append(rule)
            if rule.bidirectional and not rule.reverse:
                in_force.append(_reversed(rule))
    return in_force


def check_wsus_ports(ports: Mapping[str, tuple[PortSpec, ...]]) -> str | None:
    """Page note 3: "If the HTTP port is 80, the HTTPS port must be 443", "If the HTTP port is
    anything else, the HTTPS port must be 1 higher". An error, or None when both fit (or when
    the site does not give both)."""
    http, https = ports.get("wsus-http"), ports.get("wsus-https")
    if not http or not https:
        return None
    if (
        len(http) != 1
        or len(https) != 1
        or isinstance(http[0], tuple)
        or isinstance(https[0], tuple)
    ):
        return "wsus-http and wsus-https must be single ports"
    http_port, https_port = http[0], https[0]
    expected = 443 if http_port == 80 else http_port + 1
    if https_port != expected:
        return f"wsus-https must be {expected} when wsus-http is {http_port} (ports page, note 3)"
    return None


@lru_cache(maxsize=1)
def client_facing_roles() -> frozenset[str]:
    """The roles ConfigMgr clients reach over HTTP or HTTPS, as the matrix's rows say: the one
    list of them (plaintext HTTP to these is client communication; a host that requests their
    endpoints is a client)."""
    return frozenset(
        rule.server_role
        for rule in _default_rules()
        if rule.client_role in CLIENT_ROLES and rule.service in ("http", "https")
    )
