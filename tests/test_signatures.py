"""Classification: payload beats port, EPM/DCOM-announced RPC ports, TFTP answers, the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import audit
from flowaudit.config import FlowConfig
from flowaudit.errors import InputError
from flowaudit.flows import build_flow_table
from flowaudit.signatures import (
    _load_endpoints,
    _load_findings,
    _load_services,
    load_signatures,
    tables_sha256,
)
from flowaudit.site import parse_site
from flowaudit.yamlfile import read_yaml
from tests.protobytes import dcerpc, http, smb, tftp, tls
from tests.scapy_flows import tcp_session, udp_exchange, write_capture

SITE = parse_site(
    """\
site: PS1
security: https-or-ehttp
roles:
  site-server: [10.10.0.10]
  management-point: [10.10.0.12]
  distribution-point: [10.10.0.13]
  client: [10.10.1.0/24]
"""
)
CLIENT, SITE_SERVER, MP, DP = "10.10.1.21", "10.10.0.10", "10.10.0.12", "10.10.0.13"


def _audit(tmp_path: Path, packets: list[Any]) -> dict[tuple[str, int], dict[str, Any]]:
    path = write_capture(tmp_path / "flows.pcap", packets)
    result = audit(build_flow_table([path], FlowConfig()), SITE)
    findings: dict[int, list[str]] = {}
    for finding in result.findings:
        for flow_id in finding.flow_ids:
            findings.setdefault(flow_id, []).append(finding.rule)
    return {
        (flow["server"], flow["server_port"]): dict(flow, findings=findings.get(flow["id"], []))
        for flow in result.flows
    }


def test_payload_beats_port(tmp_path: Path) -> None:
    packets = [
        *tcp_session(
            SITE_SERVER, DP, 50001, 8445, smb.smb2_conversation(server_signing_required=True)
        ),
        *tcp_session(
            CLIENT, MP, 50002, 443, [("c", http.http_request("CCM_POST", "/ccm_system/request"))]
        ),
        *tcp_session(CLIENT, MP, 50003, 10123, [("c", tls.tls_client_hello("mp.ps1.local"))]),
        *tcp_session(CLIENT, MP, 50004, 80, [("c", tls.tls_client_hello("mp.ps1.local"))]),
    ]
    flows = _audit(tmp_path, packets)
    smb_flow = flows[(DP, 8445)]
    assert (smb_flow["service"], smb_flow["evidence"]) == ("smb", "payload")
    assert smb_flow["verdict"] == "unexpected"
    assert "non-standard-port" in smb_flow["findings"]
    http_flow = flows[(MP, 443)]
    assert (http_flow["service"], http_flow["plaintext"]) == ("http", True)
    assert http_flow["verdict"] == "unexpected"
    assert {"non-standard-port", "plaintext-http"} <= set(http_flow["findings"])
    notification = flows[(MP, 10123)]
    assert notification["service"] == "client-notification"
    assert notification["verdict"] == "expected"
    assert notification["matrix_rule"] == "client-to-management-point-client-notification"
    tls_on_80 = flows[(MP, 80)]
    assert (tls_on_80["service"], tls_on_80["plaintext"]) == ("https", False)


def test_epm_and_dcom_announce_dynamic_ports(tmp_path: Path) -> None:
    svcctl = ("367abb81-9844-35f1-ad32-98f038001003", 2, 0)
    packets = [
        *tcp_session(SITE_SERVER, DP, 50010, 135, dcerpc.epm_exchange(svcctl, DP, 49701)),
        # the port the endpoint mapper granted, with no payload captured
        *tcp_session(SITE_SERVER, DP, 50011, 49701, []),
        *tcp_session(
            SITE_SERVER, DP, 50012, 135, dcerpc.dcom_resolve_exchange(["DPSERVER[49702]"])
        ),
        *tcp_session(SITE_SERVER, DP, 50013, 49702, [("c", dcerpc.bind(1, [svcctl]))]),
        # a bind on a port nobody announced
        *tcp_session(SITE_SERVER, DP, 50014, 49800, [("c", dcerpc.bind(1, [svcctl]))]),
    ]
    flows = _audit(tmp_path, packets)
    assert flows[(DP, 135)]["service"] == "rpc-epm"
    assert (flows[(DP, 49701)]["service"], flows[(DP, 49701)]["evidence"]) == ("rpc-dynamic", "epm")
    assert (flows[(DP, 49702)]["service"], flows[(DP, 49702)]["evidence"]) == ("rpc-dynamic", "epm")
    unannounced = flows[(DP, 49800)]
    assert (unannounced["service"], unannounced["evidence"]) == ("rpc-dynamic", "payload")
    assert "rpc-unannounced-port" in unannounced["findings"]
    for port in (49701, 49702, 49800):
        assert flows[(DP, port)]["verdict"] == "expected"
    for port in (49701, 49702):
        assert "rpc-unannounced-port" not in flows[(DP, port)]["findings"]


def test_tftp_answer_is_tied_to_its_request(tmp_path: Path) -> None:
    packets = [
        *udp_exchange(CLIENT, DP, 2070, 69, [("c", tftp.rrq("boot\\x64\\wdsmgfw.efi"))]),
        *udp_exchange(
            DP,
            CLIENT,
            61000,
            2070,
            [("c", tftp.data(1, b"\0" * 512)), ("s", tftp.ack(1))],
            start=1_700_000_000.5,
        ),
    ]
    flows = _audit(tmp_path, packets)
    request = flows[(DP, 69)]
    assert (request["service"], request["verdict"]) == ("tftp", "expected")
    # The DP's first DATA opened the answer flow; the transfer is still the client's.
    answer = flows[(DP, 61000)]
    assert (answer["client"], answer["client_port"]) == (CLIENT, 2070)
    assert (answer["service"], answer["evidence"]) == ("tftp", "tftp-request")
    assert answer["facts"]["answer_to"] == request["id"]
    assert answer["facts"]["opened_by"] == "server"
    assert answer["verdict"] == "expected"
    assert (answer["client_role"], answer["server_role"]) == ("client", "distribution-point")


def test_signature_tables_load_and_are_hashed() -> None:
    signatures = load_signatures()
    assert "client-notification" in signatures.services
    assert signatures.endpoint_for("/SMS_MP/.sms_aut?MPLIST").name == "sms_mp_mplist"  # type: ignore[union-attr]
    assert signatures.endpoint_for("/ccm_system_WindowsAuth/request").carries == "registration"  # type: ignore[union-attr]
    assert signatures.endpoint_for("/SMS_DP_SMSPKG$/PS100004/x.msi").carries == "content"  # type: ignore[union-attr]
    assert signatures.endpoint_for("/index.html") is None
    assert signatures.agent_kind("ConfigMgr Messaging HTTP Sender") == "sdk"
    hashes = tables_sha256()
    assert set(hashes) == {"services.yaml", "http_endpoints.yaml", "findings.yaml", "matrix.yaml"}
    assert all(len(h) == 64 for h in hashes.values())


@pytest.mark.parametrize(
    ("loader", "text", "message"),
    [
        (
            _load_services,
            "version: 1\nservices: {}\npayload: []\nextra: 1\n",
            "t.yaml:4: extra: unknown key",
        ),
        (
            _load_services,
            "version: 1\nservices:\n"
            "  smb: {title: SMB, plaintext: no, ports: {tcp: [70000]}}\npayload: []\n",
            "t.yaml:3: services.smb.ports.tcp: [70000] is not a port list",
        ),
        (
            _load_services,
            "version: 1\nservices: {}\npayload:\n  - {protocol: smb, service: smbx}\n",
            "t.yaml:4: payload.0.service: unknown service 'smbx'",
        ),
        (
            _load_endpoints,
            "version: 1\nendpoints:\n"
            "  - {name: a, prefix: /a, role: boss, carries: policy, ehttp: true, title: t}\n"
            "user_agents: []\n",
            "t.yaml:3: endpoints.0.role: unknown role 'boss'",
        ),
        (
            _load_findings,
            "version: 1\nrules:\n  smb1: {severity: awful, title: t, reference: r,\n"
            "    url: 'https://x', help: h}\n"
            "plaintext_severity: {}\n",
            "t.yaml:3: rules.smb1.severity: must be one of",
        ),
    ],
)
def test_table_errors_name_file_entry_and_field(loader: Any, text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        loader(read_yaml(text, "t.yaml"))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/ccm_system/request", "ccm_system"),
        ("/CCM_System/request?x=://evil", "ccm_system"),  # "://" in a query is not a scheme
        ("http://mp01.contoso.com/ccm_system/request", "ccm_system"),
        ("HTTP://MP01:80/SMS_MP/.sms_aut?MPLIST", "sms_mp_mplist"),
        ("/index.html?next=http://x/ccm_system/request", None),
    ],
)
def test_endpoint_for_reads_the_absolute_form_only_at_the_start(
    path: str, endpoint: str | None
) -> None:
    found = load_signatures().endpoint_for(path)
    assert (found.name if found else None) == endpoint
