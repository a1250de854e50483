"""tshark's dissection of a corpus capture next to the flow table's payloads, stream by stream.

A dissector's corpus test asks tshark (the oracle) for fields per ``tcp.stream`` and runs its
own ``parse`` on the payloads flowaudit keeps of the same TCP connection. Streams and flows are
matched by their endpoints (addresses and ports), in order of appearance when a 5-tuple is
reused. The captures to look at are those ORACLE.tsv (tshark's own summary of the corpus) says
hold the protocol. What tshark shows of TLS handshakes is read here too, as the TLS, RDP and
TDS tests all compare TLS facts.
"""

from __future__ import annotations

import csv
import ipaddress
import re
import subprocess
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowaudit.config import MAX_PAYLOAD_BYTES, FlowConfig
from flowaudit.flows import build_flow_table

# tshark separates several occurrences of a field in one frame with this (never in the data).
AGGREGATOR = "\x1f"

Endpoints = frozenset[tuple[str, int]]


@dataclass(frozen=True)
class StreamPayload:
    """What flowaudit kept of one TCP connection, and which side started it."""

    client: str
    client_port: int
    server: str
    server_port: int
    c2s: bytes
    s2c: bytes


def oracle_files(corpus: Path, protocol: str) -> list[Path]:
    """Captures that ORACLE.tsv says tshark dissects ``protocol`` in.

    ``has_<protocol>`` where the table has that column, else ``<protocol>=N`` among the counts of
    frames matching each display filter (RDP has no column of its own).
    """
    files = []
    with (corpus / "ORACLE.tsv").open(newline="") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            column = row.get(f"has_{protocol}")
            if column is not None:
                holds = column.startswith("yes")
            else:
                counts = row.get("frames_matching_display_filter", "").split()
                holds = any(item.startswith(f"{protocol}=") for item in counts)
            if holds:
                files.append(corpus / row["local_filename"])
    return files


def _address(text: str) -> str:
    return str(ipaddress.ip_address(text.split(",")[-1]))


def tshark_fields(
    tshark: str,
    path: Path,
    display_filter: str,
    fields: Sequence[str],
    decode_as: Sequence[str] = (),
) -> list[dict[str, list[str]]]:
    """One dict per frame matching ``display_filter``: field -> its values in that frame.

    ``decode_as`` rules (``tcp.port==3389,tls``) make tshark read a port as a protocol.
    """
    command = [tshark, "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for rule in decode_as:
        command += ["-d", rule]
    command += ["-E", "separator=\t", "-E", f"aggregator={AGGREGATOR}"]
    for field in fields:
        command += ["-e", field]
    # Cut-short captures make tshark exit non-zero after printing every frame it read.
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    rows = []
    for line in output.splitlines():
        values = line.split("\t")
        rows.append(
            {
                field: [v for v in value.split(AGGREGATOR) if v]
                for field, value in zip(fields, values, strict=False)
            }
        )
    return rows


def first(row: dict[str, list[str]], field: str) -> str | None:
    """The first value of ``field`` in a frame, or None when the frame has none."""
    values = row.get(field)
    return values[0] if values else None


def stream_endpoints(tshark: str, path: Path) -> dict[int, Endpoints]:
    """tcp.stream -> the endpoints of its first frame."""
    fields = [
        "tcp.stream",
        "ip.src",
        "ipv6.src",
        "tcp.srcport",
        "ip.dst",
        "ipv6.dst",
        "tcp.dstport",
    ]
    endpoints: dict[int, Endpoints] = {}
    for row in tshark_fields(tshark, path, "tcp", fields):
        stream = int(row["tcp.stream"][0])
        if stream in endpoints:
            continue
        source = (row.get("ip.src") or row.get("ipv6.src") or [""])[-1]
        destination = (row.get("ip.dst") or row.get("ipv6.dst") or [""])[-1]
        endpoints[stream] = frozenset(
            {
                (_address(source), int(row["tcp.srcport"][0])),
                (_address(destination), int(row["tcp.dstport"][0])),
            }
        )
    return endpoints


def stream_payloads(tshark: str, path: Path, payload_bytes: int = 2048) -> dict[int, StreamPayload]:
    """tcp.stream -> the payloads of the flow flowaudit makes of that connection."""
    table = build_flow_table([path], FlowConfig(payload_bytes=payload_bytes, idle_timeout=0))
    c2s, s2c = table.payloads.columns()
    columns = table.columns
    flows: dict[Endpoints, list[StreamPayload]] = defaultdict(list)
    for row in range(len(table)):
        if columns["proto"][row] != "tcp":
            continue
        flow = StreamPayload(
            _address(str(columns["client"][row])),
            int(columns["client_port"][row]),
            _address(str(columns["server"][row])),
            int(columns["server_port"][row]),
            c2s[row],
            s2c[row],
        )
        flows[frozenset({(flow.client, flow.client_port), (flow.server, flow.server_port)})].append(
            flow
        )
    matched: dict[int, StreamPayload] = {}
    for stream, ends in sorted(stream_endpoints(tshark, path).items()):
        if flows.get(ends):
            matched[stream] = flows[ends].pop(0)
    return matched


def wide_payloads(tshark: str, path: Path) -> dict[int, StreamPayload]:
    """The same with the largest payload window: to tell a cut by the window from an error."""
    return stream_payloads(tshark, path, MAX_PAYLOAD_BYTES)


# --- what tshark shows of TLS handshakes (TLS, and TLS inside RDP and TDS) ---------------------

VERSIONS = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
# tshark's x509 attribute names, as RFC 4514 short names.
TSHARK_ATTRIBUTES = {
    "id-at-commonName": "CN",
    "id-at-countryName": "C",
    "id-at-localityName": "L",
    "id-at-stateOrProvinceName": "ST",
    "id-at-streetAddress": "STREET",
    "id-at-organizationName": "O",
    "id-at-organizationalUnitName": "OU",
    "id-at-postalCode": "postalCode",
}


def _tshark_dn(showname: str) -> str | None:
    """tshark's "rdnSequence: 2 items (id-at-commonName=A,id-at-organizationName=B)" as RFC 4514.

    tshark lists the RDNs most specific first, as RFC 4514 does; None if an attribute type is
    one we do not map, or if tshark cut its text short (then only the CN is compared).
    """
    if not showname.endswith(")"):
        return None
    inner = showname[showname.index("(") + 1 : -1]
    parts = re.split(r",(?=[\w.-]+=)", inner)
    out = []
    for part in parts:
        name, _, value = part.partition("=")
        if name not in TSHARK_ATTRIBUTES:
            return None
        out.append(f"{TSHARK_ATTRIBUTES[name]}={value}")
    return ", ".join(out)


@dataclass(frozen=True)
class TsharkCertificate:
    """What tshark shows of the first certificate of a Certificate message."""

    stream: int
    source_port: int
    issuer: str | None  # RFC 4514 form, None if unmapped attribute types
    subject: str | None
    issuer_cn: str | None
    subject_cn: str | None


def _first_common_name(showname: str | None) -> str | None:
    """The most specific CN in tshark's list (its first), if tshark's text got that far."""
    match = re.search(r"id-at-commonName=(.*?)(?:,[\w.-]+=|\)$)", showname or "")
    return match.group(1) if match else None


def _rdn_showname(element: ElementTree.Element, kind: str) -> str | None:
    name = next((f for f in element.iter("field") if f.get("name") == kind), None)
    if name is None:
        return None
    # tshark names the issuer's sequence x509if.rdnSequence, the subject's x509af.rdnSequence.
    rdns = next((f for f in name.iter("field") if f.get("name", "").endswith(".rdnSequence")), None)
    return None if rdns is None else rdns.get("showname", "")


def tshark_certificates(
    tshark: str, path: Path, decode_as: Sequence[str] = ()
) -> list[TsharkCertificate]:
    """The first certificate of every Certificate message tshark shows (client's included)."""
    command = [tshark, "-n", "-r", str(path), "-Y", "tls.handshake.type == 11", "-T", "pdml"]
    for rule in decode_as:
        command += ["-d", rule]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    found = []
    for packet in ElementTree.fromstring(output or "<pdml/>").iter("packet"):
        fields = {f.get("name"): f.get("show", "") for f in packet.iter("field")}
        issuer = _rdn_showname(packet, "x509af.issuer")
        subject = _rdn_showname(packet, "x509af.subject")
        found.append(
            TsharkCertificate(
                int(fields["tcp.stream"] or -1),
                int(fields["tcp.srcport"] or 0),
                _tshark_dn(issuer) if issuer else None,
                _tshark_dn(subject) if subject else None,
                _first_common_name(issuer),
                _first_common_name(subject),
            )
        )
    return found


def _version_name(text: str) -> str:
    return VERSIONS.get(int(text, 16), text)


def tls_expectations(
    tshark: str, path: Path, flows: dict[int, StreamPayload], decode_as: Sequence[str] = ()
) -> dict[int, dict[str, Any]]:
    """tcp.stream -> the facts tshark shows for it, from its first ClientHello/ServerHello."""
    expected: dict[int, dict[str, Any]] = {}
    client_fields = [
        "tcp.stream",
        "tls.handshake.version",
        "tls.handshake.extensions.supported_version",
        "tls.handshake.extensions_server_name",
        "tls.handshake.extensions_alpn_str",
    ]
    for row in tshark_fields(tshark, path, "tls.handshake.type == 1", client_fields, decode_as):
        stream = int(row["tcp.stream"][0])
        if stream in expected:
            continue
        client_version = _version_name(row["tls.handshake.version"][0])
        known = [
            int(v, 16)
            for v in row.get("tls.handshake.extensions.supported_version", [])
            if int(v, 16) in VERSIONS
        ]
        expected[stream] = {
            "client_hello": True,
            "client_version": client_version,
            "client_max_version": VERSIONS[max(known)] if known else client_version,
            "sni": first(row, "tls.handshake.extensions_server_name"),
            "alpn": row.get("tls.handshake.extensions_alpn_str", []),
        }
    server_fields = [
        "tcp.stream",
        "tls.handshake.version",
        "tls.handshake.extensions.supported_version",
        "tls.handshake.ciphersuite",
        "tls.handshake.extensions_alpn_str",
    ]
    seen_server = set()
    for row in tshark_fields(tshark, path, "tls.handshake.type == 2", server_fields, decode_as):
        stream = int(row["tcp.stream"][0])
        if stream in seen_server:
            continue
        seen_server.add(stream)
        selected = (
            row.get("tls.handshake.extensions.supported_version") or row["tls.handshake.version"]
        )
        expected.setdefault(stream, {}).update(
            {
                "server_hello": True,
                "version": _version_name(selected[0]),
                "cipher_suite": int(row["tls.handshake.ciphersuite"][0], 16),
                "alpn_selected": first(row, "tls.handshake.extensions_alpn_str"),
            }
        )
    seen_certificate = set()
    for certificate in tshark_certificates(tshark, path, decode_as):
        flow = flows.get(certificate.stream)
        if flow is None or certificate.source_port != flow.server_port:
            continue  # a client certificate
        if certificate.stream in seen_certificate:
            continue
        seen_certificate.add(certificate.stream)
        facts = expected.setdefault(certificate.stream, {})
        facts["cert_issuer_cn"] = certificate.issuer_cn
        facts["cert_subject_cn"] = certificate.subject_cn
        if certificate.issuer is not None:
            facts["cert_issuer"] = certificate.issuer
        if certificate.subject is not None:
            facts["cert_subject"] = certificate.subject
    return expected


def tls_differences(facts: dict[str, Any] | None, expected: dict[str, Any]) -> list[str]:
    if facts is None:
        return ["not recognised"]
    return [
        f"{key}: ours {facts[key]!r}, tshark {value!r}"
        for key, value in expected.items()
        if facts[key] != value
    ]
