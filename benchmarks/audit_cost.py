"""What classification and the audit add to flow assembly, on the benchmark capture.

    python benchmarks/audit_cost.py [--capture PATH] [--repeat 5]

Times, in one process after a warm-up run (numba kernels compiled and cached):

* ``assemble``: ``build_flow_table`` (read, decode, flows, first payload bytes kept);
* ``classify + audit`` (``flowaudit.audit.audit``): dissectors over the kept payloads and
  the signature tables -> services; roles (inferred without ``--site``); matrix verdicts and
  findings. Writing a report is not included (it is the same with or without the audit);

and prints the medians and the ratio (classify + audit) / assemble, which the issue bounds by
25%. The capture is the one ``benchmarks/run.py`` generates (``benchmarks/out/``); without it,
``make_capture.py`` builds it first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, default=HERE / "out" / "capture-2000000-s1.pcap")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--site", default=None, help="a site file (default: roles inferred)")
    args = parser.parse_args(argv)
    if not args.capture.exists():
        from benchmarks.make_capture import main as make

        make(["--packets", "2000000", "--out", str(args.capture)])

    from flowaudit.audit import audit
    from flowaudit.config import FlowConfig
    from flowaudit.flows import build_flow_table
    from flowaudit.site import load_site

    site = load_site(args.site) if args.site else None
    times: dict[str, list[float]] = {"assemble": [], "classify + audit": []}
    flows = 0
    for run in range(args.repeat + 1):
        t0 = time.perf_counter()
        table = build_flow_table([args.capture], FlowConfig())
        t1 = time.perf_counter()
        result = audit(table, site)
        t2 = time.perf_counter()
        flows = len(result.flow_columns["id"])
        if run:  # the first run warms caches
            times["assemble"].append(t1 - t0)
            times["classify + audit"].append(t2 - t1)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"capture: {args.capture} ({flows} TCP/UDP flows), {args.repeat} runs, medians:")
    for name, value in median.items():
        print(f"  {name:16s} {value:7.3f} s")
    ratio = median["classify + audit"] / median["assemble"]
    print(f"  classify + audit = {ratio:.1%} of assemble (bound: 25%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
