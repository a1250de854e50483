"""``flowaudit hosts`` (``flowaudit/hosts.py``), the HTML host section and the terminal's view of
the flows nobody could judge.

The oracle: tshark's endpoint tables (``tshark -q -z endpoints,ip -z endpoints,ipv6``). Per
address, packets and bytes must equal the sum over the host's flows, with the display filter
``(tcp or udp) and not icmp and not icmpv6``, as flowaudit's hosts are the ends of its TCP and
UDP flows. Where they differ by design:

* without the filter tshark also counts ICMP, ESP, GRE, ... (flowaudit's ``other_flows``, not
  judged and not in a host's tally) and the ICMP errors that quote a TCP/UDP header (the filter
  ``udp`` alone still matches those: ``not icmp`` leaves them out);
* a packet from an address to itself (loopback captures) is one packet of the host's flow for
  flowaudit, two for tshark's endpoint table (it is counted as sent and as received).

Measured on the 36 captures of the corpus: every address equal, but the two loopback captures
(``::1`` and ``127.0.0.1``, tshark exactly twice).
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import audit
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from flowaudit.hosts import host_records, timeline
from flowaudit.report.html import report_context
from flowaudit.report.terminal import oddities, unknown_lines
from flowaudit.site import load_site
from tests.conftest import missing
from tests.report.test_html_browser import chromium, dumped_dom, flow_rows
from tests.sample import SAMPLE, SITE, invoke
from tests.test_cli import run_module

REPO = Path(__file__).resolve().parent.parent
__all__ = ["chromium"]  # the fixture, from the browser tests
_ENDPOINT = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
TCP_UDP = "(tcp or udp) and not icmp and not icmpv6"


def tshark_endpoints(path: Path, display_filter: str = TCP_UDP) -> dict[str, tuple[int, int]]:
    """address -> (packets, bytes) of tshark's IPv4 and IPv6 endpoint tables."""
    found: dict[str, tuple[int, int]] = {}
    for kind in ("ip", "ipv6"):
        text = subprocess.run(
            ["tshark", "-n", "-q", "-r", str(path), "-z", f"endpoints,{kind},{display_filter}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in text.splitlines():
            match = _ENDPOINT.match(line)
            if match:
                found[match[1]] = (int(match[2]), int(match[3]))
    return found


@pytest.fixture(scope="module")
def sample_result() -> Any:
    table = build_flow_table([str(SAMPLE)], FlowConfig(conversations=True))
    return audit(table, load_site(str(SITE)))


def test_every_address_not_only_role_holders(sample_result: Any) -> None:
    records = host_records(sample_result)
    addresses = {r["ip"] for r in records}
    assert addresses == sample_result.addresses
    assert len(addresses) > len(sample_result.hosts)  # the broadcast and group addresses too
    assert "10.10.1.255" in addresses and "239.255.0.1" in addresses
    by_ip = {r["ip"]: r for r in records}
    for held in sample_result.hosts:
        assert by_ip[held["ip"]]["roles"] == held["roles"]
        assert by_ip[held["ip"]]["evidence"] == held["evidence"]


def test_sums_are_those_of_the_flows(sample_result: Any) -> None:
    for record in host_records(sample_result):
        mine = [f for f in sample_result.flows if record["ip"] in (f["client"], f["server"])]
        assert record["flows"] == len(mine)
        assert record["packets"] == sum(f["packets"] for f in mine)
        assert record["bytes"] == sum(f["bytes"] for f in mine)
        assert record["first_seen"] == min(f["first_seen"] for f in mine)
        assert record["last_seen"] == max(f["last_seen"] for f in mine)
        served = sum(v["flows"] for v in record["served"].values())
        used = sum(v["flows"] for v in record["used"].values())
        assert served + used == record["flows"]
        peers = {f["server"] if f["client"] == record["ip"] else f["client"] for f in mine}
        assert record["peers"] == len(peers)


def test_certificates_identities_and_findings(sample_result: Any) -> None:
    by_ip = {r["ip"]: r for r in host_records(sample_result)}
    mp = by_ip["10.10.0.12"]
    assert [(c["subject_cn"], c["issuer_cn"], c["flows"]) for c in mp["certificates"]] == [
        ("mp01.contoso.local", "SMS Issuing", 2)
    ]
    assert [i["account"] for i in mp["identities"]] == ["CONTOSO\\MP01$"]
    # a client presents no certificate; its findings are those naming its flows
    client = by_ip["10.10.1.23"]
    assert client["certificates"] == []
    assert client["findings"] == {"high": 2, "medium": 2}


def test_timeline_in_time_order(sample_result: Any) -> None:
    rows = timeline(sample_result, "10.10.0.13")
    assert len(rows) == host_records_by(sample_result)["10.10.0.13"]["flows"]
    assert [r["first_seen"] for r in rows] == sorted(r["first_seen"] for r in rows)
    for row in rows:
        flow = next(f for f in sample_result.flows if f["id"] == row["id"])
        assert row["peer"] == (flow["server"] if row["direction"] == "out" else flow["client"])
        assert row["verdict"] == flow["verdict"]
        assert [f["id"] for f in row["findings"]] == [
            f.id for f in sample_result.findings_by_flow.get(row["id"], [])
        ]


def host_records_by(result: Any) -> dict[str, dict[str, Any]]:
    return {r["ip"]: r for r in host_records(result)}


def test_hosts_command_formats(sample_result: Any) -> None:
    table = invoke("hosts", str(SAMPLE), "--site", str(SITE)).stdout
    assert table.splitlines()[0].startswith("host")
    assert f"{len(sample_result.addresses)} hosts" in table
    assert "10.10.0.12 presented CN=mp01.contoso.local by SMS Issuing" in table
    document = json.loads(invoke("hosts", str(SAMPLE), "--format", "json").stdout)
    assert {h["ip"] for h in document["hosts"]} == sample_result.addresses
    rows = list(csv.DictReader(io.StringIO(invoke("hosts", str(SAMPLE), "--format", "csv").stdout)))
    assert len(rows) == len(sample_result.addresses)
    one = json.loads(
        invoke(
            "hosts", str(SAMPLE), "--site", str(SITE), "--host", "10.10.1.23", "--format", "json"
        ).stdout
    )
    assert one["host"]["ip"] == "10.10.1.23"
    assert [r["id"] for r in one["timeline"]] == [12, 17, 18]
    text = invoke("hosts", str(SAMPLE), "--site", str(SITE), "--host", "10.10.1.23").stdout
    assert "F0005:smb1" in text
    lines = invoke("hosts", str(SAMPLE), "--host", "10.10.1.23", "--format", "csv").stdout
    assert len(lines.splitlines()) == 4


def test_hosts_bad_input_exit_2() -> None:
    done = run_module("hosts", str(SAMPLE), "--host", "10.10.1.", cwd=REPO)
    assert done.returncode == 2 and "--host" in done.stderr
    done = run_module("hosts", str(REPO / "README.md"), cwd=REPO)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_html_host_section_lists_every_host(sample_result: Any) -> None:
    context = report_context(sample_result)
    assert {h["ip"] for h in context["host_list"]} == sample_result.addresses
    assert all(h["fragment"] == f"filter=host:{h['ip']}" for h in context["host_list"])
    page = invoke("analyze", str(SAMPLE), "--format", "html", "--fail-on", "never").stdout
    section = page[page.index('<section id="hosts">') :]
    section = section[: section.index("</section>")]
    assert section.count('<a href="#filter=host:') == len(sample_result.addresses)
    assert 'href="#filter=host:10.10.1.255"' in section


def test_report_js_matches_addresses_exactly() -> None:
    script = (REPO / "flowaudit" / "report" / "templates" / "report.js").read_text()
    assert "host:" in script and 'dataset.type === "address"' in script


# --- the terminal's unknown section -----------------------------------------------------------


def _flow(**values: Any) -> dict[str, Any]:
    flow = {
        "id": 1,
        "proto": "tcp",
        "client": "10.0.0.1",
        "server": "10.0.0.2",
        "server_port": 443,
        "service": "https",
        "evidence": "payload",
        "verdict": "unknown",
        "bytes": 100,
        "facts": {},
    }
    flow.update(values)
    return flow


def test_oddities() -> None:
    tls = {"cert_subject_cn": "P18055077", "cert_issuer_cn": "P18055077", "sni": None}
    assert oddities(_flow(facts={"tls": tls})) == ["self-signed CN=P18055077"]
    named = {"cert_subject_cn": "a.example", "cert_issuer_cn": "CA", "sni": "b.example"}
    assert oddities(_flow(facts={"tls": named})) == [
        "certificate CN=a.example for b.example (subjectAltName not read)"
    ]
    wild = {"cert_subject_cn": "*.example", "cert_issuer_cn": "CA", "sni": "b.example"}
    assert oddities(_flow(facts={"tls": wild})) == []
    assert oddities(_flow(service="unknown", server_port=8037)) == [
        "unknown service on a high port"
    ]
    assert oddities(_flow(service="unknown", server_port=25)) == []


class _Result:
    def __init__(self, flows: list[dict[str, Any]]) -> None:
        self.flows = flows


def test_unknown_lines_bounded_oddest_then_largest() -> None:
    flows = [_flow(id=k, server_port=2000 + k, service="unknown", bytes=k) for k in range(30)]
    flows.append(_flow(id=100, bytes=10**6))  # large, not odd
    self_signed = {"cert_subject_cn": "X", "cert_issuer_cn": "X", "sni": None}
    flows.append(_flow(id=101, server_port=8443, bytes=5, facts={"tls": self_signed}))
    flows.append(_flow(id=102, verdict="expected", bytes=10**9))
    lines = unknown_lines(_Result(flows), limit=15)  # type: ignore[arg-type]
    assert lines[0].startswith("unknown verdict: 32 flows")
    body = lines[2:-1]
    assert len(body) == 15
    assert "8443" in body[0] and "self-signed" in body[0]  # odd first; then odd by size
    assert "2029" in body[1]
    assert lines[-1] == "... and 17 more groups (17 flows)"  # the big plain https is last
    assert not any("  443  " in line for line in body)


def test_terminal_has_the_unknown_section_on_the_corpus(corpus: Path) -> None:
    path = corpus / "sv_smb2_mixed_windows_lan.pcap"
    if not path.exists():
        missing(f"{path.name} in the corpus")
    text = invoke("analyze", str(path), "--fail-on", "never").stdout
    head = next(line for line in text.splitlines() if line.startswith("unknown verdict:"))
    document = json.loads(invoke("analyze", str(path), "--format", "json").stdout)
    assert head.startswith(f"unknown verdict: {document['summary']['verdicts']['unknown']} flows")


# --- the corpus against tshark ----------------------------------------------------------------


def _corpus_paths(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap"))


def test_hosts_against_tshark_endpoints(corpus: Path, tshark: str) -> None:
    """Per address: tshark's TCP/UDP endpoint counts are the sums over the host's flows (but
    loopback, counted twice by tshark); unfiltered, tshark counts more only for hosts of flows
    flowaudit does not judge (ICMP, ESP, ...: ``other_flows``), ICMP errors quoting TCP/UDP
    included."""
    compared = loopback = 0
    for path in _corpus_paths(corpus):
        result = audit(build_flow_table([str(path)], FlowConfig(idle_timeout=0)))
        ours = {r["ip"]: r for r in host_records(result)}
        theirs = tshark_endpoints(path)
        assert set(ours) == set(theirs), path.name
        for address, (packets, size) in theirs.items():
            record = ours[address]
            selfish = [f for f in result.flows if f["client"] == f["server"] == address]
            extra_packets = sum(f["packets"] for f in selfish)
            extra_bytes = sum(f["bytes"] for f in selfish)
            loopback += bool(selfish)
            assert (record["packets"] + extra_packets, record["bytes"] + extra_bytes) == (
                packets,
                size,
            ), (path.name, address)
            compared += 1
        unfiltered = tshark_endpoints(path, "")
        differ = {
            a for a in unfiltered if a not in ours or ours[a]["packets"] != unfiltered[a][0]
        } - {"::1", "127.0.0.1"}
        if differ:
            assert result.other_flows > 0, (path.name, differ)
    assert compared > 100
    assert loopback == 2  # ::1 and 127.0.0.1: counted twice by tshark


# --- the HTML page's exact address filter, in a browser ----------------------------------------


def test_exact_address_filter_in_a_browser(chromium: str, tmp_path: Path) -> None:
    page_path = tmp_path / "report.html"
    invoke("analyze", str(SAMPLE), "--format", "html", "-o", str(page_path), "--fail-on", "never")
    flows = json.loads(invoke("analyze", str(SAMPLE), "--format", "json").stdout)["flows"]

    def shown(fragment: str) -> list[str]:
        page = dumped_dom(chromium, tmp_path / fragment.replace("%22", "q"), page_path.as_uri()
                          + "#filter=" + fragment)  # fmt: skip
        rows = [row for row in flow_rows(page) if row.attrs.get("id", "").startswith("flow-")]
        return [row.attrs["id"] for row in rows if "hidden" not in row.attrs]

    def ids_of(address: str) -> list[str]:
        return [f"flow-{f['id']}" for f in flows if address in (f["client"], f["server"])]

    # a substring matches 10.10.1.21, .22 and .23; the exact term none of them
    assert len(shown("10.10.1.2")) > len(ids_of("10.10.1.21"))
    assert shown("host:10.10.1.2") == []
    assert shown("host:10.10.1.21") == ids_of("10.10.1.21")
    assert shown("%2210.10.0.1%22") == ids_of("10.10.0.1") == []
    assert shown("%2210.10.0.12%22") == ids_of("10.10.0.12")
