"""What every incremental dissector shares: where an event happened, the bounded record of a
conversation, and the framing of length-prefixed PDUs that reads headers and skips bodies.

A conversation has two sides: ``A`` is the sender of the flow's first packet, ``B`` the other
end. Which of them is the client is decided when the flow table is finished; the record keeps
sides and the engine turns them into ``c2s``/``s2c`` then. Dissectors tell requests from
responses by the protocol itself (SMB2 flags, DCE/RPC packet types, HTTP start lines), never
by side.

Every dissector is fed by the engine (``engine.py``): ``data`` with in-order TCP payload of one
side (any split, any size: a PDU may arrive a byte at a time), ``gap`` where TCP bytes are
missing, ``datagram`` with one whole UDP payload. Nothing here raises on any input: a reader
that cannot follow a side any more stops reading it and says why in ``record.truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

A = 0
B = 1

# Bounds of one conversation's record: operations kept in order (the rest counted), identities
# kept (the same identity twice is kept once), bytes of one PDU a dissector may read.
MAX_OPERATIONS = 256
MAX_IDENTITIES = 32
MAX_PDU_KEEP = 64 * 1024
MAX_DROPPED_NAMES = 64  # distinct operation names counted past MAX_OPERATIONS
# ``Dissector.skip`` of a side read no more: the engine passes over the rest of it unread.
SKIP_ALL = 1 << 62


@dataclass(slots=True)
class At:
    """Where something happened: the frame (1-based, in its file), time and file of the packet."""

    frame: int
    ts_ns: int
    file: int = 0  # index of the capture file in the set (frames are numbered per file)


@dataclass
class Record:
    """What one conversation yields, bounded: operations, identities, truncations, counters.

    ``operations`` entries are dicts with ``ts_ns``, ``frame``, ``side`` (``A``/``B``: who sent
    the message the entry was made from), ``protocol``, ``operation`` and, where known,
    ``target`` and ``status`` (the engine turns ``ts_ns`` and ``side`` into ``time`` and
    ``direction``). Past ``MAX_OPERATIONS`` entries are counted in ``operations_dropped``, and
    by protocol and operation name in ``dropped_by``.
    """

    operations: list[dict[str, Any]] = field(default_factory=list)
    operations_dropped: int = 0
    dropped_by: dict[str, int] = field(default_factory=dict)  # "protocol operation" -> count
    identities: list[dict[str, Any]] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    # Operations all records of a run may still keep (shared, one element), None: no bound.
    budget: list[int] | None = None

    def op(
        self,
        at: At,
        side: int,
        protocol: str,
        operation: str,
        target: str | None = None,
        status: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add an operation; returns its entry, which the caller may complete later (a status
        from the response). Past the bound the entry is counted and returned, but not kept."""
        entry: dict[str, Any] = {
            "ts_ns": at.ts_ns,
            "frame": at.frame,
            "side": side,
            "protocol": protocol,
            "operation": operation,
        }
        if at.file:
            entry["file_index"] = at.file
        if target is not None:
            entry["target"] = target
        if status is not None:
            entry["status"] = status
        entry.update(extra)
        budget = self.budget
        if len(self.operations) >= MAX_OPERATIONS:
            self._drop(protocol, operation)
        elif budget is not None and budget[0] <= 0:
            self._drop(protocol, operation)
            self.truncate("operations of the whole run past their bound")
        else:
            self.operations.append(entry)
            if budget is not None:
                budget[0] -= 1
        return entry

    def _drop(self, protocol: str, operation: str) -> None:
        """Count an operation not kept, by protocol and name (what a flow of 1,400 netlogon
        calls did is still told)."""
        self.operations_dropped += 1
        key = f"{protocol} {operation}"
        if key in self.dropped_by or len(self.dropped_by) < MAX_DROPPED_NAMES:
            self.dropped_by[key] = self.dropped_by.get(key, 0) + 1
        else:
            self.dropped_by["other"] = self.dropped_by.get("other", 0) + 1

    def identity(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Add an identity (``protocol``, ``account``, ``domain``, ``workstation``, ``method``,
        ``outcome``, ...); returns the entry kept, so that an outcome can be filled in later.
        An entry equal to one kept already is that one."""
        for kept in self.identities:
            if kept == entry:
                return kept
        if len(self.identities) < MAX_IDENTITIES:
            self.identities.append(entry)
        else:
            self.count("identities_dropped")
        return entry

    def truncate(self, why: str) -> None:
        """Say that some of the conversation was not read, and why (kept once)."""
        if why not in self.truncated:
            self.truncated.append(why)

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount


class Dissector:
    """An incremental reader of one conversation. Subclasses set ``PROTOCOL`` and override
    ``data``/``gap``/``datagram``/``end``/``facts`` as their transport needs."""

    PROTOCOL = ""

    def __init__(self, record: Record | None = None) -> None:
        self.record = record if record is not None else Record()
        # Bytes of each side the reader has no use for, next in the stream (a body it skips):
        # the engine passes over them without calling ``data``, the reader's own code counts
        # them down otherwise. Only the reader raises it.
        self.skip = [0, 0]

    def data(self, side: int, data: bytes | memoryview, at: At) -> None:
        """In-order TCP payload bytes of ``side``."""

    def gap(self, side: int, length: int, at: At) -> None:
        """``length`` bytes of ``side`` were not captured; the next ``data`` follows them."""
        self.record.truncate(f"{self.PROTOCOL}: {length} bytes missing")

    def datagram(self, side: int, data: bytes, at: At) -> None:
        """One whole UDP payload sent by ``side``."""

    def end(self) -> None:
        """No more bytes will come (end of the captures)."""

    def facts(self) -> dict[str, Any]:
        """Protocol facts read over the whole conversation, beyond operations and identities."""
        return {}


class Framed(Dissector):
    """A stream of length-prefixed PDUs: reads each PDU's first bytes, skips the rest unread.

    Subclasses give ``HEADER`` (bytes needed to know a PDU's length), ``pdu_length`` (the whole
    PDU's length from those bytes, or ``None`` when they are not this protocol: the side is not
    read further), ``keep`` (how many of the PDU's first bytes ``pdu`` needs; the rest is
    skipped without being held) and ``pdu``. Bytes are held only until a PDU's kept part is
    complete; a PDU split at any byte boundary gives the same calls as one arriving whole.
    """

    HEADER = 4

    def __init__(self, record: Record | None = None) -> None:
        super().__init__(record)
        self._buf = (bytearray(), bytearray())
        self._total = [-1, -1]  # length of the PDU being gathered, -1 before its header
        self._keep = [0, 0]
        self._dead = [False, False]

    def pdu_length(self, side: int, head: bytes) -> int | None:
        raise NotImplementedError

    def filler(self, side: int, data: memoryview) -> int:
        """How many bytes at the start of ``data`` (where a PDU would begin) are PDUs that say
        nothing (keep-alives, say): passed over in one step instead of one PDU at a time."""
        return 0

    def keep(self, side: int, head: bytes, total: int) -> int:
        return total

    def pdu(self, side: int, data: bytes, total: int, at: At) -> None:
        raise NotImplementedError

    def stop(self, side: int, why: str) -> None:
        """Read no more of ``side``: its bytes are not (any more) this protocol."""
        self._dead[side] = True
        self._buf[side].clear()
        self.skip[side] = SKIP_ALL
        self.record.truncate(why)

    def data(self, side: int, data: bytes | memoryview, at: At) -> None:
        skip = self.skip[side]
        if skip >= len(data):  # inside a body nobody reads: the common case of bulk data
            self.skip[side] = skip - len(data)
            return
        if self._dead[side]:
            return
        view = memoryview(data)
        buf = self._buf[side]
        while view.nbytes:
            skip = self.skip[side]
            if skip:
                passed = min(skip, view.nbytes)
                self.skip[side] = skip - passed
                view = view[passed:]
                continue
            total = self._total[side]
            if total < 0:
                if not buf:
                    empty = self.filler(side, view)
                    if empty:
                        view = view[empty:]
                        continue
                take = min(self.HEADER - len(buf), view.nbytes)
                buf += view[:take]
                view = view[take:]
                if len(buf) < self.HEADER:
                    return
                length = self.pdu_length(side, bytes(buf))
                if length is None or length < self.HEADER:
                    self.stop(side, f"{self.PROTOCOL}: not {self.PROTOCOL} any more")
                    return
                total = self._total[side] = length
                keep = max(self.HEADER, min(self.keep(side, bytes(buf), length), length))
                if keep > MAX_PDU_KEEP:
                    self.record.truncate(f"{self.PROTOCOL}: PDU past {MAX_PDU_KEEP} bytes")
                    keep = MAX_PDU_KEEP
                self._keep[side] = keep
            keep = self._keep[side]
            take = min(keep - len(buf), view.nbytes)
            if take > 0:
                buf += view[:take]
                view = view[take:]
            if len(buf) < keep:
                return
            head = bytes(buf)
            buf.clear()
            self._total[side] = -1
            self.skip[side] = total - keep
            self.pdu(side, head, total, at)
            if self._dead[side]:
                return

    def gap(self, side: int, length: int, at: At) -> None:
        if self._dead[side]:
            return
        if self.skip[side] >= length:
            self.skip[side] -= length  # the missing bytes were body nobody reads
            self.record.count("bytes_missing", length)
            return
        self.stop(side, f"{self.PROTOCOL}: {length} bytes missing, rest of the side unread")
