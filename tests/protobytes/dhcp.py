"""Real DHCP bytes for tests: DHCPv4 with PXE options, the PXE boot server (BINL), DHCPv6.

Built from the specifications, not captured: RFC 2131 2 (the BOOTP header, the magic cookie
99.130.83.99), RFC 2132 (options: 53 message type, 54 server identifier, 55 parameter list,
57 maximum size, 60 vendor class, 66 TFTP server name, 67 bootfile name), RFC 4578 2 (PXE: 93
client system architecture, 94 client network interface identifier, 97 client machine
identifier), the PXE 2.1 specification (vendor class ``PXEClient:Arch:xxxxx:UNDI:yyyzzz``; the
boot server answers a DHCPREQUEST on UDP 4011), RFC 8415 (DHCPv6 messages, DUIDs, options) and
RFC 5970 (DHCPv6 network boot: 59 boot-file-url, 61 client architecture, 62 network interface).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import Any

BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHERNET = 1
MAGIC_COOKIE = bytes([99, 130, 83, 99])
FLAG_BROADCAST = 0x8000
BOOTP_MINIMUM = 300  # RFC 1542 2.1: relay agents and old servers expect at least 300 octets

DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPDECLINE = 1, 2, 3, 4
DHCPACK, DHCPNAK, DHCPRELEASE, DHCPINFORM = 5, 6, 7, 8
CLIENT_TYPES = frozenset({DHCPDISCOVER, DHCPREQUEST, DHCPDECLINE, DHCPRELEASE, DHCPINFORM})

OPTION_PAD = 0
OPTION_SUBNET_MASK = 1
OPTION_ROUTER = 3
OPTION_VENDOR_SPECIFIC = 43
OPTION_REQUESTED_ADDRESS = 50
OPTION_LEASE_TIME = 51
OPTION_OVERLOAD = 52
OPTION_MESSAGE_TYPE = 53
OPTION_SERVER_ID = 54
OPTION_PARAMETER_LIST = 55
OPTION_MAX_SIZE = 57
OPTION_VENDOR_CLASS = 60
OPTION_CLIENT_ID = 61
OPTION_TFTP_SERVER = 66
OPTION_BOOTFILE = 67
OPTION_CLIENT_ARCH = 93
OPTION_CLIENT_NDI = 94
OPTION_CLIENT_UUID = 97
OPTION_END = 255

# RFC 4578 2.1 / IANA "Processor Architecture Types": 0 x86 BIOS, 6 EFI IA32, 7 EFI BC (what
# x64 UEFI firmware sends), 9 EFI x86-64.
ARCH_X86_BIOS = 0
ARCH_EFI_BC = 7
ARCH_EFI_X64 = 9
PXE_VENDOR_CLASS = "PXEClient:Arch:00007:UNDI:003016"
PXE_SERVER_VENDOR_CLASS = "PXEClient"  # PXE 2.1 table 2-1: a PXE server's answers carry this
MACHINE_UUID = bytes.fromhex("4c4c4544004a4d1080325ac04f4d4432")
BINL_PORT = 4011
PXE_PARAMETER_LIST = bytes([1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43])
PXE_PARAMETER_LIST += bytes([50, 51, 54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132])

# RFC 8415 7.3 message types, 21 option codes.
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY = 1, 2, 3, 4, 5, 6, 7
RELEASE, DECLINE, RECONFIGURE, INFORMATION_REQUEST, RELAY_FORW, RELAY_REPL = 8, 9, 10, 11, 12, 13
V6_CLIENT_ID = 1
V6_SERVER_ID = 2
V6_IA_NA = 3
V6_IA_ADDRESS = 5
V6_OPTION_REQUEST = 6
V6_ELAPSED_TIME = 8
V6_RELAY_MESSAGE = 9
V6_VENDOR_CLASS = 16
V6_INTERFACE_ID = 18
V6_DNS_SERVERS = 23
V6_BOOT_FILE_URL = 59  # RFC 5970 3.1
V6_BOOT_FILE_PARAM = 60  # RFC 5970 3.2
V6_CLIENT_ARCH = 61  # RFC 5970 3.3
V6_CLIENT_NII = 62  # RFC 5970 3.4
V6_CLIENT_LINK_LAYER = 79  # RFC 6939
DUID_LLT, DUID_EN, DUID_LL, DUID_UUID = 1, 2, 3, 4  # RFC 8415 11.2-11.5
ENTERPRISE_INTEL = 343  # IANA enterprise number of Intel (PXE's vendor class in DHCPv6)
ENTERPRISE_MICROSOFT = 311

Options = Sequence[tuple[int, bytes]]


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def ipv4(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def ipv6(address: str) -> bytes:
    return ipaddress.IPv6Address(address).packed


# --- DHCPv4 --------------------------------------------------------------------------------------


def option(code: int, data: bytes) -> bytes:
    """One RFC 2132 2 option: code, length, data."""
    return bytes([code, len(data)]) + data


def bootp(
    op: int,
    xid: int,
    client_mac: str,
    options: Options = (),
    *,
    ciaddr: str = "0.0.0.0",
    yiaddr: str = "0.0.0.0",
    siaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    sname: bytes = b"",
    file: bytes = b"",
    flags: int = 0,
    secs: int = 0,
    hops: int = 0,
    end: bool = True,
    pad_to: int = BOOTP_MINIMUM,
) -> bytes:
    """A BOOTP/DHCP message (RFC 2131 2 figure 1), options after the magic cookie.

    ``options`` are written in order and closed by End (unless ``end`` is false); the message
    is padded with zero octets to ``pad_to`` as clients and servers do.
    """
    header = struct.pack(
        ">BBBBIHH4s4s4s4s16s64s128s",
        op,
        HTYPE_ETHERNET,
        6,
        hops,
        xid,
        secs,
        flags,
        ipv4(ciaddr),
        ipv4(yiaddr),
        ipv4(siaddr),
        ipv4(giaddr),
        mac_bytes(client_mac),
        sname,
        file,
    )
    body = MAGIC_COOKIE + b"".join(option(code, data) for code, data in options)
    if end:
        body += bytes([OPTION_END])
    message = header + body
    return message + bytes(max(0, pad_to - len(message)))


def dhcp_message(
    message_type: int, xid: int, client_mac: str, options: Options = (), **fields: Any
) -> bytes:
    """A DHCP message of ``message_type`` (option 53 first), BOOTREQUEST or BOOTREPLY by type."""
    op = BOOTREQUEST if message_type in CLIENT_TYPES else BOOTREPLY
    all_options = [(OPTION_MESSAGE_TYPE, bytes([message_type])), *options]
    return bootp(op, xid, client_mac, all_options, **fields)


def _pxe_client_options(arch: int, vendor_class: str) -> list[tuple[int, bytes]]:
    """What PXE firmware sends in DISCOVER and REQUEST (PXE 2.1 table 2-1, RFC 4578 2)."""
    return [
        (OPTION_MAX_SIZE, struct.pack(">H", 1464)),
        (OPTION_PARAMETER_LIST, PXE_PARAMETER_LIST),
        (OPTION_CLIENT_UUID, b"\x00" + MACHINE_UUID),  # type 0 then the 16-octet GUID
        (OPTION_CLIENT_NDI, bytes([1, 3, 16])),  # UNDI 3.16
        (OPTION_CLIENT_ARCH, struct.pack(">H", arch)),
        (OPTION_VENDOR_CLASS, vendor_class.encode("ascii")),
    ]


def pxe_discover(
    client_mac: str, xid: int, *, arch: int = ARCH_EFI_BC, vendor_class: str = PXE_VENDOR_CLASS
) -> bytes:
    """A PXE client's DHCPDISCOVER, broadcast, with options 93/94/97 and ``PXEClient...``."""
    return dhcp_message(
        DHCPDISCOVER,
        xid,
        client_mac,
        _pxe_client_options(arch, vendor_class),
        flags=FLAG_BROADCAST,
        secs=4,
    )


def pxe_offer(
    client_mac: str,
    xid: int,
    *,
    server: str,
    offered: str,
    boot_file: str = "smsboot\\x64\\wdsmgfw.efi",
    tftp_server: str | None = None,
    siaddr: str | None = None,
) -> bytes:
    """A DHCPOFFER that tells a PXE client where to boot: options 66 and 67, ``PXEClient``."""
    return dhcp_message(
        DHCPOFFER,
        xid,
        client_mac,
        [
            (OPTION_SERVER_ID, ipv4(server)),
            (OPTION_LEASE_TIME, struct.pack(">I", 691200)),
            (OPTION_SUBNET_MASK, ipv4("255.255.255.0")),
            (OPTION_ROUTER, ipv4(server)),
            (OPTION_VENDOR_CLASS, PXE_SERVER_VENDOR_CLASS.encode("ascii")),
            (OPTION_TFTP_SERVER, (tftp_server or server).encode("ascii")),
            (OPTION_BOOTFILE, boot_file.encode("ascii") + b"\x00"),  # many servers add a NUL
        ],
        yiaddr=offered,
        siaddr=siaddr or "0.0.0.0",
        flags=FLAG_BROADCAST,
    )


def pxe_request(
    client_mac: str,
    xid: int,
    *,
    server: str,
    requested: str,
    arch: int = ARCH_EFI_BC,
    vendor_class: str = PXE_VENDOR_CLASS,
) -> bytes:
    """The PXE client's DHCPREQUEST selecting ``server``'s offer (RFC 2131 4.3.2, SELECTING)."""
    return dhcp_message(
        DHCPREQUEST,
        xid,
        client_mac,
        [
            (OPTION_REQUESTED_ADDRESS, ipv4(requested)),
            (OPTION_SERVER_ID, ipv4(server)),
            *_pxe_client_options(arch, vendor_class),
        ],
        flags=FLAG_BROADCAST,
        secs=4,
    )


def pxe_ack(
    client_mac: str,
    xid: int,
    *,
    server: str,
    offered: str,
    boot_file: str = "smsboot\\x64\\wdsmgfw.efi",
) -> bytes:
    """The server's DHCPACK; the boot file travels in the BOOTP ``file`` field, siaddr set."""
    return dhcp_message(
        DHCPACK,
        xid,
        client_mac,
        [
            (OPTION_SERVER_ID, ipv4(server)),
            (OPTION_LEASE_TIME, struct.pack(">I", 691200)),
            (OPTION_SUBNET_MASK, ipv4("255.255.255.0")),
            (OPTION_VENDOR_CLASS, PXE_SERVER_VENDOR_CLASS.encode("ascii")),
        ],
        yiaddr=offered,
        siaddr=server,
        file=boot_file.encode("ascii"),
        flags=FLAG_BROADCAST,
    )


def binl_request(client_mac: str, xid: int, *, client: str, arch: int = ARCH_EFI_BC) -> bytes:
    """The PXE client's DHCPREQUEST to the boot server on UDP 4011 (PXE 2.1), unicast."""
    return dhcp_message(
        DHCPREQUEST,
        xid,
        client_mac,
        [
            *_pxe_client_options(arch, PXE_VENDOR_CLASS),
            # PXE_BOOT_ITEM (71) in option 43: type 0x8000 (vendor), layer 0 (PXE 2.1 table 2-1).
            (OPTION_VENDOR_SPECIFIC, bytes([71, 4, 0x80, 0x00, 0x00, 0x00, OPTION_END])),
        ],
        ciaddr=client,
    )


def binl_ack(
    client_mac: str, xid: int, *, server: str, client: str, boot_file: str, bcd: str | None = None
) -> bytes:
    """The boot server's DHCPACK on 4011: siaddr, option 66/67 and ``PXEClient``."""
    options = [
        (OPTION_SERVER_ID, ipv4(server)),
        (OPTION_VENDOR_CLASS, PXE_SERVER_VENDOR_CLASS.encode("ascii")),
        (OPTION_TFTP_SERVER, server.encode("ascii")),
        (OPTION_BOOTFILE, boot_file.encode("ascii")),
        (OPTION_CLIENT_UUID, b"\x00" + MACHINE_UUID),
    ]
    if bcd is not None:  # WDS: option 252, the boot configuration data path
        options.append((252, bcd.encode("ascii") + b"\x00"))
    return dhcp_message(DHCPACK, xid, client_mac, options, ciaddr=client, siaddr=server)


# --- DHCPv6 --------------------------------------------------------------------------------------


def v6_option(code: int, data: bytes) -> bytes:
    """One RFC 8415 21.1 option: 16-bit code, 16-bit length, data."""
    return struct.pack(">HH", code, len(data)) + data


def duid_ll(mac: str) -> bytes:
    """DUID-LL (RFC 8415 11.4): type 3, hardware type 1, the link-layer address."""
    return struct.pack(">HH", DUID_LL, HTYPE_ETHERNET) + mac_bytes(mac)


def duid_llt(mac: str, time: int = 0x2154EEE7) -> bytes:
    """DUID-LLT (RFC 8415 11.2): type 1, hardware type 1, time, the link-layer address."""
    return struct.pack(">HHI", DUID_LLT, HTYPE_ETHERNET, time) + mac_bytes(mac)


def duid_uuid(uuid: bytes = MACHINE_UUID) -> bytes:
    """DUID-UUID (RFC 6355 4): type 4 then the 16-octet UUID, as UEFI PXE firmware sends."""
    return struct.pack(">H", DUID_UUID) + uuid


def dhcpv6_message(message_type: int, transaction_id: int, options: Options) -> bytes:
    """A client/server message (RFC 8415 8): type, 24-bit transaction id, options."""
    header = bytes([message_type]) + transaction_id.to_bytes(3, "big")
    return header + b"".join(v6_option(code, data) for code, data in options)


def v6_vendor_class(enterprise: int, *items: bytes) -> bytes:
    """Vendor Class option data (RFC 8415 21.16): enterprise number, length-prefixed items."""
    return struct.pack(">I", enterprise) + b"".join(
        struct.pack(">H", len(item)) + item for item in items
    )


def dhcpv6_solicit(
    client_duid: bytes,
    transaction_id: int,
    *,
    vendor_class: str | None = PXE_VENDOR_CLASS,
    enterprise: int = ENTERPRISE_INTEL,
    arch: int | None = ARCH_EFI_BC,
) -> bytes:
    """A SOLICIT (RFC 8415 18.2.1) as PXE firmware sends it, with RFC 5970 network boot options."""
    options: list[tuple[int, bytes]] = [
        (V6_CLIENT_ID, client_duid),
        (V6_OPTION_REQUEST, struct.pack(">HHHH", V6_BOOT_FILE_URL, V6_BOOT_FILE_PARAM, 23, 24)),
        (V6_ELAPSED_TIME, struct.pack(">H", 0)),
        (V6_IA_NA, struct.pack(">III", 0x1D00FCEA, 0, 0)),
    ]
    if arch is not None:
        options.append((V6_CLIENT_ARCH, struct.pack(">H", arch)))
        options.append((V6_CLIENT_NII, bytes([1, 3, 16])))
    if vendor_class is not None:
        options.append((V6_VENDOR_CLASS, v6_vendor_class(enterprise, vendor_class.encode())))
    return dhcpv6_message(SOLICIT, transaction_id, options)


def dhcpv6_advertise(
    client_duid: bytes,
    server_duid: bytes,
    transaction_id: int,
    *,
    address: str = "2001:db8:100::30",
    boot_file_url: str | None = "tftp://[2001:db8:100::5]/boot/x64/wdsmgfw.efi",
    vendor_class: str | None = PXE_SERVER_VENDOR_CLASS,
) -> bytes:
    """The server's ADVERTISE (RFC 8415 18.3.9) with an address and a boot-file-url."""
    ia_address = v6_option(V6_IA_ADDRESS, ipv6(address) + struct.pack(">II", 375, 600))
    options: list[tuple[int, bytes]] = [
        (V6_IA_NA, struct.pack(">III", 0x1D00FCEA, 0, 0) + ia_address),
        (V6_CLIENT_ID, client_duid),
        (V6_SERVER_ID, server_duid),
        (V6_DNS_SERVERS, ipv6("2001:db8:100::1")),
    ]
    if boot_file_url is not None:
        options.append((V6_BOOT_FILE_URL, boot_file_url.encode("ascii")))
    if vendor_class is not None:
        options.append((V6_VENDOR_CLASS, v6_vendor_class(ENTERPRISE_INTEL, vendor_class.encode())))
    return dhcpv6_message(ADVERTISE, transaction_id, options)


def dhcpv6_information_request(client_duid: bytes, transaction_id: int) -> bytes:
    """An INFORMATION-REQUEST (RFC 8415 18.2.6): elapsed time is its one required option."""
    return dhcpv6_message(
        INFORMATION_REQUEST,
        transaction_id,
        [
            (V6_CLIENT_ID, client_duid),
            (V6_ELAPSED_TIME, struct.pack(">H", 100)),
            (V6_OPTION_REQUEST, struct.pack(">HH", 23, 24)),
            (V6_VENDOR_CLASS, v6_vendor_class(ENTERPRISE_MICROSOFT, b"MSFT 5.0")),
        ],
    )


def dhcpv6_relay_forward(
    relayed: bytes,
    *,
    link_address: str = "2001:db8:100::1",
    peer_address: str = "fe80::82e0:1dff:fe00:fcea",
    client_mac: str | None = None,
    hop_count: int = 0,
) -> bytes:
    """A RELAY-FORW (RFC 8415 9) around ``relayed``, optionally with the client's MAC (RFC 6939)."""
    options = [v6_option(V6_INTERFACE_ID, b"Gi0/1")]
    if client_mac is not None:
        link_layer = struct.pack(">H", HTYPE_ETHERNET) + mac_bytes(client_mac)
        options.append(v6_option(V6_CLIENT_LINK_LAYER, link_layer))
    options.append(v6_option(V6_RELAY_MESSAGE, relayed))
    header = bytes([RELAY_FORW, hop_count]) + ipv6(link_address) + ipv6(peer_address)
    return header + b"".join(options)
