"""One command that times flowaudit against tshark, NFStream, dpkt, scapy and a plain read.

    python benchmarks/run.py [--packets N] [--repeat K] [--only TOOL,...] [--json [PATH]] [--keep]

Generates the synthetic capture into benchmarks/out/ unless it is already there, runs every
tool as its own subprocess on that one file (scapy on a slice of its first packets), measures
wall time and, through os.wait4(), CPU time and peak RSS, and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import make_capture

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
TOOLS = ("floor", "flowaudit", "tshark", "nfstream", "dpkt", "scapy")
READERS = HERE / "readers.py"
LAUNCHER = HERE / "launch.py"


class Unavailable(Exception):
    """A tool that is not installed or not runnable here."""


@dataclass
class Measurement:
    """What one subprocess cost."""

    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_kib: int  # ru_maxrss from wait4: the largest single process of the command's tree
    tree_rss_kib: int | None  # sampled sum over the process tree (None without psutil)
    stdout: str
    stderr: str


@dataclass
class Result:
    """One row of the table."""

    tool: str
    status: str = "ok"  # ok | not available | failed
    detail: str = ""
    input: str = ""
    input_bytes: int = 0
    packets: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_mib: float = 0.0
    tree_rss_mib: float | None = None
    flows: int | None = None
    tcp_flows: int | None = None
    udp_flows: int | None = None
    walls: list[float] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pps(self) -> float:
        return self.packets / self.wall_s if self.wall_s else 0.0

    @property
    def mbps(self) -> float:
        return self.input_bytes / self.wall_s / 1e6 if self.wall_s else 0.0


def _tree_rss_sampler(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """Poll the summed RSS of pid's descendants (not pid itself) until stop is set."""
    try:
        import psutil
    except ImportError:
        return
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        total = 0
        try:
            procs = root.children(recursive=True)
        except psutil.Error:
            break
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        peak[0] = max(peak[0], total // 1024)
        stop.wait(0.05)


def measure(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> Measurement:
    """Run cmd to completion through launch.py: wall time, CPU time and peak RSS (os.wait4)."""
    OUT.mkdir(parents=True, exist_ok=True)
    out_path, err_path, report = OUT / ".stdout", OUT / ".stderr", OUT / ".rusage.json"
    report.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", "-S", str(LAUNCHER), str(report), "--", *cmd]
    with out_path.open("wb") as fo, err_path.open("wb") as fe:
        proc = subprocess.Popen(
            launcher, cwd=cwd, env=env, stdout=fo, stderr=fe, start_new_session=True
        )
        peak = [0]
        stop = threading.Event()
        sampler = threading.Thread(target=_tree_rss_sampler, args=(proc.pid, stop, peak))
        sampler.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the session started for this command
            proc.wait()
        finally:
            stop.set()
            sampler.join()
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    if not report.exists():
        return Measurement(-9, float(timeout), 0.0, 0, None, stdout, stderr + "\ntimed out")
    usage = json.loads(report.read_text())
    if "error" in usage:
        raise OSError(usage["error"])
    return Measurement(
        returncode=usage["returncode"],
        wall_s=usage["wall_s"],
        cpu_s=usage["utime_s"] + usage["stime_s"],
        maxrss_kib=usage["maxrss_kib"],
        tree_rss_kib=peak[0] or None,
        stdout=stdout,
        stderr=stderr,
    )


# ---- the tools ---------------------------------------------------------------------------------


@dataclass
class Tool:
    """How to run one tool and read its answer."""

    name: str
    command: Callable[[Path], list[str]]  # raises Unavailable
    parse: Callable[[Measurement], dict[str, Any]]
    env: dict[str, str] = field(default_factory=dict)
    uses_slice: bool = False


def _json_line(m: Measurement) -> dict[str, Any]:
    lines = [ln for ln in m.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise ValueError("no JSON line on stdout")
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def _reader(name: str, module: str | None = None) -> Callable[[Path], list[str]]:
    def command(path: Path) -> list[str]:
        if module is not None:
            try:
                metadata.version(module)
            except metadata.PackageNotFoundError as exc:
                raise Unavailable(f"{module} is not installed in {sys.prefix}") from exc
        return [sys.executable, str(READERS), name, str(path)]

    return command


def flowaudit_base() -> tuple[list[str], dict[str, str]]:
    """The flowaudit CLI: the console script next to this python, on PATH, or python -m."""
    script = Path(sys.executable).parent / "flowaudit"
    if script.exists():
        return [str(script)], {}
    found = shutil.which("flowaudit")
    if found:
        return [found], {}
    if (REPO / "flowaudit" / "__main__.py").exists():
        return [sys.executable, "-m", "flowaudit"], {"PYTHONPATH": str(REPO)}
    raise Unavailable("no flowaudit console script and no flowaudit/__main__.py")


FLOWAUDIT_CSV = OUT / "flowaudit-flows.csv"


def _flowaudit_command(path: Path) -> list[str]:
    base, _ = flowaudit_base()
    return [*base, "flows", str(path), "--format", "csv", "--output", str(FLOWAUDIT_CSV)]


def _flowaudit_parse(m: Measurement) -> dict[str, Any]:
    """Count the CSV rows (TCP/UDP split, packets held) from whatever columns are there."""
    if not FLOWAUDIT_CSV.exists():
        return {}
    with FLOWAUDIT_CSV.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return {"flows": 0}
    header = [h.strip().lower() for h in rows[0]]
    out: dict[str, Any] = {"flows": len(rows) - 1}
    if "packets" in header:
        i = header.index("packets")
        with contextlib.suppress(ValueError):
            out["flow_packets"] = sum(int(r[i]) for r in rows[1:] if len(r) > i)
    for col in ("proto", "protocol", "l4_proto", "ip_proto", "transport"):
        if col in header:
            i = header.index(col)
            vals = [r[i].strip().lower() for r in rows[1:] if len(r) > i]
            out["tcp_flows"] = sum(v in ("6", "tcp") for v in vals)
            out["udp_flows"] = sum(v in ("17", "udp") for v in vals)
            break
    return out


def _tshark_command(path: Path) -> list[str]:
    exe = shutil.which("tshark")
    if exe is None:
        raise Unavailable("tshark is not on PATH")
    return [exe, "-q", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp"]


def _tshark_parse(m: Measurement) -> dict[str, Any]:
    """Count conversation lines (and their frames) in the TCP and UDP tables."""
    counts = {"tcp": 0, "udp": 0}
    frames = 0
    section = ""
    for line in m.stdout.splitlines():
        if "Conversations" in line:
            section = "tcp" if line.startswith("TCP") else "udp" if line.startswith("UDP") else ""
        elif "<->" in line and section:
            counts[section] += 1
            tok = line.split()
            i = tok.index("<->")
            with contextlib.suppress(IndexError, ValueError):
                frames += int(tok[i + 8].replace(",", ""))
    return {
        "flows": counts["tcp"] + counts["udp"],
        "tcp_flows": counts["tcp"],
        "udp_flows": counts["udp"],
        "flow_packets": frames,
    }


TOOL_SPECS: dict[str, Tool] = {
    "floor": Tool("floor", _reader("floor"), _json_line),
    "flowaudit": Tool("flowaudit", _flowaudit_command, _flowaudit_parse),
    "tshark": Tool("tshark", _tshark_command, _tshark_parse),
    "nfstream": Tool("nfstream", _reader("nfstream", "nfstream"), _json_line),
    "dpkt": Tool("dpkt", _reader("dpkt", "dpkt"), _json_line),
    "scapy": Tool("scapy", _reader("scapy", "scapy"), _json_line, uses_slice=True),
}


def run_tool(
    tool: Tool, path: Path, packets: int, repeat: int, timeout: float, verbose: bool
) -> Result:
    """Run one tool ``repeat`` times on path; keep the run with the median wall time."""
    res = Result(tool.name, input=path.name, input_bytes=path.stat().st_size, packets=packets)
    try:
        res.command = tool.command(path)
    except Unavailable as exc:
        res.status, res.detail = "not available", str(exc)
        return res
    env = {**os.environ, **tool.env}
    if tool.name == "flowaudit":
        env.update(flowaudit_base()[1])
    runs: list[Measurement] = []
    for k in range(repeat):
        if tool.name == "flowaudit":
            FLOWAUDIT_CSV.unlink(missing_ok=True)  # never count a stale table
        try:
            m = measure(res.command, cwd=REPO, env=env, timeout=timeout)
        except OSError as exc:
            res.status, res.detail = "not available", str(exc)
            return res
        if verbose:
            print(
                f"  {tool.name:<9} run {k + 1}/{repeat}: {m.wall_s:8.2f} s, rc {m.returncode}",
                flush=True,
            )
        if m.returncode != 0:
            last = (m.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            res.status, res.detail = "failed", f"exit {m.returncode}: {last[:160]}"
            res.wall_s = m.wall_s
            return res
        runs.append(m)
    runs.sort(key=lambda r: r.wall_s)
    med = runs[(len(runs) - 1) // 2]
    res.walls = [round(r.wall_s, 3) for r in runs]
    res.wall_s = statistics.median(r.wall_s for r in runs)
    res.cpu_s = med.cpu_s
    res.rss_mib = med.maxrss_kib / 1024
    res.tree_rss_mib = med.tree_rss_kib / 1024 if med.tree_rss_kib else None
    try:
        parsed = tool.parse(med)
    except (ValueError, KeyError, OSError) as exc:
        parsed = {}
        res.detail = f"could not read its output: {exc}"
    res.packets = int(parsed.pop("packets", packets) or packets)
    res.flows = parsed.pop("flows", None)
    res.tcp_flows = parsed.pop("tcp_flows", None)
    res.udp_flows = parsed.pop("udp_flows", None)
    res.extra = parsed
    return res


# ---- machine, capture, report ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What we ran on."""
    model = ""
    mem_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for pkg in ("flowaudit", "numpy", "numba", "nfstream", "dpkt", "scapy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "-"
    tshark = shutil.which("tshark")
    if tshark:
        first = subprocess.run([tshark, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"\b(\d+\.\d+\.\d+)\b", first)
        versions["tshark"] = found.group(1) if found else "?"
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": model or platform.processor(),
        "mem_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "versions": versions,
    }


def capture_paths(packets: int, flows: int | None, seed: int, slice_n: int) -> tuple[Path, Path]:
    """The capture and its slice for these parameters."""
    name = f"capture-{packets}-s{seed}" + (f"-f{flows}" if flows else "")
    cap = OUT / f"{name}.pcap"
    return cap, make_capture.slice_path(cap, slice_n)


def _fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def print_table(results: list[Result], truth: dict[str, Any]) -> None:
    """The human-readable report."""
    head = (
        f"{'tool':<10} {'input':<7} {'packets':>10} {'wall s':>8} {'CPU s':>8} "
        f"{'packets/s':>11} {'MB/s':>8} {'RSS MiB':>8} {'tree MiB':>8} {'flows (tcp/udp)':>22}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        if r.status != "ok":
            print(f"{r.tool:<10} {r.status}: {r.detail}")
            continue
        where = "slice" if "first" in r.input else "full"
        flows = "-"
        if r.flows is not None:
            flows = f"{r.flows:,}"
            if r.tcp_flows is not None:
                flows += f" ({r.tcp_flows:,}/{r.udp_flows:,})"
        tree = f"{r.tree_rss_mib:8.0f}" if r.tree_rss_mib else f"{'-':>8}"
        print(
            f"{r.tool:<10} {where:<7} {r.packets:>10,} {r.wall_s:8.2f} {r.cpu_s:8.2f} "
            f"{_fmt_int(r.pps):>11} {r.mbps:8.1f} {r.rss_mib:8.0f} {tree} {flows:>22}"
        )
    true_flows = f"{truth['flows']:,} ({truth['tcp_flows']:,}/{truth['udp_flows']:,})"
    print(f"{'truth':<10} {'full':<7} {truth['packets']:>10,} {'':>54} {true_flows:>22}")
    for r in results:
        if r.status == "ok" and r.detail:
            print(f"note: {r.tool}: {r.detail}")
        held = r.extra.get("flow_packets")
        if r.status == "ok" and held is not None and held != r.packets:
            print(f"note: {r.tool}: its flows hold {held:,} packets, its input has {r.packets:,}")
    by = {r.tool: r for r in results if r.status == "ok"}
    floor = by.get("floor")
    if floor:
        gbps = floor.input_bytes / floor.wall_s / 1e9
        print(
            f"floor: 8 MiB readinto of the page-cached file: {gbps:.2f} GB/s, "
            f"{_fmt_int(floor.pps)} packets/s (wall time includes python start-up)"
        )
    fa = by.get("flowaudit")
    for other in ("tshark", "nfstream", "dpkt"):
        if fa and other in by and by[other].pps:
            print(f"flowaudit / {other} packets/s: {fa.pps / by[other].pps:.2f}x")
        elif other != "dpkt":
            print(f"flowaudit / {other} packets/s: n/a")


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000, help="capture size (default 2M)")
    ap.add_argument("--flows", type=int, default=None, help="default: packets * 0.015")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slice-packets", type=int, default=100_000, help="scapy's input size")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the median is kept")
    ap.add_argument("--only", default=",".join(TOOLS), help=f"subset of {','.join(TOOLS)}")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    ap.add_argument("--no-warmup", action="store_true", help="skip flowaudit's untimed run")
    ap.add_argument(
        "--json",
        nargs="?",
        type=Path,
        const=OUT / "results.json",
        default=None,
        help="also write the figures here (default benchmarks/out/results.json)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep a capture this run generated (else deleted)"
    )
    args = ap.parse_args(argv)
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = sorted(set(only) - set(TOOLS))
    if unknown:
        ap.error(f"unknown tool(s) {unknown}; choose from {','.join(TOOLS)}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    mach = machine()
    print(
        f"machine: {mach['nproc']} CPUs ({mach['affinity']} usable), {mach['cpu']}, "
        f"{mach['mem_gib']} GiB, Linux {mach['kernel']}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in mach["versions"].items()))

    cap, slc = capture_paths(args.packets, args.flows, args.seed, args.slice_packets)
    generated = False
    gen_s: float | None = None
    truth_file = make_capture.truth_path(cap)
    if not (cap.exists() and truth_file.exists()):
        t0 = time.perf_counter()
        make_capture.generate(cap, args.packets, args.flows, args.seed)
        gen_s = time.perf_counter() - t0
        generated = True
    truth: dict[str, Any] = json.loads(truth_file.read_text())
    if not slc.exists() and args.packets > args.slice_packets:
        make_capture.write_slice(cap, slc, args.slice_packets)
    slice_file = slc if args.packets > args.slice_packets else cap
    slice_n = min(args.packets, args.slice_packets)
    print(
        f"capture: {cap} ({cap.stat().st_size / 1e9:.3f} GB, {truth['packets']:,} packets, "
        f"{truth['flows']:,} flows: {truth['tcp_flows']:,} TCP / {truth['udp_flows']:,} UDP, "
        f"{truth['ipv6_flows']:,} IPv6, {truth['vlan_frames'] / truth['packets']:.0%} frames "
        f"VLAN-tagged)" + (f"; generated in {gen_s:.1f} s" if gen_s is not None else "; reused")
    )
    # page cache: every tool reads the same cached bytes
    with cap.open("rb", buffering=0) as fh:
        while fh.read(8 << 20):
            pass

    results: list[Result] = []
    try:
        for name in TOOLS:
            if name not in only:
                continue
            tool = TOOL_SPECS[name]
            path, n = (slice_file, slice_n) if tool.uses_slice else (cap, truth["packets"])
            if name == "flowaudit" and not args.no_warmup:
                warm = _warm_flowaudit(slice_file, args.timeout)
                if warm is not None:
                    results.append(warm)
                    continue
            print(f"running {name} on {path.name} ...", flush=True)
            results.append(run_tool(tool, path, n, args.repeat, args.timeout, verbose=True))
    finally:
        if generated and not args.keep:
            for p in (cap, slc, truth_file):
                p.unlink(missing_ok=True)

    print()
    print_table(results, truth)
    if args.json:
        payload = {
            "machine": mach,
            "capture": {
                "path": str(cap),
                "bytes": truth["bytes"],
                "generation_s": gen_s,
                "slice": str(slice_file),
                "slice_packets": slice_n,
            },
            "truth": truth,
            "repeat": args.repeat,
            "results": [{**asdict(r), "packets_per_s": r.pps, "mb_per_s": r.mbps} for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


def _warm_flowaudit(slice_file: Path, timeout: float) -> Result | None:
    """One untimed flowaudit run on the slice (numba compiles and caches); a Result if it fails."""
    tool = TOOL_SPECS["flowaudit"]
    try:
        cmd = tool.command(slice_file)
        env = {**os.environ, **flowaudit_base()[1]}
    except Unavailable as exc:
        return Result("flowaudit", status="not available", detail=str(exc))
    print(f"warming up flowaudit on {slice_file.name} (untimed) ...", flush=True)
    m = measure(cmd, cwd=REPO, env=env, timeout=timeout)
    if m.returncode != 0:
        last = (m.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return Result(
            "flowaudit", status="failed", detail=f"exit {m.returncode}: {last[:160]}", command=cmd
        )
    print(f"  warm-up took {m.wall_s:.2f} s", flush=True)
    return None


if __name__ == "__main__":
    sys.exit(main())
