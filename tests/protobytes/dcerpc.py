"""Real DCE/RPC bytes for tests: connection-oriented PDUs, EPM towers, DCOM string bindings.

PDU layouts are [C706] chapter 12 with [MS-RPCE] 2.2.2 (little-endian data representation,
NDR 2.0 transfer syntax); the endpoint mapper's ept_map is [C706] appendix O with towers as in
appendix L and [MS-RPCE] 2.2.1.1.x; IObjectExporter::ResolveOxid2 and DUALSTRINGARRAY are
[MS-DCOM] 3.1.2.5.1.4 and 2.2.19.
"""

from __future__ import annotations

import ipaddress
import struct
import uuid
from collections.abc import Sequence

# [C706] 12.6.4 packet types and 12.6.3.1 flags.
REQUEST, RESPONSE, BIND, BIND_ACK, ALTER_CONTEXT, AUTH3 = 0, 2, 11, 12, 14, 16
PFC_FIRST_FRAG, PFC_LAST_FRAG = 0x01, 0x02
DREP_LITTLE_ENDIAN = b"\x10\x00\x00\x00"

# [MS-RPCE] 2.2.1.1.7 / 2.2.1.1.8.
AUTH_SPNEGO, AUTH_NTLM, AUTH_KERBEROS, AUTH_NETLOGON = 9, 10, 16, 68
LEVEL_CONNECT, LEVEL_PACKET, LEVEL_INTEGRITY, LEVEL_PRIVACY = 2, 4, 5, 6

NDR = ("8a885d04-1ceb-11c9-9fe8-08002b104860", 2, 0)  # [C706] appendix I: NDR 2.0
EPM = ("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3, 0)
OBJECT_EXPORTER = ("99fcfec4-5260-101b-bbcb-00aa0021347a", 0, 0)  # [MS-DCOM] 1.9
REMOTE_SCM_ACTIVATOR = ("000001a0-0000-0000-c000-000000000046", 0, 0)
SVCCTL = ("367abb81-9844-35f1-ad32-98f038001003", 2, 0)  # [MS-SCMR] 1.9
Interface = tuple[str, int, int]  # uuid, major, minor version

EPT_MAP = 3
RESOLVE_OXID2 = 4  # [MS-DCOM] 3.1.2.5.1.4

NTLMSSP_NEGOTIATE = b"NTLMSSP\x00" + struct.pack("<II", 1, 0xE2088297) + bytes(16)


def syntax_id(interface: Interface) -> bytes:
    """p_syntax_id_t: UUID (NDR, little-endian fields) and version (major low, minor high)."""
    uuid_text, major, minor = interface
    return uuid.UUID(uuid_text).bytes_le + struct.pack("<HH", major, minor)


def pdu(
    ptype: int,
    call_id: int,
    body: bytes,
    *,
    auth: tuple[int, int, bytes] | None = None,
    flags: int = PFC_FIRST_FRAG | PFC_LAST_FRAG,
) -> bytes:
    """Common header ([MS-RPCE] 2.2.2.1) + body + optional sec_trailer and auth value (2.2.2.11).

    ``auth`` is (auth_type, auth_level, token); the body is padded so the trailer starts on a
    4-byte boundary, and auth_pad_length says by how much.
    """
    trailer = b""
    if auth is not None:
        auth_type, auth_level, token = auth
        pad = -(16 + len(body)) % 4
        body += bytes(pad)
        trailer = struct.pack("<BBBBI", auth_type, auth_level, pad, 0, 0) + token
    auth_length = len(trailer) - 8 if auth is not None else 0
    length = 16 + len(body) + len(trailer)
    header = struct.pack(
        "<BBBB4sHHI", 5, 0, ptype, flags, DREP_LITTLE_ENDIAN, length, auth_length, call_id
    )
    return header + body + trailer


def bind(
    call_id: int,
    interfaces: Sequence[Interface],
    *,
    auth: tuple[int, int, bytes] | None = None,
    alter_context: bool = False,
) -> bytes:
    """[C706] 12.6.4.3 bind (or alter_context): one presentation context per interface, NDR."""
    body = struct.pack("<HHI", 5840, 5840, 0) + struct.pack("<B3x", len(interfaces))
    for context_id, interface in enumerate(interfaces):
        body += struct.pack("<HBx", context_id, 1) + syntax_id(interface) + syntax_id(NDR)
    return pdu(ALTER_CONTEXT if alter_context else BIND, call_id, body, auth=auth)


def bind_ack(
    call_id: int,
    secondary_address: str,
    *,
    results: int = 1,
    auth: tuple[int, int, bytes] | None = None,
) -> bytes:
    """[C706] 12.6.4.4 bind_ack: port_spec, then one acceptance (result 0) per context."""
    port_spec = secondary_address.encode("ascii") + b"\x00"
    body = struct.pack("<HHI", 5840, 5840, 0x1234) + struct.pack("<H", len(port_spec)) + port_spec
    body += bytes(-(16 + len(body)) % 4)  # p_result_list is 4-byte aligned
    body += struct.pack("<B3x", results)
    for _ in range(results):
        body += struct.pack("<HH", 0, 0) + syntax_id(NDR)
    return pdu(BIND_ACK, call_id, body, auth=auth)


def request(
    call_id: int,
    opnum: int,
    stub: bytes,
    *,
    context_id: int = 0,
    auth: tuple[int, int, bytes] | None = None,
) -> bytes:
    """[C706] 12.6.4.9 request: alloc_hint, context id, opnum, stub."""
    body = struct.pack("<IHH", len(stub), context_id, opnum) + stub
    return pdu(REQUEST, call_id, body, auth=auth)


def response(call_id: int, stub: bytes, *, context_id: int = 0) -> bytes:
    """[C706] 12.6.4.10 response: alloc_hint, context id, cancel count, stub."""
    body = struct.pack("<IHBx", len(stub), context_id, 0) + stub
    return pdu(RESPONSE, call_id, body)


# Endpoint mapper -----------------------------------------------------------------------------


def _floor(lhs: bytes, rhs: bytes) -> bytes:
    """[C706] appendix L: lhs byte count, lhs, rhs byte count, rhs (counts little-endian)."""
    return struct.pack("<H", len(lhs)) + lhs + struct.pack("<H", len(rhs)) + rhs


def tcp_tower(interface: Interface, address: str, port: int) -> bytes:
    """The five floors of an ncacn_ip_tcp tower: interface, NDR, RPC CO, TCP port, IPv4 host.

    [MS-RPCE] 2.2.1.1.x / [C706] appendix I: protocol ids 0x0d (UUID), 0x0b (RPC
    connection-oriented), 0x07 (TCP, port big-endian), 0x09 (IP, address big-endian).
    """
    uuid_text, major, minor = interface
    ndr_uuid, ndr_major, _ = NDR
    floors = [
        _floor(
            b"\x0d" + uuid.UUID(uuid_text).bytes_le + struct.pack("<H", major),
            struct.pack("<H", minor),
        ),
        _floor(
            b"\x0d" + uuid.UUID(ndr_uuid).bytes_le + struct.pack("<H", ndr_major),
            struct.pack("<H", 0),
        ),
        _floor(b"\x0b", struct.pack("<H", 0)),
        _floor(b"\x07", struct.pack(">H", port)),
        _floor(b"\x09", ipaddress.IPv4Address(address).packed),
    ]
    return struct.pack("<H", len(floors)) + b"".join(floors)


def _twr(tower: bytes) -> bytes:
    """twr_t in NDR: conformance (max count), tower_length, octets, padding to 4."""
    return struct.pack("<II", len(tower), len(tower)) + tower + bytes(-len(tower) % 4)


def ept_map_request(interface: Interface) -> bytes:
    """ept_map stub ([C706] appendix O): object (null UUID), map_tower, entry_handle, max_towers."""
    tower = tcp_tower(interface, "0.0.0.0", 135)
    return (
        struct.pack("<I", 1)  # referent of object
        + bytes(16)
        + struct.pack("<I", 2)  # referent of map_tower
        + _twr(tower)
        + bytes(20)  # entry_handle: a null context handle
        + struct.pack("<I", 4)  # max_towers
    )


def ept_map_response(towers: Sequence[bytes]) -> bytes:
    """ept_map response stub: entry_handle, num_towers, towers[] (conformant varying), status."""
    stub = bytes(20) + struct.pack("<I", len(towers))
    stub += struct.pack("<III", 4, 0, len(towers))  # max_count, offset, actual_count
    stub += b"".join(struct.pack("<I", 3 + k) for k in range(len(towers)))  # referents
    stub += b"".join(_twr(tower) for tower in towers)
    return stub + struct.pack("<I", 0)  # status


def epm_exchange(
    interface: Interface, address: str, port: int, *, call_id: int = 1
) -> list[tuple[str, bytes]]:
    """A client's EPM lookup on 135: bind to epm, ept_map for ``interface``, the answer."""
    return [
        ("c", bind(call_id, [EPM])),
        ("s", bind_ack(call_id, "135")),
        ("c", request(call_id + 1, EPT_MAP, ept_map_request(interface))),
        ("s", response(call_id + 1, ept_map_response([tcp_tower(interface, address, port)]))),
    ]


# DCOM ----------------------------------------------------------------------------------------


def dual_string_array(
    string_bindings: Sequence[str], security_bindings: Sequence[tuple[int, str]] = ((10, ""),)
) -> bytes:
    """[MS-DCOM] 2.2.19.1 DUALSTRINGARRAY: ncacn_ip_tcp STRINGBINDINGs and SECURITYBINDINGs.

    wNumEntries counts unsigned shorts; each binding ends in a NUL, each list in another.
    """
    words = b""
    for binding in string_bindings:
        words += struct.pack("<H", 0x0007) + binding.encode("utf-16-le") + b"\x00\x00"
    words += b"\x00\x00"
    security_offset = len(words) // 2
    for authn_service, principal in security_bindings:
        words += struct.pack("<HH", authn_service, 0xFFFF)
        words += principal.encode("utf-16-le") + b"\x00\x00"
    words += b"\x00\x00"
    return struct.pack("<HH", len(words) // 2, security_offset) + words


def resolve_oxid2_response(string_bindings: Sequence[str]) -> bytes:
    """IObjectExporter::ResolveOxid2 response stub: ppdsaOxidBindings, IPID, hint, version."""
    array = dual_string_array(string_bindings)
    entries = len(array) // 2 - 2
    stub = struct.pack("<II", 0x00020000, entries) + array  # referent, conformance
    stub += bytes(-len(stub) % 4)
    stub += bytes(range(16))  # pipidRemUnknown
    stub += struct.pack("<I", 6)  # pAuthnHint
    stub += struct.pack("<HH", 5, 7)  # COMVERSION 5.7
    return stub + struct.pack("<I", 0)


def resolve_oxid2_request() -> bytes:
    """IObjectExporter::ResolveOxid2 request stub: OXID, requested protocol sequences (TCP)."""
    # OXID, cRequestedProtseqs (2 + 2 bytes of alignment), then the conformant array.
    return struct.pack("<QH2xIH", 0x1122334455667788, 1, 1, 0x0007)


def dcom_resolve_exchange(string_bindings: Sequence[str]) -> list[tuple[str, bytes]]:
    """A client asking the OXID resolver on 135 where an object lives, and the answer."""
    return [
        ("c", bind(1, [OBJECT_EXPORTER])),
        ("s", bind_ack(1, "135")),
        ("c", request(2, RESOLVE_OXID2, resolve_oxid2_request())),
        ("s", response(2, resolve_oxid2_response(string_bindings))),
    ]
