"""Floods of tiny flows (issue 13): what flowaudit and tshark cost when every packet is a flow.

    python benchmarks/floods.py [--scale 1.0] [--only syn,udp,scan] [--tshark] [--repeat K]

Generates (once; reused when present) three classic pcaps into benchmarks/out/, written with
numpy (no per-packet Python), and times each tool on each:

* ``syn``: 3 M single-SYN TCP flows (a SYN flood from spoofed sources to one server;
  54-byte frames, ~210 MB);
* ``udp``: 2 M single-datagram UDP flows (spoofed sources, random destination ports, 32 bytes
  of payload; ~180 MB);
* ``scan``: a 10 M-flow SYN scan: one source and source port, 65,536 destination addresses
  times 153 ports (~700 MB).

``--scale`` multiplies the flow counts (0.1: 300 k, 200 k, 1 M). The tools:

* ``flowaudit flows F --format csv -o benchmarks/out/flood-flows.csv``;
* ``flowaudit analyze F --format csv -o benchmarks/out/flood-analyze.csv --fail-on never``;
* with ``--tshark``: ``tshark -q -r F -z conv,tcp`` (``conv,udp`` for the UDP flood); the scan
  only with ``--tshark-scan`` too, as tshark takes long on it.

Each runs through ``launch.py`` (wall time, CPU and the peak RSS of the command itself, as
``run.py`` measures), once untimed first to warm the page cache and any compile cache, then
``--repeat`` times (the median is kept). The flows each tool reports are counted from its
output and printed next to the truth. The targets of the issue: peak RSS <= 1 GiB for every
command, ``flows`` >= 1 M packets/s, ``analyze`` >= 3x as fast as tshark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from make_capture import _be, _fold, _ones_sum
from run import OUT, REPO, flowaudit_base, measure

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

CHUNK = 1 << 20  # packets written per numpy pass
BASE_S = 1_710_234_000  # 2024-03-12 09:00:00 UTC
GIB = 1 << 30
SCAN_HOSTS = 1 << 16
SCAN_PORTS = 153


@dataclass(frozen=True)
class Flood:
    """One flood capture: what it holds and how its packets are laid out."""

    name: str
    flows: int  # at scale 1.0; one packet per flow
    proto: int  # 6 or 17
    payload: int  # UDP payload bytes
    gap_us: int  # between packets
    description: str

    @property
    def frame(self) -> int:
        return 14 + 20 + (20 if self.proto == 6 else 8 + self.payload)


FLOODS = {
    "syn": Flood("syn", 3_000_000, 6, 0, 5, "single-SYN TCP flows from spoofed sources"),
    "udp": Flood("udp", 2_000_000, 17, 32, 5, "single-datagram UDP flows, random ports"),
    "scan": Flood("scan", 10_000_000, 6, 0, 2, "SYN scan: one source, hosts x ports"),
}


def _spread(index: I64, bits: int) -> I64:
    """A bijection of [0, 2**bits) that scatters consecutive numbers (odd multiplier)."""
    mask = (1 << bits) - 1
    return (index * 0x9E3779B1) & mask


def _endpoints(flood: Flood, index: I64) -> tuple[I64, I64, I64, I64]:
    """(source address, destination address, source port, destination port) per packet."""
    rng = np.random.default_rng(index[0] if index.size else 0)
    if flood.name == "scan":
        host = _spread(index % SCAN_HOSTS, 16)
        src = np.full(index.size, 0x0A000063, dtype=np.int64)  # 10.0.0.99
        dst = 0x0A010000 + host  # 10.1.0.0/16
        sport = np.full(index.size, 40_000, dtype=np.int64)
        dport = index // SCAN_HOSTS + 1
        return src, dst, sport, dport
    # one flow per spoofed source address (unique below 2**24 flows), any source port
    src = 0x0B000000 + _spread(index, 24)  # 11.0.0.0/8
    dst = np.full(index.size, 0x0A00000A, dtype=np.int64)  # 10.0.0.10
    sport = rng.integers(1024, 65536, size=index.size)
    if flood.proto == 6:
        dport = np.full(index.size, 445, dtype=np.int64)
    else:
        dport = rng.integers(1, 65536, size=index.size)
    return src, dst, sport, dport


def _chunk(flood: Flood, start: int, stop: int) -> U8:
    """The pcap records of packets [start, stop) as one array of rows."""
    index = np.arange(start, stop, dtype=np.int64)
    count = index.size
    frame = flood.frame
    rows = np.zeros((count, 16 + frame), dtype=np.uint8)
    ts = index * flood.gap_us
    head = np.stack(
        [BASE_S + ts // 1_000_000, ts % 1_000_000, np.full(count, frame), np.full(count, frame)],
        axis=1,
    )
    rows[:, 0:16] = head.astype("<u4").view(np.uint8).reshape(count, 16)
    src, dst, sport, dport = _endpoints(flood, index)
    rows[:, 16:22] = (0x00, 0x15, 0x5D, 0x00, 0x00, 0x0A)  # destination MAC
    rows[:, 22:28] = (0x00, 0x15, 0x5D, 0x01, 0x02, 0x03)  # source MAC (the router)
    rows[:, 28:30] = (0x08, 0x00)
    ip = 30
    rows[:, ip] = 0x45
    rows[:, ip + 2 : ip + 4] = _be(np.full(count, frame - 14), 2)
    rows[:, ip + 4 : ip + 6] = _be(index & 0xFFFF, 2)
    rows[:, ip + 8] = 64
    rows[:, ip + 9] = flood.proto
    rows[:, ip + 12 : ip + 16] = _be(src, 4)
    rows[:, ip + 16 : ip + 20] = _be(dst, 4)
    rows[:, ip + 10 : ip + 12] = _be(_fold(_ones_sum(rows[:, ip : ip + 20])), 2)
    l4 = ip + 20
    rows[:, l4 : l4 + 2] = _be(sport, 2)
    rows[:, l4 + 2 : l4 + 4] = _be(dport, 2)
    if flood.proto == 6:
        rng = np.random.default_rng(start + 1)
        rows[:, l4 + 4 : l4 + 8] = _be(rng.integers(0, 1 << 32, size=count), 4)  # seq
        rows[:, l4 + 12] = 5 << 4
        rows[:, l4 + 13] = 0x02  # SYN
        rows[:, l4 + 14 : l4 + 16] = (0x04, 0x00)  # window 1024, as scanners send
        length = 20
    else:
        length = 8 + flood.payload
        rows[:, l4 + 4 : l4 + 6] = _be(np.full(count, length), 2)
        rng = np.random.default_rng(start + 2)
        rows[:, l4 + 8 : l4 + length] = rng.integers(0, 256, size=(count, flood.payload))
    # the checksum over the pseudo-header (addresses, protocol, length) and the segment
    total = _ones_sum(rows[:, ip + 12 : ip + 20]) + _ones_sum(rows[:, l4 : l4 + length])
    csum = _fold(total + np.uint64(flood.proto + length))
    at = l4 + 16 if flood.proto == 6 else l4 + 6
    rows[:, at : at + 2] = _be(csum if flood.proto == 6 else np.where(csum == 0, 0xFFFF, csum), 2)
    return rows


def generate(flood: Flood, flows: int, path: Path) -> float:
    """Write the flood capture (one packet per flow); return the seconds it took."""
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for start in range(0, flows, CHUNK):
            _chunk(flood, start, min(flows, start + CHUNK)).tofile(out)
    part.replace(path)
    return time.perf_counter() - t0


# ---- measuring ---------------------------------------------------------------------------------


def _csv_rows(path: Path) -> int | None:
    """Data rows of a CSV file (a header line first), None when it is absent."""
    if not path.exists():
        return None
    with path.open("rb") as fh:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b"")) - 1)


def _tshark_conversations(stdout: str) -> int:
    return sum("<->" in line for line in stdout.splitlines())


def _run(
    label: str, cmd: list[str], env: dict[str, str], repeat: int, timeout: float
) -> dict[str, Any]:
    """Warm-up, then ``repeat`` timed runs: the median wall time and the largest peak RSS."""
    measure(cmd, cwd=REPO, env=env, timeout=timeout)
    runs = [measure(cmd, cwd=REPO, env=env, timeout=timeout) for _ in range(repeat)]
    bad = [m for m in runs if m.returncode != 0]
    if bad:
        last = (bad[0].stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"tool": label, "failed": f"exit {bad[0].returncode}: {last[:200]}"}
    return {
        "tool": label,
        "wall_s": statistics.median(m.wall_s for m in runs),
        "cpu_s": statistics.median(m.cpu_s for m in runs),
        "rss_mib": max(m.maxrss_kib for m in runs) / 1024,
        "stdout": runs[-1].stdout,
    }


def bench(flood: Flood, path: Path, flows: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    base, extra_env = flowaudit_base()
    env = {**os.environ, **extra_env}
    flows_csv, analyze_csv = OUT / "flood-flows.csv", OUT / "flood-analyze.csv"
    rows: list[dict[str, Any]] = []
    for key, cmd, output in (
        ("flows", ["flows", str(path), "--format", "csv", "-o", str(flows_csv)], flows_csv),
        ("analyze", ["analyze", str(path), "--format", "csv", "-o", str(analyze_csv),
                     "--fail-on", "never"], analyze_csv),
    ):  # fmt: skip
        output.unlink(missing_ok=True)
        row = _run(f"flowaudit {key}", [*base, *cmd], env, args.repeat, args.timeout)
        row["key"], row["flows"] = key, _csv_rows(output)
        rows.append(row)
    tshark = shutil.which("tshark")
    wanted = args.tshark and (flood.name != "scan" or args.tshark_scan)
    if tshark and wanted:
        table = "conv,tcp" if flood.proto == 6 else "conv,udp"
        row = _run(f"tshark -z {table}", [tshark, "-q", "-r", str(path), "-z", table], {},
                   args.repeat, args.timeout)  # fmt: skip
        if "stdout" in row:
            row["flows"] = _tshark_conversations(row["stdout"])
        rows.append({**row, "key": "tshark"})
    elif args.tshark and not tshark:
        rows.append({"tool": "tshark", "key": "tshark", "failed": "not on PATH"})
    for row in rows:
        row.pop("stdout", None)
        if "wall_s" in row:
            row["packets_per_s"] = flows / row["wall_s"]
    return rows


def report(flood: Flood, path: Path, flows: int, rows: list[dict[str, Any]]) -> None:
    size = path.stat().st_size
    print(f"\n{flood.name}: {flood.description}: {flows:,} flows/packets, {size / 1e6:.0f} MB")
    print(
        f"  {'tool':<22} {'wall s':>8} {'CPU s':>8} {'packets/s':>12} {'RSS MiB':>8} {'flows':>12}"
    )
    for row in rows:
        if "failed" in row:
            print(f"  {row['tool']:<22} failed: {row['failed']}")
            continue
        found = f"{row['flows']:,}" if row.get("flows") is not None else "-"
        print(
            f"  {row['tool']:<22} {row['wall_s']:8.2f} {row['cpu_s']:8.2f} "
            f"{row['packets_per_s']:12,.0f} {row['rss_mib']:8.0f} {found:>12}"
        )
    by = {row["key"]: row for row in rows if "wall_s" in row}
    verdicts = []
    for row in rows:
        if "rss_mib" in row and row["key"] != "tshark":
            ok = row["rss_mib"] * 2**20 <= GIB
            verdicts.append(f"{row['tool']} peak RSS <= 1 GiB: {'yes' if ok else 'NO'}")
    if "flows" in by:
        ok = by["flows"]["packets_per_s"] >= 1e6
        verdicts.append(f"flows >= 1 M packets/s: {'yes' if ok else 'NO'}")
    if "analyze" in by and "tshark" in by:
        ratio = by["tshark"]["wall_s"] / by["analyze"]["wall_s"]
        verdicts.append(f"tshark / analyze = {ratio:.2f}x (target >= 3x)")
    for line in verdicts:
        print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the flow counts")
    ap.add_argument("--only", default="syn,udp,scan", help="subset of syn,udp,scan")
    ap.add_argument("--tshark", action="store_true", help="also time tshark (slow)")
    ap.add_argument("--tshark-scan", action="store_true", help="and on the scan too")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(FLOODS))
    if unknown or args.scale <= 0 or args.repeat < 1:
        ap.error(f"--only takes {','.join(FLOODS)}; --scale and --repeat must be positive")
    figures: dict[str, Any] = {}
    for name in names:
        flood = FLOODS[name]
        flows = max(1, round(flood.flows * args.scale))
        path = OUT / f"flood-{name}-{flows}.pcap"
        if not path.exists():
            took = generate(flood, flows, path)
            print(f"wrote {path}: {flows:,} packets, {path.stat().st_size / 1e6:.0f} MB "
                  f"in {took:.1f} s")  # fmt: skip
        if args.generate_only:
            continue
        with path.open("rb", buffering=0) as fh:  # into the page cache
            while fh.read(8 << 20):
                pass
        rows = bench(flood, path, flows, args)
        report(flood, path, flows, rows)
        figures[name] = {"capture": str(path), "flows": flows, "results": rows}
    if args.json and figures:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
