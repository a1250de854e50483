"""The site model: which host holds which ConfigMgr role, from ``site.yaml`` or from traffic.

A site file names the roles by address or CIDR, the site's security mode, its alternate ports
and options (ports page notes 2, 3 and 5)::

    site: PS1
    security: https-or-ehttp        # http | https-or-ehttp | https-only
    roles:
      site-server: [10.10.0.10]
      client: [10.10.1.0/24]
    ports: {http: 80, https: 443, client-notification: 10123, rpc-dynamic: 49152-65535}
    options: {site-server-initiates: [10.10.0.13], internet-facing: [10.10.0.14]}

A host may hold several roles. A host outside every role is ``internet`` when its address is
public, else it has no role (its flows are judged ``unknown``). Without a site file the roles
are inferred from what the traffic shows (``infer_site``), each with its evidence.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from flowaudit.matrix import ALTERNATE_KEYS, ROLES, check_wsus_ports, client_facing_roles
from flowaudit.signatures import (
    BY_PAYLOAD,
    Classified,
    PortSpec,
    Signatures,
    load_signatures,
    parse_port_list,
)
from flowaudit.yamlfile import MAX_YAML_BYTES, read_bounded, read_yaml

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ROLE_ORDER = {role: index for index, role in enumerate(ROLES)}
SECURITY_MODES = ("http", "https-or-ehttp", "https-only")
# HTTP client communication is deprecated since ConfigMgr 2103 (Enhanced HTTP page): a site
# without a site file is held to HTTPS or Enhanced HTTP.
DEFAULT_SECURITY = "https-or-ehttp"
PORT_KEYS = ALTERNATE_KEYS  # the keys of `ports`: what matrix rules may name as alternate
OPTION_KEYS = ("site-server-initiates", "internet-facing")
SITE_KEYS = ("site", "security", "roles", "ports", "options")
INTERNET = "internet"
SOURCE_SITE = "site"
SOURCE_INFERRED = "inferred"


@dataclass
class Site:
    """Roles by address, security mode, alternate ports and options of one site."""

    name: str | None = None
    security: str = DEFAULT_SECURITY
    roles: dict[str, list[Network]] = field(default_factory=dict)
    ports: dict[str, tuple[PortSpec, ...]] = field(default_factory=dict)
    site_server_initiates: list[Network] = field(default_factory=list)
    # Site systems that support internet-based clients (the ports page's "Installation
    # Requirements for Site Systems that Support Internet-Based Clients"): declared, never
    # assumed.
    internet_facing: list[Network] = field(default_factory=list)
    source: str = SOURCE_SITE
    path: str | None = None
    sha256: str | None = None
    # Inferred sites: roles by exact address, and the evidence for each (host, role).
    exact_hosts: dict[str, set[str]] = field(default_factory=dict)
    evidence: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    _cache: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _indexes: dict[str, NetworkIndex] = field(default_factory=dict, repr=False)

    def _index(self, name: str) -> NetworkIndex:
        """The index of the roles' networks (``roles``) or of an option's, built once."""
        index = self._indexes.get(name)
        if index is None:
            if name == "roles":
                entries = [(n, role) for role, networks in self.roles.items() for n in networks]
            else:
                entries = [(n, name) for n in getattr(self, name)]
            index = self._indexes[name] = NetworkIndex(entries)
        return index

    def roles_of(self, address: str) -> tuple[str, ...]:
        """The roles a host holds, in the order of ``ROLES``; ``("internet",)`` if public.

        A host holds the roles of every network of the site file that contains it (a /32 of
        one role inside a /24 of another holds both)."""
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        held = set(self.exact_hosts.get(address, ()))
        if self.roles:
            held.update(self._index("roles").labels(address))
        found = tuple(sorted(held, key=_ROLE_ORDER.__getitem__)) if held else ()
        if not found and is_public(address):
            found = (INTERNET,)
        self._cache[address] = found
        return found

    def site_server_must_initiate(self, address: str) -> bool:
        """Note 5: the site system at ``address`` must not start connections to the site server."""
        return bool(self.site_server_initiates) and bool(
            self._index("site_server_initiates").labels(address)
        )

    def is_internet_facing(self, address: str) -> bool:
        """Whether the site file declares the site system at ``address`` internet-facing."""
        return bool(self.internet_facing) and bool(self._index("internet_facing").labels(address))

    def hosts(self, addresses: Iterable[str]) -> list[dict[str, Any]]:
        """The report's ``hosts``: every address seen that holds a role."""
        out = []
        for address in sorted(set(addresses), key=_address_key):
            roles = self.roles_of(address)
            if not roles or is_group(address):
                continue
            evidence = self.evidence.get(address, {})
            out.append(
                {
                    "ip": address,
                    "roles": list(roles),
                    "source": self.source,
                    "evidence": [text for role in roles for text in evidence.get(role, [])]
                    or (["a public address outside every role"] if roles == (INTERNET,) else []),
                }
            )
        return out


class NetworkIndex:
    """Which labels (roles) cover an address, over networks that may nest or overlap.

    Per IP version, the points where the set of covering networks changes, sorted, with the
    labels from each point on: a lookup is one binary search, however many networks a site
    file names (a scan of every network per address took 42 s for 5,000 subnets and 65,537
    hosts)."""

    def __init__(self, entries: Iterable[tuple[Network, str]]) -> None:
        changes: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        for network, label in entries:
            low = int(network.network_address)
            points = changes[network.version]
            points.append((low, 1, label))
            points.append((low + network.num_addresses, -1, label))
        self._starts: dict[int, list[int]] = {}
        self._labels: dict[int, list[frozenset[str]]] = {}
        for version, points in changes.items():
            points.sort()
            starts: list[int] = []
            labels: list[frozenset[str]] = []
            known: dict[frozenset[str], frozenset[str]] = {}  # one object per distinct set
            covering: dict[str, int] = {}
            for number, (point, delta, label) in enumerate(points):
                covering[label] = covering.get(label, 0) + delta
                if number + 1 < len(points) and points[number + 1][0] == point:
                    continue  # more changes at this point
                held = frozenset(name for name, count in covering.items() if count > 0)
                if labels and labels[-1] == held:
                    continue
                starts.append(point)
                labels.append(known.setdefault(held, held))
            self._starts[version] = starts
            self._labels[version] = labels

    def labels(self, address: str) -> frozenset[str]:
        """The labels of every network that contains ``address`` (none for a bad address)."""
        version_number = _address_number(address)
        if version_number is None:
            return frozenset()
        version, number = version_number
        at = bisect.bisect_right(self._starts[version], number) - 1
        return self._labels[version][at] if at >= 0 else frozenset()


def _address_number(address: str) -> tuple[int, int] | None:
    """(IP version, the address as an integer), or None when it is not an IP address."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        pass
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return ip.version, int(ip)


_PRIVATE_V4 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    )
)
_PRIVATE_V4_RANGES = tuple((int(n.network_address), int(n.broadcast_address)) for n in _PRIVATE_V4)


@lru_cache(maxsize=65536)
def is_group(address: str) -> bool:
    """Multicast, or broadcast (limited, or the .255 of an IPv4 /24 and wider: heuristic)."""
    if ":" in address:
        return address.lower().startswith("ff")  # RFC 4291 2.7: ff00::/8
    first = address.partition(".")[0]
    return (first.isdigit() and 224 <= int(first) <= 239) or address.endswith(".255")


@lru_cache(maxsize=262144)
def is_public(address: str) -> bool:
    """Whether an address is a unicast address on the internet (IANA special-purpose excluded).

    IPv4 is checked against the special-purpose ranges of RFC 6890 (plus multicast and
    reserved space) without building an ``ipaddress`` object: this runs once per host seen.
    """
    try:
        number = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return ip.is_global and not ip.is_multicast
    return not any(low <= number <= high for low, high in _PRIVATE_V4_RANGES)


def _address_key(address: str) -> tuple[int, int, str]:
    for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            return (version, int.from_bytes(socket.inet_pton(family, address), "big"), address)
        except OSError:
            continue
    return (9, 0, address)


def _networks(doc: Any, value: Any, path: tuple[Any, ...]) -> list[Network]:
    items = value if isinstance(value, list) else [value]
    networks: list[Network] = []
    for index, item in enumerate(items):
        where = (*path, index) if isinstance(value, list) else path
        text = str(item)
        network: Network | None = _ipv4_network(text)
        if network is None:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise doc.error(where, f"{item!r} is not an IP address or CIDR") from None
        networks.append(network)
        if "/" in text and network.network_address != ipaddress.ip_address(text.split("/")[0]):
            # 10.10.0.10/24 would silently widen one host to its whole /24
            raise doc.error(
                where,
                f"{item!r} has host bits set: write the host ({text.split('/')[0]}) or "
                f"the network ({network})",
            )
    return networks


def _ipv4_network(text: str) -> ipaddress.IPv4Network | None:
    """``10.0.0.1`` or ``10.0.0.0/24`` without ``ipaddress``'s parser (a site file may list
    hundreds of thousands); None for anything else, which ``ipaddress`` then reads."""
    address, slash, prefix = text.partition("/")
    try:
        number = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except OSError:
        return None
    if not slash:
        return ipaddress.IPv4Network((number, 32))
    if not (prefix.isascii() and prefix.isdigit() and len(prefix) <= 2 and int(prefix) <= 32):
        return None
    return ipaddress.IPv4Network((number, int(prefix)), strict=False)


def unknown_role_message(role: Any) -> str:
    """The error for a role no site file may name, with the nearest role if one is close."""
    import difflib

    if role == INTERNET:
        return "internet is not named in a site file: a public address outside every role is"
    choices = [known for known in ROLES if known != INTERNET]
    close = difflib.get_close_matches(str(role), choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown role {str(role)!r}{hint} (see `flowaudit matrix` for the roles)"


def parse_site(text: str | bytes, name: str = "site.yaml") -> Site:
    """A site from the text of a site file; a wrong key, role, address or port is one error."""
    doc = read_yaml(text, name)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error((), "a site file is a mapping with the keys " + ", ".join(SITE_KEYS))
    for key in data:
        if key not in SITE_KEYS:
            raise doc.error((key,), f"unknown key (expected one of {', '.join(SITE_KEYS)})")
    if data.get("site") is not None and not isinstance(data["site"], (str, int)):
        raise doc.error(("site",), "the site code is a single value (e.g. PS1)")
    site = Site(name=None if data.get("site") is None else str(data["site"]), path=name)
    security = data.get("security", DEFAULT_SECURITY)
    if security not in SECURITY_MODES:
        raise doc.error(("security",), f"must be one of {', '.join(SECURITY_MODES)}")
    site.security = security
    roles = data.get("roles") or {}
    if not isinstance(roles, dict):
        raise doc.error(("roles",), "expected a mapping of role to addresses")
    for role, value in roles.items():
        if role not in ROLES or role == INTERNET:
            raise doc.error(("roles", role), unknown_role_message(role))
        site.roles[role] = _networks(doc, value, ("roles", role))
    ports = data.get("ports") or {}
    if not isinstance(ports, dict):
        raise doc.error(("ports",), "expected a mapping of service to port")
    for key, value in ports.items():
        if key not in PORT_KEYS:
            raise doc.error(("ports", key), f"unknown port key (expected {', '.join(PORT_KEYS)})")
        try:
            parsed = parse_port_list(value)
        except ValueError:  # digits int() does not take ('²'), or thousands of them
            parsed = None
        if parsed is None:
            shown_value = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:50]}..."
            raise doc.error(("ports", key), f"{shown_value} is not a port, list or range (lo-hi)")
        site.ports[key] = parsed
    wsus = check_wsus_ports(site.ports)
    if wsus:
        raise doc.error(("ports",), wsus)
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise doc.error(("options",), "expected a mapping")
    for key, value in options.items():
        if key not in OPTION_KEYS:
            raise doc.error(("options", key), f"unknown option (expected {', '.join(OPTION_KEYS)})")
        networks = _networks(doc, value, ("options", key))
        if key == "site-server-initiates":
            site.site_server_initiates = networks
        else:
            site.internet_facing = networks
    return site


def load_site(path: str | Path) -> Site:
    """Read a site file; a missing or unreadable file is one error."""
    raw = read_bounded(path, "site file", MAX_YAML_BYTES)
    site = parse_site(raw, str(path))
    site.sha256 = hashlib.sha256(raw).hexdigest()
    return site


# --- inference from traffic ---------------------------------------------------------------

# Services whose server (with payload evidence, or port for the unambiguous ones) holds a role.
_SERVER_ROLE_BY_SERVICE = {
    "client-notification": "management-point",
    "sql": "sql-server",
    "gc-ldap": "domain-controller",
    "gc-ldaps": "domain-controller",
    "kerberos": "domain-controller",
    "ldap": "domain-controller",
    "binl": "distribution-point",
    "tftp": "distribution-point",
    "remote-control": "client",
}
_CLIENT_SERVICES = ("http", "https", "client-notification")
# Site systems a site server configures over RPC and SMB (ports page, note 5).
_CONFIGURED_BY_SITE_SERVER = (
    "management-point",
    "distribution-point",
    "software-update-point",
    "fallback-status-point",
)
_WSUS = (8530, 8531)
# The shares a distribution point serves its content from: the content library
# (SCCMContentLib$), the DP's own share (SMS_DP$) and the package share (SMS_DP_SMSPKG$ and
# SMSPKG<drive>$ of older package shares), as ConfigMgr names them.
_CONTENT_SHARES = ("sccmcontentlib$", "sms_dp$", "sms_dp_smspkg$")
_PACKAGE_SHARE = re.compile(r"smspkg[a-z]\$")


def _content_shares(shares: Any) -> list[str]:
    """The ConfigMgr content shares among SMB share names or ``\\\\host\\share`` paths."""
    found = []
    for share in shares or ():
        if not isinstance(share, str):
            continue
        name = share.rstrip("\\").rpartition("\\")[2].lower()
        if name in _CONTENT_SHARES or _PACKAGE_SHARE.fullmatch(name):
            found.append(share)
    return found


def infer_site(
    columns: Mapping[str, Any],
    classified: Classified,
    signatures: Signatures | None = None,
) -> Site:
    """Roles inferred from the traffic, each with the flows that show it."""
    signatures = signatures or load_signatures()
    site = Site(source=SOURCE_INFERRED, security=DEFAULT_SECURITY)
    held: dict[str, dict[str, list[str]]] = {}
    ids = columns["id"].tolist()
    client = columns["client"].tolist()
    server = columns["server"].tolist()
    server_port = columns["server_port"].tolist()
    client_port = columns["client_port"].tolist()

    def grant(address: str, role: str, why: str) -> None:
        reasons = held.setdefault(address, {}).setdefault(role, [])
        if len(reasons) < 3 and why not in reasons:
            reasons.append(why)

    # A port alone makes no role: only what a flow's bytes show does (a port scan answered by
    # RST would otherwise give its target every role it probed). Services no dissector reads
    # (Service Broker, WDS multicast) count when data went both ways or to a group.
    c2s_data = columns["c2s_payload_len"] > 0
    s2c_data = columns["s2c_payload_len"] > 0
    both_ways = (c2s_data & s2c_data).tolist()
    rows = [
        row
        for row, (service, facts) in enumerate(
            zip(classified.service, classified.facts, strict=True)
        )
        if facts or service in ("multicast", "sql-service-broker")
    ]
    for row in rows:
        service = classified.service[row]
        evidence = classified.evidence[row]
        facts = classified.facts[row]
        flow = f"flow {ids[row]}"
        if service == "multicast":
            if is_group(server[row]) and c2s_data[row]:
                grant(
                    client[row],
                    "distribution-point",
                    f"sends to multicast {server[row]}:{server_port[row]} on 63000-64000 ({flow})",
                )
            continue
        if service == "sql-service-broker":
            if both_ways[row]:
                for end in (client[row], server[row]):
                    grant(
                        end,
                        "sql-server",
                        f"end of SQL Server Service Broker on {server_port[row]} ({flow})",
                    )
            continue
        dhcp = facts.get("dhcp")
        if dhcp:
            # The server's own answer must offer a boot file: a plain DHCP server answering a
            # relayed PXE DISCOVER is not a PXE point. The PXE server is the end on port 67
            # (RFC 2131 4.1), whichever end the flow table calls client: an answer to the
            # broadcast address makes the server the flow's first sender.
            pxe_server = (
                server[row]
                if server_port[row] == 67
                else client[row]
                if client_port[row] == 67
                else None
            )
            if (
                pxe_server is not None
                and dhcp.get("pxe")
                and dhcp.get("boot_file")
                and {"OFFER", "ACK"} & set(dhcp.get("message_types") or [])
                and not is_group(pxe_server)
                and pxe_server not in ("0.0.0.0", "::")
            ):
                grant(
                    pxe_server, "distribution-point", f"answers PXE DHCP with a boot file ({flow})"
                )
            continue
        if service == "wake-on-lan" and facts.get("wol"):
            # Ports page, "Site Server --> Client": the site server sends the magic packets.
            grant(client[row], "site-server", f"sends a Wake-on-LAN magic packet ({flow})")
            continue
        shares = _content_shares((facts.get("smb") or {}).get("shares"))
        if shares:
            grant(
                server[row],
                "distribution-point",
                f"serves ConfigMgr content share {shares[0]} over SMB ({flow})",
            )
        http = facts.get("http")
        if http:
            endpoint = signatures.endpoint_for(http.get("path"))
            if endpoint is not None and endpoint.role and endpoint.infer:
                grant(
                    server[row],
                    endpoint.role,
                    f"serves {http.get('method')} {endpoint.prefix} ({flow})",
                )
                if endpoint.role in client_facing_roles():
                    grant(
                        client[row],
                        "client",
                        f"requests {endpoint.prefix} from a {endpoint.role} ({flow})",
                    )
            elif server_port[row] in _WSUS:
                grant(
                    server[row],
                    "software-update-point",
                    f"serves HTTP on {server_port[row]} ({flow})",
                )
            continue
        if evidence != BY_PAYLOAD:
            continue
        role = _SERVER_ROLE_BY_SERVICE.get(service)
        if role:
            if service == "remote-control":
                grant(client[row], "console", f"starts remote control to {server[row]} ({flow})")
            grant(server[row], role, f"server of {service} on {server_port[row]} ({flow})")
            if role == "management-point":
                grant(client[row], "client", f"reaches a management point on {service} ({flow})")
        elif service == "https" and server_port[row] in _WSUS:
            grant(
                server[row], "software-update-point", f"serves TLS on {server_port[row]} ({flow})"
            )

    # Second pass, clients: who reaches the client-facing roles found above.
    for row in range(len(ids)):
        roles_there = held.get(server[row])
        if (
            roles_there
            and classified.service[row] in _CLIENT_SERVICES
            and any(r in roles_there for r in client_facing_roles())
            and not held.get(client[row])
        ):
            grant(
                client[row],
                "client",
                f"starts {classified.service[row]} to a site system (flow {ids[row]})",
            )
    # Third pass, the site server: who configures site systems over RPC (seen in the bytes),
    # or over SMB to a site system clients do not use SMB with (not a distribution point).
    for row in range(len(ids)):
        roles_there = held.get(server[row])
        if not roles_there or "client" in held.get(client[row], {}):
            continue
        service = classified.service[row]
        by_rpc = (
            service in ("rpc-epm", "rpc-dynamic")
            and classified.protocol[row] == "dcerpc"
            and any(r in roles_there for r in _CONFIGURED_BY_SITE_SERVER)
        )
        by_smb = (
            service == "smb"
            and classified.protocol[row] == "smb"
            and any(
                r in roles_there for r in _CONFIGURED_BY_SITE_SERVER if r != "distribution-point"
            )
        )
        if by_rpc or by_smb:
            grant(
                client[row], "site-server", f"starts {service} to a site system (flow {ids[row]})"
            )

    site.exact_hosts = {address: set(roles) for address, roles in held.items()}
    site.evidence = held
    return site
