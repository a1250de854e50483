"""What an analyst asks to see: ``--host``, ``--net``, ``--since``/``--until``, ``--service``,
``--verdict``, ``--rule`` and ``--min-severity`` on ``analyze`` (and the first four on ``flows``).

A filter selects what a report shows and what decides the exit code; it never changes the
audit. ``audit()`` sees the whole capture (roles, endpoint mapper announcements, TFTP answers,
correlations), then ``select_result`` keeps:

* the flows that match every flow filter given: an end's address is one of ``--host`` or in
  one of ``--net`` (either end; the hosts and nets are one list of alternatives), the flow was
  active in ``[since, until]`` (its last packet at or after ``since``, its first at or before
  ``until``), its service is one of ``--service``, its verdict one of ``--verdict``;
* the findings of the rules asked for (``--rule``), of at least ``--min-severity``, that name
  at least one of the kept flows; each keeps only the ids of its kept flows (its ``detail``
  still tells the whole of it).

Times are ISO 8601 (a time without an offset is UTC) or an offset from the first packet of
the capture set: ``+90s``, ``+5m``, ``+1h``, ``+1h30m``, ``+0.5s``.

Bad values are a ``UsageError``: one line on stderr, exit code 2, before the capture is read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from flowaudit.errors import UsageError

if TYPE_CHECKING:
    from flowaudit.audit import AuditResult
    from flowaudit.capture.reader import CaptureInfo
    from flowaudit.flows import FlowTable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_OFFSET = re.compile(
    r"^\+(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)
_UNITS_NS = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000}
_MAX_NS = 2**63 - 1 - 200 * 365 * 86_400 * 1_000_000_000  # room for an offset added to a time


@dataclass(frozen=True)
class TimeBound:
    """``--since`` or ``--until`` as given: an absolute time (ns since the epoch, UTC) or an
    offset from the first packet (ns)."""

    text: str
    absolute_ns: int | None = None
    offset_ns: int | None = None

    def resolve(self, start_ns: int | None) -> int | None:
        """The bound in ns since the epoch; an offset of a capture without packets: None."""
        if self.absolute_ns is not None:
            return self.absolute_ns
        if start_ns is None or self.offset_ns is None:
            return None
        return start_ns + self.offset_ns


def parse_time(option: str, text: str) -> TimeBound:
    """``--since``/``--until``: ISO 8601, or ``+`` an offset from the first packet."""
    value = text.strip()
    if value.startswith("+"):
        match = _OFFSET.match(value)
        if not match or not any(match.group(unit) for unit in _UNITS_NS):
            raise UsageError(
                f"{option} {text!r}: an offset is + a number of h, m and s (+30s, +5m, +1h30m)"
            )
        offset = sum(
            round(float(match.group(unit)) * scale)
            for unit, scale in _UNITS_NS.items()
            if match.group(unit)
        )
        if offset > _MAX_NS:
            raise UsageError(f"{option} {text!r}: an offset of more than 200 years")
        return TimeBound(text, offset_ns=offset)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: not an ISO 8601 time (2023-11-14T22:13:20Z) "
            "or an offset from the first packet (+5m)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    delta = moment - epoch
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if not -_MAX_NS <= ns <= _MAX_NS:
        # capture times are nanoseconds in 64 bits: 1677-09-21 to 2262-04-11
        raise UsageError(f"{option} {text!r}: outside the times a capture can hold (1678-2261)")
    return TimeBound(text, absolute_ns=ns)


def parse_host(text: str) -> str:
    """An address as flows spell it (``ipaddress``'s compressed form; an IPv4-mapped IPv6
    address as its IPv4 address, as flows write it)."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        raise UsageError(f"--host {text!r}: not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_net(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(f"--net {text!r}: not an IP network (CIDR, e.g. 10.0.0.0/8)") from None


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return str(np.datetime64(ns, "ns").astype("datetime64[us]")) + "Z"


@dataclass(frozen=True)
class Filters:
    hosts: tuple[str, ...] = ()
    nets: tuple[Network, ...] = ()
    since: TimeBound | None = None
    until: TimeBound | None = None
    services: tuple[str, ...] = ()
    verdicts: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    min_severity: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.flow_filters or self.rules or self.min_severity)

    @property
    def flow_filters(self) -> bool:
        return bool(
            self.hosts or self.nets or self.since or self.until or self.services or self.verdicts
        )

    def options(self) -> dict[str, Any]:
        """The filters as given (the report's ``filters.options``)."""
        return {
            "host": list(self.hosts),
            "net": [str(net) for net in self.nets],
            "since": self.since.text if self.since else None,
            "until": self.until.text if self.until else None,
            "service": list(self.services),
            "verdict": list(self.verdicts),
            "rule": list(self.rules),
            "min_severity": self.min_severity,
        }

    def address_match(self, addresses: Sequence[str]) -> np.ndarray:
        """Whether each address is one of the hosts or in one of the nets."""
        hosts = set(self.hosts)
        out = np.zeros(len(addresses), dtype=bool)
        cache: dict[str, bool] = {}
        for index, address in enumerate(addresses):
            hit = cache.get(address)
            if hit is None:
                hit = address in hosts
                if not hit and self.nets:
                    try:
                        parsed = ipaddress.ip_address(address)
                    except ValueError:
                        parsed = None
                    hit = parsed is not None and any(
                        parsed.version == net.version and parsed in net for net in self.nets
                    )
                cache[address] = hit
            out[index] = hit
        return out

    def flow_mask(
        self, columns: dict[str, Any], start_ns: int | None, *, judged: bool
    ) -> np.ndarray:
        """Which rows of flow ``columns`` the flow filters keep (``judged``: the columns of an
        audit, with service and verdict)."""
        count = len(columns["id"])
        mask = np.ones(count, dtype=bool)
        if self.hosts or self.nets:
            mask &= self.address_match(list(columns["client"])) | self.address_match(
                list(columns["server"])
            )
        since = self.since.resolve(start_ns) if self.since else None
        until = self.until.resolve(start_ns) if self.until else None
        if since is not None:
            last = np.asarray(columns["last_seen"]).astype("datetime64[ns]").astype(np.int64)
            mask &= last >= since
        if until is not None:
            first = np.asarray(columns["first_seen"]).astype("datetime64[ns]").astype(np.int64)
            mask &= first <= until
        if judged and self.services:
            wanted = set(self.services)
            mask &= np.fromiter((s in wanted for s in columns["service"]), bool, count)
        if judged and self.verdicts:
            wanted = set(self.verdicts)
            mask &= np.fromiter((v in wanted for v in columns["verdict"]), bool, count)
        return mask

    def report(self, start_ns: int | None, counts: dict[str, int]) -> dict[str, Any]:
        """The report's ``filters``: the options, the times they came to, and what was kept."""
        return {
            "options": self.options(),
            "since_utc": _iso(self.since.resolve(start_ns)) if self.since else None,
            "until_utc": _iso(self.until.resolve(start_ns)) if self.until else None,
            **counts,
        }


def make_filters(
    *,
    hosts: Sequence[str] = (),
    nets: Sequence[str] = (),
    since: str | None = None,
    until: str | None = None,
    services: Sequence[str] = (),
    verdicts: Sequence[str] = (),
    rules: Sequence[str] = (),
    min_severity: str | None = None,
) -> Filters:
    """The filters of the command line, checked (``UsageError`` names the bad value)."""
    from flowaudit.signatures import SEVERITIES, load_signatures

    signatures = load_signatures() if services or rules else None
    for name in services:
        known = set(signatures.services) | {"unknown"} if signatures else set()
        if name not in known:
            raise UsageError(f"--service {name!r}: no such service (see signatures/services.yaml)")
    for name in rules:
        if signatures is not None and name not in signatures.findings:
            raise UsageError(
                f"--rule {name!r}: no such rule ({', '.join(sorted(signatures.findings))})"
            )
    if min_severity is not None and min_severity not in SEVERITIES:
        raise UsageError(f"--min-severity {min_severity!r}: one of {', '.join(SEVERITIES)}")
    since_bound = parse_time("--since", since) if since is not None else None
    until_bound = parse_time("--until", until) if until is not None else None
    if (
        since_bound is not None
        and until_bound is not None
        and (since_bound.absolute_ns is None) == (until_bound.absolute_ns is None)
        and (since_bound.absolute_ns or since_bound.offset_ns or 0)
        > (until_bound.absolute_ns or until_bound.offset_ns or 0)
    ):
        raise UsageError(f"--since {since!r} is after --until {until!r}: nothing could be shown")
    return Filters(
        hosts=tuple(dict.fromkeys(parse_host(h) for h in hosts)),
        nets=tuple(parse_net(n) for n in nets),
        since=since_bound,
        until=until_bound,
        services=tuple(services),
        verdicts=tuple(verdicts),
        rules=tuple(rules),
        min_severity=min_severity,
    )


def capture_start(captures: Sequence[CaptureInfo]) -> int | None:
    """The time of the first packet of the capture set (ns), the origin of ``+`` offsets."""
    starts = [info.first_seen_ns for info in captures if info.first_seen_ns is not None]
    return min(starts) if starts else None


def _take(values: Any, rows: np.ndarray) -> Any:
    if isinstance(values, np.ndarray):
        return values[rows]
    return [values[row] for row in rows.tolist()]


def select_result(result: AuditResult, filters: Filters) -> AuditResult:
    """The audit result as ``filters`` select it (a new result; ``result`` is unchanged).

    With no filter the result itself is returned."""
    if filters.empty:
        return result
    from flowaudit.signatures import SEVERITIES

    start = capture_start(result.captures)
    columns = result.flow_columns
    mask = filters.flow_mask(columns, start, judged=True)
    rows = np.flatnonzero(mask)
    kept_columns = {name: _take(values, rows) for name, values in columns.items()}
    kept_ids = {int(flow_id) for flow_id in _take(columns["id"], rows)}
    least = SEVERITIES.index(filters.min_severity) if filters.min_severity else 0
    findings = []
    for finding in result.findings:
        if filters.rules and finding.rule not in filters.rules:
            continue
        if SEVERITIES.index(finding.severity) < least:
            continue
        flow_ids = [flow_id for flow_id in finding.flow_ids if flow_id in kept_ids]
        if not flow_ids:
            continue
        findings.append(
            finding
            if len(flow_ids) == len(finding.flow_ids)
            else replace(finding, flow_ids=flow_ids)
        )
    addresses = {*kept_columns["client"], *kept_columns["server"]}
    counts = {
        "flows": len(rows),
        "flows_total": len(columns["id"]),
        "findings": len(findings),
        "findings_total": len(result.findings),
    }
    return replace(
        result,
        flow_columns=kept_columns,
        findings=findings,
        addresses=addresses,
        filters=filters.report(start, counts),
    )


class _SelectedPayloads:
    """Some rows of a table's ``FlowPayloads``, with the same interface."""

    def __init__(self, payloads: Any, rows: np.ndarray) -> None:
        self._payloads = payloads
        self._rows = rows

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        c2s, s2c = self._payloads.lengths()
        return c2s[self._rows], s2c[self._rows]

    def first_bytes(self) -> tuple[np.ndarray, np.ndarray]:
        c2s, s2c = self._payloads.first_bytes()
        return c2s[self._rows], s2c[self._rows]

    def select(self, rows: Sequence[int]) -> tuple[list[bytes], list[bytes]]:
        picked: tuple[list[bytes], list[bytes]] = self._payloads.select(
            [int(self._rows[row]) for row in rows]
        )
        return picked

    def columns(self) -> tuple[list[bytes], list[bytes]]:
        c2s, s2c = self._payloads.columns()
        picked = self._rows.tolist()
        return [c2s[row] for row in picked], [s2c[row] for row in picked]


def select_table(table: FlowTable, filters: Filters) -> FlowTable:
    """The rows of a flow table (``flowaudit flows``) that the address and time filters keep."""
    if not filters.flow_filters:
        return table
    if filters.services or filters.verdicts or filters.rules or filters.min_severity:
        raise UsageError("flows has no services, verdicts or findings: use flowaudit analyze")
    rows = np.flatnonzero(
        filters.flow_mask(table.columns, capture_start(table.captures), judged=False)
    )
    columns = {name: values[rows] for name, values in table.columns.items()}
    return replace(
        table,
        columns=columns,
        payloads=_SelectedPayloads(table.payloads, rows),  # type: ignore[arg-type]
        conversations={},
    )
