"""Real Wake-on-LAN bytes for tests: the magic packet, with or without a SecureOn password.

AMD's "Magic Packet Technology" white paper (publication 20213): six 0xFF octets (the
synchronisation stream), then the target's 48-bit MAC address sixteen times, anywhere in the
frame; SecureOn (as tshark's ``wol`` dissector reads it) appends a 4- or 6-octet password.
Sent as a UDP broadcast to port 9 (discard) or 7 (echo); Configuration Manager's wake-up proxy
sends them to UDP 25536.
"""

from __future__ import annotations

SYNC_STREAM = b"\xff" * 6
REPEATS = 16
WOL_PORT = 9
WAKEUP_PROXY_PORT = 25536


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def magic_packet(target_mac: str, password: bytes = b"") -> bytes:
    """The magic packet for ``target_mac``; ``password`` of 4 or 6 octets when given."""
    if password and len(password) not in (4, 6):
        raise ValueError("a SecureOn password is 4 or 6 octets")
    return SYNC_STREAM + mac_bytes(target_mac) * REPEATS + password
