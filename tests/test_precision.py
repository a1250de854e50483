"""What a person expects on a real network (issue 10's precision): each case here was seen on
real traffic, and failed before its fix.

The judge is the real one, with the real matrix in force; the site files are small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import EXPECTED, UNEXPECTED, UNKNOWN_VERDICT, Judge, audit
from flowaudit.flows import build_flow_table
from flowaudit.matrix import (
    client_facing_roles,
    judged_pair,
    load_rules,
    rules_in_force,
    service_names,
)
from flowaudit.signatures import load_signatures
from flowaudit.site import Site, parse_site
from tests.conftest import corpus_files
from tests.protobytes import smb, wol
from tests.scapy_flows import tcp_session, udp_exchange, write_capture

SITE_TEXT = """\
roles:
  site-server: [10.0.0.10]
  distribution-point: [10.0.0.13, 10.0.0.14]
  management-point: [10.0.0.12]
  domain-controller: [10.0.0.5, 10.0.0.6]
  client: [10.0.1.0/24]
"""
SITE = parse_site(SITE_TEXT)
FACING = parse_site(SITE_TEXT + "options: {internet-facing: [10.0.0.14]}\n")


def judge_of(site: Site) -> Judge:
    return Judge(rules_in_force(load_rules(), site.ports), site)


@pytest.mark.parametrize(
    ("flow", "verdict", "finding"),
    [
        # two hosts on the internet: nothing of the site's
        (("tcp", "rdp", 3389, "91.238.181.21", "89.31.79.12", False), UNKNOWN_VERDICT, None),
        (("tcp", "unknown", 25, "201.186.157.67", "128.3.26.249", False), UNKNOWN_VERDICT, None),
        # a client browsing the web (TCP, QUIC, IPv6)
        (("tcp", "https", 443, "10.0.1.20", "142.250.74.36", False), UNKNOWN_VERDICT, None),
        (("udp", "quic", 443, "10.0.1.20", "2a00:1450:4001::200e", False), UNKNOWN_VERDICT, None),
        # two domain controllers replicating
        (("tcp", "rpc-dynamic", 49667, "10.0.0.5", "10.0.0.6", False), EXPECTED, None),
        (("tcp", "unknown", 5722, "10.0.0.5", "10.0.0.6", False), UNKNOWN_VERDICT, None),
        # a site system reaching the internet over SMB is still the site's business
        (("tcp", "smb", 445, "10.0.0.10", "52.1.2.3", False), UNEXPECTED, "unexpected-flow"),
        # a client straight to the site server's SQL port is still unexpected
        (("tcp", "sql", 1433, "10.0.1.20", "10.0.0.10", False), UNEXPECTED, "unexpected-flow"),
    ],
)
def test_only_flows_with_a_configmgr_role_are_judged(
    flow: tuple[Any, ...], verdict: str, finding: str | None
) -> None:
    judgement = judge_of(SITE).judge(*flow)
    assert (judgement.verdict, judgement.finding) == (verdict, finding)


def test_judged_pair() -> None:
    assert not judged_pair(("internet",), ("internet",))
    assert not judged_pair(("domain-controller",), ("domain-controller",))
    assert not judged_pair(("client",), ("internet",))
    assert judged_pair(("site-server",), ("internet",))
    assert judged_pair(("client",), ("domain-controller",))
    # without a site file a SQL Server is known by its protocol alone
    peers = {"internet", "sql-server"}
    assert not judged_pair(("internet",), ("sql-server",), peers)


@pytest.mark.parametrize(
    ("proto", "service", "port"),
    [
        ("udp", "kerberos", 88),
        ("tcp", "kpasswd", 464),
        ("udp", "kpasswd", 464),
        ("udp", "ntp", 123),
        ("tcp", "rpc-epm", 135),
        ("tcp", "rpc-dynamic", 49668),
        ("udp", "ldap", 389),
        ("tcp", "ldap", 389),
        ("tcp", "smb", 445),
        ("tcp", "ldaps", 636),
        ("tcp", "gc-ldap", 3268),
        ("tcp", "gc-ldaps", 3269),
        ("tcp", "adws", 9389),
        ("tcp", "netbios-ssn", 139),
        ("udp", "netbios-ns", 137),
        ("udp", "dns", 53),
    ],
)
@pytest.mark.parametrize("member", ["10.0.1.20", "10.0.0.10", "10.0.0.13"])
def test_active_directory_traffic_to_a_domain_controller_is_expected(
    proto: str, service: str, port: int, member: str
) -> None:
    judgement = judge_of(SITE).judge(proto, service, port, member, "10.0.0.5", False)
    assert judgement.verdict == EXPECTED, (service, port, member)
    assert judgement.rule is not None


@pytest.mark.parametrize(
    ("service", "port", "group"),
    [
        ("llmnr", 5355, "224.0.0.252"),
        ("llmnr", 5355, "ff02::1:3"),
        ("mdns", 5353, "224.0.0.251"),
        ("ssdp", 1900, "239.255.255.250"),
        ("ws-discovery", 3702, "239.255.255.250"),
        ("netbios-ns", 137, "10.0.1.255"),
    ],
)
def test_link_local_discovery_is_expected(service: str, port: int, group: str) -> None:
    judgement = judge_of(SITE).judge("udp", service, port, "10.0.1.20", group, False)
    assert judgement.verdict == EXPECTED


def test_a_distribution_point_starting_smb_to_the_site_server() -> None:
    """Internet-facing site systems are declared: only they may start SMB to the site server
    (the internet-based clients' installation rows); any other DP doing so is wrong-direction
    (distribution points do not send status to the site server, note 5's text)."""
    flow = ("tcp", "smb", 445, "10.0.0.14", "10.0.0.10", False)
    plain = judge_of(SITE).judge(*flow)
    assert (plain.verdict, plain.finding) == (UNEXPECTED, "wrong-direction")
    facing = judge_of(FACING).judge(*flow)
    assert facing.verdict == EXPECTED
    assert facing.rule is not None and facing.rule.id.startswith("internet-install-")
    # the other DP is not internet-facing
    other = judge_of(FACING).judge("tcp", "smb", 445, "10.0.0.13", "10.0.0.10", False)
    assert other.finding == "wrong-direction"


def test_internet_facing_is_an_option_of_the_site_file() -> None:
    assert FACING.is_internet_facing("10.0.0.14")
    assert not FACING.is_internet_facing("10.0.0.13")
    assert not SITE.is_internet_facing("10.0.0.14")


def test_wake_on_lan_to_a_group_on_another_port_is_a_non_standard_port() -> None:
    judgement = judge_of(SITE).judge("udp", "wake-on-lan", 7, "10.0.0.10", "10.0.1.255", False)
    assert (judgement.verdict, judgement.finding) == (UNEXPECTED, "non-standard-port")


def test_one_vocabulary() -> None:
    names = set(service_names())
    signatures = load_signatures()
    assert names | {"unknown"} == set(signatures.services)
    # every service the matrix names can come out of the classifier: by a payload rule or a
    # documented port
    for rule in load_rules():
        service = signatures.services[rule.service]
        by_payload = any(p.service == rule.service for p in signatures.payload_rules)
        assert by_payload or service.ports, rule.id
    assert "ike" in names
    # client-facing roles come from the matrix: where clients reach them over HTTP(S)
    facing = client_facing_roles()
    assert {"management-point", "distribution-point", "software-update-point"} <= facing
    assert "site-server" not in facing and "sql-server" not in facing


def test_a_matrix_rule_may_name_no_unknown_service() -> None:
    from flowaudit.errors import InputError

    text = (Path(__file__).parent.parent / "signatures" / "matrix.yaml").read_text()
    broken = text.replace("service: kerberos\n", "service: kerberos-v5\n", 1)
    with pytest.raises(InputError, match="unknown service 'kerberos-v5'"):
        load_rules(broken)


# --- roles from the traffic, text from the capture -------------------------------------------


def _inferred(tmp_path: Path, packets: list[Any]) -> Any:
    return audit(build_flow_table([write_capture(tmp_path / "c.pcap", packets)]))


def test_a_wake_on_lan_sender_is_a_site_server(tmp_path: Path) -> None:
    packets = udp_exchange(
        "10.0.0.10", "10.0.1.255", 50000, 9, [("c", wol.magic_packet("02:00:00:00:01:21"))]
    )
    result = _inferred(tmp_path, packets)
    roles = {host["ip"]: host["roles"] for host in result.hosts}
    assert roles["10.0.0.10"] == ["site-server"]
    assert result.flows[0]["verdict"] == EXPECTED


def test_a_content_share_makes_a_distribution_point(tmp_path: Path) -> None:
    packets = tcp_session(
        "10.0.0.10",
        "10.0.0.13",
        50000,
        445,
        smb.smb2_conversation(server_signing_required=True, shares=["SCCMContentLib$"]),
    )
    result = _inferred(tmp_path, packets)
    roles = {host["ip"]: host["roles"] for host in result.hosts}
    assert "distribution-point" in roles["10.0.0.13"]


def test_smb1_without_a_dialect_names_none(tmp_path: Path) -> None:
    from flowaudit.audit import _Findings, _payload_findings, _Where

    findings = _Findings(load_signatures())
    flow = {
        "id": 1,
        "proto": "tcp",
        "client": "10.0.1.20",
        "client_port": 50000,
        "server": "10.0.0.13",
        "server_port": 445,
        "service": "smb",
        "evidence": "payload",
        "protocol": "smb",
        "server_roles": (),
        "client_role": "client",
        "server_role": None,
    }
    facts = {"smb": {"version": 1, "dialect": None, "signing_required": None}}
    _payload_findings(findings, load_signatures(), SITE, flow, facts, {}, _Where(flow))
    (finding,) = findings.finished()
    assert finding.detail.endswith("smb: SMB1"), finding.detail
    assert "NT LM" not in finding.detail


def test_start_not_captured_counts_only_the_flows_without_their_start(tmp_path: Path) -> None:
    from flowaudit.audit import _Findings

    findings = _Findings(load_signatures())
    common: dict[str, Any] = {"client_role": "client", "server_role": "sql-server"}
    findings.add("unexpected-flow", 1, "x", start_missing=False, **common)
    findings.add("unexpected-flow", 2, "x", start_missing=True, **common)
    findings.add("unexpected-flow", 3, "x", start_missing=False, **common)
    findings.add("wrong-direction", 4, "y", start_missing=True, **common)
    grouped, single = sorted(findings.finished(), key=lambda f: f.rule)
    assert grouped.detail == "x (3 flows; the start of 1 was not captured)"
    assert single.detail == "y; the start of the flow was not captured"


# --- the real corpus -------------------------------------------------------------------------


@pytest.mark.parametrize("capture", corpus_files(), ids=lambda p: p.name)
def test_no_matrix_finding_between_hosts_without_a_configmgr_role(capture: Path) -> None:
    """Without a site file, nothing in the corpus (public projects' Windows and AD captures)
    holds a ConfigMgr role, so no flow breaks the matrix."""
    result = audit(build_flow_table([capture]))
    peers = {"internet", "domain-controller", "sql-server"}
    for finding in result.findings:
        if finding.rule not in ("unexpected-flow", "wrong-direction"):
            continue
        flows = [f for f in result.flows if f["id"] in finding.flow_ids]
        for flow in flows:
            roles = set(flow["client_roles"]) | set(flow["server_roles"])
            assert roles - peers, f"{capture.name}: {finding.detail}"


def test_a_row_that_presupposes_multicast_yields_to_the_general_shares_row() -> None:
    """A client's SMB to a DP is "Client to Server Shares"; the multicast DP's SMB row (page
    order puts it first) names it only when no general row allows the flow."""
    flow = ("tcp", "smb", 445, "10.0.1.20", "10.0.0.13", False)
    judgement = judge_of(SITE).judge(*flow)
    assert judgement.verdict == EXPECTED
    assert judgement.rule is not None
    assert judgement.rule.id == "client-to-distribution-point-shares-smb"
    rules = rules_in_force(load_rules(), SITE.ports)
    [multicast] = [r for r in rules if r.id == "client-to-multicast-distribution-point-smb"]
    assert multicast.when == "multicast"
    alone = Judge([r for r in rules if r.id != judgement.rule.id], SITE).judge(*flow)
    assert alone.verdict == EXPECTED and alone.rule == multicast
