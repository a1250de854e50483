"""The scenario captures and the sample carry real protocol bytes: tshark, not flowaudit, says so.

For the bundled sample and every scenario of ``tests/scenarios/build.py``, tshark (the
independent oracle) must find exactly the flows the expectations list, dissect each as the
protocols the expectations intend (``frame.protocols``), show the facts each flow was built to
carry (``match``), and report nothing malformed. The expectations themselves are checked for
shape and for naming real rows of the ports page (its facts in ``tests/data``).
``samples/make_sample.py`` must rebuild the committed sample byte for byte.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, ports_page_facts
from tests.scenarios.build import SAMPLE_SITE_YAML, SCENARIOS, build, expectations

SCENARIO_NAMES = sorted(SCENARIOS)

FLOW_KEYS = {
    "client",
    "client_port",
    "server",
    "server_port",
    "proto",
    "service",
    "verdict",
    "plaintext",
    "client_role",
    "server_role",
    "matrix_section",
    "matrix_row",
    "findings",
    "tshark",
}
SERVICES = {
    "smb", "rpc-epm", "rpc-dynamic", "sql", "sql-service-broker", "client-notification",
    "multicast", "http", "https", "pxe-dhcp", "tftp", "binl", "wake-on-lan", "wakeup-proxy",
    "ldap", "ldaps", "gc-ldap", "gc-ldaps", "remote-control", "rdp", "winrm-http",
    "winrm-https", "amt", "dns", "netbios-ns", "netbios-dgm", "netbios-ssn", "kerberos",
    "unknown",
}  # fmt: skip
RULES = {
    "unexpected-flow", "wrong-direction", "plaintext-http", "smb1", "smb-signing-not-required",
    "sql-encryption-off", "legacy-tls", "rpc-unannounced-port", "non-standard-port",
    "sdk-user-agent",
}  # fmt: skip
ROLES = {
    "site-server", "sql-server", "management-point", "distribution-point",
    "software-update-point", "sms-provider", "fallback-status-point", "reporting-services-point",
    "state-migration-point", "enrollment-point", "enrollment-proxy-point",
    "endpoint-protection-point", "asset-intelligence-synchronization-point",
    "application-catalog-website-point", "application-catalog-web-service-point",
    "system-health-validator", "out-of-band-service-point", "out-of-band-management-console",
    "amt-management-controller", "exchange-server-connector", "exchange-online",
    "on-premises-exchange-server", "windows-intune-connector", "windows-intune",
    "cloud-based-distribution-point", "upstream-wsus-server", "mac-computer", "mobile-device",
    "microsoft", "internet", "client", "console", "domain-controller",
}  # fmt: skip
# Not a section of the ports page: the page says it leaves out standard Windows services
# (Kerberos among them); signatures/matrix.yaml adds them under this title.
OFF_PAGE_SECTIONS = {"Standard Windows services"}

# Fields read for every packet: where it goes and what tshark made of it.
_BASE_FIELDS = (
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "frame.protocols",
)
_AGGREGATOR = "\x1f"

FlowKey = tuple[str, frozenset[tuple[str, int]]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each scenario's capture, built once; the sample is the committed file."""
    captures = {}
    for name in SCENARIO_NAMES:
        if name == "sample":
            captures[name] = REPO / "samples" / "configmgr_site.pcap"
        else:
            captures[name] = build(name, tmp_path_factory.mktemp(name)).capture
    return captures


def _run_tshark(
    tshark: str, capture: Path, fields: Iterable[str], decode_as: Iterable[str] = ()
) -> list[dict[str, list[str]]]:
    """One dict per packet: field -> its values (all occurrences)."""
    names = list(_BASE_FIELDS) + sorted(set(fields) - set(_BASE_FIELDS))
    command = [tshark, "-n", "-r", str(capture), "-T", "fields"]
    for rule in decode_as:
        command += ["-d", rule]
    for name in names:
        command += ["-e", name]
    command += ["-E", "separator=/t", "-E", "occurrence=a", "-E", f"aggregator={_AGGREGATOR}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    packets = []
    for line in out.splitlines():
        cells = line.split("\t")
        packets.append(
            {
                name: (cell.split(_AGGREGATOR) if cell else [])
                for name, cell in zip(names, cells, strict=True)
            }
        )
    return packets


def _key_of_packet(packet: dict[str, list[str]]) -> tuple[FlowKey, tuple[str, int]] | None:
    """The flow a packet belongs to, and its sender."""
    if not packet["ip.src"]:
        return None
    src, dst = packet["ip.src"][0], packet["ip.dst"][0]
    for proto in ("tcp", "udp"):
        if packet[f"{proto}.srcport"]:
            sport = int(packet[f"{proto}.srcport"][0])
            dport = int(packet[f"{proto}.dstport"][0])
            return (proto, frozenset({(src, sport), (dst, dport)})), (src, sport)
    return None


def _key_of_flow(flow: dict[str, Any]) -> FlowKey:
    return (
        flow["proto"],
        frozenset({(flow["client"], flow["client_port"]), (flow["server"], flow["server_port"])}),
    )


def _packets_by_flow(
    packets: list[dict[str, list[str]]],
) -> tuple[dict[FlowKey, list[dict[str, list[str]]]], dict[FlowKey, tuple[str, int]]]:
    by_flow: dict[FlowKey, list[dict[str, list[str]]]] = defaultdict(list)
    first_sender: dict[FlowKey, tuple[str, int]] = {}
    for packet in packets:
        found = _key_of_packet(packet)
        if found is None:
            continue
        key, sender = found
        first_sender.setdefault(key, sender)
        by_flow[key].append(packet)
    return by_flow, first_sender


def _flow_name(flow: dict[str, Any]) -> str:
    return (
        f"{flow['proto']} {flow['client']}:{flow['client_port']} -> "
        f"{flow['server']}:{flow['server_port']}"
    )


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_expectations_list_exactly_the_flows_of_the_capture(
    name: str, built: dict[str, Path], tshark: str
) -> None:
    flows = expectations(name)["flows"]
    by_flow, first_sender = _packets_by_flow(_run_tshark(tshark, built[name], ()))
    listed = [_key_of_flow(flow) for flow in flows]
    assert len(listed) == len(set(listed)), "a flow is listed twice"
    missing = sorted(_flow_name(f) for f in flows if _key_of_flow(f) not in by_flow)
    unlisted = sorted(str(sorted(key[1])) for key in set(by_flow) - set(listed))
    assert not missing, f"listed but not in the capture: {missing}"
    assert not unlisted, f"in the capture but not listed: {unlisted}"
    for flow in flows:
        # A TFTP transfer belongs to the client that asked for it, although the server's first
        # data block opened the flow (the expectation says `opened_by: server`).
        side = "server" if flow.get("opened_by") == "server" else "client"
        assert first_sender[_key_of_flow(flow)] == (flow[side], flow[f"{side}_port"]), (
            f"{_flow_name(flow)}: the {side} must be the side that sent first"
        )


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_tshark_dissects_every_flow_as_intended(
    name: str, built: dict[str, Path], tshark: str
) -> None:
    flows = expectations(name)["flows"]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for flow in flows:
        groups[tuple(flow["tshark"].get("decode_as", ()))].append(flow)
    failures = []
    for decode_as, group in groups.items():
        fields = {
            field for flow in group for match in flow["tshark"].get("match", ()) for field in match
        }
        by_flow, _ = _packets_by_flow(_run_tshark(tshark, built[name], fields, decode_as))
        for flow in group:
            packets = by_flow[_key_of_flow(flow)]
            seen = {
                layer for packet in packets for layer in packet["frame.protocols"][0].split(":")
            }
            lacking = set(flow["tshark"]["protocols"]) - seen
            if lacking:
                failures.append(
                    f"{_flow_name(flow)}: tshark saw {sorted(seen)}, not {sorted(lacking)}"
                )
            for match in flow["tshark"].get("match", ()):
                if not any(
                    all(value in packet[field] for field, value in match.items())
                    for packet in packets
                ):
                    failures.append(f"{_flow_name(flow)}: no packet shows {match}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_tshark_finds_nothing_malformed(name: str, built: dict[str, Path], tshark: str) -> None:
    decode_as = sorted(
        {
            rule
            for flow in expectations(name)["flows"]
            for rule in flow["tshark"].get("decode_as", ())
        }
    )
    command = [tshark, "-n", "-r", str(built[name])]
    for rule in decode_as:
        command += ["-d", rule]
    # 0x00800000: PI_ERROR, Wireshark's expert severity for errors (malformed packets included).
    command += ["-Y", "_ws.malformed or _ws.expert.severity >= 0x00800000"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_expectations_are_well_formed(name: str) -> None:
    document = expectations(name)
    assert document["scenario"] == name
    for flow in document["flows"]:
        where = _flow_name(flow)
        keys = set(flow) - {"opened_by"}
        assert keys == FLOW_KEYS, f"{where}: keys {sorted(keys ^ FLOW_KEYS)}"
        assert flow.get("opened_by", "client") in ("client", "server"), where
        assert flow["proto"] in ("tcp", "udp"), where
        assert flow["service"] in SERVICES, where
        assert flow["verdict"] in ("expected", "unexpected", "unknown"), where
        assert isinstance(flow["plaintext"], bool), where
        assert flow["client_role"] in ROLES | {None}, where
        assert flow["server_role"] in ROLES | {None}, where
        findings = flow["findings"]
        assert set(findings) <= RULES and findings == sorted(set(findings)), where
        expected = flow["verdict"] == "expected"
        assert (flow["matrix_section"] is not None) == expected, where
        assert (flow["matrix_row"] is not None) == expected, where
        if flow["verdict"] == "unknown":
            assert None in (flow["client_role"], flow["server_role"]), where
        judged = {"unexpected-flow", "wrong-direction"} & set(findings)
        assert not judged or flow["verdict"] == "unexpected", where
        if flow["verdict"] == "unexpected":
            assert judged or "non-standard-port" in findings, f"{where}: no finding says why"
        checks = flow["tshark"]
        assert set(checks) <= {"protocols", "decode_as", "match"} and checks["protocols"], where
        for match in checks.get("match", ()):
            assert all(isinstance(value, str) for value in match.values()), (
                f"{where}: quote match values (tshark prints text)"
            )


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_matrix_rows_are_rows_of_the_ports_page(name: str) -> None:
    # The page's table rows and the sentences the matrix quotes, each under its section (the
    # facts of the page the project carries, tests/data/ports_page.tsv).
    on_page = {(fact["section"], fact["row"]) for fact in ports_page_facts()}
    sections = {section for section, _ in on_page}
    for flow in expectations(name)["flows"]:
        section, row = flow["matrix_section"], flow["matrix_row"]
        if section is None or section in OFF_PAGE_SECTIONS:
            continue
        assert section in sections, f"{_flow_name(flow)}: no section {section!r} on the page"
        assert (section, row) in on_page, f"{_flow_name(flow)}: {row!r} not in {section!r}"


def test_make_sample_rebuilds_the_committed_sample_byte_for_byte(tmp_path: Path) -> None:
    script = REPO / "samples" / "make_sample.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    for name in ("configmgr_site.pcap", "site.yaml"):
        rebuilt = (tmp_path / name).read_bytes()
        assert rebuilt == (REPO / "samples" / name).read_bytes(), f"{name} differs"


def test_sample_site_file_uses_the_issue_keys_and_roles() -> None:
    site = yaml.safe_load((REPO / "samples" / "site.yaml").read_text(encoding="utf-8"))
    assert (REPO / "samples" / "site.yaml").read_text(encoding="utf-8") == SAMPLE_SITE_YAML
    assert list(site) == ["site", "security", "roles", "ports", "options"]
    assert site["security"] == "https-or-ehttp"
    assert set(site["roles"]) <= ROLES
    assert site["ports"] == {
        "http": 80,
        "https": 443,
        "client-notification": 10123,
        "sql": 1433,
        "rpc-dynamic": "49152-65535",
        "wsus-http": 8530,
        "wsus-https": 8531,
    }
    assert site["options"] == {"site-server-initiates": ["10.10.0.13"]}


def test_every_planted_problem_of_the_readme_is_in_the_sample() -> None:
    """samples/README.md's table of planted problems and the sample's findings agree."""
    readme = (REPO / "samples" / "README.md").read_text(encoding="utf-8")
    planted = set(re.findall(r"^\| `([a-z0-9-]+)` \|", readme, flags=re.MULTILINE))
    found = {rule for flow in expectations("sample")["flows"] for rule in flow["findings"]}
    assert planted == RULES
    assert found == RULES
