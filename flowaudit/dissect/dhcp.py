"""DHCP and PXE: the DHCPv4/BOOTP and DHCPv6 messages of a flow, the vendor class, boot facts.

DHCPv4 (RFC 2131 2): a 236-octet BOOTP header (op 1 BOOTREQUEST / 2 BOOTREPLY, htype, hlen,
hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file), the magic cookie
99.130.83.99 and RFC 2132 options (53 message type, 60 vendor class, 66 TFTP server name, 67
bootfile name). A PXE client (RFC 4578 2; PXE 2.1) sends vendor class ``PXEClient:Arch:...`` and
options 93, 94, 97; the same format runs between the client and the PXE boot server (BINL) on
UDP 4011 -- the port is told apart elsewhere. DHCPv6 (RFC 8415 8, 9, 21): a message type, a
transaction id (or, for relay messages, hop count and two addresses) and 16-bit options (1/2
client/server DUID, 16 vendor class, RFC 5970 59 boot-file-url, 61 client architecture).

A direction's bytes may hold several datagrams one after the other (``flowaudit.dissect``), so
messages are found again in the stream: a DHCPv4 message ends with its End option (then zero
padding) and the next one is where a magic cookie sits 236 octets after an op code; DHCPv6
messages carry no length, but every assigned option code is below 256 while a message header
read as an option code is ``type << 8 | ...`` -- an option code of 256 or more begins the next
message.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

PROTOCOL = "dhcp"
TRANSPORTS = ("udp",)

Facts = dict[str, Any]

MAX_TEXT = 256
MAX_MESSAGES = 64  # a bound on the walk: 2048 octets hold at most 8 DHCPv4 messages

# --- DHCPv4 (RFC 2131 2 figure 1) ---
BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC_COOKIE = bytes([99, 130, 83, 99])  # RFC 2131 3 / RFC 2132 2
FIXED_HEADER = 236  # op .. file; the cookie follows
OPTIONS_START = FIXED_HEADER + len(MAGIC_COOKIE)
SIADDR_AT = 20
CHADDR_AT = 28
SNAME_AT, SNAME_LENGTH = 44, 64
FILE_AT, FILE_LENGTH = 108, 128
HTYPE_ETHERNET = 1
MAX_HLEN = 16  # chaddr is 16 octets

OPTION_PAD = 0
OPTION_END = 255
OPTION_OVERLOAD = 52  # RFC 2132 9.3: 1 file, 2 sname, 3 both hold options
OPTION_MESSAGE_TYPE = 53
OPTION_VENDOR_CLASS = 60
OPTION_CLIENT_ID = 61
OPTION_TFTP_SERVER = 66
OPTION_BOOTFILE = 67
OPTION_CLIENT_ARCH = 93  # RFC 4578 2.1
OPTION_CLIENT_NDI = 94  # RFC 4578 2.2
OPTION_CLIENT_UUID = 97  # RFC 4578 2.3
PXE_OPTIONS_V4 = (OPTION_CLIENT_ARCH, OPTION_CLIENT_NDI, OPTION_CLIENT_UUID)

# RFC 2132 9.6, RFC 3203 (FORCERENEW), RFC 4388 (leasequery), RFC 6926 (bulk leasequery),
# RFC 7724 (active leasequery).
MESSAGE_TYPES_V4 = {
    1: "DISCOVER",
    2: "OFFER",
    3: "REQUEST",
    4: "DECLINE",
    5: "ACK",
    6: "NAK",
    7: "RELEASE",
    8: "INFORM",
    9: "FORCERENEW",
    10: "LEASEQUERY",
    11: "LEASEUNASSIGNED",
    12: "LEASEUNKNOWN",
    13: "LEASEACTIVE",
    14: "BULKLEASEQUERY",
    15: "LEASEQUERYDONE",
    16: "ACTIVELEASEQUERY",
    17: "LEASEQUERYSTATUS",
    18: "TLS",
}
# A message without option 53 is plain BOOTP (RFC 951) with RFC 1497 vendor extensions.
BOOTP_NAMES = {BOOTREQUEST: "BOOTREQUEST", BOOTREPLY: "BOOTREPLY"}

# --- DHCPv6 (RFC 8415) ---
MESSAGE_TYPES_V6 = {
    1: "SOLICIT",
    2: "ADVERTISE",
    3: "REQUEST",
    4: "CONFIRM",
    5: "RENEW",
    6: "REBIND",
    7: "REPLY",
    8: "RELEASE",
    9: "DECLINE",
    10: "RECONFIGURE",
    11: "INFORMATION-REQUEST",
    12: "RELAY-FORW",
    13: "RELAY-REPL",
}
RELAY_FORW, RELAY_REPL = 12, 13
RELAY_HEADER = 34  # RFC 8415 9: msg-type, hop-count, link-address, peer-address
CLIENT_HEADER = 4  # RFC 8415 8: msg-type, transaction-id (3 octets)
V6_OPTION_HEADER = 4
HOP_COUNT_LIMIT = 8  # RFC 8415 7.6: relays nest at most this deep

V6_CLIENT_ID = 1
V6_SERVER_ID = 2
V6_ELAPSED_TIME = 8
V6_RELAY_MESSAGE = 9
V6_VENDOR_CLASS = 16
V6_BOOT_FILE_URL = 59  # RFC 5970 3.1
V6_CLIENT_ARCH = 61  # RFC 5970 3.3
V6_CLIENT_NII = 62  # RFC 5970 3.4
V6_CLIENT_LINK_LAYER = 79  # RFC 6939: the client's MAC, added by the first relay
PXE_OPTIONS_V6 = (V6_CLIENT_ARCH, V6_CLIENT_NII)

# RFC 8415 16 (message validation): the identifiers each message type must carry, else the
# receiver discards it. INFORMATION-REQUEST needs neither, but a client always adds Elapsed
# Time (18.2); relay messages carry the relayed message (9).
REQUIRED_OPTIONS_V6 = {
    1: (V6_CLIENT_ID,),
    2: (V6_CLIENT_ID, V6_SERVER_ID),
    3: (V6_CLIENT_ID, V6_SERVER_ID),
    4: (V6_CLIENT_ID,),
    5: (V6_CLIENT_ID, V6_SERVER_ID),
    6: (V6_CLIENT_ID,),
    7: (V6_SERVER_ID,),
    8: (V6_CLIENT_ID, V6_SERVER_ID),
    9: (V6_CLIENT_ID, V6_SERVER_ID),
    10: (V6_CLIENT_ID, V6_SERVER_ID),
    11: (V6_ELAPSED_TIME,),
    12: (V6_RELAY_MESSAGE,),
    13: (V6_RELAY_MESSAGE,),
}
# RFC 8415 11: a DUID is a 2-octet type then at most 128 octets; the shortest body of each type.
DUID_LLT, DUID_EN, DUID_LL, DUID_UUID = 1, 2, 3, 4
DUID_MIN_LENGTH = {DUID_LLT: 9, DUID_EN: 7, DUID_LL: 5, DUID_UUID: 18}
DUID_MAX_LENGTH = 130
DUID_UUID_LENGTH = 18  # RFC 6355 4

PXE_VENDOR_PREFIX = "PXEClient"  # PXE 2.1 table 2-1 (and RFC 5970 3.2 for DHCPv6)
# PXE 2.1 table 2-1: the class identifier embeds option 93 as five decimal digits.
_ARCH_IN_VENDOR_CLASS = re.compile(r"^PXEClient:Arch:(\d{5})(?::|$)")
_NOT_PAD = re.compile(rb"[^\x00]")  # the next octet that is not a Pad option (RFC 2132 3.1)


@dataclass
class _Message:
    """What one message says; the flow's facts are the first of each across its messages."""

    type_name: str
    vendor_class: str | None = None
    pxe_options: bool = False
    client_arch: int | None = None
    boot_file: str | None = None
    tftp_server: str | None = None
    client_mac: str | None = None
    inner: list[_Message] = field(default_factory=list)  # relayed DHCPv6 messages
    # The options read (code -> data; DHCPv4: RFC 3396 instances joined, DHCPv6: the first
    # instance), in the order they first appear: what ``message`` reports beyond the facts.
    options: dict[int, bytes] = field(default_factory=dict)


def _text(raw: bytes) -> str | None:
    """Option or field data as text up to its first NUL, cut to ``MAX_TEXT``; None if empty.

    RFC 2132 2 says option strings carry no NUL, but PXE servers often end 66/67 with one, and
    the sname and file fields are NUL-padded (RFC 2131 2).
    """
    raw = raw.split(b"\x00", 1)[0]
    if not raw:
        return None
    return raw[: 4 * MAX_TEXT].decode("utf-8", errors="replace")[:MAX_TEXT]


def _mac(raw: bytes) -> str:
    return ":".join(f"{octet:02x}" for octet in raw)


# --- DHCPv4 ---------------------------------------------------------------------------------------


def _v4_options(data: bytes, start: int, stop: int, options: dict[int, bytes]) -> int | None:
    """Read options from ``start`` up to ``stop`` into ``options``; the offset past End, if seen.

    RFC 2132 2: Pad (0) and End (255) are one octet, every other option is code, length, data.
    RFC 3396: several instances of one code are one option, their data concatenated. An option
    cut by ``stop`` is left out.
    """
    pieces: dict[int, list[bytes]] = {}  # joined once at the end: no copy per instance
    end = _v4_option_pieces(data, start, stop, pieces)
    for code, parts in pieces.items():
        options[code] = options.get(code, b"") + b"".join(parts)
    return end


def _v4_option_pieces(
    data: bytes, start: int, stop: int, pieces: dict[int, list[bytes]]
) -> int | None:
    pos = start
    while pos < stop:
        code = data[pos]
        if code == OPTION_PAD:  # a run of Pad options is passed over in one search
            found = _NOT_PAD.search(data, pos, stop)
            if found is None:
                return None
            pos = found.start()
            continue
        if code == OPTION_END:
            return pos + 1
        if pos + 2 > stop:
            return None
        end = pos + 2 + data[pos + 1]
        if end > stop:
            return None
        pieces.setdefault(code, []).append(data[pos + 2 : end])
        pos = end
    return None


def _v4_message(data: bytes, at: int) -> tuple[_Message, int | None] | None:
    """The DHCPv4 message starting at ``at`` and the offset where its End option stops."""
    if len(data) < at + OPTIONS_START:
        return None
    op, htype, hlen = data[at], data[at + 1], data[at + 2]
    if op not in BOOTP_NAMES or hlen > MAX_HLEN:
        return None
    if data[at + FIXED_HEADER : at + OPTIONS_START] != MAGIC_COOKIE:
        return None
    options: dict[int, bytes] = {}
    end = _v4_options(data, at + OPTIONS_START, len(data), options)
    # RFC 2132 9.3: the file and sname fields may hold options instead (file first).
    overload_data = options.get(OPTION_OVERLOAD, b"")
    overload = overload_data[0] if len(overload_data) == 1 else 0
    file_field = data[at + FILE_AT : at + FILE_AT + FILE_LENGTH]
    if overload & 1:
        _v4_options(data, at + FILE_AT, at + FILE_AT + FILE_LENGTH, options)
        file_field = b""
    if overload & 2:
        _v4_options(data, at + SNAME_AT, at + SNAME_AT + SNAME_LENGTH, options)

    message_type = options.get(OPTION_MESSAGE_TYPE, b"")
    if len(message_type) == 1:
        number = message_type[0]
        name = MESSAGE_TYPES_V4.get(number, f"UNKNOWN-{number}")
    else:
        name = BOOTP_NAMES[op]
    message = _Message(name, options=options)
    message.vendor_class = _text(options.get(OPTION_VENDOR_CLASS, b""))
    message.pxe_options = any(code in options for code in PXE_OPTIONS_V4)
    arch = options.get(OPTION_CLIENT_ARCH, b"")
    if len(arch) >= 2:  # RFC 4578 2.1: a list of 16-bit types; the first is the preferred one
        message.client_arch = int.from_bytes(arch[:2], "big")
    message.boot_file = _text(options.get(OPTION_BOOTFILE, b"")) or _text(file_field)
    siaddr = data[at + SIADDR_AT : at + SIADDR_AT + 4]
    message.tftp_server = _text(options.get(OPTION_TFTP_SERVER, b""))
    if message.tftp_server is None and any(siaddr):
        message.tftp_server = str(ipaddress.IPv4Address(siaddr))
    if htype == HTYPE_ETHERNET and hlen == 6:
        message.client_mac = _mac(data[at + CHADDR_AT : at + CHADDR_AT + 6])
    else:
        client_id = options.get(OPTION_CLIENT_ID, b"")  # RFC 2132 9.14: type 1 + hardware address
        if len(client_id) == 7 and client_id[0] == HTYPE_ETHERNET:
            message.client_mac = _mac(client_id[1:])
    return message, end


def _next_v4(data: bytes, end: int) -> int | None:
    """Where the next DHCPv4 message begins after one whose End option stops at ``end``."""
    cookie = data.find(MAGIC_COOKIE, end + FIXED_HEADER)
    while cookie >= 0:
        start = cookie - FIXED_HEADER
        if data[start] in BOOTP_NAMES:
            return start
        cookie = data.find(MAGIC_COOKIE, cookie + 1)
    return None


def _v4_messages(data: bytes) -> list[_Message]:
    messages: list[_Message] = []
    at: int | None = 0
    while at is not None and len(messages) < MAX_MESSAGES:
        found = _v4_message(data, at)
        if found is None:
            break
        messages.append(found[0])
        end = found[1]
        at = None if end is None else _next_v4(data, end)
    return messages


# --- DHCPv6 ---------------------------------------------------------------------------------------


def _valid_duid(duid: bytes) -> bool:
    """RFC 8415 11: a DUID of a known type, long enough for its fields, at most 130 octets."""
    if len(duid) < 2 or len(duid) > DUID_MAX_LENGTH:
        return False
    duid_type = int.from_bytes(duid[:2], "big")
    minimum = DUID_MIN_LENGTH.get(duid_type)
    if minimum is None or len(duid) < minimum:
        return False
    return duid_type != DUID_UUID or len(duid) == DUID_UUID_LENGTH


def _duid_mac(duid: bytes) -> str | None:
    """The Ethernet address in a DUID-LLT or DUID-LL (RFC 8415 11.2, 11.4), else None."""
    duid_type = int.from_bytes(duid[:2], "big")
    hardware = int.from_bytes(duid[2:4], "big")
    if hardware != HTYPE_ETHERNET:
        return None
    if duid_type == DUID_LLT and len(duid) == 14:
        return _mac(duid[8:14])
    if duid_type == DUID_LL and len(duid) == 10:
        return _mac(duid[4:10])
    return None


def _v6_options(data: bytes, start: int) -> tuple[dict[int, bytes], int | None] | None:
    """Options from ``start``: (the first data of each code, where the next message begins).

    An option cut by the end of ``data`` is left out; None when an option code is 0 (reserved).
    """
    options: dict[int, bytes] = {}
    pos = start
    while pos + V6_OPTION_HEADER <= len(data):
        code = int.from_bytes(data[pos : pos + 2], "big")
        if code == 0:
            return None
        if code > 0xFF:  # no option is assigned this high: a message header (type << 8 | ...)
            return options, pos
        end = pos + V6_OPTION_HEADER + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > len(data):
            break
        options.setdefault(code, data[pos + V6_OPTION_HEADER : end])
        pos = end
    return options, None


def _v6_message(data: bytes, depth: int = 0) -> tuple[_Message, int | None] | None:
    """The DHCPv6 message at the start of ``data`` and where the next one begins."""
    if not data or data[0] not in MESSAGE_TYPES_V6:
        return None
    message_type = data[0]
    relay = message_type in (RELAY_FORW, RELAY_REPL)
    header = RELAY_HEADER if relay else CLIENT_HEADER
    if len(data) < header + V6_OPTION_HEADER:
        return None
    read = _v6_options(data, header)
    if read is None:
        return None
    options, next_at = read
    if any(code not in options for code in REQUIRED_OPTIONS_V6[message_type]):
        return None
    for code in (V6_CLIENT_ID, V6_SERVER_ID):
        if code in options and not _valid_duid(options[code]):
            return None
    if V6_ELAPSED_TIME in options and len(options[V6_ELAPSED_TIME]) != 2:
        return None
    message = _Message(MESSAGE_TYPES_V6[message_type], options=options)
    if relay:
        if depth >= HOP_COUNT_LIMIT:
            return None
        inner = _v6_message(options[V6_RELAY_MESSAGE], depth + 1)
        if inner is None:
            return None
        message.inner.append(inner[0])
    vendor = options.get(V6_VENDOR_CLASS, b"")
    # RFC 8415 21.16: enterprise-number, then vendor-class-data items each with a 16-bit length.
    if len(vendor) >= 6:
        item_end = 6 + int.from_bytes(vendor[4:6], "big")
        message.vendor_class = _text(vendor[6:item_end])
    message.pxe_options = any(code in options for code in PXE_OPTIONS_V6)
    arch = options.get(V6_CLIENT_ARCH, b"")
    if len(arch) >= 2:
        message.client_arch = int.from_bytes(arch[:2], "big")
    message.boot_file = _text(options.get(V6_BOOT_FILE_URL, b""))
    message.tftp_server = _tftp_host(message.boot_file)
    if V6_CLIENT_ID in options:
        message.client_mac = _duid_mac(options[V6_CLIENT_ID])
    link_layer = options.get(V6_CLIENT_LINK_LAYER, b"")
    if message.client_mac is None and len(link_layer) == 8 and link_layer[:2] == b"\x00\x01":
        message.client_mac = _mac(link_layer[2:])
    return message, next_at


def _tftp_host(url: str | None) -> str | None:
    """The server of a ``tftp://`` boot-file-url (RFC 5970 3.1 uses RFC 3986 URLs)."""
    if url is None or not url.lower().startswith("tftp://"):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:  # a malformed bracketed address
        return None
    return host or None


def _v6_messages(data: bytes) -> list[_Message]:
    messages: list[_Message] = []
    at: int | None = 0
    while at is not None and len(messages) < MAX_MESSAGES:
        found = _v6_message(data[at:])
        if found is None:
            break
        messages.append(found[0])
        at = None if found[1] is None else at + found[1]
    return messages


# --- both -----------------------------------------------------------------------------------------


def _looks_v4(data: bytes) -> bool:
    return (
        len(data) >= OPTIONS_START
        and data[0] in BOOTP_NAMES
        and data[FIXED_HEADER:OPTIONS_START] == MAGIC_COOKIE
    )


def _arch_of(vendor_class: str | None) -> int | None:
    """The architecture a ``PXEClient:Arch:xxxxx:...`` class names, when option 93/61 is absent."""
    found = _ARCH_IN_VENDOR_CLASS.match(vendor_class or "")
    return int(found.group(1)) if found else None


def _first(values: list[Any]) -> Any:
    return next((value for value in values if value is not None), None)


def _with_relayed(messages: list[_Message]) -> list[_Message]:
    """The messages followed by those relayed inside them (for the facts of the client)."""
    everything: list[_Message] = []
    pending = list(messages)
    while pending:
        message = pending.pop(0)
        everything.append(message)
        pending.extend(message.inner)
    return everything


def _described(found: _Message) -> Facts:
    return {
        "type": found.type_name,
        "options": found.options,
        "vendor_class": found.vendor_class,
        "pxe_options": found.pxe_options,
        "client_arch": found.client_arch,
        "boot_file": found.boot_file,
        "tftp_server": found.tftp_server,
        "client_mac": found.client_mac,
        "relayed": [_described(inner) for inner in found.inner],
    }


def message(data: bytes) -> Facts | None:
    """The DHCPv4 or DHCPv6 message at the start of one whole UDP datagram, else None.

    For ``flowaudit.stream.dhcp``, which reads every datagram of a flow: ``version`` (4 or 6),
    ``type`` (the message type name), ``options`` (code -> data, in the order first seen), the
    facts of the message as ``parse`` reads them (``vendor_class``, ``pxe_options``,
    ``client_arch``, ``boot_file``, ``tftp_server``, ``client_mac``) and ``relayed`` (the
    messages a DHCPv6 relay message carries, described the same way, without ``version``).
    The fixed fields (xid, addresses) are at the offsets of RFC 2131 2 / RFC 8415 8, 9.
    """
    if _looks_v4(data):
        found = _v4_message(data, 0)
        version = 4
    else:
        found = _v6_message(data)
        version = 6
    if found is None:
        return None
    return {"version": version, **_described(found[0])}


def parse(c2s: bytes, s2c: bytes) -> Facts | None:
    """DHCP facts when a direction starts with a DHCPv4 or DHCPv6 message, else None."""
    if _looks_v4(c2s) or _looks_v4(s2c):
        version = 4
        client, server = _v4_messages(c2s), _v4_messages(s2c)
    else:
        version = 6
        client, server = _v6_messages(c2s), _v6_messages(s2c)
    if not client and not server:
        return None
    # Only the outer messages name the exchange; a relay's client message adds its facts.
    messages = client + server
    names: list[str] = []
    for message in messages:
        if message.type_name not in names:
            names.append(message.type_name)
    everything = _with_relayed(messages)
    vendor_class = _first([m.vendor_class for m in everything])
    pxe = any(m.pxe_options for m in everything) or any(
        m.vendor_class is not None and m.vendor_class.startswith(PXE_VENDOR_PREFIX)
        for m in everything
    )
    client_arch = _first([m.client_arch for m in everything])
    if client_arch is None:
        client_arch = _first([_arch_of(m.vendor_class) for m in everything])
    return {
        "version": version,
        "message_type": messages[0].type_name,
        "message_types": names,
        "vendor_class": vendor_class,
        "pxe": pxe,
        "client_arch": client_arch,
        "boot_file": _first([m.boot_file for m in everything]),
        "tftp_server": _first([m.tftp_server for m in everything]),
        "client_mac": _first([m.client_mac for m in everything]),
    }
