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
from typing import TYPE_CHECKING, Any

import numpy as np

from flowaudit.dissect import dissect, http, openings
from flowaudit.stream.merge import deepen
from flowaudit.yamlfile import YamlDocument, read_yaml

if TYPE_CHECKING:
    from flowaudit.flows import FlowTable

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


_SESSION_AUTH = frozenset({"kerberos", "negotiate", "ntlm"})  # can set up session encryption
_SEALED_LDAP = {
    "kerberos": "GSSAPI wrap tokens with the Sealed flag",
    "kerberos-rfc1964": "Kerberos RFC 1964 wrap tokens with a sealing algorithm",
    "ntlm": "NTLMSSP-signed buffers with encrypted contents",
}


def _encryption_name(protocol: str) -> str:
    """``Kerberos`` of ``application/HTTP-Kerberos-session-encrypted`` (MS-WSMV 2.2.9.1)."""
    found = re.search(r"HTTP-([A-Za-z0-9]+)-session-encrypted", protocol, re.IGNORECASE)
    if found is None:
        return "session"
    name = found.group(1)
    return {"kerberos": "Kerberos", "spnego": "SPNEGO", "credssp": "CredSSP"}.get(
        name.lower(), name
    )


def _http_bodies(facts: Mapping[str, Any]) -> tuple[bool, bool]:
    """(a non-empty body in clear was seen, every request seen is a POST whose body is empty
    or lies past the window) of one HTTP flow's facts."""
    requests = facts.get("requests") or []
    clear = any(
        (message.get("body_length") or 0) > 0
        and not (message.get("content_type") or "").lower().startswith(http.ENCRYPTED_TYPES)
        for message in (*requests, *(facts.get("responses") or []))
    )
    posts_only = all(
        request.get("method") == "POST" and not request.get("body_length") for request in requests
    )
    return clear, posts_only


def _http_plaintext(facts: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether an HTTP flow's payload travelled in clear, and why.

    A non-empty body in clear (not ``multipart/encrypted``) in either direction makes it
    plaintext. Else a ``multipart/encrypted`` body (WinRM's session encryption, MS-WSMV
    2.2.9.1) makes it not. Else a WinRM flow whose every request is an empty-bodied POST with
    Kerberos, Negotiate or NTLM credentials is not plaintext either: such a POST is how a WinRM
    client sets up the security context it then encrypts every message with (a client that
    sends SOAP in clear sends it with its credentials), the bytes in clear carried only the
    authentication token, and no body in clear was seen in either direction. Anything else
    (requests and responses without a body, bodies past the window) is HTTP in clear.
    """
    requests = facts.get("requests") or []
    winrm = any(str(request.get("path", "")).lower().startswith("/wsman") for request in requests)
    what = "WinRM" if winrm else "HTTP"
    clear, posts_only = _http_bodies(facts)
    if clear:
        return True, f"{what} body in clear"
    # The dissector notes the first multipart/encrypted body of either direction.
    encryption = facts.get("session_encryption")
    if encryption is not None:
        name = _encryption_name(encryption)
        return False, f"{what} {name} session encryption (multipart/encrypted)"
    scheme = str(facts.get("auth_scheme") or "")
    if (
        winrm
        and posts_only
        and scheme.lower() in _SESSION_AUTH
        and all(request.get("body_length") == 0 for request in requests)
    ):
        return False, f"WinRM {scheme} auth POST only (empty body): no payload in clear"
    return True, f"{what} in clear (no session encryption seen)"


def _dcerpc_plaintext(default: bool, facts: Mapping[str, Any]) -> tuple[bool, str | None]:
    """DCE/RPC seals its calls only at authentication level privacy ([MS-RPCE] 2.2.1.1.8);
    a bind without an auth verifier, or any lower level, leaves the stub data in clear."""
    level = facts.get("auth_level")
    if level == "privacy":
        return False, f"RPC packet privacy ({facts.get('auth_type') or 'unknown auth type'})"
    if level is not None:
        return True, f"RPC authentication level {level} (calls in clear, at most signed)"
    if facts.get("interfaces"):
        return True, "RPC bind without authentication (calls in clear)"
    return default, None


def _plaintext(
    default: bool, protocol: str | None, facts: Mapping[str, Any]
) -> tuple[bool, str | None]:
    """Whether a flow's payload travelled in clear, and the reason when the payload decided
    it (None: the service's default stands)."""
    if protocol == "tls":
        return False, "TLS handshake seen"
    if facts.get("tds8_strict"):
        return False, "TDS 8 strict (TLS before PRELOGIN)"
    if protocol == "http":
        return _http_plaintext(facts)
    if protocol == "tds":
        client, server = facts.get("client_encryption"), facts.get("server_encryption")
        if "NOT_SUP" in (client, server):
            return True, "TDS encryption not supported (ENCRYPT_NOT_SUP)"
        if server == "OFF":
            return True, "TDS encryption off (only the login is encrypted)"
        if client is None and server is None:
            return False, None
        return False, "TDS encryption negotiated in PRELOGIN"
    if protocol == "ldap":
        protection = facts.get("sasl_protection")
        if facts.get("starttls"):
            return False, "StartTLS"
        if protection == "sealed":
            token = _SEALED_LDAP.get(str(facts.get("sasl_token")), "sealed wrap tokens")
            return False, f"LDAP SASL sealed ({token})"
        if protection == "signed":
            return True, "LDAP SASL signed only (integrity wrap tokens, messages in clear)"
        if protection == "clear":
            return True, "LDAP in clear after the SASL bind (no security layer)"
        return (True, "LDAP messages in clear") if default else (default, None)
    if protocol == "dcerpc":
        return _dcerpc_plaintext(default, facts)
    if protocol == "smb" and facts.get("encrypted"):
        return False, "SMB3 encrypted session"
    return default, None


def _winrm_sessions(
    client: Sequence[str],
    server: Sequence[str],
    server_port: Sequence[int],
    protocols: Sequence[str | None],
    facts: Sequence[Mapping[str, Any]],
    plaintext: list[bool],
    reasons: list[str | None],
) -> None:
    """One verdict per WinRM session: once any HTTP flow between a client and a server's port
    shows ``multipart/encrypted`` bodies, every HTTP flow of that pair that showed no body in
    clear and only POSTs (the empty authentication POST, or requests whose bodies lie past the
    payload window) is not plaintext either."""
    http_rows = [row for row, protocol in enumerate(protocols) if protocol == "http"]
    encrypted: dict[tuple[str, str, int], str] = {}
    for row in http_rows:
        encryption = facts[row]["http"].get("session_encryption")
        if encryption is not None:
            encrypted.setdefault((client[row], server[row], server_port[row]), encryption)
    if not encrypted:
        return
    for row in http_rows:
        encryption = encrypted.get((client[row], server[row], server_port[row]))
        if encryption is None or not plaintext[row]:
            continue
        clear, posts_only = _http_bodies(facts[row]["http"])
        if not clear and posts_only:
            plaintext[row] = False
            reasons[row] = (
                f"WinRM {_encryption_name(encryption)} session encryption (multipart/encrypted) "
                "on other flows of this client and server port; no body in clear here"
            )


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
    conversations = table.conversations
    for row, c2s, s2c in zip(has_payload, c2s_rows, s2c_rows, strict=True):
        transport = proto[row]
        protocol, found = dissect(transport, c2s, s2c)
        if protocol is None:
            continue
        protocols[row] = protocol
        conversation = conversations.get(row)
        if conversation is not None:
            found = deepen(protocol, found, conversation)
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
    reasons: list[str | None] = [None] * count
    for row in has_payload:
        protocol = protocols[row]
        if protocol is not None:
            plaintext[row], reasons[row] = _plaintext(
                plaintext[row], protocol, facts[row][protocol]
            )
    _winrm_sessions(client, server, server_port, protocols, facts, plaintext, reasons)
    for row, reason in enumerate(reasons):
        if reason is not None:
            facts[row]["plaintext_reason"] = reason
    for row, conversation in conversations.items():
        facts[row] = {**facts[row], **conversation}
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
