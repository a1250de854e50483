"""DCE/RPC conversations: every bind, call and answer of a connection-oriented association.

Reads connection-oriented DCE/RPC v5 PDUs ([C706] chapter 12, [MS-RPCE] 2.2.2) on TCP, or the
PDUs an SMB reader hands over from named-pipe writes, reads and IOCTLs (``carrier``
"smb-pipe"). Each PDU is framed by the 16-byte common header's ``frag_length``
([C706] 12.6.3.1) and kept whole (a fragment is at most 65,535 bytes).

Recorded: every bind and alter_context (the interfaces of its presentation contexts, with the
server's acceptance or rejection), every rpc_auth_3, and every call as one operation named by
its interface and opnum (``rpc_names``), completed with the response ("ok") or the fault's
status. The sec_trailer ([MS-RPCE] 2.2.2.11) gives each call's authentication type and level;
the tokens of binds, bind_acks and rpc_auth_3 go to ``auth.Auth``. Endpoint mapper replies
(ept_map and ept_lookup, fragments joined) and DCOM replies name the endpoints the server hands
out (``announced``), read by ``flowaudit.dissect.dcerpc``'s tower and string-binding readers.
"""

from __future__ import annotations

from typing import Any

from flowaudit.dissect.dcerpc import (
    AUTH_LEVELS,
    AUTH_TYPES,
    _bound_contexts,
    _Pdu,
    dcom_string_bindings,
    epm_towers,
)
from flowaudit.stream import rpc_names
from flowaudit.stream.auth import Auth
from flowaudit.stream.base import At, Framed, Record

PROTOCOL = "dcerpc"
TRANSPORTS = ("tcp",)

# [C706] 12.6.3.1 / [MS-RPCE] 2.2.2.1: the common header, and the connection-oriented packet
# types ([C706] 12.6.4; rpc_auth_3 is [MS-RPCE] 2.2.2.10).
_HEADER = 16
REQUEST, RESPONSE, FAULT = 0, 2, 3
BIND, BIND_ACK, BIND_NAK, ALTER_CONTEXT, ALTER_CONTEXT_RESP, AUTH3 = 11, 12, 13, 14, 15, 16
SHUTDOWN, CO_CANCEL, ORPHANED = 17, 18, 19
_CO_TYPES = frozenset({REQUEST, RESPONSE, FAULT, *range(BIND, ORPHANED + 1)})
_PFC_FIRST_FRAG, _PFC_LAST_FRAG, _PFC_OBJECT_UUID = 0x01, 0x02, 0x80
_SEC_TRAILER = 8

# [MS-RPCE] 2.2.1.1.7: the security providers whose tokens the auth reader understands.
_TOKEN_TYPES = frozenset({9, 10, 16})  # SPNEGO, NTLMSSP, Kerberos

# Replies that name endpoints: (interface, opnum) -> reader. [C706] appendix O / [MS-RPCE]
# 2.2.1.2.4-5 (ept_lookup, ept_map); [MS-DCOM] 3.1.2.5.1.1, .4, .6 (ResolveOxid,
# ResolveOxid2, ServerAlive2), 3.1.2.5.2.3.1-2 (RemoteGetClassObject, RemoteCreateInstance)
# and 3.1.2.5.2.3 (RemoteActivation) carry DUALSTRINGARRAYs.
_EPM, _DCOM = "epm", "dcom"
_ANNOUNCING: dict[tuple[str | None, int], str] = {
    ("epm", 2): _EPM,
    ("epm", 3): _EPM,
    ("IObjectExporter", 0): _DCOM,
    ("IObjectExporter", 4): _DCOM,
    ("IObjectExporter", 5): _DCOM,
    ("IRemoteSCMActivator", 3): _DCOM,
    ("IRemoteSCMActivator", 4): _DCOM,
    ("IActivation", 0): _DCOM,
}

MAX_CALLS_PENDING = 256  # calls awaiting their answer (the oldest forgotten past it)
MAX_STUB = 256 * 1024  # of one fragmented reply joined to look for endpoints
MAX_STUBS_HELD = 512 * 1024  # of all the replies being joined in one conversation
MAX_ANNOUNCED = 64
MAX_INTERFACES = 32
MAX_TEXT = 256


def _header_length(head: bytes) -> int | None:
    """frag_length of a connection-oriented common header, or None when it is not one.

    rpc_vers 5, rpc_vers_minor 0 or 1, a connection-oriented ptype, and a data representation
    whose integer byte order is 0 (big-endian) or 1 (little-endian) ([C706] 14.1).
    """
    if len(head) < _HEADER or head[0] != 5 or head[1] > 1 or head[2] not in _CO_TYPES:
        return None
    if head[4] >> 4 > 1:
        return None
    length = int.from_bytes(head[8:10], "big" if head[4] >> 4 == 0 else "little")
    return length if length >= _HEADER else None


def claims(ports: tuple[int, int], first: bytes) -> bool:
    """The first payload opens with a connection-oriented PDU header ([C706] 12.6.3.1)."""
    return _header_length(first[:_HEADER]) is not None


def _cut(text: str) -> str:
    return text[:MAX_TEXT]


class Conversation(Framed):
    """One DCE/RPC association: on TCP (``carrier`` "tcp") or in an SMB named pipe."""

    PROTOCOL = PROTOCOL
    HEADER = _HEADER

    def __init__(
        self, record: Record | None = None, carrier: str = "tcp", pipe: str | None = None
    ) -> None:
        super().__init__(record)
        self.carrier = carrier
        self.pipe = pipe
        self.auth = Auth(self.record, PROTOCOL)
        self._auth_entry: dict[str, Any] | None = None
        self._authenticated = False  # an auth token was seen: a call's answer is its outcome
        self._outcome_given = False
        self._contexts: dict[int, tuple[str, str | None]] = {}  # context id -> (uuid, name)
        self._binds: dict[int, dict[str, Any]] = {}  # call_id -> bind/alter_context entry
        self._calls: dict[int, dict[str, Any]] = {}  # call_id -> request entry
        self._call_keys: dict[int, tuple[str | None, int]] = {}  # call_id -> (name, opnum)
        self._stubs: dict[int, bytearray] = {}  # call_id -> reply stub joined so far
        self._interfaces: list[dict[str, Any]] = []
        self._announced: list[dict[str, Any]] = []
        self._levels: list[str] = []
        self._calls_seen = 0

    # --- framing ---------------------------------------------------------------------------

    def pdu_length(self, side: int, head: bytes) -> int | None:
        return _header_length(head)

    def gap(self, side: int, length: int, at: At) -> None:
        """Bytes missing inside one PDU lose that PDU only: its length says where the next
        begins. Missing bytes past its end (or inside a header) lose the framing."""
        if self._dead[side]:
            return
        total = self._total[side]
        if self.skip[side] == 0 and total >= 0:
            remaining = total - len(self._buf[side]) - length
            if remaining >= 0:
                self._buf[side].clear()
                self._total[side] = -1
                self.skip[side] = remaining
                self.record.count("pdus_lost")
                self.record.truncate(f"{PROTOCOL}: {length} bytes missing, one PDU unread")
                return
        super().gap(side, length, at)

    def pdu(self, side: int, data: bytes, total: int, at: At) -> None:
        if len(data) < total:  # only past MAX_PDU_KEEP, which a u16 length never reaches
            return
        pdu = _Pdu(data)
        ptype = pdu.ptype
        if ptype in (BIND, ALTER_CONTEXT):
            self._bind(side, pdu, at)
        elif ptype in (BIND_ACK, ALTER_CONTEXT_RESP):
            self._bind_ack(side, pdu, at)
        elif ptype == BIND_NAK:
            self._bind_nak(pdu)
        elif ptype == AUTH3:
            self._auth3(side, pdu, at)
        elif ptype == REQUEST:
            self._request(side, pdu, at)
        elif ptype == RESPONSE:
            self._response(side, pdu, at)
        elif ptype == FAULT:
            self._fault(pdu)
        else:
            self.record.count(f"dcerpc_ptype_{ptype}")

    # --- authentication --------------------------------------------------------------------

    def _trailer(self, pdu: _Pdu) -> tuple[int, int, bytes] | None:
        """(auth_type, auth_level, auth_value) of the sec_trailer at ``frag_length -
        auth_length - 8`` ([MS-RPCE] 2.2.2.11), or None without one."""
        if not pdu.auth_length:
            return None
        at = pdu.length - pdu.auth_length - _SEC_TRAILER
        if at < _HEADER:
            return None
        auth_type, auth_level = pdu.data[at], pdu.data[at + 1]
        return auth_type, auth_level, pdu.data[at + _SEC_TRAILER : pdu.length]

    def _level(self, auth_level: int) -> str:
        name = AUTH_LEVELS.get(auth_level, f"level-{auth_level}")
        if name not in self._levels and len(self._levels) < 8:
            self._levels.append(name)
        return name

    def _describe(self, entry: dict[str, Any], trailer: tuple[int, int, bytes] | None) -> None:
        if trailer is None:
            return
        auth_type, auth_level, _ = trailer
        entry["auth_type"] = AUTH_TYPES.get(auth_type, f"type-{auth_type}")
        entry["auth_level"] = self._level(auth_level)

    def _token(self, side: int, trailer: tuple[int, int, bytes] | None, at: At) -> None:
        if trailer is None or trailer[0] not in _TOKEN_TYPES or not trailer[2]:
            return
        self._authenticated = True
        self._outcome_given = False
        found = self.auth.token(at, side, trailer[2])
        if found is not None:
            self._auth_entry = found

    def _outcome(self, outcome: str) -> None:
        if self._authenticated and not self._outcome_given:
            self._outcome_given = True
            self.auth.outcome(outcome, self._auth_entry)

    # --- binds -----------------------------------------------------------------------------

    def _bind(self, side: int, pdu: _Pdu, at: At) -> None:
        """[C706] 12.6.4.3 bind / 12.6.4.1 alter_context: the presentation contexts offered."""
        targets: list[str] = []
        for context_id, interface, version in _bound_contexts(pdu):
            name = rpc_names.INTERFACES.get(interface)
            self._contexts[context_id] = (interface, name)
            if len(self._contexts) > MAX_CALLS_PENDING:
                self._contexts.pop(next(iter(self._contexts)))
            target = f"{name or interface} {version}"
            if target not in targets:
                targets.append(target)
            known = {"uuid": interface, "version": version, "name": name}
            if known not in self._interfaces and len(self._interfaces) < MAX_INTERFACES:
                self._interfaces.append(known)
        operation = "bind" if pdu.ptype == BIND else "alter_context"
        entry = self.record.op(
            at, side, PROTOCOL, operation, target=_cut(", ".join(targets)) or None
        )
        entry["call_id"] = pdu.call_id
        trailer = self._trailer(pdu)
        self._describe(entry, trailer)
        self._remember(self._binds, pdu.call_id, entry)
        self._token(side, trailer, at)

    def _bind_ack(self, side: int, pdu: _Pdu, at: At) -> None:
        """[C706] 12.6.4.4 bind_ack / 12.6.4.2 alter_context_resp: the result of each context.

        After max_xmit_frag, max_recv_frag and assoc_group_id: the secondary address
        (length-prefixed), padding to 4 octets, then p_result_list_t: n_results, three reserved
        octets and one {result, reason, transfer syntax (20 octets)} per context.
        """
        entry = self._binds.pop(pdu.call_id, None)
        results: list[str] = []
        length = pdu.uint(24, 2)
        if length is not None:
            at_list = 26 + length
            at_list += -at_list % 4
            count = pdu.uint(at_list, 1) or 0
            for index in range(min(count, 32)):
                result = pdu.uint(at_list + 4 + 24 * index, 2)
                reason = pdu.uint(at_list + 6 + 24 * index, 2)
                if result is None or reason is None:
                    break
                if result == 0:
                    results.append("acceptance")
                elif result == 3:
                    results.append("negotiate_ack")  # [MS-RPCE] 2.2.2.14 bind time features
                else:
                    results.append(rpc_names.PROVIDER_REASONS.get(reason, f"reason {reason}"))
        if entry is not None:
            if "acceptance" in results:
                entry["status"] = "acceptance"
            elif results:
                entry["status"] = next((r for r in results if r != "negotiate_ack"), results[0])
        trailer = self._trailer(pdu)
        self._token(side, trailer, at)
        # A Kerberos bind_ack carries the AP-REP: the exchange is complete ([MS-RPCE] 3.3.1.5.2).
        if trailer is not None and trailer[0] == 16 and "acceptance" in results:
            self._outcome("success")

    def _bind_nak(self, pdu: _Pdu) -> None:
        """[C706] 12.6.4.5 / [MS-RPCE] 2.2.2.9 bind_nak: provider_reject_reason."""
        reason = pdu.uint(16, 2)
        name = (
            rpc_names.BIND_NAK_REASONS.get(reason, f"reason {reason}")
            if reason is not None
            else "bind_nak"
        )
        entry = self._binds.pop(pdu.call_id, None)
        if entry is not None:
            entry["status"] = name
        self._outcome(name)

    def _auth3(self, side: int, pdu: _Pdu, at: At) -> None:
        """[MS-RPCE] 2.2.2.10 rpc_auth_3: the client's last token (NTLM's AUTHENTICATE)."""
        entry = self.record.op(at, side, PROTOCOL, "auth3")
        entry["call_id"] = pdu.call_id
        trailer = self._trailer(pdu)
        self._describe(entry, trailer)
        self._token(side, trailer, at)

    # --- calls -----------------------------------------------------------------------------

    @staticmethod
    def _remember(table: dict[int, Any], key: int, value: Any) -> None:
        table.pop(key, None)
        table[key] = value
        if len(table) > MAX_CALLS_PENDING:
            table.pop(next(iter(table)))

    def _request(self, side: int, pdu: _Pdu, at: At) -> None:
        """[C706] 12.6.4.9 request: alloc_hint, p_cont_id, opnum (and the object UUID when
        PFC_OBJECT_UUID is set). A fragmented call is one operation, made at its first
        fragment (PFC_FIRST_FRAG, [C706] 12.6.3.1)."""
        if not pdu.flags & _PFC_FIRST_FRAG and pdu.call_id in self._calls:
            return
        context_id, opnum = pdu.uint(20, 2), pdu.uint(22, 2)
        if context_id is None or opnum is None:
            return
        uuid, name = self._contexts.get(context_id, (None, None))
        target = name or uuid
        entry = self.record.op(
            at,
            side,
            PROTOCOL,
            rpc_names.operation(name, opnum),
            target=target,
            opnum=opnum,
            call_id=pdu.call_id,
        )
        self._describe(entry, self._trailer(pdu))
        self._calls_seen += 1
        self._remember(self._calls, pdu.call_id, entry)
        self._remember(self._call_keys, pdu.call_id, (name, opnum))
        self._stubs.pop(pdu.call_id, None)

    def _response(self, side: int, pdu: _Pdu, at: At) -> None:
        """[C706] 12.6.4.10 response: the call succeeded; a reply naming endpoints is read
        once its last fragment is in."""
        call_id = pdu.call_id
        entry = self._calls.get(call_id)
        if entry is not None:
            entry.setdefault("status", "ok")
        else:
            self.record.count("responses_without_request")
        self._outcome("success")
        key = self._call_keys.get(call_id)
        reader = _ANNOUNCING.get(key) if key is not None else None
        if key is not None and reader is None:
            return
        start = 24
        end = pdu.length - (pdu.auth_length + _SEC_TRAILER if pdu.auth_length else 0)
        stub = self._stubs.get(call_id)
        if pdu.flags & _PFC_FIRST_FRAG or stub is None:
            stub = bytearray()
        more = max(0, end - start)
        held = sum(len(other) for other in self._stubs.values() if other is not stub)
        if len(stub) + more <= MAX_STUB and held + len(stub) + more <= MAX_STUBS_HELD:
            stub += pdu.data[start:end]
        elif more:
            self.record.truncate(
                f"dcerpc: reply fragments past {MAX_STUBS_HELD} bytes not read for endpoints"
            )
        if pdu.flags & _PFC_LAST_FRAG:
            self._stubs.pop(call_id, None)
            self._call_keys.pop(call_id, None)
            self._announce(bytes(stub), reader)
        else:
            self._remember(self._stubs, call_id, stub)

    def _announce(self, stub: bytes, reader: str | None) -> None:
        """Endpoints in a reply: EPM towers and DCOM string bindings ("by" as in
        ``flowaudit.dissect.dcerpc.parse``). A reply whose request was not seen is tried with
        both readers; the towers' strict length check keeps other stubs out."""
        found: list[dict[str, Any]] = []
        if reader in (_EPM, None):
            found += [{"host": h, "port": p, "by": "epm"} for h, p in epm_towers(stub)]
        if reader in (_DCOM, None):
            found += [{"host": h, "port": p, "by": "dcom"} for h, p in dcom_string_bindings(stub)]
        for item in found:
            if item not in self._announced and len(self._announced) < MAX_ANNOUNCED:
                self._announced.append(item)

    def _fault(self, pdu: _Pdu) -> None:
        """[C706] 12.6.4.7 fault: alloc_hint, p_cont_id, cancel_count, reserved, status."""
        code = pdu.uint(24, 4)
        name = rpc_names.FAULT_STATUS.get(code, f"0x{code:08x}") if code is not None else "fault"
        entry = self._calls.get(pdu.call_id) or self._binds.pop(pdu.call_id, None)
        if entry is not None:
            entry["status"] = name
        self._call_keys.pop(pdu.call_id, None)
        self._stubs.pop(pdu.call_id, None)
        if code in rpc_names.ACCESS_DENIED:
            self._outcome(name)

    # --- the end ---------------------------------------------------------------------------

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "interfaces": list(self._interfaces),
            "announced": list(self._announced),
            "auth_levels": list(self._levels),
            "calls": self._calls_seen,
            "auth": self.auth.facts(),
        }
        if self.carrier != "tcp":
            facts["carrier"] = self.carrier
        if self.pipe is not None:
            facts["pipe"] = _cut(self.pipe)
        return facts
