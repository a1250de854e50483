"""Filters on ``analyze`` and ``flows`` (``flowaudit/filters.py``): what they select, that the
audit still sees the whole capture, what decides the exit code, and bad values (exit 2).

The oracle for the corpus: tshark's own frame times and TCP stream ids (``--since``/``--until``
keep exactly the TCP flows with a frame inside the window) and its endpoint tables
(``--host`` keeps exactly the packets and bytes tshark counts for the address).
"""

from __future__ import annotations

import json
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import audit
from flowaudit.config import FlowConfig
from flowaudit.errors import UsageError
from flowaudit.filters import make_filters, parse_time, select_result
from flowaudit.flows import build_flow_table
from flowaudit.site import load_site
from tests.conftest import missing
from tests.sample import SAMPLE, SITE, invoke
from tests.test_cli import run_module
from tests.test_hosts import tshark_endpoints

REPO = Path(__file__).resolve().parent.parent


def _json(*args: str) -> tuple[dict[str, Any], int]:
    result = invoke("analyze", str(SAMPLE), "--site", str(SITE), "--format", "json", *args)
    return json.loads(result.stdout), result.return_value


@pytest.fixture(scope="module")
def sample_result() -> Any:
    table = build_flow_table([str(SAMPLE)], FlowConfig(conversations=True))
    return audit(table, load_site(str(SITE)))


# --- parsing ----------------------------------------------------------------------------------


def test_offsets_and_iso_times() -> None:
    assert parse_time("--since", "+30s").offset_ns == 30 * 10**9
    assert parse_time("--since", "+5m").offset_ns == 300 * 10**9
    assert parse_time("--since", "+1h30m").offset_ns == 5400 * 10**9
    assert parse_time("--since", "+0.5s").offset_ns == 5 * 10**8
    assert parse_time("--since", "2023-11-14T22:13:20Z").absolute_ns == 1_700_000_000 * 10**9
    # no offset: UTC; an offset is honoured
    assert parse_time("--since", "2023-11-14T22:13:20").absolute_ns == 1_700_000_000 * 10**9
    assert parse_time("--since", "2023-11-14T23:13:20+01:00").absolute_ns == 1_700_000_000 * 10**9


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--since", "yesterday"),
        ("--since", "+5"),
        ("--until", "+5d"),
        ("--until", "2023-13-01"),
    ],
)
def test_bad_times(option: str, value: str) -> None:
    with pytest.raises(UsageError, match=option):
        make_filters(since=value) if option == "--since" else make_filters(until=value)


def test_bad_values_name_the_option() -> None:
    with pytest.raises(UsageError, match=re.escape("--host '10.0.0.300'")):
        make_filters(hosts=["10.0.0.300"])
    with pytest.raises(UsageError, match=re.escape("--net '10.0.0.0/33'")):
        make_filters(nets=["10.0.0.0/33"])
    with pytest.raises(UsageError, match="--service 'smbx'"):
        make_filters(services=["smbx"])
    with pytest.raises(UsageError, match="--rule 'smb2'"):
        make_filters(rules=["smb2"])


@pytest.mark.parametrize(
    "args",
    [
        ["--host", "10.0.0.300"],
        ["--net", "10.0.0.0/33"],
        ["--net", "not-a-net"],
        ["--since", "yesterday"],
        ["--until", "+5x"],
        ["--service", "nope"],
        ["--rule", "nope"],
        ["--verdict", "maybe"],
        ["--min-severity", "urgent"],
        ["--until", "2300-01-01"],  # past what 64-bit nanoseconds hold
        ["--since", "0001-01-01T00:00:00+05:00"],
        ["--since", "+99999999999h"],
        ["--since", "2023-11-14T22:13:20Z", "--until", "2020-01-01"],  # a window of nothing
        ["--since", "+5m", "--until", "+1m"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    done = run_module("analyze", str(SAMPLE), *args, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowaudit: error:"), done.stderr


@pytest.mark.parametrize("option", ["--service smb", "--verdict unknown", "--rule smb1"])
def test_flows_refuses_what_only_an_audit_knows(option: str) -> None:
    done = run_module("flows", str(SAMPLE), *option.split(), cwd=REPO)
    assert done.returncode == 2
    assert "flows has no services, verdicts or findings" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- selection --------------------------------------------------------------------------------


def test_no_filter_is_the_whole_result(sample_result: Any) -> None:
    assert select_result(sample_result, make_filters()) is sample_result
    document, _ = _json()
    assert document["filters"] is None


def test_host_keeps_its_flows_and_their_findings(sample_result: Any) -> None:
    document, code = _json("--host", "10.10.1.23")
    assert {f["id"] for f in document["flows"]} == {
        f["id"] for f in sample_result.flows if "10.10.1.23" in (f["client"], f["server"])
    }
    assert document["flows"]
    kept = {f["id"] for f in document["flows"]}
    for finding in document["findings"]:
        assert finding["flow_ids"] and set(finding["flow_ids"]) <= kept
    # every finding of the whole audit that names one of those flows is there
    expected = {f.id for f in sample_result.findings if kept & set(f.flow_ids)}
    assert {f["id"] for f in document["findings"]} == expected
    filters = document["filters"]
    assert filters["options"]["host"] == ["10.10.1.23"]
    assert (filters["flows"], filters["flows_total"]) == (len(kept), len(sample_result.flows))
    assert filters["findings_total"] == len(sample_result.findings)
    assert document["summary"]["flows"] == len(kept)
    assert code == 1  # smb1 on its flow is high


def test_host_matches_exactly_and_net_by_prefix(sample_result: Any) -> None:
    # 10.10.1.2 is a prefix of 10.10.1.21..23 but no host of the sample
    document, _ = _json("--host", "10.10.1.2")
    assert document["flows"] == []
    document, _ = _json("--net", "10.10.1.0/24")
    expected = {
        f["id"]
        for f in sample_result.flows
        if f["client"].startswith("10.10.1.") or f["server"].startswith("10.10.1.")
    }
    assert {f["id"] for f in document["flows"]} == expected


def test_roles_are_those_of_the_whole_capture() -> None:
    """The audit sees every flow: a flow kept by --host has the verdict and roles it has
    unfiltered (roles inferred from other flows included)."""
    whole, _ = _json()
    by_id = {flow["id"]: flow for flow in whole["flows"]}
    for args in (["--host", "10.10.0.13"], ["--service", "rpc-dynamic"], ["--since", "+2s"]):
        document, _ = _json(*args)
        for flow in document["flows"]:
            assert flow == by_id[flow["id"]]


def test_service_verdict_rule_and_severity(sample_result: Any) -> None:
    document, _ = _json("--service", "smb", "--service", "http")
    assert {f["service"] for f in document["flows"]} == {"smb", "http"}
    document, _ = _json("--verdict", "unexpected")
    assert {f["verdict"] for f in document["flows"]} == {"unexpected"}
    assert len(document["flows"]) == sample_result.summary()["verdicts"]["unexpected"]
    document, _ = _json("--rule", "smb1")
    assert {f["rule"] for f in document["findings"]} == {"smb1"}
    assert len(document["flows"]) == len(sample_result.flows)  # findings filter only
    document, _ = _json("--min-severity", "medium")
    assert {f["severity"] for f in document["findings"]} <= {"medium", "high", "critical"}
    assert len(document["findings"]) == sum(
        f.severity in ("medium", "high", "critical") for f in sample_result.findings
    )


def test_time_window_on_the_sample(sample_result: Any) -> None:
    document, _ = _json("--since", "+1s", "--until", "+2s")
    start = "2023-11-14T22:13:21.000250Z"
    end = "2023-11-14T22:13:22.000250Z"
    expected = {
        f["id"] for f in sample_result.flows if f["last_seen"] >= start and f["first_seen"] <= end
    }
    assert {f["id"] for f in document["flows"]} == expected
    assert 0 < len(expected) < len(sample_result.flows)
    assert document["filters"]["since_utc"] == start
    assert document["filters"]["until_utc"] == end
    same, _ = _json("--since", "2023-11-14T22:13:21.000250Z", "--until", end)
    assert [f["id"] for f in same["flows"]] == [f["id"] for f in document["flows"]]


# --- the exit code ----------------------------------------------------------------------------


def test_filtered_out_findings_do_not_set_the_exit_code() -> None:
    assert invoke("analyze", str(SAMPLE), "--site", str(SITE)).return_value == 1
    # 10.10.1.22's flows carry one medium finding: nothing high
    _, code = _json("--host", "10.10.1.22")
    assert code == 0
    _, code = _json("--host", "10.10.1.22", "--fail-on", "medium")
    assert code == 1
    _, code = _json("--rule", "non-standard-port")
    assert code == 0
    _, code = _json("--rule", "smb1")
    assert code == 1
    _, code = _json("--rule", "smb1", "--min-severity", "medium")
    assert code == 1  # smb1's findings are high: kept
    _, code = _json("--verdict", "unknown")
    assert code == 0


def test_terminal_says_which_filters(sample_result: Any) -> None:
    result = invoke(
        "analyze", str(SAMPLE), "--site", str(SITE), "--host", "10.10.1.23", "--since", "+0.5s"
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("filters:"))
    assert "--host 10.10.1.23 --since +0.5s" in line
    assert f"of {len(sample_result.flows)} flows" in line
    assert f"of {len(sample_result.findings)} findings" in line


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "sarif", "html"])
def test_every_format_takes_the_filters(fmt: str) -> None:
    result = invoke(
        "analyze", str(SAMPLE), "--site", str(SITE), "--format", fmt, "--host", "10.10.1.23"
    )
    assert result.return_value == 1
    document, _ = _json("--host", "10.10.1.23")
    if fmt == "jsonl":
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert records[0]["filters"]["options"]["host"] == ["10.10.1.23"]
        assert len([r for r in records if r["record"] == "flow"]) == len(document["flows"])
        assert len([r for r in records if r["record"] == "finding"]) == len(document["findings"])
    elif fmt == "csv":
        assert len(result.stdout.splitlines()) == 1 + len(document["flows"])
    elif fmt == "sarif":
        assert len(json.loads(result.stdout)["runs"][0]["results"]) == len(document["findings"])
    else:
        assert result.stdout.count('<tr id="flow-') == len(document["flows"])
        assert "--host 10.10.1.23" in result.stdout  # the command in the header


# --- flows ------------------------------------------------------------------------------------


def test_flows_host_and_time() -> None:
    whole = json.loads(invoke("flows", str(SAMPLE), "--format", "json").stdout)["flows"]
    some = json.loads(
        invoke("flows", str(SAMPLE), "--format", "json", "--host", "10.10.0.13").stdout
    )["flows"]
    assert [f["id"] for f in some] == [
        f["id"] for f in whole if "10.10.0.13" in (f["client"], f["server"])
    ]
    late = json.loads(invoke("flows", str(SAMPLE), "--format", "json", "--since", "+2.5s").stdout)[
        "flows"
    ]
    assert [f["id"] for f in late] == [
        f["id"] for f in whole if f["last_seen"] >= "2023-11-14T22:13:22.500250Z"
    ]


def test_flows_payload_of_the_kept_rows() -> None:
    whole = json.loads(invoke("flows", str(SAMPLE), "--format", "json", "--payload").stdout)
    some = json.loads(
        invoke("flows", str(SAMPLE), "--format", "json", "--payload", "--host", "10.10.1.23").stdout
    )
    by_id = {f["id"]: f for f in whole["flows"]}
    assert some["flows"]
    for flow in some["flows"]:
        assert flow == by_id[flow["id"]]


# --- the corpus against tshark ----------------------------------------------------------------


def _tcp_streams_in(path: Path, since: Decimal, until: Decimal) -> int:
    """TCP streams (tshark's ``tcp.stream``) active in [since, until]: first frame at or before
    ``until``, last at or after ``since`` (a flow whose packets fall before and after the
    window but none inside it was still open in it)."""
    text = subprocess.run(
        [
            "tshark", "-n", "-r", str(path), "-T", "fields", "-e", "tcp.stream",
            "-e", "frame.time_epoch", "-Y", "tcp and not icmp and not icmpv6",
        ],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    spans: dict[str, tuple[Decimal, Decimal]] = {}
    for line in text.splitlines():
        stream, _, when = line.partition("\t")
        moment = Decimal(when)
        first, last = spans.get(stream, (moment, moment))
        spans[stream] = (min(first, moment), max(last, moment))
    return sum(1 for first, last in spans.values() if first <= until and last >= since)


def _first_epoch(path: Path) -> Decimal:
    text = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-c", "1", "-T", "fields", "-e", "frame.time_epoch"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return Decimal(text.split()[0])


CORPUS_WINDOWS = ("otrf_purplesharp_ad_mixed.cap", "sv_smb2_mixed_windows_lan.pcap")


@pytest.mark.parametrize("name", CORPUS_WINDOWS)
def test_time_window_against_tshark(corpus: Path, tshark: str, name: str) -> None:
    path = corpus / name
    if not path.exists():
        missing(f"{name} in the corpus")
    first = _first_epoch(path)
    for since_s, until_s in ((0, 5), (3, 9), (10, 700), (2, 2.5)):
        result = invoke(
            "analyze", str(path), "--format", "json", "--fail-on", "never",
            "--since", f"+{since_s}s", "--until", f"+{until_s}s",
        )  # fmt: skip
        document = json.loads(result.stdout)
        ours = sum(1 for f in document["flows"] if f["proto"] == "tcp")
        theirs = _tcp_streams_in(path, first + Decimal(str(since_s)), first + Decimal(str(until_s)))
        assert ours == theirs, (name, since_s, until_s)


def test_host_filter_against_tshark_endpoints(corpus: Path, tshark: str) -> None:
    """For every address of every corpus capture, ``--host ADDR`` keeps flows whose packets
    and bytes are tshark's count for the address (TCP and UDP, not inside ICMP errors); a
    flow from an address to itself (loopback) tshark counts twice, as sender and receiver."""
    checked = 0
    for path in sorted(corpus.iterdir()):
        if path.suffix not in (".pcap", ".pcapng", ".cap"):
            continue
        theirs = tshark_endpoints(path)
        for address, (packets, size) in sorted(theirs.items())[:2]:
            document = json.loads(
                invoke(
                    "analyze", str(path), "--format", "json", "--fail-on", "never",
                    "--first-bytes", "--no-sha256", "--idle-timeout", "0", "--host", address,
                ).stdout
            )  # fmt: skip
            flows = document["flows"]
            twice = sum(f["packets"] for f in flows if f["client"] == f["server"])
            twice_bytes = sum(f["bytes"] for f in flows if f["client"] == f["server"])
            assert sum(f["packets"] for f in flows) + twice == packets, (path.name, address)
            assert sum(f["bytes"] for f in flows) + twice_bytes == size, (path.name, address)
            checked += 1
    assert checked > 40


def test_an_ipv4_mapped_host_is_its_ipv4_address(sample_result: Any) -> None:
    """Flows write IPv4-mapped addresses as dotted quads: ::ffff:10.10.0.12 is 10.10.0.12."""
    mapped = select_result(sample_result, make_filters(hosts=["::ffff:10.10.0.12"]))
    plain = select_result(sample_result, make_filters(hosts=["10.10.0.12"]))
    assert mapped.flows and [f["id"] for f in mapped.flows] == [f["id"] for f in plain.flows]


def test_a_filtered_report_as_baseline_or_in_diff_is_said(tmp_path: Path) -> None:
    """A report made with filters lacks what they left out: using it as a baseline or in a
    diff says so (what it lacks then counts as new)."""
    filtered = tmp_path / "filtered.json"
    invoke("analyze", str(SAMPLE), "--site", str(SITE), "--host", "10.10.0.12",
           "--format", "json", "-o", str(filtered), "--fail-on", "never")  # fmt: skip
    done = run_module(
        "analyze", str(SAMPLE), "--site", str(SITE), "--baseline", str(filtered),
        "--fail-on", "never", cwd=REPO,
    )  # fmt: skip
    assert "was made with filters (--host 10.10.0.12)" in done.stderr
    done = run_module("diff", str(filtered), str(filtered), cwd=REPO)
    assert done.stderr.count("was made with filters") == 2


def test_the_html_report_says_its_filters() -> None:
    page = invoke(
        "analyze", str(SAMPLE), "--site", str(SITE), "--host", "10.10.0.12",
        "--format", "html", "--fail-on", "never",
    ).output  # fmt: skip
    assert "<dt>filters</dt><dd>filters: --host 10.10.0.12: 11 of 46 flows" in page
    whole = invoke("analyze", str(SAMPLE), "--format", "html", "--fail-on", "never").output
    assert "<dt>filters</dt>" not in whole
