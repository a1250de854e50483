"""DHCP and PXE conversations: every DHCPv4/BOOTP and DHCPv6 message of a UDP flow.

A flow is read when its first datagram is a message on the ports of the protocol: DHCPv4
(RFC 2131 4.1: servers on 67, clients on 68) with a BOOTP op code and the magic cookie after
the 236-octet header (RFC 2131 2, 3), the same format between a PXE client and the PXE boot
server on 4011 (PXE 2.1 2.2.4 "proxy DHCP"), or DHCPv6 (RFC 8415 7.2: clients on 546, servers
and relays on 547) of a known message type carrying the options RFC 8415 16 requires.

Each datagram is one message (``flowaudit.dissect.dhcp.message`` reads it) and one operation:
protocol ``dhcp`` or ``dhcpv6``, the message type name (RFC 2132 9.6, RFC 8415 7.3), the client
as target (the MAC of chaddr -- else of option 61 -- for DHCPv4, the client DUID in hex for
DHCPv6) and the transaction id, the option codes present, the addresses and the PXE boot
facts in ``extra``. A datagram sent twice is two messages (a client retransmits, RFC 2131
4.1), so it is recorded twice. The facts are the message types in order and the clients.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from flowaudit.dissect import dhcp as first_bytes

from .base import At, Dissector, Record

PROTOCOL = "dhcp"
TRANSPORTS = ("udp",)

DHCP_PORTS = (67, 68)  # RFC 2131 4.1
PXE_BOOT_SERVER_PORT = 4011  # PXE 2.1 2.2.4: the boot server (and proxy DHCP) listens here
DHCPV6_PORTS = (546, 547)  # RFC 8415 7.2

# RFC 2131 2 figure 1: offsets of the fixed fields read here (siaddr from the first-bytes module).
XID_AT, XID_LENGTH = 4, 4
CIADDR_AT, YIADDR_AT = 12, 16
IPV4_LENGTH = 4
OPTION_REQUESTED_ADDRESS = 50  # RFC 2132 9.1
OPTION_SERVER_ID = 54  # RFC 2132 9.7
# RFC 8415 8: msg-type then a 3-octet transaction-id; 9: relays carry hop count and addresses.
V6_XID_AT, V6_XID_LENGTH = 1, 3
V6_PEER_ADDRESS_AT, IPV6_LENGTH = 18, 16

MAX_TYPES = 64  # message types kept in order; more are counted
MAX_CLIENTS = 32
MAX_TEXT = 256


def _ports(ports: tuple[int, int], wanted: tuple[int, ...]) -> bool:
    return ports[0] in wanted or ports[1] in wanted


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """A DHCPv4/PXE message on 67, 68 or 4011, or a DHCPv6 message on 546 or 547."""
    if _ports(ports, (*DHCP_PORTS, PXE_BOOT_SERVER_PORT)):
        found = first_bytes.message(first)
        if found is not None and found["version"] == 4:
            return True
    if _ports(ports, DHCPV6_PORTS):
        found = first_bytes.message(first)
        return found is not None and found["version"] == 6
    return False


def _ipv4(raw: bytes) -> str | None:
    """A dotted address of 4 octets, None when absent or 0.0.0.0 (the field is not used)."""
    if len(raw) != IPV4_LENGTH or not any(raw):
        return None
    return str(ipaddress.IPv4Address(raw))


def _hex(raw: bytes) -> str | None:
    return raw[: MAX_TEXT // 2].hex() or None


def _v4_extra(data: bytes, found: dict[str, Any]) -> dict[str, Any]:
    """What a DHCPv4 message says beyond its type: RFC 2131 2 fields, RFC 2132 options."""
    options: dict[int, bytes] = found["options"]
    siaddr_at = first_bytes.SIADDR_AT
    extra: dict[str, Any] = {
        "xid": data[XID_AT : XID_AT + XID_LENGTH].hex(),
        "options": list(options),
        "client_address": _ipv4(data[CIADDR_AT : CIADDR_AT + IPV4_LENGTH]),
        "your_address": _ipv4(data[YIADDR_AT : YIADDR_AT + IPV4_LENGTH]),
        "requested_address": _ipv4(options.get(OPTION_REQUESTED_ADDRESS, b"")),
        "server_id": _ipv4(options.get(OPTION_SERVER_ID, b"")),
        "vendor_class": found["vendor_class"],
        "client_arch": found["client_arch"],
        "boot_file": found["boot_file"],  # option 67, else the file field (RFC 2132 9.5)
        "next_server": _ipv4(data[siaddr_at : siaddr_at + IPV4_LENGTH]),
        # Option 66 names the TFTP server; without it the first-bytes reader falls back on
        # siaddr, which is ``next_server`` here already.
        "tftp_server": found["tftp_server"] if first_bytes.OPTION_TFTP_SERVER in options else None,
    }
    return {key: value for key, value in extra.items() if value is not None}


def _innermost(found: dict[str, Any]) -> dict[str, Any]:
    """The client's message inside (nested) RELAY-FORW/RELAY-REPL, or the message itself."""
    for _ in range(first_bytes.HOP_COUNT_LIMIT + 1):
        if not found["relayed"]:
            break
        found = found["relayed"][0]
    return found


def _v6_extra(data: bytes, found: dict[str, Any]) -> dict[str, Any]:
    """What a DHCPv6 message says beyond its type (RFC 8415 8, 9, 21; RFC 5970 3)."""
    client = _innermost(found)
    options: dict[int, bytes] = client["options"]
    extra: dict[str, Any] = {"options": list(found["options"])}
    if client is found:
        extra["xid"] = data[V6_XID_AT : V6_XID_AT + V6_XID_LENGTH].hex()
    else:
        peer = data[V6_PEER_ADDRESS_AT : V6_PEER_ADDRESS_AT + IPV6_LENGTH]
        extra["relayed"] = client["type"]
        extra["peer_address"] = str(ipaddress.IPv6Address(peer))
        extra["relayed_options"] = list(options)
    extra["server_id"] = _hex(options.get(first_bytes.V6_SERVER_ID, b""))
    extra["vendor_class"] = client["vendor_class"]
    extra["client_arch"] = client["client_arch"]
    extra["boot_file"] = client["boot_file"]  # RFC 5970 3.1 boot-file-url
    return {key: value for key, value in extra.items() if value is not None}


class Conversation(Dissector):
    """The DHCP messages of one UDP flow, one operation each."""

    PROTOCOL = PROTOCOL

    def __init__(self, record: Record | None = None) -> None:
        super().__init__(record)
        self._types: list[str] = []
        self._clients: list[str] = []
        self._duids: list[str] = []
        self._messages = 0
        self._unread = 0

    def datagram(self, side: int, data: bytes, at: At) -> None:
        found = first_bytes.message(bytes(data))
        if found is None:
            self._unread += 1
            self.record.count("not_dhcp")
            self.record.truncate("dhcp: a datagram is not a DHCP message")
            return
        self._messages += 1
        if len(self._types) < MAX_TYPES:
            self._types.append(found["type"])
        else:
            self.record.count("message_types_dropped")
        if found["version"] == 4:
            target = found["client_mac"]
            extra = _v4_extra(data, found)
            protocol = "dhcp"
        else:
            client = _innermost(found)
            target = _hex(client["options"].get(first_bytes.V6_CLIENT_ID, b""))
            extra = _v6_extra(data, found)
            protocol = "dhcpv6"
            if target is not None and target not in self._duids and len(self._duids) < MAX_CLIENTS:
                self._duids.append(target)
        mac = found["client_mac"] if found["version"] == 4 else _innermost(found)["client_mac"]
        if mac is not None and mac not in self._clients and len(self._clients) < MAX_CLIENTS:
            self._clients.append(mac)
        self.record.op(at, side, protocol, found["type"], target=target, **extra)

    def facts(self) -> dict[str, Any]:
        """``message_types`` in the order seen (the first ``MAX_TYPES``), ``messages`` read,
        ``clients`` (their MACs: chaddr, option 61, or the DUID-LL/LLT or RFC 6939 option of
        DHCPv6), ``client_duids`` (DHCPv6) and ``unread`` (datagrams that were no message)."""
        return {
            "message_types": list(self._types),
            "messages": self._messages,
            "clients": list(self._clients),
            "client_duids": list(self._duids),
            "unread": self._unread,
        }
