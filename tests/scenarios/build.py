"""Scenario captures of ConfigMgr sites, and the bundled sample: hosts, roles and conversations.

Each scenario is a site file (``site.yaml`` text) and a function that lays its conversations on
a ``Wire``; ``build(name, folder)`` writes ``<name>.pcap`` and ``site.yaml`` there. What every
flow must come out as (service, verdict, roles, the ports page row, findings, and what tshark
must recognise in it) is in ``tests/scenarios/<name>.yaml``. ``samples/make_sample.py`` builds
the scenario ``sample`` into ``samples/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.scenarios import tls_bytes as tls
from tests.scenarios.payloads import (
    DOMAIN,
    ENCRYPT_OFF,
    ENCRYPT_ON,
    ENCRYPT_REQ,
    IWBEM_LEVEL1_LOGIN_UUID,
    SVCCTL_UUID,
    TASK_SCHEDULER_UUID,
    binl_request,
    ccm_message,
    dcom_resolve_oxid,
    dns_query,
    epm_map,
    filler,
    http_request,
    http_response,
    kerberos_as_exchange,
    ldap_search,
    netbios_name_query,
    pxe_dhcp_relayed,
    rdp_connection,
    rpc_bind_on,
    smb1_negotiate,
    smb2_conversation,
    tds_prelogin,
    tds_prelogin_response,
    tds_tls,
    tftp_read_request,
    tftp_transfer,
    wol_magic,
)
from tests.scenarios.wire import Exchange, Wire, mac_of

HERE = Path(__file__).resolve().parent
# The user agents: the ConfigMgr client's own, and the Messaging SDK's default (what offensive
# tools that speak to a management point send).
CCM_AGENT = "ccmhttp"
SDK_AGENT = "ConfigMgr Messaging HTTP Sender"
BITS_AGENT = "Microsoft BITS/7.8"
WUA_AGENT = "Windows-Update-Agent/10.0.10011.16384 Client-Protocol/2.50"
ENTERPRISE_CA = "CONTOSO-ROOT-CA"
EHTTP_ISSUER = "SMS Issuing"  # Enhanced HTTP: certificates issued by the site's "SMS Issuing"


# --- conversations ----------------------------------------------------------------------------


def tls_exchange(
    server_name: str | None,
    version: int = tls.TLS12,
    issuer: str | None = EHTTP_ISSUER,
    *,
    seed: str,
    data: int = 180,
) -> Exchange:
    """ClientHello, the server's flight (with its certificate up to TLS 1.2), the client's
    key exchange and Finished, then encrypted application data both ways."""
    certificates: tuple[bytes, ...] = ()
    if issuer is not None and server_name is not None and version != tls.TLS13:
        organisation = "Contoso" if issuer == ENTERPRISE_CA else None
        certificates = (
            tls.x509_certificate(
                server_name, issuer, issuer_org=organisation, dns_names=(server_name,)
            ),
        )
    return [
        ("c", tls.client_hello(server_name, version, seed=seed)),
        ("s", tls.server_flight(version, certificates, seed=seed)),
        ("c", tls.client_finish(version, seed=seed)),
        ("s", tls.application_data(48, version, seed=f"{seed}/s1")),
        ("c", tls.application_data(data, version, seed=f"{seed}/c1")),
        ("s", tls.application_data(data * 2, version, seed=f"{seed}/s2")),
    ]


def http_exchange(request: bytes, response: bytes) -> Exchange:
    return [("c", request), ("s", response)]


def ccm_post(path: str, host: str, agent: str, kind: str) -> Exchange:
    """CCM_POST of a client message to a management point, and the MP's 200 answer."""
    body = ccm_message(kind)
    request = http_request(
        "CCM_POST",
        path,
        host,
        agent,
        body,
        headers=(("Content-Type", 'multipart/mixed; boundary="aAbBcCdDv1234567890VxXyYzZ"'),),
    )
    return http_exchange(request, http_response("200 OK", b"", None))


def mp_location_request(host: str, query: str = "MPLIST") -> Exchange:
    """GET /SMS_MP/.sms_aut?<query>: the client locating its management points."""
    reply = (
        b'<MPList><MP Name="MP01.CONTOSO.LOCAL" FQDN="mp01.contoso.local">'
        b'<Version>9068</Version><Capabilities SchemaVersion="1.0"/></MP></MPList>'
    )
    return http_exchange(
        http_request("GET", f"/SMS_MP/.sms_aut?{query}", host, CCM_AGENT),
        http_response("200 OK", reply, "text/xml"),
    )


def dp_content_download(host: str, package: str, file_name: str) -> Exchange:
    """BITS fetching a package file from a distribution point's content share over HTTP."""
    return http_exchange(
        http_request("GET", f"/SMS_DP_SMSPKG$/{package}/sccm?/{file_name}", host, BITS_AGENT),
        http_response("200 OK", b"MZ\x90\x00" + filler(file_name, 400), "application/octet-stream"),
    )


def wsus_client_soap(host: str) -> Exchange:
    """The Windows Update Agent's SOAP call to WSUS ([MS-WUSP] 3.1.4: ClientWebService)."""
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
        b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<GetCookie xmlns="http://www.microsoft.com/SoftwareDistribution/Server/'
        b'ClientWebService"><oldCookie/><protocolVersion>2.50</protocolVersion></GetCookie>'
        b"</soap:Body></soap:Envelope>"
    )
    request = http_request(
        "POST",
        "/ClientWebService/client.asmx",
        host,
        WUA_AGENT,
        body,
        headers=(
            ("Content-Type", "text/xml; charset=utf-8"),
            (
                "SOAPAction",
                '"http://www.microsoft.com/SoftwareDistribution/Server/ClientWebService/GetCookie"',
            ),
        ),
    )
    return http_exchange(request, http_response("200 OK", b"<soap:Envelope/>", "text/xml"))


def microsoft_update_download(host: str) -> Exchange:
    path = "/c/msdownload/update/software/secu/2023/11/windows10.0-kb5032189-x64.cab"
    return http_exchange(
        http_request("GET", path, host, WUA_AGENT),
        http_response("200 OK", filler("kb5032189", 600), "application/vnd.ms-cab-compressed"),
    )


def winrm_encrypted(host: str) -> Exchange:
    """WS-Management over HTTP with Kerberos message encryption ([MS-WSMV] 2.2.9.1.1)."""
    boundary = "Encrypted Boundary"
    content_type = (
        'multipart/encrypted;protocol="application/HTTP-Kerberos-session-encrypted";'
        f'boundary="{boundary}"'
    )
    body = (
        (
            f"--{boundary}\r\n\tContent-Type: application/HTTP-Kerberos-session-encrypted\r\n"
            "\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=1632\r\n"
            f"--{boundary}\r\n\tContent-Type: application/octet-stream\r\n"
        ).encode()
        + filler("winrm", 300)
        + f"--{boundary}--\r\n".encode()
    )
    request = http_request(
        "POST",
        "/wsman",
        host,
        "Microsoft WinRM Client",
        body,
        headers=(("Content-Type", content_type), ("Connection", "Keep-Alive")),
    )
    return http_exchange(request, http_response("200 OK", body, content_type))


def tds_session(client_encryption: int, server_encryption: int, server_name: str) -> Exchange:
    """PRELOGIN both ways, then the start of the TLS handshake carried in TDS packets."""
    exchange: list[tuple[str, bytes]] = [
        ("c", tds_prelogin(client_encryption)),
        ("s", tds_prelogin_response(server_encryption)),
    ]
    cert = tls.x509_certificate(server_name, ENTERPRISE_CA, issuer_org="Contoso")
    # [MS-TDS] 2.2.6.5: OFF on both sides still encrypts the LOGIN7 packet, so TLS follows.
    exchange.append(("c", tds_tls(tls.client_hello(None, seed=server_name))))
    exchange.append(("s", tds_tls(tls.server_flight(tls.TLS12, (cert,), seed=server_name))))
    return exchange


def opaque(label: str, *sizes: int) -> Exchange:
    """Binary messages of a protocol with no public dissector (Service Broker, remote control),
    alternately from the client and the server."""
    return [
        ("c" if k % 2 == 0 else "s", filler(f"{label}/{k}", size)) for k, size in enumerate(sizes)
    ]


def wds_multicast(wire: Wire, sender: str, group: str, port: int, blocks: int) -> None:
    """A WDS multicast session's data blocks (opaque here) sent to the group."""
    for block in range(blocks):
        wire.udp(sender, port, group, port, [("c", filler(f"wds/{group}/{block}", 1024))])


def pxe_boot(wire: Wire, relay: str, pxe_client: str, dp: str, tftp_port: int) -> None:
    """Relayed DHCP with PXEClient, the BINL request on 4011, TFTP of the boot file."""
    mac = mac_of(pxe_client)
    boot_file = "smsboot\\x64\\wdsmgfw.efi"
    wire.udp(relay, 67, dp, 67, pxe_dhcp_relayed(mac, 0x5EED0001, relay, dp))
    wire.udp(pxe_client, 68, dp, 4011, binl_request(mac, 0x5EED0002, pxe_client, dp, boot_file))
    wire.udp(pxe_client, 2071, dp, 69, [("c", tftp_read_request(boot_file))])
    # RFC 1350 4: the server answers from a port of its own, not from 69.
    wire.udp(dp, tftp_port, pxe_client, 2071, tftp_transfer(3000))


# --- the sample site ---------------------------------------------------------------------------

SAMPLE_SITE_YAML = """\
# Site PS1 of samples/configmgr_site.pcap (built by samples/make_sample.py; see README.md).
site: PS1
security: https-or-ehttp        # http | https-or-ehttp | https-only
roles:
  site-server: [10.10.0.10]
  sms-provider: [10.10.0.10]
  exchange-server-connector: [10.10.0.10]
  out-of-band-service-point: [10.10.0.10]
  sql-server: [10.10.0.11, 10.20.0.11]     # 10.20.0.11: the SQL Server of child site PS2
  management-point: [10.10.0.12]
  distribution-point: [10.10.0.13]         # PXE and multicast enabled
  software-update-point: [10.10.0.14]      # WSUS on 8530/8531
  domain-controller: [10.10.0.5]           # also the global catalog
  on-premises-exchange-server: [10.10.0.20]
  exchange-online: [52.96.0.0/14]
  console: [10.10.2.50]
  amt-management-controller: [10.10.1.40]
  client: [10.10.1.0/24]
ports:
  http: 80
  https: 443
  client-notification: 10123
  sql: 1433
  rpc-dynamic: 49152-65535
  wsus-http: 8530
  wsus-https: 8531
options: {site-server-initiates: [10.10.0.13]}
"""

SS, SQL, MP, DP, SUP, DC = (
    "10.10.0.10",
    "10.10.0.11",
    "10.10.0.12",
    "10.10.0.13",
    "10.10.0.14",
    "10.10.0.5",
)
SQL_PS2, EXCHANGE, EXCHANGE_ONLINE = "10.20.0.11", "10.10.0.20", "52.97.146.2"
CONSOLE, MICROSOFT_UPDATE, ROUTER = "10.10.2.50", "13.107.4.50", "10.10.1.1"
PC21, PC22, PC23, AMT40, PXE50, ROGUE66 = (
    "10.10.1.21",
    "10.10.1.22",
    "10.10.1.23",
    "10.10.1.40",
    "10.10.1.50",
    "10.10.1.66",
)


def _fqdn(host: str) -> str:
    return f"{host}.{DOMAIN}"


def sample(wire: Wire) -> None:
    """A day in site PS1, compressed: every service of the ports page once, and planted problems."""
    # Name resolution and Active Directory.
    wire.udp(PC21, 59001, DC, 53, dns_query(_fqdn("mp01"), MP, 0x4D01))
    wire.tcp(PC21, 49710, DC, 88, kerberos_as_exchange("PC21$", DOMAIN.upper(), nonce=0x2F1A5C01))
    gc_search = ldap_search(
        "DC=contoso,DC=local",
        "objectClass",
        "mSSMSManagementPoint",
        "dNSHostName",
        "CN=SMS-MP-PS1-MP01.CONTOSO.LOCAL,CN=System Management,CN=System,DC=contoso,DC=local",
        _fqdn("mp01"),
    )
    wire.tcp(PC21, 49711, DC, 3268, gc_search)
    wire.tcp(
        MP,
        49720,
        DC,
        389,
        ldap_search(
            "DC=contoso,DC=local",
            "sAMAccountName",
            "PC21$",
            "dNSHostName",
            "CN=PC21,CN=Computers,DC=contoso,DC=local",
            "pc21.contoso.local",
        ),
    )
    wire.tcp(MP, 49721, DC, 3269, tls_exchange(_fqdn("dc01"), issuer=ENTERPRISE_CA, seed="gcs"))
    wire.tcp(SS, 49730, DC, 636, tls_exchange(_fqdn("dc01"), issuer=ENTERPRISE_CA, seed="ldaps"))
    wire.udp(PC22, 137, "10.10.1.255", 137, [("c", netbios_name_query("PC21", 0x8101))])
    wire.pause(0.5)

    # Clients and the management point.
    wire.tcp(PC21, 49740, MP, 80, mp_location_request(_fqdn("mp01")))
    wire.tcp(PC21, 49741, MP, 443, tls_exchange(_fqdn("mp01"), seed="mp443"))
    wire.tcp(PC21, 49742, MP, 10123, tls_exchange(_fqdn("mp01"), seed="bgb", data=64))
    wire.tcp(PC22, 49750, MP, 443, tls_exchange(_fqdn("mp01"), tls.TLS13, seed="mp13"))
    # Planted: a policy request in clear text although the site is HTTPS or Enhanced HTTP.
    wire.tcp(
        PC23, 49760, MP, 80, ccm_post("/ccm_system/request", _fqdn("mp01"), CCM_AGENT, "Policy")
    )
    # Planted: a registration request with the Messaging SDK's default user agent.
    wire.tcp(
        ROGUE66,
        49770,
        MP,
        80,
        ccm_post("/ccm_system_windowsauth/request", _fqdn("mp01"), SDK_AGENT, "ClientRegistration"),
    )
    # Planted: plaintext HTTP on 443.
    wire.tcp(
        ROGUE66, 49771, MP, 443, ccm_post("/ccm_system/request", _fqdn("mp01"), CCM_AGENT, "Policy")
    )
    wire.pause(0.5)

    # Clients and the distribution point.
    wire.tcp(PC21, 49780, DP, 443, tls_exchange(_fqdn("dp01"), seed="dp443", data=900))
    wire.tcp(PC22, 49781, DP, 80, dp_content_download(_fqdn("dp01"), "PS100004", "setup.exe"))
    # Planted: TLS 1.0 to IIS on the distribution point.
    wire.tcp(PC23, 49782, DP, 443, tls_exchange(_fqdn("dp01"), tls.TLS10, seed="tls10"))
    # Planted: SMB1 from a client (and the DP does not require signing).
    wire.tcp(PC23, 49783, DP, 445, smb1_negotiate(_fqdn("dp01")))
    wds_multicast(wire, DP, "239.255.0.1", 63001, 4)
    pxe_boot(wire, ROUTER, PXE50, DP, 50123)
    wire.pause(0.5)

    # Wake-up.
    wire.udp(SS, 60001, "10.10.1.255", 9, [("c", wol_magic(mac_of(PC22)))])
    wire.udp(PC21, 60002, PC22, 25536, [("c", wol_magic(mac_of(PC22)))])

    # The console.
    wire.tcp(CONSOLE, 49800, SS, 135, dcom_resolve_oxid(SS, "SS01", 49702))
    wire.tcp(CONSOLE, 49801, SS, 49702, rpc_bind_on(49702, IWBEM_LEVEL1_LOGIN_UUID, 0))
    wire.tcp(CONSOLE, 49802, PC21, 2701, opaque("remote-control", 96, 64, 512, 1200))
    wire.tcp(CONSOLE, 49803, PC22, 3389, rdp_connection("helpdesk"))
    wire.pause(0.5)

    # Site server, site systems, databases.
    wire.tcp(SS, 49810, SQL, 1433, tds_session(ENCRYPT_ON, ENCRYPT_ON, _fqdn("sql01")))
    # Planted: the management point's SQL login without encryption.
    wire.tcp(MP, 49811, SQL, 1433, tds_session(ENCRYPT_OFF, ENCRYPT_OFF, _fqdn("sql01")))
    wire.tcp(SQL, 49812, SQL_PS2, 4022, opaque("service-broker", 72, 72, 640, 128))
    wire.tcp(SS, 49813, DP, 135, epm_map(DP, SVCCTL_UUID, 2, 49668))
    wire.tcp(SS, 49814, DP, 49668, rpc_bind_on(49668, SVCCTL_UUID, 2))
    # Planted: the distribution point's SMB server does not require signing.
    wire.tcp(
        SS,
        49815,
        DP,
        445,
        smb2_conversation(
            _fqdn("dp01"),
            "SCCMContentLib$",
            user="PS1-SS01$",
            workstation="SS01",
            signing_required=False,
            seed="ss-dp",
        ),
    )
    # Planted: SMB on 8445 (the pair uses SMB, on 445).
    wire.tcp(
        SS,
        49816,
        SUP,
        8445,
        smb2_conversation(
            _fqdn("sup01"),
            "UpdateServicesPackages",
            user="PS1-SS01$",
            workstation="SS01",
            seed="ss-sup8445",
        ),
    )
    # Planted: an RPC bind on a high port no endpoint mapper announced.
    wire.tcp(SS, 49818, DP, 49800, rpc_bind_on(49800, TASK_SCHEDULER_UUID, 1))
    # Planted: the DP starts SMB to the site server (site-server-initiates lists the DP).
    wire.tcp(
        DP,
        49820,
        SS,
        445,
        smb2_conversation(_fqdn("ss01"), "SMS_PS1", user="DP01$", workstation="DP01", seed="dp-ss"),
    )
    wire.tcp(
        MP,
        49821,
        SS,
        445,
        smb2_conversation(_fqdn("ss01"), "SMS_PS1", user="MP01$", workstation="MP01", seed="mp-ss"),
    )
    wire.pause(0.5)

    # Software updates.
    wire.tcp(PC21, 49830, SUP, 8530, wsus_client_soap(f"{_fqdn('sup01')}:8530"))
    wire.tcp(
        PC22, 49831, SUP, 8531, tls_exchange(_fqdn("sup01"), issuer=ENTERPRISE_CA, seed="wsus")
    )
    wire.tcp(
        SUP, 49840, MICROSOFT_UPDATE, 80, microsoft_update_download("download.windowsupdate.com")
    )

    # Exchange connector and out of band management.
    wire.tcp(SS, 49850, EXCHANGE, 5985, winrm_encrypted(f"{_fqdn('ex01')}:5985"))
    wire.tcp(
        SS,
        49851,
        EXCHANGE_ONLINE,
        5986,
        tls_exchange("outlook.office365.com", issuer="DigiCert Cloud Services CA-1", seed="exo"),
    )
    wire.tcp(SS, 49852, AMT40, 16993, tls_exchange(_fqdn("pc40"), issuer=ENTERPRISE_CA, seed="amt"))

    # Planted: a client speaking TDS to the site database.
    wire.tcp(ROGUE66, 49860, SQL, 1433, tds_session(ENCRYPT_ON, ENCRYPT_ON, _fqdn("sql01")))


# --- scenario: the issue's held-out capture, mirrored -----------------------------------------

MIXED_SITE_YAML = """\
site: PS1
security: https-or-ehttp        # http | https-or-ehttp | https-only
roles:
  site-server: [10.10.0.10]
  sql-server: [10.10.0.11, 10.20.0.11]
  management-point: [10.10.0.12]
  distribution-point: [10.10.0.13]
  software-update-point: [10.10.0.14]
  domain-controller: [10.10.0.5]
  client: [10.10.1.0/24]
ports:
  http: 80
  https: 443
  client-notification: 10123
  sql: 1433
  rpc-dynamic: 49152-65535
  wsus-http: 8530
  wsus-https: 8531
options: {site-server-initiates: [10.10.0.13]}
"""

PC31, PC32, PC33, PC34 = "10.10.1.31", "10.10.1.32", "10.10.1.33", "10.10.1.34"
STRANGER = "10.10.3.7"  # private, in no role


def mixed_site(wire: Wire) -> None:
    """TLS, SMB2, EPM and its dynamic port, TDS, HTTP with ConfigMgr paths, multicast, WSUS,
    GC LDAP; expected flows, unexpected ones, a wrong direction, SMB on 8445, HTTP on 443."""
    wire.tcp(PC31, 50100, MP, 443, tls_exchange(_fqdn("mp01"), seed="m1"))
    wire.tcp(PC31, 50101, MP, 10123, tls_exchange(_fqdn("mp01"), seed="m2", data=64))
    wire.tcp(
        PC31, 50102, MP, 80, ccm_post("/ccm_system/request", _fqdn("mp01"), CCM_AGENT, "Policy")
    )
    wire.tcp(PC32, 50103, DP, 80, dp_content_download(_fqdn("dp01"), "PS100007", "install.wim"))
    wire.tcp(PC32, 50104, DP, 443, tls_exchange(_fqdn("dp01"), tls.TLS13, seed="m5"))
    wire.tcp(
        SS,
        50105,
        DP,
        445,
        smb2_conversation(
            _fqdn("dp01"), "SCCMContentLib$", user="PS1-SS01$", workstation="SS01", seed="m6"
        ),
    )
    wire.tcp(SS, 50106, DP, 135, epm_map(DP, SVCCTL_UUID, 2, 49670))
    wire.tcp(SS, 50107, DP, 49670, rpc_bind_on(49670, SVCCTL_UUID, 2))
    wire.tcp(SS, 50108, SQL, 1433, tds_session(ENCRYPT_ON, ENCRYPT_REQ, _fqdn("sql01")))
    wire.tcp(SQL_PS2, 50109, SQL, 4022, opaque("ssb-m10", 72, 72, 256))
    wds_multicast(wire, DP, "239.255.1.1", 63010, 3)
    wire.tcp(PC31, 50111, SUP, 8530, wsus_client_soap(f"{_fqdn('sup01')}:8530"))
    wire.tcp(PC32, 50112, SUP, 8531, tls_exchange(_fqdn("sup01"), issuer=ENTERPRISE_CA, seed="m13"))
    gc_search = ldap_search(
        "DC=contoso,DC=local",
        "objectClass",
        "mSSMSSite",
        "mSSMSSiteCode",
        "CN=SMS-Site-PS1,CN=System Management,CN=System,DC=contoso,DC=local",
        "PS1",
    )
    wire.tcp(MP, 50113, DC, 3268, gc_search)
    wire.tcp(PC31, 50114, DC, 3268, gc_search)
    wire.tcp(
        PC31,
        50115,
        PC32,
        445,
        smb2_conversation(_fqdn("pc32"), "C$", user="alice", workstation="PC31", seed="m16"),
    )
    wire.tcp(PC33, 50116, SQL, 1433, tds_session(ENCRYPT_ON, ENCRYPT_ON, _fqdn("sql01")))
    wire.tcp(
        DP,
        50117,
        SS,
        445,
        smb2_conversation(_fqdn("ss01"), "SMS_PS1", user="DP01$", workstation="DP01", seed="m18"),
    )
    wire.tcp(
        SS,
        50118,
        DP,
        8445,
        smb2_conversation(
            _fqdn("dp01"), "SCCMContentLib$", user="PS1-SS01$", workstation="SS01", seed="m19"
        ),
    )
    wire.tcp(PC33, 50119, MP, 443, mp_location_request(_fqdn("mp01")))
    wire.tcp(SS, 50120, DP, 49800, rpc_bind_on(49800, TASK_SCHEDULER_UUID, 1))
    wire.tcp(STRANGER, 50121, MP, 443, tls_exchange(_fqdn("mp01"), seed="m22"))
    wds_multicast(wire, PC34, "239.255.1.1", 63010, 2)
    wire.tcp(
        SUP, 50123, MICROSOFT_UPDATE, 80, microsoft_update_download("download.windowsupdate.com")
    )
    wire.tcp(
        MP,
        50124,
        SS,
        445,
        smb2_conversation(_fqdn("ss01"), "SMS_PS1", user="MP01$", workstation="MP01", seed="m25"),
    )


# --- scenario: a site still on HTTP, with alternate ports -------------------------------------

HTTP_SITE_YAML = """\
site: PS3
security: http
roles:
  site-server: [10.30.0.10]
  management-point: [10.30.0.12]
  distribution-point: [10.30.0.13]
  software-update-point: [10.30.0.14]
  domain-controller: [10.30.0.5]
  console: [10.30.2.50]
  client: [10.30.1.0/24]
ports:                          # note 2: alternate ports for client to site system HTTP(S)
  http: 8080
  https: 8443
  client-notification: 10123
  sql: 1433
  rpc-dynamic: 49152-65535
  wsus-http: 8530
  wsus-https: 8531
options: {site-server-initiates: [10.30.0.14]}
"""

SS3, MP3, DP3, SUP3, DC3, CONSOLE3 = (
    "10.30.0.10",
    "10.30.0.12",
    "10.30.0.13",
    "10.30.0.14",
    "10.30.0.5",
    "10.30.2.50",
)
PC3 = {n: f"10.30.1.{n}" for n in (21, 22, 23, 24, 25, 50, 66)}
INTERNET_SCANNER, HOME_ROUTER_HOST = "45.33.32.156", "192.168.7.7"


def http_site(wire: Wire) -> None:
    """Site PS3 allows HTTP on 8080; PXE, wake-up, SMB between site systems, the console."""
    mp, dp = f"mp03.{DOMAIN}:8080", f"dp03.{DOMAIN}:8080"
    wire.tcp(PC3[21], 51001, MP3, 8080, ccm_post("/ccm_system/request", mp, CCM_AGENT, "Policy"))
    wire.tcp(
        PC3[22],
        51002,
        MP3,
        8080,
        ccm_post("/ccm_system_windowsauth/request", mp, SDK_AGENT, "ClientRegistration"),
    )
    wire.tcp(PC3[21], 51003, DP3, 8080, dp_content_download(dp, "PS300002", "ccmsetup.exe"))
    wire.tcp(PC3[23], 51004, DP3, 80, dp_content_download(f"dp03.{DOMAIN}", "PS300002", "a.msi"))
    wire.tcp(PC3[21], 51005, MP3, 10123, tls_exchange(f"mp03.{DOMAIN}", tls.TLS10, seed="h5"))
    wire.tcp(PC3[24], 51006, SS3, 445, smb1_negotiate(f"ss03.{DOMAIN}", signing_required=True))
    pxe_boot(wire, "10.30.1.1", PC3[50], DP3, 51234)
    wire.udp(SS3, 61001, "10.30.1.255", 9, [("c", wol_magic(mac_of(PC3[22])))])
    wire.udp(PC3[21], 61002, PC3[22], 25536, [("c", wol_magic(mac_of(PC3[22])))])
    wire.udp(PC3[25], 61003, "10.30.1.255", 9, [("c", wol_magic(mac_of(PC3[23])))])
    wire.tcp(
        SUP3,
        51014,
        SS3,
        445,
        smb2_conversation(
            f"ss03.{DOMAIN}", "SMS_PS3", user="SUP03$", workstation="SUP03", seed="h14"
        ),
    )
    wire.tcp(
        MP3,
        51015,
        SS3,
        445,
        smb2_conversation(
            f"ss03.{DOMAIN}", "SMS_PS3", user="MP03$", workstation="MP03", seed="h15"
        ),
    )
    wire.tcp(
        SS3,
        51016,
        SUP3,
        445,
        smb2_conversation(
            f"sup03.{DOMAIN}",
            "UpdateServicesPackages",
            user="PS3-SS03$",
            workstation="SS03",
            seed="h16",
        ),
    )
    wire.tcp(PC3[21], 51017, CONSOLE3, 2701, opaque("rc-h17", 96, 64))
    wire.tcp(CONSOLE3, 51018, PC3[21], 2701, opaque("rc-h18", 96, 64, 800))
    wire.tcp(INTERNET_SCANNER, 51019, MP3, 8080, mp_location_request(mp))
    wire.tcp(HOME_ROUTER_HOST, 51020, DP3, 8080, dp_content_download(dp, "PS300002", "b.msi"))
    wire.tcp(PC3[66], 51021, SS3, 49712, rpc_bind_on(49712, TASK_SCHEDULER_UUID, 1))
    wire.tcp(
        SS3,
        51023,
        DC3,
        389,
        ldap_search(
            "DC=contoso,DC=local",
            "objectClass",
            "computer",
            "dNSHostName",
            "CN=PC21,CN=Computers,DC=contoso,DC=local",
            "pc21.contoso.local",
        ),
    )
    wire.tcp(
        PC3[21], 51024, DC3, 3269, tls_exchange(f"dc03.{DOMAIN}", issuer=ENTERPRISE_CA, seed="h24")
    )


# --- building ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A capture's site file and the function that lays its conversations on the wire."""

    name: str
    site_yaml: str
    lay: Callable[[Wire], None]
    start: float


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("sample", SAMPLE_SITE_YAML, sample, 1_700_000_000.0),
        Scenario("mixed_site", MIXED_SITE_YAML, mixed_site, 1_700_100_000.0),
        Scenario("http_site", HTTP_SITE_YAML, http_site, 1_700_200_000.0),
    )
}


@dataclass(frozen=True)
class Built:
    capture: Path
    site: Path
    packets: int


def build(name: str, folder: Path, capture_name: str | None = None) -> Built:
    """Write the scenario's capture and ``site.yaml`` into ``folder``."""
    scenario = SCENARIOS[name]
    wire = Wire(start=scenario.start)
    scenario.lay(wire)
    folder.mkdir(parents=True, exist_ok=True)
    capture = wire.write(folder / (capture_name or f"{name}.pcap"))
    site = folder / "site.yaml"
    site.write_text(scenario.site_yaml, encoding="utf-8")
    return Built(capture, site, len(wire.packets))


def expectations(name: str) -> dict[str, Any]:
    """``tests/scenarios/<name>.yaml``: what each flow of the scenario must come out as."""
    with open(HERE / f"{name}.yaml", encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.safe_load(handle)
    return loaded
