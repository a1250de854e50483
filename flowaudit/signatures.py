"""Classification: flow table + payload facts + ``signatures/*.yaml`` -> a service per flow.

Payload beats port (DESIGN.md, principle 4). For each flow:

1. the dissectors (``flowaudit.dissect``) read the first payload bytes; the first that
   recognises them names the protocol, and ``services.yaml``'s payload rules turn protocol and
   server port into a service (evidence ``payload``);
2. a TCP flow to an (address, port) that an endpoint mapper reply or a DCOM reply in the same
   capture announced is ``rpc-dynamic`` (evidence ``epm``), as Microsoft RPC clients reach the
   dynamic port only after asking the endpoint mapper ([MS-RPCE] 2.2.1.1);
3. a TFTP answer, sent from the dynamically allocated port the daemon answers from (ports page,
   note 4), is tied to its request on port 69 (evidence ``tftp-request``);
4. otherwise the server port names the service (evidence ``port``), or it is ``unknown``.

The tables are read from the installed package ``flowaudit.tables`` and validated on load: an
error names the file, the entry and the field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import numpy as np

from flowaudit.dissect import dissect, openings
from flowaudit.flows import FlowTable
from flowaudit.yamlfile import YamlDocument, read_yaml

PortSpec = int | tuple[int, int]

TABLE_FILES = ("services.yaml", "http_endpoints.yaml", "findings.yaml", "matrix.yaml")
SEVERITIES = ("info", "low", "medium", "high", "critical")
CARRIES = (
    "registration",
    "policy",
    "token",
    "content",
    "software-updates",
    "location",
    "status",
    "notification",
    "user",
    "admin",
    "other",
)

# Values of the ``evidence`` column.
BY_PAYLOAD = "payload"
BY_PORT = "port"
BY_EPM = "epm"
BY_TFTP_REQUEST = "tftp-request"
BY_NOTHING = "none"

UNKNOWN = "unknown"


def table_bytes(name: str) -> bytes:
    """The bytes of one signature table as installed with flowaudit."""
    return (resources.files("flowaudit.tables") / name).read_bytes()


@cache
def table_document(name: str) -> YamlDocument:
    return read_yaml(table_bytes(name), name)


def tables_sha256() -> dict[str, str]:
    """SHA-256 of each signature table in force (the report's evidence)."""
    return {name: hashlib.sha256(table_bytes(name)).hexdigest() for name in TABLE_FILES}


# --- validation helpers -------------------------------------------------------------------


def _mapping(doc: YamlDocument, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise doc.error(path, "expected a mapping")
    return value


def _keys(
    doc: YamlDocument,
    entry: Mapping[str, Any],
    path: tuple[Any, ...],
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> None:
    for key in entry:
        if key not in required and key not in optional:
            raise doc.error((*path, key), f"unknown key (expected {', '.join(required)})")
    for key in required:
        if key not in entry:
            raise doc.error(path, f"missing key {key!r}")


def parse_port_list(value: Any) -> tuple[PortSpec, ...] | None:
    """Ports as written in the tables and site files: ints, [lo, hi], "lo-hi"; None if bad."""
    items = value if isinstance(value, list) else [value]
    out: list[PortSpec] = []
    for item in items:
        if isinstance(item, str) and "-" in item:
            parts = item.split("-")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                return None
            item = [int(parts[0]), int(parts[1])]
        if isinstance(item, bool):
            return None
        if isinstance(item, int):
            if not 1 <= item <= 65535:
                return None
            out.append(item)
        elif (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(p, int) and not isinstance(p, bool) for p in item)
        ):
            low, high = item
            if not 1 <= low <= high <= 65535:
                return None
            out.append((low, high))
        else:
            return None
    return tuple(out) if out else None


def ports_text(ports: Any, separator: str = " ") -> str:
    """Ports as people write them: ``80 8530``, ``63000-64000``; ``dynamic`` for none given."""
    if ports is None or ports == "dynamic":
        return "dynamic"
    return separator.join(
        f"{p[0]}-{p[1]}" if isinstance(p, (tuple, list)) else str(p) for p in ports
    )


def port_in(port: int, ports: Sequence[PortSpec]) -> bool:
    for spec in ports:
        if isinstance(spec, tuple):
            if spec[0] <= port <= spec[1]:
                return True
        elif port == spec:
            return True
    return False


# --- the tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    plaintext: bool
    ports: dict[str, tuple[PortSpec, ...]]  # by transport


@dataclass(frozen=True)
class PayloadRule:
    protocol: str
    service: str
    ports: tuple[int, ...] = ()
    fact: str | None = None  # the rule needs this dissector fact set (e.g. DHCP's ``pxe``)

    def matches(self, protocol: str, port: int, found: Mapping[str, Any]) -> bool:
        return (
            self.protocol == protocol
            and (not self.ports or port in self.ports)
            and (self.fact is None or found.get(self.fact) not in (None, False, "", [], {}))
        )


@dataclass(frozen=True)
class Endpoint:
    name: str
    prefix: str
    role: str | None
    carries: str
    ehttp: bool
    title: str
    infer: bool = True


@dataclass(frozen=True)
class FindingRule:
    id: str
    severity: str
    title: str
    reference: str
    url: str
    help: str


# A request target in absolute form starts with a scheme (RFC 3986 3.1) and "://"; a "://"
# later on (in a query) does not make it one.
_ABSOLUTE_FORM = re.compile(r"[a-z][a-z0-9+.\-]*://")


@dataclass(frozen=True)
class Signatures:
    services: dict[str, Service]
    payload_rules: tuple[PayloadRule, ...]
    endpoints: tuple[Endpoint, ...]
    user_agents: tuple[tuple[str, str], ...]  # (text, kind)
    findings: dict[str, FindingRule]
    plaintext_severity: dict[str, str]

    def endpoint_for(self, path: str | None) -> Endpoint | None:
        """The ConfigMgr endpoint a request path names (case-insensitive prefix), if any."""
        if not path:
            return None
        lowered = path.lower()
        absolute = _ABSOLUTE_FORM.match(lowered)
        if absolute:  # absolute form (through a proxy, RFC 9112 3.2.2): keep the path
            lowered = "/" + lowered[absolute.end() :].partition("/")[2]
        for endpoint in self.endpoints:
            if lowered.startswith(endpoint.prefix):
                return endpoint
        return None

    def agent_kind(self, agent: str | None) -> str | None:
        if not agent:
            return None
        for text, kind in self.user_agents:
            if text.lower() in agent.lower():
                return kind
        return None


def _load_services(doc: YamlDocument) -> tuple[dict[str, Service], tuple[PayloadRule, ...]]:
    top = _mapping(doc, doc.data, ())
    _keys(doc, top, (), ["version", "services", "payload"])
    services: dict[str, Service] = {}
    for name, entry in _mapping(doc, top["services"], ("services",)).items():
        path: tuple[Any, ...] = ("services", name)
        entry = _mapping(doc, entry, path)
        _keys(doc, entry, path, ["title", "plaintext", "ports"])
        if not isinstance(entry["plaintext"], bool):
            raise doc.error((*path, "plaintext"), "expected true or false")
        ports: dict[str, tuple[PortSpec, ...]] = {}
        for transport, value in _mapping(doc, entry["ports"], (*path, "ports")).items():
            if transport not in ("tcp", "udp"):
                raise doc.error((*path, "ports", transport), "transport must be tcp or udp")
            parsed = parse_port_list(value)
            if parsed is None:
                raise doc.error((*path, "ports", transport), f"{value!r} is not a port list")
            ports[transport] = parsed
        services[name] = Service(name, str(entry["title"]), entry["plaintext"], ports)
    services.setdefault(UNKNOWN, Service(UNKNOWN, "not recognised", False, {}))
    rules: list[PayloadRule] = []
    for index, entry in enumerate(top["payload"] or []):
        path = ("payload", index)
        entry = _mapping(doc, entry, path)
        _keys(doc, entry, path, ["protocol", "service"], ["ports", "fact"])
        if entry["service"] not in services:
            raise doc.error((*path, "service"), f"unknown service {entry['service']!r}")
        ports_ = parse_port_list(entry.get("ports", [])) if entry.get("ports") else ()
        if ports_ is None or any(isinstance(p, tuple) for p in ports_):
            raise doc.error((*path, "ports"), "expected a list of ports")
        fact = entry.get("fact")
        if fact is not None and (not isinstance(fact, str) or not fact):
            raise doc.error((*path, "fact"), "expected the name of a dissector fact")
        rules.append(
            PayloadRule(str(entry["protocol"]), entry["service"], ports_, fact)  # type: ignore[arg-type]
        )
    return services, tuple(rules)


def _load_endpoints(doc: YamlDocument) -> tuple[tuple[Endpoint, ...], tuple[tuple[str, str], ...]]:
    from flowaudit.matrix import ROLES

    top = _mapping(doc, doc.data, ())
    _keys(doc, top, (), ["version", "endpoints", "user_agents"])
    endpoints = []
    for index, entry in enumerate(top["endpoints"]):
        path = ("endpoints", index)
        entry = _mapping(doc, entry, path)
        _keys(doc, entry, path, ["name", "prefix", "role", "carries", "ehttp", "title"], ["infer"])
        if entry["role"] is not None and entry["role"] not in ROLES:
            raise doc.error((*path, "role"), f"unknown role {entry['role']!r}")
        if entry["carries"] not in CARRIES:
            raise doc.error((*path, "carries"), f"must be one of {', '.join(CARRIES)}")
        endpoints.append(
            Endpoint(
                name=str(entry["name"]),
                prefix=str(entry["prefix"]).lower(),
                role=entry["role"],
                carries=entry["carries"],
                ehttp=bool(entry["ehttp"]),
                title=str(entry["title"]),
                infer=bool(entry.get("infer", True)),
            )
        )
    agents = []
    for index, entry in enumerate(top["user_agents"]):
        path = ("user_agents", index)
        entry = _mapping(doc, entry, path)
        _keys(doc, entry, path, ["match", "kind"])
        agents.append((str(entry["match"]), str(entry["kind"])))
    return tuple(endpoints), tuple(agents)


def _load_findings(doc: YamlDocument) -> tuple[dict[str, FindingRule], dict[str, str]]:
    top = _mapping(doc, doc.data, ())
    _keys(doc, top, (), ["version", "rules", "plaintext_severity"])
    rules = {}
    for rule_id, entry in _mapping(doc, top["rules"], ("rules",)).items():
        path = ("rules", rule_id)
        entry = _mapping(doc, entry, path)
        _keys(doc, entry, path, ["severity", "title", "reference", "url", "help"])
        if entry["severity"] not in SEVERITIES:
            raise doc.error((*path, "severity"), f"must be one of {', '.join(SEVERITIES)}")
        if not str(entry["url"]).startswith("https://"):
            raise doc.error((*path, "url"), "must be an https:// address")
        rules[rule_id] = FindingRule(
            rule_id,
            entry["severity"],
            entry["title"],
            entry["reference"],
            entry["url"],
            entry["help"],
        )
    severity = {}
    for kind, value in _mapping(doc, top["plaintext_severity"], ("plaintext_severity",)).items():
        if kind not in CARRIES or value not in SEVERITIES:
            raise doc.error(("plaintext_severity", kind), "unknown kind or severity")
        severity[kind] = value
    return rules, severity


@lru_cache(maxsize=1)
def load_signatures() -> Signatures:
    """The signature tables installed with flowaudit, validated."""
    services, payload_rules = _load_services(table_document("services.yaml"))
    endpoints, agents = _load_endpoints(table_document("http_endpoints.yaml"))
    findings, plaintext_severity = _load_findings(table_document("findings.yaml"))
    return Signatures(services, payload_rules, endpoints, agents, findings, plaintext_severity)


# --- classification -----------------------------------------------------------------------


@dataclass
class Classified:
    """Per-flow classification, aligned with the flow table's rows."""

    protocol: list[str | None]
    service: list[str]
    evidence: list[str]
    plaintext: list[bool]
    facts: list[dict[str, Any]]
    announced: set[tuple[str, int]] = field(default_factory=set)


def _port_services(
    signatures: Signatures, site_ports: Mapping[str, tuple[PortSpec, ...]]
) -> dict[tuple[str, int], str]:
    """(transport, port) -> service for naming by port; site alternates first."""
    by_port: dict[tuple[str, int], str] = {}

    def add(transport: str, ports: Sequence[PortSpec], name: str) -> None:
        for spec in ports:
            low, high = spec if isinstance(spec, tuple) else (spec, spec)
            if high - low > 4096:  # dynamic ranges never name a flow by port alone
                continue
            for port in range(low, high + 1):
                by_port.setdefault((transport, port), name)

    for key, ports in site_ports.items():
        name = {"wsus-http": "http", "wsus-https": "https"}.get(key, key)
        if name in signatures.services and name != "rpc-dynamic":
            add("tcp" if name not in ("wake-on-lan", "wakeup-proxy") else "udp", ports, name)
    for service in signatures.services.values():
        if service.name == "rpc-dynamic":
            continue
        for transport, ports in service.ports.items():
            add(transport, ports, service.name)
    return by_port


def alternate_ports(service: str, site_ports: Mapping[str, tuple[PortSpec, ...]]) -> list[int]:
    """The single ports a site file gives ``service`` instead of its documented ones."""
    wsus = {"http": ("http", "wsus-http"), "https": ("https", "wsus-https")}
    keys = wsus.get(service, (service,))
    return [p for key in keys for p in site_ports.get(key, ()) if isinstance(p, int)]


def _with_alternates(
    rules: Sequence[PayloadRule], site_ports: Mapping[str, tuple[PortSpec, ...]]
) -> list[PayloadRule]:
    """Payload rules whose ports also hold the site's alternates (TLS on the site's client
    notification port is client notification, not HTTPS)."""
    out = []
    for rule in rules:
        extra = alternate_ports(rule.service, site_ports) if rule.ports else []
        ports = tuple(dict.fromkeys((*rule.ports, *extra)))
        out.append(replace(rule, ports=ports))
    return out


def _announced_address(host: str, server: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return server  # a host name: the replying server speaks for itself


def _plaintext(default: bool, protocol: str | None, facts: Mapping[str, Any]) -> bool:
    if protocol == "tls" or facts.get("tds8_strict"):
        return False
    if protocol == "http":
        content = (facts.get("content_type") or "").lower()
        return not content.startswith(("multipart/encrypted", "application/http-spnego"))
    if protocol == "tds":
        values = {facts.get("client_encryption"), facts.get("server_encryption")}
        return "NOT_SUP" in values or facts.get("server_encryption") == "OFF"
    if protocol == "ldap" and facts.get("starttls"):
        return False
    if protocol == "smb" and facts.get("encrypted"):
        return False
    return default


def classify(
    table: FlowTable,
    site_ports: Mapping[str, tuple[PortSpec, ...]] | None = None,
    signatures: Signatures | None = None,
) -> Classified:
    """Name every flow's service, with the evidence that decided it and the payload facts."""
    signatures = signatures or load_signatures()
    columns = table.columns
    count = len(table)
    proto = columns["proto"].tolist()
    server = columns["server"].tolist()
    client = columns["client"].tolist()
    server_port = columns["server_port"].tolist()
    client_port = columns["client_port"].tolist()
    # Only flows whose first bytes some dissector may take are copied out and dissected.
    c2s_first, s2c_first = table.payloads.first_bytes()
    wanted = np.zeros(count, dtype=bool)
    proto_column = columns["proto"]
    for transport in ("tcp", "udp"):
        opens = np.array(openings(transport), dtype=bool)
        wanted |= (proto_column == transport) & (opens[c2s_first] | opens[s2c_first])
    has_payload = np.flatnonzero(wanted).tolist()
    c2s_rows, s2c_rows = table.payloads.select(has_payload)

    protocols: list[str | None] = [None] * count
    facts: list[dict[str, Any]] = [{} for _ in range(count)]
    service = [UNKNOWN] * count
    evidence = [BY_NOTHING] * count
    by_port = _port_services(signatures, site_ports or {})
    payload_rules = _with_alternates(signatures.payload_rules, site_ports or {})

    announced: set[tuple[str, int]] = set()
    tftp_requests: dict[tuple[str, int, str], int] = {}
    for row, c2s, s2c in zip(has_payload, c2s_rows, s2c_rows, strict=True):
        transport = proto[row]
        protocol, found = dissect(transport, c2s, s2c)
        if protocol is None:
            continue
        protocols[row] = protocol
        facts[row] = {protocol: found}
        port = server_port[row]
        for rule in payload_rules:
            if rule.matches(protocol, port, found):
                service[row], evidence[row] = rule.service, BY_PAYLOAD
                break
        if protocol == "dcerpc":
            for item in found.get("announced") or []:
                try:
                    announced.add(
                        (_announced_address(str(item["host"]), server[row]), int(item["port"]))
                    )
                except (KeyError, TypeError, ValueError):
                    continue
        elif protocol == "tftp" and found.get("request"):
            tftp_requests[(client[row], client_port[row], server[row])] = row

    _tie_pxe_answers(protocols, facts, service, payload_rules, server_port)

    # Flows no dissector named: by announced RPC port, else by server port.
    unnamed = [row for row, protocol in enumerate(protocols) if protocol is None]
    for row in unnamed:
        key = (proto[row], server_port[row])
        if key[0] == "tcp" and announced and (server[row], key[1]) in announced:
            service[row], evidence[row] = "rpc-dynamic", BY_EPM
        else:
            named = by_port.get(key)
            if named is not None:
                service[row], evidence[row] = named, BY_PORT
    if announced:
        for row in range(count):
            if service[row] == "rpc-dynamic" and (server[row], server_port[row]) in announced:
                evidence[row] = BY_EPM
    if tftp_requests:
        for row in range(count):
            is_request = protocols[row] == "tftp" and facts[row]["tftp"].get("request")
            if proto[row] == "udp" and not is_request:
                _tie_tftp_answer(
                    row,
                    client,
                    client_port,
                    server,
                    server_port,
                    tftp_requests,
                    service,
                    evidence,
                    facts,
                )

    default_plaintext = {name: entry.plaintext for name, entry in signatures.services.items()}
    plaintext = [default_plaintext[name] for name in service]
    for row in has_payload:
        protocol = protocols[row]
        if protocol is not None:
            plaintext[row] = _plaintext(plaintext[row], protocol, facts[row][protocol])
    return Classified(protocols, service, evidence, plaintext, facts, announced)


def _tie_pxe_answers(
    protocols: list[str | None],
    facts: list[dict[str, Any]],
    service: list[str],
    payload_rules: Sequence[PayloadRule],
    server_port: list[int],
) -> None:
    """A DHCP server's answers to a PXE client are PXE DHCP too.

    A server may answer straight to the address it leases (RFC 2131 4.1), in a flow of its own
    that holds no client message, so nothing in it says PXE. The client's hardware address
    (chaddr) ties the answer to the client's PXE request in another flow.
    """
    rows = [row for row, protocol in enumerate(protocols) if protocol == "dhcp"]
    pxe_clients = {
        facts[row]["dhcp"].get("client_mac")
        for row in rows
        if facts[row]["dhcp"].get("pxe") and facts[row]["dhcp"].get("version") == 4
    }
    pxe_clients.discard(None)
    if not pxe_clients:
        return
    for row in rows:
        dhcp = facts[row]["dhcp"]
        if dhcp.get("pxe") or dhcp.get("version") != 4:
            continue
        if dhcp.get("client_mac") in pxe_clients and dhcp.get("boot_file"):
            dhcp = facts[row]["dhcp"] = {**dhcp, "pxe": True, "pxe_by": "client_mac"}
            for rule in payload_rules:
                if rule.matches("dhcp", server_port[row], dhcp):
                    service[row] = rule.service
                    break


def _tie_tftp_answer(
    row: int,
    client: list[str],
    client_port: list[int],
    server: list[str],
    server_port: list[int],
    requests: Mapping[tuple[str, int, str], int],
    service: list[str],
    evidence: list[str],
    facts: list[dict[str, Any]],
) -> None:
    """A flow between a TFTP server's new port and the port a request on 69 came from."""
    for tftp_client, port, tftp_server in (
        (server[row], server_port[row], client[row]),  # the answer opened the flow
        (client[row], client_port[row], server[row]),  # the client's ACK came first
    ):
        request = requests.get((tftp_client, port, tftp_server))
        if request is not None and request != row:
            service[row], evidence[row] = "tftp", BY_TFTP_REQUEST
            facts[row]["answer_to"] = request  # row index; the audit turns it into a flow id
            facts[row]["tftp_server"] = tftp_server
            return
