"""Application payloads of a ConfigMgr site: the bytes each conversation carries, built from specs.

Where scapy has a working layer it builds the bytes (SMB2, SMB1, DCE/RPC with the endpoint
mapper and DCOM, Kerberos, LDAP, DHCP, TFTP, NetBIOS, DNS); the rest is packed with struct from
the protocol's spec (TDS PRELOGIN, RDP X.224, Wake-on-LAN, HTTP). TLS lives in ``tls_bytes``.
Every function is deterministic: no clocks, no random numbers.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from typing import Any

from scapy.layers.dcerpc import (
    DceRpc5,
    DceRpc5AbstractSyntax,
    DceRpc5Bind,
    DceRpc5BindAck,
    DceRpc5Context,
    DceRpc5PortAny,
    DceRpc5Request,
    DceRpc5Response,
    DceRpc5Result,
    DceRpc5TransferSyntax,
    NDRContextHandle,
    NDRPointer,
)
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.gssapi import GSSAPI_BLOB
from scapy.layers.kerberos import (
    KRB_AS_REQ,
    KRB_ERROR,
    KRB_KDC_REQ_BODY,
    PA_PAC_REQUEST,
    PADATA,
    Kerberos,
    KerberosTCPHeader,
    PrincipalName,
)
from scapy.layers.ldap import (
    LDAP,
    LDAP_AttributeValue,
    LDAP_Filter,
    LDAP_FilterEqual,
    LDAP_PartialAttribute,
    LDAP_SearchRequest,
    LDAP_SearchRequestAttribute,
    LDAP_SearchResponseEntry,
    LDAP_SearchResponseResultDone,
)
from scapy.layers.msrpce.ept import (
    UUID as NdrUuid,
)
from scapy.layers.msrpce.ept import (
    ept_map_Request,
    ept_map_Response,
    prot_and_addr_t,
    protocol_tower_t,
    twr_p_t,
)
from scapy.layers.msrpce.raw.ms_dcom import (
    COMVERSION,
    DUALSTRINGARRAY,
    GUID,
    ResolveOxid2_Request,
    ResolveOxid2_Response,
)
from scapy.layers.netbios import (
    NBNSHeader,
    NBNSQueryRequest,
    NBTSession,
)
from scapy.layers.ntlm import (
    AV_PAIR,
    NTLM_AUTHENTICATE_V2,
    NTLM_CHALLENGE,
    NTLM_NEGOTIATE,
    LMv2_RESPONSE,
    NTLMv2_RESPONSE,
)
from scapy.layers.smb import (
    SMB_Dialect,
    SMB_Header,
    SMBNegotiate_Request,
    SMBNegotiate_Response_Security,
)
from scapy.layers.smb2 import (
    SMB2_Header,
    SMB2_Negotiate_Context,
    SMB2_Negotiate_Protocol_Request,
    SMB2_Negotiate_Protocol_Response,
    SMB2_Preauth_Integrity_Capabilities,
    SMB2_Session_Setup_Request,
    SMB2_Session_Setup_Response,
    SMB2_Tree_Connect_Request,
    SMB2_Tree_Connect_Response,
)
from scapy.layers.spnego import (
    SPNEGO_MechType,
    SPNEGO_negToken,
    SPNEGO_negTokenInit,
    SPNEGO_negTokenResp,
    SPNEGO_Token,
)
from scapy.layers.tftp import (
    TFTP,
    TFTP_ACK,
    TFTP_DATA,
    TFTP_OACK,
    TFTP_RRQ,
    TFTP_Option,
    TFTP_Options,
)

from tests.scenarios.wire import Exchange

DOMAIN = "contoso.local"
NETBIOS_DOMAIN = "CONTOSO"


def filler(label: str, size: int) -> bytes:
    """Deterministic opaque bytes (encrypted blobs, nonces, file data) derived from a label."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


# --- HTTP (RFC 9112) ------------------------------------------------------------------------


def http_request(
    method: str,
    path: str,
    host: str,
    agent: str | None,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """An HTTP/1.1 request; ConfigMgr's own verbs (CCM_POST) are ordinary method tokens."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if agent is not None:
        lines.append(f"User-Agent: {agent}")
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_response(
    status: str = "200 OK",
    body: bytes = b"",
    content_type: str | None = "text/html",
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Server: Microsoft-IIS/10.0"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ccm_message(kind: str) -> bytes:
    """The start of a ConfigMgr client message body (multipart: XML header, then the payload)."""
    header = (
        '<Msg SchemaVersion="1.1"><ID>{5B7C4E0A-1D3F-4C2B-9A61-0F8E2D3C4B5A}</ID>'
        f"<SourceHost>CLIENT</SourceHost><TargetAddress>mp:[http]MP_{kind}</TargetAddress>"
        "<ReplyTo>direct:CLIENT:SccmMessaging</ReplyTo><Priority>3</Priority>"
        '<Timeout>600</Timeout><Body Type="ByteRange" Offset="0" Length="0"/></Msg>'
    ).encode("utf-16-le")
    boundary = b"aAbBcCdDv1234567890VxXyYzZ"
    return (
        b"--"
        + boundary
        + b"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n"
        + header
        + b"\r\n--"
        + boundary
        + b"--"
    )


# --- SMB2 ([MS-SMB2]) over the NetBIOS session service (RFC 1002 4.3.6, [MS-SMB2] 2.1) -----

NTLMSSP_OID = "1.3.6.1.4.1.311.2.2.10"
# [MS-NLMP] 2.2.2.5 NEGOTIATE flags a Windows client sets.
_NTLM_FLAGS = (
    "NEGOTIATE_UNICODE+REQUEST_TARGET+NEGOTIATE_SIGN+NEGOTIATE_NTLM+NEGOTIATE_ALWAYS_SIGN"
    "+NEGOTIATE_EXTENDED_SESSIONSECURITY+NEGOTIATE_VERSION+NEGOTIATE_128+NEGOTIATE_KEY_EXCH"
    "+NEGOTIATE_56"
)
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
_DIALECTS = [0x0202, 0x0210, 0x0300, 0x0302, 0x0311]


def _smb2(
    command: int,
    body: object,
    *,
    response: bool = False,
    message_id: int = 0,
    session: int = 0,
    tree: int = 0,
    status: int = 0,
) -> bytes:
    """One SMB2 message behind its 4-byte session-service header ([MS-SMB2] 2.2.1.2)."""
    header = SMB2_Header(
        Command=command,
        Flags="SMB2_FLAGS_SERVER_TO_REDIR" if response else 0,
        MID=message_id,
        SessionId=session,
        TID=tree,
        Status=status,
        CreditCharge=1 if command else 0,
        CreditRequest=1 if not response else 33,
    )
    return bytes(NBTSession() / header / body)


def _spnego_init(token: object | None = None) -> object:
    init = SPNEGO_negTokenInit(mechTypes=[SPNEGO_MechType(oid=NTLMSSP_OID)])
    if token is not None:
        init.mechToken = SPNEGO_Token(value=token)
    return GSSAPI_BLOB(innerToken=SPNEGO_negToken(token=init))


def _spnego_resp(state: int, token: object | None = None) -> object:
    """negTokenResp ([RFC 4178] 4.2.2): state 0 accept-completed, 1 accept-incomplete."""
    resp = SPNEGO_negTokenResp(negState=state)
    if token is not None:
        resp.supportedMech = SPNEGO_MechType(oid=NTLMSSP_OID)
        resp.responseToken = SPNEGO_Token(value=token)
    return SPNEGO_negToken(token=resp)


def smb2_conversation(
    server_name: str,
    share: str,
    *,
    user: str,
    workstation: str,
    signing_required: bool = True,
    encrypt_share: bool = False,
    seed: str = "smb",
) -> Exchange:
    """NEGOTIATE, two-leg NTLM SESSION_SETUP and TREE_CONNECT to ``\\\\server\\share``.

    The server's NEGOTIATE SecurityMode carries SMB2_NEGOTIATE_SIGNING_REQUIRED (0x02) only
    when ``signing_required`` ([MS-SMB2] 2.2.4); a share the server encrypts answers
    TREE_CONNECT with SMB2_SHAREFLAG_ENCRYPT_DATA (0x8000, [MS-SMB2] 2.2.10).
    """
    session = 0x0000_1000_0000_0041
    preauth = SMB2_Preauth_Integrity_Capabilities(
        HashAlgorithms=["SHA-512"], Salt=filler(f"{seed}/csalt", 32)
    )
    negotiate_request = SMB2_Negotiate_Protocol_Request(
        Dialects=_DIALECTS,
        SecurityMode="SIGNING_ENABLED",
        Capabilities="DFS+LEASING+LARGE_MTU+MULTI_CHANNEL+DIRECTORY_LEASING+ENCRYPTION",
        ClientGUID=uuid.UUID(bytes=filler(f"{seed}/cguid", 16)),
        NegotiateContexts=[SMB2_Negotiate_Context() / preauth],
    )
    server_preauth = SMB2_Preauth_Integrity_Capabilities(
        HashAlgorithms=["SHA-512"], Salt=filler(f"{seed}/ssalt", 32)
    )
    negotiate_response = SMB2_Negotiate_Protocol_Response(
        SecurityMode="SIGNING_ENABLED+SIGNING_REQUIRED" if signing_required else "SIGNING_ENABLED",
        DialectRevision=0x0311,
        GUID=uuid.UUID(bytes=filler(f"{seed}/sguid/{server_name}", 16)),
        Capabilities="DFS+LEASING+LARGE_MTU+MULTI_CHANNEL+DIRECTORY_LEASING+ENCRYPTION",
        MaxTransactionSize=8388608,
        MaxReadSize=8388608,
        MaxWriteSize=8388608,
        # [MS-SMB2] 2.2.4 SystemTime is a FILETIME (100 ns since 1601): 2023-11-14 22:13:20
        # UTC, fixed so that the bytes are reproducible (scapy fills in "now" otherwise);
        # ServerStartTime SHOULD be 0.
        ServerTime=(1_700_000_000 + 11_644_473_600) * 10_000_000,
        ServerStartTime=0,
        SecurityBlob=_spnego_init(),
        NegotiateContexts=[SMB2_Negotiate_Context() / server_preauth],
    )
    host = server_name.split(".")[0].upper()
    challenge = NTLM_CHALLENGE(
        TargetName=NETBIOS_DOMAIN,
        NegotiateFlags=_NTLM_FLAGS + "+TARGET_TYPE_DOMAIN+NEGOTIATE_TARGET_INFO",
        ServerChallenge=filler(f"{seed}/challenge", 8),
        Reserved=b"\x00" * 8,
        ProductMajorVersion=10,
        ProductMinorVersion=0,
        ProductBuild=20348,
        NTLMRevisionCurrent=0x0F,
        TargetInfo=[
            AV_PAIR(AvId="MsvAvNbDomainName", Value=NETBIOS_DOMAIN),
            AV_PAIR(AvId="MsvAvNbComputerName", Value=host),
            AV_PAIR(AvId="MsvAvDnsDomainName", Value=DOMAIN),
            AV_PAIR(AvId="MsvAvDnsComputerName", Value=server_name),
            AV_PAIR(AvId="MsvAvEOL"),
        ],
    )
    authenticate = NTLM_AUTHENTICATE_V2(
        NegotiateFlags=_NTLM_FLAGS,
        ProductMajorVersion=10,
        ProductMinorVersion=0,
        ProductBuild=20348,
        NTLMRevisionCurrent=0x0F,
        LmChallengeResponse=LMv2_RESPONSE(Response=b"\x00" * 16, ChallengeFromClient=b"\x00" * 8),
        NtChallengeResponse=NTLMv2_RESPONSE(
            NTProofStr=filler(f"{seed}/proof", 16),
            TimeStamp=0,
            ChallengeFromClient=filler(f"{seed}/cchallenge", 8),
            AvPairs=list(challenge.TargetInfo),
        ),
        DomainName=NETBIOS_DOMAIN,
        UserName=user,
        Workstation=workstation,
        EncryptedRandomSessionKey=filler(f"{seed}/key", 16),
        MIC=filler(f"{seed}/mic", 16),
    )
    tree_flags = "ENCRYPT_DATA" if encrypt_share else 0
    unc = f"\\\\{server_name}\\{share}"
    return [
        ("c", _smb2(0, negotiate_request)),
        ("s", _smb2(0, negotiate_response, response=True)),
        (
            "c",
            _smb2(
                1,
                SMB2_Session_Setup_Request(
                    SecurityMode="SIGNING_ENABLED",
                    SecurityBlob=_spnego_init(NTLM_NEGOTIATE(NegotiateFlags=_NTLM_FLAGS)),
                ),
                message_id=1,
            ),
        ),
        (
            "s",
            _smb2(
                1,
                SMB2_Session_Setup_Response(Security=_spnego_resp(1, challenge)),
                response=True,
                message_id=1,
                session=session,
                status=STATUS_MORE_PROCESSING_REQUIRED,
            ),
        ),
        (
            "c",
            _smb2(
                1,
                SMB2_Session_Setup_Request(
                    SecurityMode="SIGNING_ENABLED",
                    SecurityBlob=_spnego_resp(1, authenticate),
                ),
                message_id=2,
                session=session,
            ),
        ),
        (
            "s",
            _smb2(
                1,
                SMB2_Session_Setup_Response(Security=_spnego_resp(0)),
                response=True,
                message_id=2,
                session=session,
            ),
        ),
        (
            "c",
            _smb2(3, SMB2_Tree_Connect_Request(Path=unc), message_id=3, session=session),
        ),
        (
            "s",
            _smb2(
                3,
                SMB2_Tree_Connect_Response(
                    ShareType="DISK",
                    ShareFlags=tree_flags,
                    Capabilities=0,
                    MaximalAccess=0x001F01FF,
                ),
                response=True,
                message_id=3,
                session=session,
                tree=5,
            ),
        ),
    ]


def smb1_negotiate(server_name: str, *, signing_required: bool = False) -> Exchange:
    """An SMB1 NEGOTIATE offering only NT LM 0.12, and the server accepting it ([MS-CIFS] 2.2.4.52).

    No "SMB 2.002"/"SMB 2.???" dialect is offered, so this is SMB1 in use, not the multi-protocol
    negotiate a Windows client opens with before switching to SMB2 ([MS-SMB2] 3.2.4.2.2.1).
    """
    # [MS-CIFS] 2.2.3.1: long names, NT status codes, Unicode; no extended security.
    flags2 = "LONG_NAMES+EAS+SMB_SECURITY_SIGNATURE+IS_LONG_NAME+NT_STATUS+UNICODE"
    request_header = SMB_Header(
        Command=0x72, Flags="CASE_INSENSITIVE+CANONICALIZED_PATHS", Flags2=flags2, PIDLow=0xFEFF
    )
    request = SMBNegotiate_Request(Dialects=[SMB_Dialect(DialectString="NT LM 0.12")])
    response_header = SMB_Header(
        Command=0x72,
        Flags="REPLY+CASE_INSENSITIVE+CANONICALIZED_PATHS",
        Flags2=flags2,
        PIDLow=0xFEFF,
    )
    domain = NETBIOS_DOMAIN.encode("utf-16-le")
    name = server_name.split(".")[0].upper().encode("utf-16-le")
    response = SMBNegotiate_Response_Security(
        WordCount=17,
        DialectIndex=0,
        # [MS-CIFS] 2.2.4.52.2 SecurityMode: user level, challenge/response, signing enabled
        # and, when ``signing_required``, required (0x08).
        SecurityMode="USER_SECURITY+ENCRYPT_PASSWORDS+SECURITY_SIGNATURES_ENABLED"
        + ("+SECURITY_SIGNATURES_REQUIRED" if signing_required else ""),
        MaxMpxCount=50,
        MaxNumberVC=1,
        MaxBufferSize=16644,
        MaxRawSize=65536,
        SessionKey=0,
        ServerCapabilities="RAW_MODE+UNICODE+LARGE_FILES+NT_SMBS+RPC_REMOTE_APIS+STATUS32"
        "+LEVEL_II_OPLOCKS+LOCK_AND_READ+NT_FIND+DFS+INFOLEVEL_PASSTHRU+LARGE_READX+LARGE_WRITEX",
        ServerTime=0,
        ServerTimeZone=0,
        Challenge=filler(f"smb1/{server_name}", 8),
        # Unicode strings (Flags2 UNICODE), given encoded: scapy would write them as bytes.
        DomainName=domain,
        ServerName=name,
        ByteCount=8 + len(domain) + 2 + len(name) + 2,
    )
    return [
        ("c", bytes(NBTSession() / request_header / request)),
        ("s", bytes(NBTSession() / response_header / response)),
    ]


# --- DCE/RPC connection-oriented ([C706] 12, [MS-RPCE] 2.2.2) -------------------------------

# Interface UUIDs: the endpoint mapper ([C706] Appendix O, [MS-RPCE] 2.2.1.2.5), DCOM's
# IObjectExporter ([MS-DCOM] 1.9), the service control manager, WMI's login interface.
EPM_UUID = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
OBJECT_EXPORTER_UUID = uuid.UUID("99fcfec4-5260-101b-bbcb-00aa0021347a")
SVCCTL_UUID = uuid.UUID("367abb81-9844-35f1-ad32-98f038001003")  # [MS-SCMR] 1.9
IWBEM_LEVEL1_LOGIN_UUID = uuid.UUID("f309ad18-d86a-11d0-a075-00c04fb68820")  # [MS-WMI] 1.9
# [MS-TSCH] 1.9: ITaskSchedulerService, what remote task creation (atexec-style) binds to.
TASK_SCHEDULER_UUID = uuid.UUID("86d35949-83c9-4044-b424-db363231fd0c")
NDR_UUID = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860")  # NDR 2.0 transfer syntax, [C706] 14
# [MS-RPCE] 2.2.2.11 and 3.3.1.5.3: the bind-time feature negotiation "transfer syntax".
BIND_TIME_FEATURES_UUID = uuid.UUID("6cb71c2c-9812-4540-0300-000000000000")


def _rpc_bind(interface: uuid.UUID, version: int, call_id: int) -> bytes:
    contexts = [
        DceRpc5Context(
            cont_id=0,
            abstract_syntax=DceRpc5AbstractSyntax(if_uuid=interface, if_version=version),
            transfer_syntaxes=[DceRpc5TransferSyntax(if_uuid=NDR_UUID, if_version=2)],
        ),
        DceRpc5Context(
            cont_id=1,
            abstract_syntax=DceRpc5AbstractSyntax(if_uuid=interface, if_version=version),
            transfer_syntaxes=[
                DceRpc5TransferSyntax(if_uuid=BIND_TIME_FEATURES_UUID, if_version=1)
            ],
        ),
    ]
    packet = DceRpc5(ptype=11, call_id=call_id) / DceRpc5Bind(
        max_xmit_frag=5840, max_recv_frag=5840, context_elem=contexts
    )
    return bytes(packet)


def _rpc_bind_ack(port: int, call_id: int) -> bytes:
    """bind_ack: secondary address is the server's port as a string ([C706] 12.6.4.4)."""
    results = [
        DceRpc5Result(
            result=0,
            reason=0,
            transfer_syntax=DceRpc5TransferSyntax(if_uuid=NDR_UUID, if_version=2),
        ),
        # [MS-RPCE] 3.3.1.5.3: negotiate_ack (3) with the features the server supports (3).
        DceRpc5Result(
            result=3, reason=3, transfer_syntax=DceRpc5TransferSyntax(if_uuid=None, if_version=0)
        ),
    ]
    packet = DceRpc5(ptype=12, call_id=call_id) / DceRpc5BindAck(
        max_xmit_frag=5840,
        max_recv_frag=5840,
        assoc_group_id=0x0000_5A31 + port,
        sec_addr=DceRpc5PortAny(port_spec=f"{port}\x00".encode()),
        results=results,
    )
    return bytes(packet)


def _rpc_request(call_id: int, opnum: int, stub: bytes) -> bytes:
    return bytes(
        DceRpc5(ptype=0, call_id=call_id)
        / DceRpc5Request(alloc_hint=len(stub), cont_id=0, opnum=opnum)
        / stub
    )


def _rpc_response(call_id: int, stub: bytes) -> bytes:
    return bytes(
        DceRpc5(ptype=2, call_id=call_id) / DceRpc5Response(alloc_hint=len(stub), cont_id=0) / stub
    )


def _tower(interface: uuid.UUID, version: int, port: int, address: str) -> bytes:
    """A protocol tower for ncacn_ip_tcp ([C706] Appendix L, [MS-RPCE] 2.2.1.1.7)."""
    floors = [
        prot_and_addr_t(
            lhs_length=19,
            protocol_identifier=0x0D,
            uuid=interface,
            version=version,
            rhs_length=2,
            rhs=0,
        ),
        prot_and_addr_t(
            lhs_length=19, protocol_identifier=0x0D, uuid=NDR_UUID, version=2, rhs_length=2, rhs=0
        ),
        prot_and_addr_t(lhs_length=1, protocol_identifier=0x0B, rhs_length=2, rhs=0),
        prot_and_addr_t(lhs_length=1, protocol_identifier=0x07, rhs_length=2, rhs=port),
        prot_and_addr_t(lhs_length=1, protocol_identifier=0x09, rhs_length=4, rhs=address),
    ]
    return bytes(protocol_tower_t(floors=floors))


def epm_map(server: str, interface: uuid.UUID, version: int, granted_port: int) -> Exchange:
    """bind to the endpoint mapper, then ept_map (opnum 3) answered with ``granted_port``.

    The request's tower asks for ``interface`` over ncacn_ip_tcp with port 135 and address
    0.0.0.0 ([MS-RPCE] 3.1.4.3); the answer's tower names the dynamic port and the server.
    """
    request = ept_map_Request(
        obj=NDRPointer(referent_id=1, value=NdrUuid(Data1=0, Data2=0, Data3=0, Data4=None)),
        map_tower=NDRPointer(
            referent_id=2,
            value=twr_p_t(tower_octet_string=_tower(interface, version, 135, "0.0.0.0")),
        ),
        entry_handle=NDRContextHandle(attributes=0, uuid=b"\x00" * 16),
        max_towers=4,
        ndr64=False,
    )
    response = ept_map_Response(
        entry_handle=NDRContextHandle(attributes=0, uuid=b"\x00" * 16),
        ITowers=[twr_p_t(tower_octet_string=_tower(interface, version, granted_port, server))],
        status=0,
        ndr64=False,
    )
    response.ITowers.max_count = 4
    return [
        ("c", _rpc_bind(EPM_UUID, 3, 2)),
        ("s", _rpc_bind_ack(135, 2)),
        ("c", _rpc_request(2, 3, bytes(request))),
        ("s", _rpc_response(2, bytes(response))),
    ]


def _dual_string_array(bindings: list[tuple[int, str]], principal: str) -> DUALSTRINGARRAY:
    """[MS-DCOM] 2.2.19.1: STRINGBINDINGs, an empty one, SECURITYBINDINGs, an empty one."""
    strings = (
        b"".join(
            struct.pack("<H", tower) + f"{address}\x00".encode("utf-16-le")
            for tower, address in bindings
        )
        + b"\x00\x00"
    )
    # [MS-DCOM] 2.2.19.4: wAuthnSvc 0x0009 (SPNEGO), Reserved 0xFFFF, principal name.
    security = struct.pack("<HH", 0x0009, 0xFFFF) + f"{principal}\x00".encode("utf-16-le")
    security += b"\x00\x00"
    units = strings + security
    return DUALSTRINGARRAY(
        wNumEntries=len(units) // 2,
        wSecurityOffset=len(strings) // 2,
        aStringArray=units,
    )


def dcom_resolve_oxid(server: str, host_name: str, granted_port: int) -> Exchange:
    """IObjectExporter::ResolveOxid2 (opnum 4) and its OXID bindings ``host[port]``.

    [MS-DCOM] 3.1.2.5.1.1: the reply's string bindings name where the object exporter listens,
    ncacn_ip_tcp (tower id 0x0007) with the port in brackets.
    """
    request = ResolveOxid2_Request(pOxid=0x1A2B3C4D5E6F7081, arRequestedProtseqs=[7], ndr64=False)
    response = ResolveOxid2_Response(
        ppdsaOxidBindings=NDRPointer(
            referent_id=0x00020000,
            value=_dual_string_array(
                [(7, f"{host_name}[{granted_port}]"), (7, f"{server}[{granted_port}]")],
                f"host/{host_name}",
            ),
        ),
        pipidRemUnknown=GUID(
            Data1=0x0000_1C04, Data2=0x0DF4, Data3=0xFFFF, Data4=filler("ipid", 8)
        ),
        pAuthnHint=2,  # RPC_C_AUTHN_LEVEL_CONNECT
        pComVersion=COMVERSION(MajorVersion=5, MinorVersion=7),
        status=0,
        ndr64=False,
    )
    return [
        ("c", _rpc_bind(OBJECT_EXPORTER_UUID, 0, 1)),
        ("s", _rpc_bind_ack(135, 1)),
        ("c", _rpc_request(1, 4, bytes(request))),
        ("s", _rpc_response(1, bytes(response))),
    ]


def rpc_bind_on(port: int, interface: uuid.UUID, version: int) -> Exchange:
    """A bind to ``interface`` on a dynamic port and its acceptance ([C706] 12.6.4.3-4)."""
    return [("c", _rpc_bind(interface, version, 1)), ("s", _rpc_bind_ack(port, 1))]


# --- TDS PRELOGIN ([MS-TDS] 2.2.6.5) ---------------------------------------------------------

ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_NOT_SUP, ENCRYPT_REQ = 0, 1, 2, 3
_TDS_PRELOGIN, _TDS_TABULAR_RESULT = 0x12, 0x04


def _tds_packet(packet_type: int, data: bytes, packet_id: int = 1) -> bytes:
    """[MS-TDS] 2.2.3: Type, Status (0x01 end of message), Length, SPID, PacketID, Window."""
    return struct.pack("!BBHHBB", packet_type, 0x01, 8 + len(data), 0, packet_id, 0) + data


def _prelogin_options(options: list[tuple[int, bytes]]) -> bytes:
    """PL_OPTION_TOKEN, offset, length for each option, 0xFF, then the option data."""
    table_size = 5 * len(options) + 1
    table, data = b"", b""
    for token, value in options:
        table += struct.pack("!BHH", token, table_size + len(data), len(value))
        data += value
    return table + b"\xff" + data


def tds_prelogin(encryption: int) -> bytes:
    """The client's PRELOGIN: VERSION, ENCRYPTION, INSTOPT, THREADID, MARS, TRACEID."""
    options = [
        (0x00, struct.pack("!IH", 0x10000000, 0)),  # VERSION: client library 16.0
        (0x01, bytes([encryption])),
        (0x02, b"MSSQLServer\x00"),
        (0x03, struct.pack("!I", 0x00001F44)),
        (0x04, b"\x00"),  # MARS off
        (0x05, filler("traceid", 36)),
    ]
    return _tds_packet(_TDS_PRELOGIN, _prelogin_options(options))


def tds_prelogin_response(encryption: int) -> bytes:
    """The server's PRELOGIN answer, a tabular-result packet (type 0x04, [MS-TDS] 2.2.6.5)."""
    options = [
        (0x00, struct.pack("!IH", 0x0F0007D0, 0)),  # SQL Server 15.0.2000
        (0x01, bytes([encryption])),
        (0x02, b"\x00"),
        (0x03, b""),
        (0x04, b"\x00"),
    ]
    return _tds_packet(_TDS_TABULAR_RESULT, _prelogin_options(options))


def tds_tls(tls_records: bytes, packet_id: int = 1) -> bytes:
    """TLS handshake records carried in PRELOGIN packets ([MS-TDS] 2.2.6.5, 3.2.5.2)."""
    return _tds_packet(_TDS_PRELOGIN, tls_records, packet_id)


# --- Kerberos (RFC 4120) over TCP (RFC 4120 7.2.2: 4-byte length prefix) ---------------------


def kerberos_as_exchange(user: str, realm: str, *, nonce: int) -> Exchange:
    """AS-REQ without pre-authentication and the KDC's KRB-ERROR PREAUTH_REQUIRED (25)."""
    body = KRB_KDC_REQ_BODY(
        kdcOptions="forwardable+renewable+canonicalize+renewable-ok",
        cname=PrincipalName(nameType=1, nameString=[user]),
        realm=realm,
        sname=PrincipalName(nameType=2, nameString=["krbtgt", realm]),
        till="20370913024805Z",
        rtime="20370913024805Z",
        nonce=nonce,
        etype=[18, 17, 23],
    )
    request = KRB_AS_REQ(
        padata=[PADATA(padataType=128, padataValue=PA_PAC_REQUEST(includePac=True))],
        reqBody=body,
    )
    error = KRB_ERROR(
        stime="20231114221320Z",
        susec=0,
        errorCode=25,
        realm=realm,
        sname=PrincipalName(nameType=2, nameString=["krbtgt", realm]),
    )
    return [
        ("c", bytes(KerberosTCPHeader() / Kerberos(root=request))),
        ("s", bytes(KerberosTCPHeader() / Kerberos(root=error))),
    ]


# --- LDAP (RFC 4511) -------------------------------------------------------------------------


def ldap_search(
    base: str, attribute: str, value: str, wanted: str, entry: str, found: str
) -> Exchange:
    """A searchRequest (equalityMatch) and its searchResEntry + searchResDone."""
    request = LDAP(
        messageID=5,
        protocolOp=LDAP_SearchRequest(
            baseObject=base,
            scope=2,
            filter=LDAP_Filter(
                filter=LDAP_FilterEqual(attributeType=attribute, attributeValue=value)
            ),
            attributes=[LDAP_SearchRequestAttribute(type=wanted)],
        ),
    )
    result_entry = LDAP(
        messageID=5,
        protocolOp=LDAP_SearchResponseEntry(
            objectName=entry,
            attributes=[
                LDAP_PartialAttribute(type=wanted, values=[LDAP_AttributeValue(value=found)])
            ],
        ),
    )
    # referral=None: RFC 4511 4.1.9, the optional referral is absent (scapy writes it empty).
    done = LDAP(messageID=5, protocolOp=LDAP_SearchResponseResultDone(resultCode=0, referral=None))
    return [("c", bytes(request)), ("s", bytes(result_entry) + bytes(done))]


# --- DHCP / PXE (RFC 2131, RFC 4578) and TFTP (RFC 1350, RFC 2347-2349) -----------------------

PXE_VENDOR_CLASS = b"PXEClient:Arch:00007:UNDI:003016"


def _bootp(op: int, mac: str, xid: int, relay: str, **fields: Any) -> Any:
    chaddr = bytes.fromhex(mac.replace(":", "")) + b"\x00" * 10
    return BOOTP(
        op=op,
        htype=1,
        hlen=6,
        hops=1 if relay != "0.0.0.0" else 0,
        xid=xid,
        giaddr=relay,
        chaddr=chaddr,
        **fields,
    )


def pxe_dhcp_relayed(mac: str, xid: int, relay: str, dp: str) -> Exchange:
    """DISCOVER relayed by the router (giaddr) with option 60 PXEClient, and the DP's OFFER.

    RFC 2131 4.1: a relay agent sends to the server's port 67 from port 67; the server answers
    the relay on port 67. The DP's offer names itself as boot server (RFC 4578 2.1, option 60
    PXEClient in the answer means a PXE boot server).
    """
    discover = _bootp(1, mac, xid, relay, flags=0x8000) / DHCP(
        options=[
            ("message-type", "discover"),
            ("max_dhcp_size", 1464),
            ("param_req_list", [1, 3, 43, 60, 66, 67, 97, 128, 129, 130]),
            ("pxe_client_architecture", b"\x00\x07"),
            ("pxe_client_network_interface", b"\x01\x03\x10"),
            ("pxe_client_machine_identifier", b"\x00" + filler(f"guid/{mac}", 16)),
            ("vendor_class_id", PXE_VENDOR_CLASS),
            "end",
        ]
    )
    offer = _bootp(2, mac, xid, relay, siaddr=dp, flags=0x8000) / DHCP(
        options=[
            ("message-type", "offer"),
            ("server_id", dp),
            ("vendor_class_id", b"PXEClient"),
            ("pxe_client_machine_identifier", b"\x00" + filler(f"guid/{mac}", 16)),
            "end",
        ]
    )
    return [("c", bytes(discover)), ("s", bytes(offer))]


def binl_request(mac: str, xid: int, client: str, dp: str, boot_file: str) -> Exchange:
    """The PXE client's REQUEST to the boot server on 4011 and the ACK naming the boot file.

    PXE 2.1 specification 2.2.5: after the offer, the client asks the boot server directly on
    UDP 4011 (BINL on Windows Deployment Services).
    """
    request = _bootp(1, mac, xid, "0.0.0.0", ciaddr=client) / DHCP(
        options=[
            ("message-type", "request"),
            ("pxe_client_architecture", b"\x00\x07"),
            ("vendor_class_id", PXE_VENDOR_CLASS),
            ("pxe_client_machine_identifier", b"\x00" + filler(f"guid/{mac}", 16)),
            "end",
        ]
    )
    ack = _bootp(2, mac, xid, "0.0.0.0", ciaddr=client, siaddr=dp, file=boot_file.encode()) / DHCP(
        options=[
            ("message-type", "ack"),
            ("server_id", dp),
            ("vendor_class_id", b"PXEClient"),
            ("boot-file-name", boot_file.encode() + b"\x00"),
            "end",
        ]
    )
    return [("c", bytes(request)), ("s", bytes(ack))]


def tftp_read_request(path: str) -> bytes:
    """RRQ in octet mode with blksize and tsize (RFC 1350 5, RFC 2348, RFC 2349)."""
    return bytes(
        TFTP()
        / TFTP_RRQ(filename=path.encode(), mode=b"octet")
        / TFTP_Options(
            options=[
                TFTP_Option(oname=b"blksize", value=b"1456"),
                TFTP_Option(oname=b"tsize", value=b"0"),
            ]
        )
    )


def tftp_transfer(size: int) -> Exchange:
    """From the server's new port (RFC 1350 4): OACK, the client's ACK 0, the blocks and ACKs."""
    messages: list[tuple[str, bytes]] = [
        (
            "c",
            bytes(
                TFTP()
                / TFTP_OACK()
                / TFTP_Options(
                    options=[
                        TFTP_Option(oname=b"blksize", value=b"1456"),
                        TFTP_Option(oname=b"tsize", value=str(size).encode()),
                    ]
                )
            ),
        ),
        ("s", bytes(TFTP() / TFTP_ACK(block=0))),
    ]
    content = filler("wdsmgfw.efi", size)
    for block, at in enumerate(range(0, size, 1456), start=1):
        messages.append(("c", bytes(TFTP() / TFTP_DATA(block=block) / content[at : at + 1456])))
        messages.append(("s", bytes(TFTP() / TFTP_ACK(block=block))))
    return messages


# --- Name services --------------------------------------------------------------------------


def dns_query(name: str, answer: str, ident: int) -> Exchange:
    query = DNS(id=ident, rd=1, qd=DNSQR(qname=name, qtype="A"))
    reply = DNS(
        id=ident,
        qr=1,
        aa=1,
        rd=1,
        ra=1,
        qd=DNSQR(qname=name, qtype="A"),
        an=DNSRR(rrname=name, type="A", ttl=1200, rdata=answer),
    )
    return [("c", bytes(query)), ("s", bytes(reply))]


def netbios_name_query(name: str, ident: int) -> bytes:
    """A broadcast NBNS name query for a workstation name (RFC 1002 4.2.12)."""
    header = NBNSHeader(NAME_TRN_ID=ident, OPCODE=0, NM_FLAGS="B+RD", QDCOUNT=1)
    return bytes(header / NBNSQueryRequest(QUESTION_NAME=name))


# --- Wake-on-LAN, RDP, opaque streams -------------------------------------------------------


def wol_magic(mac: str) -> bytes:
    """Magic packet (AMD "Magic Packet Technology"): six 0xFF then the MAC sixteen times."""
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16


def rdp_connection(user_cookie: str) -> Exchange:
    """X.224 Connection Request and Confirm in TPKT ([MS-RDPBCGR] 2.2.1.1, 2.2.1.2).

    The request carries the routing cookie and RDP_NEG_REQ asking for TLS and CredSSP
    (PROTOCOL_SSL | PROTOCOL_HYBRID); the confirm's RDP_NEG_RSP selects CredSSP.
    """
    cookie = f"Cookie: mstshash={user_cookie}\r\n".encode()
    negotiation_request = struct.pack("<BBHI", 0x01, 0x00, 8, 0x00000003)
    # X.224 (ITU-T X.224 13.3): length indicator, CR code 0xE0, DST-REF, SRC-REF, class 0.
    request = b"\xe0" + struct.pack("!HHB", 0, 0, 0) + cookie + negotiation_request
    negotiation_response = struct.pack("<BBHI", 0x02, 0x1F, 8, 0x00000002)
    confirm = b"\xd0" + struct.pack("!HHB", 0, 0x1234, 0) + negotiation_response

    def tpkt(payload: bytes) -> bytes:
        return struct.pack("!BBH", 3, 0, 4 + len(payload)) + payload  # RFC 1006 6

    return [
        ("c", tpkt(bytes([len(request)]) + request)),
        ("s", tpkt(bytes([len(confirm)]) + confirm)),
    ]
