"""Write a ``FlowTable`` as a terminal table, CSV, JSON or Parquet (``flowaudit flows``).

Every format shows the same rows and the same field names (DESIGN.md's JSON contract);
payload bytes are kept out of the text formats unless asked for (base64), and always kept in
Parquet, whose binary columns hold them cheaply. The writers stream rows from the table's
columns and never need pandas.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from flowaudit import __version__

if TYPE_CHECKING:
    from flowaudit.capture.reader import CaptureInfo
    from flowaudit.flows import FlowTable

FORMATS = ("table", "csv", "json", "parquet")
PAYLOAD_COLUMNS = ("c2s_payload", "s2c_payload")
TIME_COLUMNS = ("first_seen", "last_seen")


def time_unit(table: FlowTable) -> str:
    """Microseconds, unless some timestamp has finer detail (ns captures)."""
    for name in TIME_COLUMNS:
        if np.any(table.columns[name].astype(np.int64) % 1000):
            return "ns"
    return "us"


def iso_times(values: Any, unit: Any) -> list[str]:
    """datetime64 values as ISO 8601 UTC text (``...Z``) at ``unit`` ("us" or "ns")."""
    return np.datetime_as_string(values, unit=unit, timezone="UTC").tolist()


def _ns_iso(ns: int | None, unit: str) -> str | None:
    return None if ns is None else iso_times(np.array([ns], dtype="datetime64[ns]"), unit)[0]


def text_columns(table: FlowTable, *, payload: bool = False) -> dict[str, list[Any]]:
    """The columns as plain Python values: ISO 8601 times, payloads as lengths (or base64)."""
    unit = time_unit(table)
    out: dict[str, list[Any]] = {}
    for name, values in table.columns.items():
        if name in TIME_COLUMNS:
            out[name] = iso_times(values, unit)
        else:
            out[name] = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if payload:
        for name, column in zip(PAYLOAD_COLUMNS, table.payloads.columns(), strict=True):
            out[name] = [base64.b64encode(b).decode("ascii") for b in column]
    return out


def _rows(columns: dict[str, list[Any]]) -> Iterator[tuple[Any, ...]]:
    return zip(*columns.values(), strict=True)


def capture_dicts(captures: Sequence[CaptureInfo], unit: str = "us") -> list[dict[str, Any]]:
    return [
        {
            "path": info.path,
            "sha256": info.sha256,
            "format": info.format,
            "compression": info.compression,
            "size": info.size,
            "linktypes": info.linktypes,
            "packets": info.packets,
            "ip_packets": info.ip_packets,
            "bytes": info.bytes,
            "first_seen": _ns_iso(info.first_seen_ns, unit),
            "last_seen": _ns_iso(info.last_seen_ns, unit),
            "warnings": info.warnings,
        }
        for info in captures
    ]


def write_json(table: FlowTable, out: IO[str], *, payload: bool = False) -> None:
    columns = text_columns(table, payload=payload)
    names = list(columns)
    document = {
        "schema": "flowaudit/flows/v1",
        "tool": {"name": "flowaudit", "version": __version__},
        "captures": capture_dicts(table.captures, time_unit(table)),
        "orphan_fragments": table.orphan_fragments,
        "flows": [dict(zip(names, row, strict=True)) for row in _rows(columns)],
    }
    json.dump(document, out, indent=1)
    out.write("\n")


# Text columns flowaudit writes itself from numbers, in alphabets that hold no control
# character and cannot start a formula (addresses, ISO times, protocol and flag names): not
# guarded cell by cell, which cost 3.5 s a million flows.
GENERATED_TEXT = frozenset(
    {"proto", "client", "server", "first_seen", "last_seen", "tcp_flags", "direction_by"}
)


def write_csv(table: FlowTable, out: IO[str], *, payload: bool = False) -> None:
    """The flows, one row each, every cell guarded as ``analyze``'s CSV guards its cells (a
    base64 payload that starts with ``+`` gets the ``'`` too)."""
    from flowaudit.report.audit import csv_cell  # that module imports this one

    columns = text_columns(table, payload=payload)
    for name, values in columns.items():
        source = table.columns.get(name)
        if name in GENERATED_TEXT or (
            isinstance(source, np.ndarray) and source.dtype.kind in "biuf"  # numbers
        ):
            continue
        guarded: dict[Any, Any] = {}  # file names repeat: each distinct one guarded once
        columns[name] = [
            guarded[value] if value in guarded else guarded.setdefault(value, csv_cell(value))
            for value in values
        ]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(_rows(columns))


def write_parquet(table: FlowTable, out: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in table.columns.items():
        if name in TIME_COLUMNS:
            arrays[name] = pa.array(values).cast(pa.timestamp("ns", tz="UTC"))
        else:
            arrays[name] = pa.array(values)
    for name, column in zip(PAYLOAD_COLUMNS, table.payloads.columns(), strict=True):
        arrays[name] = pa.array(column, type=pa.binary())
    pq.write_table(pa.table(arrays), out)


def write_table(table: FlowTable, out: IO[str], *, color: bool) -> None:
    from rich.console import Console

    from flowaudit.report.terminal import plain_table

    console = Console(
        file=out, no_color=not color, highlight=False, width=160 if not color else None
    )
    for info in table.captures:
        span = ""
        if info.first_seen_ns is not None and info.last_seen_ns is not None:
            span = f", {(info.last_seen_ns - info.first_seen_ns) / 1e9:.3f} s"
        console.print(
            f"{info.path}: {info.format}{'+' + info.compression if info.compression else ''}, "
            f"{', '.join(info.linktypes)}, {info.packets} packets, {info.bytes} bytes{span}",
            markup=False,
        )
        for warning in info.warnings:
            console.print(f"  warning: {warning}", markup=False)
    headers = (
        "id",
        "proto",
        "client",
        "server",
        "packets",
        "bytes",
        "first seen",
        "duration",
        "tcp",
        "start",
    )
    rows = text_columns(table)
    cells = [
        (
            str(rows["id"][k]),
            rows["proto"][k],
            _endpoint(rows["client"][k], rows["client_port"][k], rows["proto"][k]),
            _endpoint(rows["server"][k], rows["server_port"][k], rows["proto"][k]),
            str(rows["packets"][k]),
            str(rows["bytes"][k]),
            rows["first_seen"][k],
            f"{rows['duration'][k]:.3f}",
            rows["tcp_flags"][k],
            "seen" if rows["start_seen"][k] else f"not seen ({rows['direction_by'][k]})",
        )
        for k in range(len(table))
    ]
    # never cut: a report must not lose the end of an IPv6 address
    for line in plain_table(headers, cells, right=("id", "packets", "bytes", "duration")):
        out.write(line + "\n")
    console.print(f"{len(table)} flows", markup=False)


def endpoint(address: str, port: Any) -> str:
    """address:port, an IPv6 address in brackets so that the port stays apart from it."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _endpoint(address: str, port: int, proto: str) -> str:
    return endpoint(address, port) if proto in ("tcp", "udp") else address
