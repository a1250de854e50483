"""The figures issues 12 and 13 ask for: start-up cost on the sample, and analyze against
flows, tshark and NFStream on the big captures, each with its peak RSS.

    python benchmarks/edges.py [--repeat 3] [--only sample,bench,random] [--no-nfstream]

1. ``sample``: ``flowaudit analyze samples/configmgr_site.pcap --site samples/site.yaml -o
   /dev/null --fail-on never`` against ``tshark -q -r samples/configmgr_site.pcap -z conv,tcp
   -z conv,udp``:

   * *first run*: in a fresh, empty ``HOME``, ``XDG_CACHE_HOME`` and ``NUMBA_CACHE_DIR`` (a new
     temporary directory each run), so that no compile cache outside the installed package
     can help (what a fresh install meets: pip writes the bytecode at install time);
   * *first run, no bytecode*: the same and ``PYTHONPYCACHEPREFIX`` pointing at an empty
     directory too, so that every module (flowaudit, numpy, pandas, ...) is compiled from
     source: an upper bound (``pip install --no-compile``);
   * *warm*: after an untimed run, with the environment as it is;
   * tshark, after an untimed run.

2. ``bench`` (the 2 M-packet capture of ``make_capture.py``) and ``random`` (the random-payload
   capture of ``make_random_payload.py``), each built on first use: ``flowaudit flows``
   (CSV), ``analyze --no-sha256`` (JSON), ``analyze`` with SHA-256 and JSON (the default),
   tshark's conversation tables and NFStream (``readers.py nfstream``; "not available" when
   it is not installed).

Every command runs through ``launch.py`` (wall time, CPU and the peak RSS of the command
itself); the warm figures are the median of ``--repeat`` runs after one untimed run. The
ratios printed, with the targets of the issues:

* analyze (SHA-256, JSON) against tshark's conversation table: tshark / analyze >= 8x;
* ``analyze --no-sha256`` / ``flows`` <= 1.5x;
* warm sample run / tshark <= 1.0x; first run / tshark <= 3x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import make_capture
import make_random_payload
from run import OUT, READERS, REPO, flowaudit_base, measure

SAMPLE = REPO / "samples" / "configmgr_site.pcap"
SITE = REPO / "samples" / "site.yaml"
BENCH = OUT / "capture-2000000-s1.pcap"
RANDOM = OUT / "random-payload-2000000-s1.pcap"


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **flowaudit_base()[1], **extra}
    return env


def _row(label: str, runs: list[Any], note: str = "") -> dict[str, Any]:
    bad = [m for m in runs if m.returncode not in (0, 1)]
    if bad:
        last = (bad[0].stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"name": label, "failed": f"exit {bad[0].returncode}: {last[:200]}"}
    return {
        "name": label,
        "wall_s": statistics.median(m.wall_s for m in runs),
        "cpu_s": statistics.median(m.cpu_s for m in runs),
        "rss_mib": max(m.maxrss_kib for m in runs) / 1024,
        "walls": [round(m.wall_s, 3) for m in runs],
        "note": note,
    }


def _warm(
    label: str, cmd: list[str], env: dict[str, str], repeat: int, timeout: float
) -> dict[str, Any]:
    measure(cmd, cwd=REPO, env=env, timeout=timeout)
    return _row(label, [measure(cmd, cwd=REPO, env=env, timeout=timeout) for _ in range(repeat)])


def _cold(label: str, cmd: list[str], repeat: int, no_bytecode: bool) -> dict[str, Any]:
    """Runs each in new empty cache directories (and, asked, without any bytecode cache)."""
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="flowaudit-cold-") as fresh:
            home = Path(fresh)
            dirs = {name: home / name for name in ("home", "cache", "numba", "pycache")}
            for path in dirs.values():
                path.mkdir()
            extra = {
                "HOME": str(dirs["home"]),
                "XDG_CACHE_HOME": str(dirs["cache"]),
                "NUMBA_CACHE_DIR": str(dirs["numba"]),
            }
            if no_bytecode:
                extra["PYTHONPYCACHEPREFIX"] = str(dirs["pycache"])
            runs.append(measure(cmd, cwd=REPO, env=_env(**extra), timeout=600))
    return _row(label, runs)


def _tshark_conv(path: Path) -> list[str] | None:
    exe = shutil.which("tshark")
    return None if exe is None else [exe, "-q", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp"]


def sample(repeat: int) -> list[dict[str, Any]]:
    base = flowaudit_base()[0]
    cmd = [*base, "analyze", str(SAMPLE), "--site", str(SITE), "-o", "/dev/null"]
    cmd += ["--fail-on", "never"]
    rows = [
        _cold("analyze, first run", cmd, repeat, no_bytecode=False),
        _cold("analyze, first run, no bytecode", cmd, repeat, no_bytecode=True),
        _warm("analyze, warm", cmd, _env(), repeat, 600),
    ]
    tshark = _tshark_conv(SAMPLE)
    if tshark is None:
        rows.append({"name": "tshark conv", "failed": "tshark is not on PATH"})
    else:
        rows.append(_warm("tshark conv", tshark, dict(os.environ), repeat, 600))
    return rows


def big(path: Path, repeat: int, nfstream: bool, timeout: float) -> list[dict[str, Any]]:
    base = flowaudit_base()[0]
    env = _env()
    out_csv, out_json = OUT / "edges-flows.csv", OUT / "edges-analyze.json"
    analyze = [*base, "analyze", str(path), "--format", "json", "--fail-on", "never"]
    rows = [
        _warm("flows", [*base, "flows", str(path), "--format", "csv", "-o", str(out_csv)], env,
              repeat, timeout),
        _warm("analyze --no-sha256", [*analyze, "-o", str(out_json), "--no-sha256"], env, repeat,
              timeout),
        _warm("analyze (SHA-256, JSON)", [*analyze, "-o", str(out_json)], env, repeat, timeout),
    ]  # fmt: skip
    tshark = _tshark_conv(path)
    if tshark is None:
        rows.append({"name": "tshark conv", "failed": "tshark is not on PATH"})
    else:
        rows.append(_warm("tshark conv", tshark, dict(os.environ), repeat, timeout))
    if nfstream:
        try:
            metadata.version("nfstream")
        except metadata.PackageNotFoundError:
            rows.append({"name": "nfstream", "failed": f"not installed in {sys.prefix}"})
        else:
            cmd = [sys.executable, str(READERS), "nfstream", str(path)]
            rows.append(_warm("nfstream", cmd, dict(os.environ), repeat, timeout))
    return rows


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"  {'command':<34} {'wall s':>8} {'CPU s':>8} {'RSS MiB':>8}  runs")
    for row in rows:
        if "failed" in row:
            print(f"  {row['name']:<34} {row['failed']}")
            continue
        walls = ", ".join(f"{w:.2f}" for w in row["walls"])
        print(
            f"  {row['name']:<34} {row['wall_s']:8.2f} {row['cpu_s']:8.2f} "
            f"{row['rss_mib']:8.0f}  {walls}"
        )


def _ratio(rows: list[dict[str, Any]], top: str, bottom: str) -> float | None:
    by = {row["name"]: row for row in rows if "wall_s" in row}
    if top in by and bottom in by:
        return float(by[top]["wall_s"] / by[bottom]["wall_s"])
    return None


def _say(text: str, value: float | None, target: str) -> None:
    shown = "n/a" if value is None else f"{value:.2f}x"
    print(f"  {text}: {shown} (target {target})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="sample,bench,random")
    ap.add_argument("--no-nfstream", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    parts = {part.strip() for part in args.only.split(",")}
    figures: dict[str, Any] = {}
    if "sample" in parts:
        rows = sample(args.repeat)
        figures["sample"] = rows
        _print(f"sample {SAMPLE.relative_to(REPO)}", rows)
        _say("warm analyze / tshark", _ratio(rows, "analyze, warm", "tshark conv"), "<= 1.0x")
        _say("first run / tshark", _ratio(rows, "analyze, first run", "tshark conv"), "<= 3x")
        _say(
            "first run without bytecode / tshark",
            _ratio(rows, "analyze, first run, no bytecode", "tshark conv"),
            "<= 3x",
        )
    for part, path in (("bench", BENCH), ("random", RANDOM)):
        if part not in parts:
            continue
        if not path.exists():
            if part == "bench":
                make_capture.generate(path, 2_000_000)
            else:
                make_random_payload.generate(path, 2_000_000)
        with path.open("rb", buffering=0) as fh:  # into the page cache
            while fh.read(8 << 20):
                pass
        rows = big(path, args.repeat, not args.no_nfstream, args.timeout)
        figures[part] = rows
        _print(f"{part}: {path.relative_to(REPO)} ({path.stat().st_size / 1e9:.2f} GB)", rows)
        _say(
            "tshark conv / analyze (SHA-256, JSON)",
            _ratio(rows, "tshark conv", "analyze (SHA-256, JSON)"),
            ">= 8x",
        )
        _say(
            "analyze --no-sha256 / flows",
            _ratio(rows, "analyze --no-sha256", "flows"),
            "<= 1.5x",
        )
        _say(
            "nfstream / analyze (SHA-256, JSON)",
            _ratio(rows, "nfstream", "analyze (SHA-256, JSON)"),
            "-",
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
