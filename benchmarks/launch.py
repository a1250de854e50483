"""Run one command and write its wall time and os.wait4() rusage to a JSON file.

    python -I -S benchmarks/launch.py REPORT.json -- CMD [ARG...]

run.py starts commands through this small process so that ru_maxrss is the command's own: on
Linux a process that execs inherits, into ru_maxrss, the peak RSS of the memory image it
replaces, which for a child spawned straight from run.py would be run.py's own peak.  Keep
this module to the standard library's smallest parts (no subprocess, no site).
"""

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    """Spawn argv after '--', wait for it, write the report; exit 0 unless spawning failed."""
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: launch.py REPORT.json -- CMD [ARG...]\n")
        return 2
    report, cmd = argv[0], argv[2:]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    except OSError as exc:
        with open(report, "w") as fh:
            json.dump({"error": f"{cmd[0]}: {exc}"}, fh)
        return 127
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    with open(report, "w") as fh:
        json.dump(
            {
                "returncode": os.waitstatus_to_exitcode(status),
                "wall_s": wall,
                "utime_s": usage.ru_utime,
                "stime_s": usage.ru_stime,
                "maxrss_kib": usage.ru_maxrss,
            },
            fh,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
