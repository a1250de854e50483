"""TFTP conversations: requests, option negotiation, errors and one summary of each transfer.

RFC 1350 4: a client sends RRQ or WRQ to port 69; the server answers from a port it chooses
(the transfer identifier), so the transfer is a UDP flow of its own, between two ports that
are neither 69 -- the engine offers its first datagram, which is then OACK (RFC 2347), DATA of
block 1 (an RRQ answered), ACK of block 0 (a WRQ or OACK answered) or ERROR. Both kinds of
flow are read here; each datagram is one packet (``flowaudit.dissect.tftp.message``).

Operations: RRQ and WRQ (target the file name, ``mode`` and RFC 2347 ``options``), OACK
(``options``), ERROR (status the RFC 1350 5 / appendix error name, ``code`` and ``message``)
and, instead of one entry per block, ONE ``TRANSFER`` entry at the first DATA or ACK, sent by
the side that sends the data and kept up to date: ``blocks`` (distinct DATA blocks),
``bytes`` (their data, each block once), ``last_block`` (number of the highest block),
``retransmitted`` (DATA of a block already seen), ``acks`` and ``complete`` (the highest block
is shorter than the block size: RFC 1350 6, the end of the transfer). The block size is 512
(RFC 1350 1) unless an OACK in the flow grants ``blksize`` (RFC 2348). Block numbers are 16
bits and wrap after 65535 (to 0 or to 1, both seen in practice; RFC 1350 says nothing, RFC
7440 3 notes the rollover): a block number is read as the nearest one to the highest block
seen, forward up to half the number space, so a long transfer counts every block once.

A datagram sent twice is a retransmission: requests, OACKs and errors are recorded again (the
peer did send them twice), a DATA block is counted once in ``blocks``/``bytes`` and again in
``retransmitted``.
"""

from __future__ import annotations

from typing import Any

from flowaudit.dissect import tftp as first_bytes

from .base import At, Dissector, Record

PROTOCOL = "tftp"
TRANSPORTS = ("udp",)

SERVER_PORT = 69  # RFC 1350 4
EPHEMERAL_FROM = 1024  # a transfer runs between ports chosen by each end, not well-known ones
HEADER = first_bytes.HEADER
DEFAULT_BLOCK_SIZE = 512  # RFC 1350 1
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE = 8, 65464  # RFC 2348 blksize range
BLOCK_NUMBERS = 1 << 16  # RFC 1350 5: a 2-octet block number
HALF_BLOCK_NUMBERS = BLOCK_NUMBERS // 2
ACK_LENGTH = HEADER  # RFC 1350 5 figure 5-3: opcode and block number, nothing else
MAX_ERRORS = 16

# RFC 1350 appendix "Error Codes"; 8 is RFC 2347's "terminate transfer due to option negotiation".
ERROR_NAMES = {
    0: "Not defined",
    1: "File not found",
    2: "Access violation",
    3: "Disk full or allocation exceeded",
    4: "Illegal TFTP operation",
    5: "Unknown transfer ID",
    6: "File already exists",
    7: "No such user",
    8: "Option negotiation failed",
}


def _opens_transfer(first: bytes, found: dict[str, Any]) -> bool:
    """Whether the packet can be the first of a transfer flow (from the server's new port).

    The rules of ``flowaudit.dissect.tftp`` (DATA of block 1, ACK of block 0 or 1, ERROR of a
    defined code with its text, OACK of whole pairs), and a length that fits the opcode: an ACK
    is 4 octets, DATA at most a block of the largest size RFC 2348 allows.
    """
    opcode = found["opcode"]
    if opcode == "DATA":
        return found["block"] == first_bytes.FIRST_BLOCK and len(first) <= HEADER + MAX_BLOCK_SIZE
    if opcode == "ACK":
        return found["block"] in first_bytes.FIRST_ACKS and len(first) == ACK_LENGTH
    if opcode == "ERROR":
        return bool(found["error_code"] <= first_bytes.MAX_ERROR_CODE)
    return opcode == "OACK"


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """RRQ/WRQ with a file name and a mode to port 69, or a transfer's first packet between
    two ephemeral ports."""
    found = first_bytes.message(first)
    if found is None:
        return False
    if SERVER_PORT in ports:
        return bool(found["request"])
    if min(ports) < EPHEMERAL_FROM:
        return False
    return _opens_transfer(first, found)


def _block_size(options: dict[str, str]) -> int | None:
    """The ``blksize`` an OACK grants (RFC 2348), if it is a number in range."""
    value = options.get("blksize", "")
    if not value.isdigit() or len(value) > 5:
        return None
    size = int(value)
    return size if MIN_BLOCK_SIZE <= size <= MAX_BLOCK_SIZE else None


class Conversation(Dissector):
    """The TFTP packets of one UDP flow: request flow (port 69) or transfer flow."""

    PROTOCOL = PROTOCOL

    def __init__(self, record: Record | None = None) -> None:
        super().__init__(record)
        self._filename: str | None = None
        self._block_size = DEFAULT_BLOCK_SIZE
        self._highest: int | None = None  # the highest block seen, counted across wraps
        self._last_length = 0  # data octets of that block
        self._blocks = 0
        self._bytes = 0
        self._retransmitted = 0
        self._acks = 0
        self._errors: list[dict[str, Any]] = []
        self._transfer: dict[str, Any] | None = None

    # --- blocks ---

    def _absolute(self, number: int) -> int:
        """The block ``number`` (16 bits) as a count from the start of the transfer: the one
        nearest the highest block seen, up to half the number space either way."""
        if self._highest is None:
            return number
        delta = (number - self._highest) % BLOCK_NUMBERS
        if delta < HALF_BLOCK_NUMBERS:
            return self._highest + delta
        return self._highest - (BLOCK_NUMBERS - delta)

    def _open_transfer(self, at: At, data_side: int) -> None:
        if self._transfer is None:
            self._transfer = self.record.op(
                at, data_side, PROTOCOL, "TRANSFER", target=self._filename
            )

    def _summary(self) -> dict[str, Any]:
        return {
            "blocks": self._blocks,
            "bytes": self._bytes,
            "last_block": None if self._highest is None else self._highest % BLOCK_NUMBERS,
            "retransmitted": self._retransmitted,
            "acks": self._acks,
            "block_size": self._block_size,
            "complete": self._highest is not None and self._last_length < self._block_size,
        }

    def _update(self) -> None:
        if self._transfer is not None:
            self._transfer.update(self._summary())

    def _data(self, side: int, number: int, length: int, at: At) -> None:
        self._open_transfer(at, side)
        block = self._absolute(number)
        if self._highest is not None and block <= self._highest:
            self._retransmitted += 1
        else:
            self._highest = block
            self._last_length = length
            self._blocks += 1
            self._bytes += length
        self._update()

    def _ack(self, side: int, at: At) -> None:
        self._open_transfer(at, 1 - side)  # the data comes from the other end
        self._acks += 1
        self._update()

    # --- packets ---

    def datagram(self, side: int, data: bytes, at: At) -> None:
        found = first_bytes.message(bytes(data))
        if found is None:
            self.record.count("not_tftp")
            self.record.truncate("tftp: a datagram is not a TFTP packet")
            return
        opcode = found["opcode"]
        if opcode == "DATA":
            self._data(side, found["block"], len(data) - HEADER, at)
        elif opcode == "ACK":
            self._ack(side, at)
        elif opcode in ("RRQ", "WRQ"):
            if self._filename is None:
                self._filename = found["filename"]
            self.record.op(
                at,
                side,
                PROTOCOL,
                opcode,
                target=found["filename"],
                mode=found["mode"],
                options=found["options"],
            )
        elif opcode == "OACK":
            size = _block_size(found["options"])
            if size is not None:
                self._block_size = size
                self._update()
            self.record.op(at, side, PROTOCOL, opcode, options=found["options"])
        else:  # ERROR
            code = found["error_code"]
            status = ERROR_NAMES.get(code, f"Error {code}")
            text = found["error_message"]
            self.record.op(
                at, side, PROTOCOL, opcode, self._filename, status, code=code, message=text
            )
            if len(self._errors) < MAX_ERRORS:
                self._errors.append({"code": code, "status": status, "message": text})
            else:
                self.record.count("errors_dropped")

    def end(self) -> None:
        self._update()

    def facts(self) -> dict[str, Any]:
        """The transfer's summary (as in the ``TRANSFER`` entry; ``complete`` is false when no
        DATA was seen), the ``errors`` (code, status, message; the first ``MAX_ERRORS``) and the
        ``filename`` of the first request in the flow."""
        self._update()
        return {**self._summary(), "errors": list(self._errors), "filename": self._filename}
