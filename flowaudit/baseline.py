"""Findings held against earlier runs and accepted risks: baselines, accept files and diffs.

A finding is matched across runs by what it says, never by addresses or flow ids: its rule,
roles, service, port (``dynamic`` for dynamic RPC) and qualifier (``Finding.match``). A
communication is matched by role pair, transport, service, port and verdict.

* ``--baseline OLD.json``: each finding of the new run is ``known`` (the old report had one with
  the same match) or ``new``.
* ``--accept FILE``: entries of rule, match, justification and optional expiry; a finding they
  match is accepted: kept in every report with the justification, but it no longer fails the
  run. An expired entry accepts nothing and says so.
* ``flowaudit diff OLD.json NEW.json``: findings and communications that appeared or went away.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowaudit.audit import COMMUNICATION_KEY, DYNAMIC_PORT, MATCH_KEYS, AuditResult, Finding
from flowaudit.errors import InputError
from flowaudit.matrix import ROLES
from flowaudit.report.audit import SCHEMA
from flowaudit.signatures import SEVERITIES, load_signatures
from flowaudit.site import INTERNET
from flowaudit.yamlfile import (
    MAX_YAML_BYTES,
    YamlDocument,
    key_path,
    read_bounded,
    read_yaml,
    shown,
    size_text,
)

ACCEPT_KEYS = ("rule", "match", "justification", "expires")
# An accept entry's match takes the keys of a finding's (``MATCH_KEYS``), so that one from a
# report may be pasted as it is (its ``rule`` must then agree); ``client`` and ``server`` take
# addresses or networks, which must hold that end of every flow of the finding.

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def file_evidence(path: str | Path, raw: bytes) -> dict[str, Any]:
    return {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}


def _read(path: str | Path, what: str) -> bytes:
    return read_bounded(path, what, MAX_YAML_BYTES)


# --- reports --------------------------------------------------------------------------------

# A report of a million flows is some 700 MB; one larger is not a report (docs/limits.md).
MAX_REPORT_BYTES = 1 << 30
# Reports nest ten levels (a flow's facts); 64 is far beyond any of them.
MAX_REPORT_DEPTH = 64
_SNIFF_BYTES = 1 << 16
_JSON_STARTS = frozenset(bytes([char]) for char in b'{["-0123456789tfnNI')


def _read_report(path: str | Path) -> bytes:
    """The bytes of a report, up to ``MAX_REPORT_BYTES``; what cannot start a JSON text is
    refused after its first bytes (a capture, /dev/zero), not read to the limit."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            first = head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]
            if first and first not in _JSON_STARTS:
                raise InputError(f"{shown(path)}: not a JSON report (it does not start as JSON)")
            raw = head + handle.read(MAX_REPORT_BYTES + 1 - len(head))
    except OSError as exc:
        raise InputError(f"{shown(path)}: cannot read the report ({exc.strerror})") from None
    if len(raw) > MAX_REPORT_BYTES:
        limit = size_text(MAX_REPORT_BYTES)
        raise InputError(f"{shown(path)}: the report is larger than {limit} (the limit)")
    return raw


def load_report(path: str | Path) -> dict[str, Any]:
    """A JSON report of ``flowaudit analyze``; anything else, or a report whose parts that
    ``diff``, ``--baseline`` and ``verify`` read are missing or of the wrong kind, is one error
    naming the file and the key."""
    raw = _read_report(path)
    try:
        document = json.loads(raw)
    except RecursionError:
        raise InputError(
            f"{shown(path)}: nested deeper than {MAX_REPORT_DEPTH} levels (the limit)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{shown(path)}: not a JSON report ({shown(exc)})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise InputError(f"{shown(path)}: not a flowaudit report (schema {SCHEMA!r} expected)")
    too_deep = _too_deep(document, MAX_REPORT_DEPTH)
    if too_deep is not None:
        raise InputError(
            f"{shown(path)}: {too_deep}: nested deeper than {MAX_REPORT_DEPTH} levels (the limit)"
        )
    _ReportChecker(shown(path)).check(document)
    document["_evidence"] = file_evidence(path, raw)
    return document


def _too_deep(document: dict[str, Any], limit: int) -> str | None:
    """The top-level key under which ``document`` nests deeper than ``limit``, if any."""
    for key, value in document.items():
        stack = [(value, 2)] if isinstance(value, (dict, list)) else []
        while stack:
            item, depth = stack.pop()
            if depth > limit:
                return shown(key)
            children = item.values() if isinstance(item, dict) else item
            stack.extend(
                (child, depth + 1) for child in children if isinstance(child, (dict, list))
            )
    return None


_SCALAR = (str, int, float, bool, type(None))


class _ReportChecker:
    """The parts of a report that flowaudit reads back (``diff``, ``--baseline``, ``verify``
    and ``verify --rerun``), checked so that a hand-edited or foreign report is one error
    naming the file and where (``report.json: findings.3.severity: missing``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, where: tuple[Any, ...], message: str) -> InputError:
        return InputError(f"{self.name}: {key_path(where)}: {message}")

    def items(self, document: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = document.get(key)
        if not isinstance(value, list):
            raise self.error((key,), "missing or not a list")
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.error((key, index), "not an object")
        return value

    def field(self, item: dict[str, Any], where: tuple[Any, ...], key: str, kinds: Any) -> Any:
        if key not in item:
            raise self.error((*where, key), "missing")
        if not isinstance(item[key], kinds):
            raise self.error((*where, key), f"not of the right kind ({_short_repr(item[key])})")
        return item[key]

    def optional(self, item: dict[str, Any], where: tuple[Any, ...], key: str, kinds: Any) -> Any:
        if item.get(key) is None:
            return None
        return self.field(item, where, key, kinds)

    def mapping(self, document: dict[str, Any], where: tuple[Any, ...]) -> dict[str, Any]:
        value = document.get(where[-1])
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, "not an object")
        return value

    def file(self, record: dict[str, Any], where: tuple[Any, ...], *, path: bool) -> None:
        """A file the report rests on: path, SHA-256 and size, as ``verify`` reads them."""
        if path:
            self.field(record, where, "path", str)
        else:
            self.optional(record, where, "path", str)
        sha = record.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _is_sha256(sha)):
            raise self.error((*where, "sha256"), "not a SHA-256 in hex")
        size = record.get("size")
        if size is not None and not (_is_count(size)):
            raise self.error((*where, "size"), "not a size in bytes")

    def check(self, document: dict[str, Any]) -> None:
        digest = document.get("report_sha256")
        if digest is not None and not (isinstance(digest, str) and _is_sha256(digest)):
            raise self.error(("report_sha256",), "not a SHA-256 in hex")
        command = document.get("command")
        if command is not None and not (
            isinstance(command, list) and all(isinstance(word, str) for word in command)
        ):
            raise self.error(("command",), "not a list of words")
        for key in ("run_id", "generated_at"):
            if not isinstance(document.get(key), _SCALAR):
                raise self.error((key,), "not a single value")
        for index, capture in enumerate(self.items(document, "captures")):
            self.file(capture, ("captures", index), path=True)
        for index, finding in enumerate(self.items(document, "findings")):
            where = ("findings", index)
            self.field(finding, where, "rule", str)
            self.field(finding, where, "title", str)
            severity = self.field(finding, where, "severity", str)
            if severity not in SEVERITIES:
                raise self.error((*where, "severity"), f"not one of {', '.join(SEVERITIES)}")
            flow_ids = self.field(finding, where, "flow_ids", list)
            for number, flow_id in enumerate(flow_ids):
                if not _is_count(flow_id):
                    raise self.error((*where, "flow_ids", number), "not a flow id")
            match = self.field(finding, where, "match", dict)
            for key in MATCH_KEYS:
                if key in match or key not in ("client", "server"):  # (addresses came later)
                    self.field(match, (*where, "match"), key, _SCALAR)
        for index, group in enumerate(self.items(document, "communications")):
            for key in COMMUNICATION_KEY:
                self.field(group, ("communications", index), key, _SCALAR)
            for key in ("flows", "plaintext"):
                self.optional(group, ("communications", index), key, _SCALAR)
        site = self.mapping(document, ("site",))
        self.file(site, ("site",), path=False)
        for kind, record in self.mapping(document, ("inputs",)).items():
            if record is not None:
                if not isinstance(record, dict):
                    raise self.error(("inputs", kind), "not an object")
                self.file(record, ("inputs", kind), path=True)
        signatures = self.mapping(document, ("signatures",))
        tables = signatures.get("sha256")
        if tables is not None and not (
            isinstance(tables, dict) and all(isinstance(v, str) for v in tables.values())
        ):
            raise self.error(("signatures", "sha256"), "not an object of table names and SHA-256")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({type(value).__name__})"


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(char in "0123456789abcdef" for char in text.lower())


def _finding_key(match: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(match.get(name) for name in MATCH_KEYS)


def _communication_key(group: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(group.get(name) for name in COMMUNICATION_KEY)


def mark_baseline(result: AuditResult, old: Mapping[str, Any]) -> None:
    """Mark each finding ``known`` (the old report had its match) or ``new``."""
    known = {_finding_key(finding["match"]) for finding in old["findings"]}
    for finding in result.findings:
        finding.baseline = "known" if _finding_key(finding.match()) in known else "new"
    evidence = dict(old["_evidence"], run_id=old.get("run_id"))
    result.inputs["baseline"] = evidence


# --- accept files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    """One entry of an accept file."""

    index: int
    rule: str
    match: dict[str, Any]
    justification: str
    expires: dt.date | None
    line: int | None
    networks: dict[str, list[Network]] = field(default_factory=dict)

    def matches(self, finding: Finding, flows: Mapping[int, Mapping[str, Any]]) -> bool:
        if finding.rule != self.rule:
            return False
        found = finding.match()
        for name, wanted in self.match.items():  # (addresses are in ``networks``)
            if name == "port":
                if not _port_matches(wanted, found["port"]):
                    return False
            elif found.get(name) != wanted:
                return False
        for end, networks in self.networks.items():
            for flow_id in finding.flow_ids:
                address = ipaddress.ip_address(flows[flow_id][end])
                if not any(address.version == n.version and address in n for n in networks):
                    return False
        return True

    def record(self, source: str) -> dict[str, Any]:
        return {
            "justification": self.justification,
            "expires": self.expires.isoformat() if self.expires else None,
            "file": source,
            "entry": self.index,
            "line": self.line,
        }


def _port_matches(wanted: Any, port: Any) -> bool:
    if isinstance(wanted, list):
        return isinstance(port, int) and wanted[0] <= port <= wanted[1]
    return bool(wanted == port)


@dataclass(frozen=True)
class AcceptFile:
    path: str
    entries: tuple[Acceptance, ...]
    evidence: dict[str, Any]


def parse_accept(text: str | bytes, name: str = "accept.yaml") -> tuple[Acceptance, ...]:
    """The entries of an accept file::

        accept:
          - rule: smb-signing-not-required
            match: {client_role: site-server, server_role: distribution-point, port: 445}
            justification: "CHG-1234: legacy DP, signing enforced after the 2027 refresh"
            expires: 2027-06-30

    Every error is one line naming the file, line and key.
    """
    doc = read_yaml(text, name)
    if not isinstance(doc.data, dict) or set(doc.data) != {"accept"}:
        raise doc.error((), "expected one key, 'accept', with a list of entries")
    entries = doc.data["accept"]
    if not isinstance(entries, list):
        raise doc.error(("accept",), "must be a list of entries")
    signatures = load_signatures()
    return tuple(
        _acceptance(doc, index, entry, signatures.findings, signatures.services)
        for index, entry in enumerate(entries)
    )


def _acceptance(
    doc: YamlDocument,
    index: int,
    entry: Any,
    rules: Mapping[str, Any],
    services: Mapping[str, Any],
) -> Acceptance:
    path: tuple[Any, ...] = ("accept", index)
    if not isinstance(entry, dict):
        raise doc.error(path, "an entry must be a mapping of rule, match, justification, expires")
    for key in entry:
        if key not in ACCEPT_KEYS:
            raise doc.error((*path, key), f"unknown key (expected {', '.join(ACCEPT_KEYS)})")
    rule = entry.get("rule")
    if not isinstance(rule, str) or rule not in rules:
        raise doc.error((*path, "rule"), f"unknown rule {rule!r} (one of {', '.join(rules)})")
    justification = entry.get("justification")
    if not isinstance(justification, str) or not justification.strip():
        raise doc.error((*path, "justification"), "a justification (text) is required")
    expires = entry.get("expires")
    if isinstance(expires, str):  # quoted: "2027-06-30"
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            raise doc.error((*path, "expires"), "must be a date (YYYY-MM-DD)") from None
    if expires is not None and not isinstance(expires, dt.date):
        raise doc.error((*path, "expires"), "must be a date (YYYY-MM-DD)")
    if isinstance(expires, dt.datetime):
        expires = expires.date()
    match = entry.get("match", {})
    if not isinstance(match, dict):
        raise doc.error((*path, "match"), f"must be a mapping of {', '.join(MATCH_KEYS)}")
    networks: dict[str, list[Network]] = {}
    for key, value in match.items():
        where = (*path, "match", key)
        if key not in MATCH_KEYS:
            raise doc.error(where, f"unknown key (expected {', '.join(MATCH_KEYS)})")
        if key == "rule" and value != rule:
            raise doc.error(where, f"{value!r} is not the entry's rule {rule!r}")
        if key in ("client_role", "server_role") and value not in (*ROLES, INTERNET, None):
            raise doc.error(where, f"unknown role {value!r}")
        if (
            key == "service"
            and value is not None
            and (not isinstance(value, str) or value not in services)
        ):
            raise doc.error(where, f"unknown service {value!r}")
        if key == "port" and not _valid_port(value):
            raise doc.error(where, f"a port, [low, high] or {DYNAMIC_PORT!r}, not {value!r}")
        if key in ("client", "server") and value is not None:  # null: any address
            networks[key] = _networks(doc, where, value)
    return Acceptance(
        index=index,
        rule=rule,
        match={k: v for k, v in match.items() if k not in ("rule", "client", "server")},
        justification=justification.strip(),
        expires=expires,
        line=doc.line(path),
        networks=networks,
    )


def _valid_port(value: Any) -> bool:
    def port(number: Any) -> bool:
        return isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= 65535

    if isinstance(value, list):
        return len(value) == 2 and all(port(n) for n in value) and value[0] <= value[1]
    return value in (DYNAMIC_PORT, None) or port(value)


def _networks(doc: YamlDocument, where: tuple[Any, ...], value: Any) -> list[Network]:
    values = value if isinstance(value, list) else [value]
    out = []
    for item in values:
        try:
            out.append(ipaddress.ip_network(str(item), strict=True))
        except ValueError:
            raise doc.error(where, f"{item!r} is not an IP address or CIDR") from None
    return out


def load_accept(path: str | Path) -> AcceptFile:
    raw = _read(path, "accept file")
    return AcceptFile(str(path), parse_accept(raw, str(path)), file_evidence(path, raw))


def apply_accept(
    result: AuditResult, accept: AcceptFile, today: dt.date | None = None
) -> list[str]:
    """Accept the findings the file's live entries match (the first entry that matches a
    finding names it); return warnings for stderr: each expired entry, and each live entry
    that matched nothing."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    flows = (
        {flow["id"]: flow for flow in result.flows}
        if any(entry.networks for entry in accept.entries)
        else {}
    )
    matched = {
        entry.index: [f for f in result.findings if entry.matches(f, flows)]
        for entry in accept.entries
    }
    expired = {entry.index for entry in accept.entries if entry.expires and entry.expires < today}
    for entry in accept.entries:
        if entry.index not in expired:
            for finding in matched[entry.index]:
                if finding.accepted is None:
                    finding.accepted = entry.record(accept.path)
    warnings = []
    for entry in accept.entries:
        where = f"{accept.path}:{entry.line}" if entry.line else accept.path
        if entry.index in expired:
            again = [f for f in matched[entry.index] if f.accepted is None]
            warnings.append(
                f"{where}: the acceptance of {entry.rule} expired on {entry.expires}: "
                + (f"{len(again)} finding(s) count again" if again else "no open finding is hit")
            )
        elif not matched[entry.index]:
            warnings.append(f"{where}: accept entry {entry.index} ({entry.rule}) matched nothing")
    result.inputs["accept"] = accept.evidence
    return warnings


# --- diff -----------------------------------------------------------------------------------


def _label(row: Mapping[str, Any]) -> str:
    """client role -> server role [proto] service [port] (a finding's match has no proto)."""
    client = row.get("client_role") or row.get("client") or "no role"
    server = row.get("server_role") or row.get("server") or "no role"
    parts = [
        f"{client} -> {server}",
        row.get("proto"),
        row.get("service"),
        row.get("port"),
    ]
    return " ".join(str(part) for part in parts if part is not None)


def diff_reports(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Findings and communications that appeared or went away between two reports, and the
    communications that became unexpected (matched without their verdict)."""
    old_findings = {_finding_key(f["match"]): f for f in old["findings"]}
    new_findings = {_finding_key(f["match"]): f for f in new["findings"]}
    old_comms = {_communication_key(c): c for c in old["communications"]}
    new_comms = {_communication_key(c): c for c in new["communications"]}

    def finding_row(finding: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **finding["match"],
            "severity": finding["severity"],
            "title": finding["title"],
            "flows": len(finding["flow_ids"]),
            "accepted": finding.get("accepted") is not None,
        }

    def comm_row(group: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **{name: group.get(name) for name in COMMUNICATION_KEY},
            "flows": group.get("flows"),
            "plaintext": group.get("plaintext"),
        }

    was_unexpected = {key[:5] for key in old_comms if key[5] == "unexpected"}
    order = SEVERITIES.index
    appeared = [finding_row(new_findings[k]) for k in new_findings if k not in old_findings]
    gone = [finding_row(old_findings[k]) for k in old_findings if k not in new_findings]
    appeared.sort(key=lambda row: -order(row["severity"]))
    gone.sort(key=lambda row: -order(row["severity"]))
    return {
        "old": {"run_id": old.get("run_id"), "generated_at": old.get("generated_at")},
        "new": {"run_id": new.get("run_id"), "generated_at": new.get("generated_at")},
        "findings": {"appeared": appeared, "disappeared": gone},
        "communications": {
            "appeared": [comm_row(new_comms[k]) for k in new_comms if k not in old_comms],
            "disappeared": [comm_row(old_comms[k]) for k in old_comms if k not in new_comms],
            "became_unexpected": [
                comm_row(new_comms[k])
                for k in new_comms
                if k[5] == "unexpected" and k[:5] not in was_unexpected
            ],
        },
    }


def diff_is_empty(diff: Mapping[str, Any]) -> bool:
    return not any(rows for part in ("findings", "communications") for rows in diff[part].values())


def diff_lines(diff: Mapping[str, Any]) -> list[str]:
    """The diff as text lines: ``+`` appeared, ``-`` disappeared, ``!`` a communication that
    became unexpected (not repeated among those that appeared)."""
    lines = []
    for sign, part in (("+", "appeared"), ("-", "disappeared")):
        for row in diff["findings"][part]:
            qualifier = f" [{row['qualifier']}]" if row.get("qualifier") else ""
            lines.append(
                f"{sign} finding {row['severity']} {row['rule']}: {_label(row)}{qualifier}"
            )
    communications = diff["communications"]
    shown_once = set()  # (a set: a diff of 80,000 communications scanned a list per row)
    for row in communications["became_unexpected"]:
        lines.append(f"! now unexpected: {_label(row)} ({row['flows']} flows)")
        shown_once.add(_communication_key(row))
    for sign, part in (("+", "appeared"), ("-", "disappeared")):
        for row in communications[part]:
            if sign == "+" and _communication_key(row) in shown_once:
                continue
            lines.append(
                f"{sign} communication {row['verdict']}: {_label(row)} ({row['flows']} flows)"
            )
    return lines
