"""DCE/RPC: interfaces, authentication and the dynamic endpoints a server announces.

Reads connection-oriented DCE/RPC v5 PDUs ([C706] chapter 12, [MS-RPCE] 2.2.2) on TCP: the
interfaces a client binds to, the sec_trailer's authentication type and level, the opnums it
calls, and above all the endpoints the server hands out -- protocol towers in endpoint mapper
(EPM) ept_map/ept_lookup responses and ``HOST[port]`` string bindings in DCOM replies. Later
flows to those ports are RPC whose endpoint was announced.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from typing import Any, Literal

PROTOCOL = "dcerpc"
TRANSPORTS = ("tcp",)

# [C706] 12.6.3.1 / [MS-RPCE] 2.2.2.1: the 16-byte common header.
_HEADER = 16
_VERSION = 5
_PFC_OBJECT_UUID = 0x80
_MAX_PTYPE = 19
_MAX_PDUS = 128
_MAX_OPNUMS = 32
_MAX_TEXT = 256
_SEC_TRAILER = 8  # [MS-RPCE] 2.2.2.11: auth_type, auth_level, pad length, reserved, context id

REQUEST, RESPONSE, BIND, BIND_ACK, ALTER_CONTEXT = 0, 2, 11, 12, 14

EPM_UUID = "e1af8308-5d1f-11c9-91a4-08002b14a0fa"
_EPT_LOOKUP, _EPT_MAP = 2, 3  # [C706] appendix O / [MS-RPCE] 3.1.1.1: ept_lookup, ept_map

# Interface UUIDs of the Windows protocol specifications (each document's "Standards
# Assignments" or IDL appendix), as tshark also names them.
INTERFACE_NAMES = {
    EPM_UUID: "epm",  # [C706] appendix O, [MS-RPCE] 2.2.1.2.1
    "afa8bd80-7d8a-11c9-bef4-08002b102989": "mgmt",  # [C706] appendix Q
    # [MS-DCOM] 1.9: IRemoteSCMActivator (tshark: ISystemActivator), IActivation, the OXID
    # resolver IObjectExporter, IRemUnknown and IRemUnknown2.
    "000001a0-0000-0000-c000-000000000046": "IRemoteSCMActivator",
    "4d9f4ab8-7d1c-11cf-861e-0020af6e7c57": "IActivation",
    "99fcfec4-5260-101b-bbcb-00aa0021347a": "IObjectExporter",
    "00000131-0000-0000-c000-000000000046": "IRemUnknown",
    "00000143-0000-0000-c000-000000000046": "IRemUnknown2",
    "367abb81-9844-35f1-ad32-98f038001003": "svcctl",  # [MS-SCMR]
    "1ff70682-0a51-30e8-076d-740be8cee98b": "atsvc",  # [MS-TSCH] ATSvc
    "378e52b0-c0a9-11cf-822d-00aa0051e40f": "sasec",  # [MS-TSCH] SASec
    "86d35949-83c9-4044-b424-db363231fd0c": "ITaskSchedulerService",  # [MS-TSCH]
    "12345778-1234-abcd-ef00-0123456789ac": "samr",  # [MS-SAMR]
    "12345778-1234-abcd-ef00-0123456789ab": "lsarpc",  # [MS-LSAD], [MS-LSAT]
    "3919286a-b10c-11d0-9ba8-00c04fd92ef5": "dssetup",  # [MS-DSSP]
    "e3514235-4b06-11d1-ab04-00c04fc2dcd2": "drsuapi",  # [MS-DRSR]
    "12345678-1234-abcd-ef00-01234567cffb": "netlogon",  # [MS-NRPC]
    "12345678-1234-abcd-ef00-0123456789ab": "spoolss",  # [MS-RPRN]
    "76f03f96-cdfd-44fc-a22c-64950a001209": "IRemoteWinspool",  # [MS-PAR]
    "338cd001-2244-31f1-aaaa-900038001003": "winreg",  # [MS-RRP]
    "4b324fc8-1670-01d3-1278-5a47bf6ee188": "srvsvc",  # [MS-SRVS]
    "6bffd098-a112-3610-9833-46c3f87e345a": "wkssvc",  # [MS-WKST]
    "4fc742e0-4a10-11cf-8273-00aa004ae673": "netdfs",  # [MS-DFSNM]
    "f309ad18-d86a-11d0-a075-00c04fb68820": "IWbemLevel1Login",  # [MS-WMI]
    "9556dc99-828c-11cf-a37e-00aa003240c7": "IWbemServices",  # [MS-WMI]
    "f5cc59b4-4264-101a-8c59-08002b2f8426": "frsrpc",  # [MS-FRS1]
    "897e2e5f-93f3-4376-9c9c-fd2277495c27": "frs2",  # [MS-FRS2] (DFS-R)
    "50abc2a4-574d-40b3-9d66-ee4fd5fba076": "dnsserver",  # [MS-DNSP]
    "82273fdc-e32a-18c3-3f78-827929dc23ea": "eventlog",  # [MS-EVEN]
    "f6beaff7-1e19-4fbb-9f8f-b89e2018337c": "IEventService",  # [MS-EVEN6]
    "894de0c0-0d55-11d3-a322-00c04fa321a1": "InitShutdown",  # [MS-RSP]
    "c681d488-d850-11d0-8c52-00c04fd90f7e": "efsrpc",  # [MS-EFSR] over \pipe\lsarpc
    "df1941c5-fe89-4e79-bf10-463657acf44d": "efsrpc",  # [MS-EFSR] over \pipe\efsrpc
}

# [MS-RPCE] 2.2.1.1.7 security providers and 2.2.1.1.8 authentication levels.
AUTH_TYPES = {9: "spnego", 10: "ntlmssp", 14: "schannel", 16: "kerberos", 68: "netlogon"}
AUTH_LEVELS = {
    0: "default",
    1: "none",
    2: "connect",
    3: "call",
    4: "packet",
    5: "integrity",
    6: "privacy",
}

# [C706] appendix I / L: tower floor protocol identifiers.
_FLOOR_TCP_PORT = 0x07
_FLOOR_IPV4 = 0x09

# [MS-DCOM] 2.2.19.3 STRINGBINDING: wTowerId 0x0007 (ncacn_ip_tcp), then the network address
# as NUL-terminated UTF-16LE; "HOST[port]" names the port ([MS-DCOM] 2.2.19.3, 3.2.4.1.1).
_TCP_STRING_BINDING = re.compile(rb"\x07\x00((?:[\x21-\x7e]\x00){3,256})\x00\x00")
_HOST_PORT = re.compile(r"([^\[\]]{1,255})\[(\d{1,5})\]")
# epm_towers: tower_length (4 bytes), then a floor count of 3 to 8 (2 bytes, little-endian).
_TOWER_START = re.compile(rb"(?=.{4}[\x03-\x08]\x00)", re.DOTALL)


ByteOrder = Literal["big", "little"]


def _byte_order(drep0: int) -> ByteOrder:
    """drep's first byte: integer byte order in the high nibble, 0 big-endian, 1 little."""
    return "big" if drep0 >> 4 == 0 else "little"


class _Pdu:
    """One PDU: its header fields and the bytes of it the window holds."""

    __slots__ = ("auth_length", "call_id", "data", "flags", "length", "order", "ptype")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.order = _byte_order(data[4])
        self.ptype = data[2]
        self.flags = data[3]
        self.length = int.from_bytes(data[8:10], self.order)
        self.auth_length = int.from_bytes(data[10:12], self.order)
        self.call_id = int.from_bytes(data[12:16], self.order)

    @property
    def complete(self) -> bool:
        return len(self.data) == self.length

    def uint(self, offset: int, size: int) -> int | None:
        if offset < 0 or offset + size > len(self.data):
            return None
        return int.from_bytes(self.data[offset : offset + size], self.order)

    def stub_end(self) -> int:
        """Where the stub ends: before the auth verifier and its sec_trailer, if any."""
        if self.auth_length:
            return self.length - self.auth_length - _SEC_TRAILER
        return self.length


def _header_ok(data: bytes, offset: int) -> bool:
    """A plausible common header ([MS-RPCE] 2.2.2.1) at ``offset``."""
    if offset + _HEADER > len(data):
        return False
    if data[offset] != _VERSION or data[offset + 1] > 1 or data[offset + 2] > _MAX_PTYPE:
        return False
    # drep: byte order in the high nibble (0 big-endian, 1 little-endian), character set
    # (0 ASCII, 1 EBCDIC), floating point (0-3), then a reserved byte ([C706] 14.1).
    if data[offset + 4] not in (0x00, 0x10) or data[offset + 5] > 1 or data[offset + 6] > 3:
        return False
    order = _byte_order(data[offset + 4])
    length = int.from_bytes(data[offset + 8 : offset + 10], order)
    auth_length = int.from_bytes(data[offset + 10 : offset + 12], order)
    overhead = _HEADER + (auth_length + _SEC_TRAILER if auth_length else 0)
    return length >= overhead


def pdus(stream: bytes) -> list[_Pdu]:
    """The PDUs of one direction, the last possibly cut by the window's end."""
    found: list[_Pdu] = []
    offset = 0
    while len(found) < _MAX_PDUS and _header_ok(stream, offset):
        length = int.from_bytes(stream[offset + 8 : offset + 10], _byte_order(stream[offset + 4]))
        found.append(_Pdu(stream[offset : offset + length]))
        offset += length
    return found


def _resynchronised(stream: bytes) -> list[_Pdu]:
    """PDUs from the first plausible header inside ``stream``, for a capture that began mid-PDU.

    A header is taken where the PDU it starts ends at the window's end or just before another
    header.
    """
    at = stream.find(b"\x05", 1)
    while at != -1:
        if _header_ok(stream, at):
            end = at + int.from_bytes(stream[at + 8 : at + 10], _byte_order(stream[at + 4]))
            if end >= len(stream) or _header_ok(stream, end):
                return pdus(stream[at:])
        at = stream.find(b"\x05", at + 1)
    return []


def _uuid_at(pdu: _Pdu, offset: int) -> str | None:
    raw = pdu.data[offset : offset + 16]
    if len(raw) != 16:
        return None
    return str(uuid.UUID(bytes=raw) if pdu.order == "big" else uuid.UUID(bytes_le=raw))


def _bound_contexts(pdu: _Pdu) -> list[tuple[int, str, str]]:
    """(context id, uuid, "major.minor") of each presentation context of a bind/alter_context.

    [C706] 12.6.4.3: max_xmit_frag, max_recv_frag, assoc_group_id, then p_context_elem_t:
    n_context_elem, two reserved fields, and p_cont_elem_t entries (context id, transfer
    syntax count, abstract syntax {uuid, version}, transfer syntaxes of 20 bytes each).
    """
    contexts: list[tuple[int, str, str]] = []
    count = pdu.uint(24, 1) or 0
    at = 28
    for _ in range(count):
        context_id = pdu.uint(at, 2)
        transfer_count = pdu.uint(at + 2, 1)
        interface = _uuid_at(pdu, at + 4)
        version = pdu.uint(at + 20, 4)
        if context_id is None or transfer_count is None or interface is None or version is None:
            break
        # The version is one unsigned32: major in the low 16 bits, minor in the high 16.
        contexts.append((context_id, interface, f"{version & 0xFFFF}.{version >> 16}"))
        at += 24 + 20 * transfer_count
    return contexts


def _secondary_address(pdu: _Pdu) -> str | None:
    """The bind_ack's port_spec ([C706] 12.6.4.4: length-prefixed, NUL-terminated)."""
    length = pdu.uint(24, 2)
    if not length:
        return None
    raw = pdu.data[26 : 26 + length]
    text = raw.split(b"\x00", 1)[0].decode("latin-1", errors="replace")
    return text[:_MAX_TEXT] or None


def _sec_trailer(pdu: _Pdu) -> tuple[int, int] | None:
    """(auth_type, auth_level) of a complete PDU with an auth verifier."""
    if not pdu.auth_length or not pdu.complete:
        return None
    at = pdu.length - pdu.auth_length - _SEC_TRAILER
    auth_type, auth_level = pdu.uint(at, 1), pdu.uint(at + 1, 1)
    if auth_type is None or auth_level is None:
        return None
    return auth_type, auth_level


def _stub(pdu: _Pdu) -> bytes:
    """Stub data of a request or response ([C706] 12.6.4.9 / 12.6.4.10)."""
    start = 24
    if pdu.ptype == REQUEST and pdu.flags & _PFC_OBJECT_UUID:
        start += 16
    return pdu.data[start : max(start, pdu.stub_end())]


def _floors(tower: bytes | memoryview, count: int) -> tuple[int | None, str | None] | None:
    """(TCP port, IPv4 address) of a tower's floors, or None if they do not fill it exactly.

    [C706] appendix L: each floor is lhs byte count (2, little-endian), lhs (protocol id
    first), rhs byte count (2, little-endian), rhs; TCP ports and IPv4 addresses in the rhs
    are big-endian.
    """
    port: int | None = None
    address: str | None = None
    at = 0
    for _ in range(count):
        if at + 2 > len(tower):
            return None
        lhs_length = int.from_bytes(tower[at : at + 2], "little")
        lhs = tower[at + 2 : at + 2 + lhs_length]
        at += 2 + lhs_length
        if lhs_length == 0 or len(lhs) != lhs_length or at + 2 > len(tower):
            return None
        rhs_length = int.from_bytes(tower[at : at + 2], "little")
        rhs = tower[at + 2 : at + 2 + rhs_length]
        at += 2 + rhs_length
        if len(rhs) != rhs_length:
            return None
        if lhs[0] == _FLOOR_TCP_PORT and rhs_length == 2:
            port = int.from_bytes(rhs, "big")
        elif lhs[0] == _FLOOR_IPV4 and rhs_length == 4:
            address = str(ipaddress.IPv4Address(bytes(rhs)))
    if at != len(tower):
        return None
    return port, address


def epm_towers(stub: bytes) -> list[tuple[str | None, int]]:
    """(address, TCP port) of every ncacn_ip_tcp tower in an ept_map/ept_lookup response.

    The towers sit in NDR (32- or 64-bit) after pointers and counts; each is
    ``tower_length`` (4 bytes) then the tower octets: floor count (2 bytes) and floors. A
    tower is taken only where its floors fill ``tower_length`` exactly. An address of 0.0.0.0
    (or none) means the server that answered: it is given as None.
    """
    found: list[tuple[str | None, int]] = []
    at = 0
    # Only where a floor count of 3-8 follows four bytes can a tower start: the search finds
    # those places (in C), so random bytes cost no Python per byte.
    while (candidate := _TOWER_START.search(stub, at)) is not None:
        at = candidate.start()
        length = int.from_bytes(stub[at : at + 4], "little")
        count = stub[at + 4]
        if 2 + 6 * count <= length <= len(stub) - at - 4:
            floors = _floors(memoryview(stub)[at + 6 : at + 4 + length], count)
            if floors is not None:
                port, address = floors
                if port:
                    host = None if address in (None, "0.0.0.0") else address
                    found.append((host, port))
                at += 4 + length
                continue
        at += 1
    return found


def dcom_string_bindings(stub: bytes) -> list[tuple[str, int]]:
    """(host, port) of every ncacn_ip_tcp ``HOST[port]`` string binding in a DCOM reply."""
    found: list[tuple[str, int]] = []
    for match in _TCP_STRING_BINDING.finditer(stub):
        text = match.group(1).decode("utf-16-le", errors="replace")
        host_port = _HOST_PORT.fullmatch(text)
        if host_port and 0 < int(host_port.group(2)) <= 0xFFFF:
            found.append((host_port.group(1)[:_MAX_TEXT], int(host_port.group(2))))
    return found


class _ClientSide:
    """What the client's PDUs say: bound interfaces, and the interface and opnum of each call."""

    def __init__(self, client_pdus: list[_Pdu]) -> None:
        self.interfaces: list[dict[str, Any]] = []
        self.opnums: list[int] = []
        self.calls: dict[int, tuple[str | None, int]] = {}
        interface_of_context: dict[int, str] = {}
        for pdu in client_pdus:
            if pdu.ptype in (BIND, ALTER_CONTEXT):
                for context_id, interface, version in _bound_contexts(pdu):
                    interface_of_context[context_id] = interface
                    entry = {
                        "uuid": interface,
                        "version": version,
                        "name": INTERFACE_NAMES.get(interface),
                    }
                    if entry not in self.interfaces:
                        self.interfaces.append(entry)
            elif pdu.ptype == REQUEST:
                called_context, opnum = pdu.uint(20, 2), pdu.uint(22, 2)
                if called_context is None or opnum is None:
                    continue
                if len(self.opnums) < _MAX_OPNUMS:
                    self.opnums.append(opnum)
                self.calls.setdefault(
                    pdu.call_id, (interface_of_context.get(called_context), opnum)
                )

    def may_answer_with_towers(self, call_id: int) -> bool:
        """An endpoint mapper lookup, or a call whose request the window does not hold."""
        if call_id not in self.calls:
            return True
        interface, opnum = self.calls[call_id]
        return interface == EPM_UUID and opnum in (_EPT_LOOKUP, _EPT_MAP)


def _announced(server_pdus: list[_Pdu], client: _ClientSide) -> list[dict[str, Any]]:
    """Endpoints the server hands out: EPM towers and DCOM string bindings in its responses."""
    stubs: dict[int, bytes] = {}
    for pdu in server_pdus:
        if pdu.ptype == RESPONSE:  # fragments of one call joined in order
            stubs[pdu.call_id] = stubs.get(pdu.call_id, b"") + _stub(pdu)
    announced: list[dict[str, Any]] = []
    for call_id, stub in stubs.items():
        # The strict tower check keeps stubs of other interfaces out even when the request
        # is not in the window.
        towers = epm_towers(stub) if client.may_answer_with_towers(call_id) else []
        entries = [{"host": host, "port": port, "by": "epm"} for host, port in towers]
        entries += [
            {"host": host, "port": port, "by": "dcom"} for host, port in dcom_string_bindings(stub)
        ]
        for entry in entries:
            if entry not in announced and len(announced) < 64:
                announced.append(entry)
    return announced


def parse(c2s: bytes, s2c: bytes) -> dict[str, Any] | None:
    """Facts of a DCE/RPC connection, or ``None`` when neither direction starts with a PDU.

    ``announced`` lists ``{"host", "port", "by"}``: "epm" for a tower (host None when the
    tower's address is 0.0.0.0 or missing, meaning the server that answered), "dcom" for a
    string binding (host as written: a name or an address).
    """
    if c2s[:1] != b"\x05" and s2c[:1] != b"\x05":
        return None
    client_pdus, server_pdus = pdus(c2s), pdus(s2c)
    if not client_pdus and not server_pdus:
        return None
    # One direction's capture began inside a PDU (a lost segment): once the other direction
    # shows this is DCE/RPC, look for the next PDU boundary in it.
    if not client_pdus:
        client_pdus = _resynchronised(c2s)
    if not server_pdus:
        server_pdus = _resynchronised(s2c)
    client = _ClientSide(client_pdus)
    auth = next(
        (trailer for pdu in (*client_pdus, *server_pdus) if (trailer := _sec_trailer(pdu))),
        None,
    )
    bind_acks = [pdu for pdu in server_pdus if pdu.ptype == BIND_ACK]
    return {
        "interfaces": client.interfaces,
        "auth_type": AUTH_TYPES.get(auth[0], f"type-{auth[0]}") if auth and auth[0] else None,
        "auth_level": AUTH_LEVELS.get(auth[1], f"level-{auth[1]}") if auth else None,
        "bind_ack": bool(bind_acks),
        "secondary_address": _secondary_address(bind_acks[0]) if bind_acks else None,
        "announced": _announced(server_pdus, client),
        "opnums": client.opnums,
    }
