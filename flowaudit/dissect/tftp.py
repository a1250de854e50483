"""TFTP: the request, option negotiation or first transfer packet that opens a TFTP flow.

RFC 1350 5: every packet starts with a 16-bit opcode -- 1 RRQ and 2 WRQ (filename NUL mode
NUL, the mode ``netascii``, ``octet`` or ``mail`` in any case), 3 DATA (block number, data),
4 ACK (block number), 5 ERROR (error code, message NUL) -- and RFC 2347 adds options after a
request's mode (``name NUL value NUL``, names case-insensitive; RFC 2348 ``blksize``, RFC 2349
``timeout`` and ``tsize``) and 6 OACK, the server's acknowledgement of them.

The server answers from a newly chosen port (RFC 1350 4, the transfer identifier; the ports
page's note 4), so its answer is a flow of its own that starts with OACK, DATA, ACK or ERROR.
Those carry no more than a 4-octet header, so they count only where a transfer begins: DATA of
block 1, ACK of block 0 (a WRQ or OACK answered) or 1, ERROR with a defined code and a NUL-ended
text, OACK of well-formed pairs; the classifier ties such a flow to its request on port 69.
"""

from __future__ import annotations

import re
from typing import Any

PROTOCOL = "tftp"
TRANSPORTS = ("udp",)

Facts = dict[str, Any]

MAX_TEXT = 256

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
OPCODE_NAMES = {RRQ: "RRQ", WRQ: "WRQ", DATA: "DATA", ACK: "ACK", ERROR: "ERROR", OACK: "OACK"}
REQUESTS = (RRQ, WRQ)
MODES = frozenset({"netascii", "octet", "mail"})  # RFC 1350 1 (case-insensitive)
HEADER = 4  # opcode + block number / error code
FIRST_BLOCK = 1
FIRST_ACKS = (0, 1)  # 0 answers a WRQ or an OACK (RFC 1350 4, RFC 2347), 1 the first DATA
MAX_ERROR_CODE = 8  # RFC 1350 appendix 0..7, RFC 2347 8 (option negotiation refused)
MAX_OPTIONS = 32
# Octets a netascii string may not hold (controls and DEL; NUL ends the string), and the same
# with tab, CR and LF allowed, as in an error message: found in one search, not octet by octet.
_NOT_NETASCII = re.compile(rb"[\x01-\x1f\x7f]")
_NOT_NETASCII_TEXT = re.compile(rb"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _string(data: bytes, pos: int, *, line_breaks: bool = False) -> tuple[bytes, int] | None:
    """The NUL-ended string at ``pos`` and the offset past its NUL; None if unended or binary.

    RFC 1350 5: strings are netascii -- printable characters (octets from 0x80 are let through
    for non-ASCII file names); an error text may also hold tab, CR and LF.
    """
    end = data.find(b"\x00", pos)
    if end < 0:
        return None
    if (_NOT_NETASCII_TEXT if line_breaks else _NOT_NETASCII).search(data, pos, end):
        return None
    return data[pos:end], end + 1


def _text(raw: bytes) -> str:
    return raw[: 4 * MAX_TEXT].decode("utf-8", errors="replace")[:MAX_TEXT]


def _options(data: bytes, pos: int, *, strict: bool) -> dict[str, str] | None:
    """RFC 2347 ``name NUL value NUL`` pairs from ``pos`` until the data or the datagram ends.

    A zero octet where a name would start is the next datagram's opcode. In a request the
    options stop quietly at the first malformed or cut pair (the request is already certain);
    with ``strict`` (an OACK, which has nothing else to show for itself) they must all be whole.
    """
    options: dict[str, str] = {}
    pairs = 0  # read, a name given twice included: the bound holds for any bytes
    while pos < len(data) and data[pos] != 0 and pairs < MAX_OPTIONS:
        pairs += 1
        name = _string(data, pos)
        value = None if name is None else _string(data, name[1])
        if name is None or value is None:
            return None if strict else options
        options.setdefault(_text(name[0]).lower(), _text(value[0]))
        pos = value[1]
    return options


def _facts(opcode: int) -> Facts:
    return {
        "opcode": OPCODE_NAMES[opcode],
        "filename": None,
        "mode": None,
        "options": {},
        "block": None,
        "error_code": None,
        "error_message": None,
        "request": opcode in REQUESTS,
    }


def _request(data: bytes, facts: Facts) -> bool:
    filename = _string(data, 2)
    mode = None if filename is None else _string(data, filename[1])
    if filename is None or mode is None:
        return False
    mode_name = mode[0].decode("ascii", errors="replace").lower()
    if mode_name not in MODES:
        return False
    facts["filename"] = _text(filename[0])
    facts["mode"] = mode_name
    facts["options"] = _options(data, mode[1], strict=False) or {}
    return True


def message(data: bytes) -> Facts | None:
    """Facts of the TFTP packet at the start of ``data`` (any block number or error code), or
    None when it is not one; ``flowaudit.stream.tftp`` reads every datagram of a flow with it."""
    if len(data) < HEADER or data[0] != 0 or data[1] not in OPCODE_NAMES:
        return None
    opcode = data[1]
    facts = _facts(opcode)
    number = int.from_bytes(data[2:4], "big")
    if opcode in REQUESTS:
        return facts if _request(data, facts) else None
    if opcode in (DATA, ACK):
        facts["block"] = number
    elif opcode == ERROR:
        text = _string(data, HEADER, line_breaks=True)
        if text is None:
            return None
        facts["error_code"] = number
        facts["error_message"] = _text(text[0])
    else:  # OACK
        options = _options(data, 2, strict=True)
        if not options:
            return None
        facts["options"] = options
    return facts


def _first_message(data: bytes) -> Facts | None:
    """Facts of the TFTP packet at the start of ``data`` if it can open a TFTP flow, else None."""
    facts = message(data)
    if facts is None:
        return None
    opcode = facts["opcode"]
    if opcode == "DATA" and facts["block"] != FIRST_BLOCK:
        return None
    if opcode == "ACK" and facts["block"] not in FIRST_ACKS:
        return None
    if opcode == "ERROR" and facts["error_code"] > MAX_ERROR_CODE:
        return None
    return facts


def parse(c2s: bytes, s2c: bytes) -> Facts | None:
    """Facts of the first TFTP packet of the client's direction (else the server's), or None.

    A direction that holds bytes must open with a packet that can start a TFTP flow, unless the
    client's opens with a request: then the other side is not looked at (a server answering
    from port 69 is the exception, RFC 1350 4, and its first packet is not needed).
    """
    if not c2s:
        return _first_message(s2c)
    client = _first_message(c2s)
    if client is None:
        return None
    if not client["request"] and s2c and _first_message(s2c) is None:
        return None
    return client
