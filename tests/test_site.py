"""The site model: site.yaml parsing (each error one line naming file, line and key) and roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowaudit.errors import InputError
from flowaudit.site import INTERNET, load_site, parse_site

EXAMPLE = """\
site: PS1
security: https-or-ehttp        # http | https-or-ehttp | https-only
roles:
  site-server: [10.10.0.10]
  sql-server: [10.10.0.11, 10.20.0.11]
  management-point: [10.10.0.12]
  client: [10.10.1.0/24]
ports: {http: 80, https: 443, client-notification: 10123, sql: 1433, rpc-dynamic: 49152-65535}
options: {site-server-initiates: [10.10.0.13]}
"""


def test_the_issue_example_parses() -> None:
    site = parse_site(EXAMPLE)
    assert site.name == "PS1"
    assert site.security == "https-or-ehttp"
    assert site.roles_of("10.20.0.11") == ("sql-server",)
    assert site.roles_of("10.10.1.77") == ("client",)
    assert site.roles_of("10.10.2.1") == ()  # private, outside every role: unknown
    assert site.roles_of("13.107.4.50") == (INTERNET,)  # public: the internet
    assert site.ports["rpc-dynamic"] == ((49152, 65535),)
    assert site.ports["http"] == (80,)
    assert site.site_server_must_initiate("10.10.0.13")
    assert not site.site_server_must_initiate("10.10.0.12")


def test_a_host_may_hold_several_roles_in_matrix_order() -> None:
    site = parse_site(
        "roles:\n  sql-server: [10.0.0.1]\n  site-server: [10.0.0.0/30]\n  client: ['fd00::/64']\n"
    )
    assert site.roles_of("10.0.0.1") == ("site-server", "sql-server")
    assert site.roles_of("fd00::5") == ("client",)
    assert site.roles_of("10.0.0.2") == ("site-server",)


def test_security_defaults_to_https_or_ehttp() -> None:
    assert parse_site("roles: {client: [10.0.0.0/8]}\n").security == "https-or-ehttp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites: PS1\n", "site.yaml:1: sites: unknown key"),
        ("security: sometimes\n", "site.yaml:1: security: must be one of http, https-or-ehttp"),
        ("roles:\n  site-servers: [10.0.0.1]\n", "site.yaml:2: roles.site-servers: unknown role"),
        (
            "roles:\n  client:\n    - 10.0.0.0/24\n    - 10.0.300.0/24\n",
            "site.yaml:4: roles.client.1: '10.0.300.0/24' is not an IP address or CIDR",
        ),
        ("roles:\n  client: 10.0.0.0/33\n", "site.yaml:2: roles.client: '10.0.0.0/33' is not"),
        ("ports:\n  htp: 80\n", "site.yaml:2: ports.htp: unknown port key"),
        ("ports:\n  http: 70000\n", "site.yaml:2: ports.http: 70000 is not a port"),
        ("ports:\n  rpc-dynamic: 6000-5000\n", "site.yaml:2: ports.rpc-dynamic: '6000-5000'"),
        ("options:\n  site-server-initiate: []\n", "site.yaml:2: options.site-server-initiate"),
        (
            "ports: {wsus-http: 8530, wsus-https: 443}\n",
            "wsus-https must be 8531 when wsus-http is 8530 (ports page, note 3)",
        ),
        ("roles: [client]\n", "site.yaml:1: roles: expected a mapping"),
        ("- just\n- a list\n", "site.yaml:1: a site file is a mapping"),
        ("roles: {client: [10.0.0.1}\n", "site.yaml:1: not valid YAML"),
        (
            "roles:\n  client: [10.0.0.1]\n  client: [10.0.0.2]\n",
            "site.yaml:3: client: given twice",
        ),
        (
            "roles:\n  site-server: [10.10.0.10/24]\n",
            "site.yaml:2: roles.site-server.0: '10.10.0.10/24' has host bits set",
        ),
        ("site: !!int abc\n", "site.yaml:1: site: invalid literal"),
        ("site: !!python/name:os.system\n", "site.yaml:1:"),
        (
            "roles:\n  <<: {client: [10.0.0.0/8]}\n",
            "site.yaml:2: merge keys (<<) are not supported",
        ),
        ("site: [PS1, PS2]\n", "site.yaml:1: site: the site code is a single value"),
    ],
)
def test_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_site(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_load_site_reads_and_hashes(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(EXAMPLE)
    site = load_site(path)
    assert site.path == str(path)
    assert site.sha256 is not None and len(site.sha256) == 64


def test_missing_site_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the site file"):
        load_site(tmp_path / "nope.yaml")


def test_hosts_lists_only_hosts_with_roles() -> None:
    site = parse_site(EXAMPLE)
    hosts = site.hosts(["10.10.0.10", "10.10.2.1", "13.107.4.50", "10.10.0.10"])
    assert [h["ip"] for h in hosts] == ["10.10.0.10", "13.107.4.50"]
    assert hosts[0]["roles"] == ["site-server"] and hosts[0]["source"] == "site"
    assert hosts[1]["roles"] == [INTERNET] and hosts[1]["source"] == "site"
    assert hosts[1]["evidence"] == ["a public address outside every role"]


# --- roles inferred from traffic ------------------------------------------------------------


def _inferred(tmp_path: Path, packets: list[Any]) -> Any:
    from flowaudit.audit import audit
    from flowaudit.config import FlowConfig
    from flowaudit.flows import build_flow_table
    from tests.scapy_flows import write_capture

    path = write_capture(tmp_path / "t.pcap", packets)
    return audit(build_flow_table([path], FlowConfig()))


def _refused(client: str, server: str, client_port: int, port: int, start: float) -> list[Any]:
    from scapy.layers.inet import IP, TCP  # type: ignore[import-untyped]
    from scapy.layers.l2 import Ether  # type: ignore[import-untyped]

    syn = Ether() / IP(src=client, dst=server) / TCP(sport=client_port, dport=port, flags="S")
    rst = Ether() / IP(src=server, dst=client) / TCP(sport=port, dport=client_port, flags="RA")
    syn.time, rst.time = start, start + 0.001
    return [syn, rst]


def test_a_port_scan_gives_no_roles(tmp_path: Path) -> None:
    packets = []
    for k, port in enumerate((10123, 4022, 8530, 1433, 3268)):
        packets += _refused("10.10.1.30", "10.10.5.5", 50000 + k, port, 1_700_000_000 + k)
    result = _inferred(tmp_path, packets)
    assert result.hosts == []
    assert {flow["verdict"] for flow in result.flows} == {"unknown"}


def test_smb_to_a_distribution_point_does_not_make_a_site_server(tmp_path: Path) -> None:
    from tests.protobytes import http, smb, tds
    from tests.scapy_flows import tcp_session

    dp, sql, workstation = "10.10.0.13", "10.10.0.11", "10.10.1.30"
    packets = [
        *tcp_session(
            "10.10.1.21",
            dp,
            50001,
            80,
            [("c", http.http_request("GET", "/SMS_DP_SMSPKG$/PS100004/setup.exe"))],
        ),
        *tcp_session(workstation, dp, 50002, 445, smb.smb2_conversation(), start=1_700_000_001.0),
        *tcp_session(
            workstation, sql, 50003, 1433, [("c", tds.tds_prelogin())], start=1_700_000_002.0
        ),
    ]
    result = _inferred(tmp_path, packets)
    roles = {host["ip"]: host["roles"] for host in result.hosts}
    assert roles[dp] == ["distribution-point"]
    assert "site-server" not in roles.get(workstation, [])
    to_sql = next(flow for flow in result.flows if flow["server_port"] == 1433)
    assert to_sql["matrix_rule"] is None


def test_a_plain_dhcp_answer_to_a_relayed_pxe_discover_is_no_pxe_point(tmp_path: Path) -> None:
    from tests.protobytes import dhcp
    from tests.scapy_flows import udp_exchange

    relay, dc, dp, mac = "10.10.1.1", "10.10.0.5", "10.10.0.13", "00:15:5d:01:02:03"
    discover = dhcp.pxe_discover(mac, 0x1234)
    plain_offer = dhcp.dhcp_message(dhcp.DHCPOFFER, 0x1234, mac)
    pxe_offer = dhcp.pxe_offer(mac, 0x1234, server=dp, offered="10.10.1.77")
    packets = [
        *udp_exchange(relay, dc, 67, 67, [("c", discover), ("s", plain_offer)]),
        *udp_exchange(relay, dp, 67, 67, [("c", discover), ("s", pxe_offer)], start=1_700_000_001),
    ]
    roles = {host["ip"]: host["roles"] for host in _inferred(tmp_path, packets).hosts}
    assert "distribution-point" not in roles.get(dc, [])
    assert roles[dp] == ["distribution-point"]


def test_terminal_text_never_carries_controls_or_bidi_overrides() -> None:
    from flowaudit.report.terminal import clean

    hostile = "GET /\x1b[2J\u202eexe.txt\u200b\x85"
    assert clean(hostile) == "GET /\\x1b[2J\\u202eexe.txt\\u200b\\x85"
    assert clean("mp01.contoso.local caf\u00e9 \u00a0") == "mp01.contoso.local caf\u00e9 \u00a0"


@pytest.mark.parametrize(
    ("ports", "shown"),
    [
        ('"\u00b2-5"', "'\u00b2-5' is not a port"),  # a digit to str.isdigit, not to int()
        ('"1-' + "9" * 5000 + '"', "'1-99999999"),  # more digits than int() reads
    ],
)
def test_ports_int_cannot_read_are_one_line(ports: str, shown: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_site(f"ports:\n  http: {ports}\n")
    message = str(caught.value)
    assert message.startswith(f"site.yaml:2: ports.http: {shown}")
    assert len(message) < 200


def test_load_site_reads_a_pipe_up_to_the_limit(tmp_path: Path) -> None:
    import os
    import threading

    pipe = tmp_path / "site.fifo"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text(EXAMPLE))
    writer.start()
    site = load_site(pipe)  # as from `--site <(...)`
    writer.join()
    assert site.roles_of("10.10.1.77") == ("client",)
