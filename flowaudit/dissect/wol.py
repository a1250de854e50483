"""Wake-on-LAN: the magic packet a flow carries, its target MAC and whether a password follows.

AMD's Magic Packet white paper (publication 20213): six 0xFF octets (the synchronisation
stream) then the target's MAC address sixteen times, anywhere in the frame; the SecureOn
extension appends a 4- or 6-octet password. Over UDP it goes to port 9 or 7 (Configuration
Manager's wake-up proxy uses 25536), usually at the start of the payload but possibly after a
header of the sending tool, so the first datagram-sized span is searched.
"""

from __future__ import annotations

import re
from typing import Any

PROTOCOL = "wol"
TRANSPORTS = ("udp",)

Facts = dict[str, Any]

SYNC_STREAM = b"\xff" * 6
MAC_LENGTH = 6
REPEATS = 16
MAGIC_LENGTH = len(SYNC_STREAM) + MAC_LENGTH * REPEATS  # 102
PASSWORD_LENGTHS = (4, 6)
# The largest UDP payload of one unfragmented Ethernet frame (1500 - 20 IPv4 - 8 UDP): the first
# datagram the packet can sit in.
SEARCH_SPAN = 1472
# Runs of 0xFF: the synchronisation stream is the last six octets of a run, or earlier when
# the MAC itself starts with 0xFF octets (at most five: an all-0xFF MAC is not a target).
_FF_RUNS = re.compile(rb"\xff{6,}")
# A sync stream followed by the broadcast or the zero address is padding or fill, not a wake-up.
NOT_TARGETS = frozenset({b"\xff" * MAC_LENGTH, b"\x00" * MAC_LENGTH})


def _magic_packet_at(data: bytes, start: int) -> bytes | None:
    """The target MAC if a whole magic packet starts at ``start``, else None."""
    mac = data[start + len(SYNC_STREAM) : start + len(SYNC_STREAM) + MAC_LENGTH]
    if len(mac) != MAC_LENGTH or mac in NOT_TARGETS:
        return None
    if data[start + len(SYNC_STREAM) : start + MAGIC_LENGTH] != mac * REPEATS:
        return None
    return mac


def _find(data: bytes) -> tuple[int, bytes] | None:
    """(offset, target MAC) of the first magic packet within the first datagram-sized span."""
    span = data[:SEARCH_SPAN]
    for run in _FF_RUNS.finditer(span):
        if run.end() == len(span):
            # The MAC holds a byte other than 0xFF after the run: a run that ends the span
            # (0xFF fill, say) has no room for one.
            return None
        first = max(run.start(), run.end() - len(SYNC_STREAM) - (MAC_LENGTH - 1))
        for start in range(first, run.end() - len(SYNC_STREAM) + 1):
            if start + MAGIC_LENGTH > SEARCH_SPAN:
                return None
            mac = _magic_packet_at(span, start)
            if mac is not None:
                return start, mac
    return None


def _has_password(rest: bytes) -> bool:
    """Whether a SecureOn password follows the packet whose trailing bytes are ``rest``.

    Yes when ``rest`` is 4 or 6 octets, or 4 or 6 octets and then the next datagram's magic
    packet (a direction may hold datagrams back to back); other trailing bytes tell nothing.
    """
    if len(rest) in PASSWORD_LENGTHS:
        return True
    if rest.startswith(SYNC_STREAM) and _magic_packet_at(rest, 0) is not None:
        return False
    return any(
        rest[length:].startswith(SYNC_STREAM) and _magic_packet_at(rest, length) is not None
        for length in PASSWORD_LENGTHS
    )


def parse(c2s: bytes, s2c: bytes) -> Facts | None:
    """The magic packet's target in the client's direction (else the other's), or None."""
    for data in (c2s, s2c):
        if SYNC_STREAM not in data[:SEARCH_SPAN]:
            continue
        found = _find(data)
        if found is None:
            continue
        start, mac = found
        return {
            "target_mac": ":".join(f"{octet:02x}" for octet in mac),
            "secureon_password": _has_password(data[start + MAGIC_LENGTH :]),
        }
    return None
