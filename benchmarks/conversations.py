"""What reading whole conversations costs: ``analyze`` against ``flows`` and against tshark.

    python benchmarks/conversations.py [--mb 520] [--capture PATH] [--bench-capture PATH]

Two captures:

* a capture dominated by the protocols read whole (``make_conversations.py``: SMB2 file copies,
  DCE/RPC calls, HTTP keep-alive; ~520 MB by default, built on first use): ``flowaudit analyze``
  (JSON, no SHA-256) against ``tshark -r F -T fields`` extracting the fields flowaudit reports
  (SMB2 command, tree, file name, RPC opnum, EPM port, NTLM user/domain/host, Kerberos names,
  HTTP method and URI, LDAP operation, DHCP type), and against ``flowaudit flows``. The issue
  asks analyze >= 5x faster than tshark, with peak RSS <= 512 MB. The report is also checked
  against the generator's ground truth (reads, bytes read, RPC calls, HTTP requests);
* the flows benchmark capture (``make_capture.py``, 2M packets; built on first use):
  ``analyze --no-sha256`` against ``flows`` (bound: 1.5x), with and without conversations.

Each command runs through ``launch.py`` (wall time, CPU, peak RSS of the command itself), once
untimed to warm caches, then ``--repeat`` times (median).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.run import OUT, REPO, flowaudit_base, measure  # noqa: E402

TSHARK_FIELDS = (
    "frame.number",
    "smb2.cmd",
    "smb2.tree",
    "smb2.filename",
    "dcerpc.opnum",
    "epm.proto.tcp_port",
    "ntlmssp.auth.username",
    "ntlmssp.auth.domain",
    "ntlmssp.auth.hostname",
    "kerberos.CNameString",
    "kerberos.SNameString",
    "http.request.method",
    "http.request.uri",
    "ldap.protocolOp",
    "dhcp.option.dhcp",
)


def _run(name: str, cmd: list[str], env: dict[str, str], repeat: int) -> dict[str, Any]:
    measure(cmd, cwd=REPO, env=env, timeout=3600)  # warm-up
    runs = [measure(cmd, cwd=REPO, env=env, timeout=3600) for _ in range(repeat)]
    failed = [m for m in runs if m.returncode not in (0, 1)]
    if failed:
        raise SystemExit(f"{name} failed: {failed[0].stderr.strip().splitlines()[-1:]}")
    return {
        "name": name,
        "wall_s": statistics.median(m.wall_s for m in runs),
        "cpu_s": statistics.median(m.cpu_s for m in runs),
        "rss_mib": max(m.maxrss_kib for m in runs) / 1024,
    }


def _truth_check(report: Path, truth: dict[str, Any]) -> list[str]:
    document = json.loads(report.read_text())
    reads = bytes_read = rpc = http = 0
    for flow in document["flows"]:
        facts = flow["facts"]
        for entry in facts.get("operations") or []:
            if entry["protocol"].startswith("smb") and entry["operation"] == "READ":
                reads += entry.get("direction") == "c2s"
            elif entry["protocol"] == "dcerpc" and "opnum" in entry:
                rpc += 1
            elif entry["protocol"] == "http":
                http += 1
        for file in ((facts.get("conversation") or {}).get("smb") or {}).get("files") or []:
            bytes_read += file.get("bytes_read") or 0
    seen = {"smb2_reads": reads, "smb2_bytes_read": bytes_read, "rpc_requests": rpc}
    seen["http_requests"] = http
    return [
        f"{name}: report {seen[name]:,} / generated {truth[name]:,}"
        + ("" if seen[name] == truth[name] else "  <-- differs")
        for name in seen
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=520)
    parser.add_argument("--capture", type=Path, default=None)
    parser.add_argument("--bench-capture", type=Path, default=OUT / "capture-2000000-s1.pcap")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    capture = args.capture or OUT / f"conversations-{args.mb}mb.pcap"
    truth_file = capture.with_suffix(".truth.json")
    if not capture.exists() or not truth_file.exists():
        import contextlib
        import io

        from benchmarks.make_conversations import main as make

        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            make(["--out", str(capture), "--mb", str(args.mb)])
        truth_file.write_text(text.getvalue().strip().splitlines()[-1])
    truth = json.loads(truth_file.read_text())
    base, env = flowaudit_base()
    report = OUT / "conversations-report.json"
    results = [
        _run(
            "flowaudit analyze",
            [
                *base,
                "analyze",
                str(capture),
                "--format",
                "json",
                "-o",
                str(report),
                "--no-sha256",
                "--fail-on",
                "never",
            ],
            env,
            args.repeat,
        ),
        _run(
            "flowaudit analyze --first-bytes",
            [
                *base,
                "analyze",
                str(capture),
                "--format",
                "json",
                "-o",
                str(OUT / "fb.json"),
                "--no-sha256",
                "--fail-on",
                "never",
                "--first-bytes",
            ],
            env,
            args.repeat,
        ),
        _run(
            "flowaudit flows",
            [*base, "flows", str(capture), "--format", "csv", "-o", str(OUT / "conv-flows.csv")],
            env,
            args.repeat,
        ),
    ]
    tshark = shutil.which("tshark")
    if tshark:
        fields = [arg for name in TSHARK_FIELDS for arg in ("-e", name)]
        results.append(
            _run(
                "tshark -T fields",
                [
                    "sh",
                    "-c",
                    " ".join([tshark, "-n", "-r", str(capture), "-T", "fields", *fields])
                    + f" > {OUT / 'tshark-fields.txt'}",
                ],
                {},
                args.repeat,
            )
        )
    print(
        f"capture {capture}: {capture.stat().st_size / 1e6:.0f} MB, {truth['packets']:,} packets,"
        f" {truth['flows']:,} flows"
    )
    for row in results:
        print(
            f"  {row['name']:34s} {row['wall_s']:8.2f} s wall {row['cpu_s']:8.2f} s CPU"
            f" {row['rss_mib']:8.0f} MiB peak RSS"
        )
    analyze = results[0]["wall_s"]
    print(f"  analyze / flows: {analyze / results[2]['wall_s']:.2f}x")
    if tshark:
        print(f"  tshark / analyze: {results[3]['wall_s'] / analyze:.1f}x (bound: >= 5x)")
    print(f"  analyze peak RSS {results[0]['rss_mib']:.0f} MiB (bound: 512 MiB)")
    for line in _truth_check(report, truth):
        print("  " + line)

    if not args.bench_capture.exists():
        from benchmarks.make_capture import main as make_bench

        make_bench(["--packets", "2000000", "--out", str(args.bench_capture)])
    bench = [
        _run(
            name,
            [*base, *cmd],
            env,
            args.repeat,
        )
        for name, cmd in (
            (
                "flows",
                [
                    "flows",
                    str(args.bench_capture),
                    "--format",
                    "csv",
                    "-o",
                    str(OUT / "bench-flows.csv"),
                ],
            ),
            (
                "analyze --no-sha256",
                [
                    "analyze",
                    str(args.bench_capture),
                    "--format",
                    "json",
                    "-o",
                    str(OUT / "bench.json"),
                    "--no-sha256",
                    "--fail-on",
                    "never",
                ],
            ),
            (
                "analyze --no-sha256 --first-bytes",
                [
                    "analyze",
                    str(args.bench_capture),
                    "--format",
                    "json",
                    "-o",
                    str(OUT / "bench-fb.json"),
                    "--no-sha256",
                    "--fail-on",
                    "never",
                    "--first-bytes",
                ],
            ),
        )
    ]
    print(f"benchmark capture {args.bench_capture}:")
    for row in bench:
        print(f"  {row['name']:34s} {row['wall_s']:8.2f} s wall {row['rss_mib']:8.0f} MiB")
    print(f"  analyze / flows: {bench[1]['wall_s'] / bench[0]['wall_s']:.2f}x (bound: 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
