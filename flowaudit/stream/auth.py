"""Who authenticated on a carrier connection: NTLM and Kerberos security tokens, however wrapped.

Every stream dissector that carries authentication (SMB SESSION_SETUP security buffers, HTTP
``Authorization``/``WWW-Authenticate`` headers, DCE/RPC auth verifiers, LDAP SASL binds, TDS
SSPI) hands the token bytes to one ``Auth`` per connection. A token may be

* a raw NTLMSSP message ([MS-NLMP] 2.2.1: ``"NTLMSSP\\0"``, MessageType 1, 2 or 3);
* a GSS-API InitialContextToken (RFC 2743 3.1: ``[APPLICATION 0]``, tag 0x60, then the
  mechanism OID) holding SPNEGO (1.3.6.1.5.5.2, RFC 4178 4.2) or Kerberos (1.2.840.113554.1.2.2
  or Microsoft's 1.2.840.48018.1.2.2, RFC 4121 4.1: a two-byte TOK_ID, 01 00 AP-REQ, 02 00
  AP-REP, 03 00 KRB-ERROR, then the message);
* a SPNEGO NegTokenInit (``[0]``, 0xa0) or NegTokenResp (``[1]``, 0xa1) without the GSS-API
  framing, as every token after the first travels (RFC 4178 4.2.2); its mechToken or
  responseToken is read as a token again;
* a bare Kerberos message (RFC 4120 5.5.1 AP-REQ ``[APPLICATION 14]``, as DCE/RPC sends it with
  the Kerberos auth type).

A token that names someone makes an identity (``record.identity``):

* NTLM AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3): ``account``, ``domain``, ``workstation``
  (Unicode or OEM strings per NTLMSSP_NEGOTIATE_UNICODE), ``method`` from the responses' lengths
  ([MS-NLMP] 3.3.1, 3.3.2: an NT response of 24 bytes is NTLMv1, ``NTLMv1-ESS`` with
  NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY; longer is NTLMv2; an empty user name with empty
  NT response and an LM response empty or one zero byte is ``anonymous``, 3.2.5.1.2; an LM
  response alone is ``LM``; lengths as declared, so a cut message still has its method;
  a string the cut left out is None), ``sign``/``seal`` (NTLMSSP_NEGOTIATE_SIGN/SEAL,
  2.2.2.5), ``flags`` (the message's NegotiateFlags, hex), ``server_challenge`` (hex, from the
  CHALLENGE_MESSAGE seen before on the connection, 2.2.1.2), and from the NTLMv2 client
  challenge's AV_PAIRs (2.2.2.7, 2.2.2.1): ``target_name`` (MsvAvTargetName, the SPN the
  client meant to reach), ``av_flags`` (MsvAvFlags: 0x1 constrained, 0x2 MIC present, 0x4
  SPN from an untrusted source), ``channel_bindings`` (MsvAvChannelBindings present, not all
  zero);
* Kerberos AP-REQ (RFC 4120 5.5.1): ``service`` (the ticket's sname, components joined with
  "/") and ``realm`` (the ticket's realm), ``ticket_etype``. The client's name travels only
  inside the encrypted ticket and authenticator, so a Kerberos AP-REQ identity has no
  ``account``: the KDC conversation that issued the ticket (``flowaudit.stream.kerberos``)
  names the client.

The carrier's answer gives the outcome (``outcome``); a Kerberos KRB-ERROR inside a token gives
it at once (its RFC 4120 7.5.9 name). Nothing here raises on any input; tokens are read in
place, nesting is bounded.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from flowaudit.dissect.kerberos import (  # private helpers, shared rather than copied
    _context_fields,
    _number,
    _principal,
    _string,
)
from flowaudit.dissect.ldap import Element, integer, read_element
from flowaudit.stream.base import At, Record
from flowaudit.stream.kerberos import error_name, etype_name

NTLMSSP = b"NTLMSSP\x00"
# [MS-NLMP] 2.2.2.5 NegotiateFlags.
NEGOTIATE_UNICODE = 0x00000001
NEGOTIATE_SIGN = 0x00000010
NEGOTIATE_SEAL = 0x00000020
NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
# [MS-NLMP] 2.2.2.1 AV_PAIR AvIds.
MSV_AV_EOL = 0x0000
MSV_AV_FLAGS = 0x0006
MSV_AV_TARGET_NAME = 0x0009
MSV_AV_CHANNEL_BINDINGS = 0x000A

# DER of the mechanism OIDs (RFC 2743 3.1 framing): SPNEGO (RFC 4178 3), Kerberos (RFC 1964
# 1.1), Microsoft's Kerberos OID ([MS-KILE] 3.1.5.11), NTLMSSP ([MS-NLMP] 1.9).
OID_SPNEGO = bytes.fromhex("2b0601050502")
OID_KRB5 = bytes.fromhex("2a864886f712010202")
OID_MS_KRB5 = bytes.fromhex("2a864882f712010202")
OID_NTLMSSP = bytes.fromhex("2b06010401823702020a")
MECHANISMS = {
    OID_SPNEGO: "spnego",
    OID_KRB5: "kerberos",
    OID_MS_KRB5: "kerberos",
    OID_NTLMSSP: "ntlm",
}
# RFC 4121 4.1 / RFC 1964 1.1: TOK_ID of the Kerberos context tokens.
TOK_AP_REQ, TOK_AP_REP, TOK_KRB_ERROR = b"\x01\x00", b"\x02\x00", b"\x03\x00"
# RFC 4178 4.2.2 negState.
NEG_STATES = {0: "accept-completed", 1: "accept-incomplete", 2: "reject", 3: "request-mic"}

_APPLICATION_0 = 0x60
_NEG_TOKEN_INIT = 0xA0
_NEG_TOKEN_RESP = 0xA1
_OID = 0x06
_OCTET_STRING = 0x04
_SEQUENCE = 0x30
_ENUMERATED = 0x0A
_AP_REQ_TAG, _AP_REP_TAG, _KRB_ERROR_TAG, _TICKET_TAG = 0x6E, 0x6F, 0x7E, 0x61
_MAX_DEPTH = 4
_MAX_AV_PAIRS = 32
_MAX_TEXT = 256
_MAX_MADE = 32  # identities of this connection remembered for ``outcome``


def _hex_flags(flags: int) -> str:
    return f"0x{flags:08x}"


def _u32(data: bytes, offset: int) -> int | None:
    if offset + 4 > len(data):
        return None
    value: int = struct.unpack_from("<I", data, offset)[0]
    return value


def _declared(data: bytes, offset: int) -> int:
    """The Len of a payload field ([MS-NLMP] 2.2.1: Len, MaxLen, BufferOffset), 0 if cut."""
    if offset + 2 > len(data):
        return 0
    length: int = struct.unpack_from("<H", data, offset)[0]
    return length


def _buffer(data: bytes, offset: int) -> bytes | None:
    """The bytes of a payload field at ``offset``; None when the message is cut before its
    end (a capture or carrier cut the token)."""
    if offset + 8 > len(data):
        return None
    length, _, start = struct.unpack_from("<HHI", data, offset)
    if length == 0:
        return b""
    if start + length > len(data):
        return None
    return data[start : start + length]


def _text(raw: bytes | None, unicode: bool) -> str | None:
    if raw is None:
        return None
    if unicode:
        return raw[: 4 * _MAX_TEXT].decode("utf-16-le", errors="replace")[:_MAX_TEXT]
    return raw[: 2 * _MAX_TEXT].decode("latin-1")[:_MAX_TEXT]


def av_pairs(data: bytes, start: int) -> dict[int, bytes]:
    """The AV_PAIRs from ``start`` up to MsvAvEOL ([MS-NLMP] 2.2.2.1), first of each AvId."""
    found: dict[int, bytes] = {}
    at = start
    for _ in range(_MAX_AV_PAIRS):
        if at + 4 > len(data):
            break
        av_id, length = struct.unpack_from("<HH", data, at)
        if av_id == MSV_AV_EOL:
            break
        found.setdefault(av_id, data[at + 4 : at + 4 + length])
        at += 4 + length
    return found


def _method(user: str | None, lm_length: int, nt_length: int, lm: bytes | None, flags: int) -> str:
    """[MS-NLMP] 3.3.1 (NTLMv1, ESS), 3.3.2 (NTLMv2), 3.2.5.1.2 (anonymous), from the declared
    response lengths (readable even when the payload is cut)."""
    if not user and nt_length == 0 and (lm_length == 0 or lm == b"\x00"):
        return "anonymous"
    if nt_length > 24:
        return "NTLMv2"
    if nt_length == 24:
        return "NTLMv1-ESS" if flags & NEGOTIATE_EXTENDED_SESSIONSECURITY else "NTLMv1"
    if lm_length:
        return "LM"
    return "unknown"


class Auth:
    """The authentication exchanges of one carrier connection (an SMB connection, an HTTP
    connection, an RPC association, an LDAP connection).

    ``carrier`` names the protocol the tokens travel in ("smb2", "http", "dcerpc", "ldap",
    "tds", ...); it is written into every identity made here.
    """

    def __init__(self, record: Record, carrier: str) -> None:
        self.record = record
        self.carrier = carrier
        self._made: deque[dict[str, Any]] = deque(maxlen=_MAX_MADE)
        self._negotiate_flags: int | None = None
        self._challenge_flags: int | None = None
        self._server_challenge: str | None = None
        self._auth_flags: int | None = None
        self._mechanism: str | None = None
        self._neg_state: str | None = None

    # --- public API ---------------------------------------------------------------------------
    def token(self, at: At, side: int, blob: bytes) -> dict[str, Any] | None:
        """Read one security token whatever its wrapping: a raw NTLMSSP message ("NTLMSSP\\0"
        signature, types 1/2/3), a SPNEGO NegTokenInit (GSS-API 0x60 application wrapper with
        the SPNEGO OID) or NegTokenResp/Targ (0xa1), GSS-API wrapped Kerberos (KRB5 OID
        1.2.840.113554.1.2.2 or MS OID 1.2.840.48018.1.2.2, token id 01 00 AP-REQ / 02 00
        AP-REP / 03 00 KRB-ERROR), a bare Kerberos AP-REQ.

        Returns the identity entry (the dict kept in ``record.identities``) when the token names
        someone (NTLM AUTHENTICATE, type 3, or Kerberos AP-REQ), else None. NTLM CHALLENGE
        (type 2) and NEGOTIATE (type 1) facts are remembered and merged into the identity of the
        AUTHENTICATE that follows on this connection. A Kerberos AP-REQ identity has no
        ``account``: the client's name is inside the encrypted ticket.
        """
        return self._token(bytes(blob), 0)

    def outcome(self, outcome: str, entry: dict[str, Any] | None = None) -> None:
        """Set the outcome (e.g. "success", "STATUS_LOGON_FAILURE", "401",
        "invalidCredentials") of ``entry``, or of the last identity this Auth made that has
        no outcome yet (nothing when there is none)."""
        if entry is None:
            entry = next(
                (made for made in reversed(self._made) if made.get("outcome") is None), None
            )
        if entry is not None:
            entry["outcome"] = str(outcome)[:_MAX_TEXT]

    def facts(self) -> dict[str, Any]:
        """What was negotiated on this connection, for plaintext judgement: ``mechanism``
        ("ntlm"/"kerberos"), and for NTLM ``ntlm_flags`` (hex: the AUTHENTICATE's
        NegotiateFlags, else the CHALLENGE's, else the NEGOTIATE's), ``signing`` and ``sealing``
        (NTLMSSP_NEGOTIATE_SIGN/SEAL in those flags), ``spnego_state`` (the last negState)."""
        facts: dict[str, Any] = {}
        if self._mechanism is not None:
            facts["mechanism"] = self._mechanism
        flags = next(
            (
                each
                for each in (self._auth_flags, self._challenge_flags, self._negotiate_flags)
                if each is not None
            ),
            None,
        )
        if flags is not None:
            facts["ntlm_flags"] = _hex_flags(flags)
            facts["signing"] = bool(flags & NEGOTIATE_SIGN)
            facts["sealing"] = bool(flags & NEGOTIATE_SEAL)
        if self._neg_state is not None:
            facts["spnego_state"] = self._neg_state
        return facts

    # --- unwrapping ---------------------------------------------------------------------------
    def _token(self, blob: bytes, depth: int) -> dict[str, Any] | None:
        if depth > _MAX_DEPTH or len(blob) < 2:
            return None
        if blob.startswith(NTLMSSP):
            return self._ntlm(blob)
        first = blob[0]
        if first == _APPLICATION_0:
            return self._gss(blob, depth)
        if first == _NEG_TOKEN_INIT:
            return self._neg_token_init(blob, depth)
        if first == _NEG_TOKEN_RESP:
            return self._neg_token_resp(blob, depth)
        if first in (_AP_REQ_TAG, _AP_REP_TAG, _KRB_ERROR_TAG):
            return self._kerberos(blob, 0)
        return None

    def _gss(self, blob: bytes, depth: int) -> dict[str, Any] | None:
        """RFC 2743 3.1 InitialContextToken: thisMech OID, then the mechanism's token."""
        outer = read_element(blob, 0)
        if outer is None:
            return None
        oid = read_element(blob, outer.start, outer.end)
        if oid is None or oid.tag != _OID:
            return None
        mech = blob[oid.start : oid.end]
        inner = blob[oid.end : outer.end]
        if mech == OID_SPNEGO:
            return self._token(inner, depth + 1)
        if mech in (OID_KRB5, OID_MS_KRB5):
            self._mechanism = "kerberos"
            tok_id = inner[:2]
            if tok_id in (TOK_AP_REQ, TOK_AP_REP, TOK_KRB_ERROR):
                return self._kerberos(inner, 2)
            return None
        if mech == OID_NTLMSSP:
            return self._token(inner, depth + 1)
        return None

    def _neg_token_init(self, blob: bytes, depth: int) -> dict[str, Any] | None:
        """RFC 4178 4.2.1 NegTokenInit: mechTypes [0], reqFlags [1], mechToken [2], ..."""
        fields = self._sequence_fields(blob)
        token = fields.get(2)
        if token is None or token.tag != _OCTET_STRING:
            return None
        return self._token(blob[token.start : token.end], depth + 1)

    def _neg_token_resp(self, blob: bytes, depth: int) -> dict[str, Any] | None:
        """RFC 4178 4.2.2 NegTokenResp: negState [0], supportedMech [1], responseToken [2]."""
        fields = self._sequence_fields(blob)
        state = fields.get(0)
        if state is not None and state.tag == _ENUMERATED:
            value = integer(blob, state)
            if value is not None:
                self._neg_state = NEG_STATES.get(value, str(value))
        mech = fields.get(1)
        if mech is not None and mech.tag == _OID:
            name = MECHANISMS.get(blob[mech.start : mech.end])
            if name is not None and name != "spnego":
                self._mechanism = name
        token = fields.get(2)
        if token is None or token.tag != _OCTET_STRING:
            return None
        return self._token(blob[token.start : token.end], depth + 1)

    @staticmethod
    def _sequence_fields(blob: bytes) -> dict[int, Element]:
        outer = read_element(blob, 0)
        if outer is None:
            return {}
        sequence = read_element(blob, outer.start, outer.end)
        if sequence is None or sequence.tag != _SEQUENCE:
            return {}
        return _context_fields(blob, sequence)

    # --- Kerberos -----------------------------------------------------------------------------
    def _kerberos(self, blob: bytes, offset: int) -> dict[str, Any] | None:
        """An AP-REQ (RFC 4120 5.5.1: pvno [0], msg-type [1], ap-options [2], ticket [3]) makes
        an identity; a KRB-ERROR (5.9.1, error-code [6]) is the outcome of the last one."""
        self._mechanism = "kerberos"
        outer = read_element(blob, offset)
        if outer is None:
            return None
        sequence = read_element(blob, outer.start, outer.end)
        if sequence is None or sequence.tag != _SEQUENCE:
            return None
        fields = _context_fields(blob, sequence)
        if outer.tag == _KRB_ERROR_TAG:
            code = _number(blob, fields.get(6))
            self.outcome(error_name(code))
            return None
        if outer.tag != _AP_REQ_TAG:
            return None
        ticket = fields.get(3)
        if ticket is None or ticket.tag != _TICKET_TAG:
            return None
        inner = read_element(blob, ticket.start, ticket.end)
        if inner is None or inner.tag != _SEQUENCE:
            return None
        parts = _context_fields(blob, inner)  # Ticket (5.3): realm [1], sname [2], enc-part [3]
        etype = None
        enc = parts.get(3)
        if enc is not None and enc.tag == _SEQUENCE:
            etype = _number(blob, _context_fields(blob, enc).get(0))
        identity = {
            "protocol": "kerberos",
            "carrier": self.carrier,
            "method": "AP-REQ",
            "account": None,
            "realm": _string(blob, parts.get(1)),
            "service": _principal(blob, parts.get(2)),
            "ticket_etype": etype_name(etype) if etype is not None else None,
            "outcome": None,
        }
        return self._keep(identity)

    # --- NTLM -------------------------------------------------------------------------------
    def _ntlm(self, blob: bytes) -> dict[str, Any] | None:
        """[MS-NLMP] 2.2.1: MessageType at 8; NegotiateFlags at 12 (NEGOTIATE), 20 (CHALLENGE,
        ServerChallenge at 24), 60 (AUTHENTICATE)."""
        self._mechanism = "ntlm"
        kind = _u32(blob, 8)
        if kind == 1:
            self._negotiate_flags = _u32(blob, 12)
        elif kind == 2:
            self._challenge_flags = _u32(blob, 20)
            if len(blob) >= 32:
                self._server_challenge = blob[24:32].hex()
        elif kind == 3:
            return self._authenticate(blob)
        return None

    def _authenticate(self, blob: bytes) -> dict[str, Any] | None:
        """[MS-NLMP] 2.2.1.3: LmChallengeResponseFields at 12, NtChallengeResponseFields 20,
        DomainNameFields 28, UserNameFields 36, WorkstationFields 44, EncryptedRandomSession-
        KeyFields 52, NegotiateFlags 60."""
        flags = _u32(blob, 60)
        if flags is None:
            return None
        self._auth_flags = flags
        unicode = bool(flags & NEGOTIATE_UNICODE)
        lm = _buffer(blob, 12)
        nt = _buffer(blob, 20)
        user = _text(_buffer(blob, 36), unicode)
        method = _method(user, _declared(blob, 12), _declared(blob, 20), lm, flags)
        identity: dict[str, Any] = {
            "protocol": "ntlm",
            "carrier": self.carrier,
            "account": user,
            "domain": _text(_buffer(blob, 28), unicode),
            "workstation": _text(_buffer(blob, 44), unicode),
            "method": method,
            "sign": bool(flags & NEGOTIATE_SIGN),
            "seal": bool(flags & NEGOTIATE_SEAL),
            "flags": _hex_flags(flags),
            "server_challenge": self._server_challenge,
        }
        if method == "NTLMv2" and nt is not None:
            # NTProofStr (16), then NTLMv2_CLIENT_CHALLENGE (2.2.2.7): RespType, HiRespType,
            # Reserved1 (2), Reserved2 (4), TimeStamp (8), ChallengeFromClient (8), Reserved3
            # (4), AvPairs.
            pairs = av_pairs(nt, 16 + 28)
            identity["target_name"] = _text(pairs.get(MSV_AV_TARGET_NAME), True)
            raw_flags = pairs.get(MSV_AV_FLAGS)
            identity["av_flags"] = (
                int.from_bytes(raw_flags[:4], "little")
                if raw_flags and len(raw_flags) >= 4
                else None
            )
            bindings = pairs.get(MSV_AV_CHANNEL_BINDINGS)
            identity["channel_bindings"] = bool(bindings and any(bindings))
        identity["outcome"] = None
        return self._keep(identity)

    def _keep(self, identity: dict[str, Any]) -> dict[str, Any]:
        kept = self.record.identity(identity)
        self._made.append(kept)
        return kept
