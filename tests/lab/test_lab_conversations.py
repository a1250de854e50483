"""What the lab's scenario scripts did, read back from their whole conversations.

Each expectation is what a person who reads ``lab/scenarios/*.sh`` expects the wire to show:
who authenticated how, which shares, pipes and RPC operations, every HTTP request, every DHCP
message. They hold on the committed recordings and on a fresh recording (``FLOWAUDIT_LAB``,
which CI always makes).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from flowaudit.stream.engine import conversations
from tests.lab.test_lab import hosts

LAB = Path(__file__).resolve().parents[2] / "lab"
DC, CLIENT, SITESERVER = hosts()["dc"], hosts()["client"], hosts()["siteserver"]
MP, DP = hosts()["mp"], hosts()["dp"]
IMPACKET = "10.77.1.25"  # ad.sh: the workstation that runs impacket (ws-admin)
GSSAPI_CLIENT = "10.77.1.23"  # ad.sh: ldapsearch -Y GSSAPI after kinit
ANONYMOUS_CLIENT = "10.77.1.22"  # ad.sh: anonymous ldapsearch
REALM = "LAB.FLOWAUDIT.TEST"


def _recordings() -> list[str]:
    return ["committed", "fresh"]


@cache
def _flows(capture: str, where: str) -> list[dict[str, Any]]:
    if where == "committed":
        path = LAB / "captures" / capture
    else:
        folder = os.environ.get("FLOWAUDIT_LAB")
        if not folder:
            if os.environ.get("CI"):
                pytest.fail("FLOWAUDIT_LAB is not set: .ci/run records the lab and sets it")
            pytest.skip("FLOWAUDIT_LAB not set: no fresh recording of the lab")
        path = Path(folder) / capture
    return [flow for flow in conversations([str(path)]) if "conversation" in flow]


def _ops(flow: dict[str, Any], **want: Any) -> list[dict[str, Any]]:
    return [
        entry
        for entry in flow["operations"]
        if all(entry.get(key) == value for key, value in want.items())
    ]


def _ids(flow: dict[str, Any], **want: Any) -> list[dict[str, Any]]:
    return [
        entry
        for entry in flow["identities"]
        if all(entry.get(key) == value for key, value in want.items())
    ]


def _between(flows: list[dict[str, Any]], client: str, server: str, port: int) -> list[Any]:
    return [
        flow
        for flow in flows
        if flow["client"] == client and flow["server"] == server and flow["server_port"] == port
    ]


@pytest.mark.parametrize("where", _recordings())
def test_ad_smbclient_with_kerberos_lists_shares_after_its_ticket(where: str) -> None:
    """smbclient -k -L: a Kerberos AP-REQ for cifs/dc in SESSION_SETUP (a ticket past the
    first-bytes window), then IPC$ and srvsvc's NetrShareEnum over the pipe, all answered."""
    smb = _between(_flows("ad.pcap", where), CLIENT, DC, 445)
    kerberos = [f for f in smb if _ids(f, protocol="kerberos", method="AP-REQ", outcome="success")]
    assert kerberos, "no SMB session with a Kerberos ticket"
    flow = kerberos[0]
    assert _ids(flow, service="cifs/dc.lab.flowaudit.test", realm=REALM)
    assert _ops(flow, operation="TREE_CONNECT", status="STATUS_SUCCESS")
    assert _ops(flow, operation="CREATE", target="srvsvc", status="STATUS_SUCCESS")
    assert _ops(flow, protocol="dcerpc", operation="NetrShareEnum", target="srvsvc", status="ok")


@pytest.mark.parametrize("where", _recordings())
def test_ad_rpcclient_over_samr_names_alice_and_its_calls(where: str) -> None:
    """rpcclient -U alice (NTLM): samr over a named pipe, SamrConnect5 and the domain walk."""
    smb = _between(_flows("ad.pcap", where), CLIENT, DC, 445)
    samr = [f for f in smb if _ops(f, protocol="dcerpc", operation="SamrConnect5")]
    assert samr
    assert _ids(samr[0], protocol="ntlm", method="NTLMv2", account="alice", outcome="success")
    assert _ops(samr[0], operation="SamrEnumerateDomainsInSamServer", status="ok")


@pytest.mark.parametrize("where", _recordings())
def test_ad_impacket_replication_calls_are_named(where: str) -> None:
    """secretsdump and samba-tool drs: DRSUAPI on the dynamic port the endpoint mapper gave,
    bound with NTLM as Administrator, IDL_DRSBind first."""
    flows = _flows("ad.pcap", where)
    drs = [f for f in flows if f["client"] == IMPACKET and _ops(f, target="drsuapi")]
    assert drs
    for flow in drs:
        assert _ids(flow, account="Administrator", domain="LAB", outcome="success")
        assert _ops(flow, operation="IDL_DRSBind", status="ok")


@pytest.mark.parametrize("where", _recordings())
def test_ad_ldap_binds_say_who_and_how(where: str) -> None:
    """ldapsearch: alice's simple binds on 389 and 3268 (never her password in the report),
    an anonymous bind, a GSSAPI bind with a ticket for ldap/dc, StartTLS."""
    flows = _flows("ad.pcap", where)
    for port in (389, 3268):
        simple = [
            f
            for f in _between(flows, CLIENT, DC, port)
            if _ids(f, protocol="ldap-simple", method="simple", outcome="success")
        ]
        assert simple, port
        assert simple[0]["identities"][0]["account"] == "alice@lab.flowaudit.test"
        assert "Lab-Passw0rd" not in repr(simple[0])
    assert any(_ids(f, method="anonymous") for f in _between(flows, ANONYMOUS_CLIENT, DC, 389))
    assert any(
        _ids(f, protocol="kerberos", service="ldap/dc.lab.flowaudit.test", outcome="success")
        for f in _between(flows, GSSAPI_CLIENT, DC, 389)
    )
    assert any(
        _ops(f, operation="extendedReq", target="1.3.6.1.4.1.1466.20037")
        for f in flows
        if f["server_port"] == 389
    )


@pytest.mark.parametrize("where", _recordings())
def test_ad_kinit_asks_twice_and_gets_its_ticket(where: str) -> None:
    """kinit alice: an AS-REQ without pre-authentication answered PREAUTH_REQUIRED, then one
    with it answered with a ticket; kvno then asks the TGS for cifs/dc."""
    flows = [
        f for f in _flows("ad.pcap", where) if f["client"] == CLIENT and f["server_port"] == 88
    ]
    outcomes = [i["outcome"] for f in flows for i in _ids(f, method="AS-REQ", account="alice")]
    assert "KDC_ERR_PREAUTH_REQUIRED" in outcomes and "success" in outcomes
    assert any(_ids(f, method="TGS-REQ", service="cifs/dc.lab.flowaudit.test") for f in flows)


@pytest.mark.parametrize("where", _recordings())
def test_dp_content_copy_counts_its_file(where: str) -> None:
    """The site server puts LAB00003.INI into SCCMContentLib$\\PkgLib; a client gets the
    4096-byte content file's .INI (18 bytes) from FileLib; all as cmadmin over NTLM."""
    flows = _flows("dp.pcap", where)
    put = _between(flows, SITESERVER, DP, 445)[0]
    assert _ids(put, account="cmadmin", domain="LAB", method="NTLMv2", outcome="success")
    files = {f["name"]: f for f in put["conversation"]["smb"]["files"]}
    assert files["PkgLib\\LAB00003.INI"]["bytes_written"] == len("[Package]\nPackageID=LAB00003\n")
    got = [f for f in _between(flows, CLIENT, DP, 445) if f["conversation"]["smb"]["files"]]
    read = {f["name"]: f["bytes_read"] for f in got[0]["conversation"]["smb"]["files"]}
    assert list(read.values()) == [len("[File]\nSize=4096\n")]


@pytest.mark.parametrize("where", _recordings())
def test_mp_every_request_of_a_connection_is_read(where: str) -> None:
    """curl asks the MP for MPLIST and MPCERT on one keep-alive connection: both requests."""
    flows = _flows("mp.pcap", where)
    paths = [
        entry["target"]
        for flow in _between(flows, CLIENT, MP, 80)
        for entry in _ops(flow, protocol="http")
    ]
    assert "/SMS_MP/.sms_aut?MPLIST" in paths and "/SMS_MP/.sms_aut?MPCERT" in paths
    assert "/ccm_system/request" in paths


@pytest.mark.parametrize("where", _recordings())
def test_pxe_every_dhcp_message_and_the_whole_boot_file(where: str) -> None:
    """The PXE client's DISCOVER and REQUEST, the DP's OFFER and ACK, and the boot file's
    transfer to its end."""
    flows = _flows("pxe.pcap", where)
    types = [entry["operation"] for flow in flows for entry in _ops(flow, protocol="dhcp")]
    assert {"DISCOVER", "OFFER", "REQUEST", "ACK"} <= set(types)
    transfers = [
        f["conversation"]["tftp"] for f in flows if f["conversation"]["protocol"] == "tftp"
    ]
    assert any(t["complete"] and t["blocks"] > 0 for t in transfers)
