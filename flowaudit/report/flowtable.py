"""Write a ``FlowTable`` as a terminal table, CSV, JSON or Parquet (``flowaudit flows``).

Every format shows the same rows and the same field names (DESIGN.md's JSON contract);
payload bytes are kept out of the text formats unless asked for (base64), and always kept in
Parquet, whose binary columns hold them cheaply.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
import pandas as pd

from flowaudit import __version__
from flowaudit.capture.reader import CaptureInfo
from flowaudit.flows import FlowTable

FORMATS = ("table", "csv", "json", "parquet")
PAYLOAD_COLUMNS = ("c2s_payload", "s2c_payload")


def _iso(values: pd.Series, unit: str) -> list[str]:
    raw: Any = values.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return [str(text) + "Z" for text in np.datetime_as_string(raw, unit=unit)]  # type: ignore[call-overload]


def _ns_iso(ns: int | None, unit: str) -> str | None:
    if ns is None:
        return None
    stamp: Any = np.datetime64(ns, "ns")
    return str(np.datetime_as_string(stamp, unit=unit)) + "Z"  # type: ignore[call-overload]


def time_unit(table: FlowTable) -> str:
    """Microseconds, unless some timestamp has finer detail (ns captures)."""
    flows = table.flows
    for column in ("first_seen", "last_seen"):
        ns = flows[column].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        if np.any(ns % 1000):
            return "ns"
    return "us"


def text_frame(table: FlowTable, *, payload: bool = False) -> pd.DataFrame:
    """The flow table with timestamps as ISO 8601 text and payloads as lengths or base64."""
    unit = time_unit(table)
    frame = table.flows.copy()
    for column in ("first_seen", "last_seen"):
        frame[column] = _iso(frame[column], unit)
    for column in PAYLOAD_COLUMNS:
        frame[column + "_len"] = [len(b) for b in frame[column]]
        if payload:
            frame[column] = [base64.b64encode(b).decode("ascii") for b in frame[column]]
        else:
            frame = frame.drop(columns=column)
    return frame


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
    frame = text_frame(table, payload=payload)
    document = {
        "schema": "flowaudit/flows/v1",
        "tool": {"name": "flowaudit", "version": __version__},
        "captures": capture_dicts(table.captures, time_unit(table)),
        "orphan_fragments": table.orphan_fragments,
        "flows": json.loads(frame.to_json(orient="records")),
    }
    json.dump(document, out, indent=1)
    out.write("\n")


def write_csv(table: FlowTable, out: IO[str], *, payload: bool = False) -> None:
    text_frame(table, payload=payload).to_csv(out, index=False, lineterminator="\n")


def write_parquet(table: FlowTable, out: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table.flows, preserve_index=False)
    pq.write_table(arrow, out)


def write_table(table: FlowTable, out: IO[str], *, color: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

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
    flows = table.flows
    view = Table(box=None, pad_edge=False, show_edge=False)
    for title in (
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
    ):
        justify = "right" if title in ("id", "packets", "bytes", "duration") else "left"
        view.add_column(title, justify=justify)  # type: ignore[arg-type]
    unit = time_unit(table)
    first_seen = _iso(flows["first_seen"], unit) if len(flows) else []
    row: Any
    for k, row in enumerate(flows.itertuples(index=False)):
        client = _endpoint(row.client, row.client_port, row.proto)
        server = _endpoint(row.server, row.server_port, row.proto)
        cells = (
            str(row.id),
            row.proto,
            client,
            server,
            str(row.packets),
            str(row.bytes),
            first_seen[k],
            f"{row.duration:.3f}",
            row.tcp_flags,
            "seen" if row.start_seen else f"not seen ({row.direction_by})",
        )
        view.add_row(*(Text(cell) for cell in cells))  # Text: never read as markup
    console.print(view)
    console.print(f"{len(flows)} flows", markup=False)


def _endpoint(address: str, port: int, proto: str) -> str:
    if proto not in ("tcp", "udp"):
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
