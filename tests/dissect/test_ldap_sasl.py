"""LDAP after a SASL bind: sealed, signed only, or clear (``sasl_protection``, ``sasl_token``).

Bytes built from RFC 4121 4.2.6.2 (Kerberos wrap tokens), RFC 1964 1.2.2 / RFC 4757 7.3 (the
older RC4-HMAC wrap token) and MS-NLMP 2.2.2.9 (the NTLMSSP message signature GSS-SPNEGO with
NTLM puts before each message).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from flowaudit.dissect import ldap
from tests.dissect.common import Exchange, check_json_ready, directions
from tests.protobytes import ldap as pb
from tests.protobytes import sasl

BASE = "DC=corp,DC=example"
SPNEGO = b"\x60\x03\x06\x01\x00"  # an (opaque) initial context token
SEARCH = pb.search_request(2, BASE, attributes=["objectSid"])
ENTRY = pb.search_result_entry(2, "CN=x," + BASE, {"objectSid": ["S-1-5-21"]})
BIND = [
    ("c", pb.sasl_bind_request(1, "GSS-SPNEGO", SPNEGO)),
    ("s", pb.bind_response(1)),
]


def _facts(exchange: Exchange) -> dict[str, Any]:
    facts = ldap.parse(*directions(exchange))
    assert facts is not None
    check_json_ready(facts)
    return facts


CASES = [
    pytest.param(
        [
            *BIND,
            ("c", pb.sasl_buffer(sasl.krb5_wrap_sealed(SEARCH))),
            ("s", pb.sasl_buffer(sasl.krb5_wrap_sealed(ENTRY, acceptor=True))),
        ],
        ("sealed", "kerberos"),
        ["bindRequest", "bindResponse"],
        id="kerberos-sealed",
    ),
    pytest.param(
        [
            *BIND,
            ("c", pb.sasl_buffer(pb.krb5_wrap_clear(SEARCH, rotation=12))),
            ("s", pb.sasl_buffer(pb.krb5_wrap_clear(ENTRY))),
        ],
        ("signed", "kerberos"),
        ["bindRequest", "searchRequest", "bindResponse", "searchResEntry"],
        id="kerberos-integrity-only",
    ),
    pytest.param(
        [*BIND, ("c", pb.sasl_buffer(sasl.rfc1964_wrap(SEARCH, sealed=True)))],
        ("sealed", "kerberos-rfc1964"),
        ["bindRequest", "bindResponse"],
        id="rfc1964-rc4-sealed",
    ),
    pytest.param(
        [*BIND, ("c", pb.sasl_buffer(sasl.rfc1964_wrap(SEARCH, sealed=False)))],
        ("signed", "kerberos-rfc1964"),
        ["bindRequest", "searchRequest", "bindResponse"],
        id="rfc1964-integrity-only",
    ),
    pytest.param(
        [
            *BIND,
            ("c", pb.sasl_buffer(sasl.ntlm_signed(SEARCH, sealed=True))),
            ("s", pb.sasl_buffer(sasl.ntlm_signed(ENTRY, sealed=True))),
        ],
        ("sealed", "ntlm"),
        ["bindRequest", "bindResponse"],
        id="ntlm-sealed",
    ),
    pytest.param(
        [*BIND, ("c", pb.sasl_buffer(sasl.ntlm_signed(SEARCH, sealed=False)))],
        ("signed", "ntlm"),
        ["bindRequest", "searchRequest", "bindResponse"],
        id="ntlm-signed-only",
    ),
    pytest.param(
        [*BIND, ("c", SEARCH), ("s", ENTRY)],
        ("clear", None),
        ["bindRequest", "searchRequest", "bindResponse", "searchResEntry"],
        id="sasl-bind-without-security-layer",
    ),
    pytest.param(
        [
            *BIND,
            ("c", pb.sasl_buffer(sasl.krb5_wrap_sealed(SEARCH))),
            ("c", pb.sasl_buffer(pb.krb5_wrap_clear(pb.unbind_request(3)))),
        ],
        ("signed", "kerberos"),
        ["bindRequest", "unbindRequest", "bindResponse"],
        id="one-clear-buffer-is-not-sealed",
    ),
    pytest.param(
        BIND,
        (None, None),
        ["bindRequest", "bindResponse"],
        id="nothing-after-the-bind",
    ),
    pytest.param(
        [
            ("c", pb.simple_bind_request(1, "CN=svc", "pw")),
            ("s", pb.bind_response(1)),
            ("c", SEARCH),
        ],
        (None, None),
        ["bindRequest", "searchRequest", "bindResponse"],
        id="simple-bind-is-no-sasl",
    ),
    pytest.param(
        [
            ("c", pb.search_request(1, "", attributes=["supportedSASLMechanisms"])),
            *BIND,
            ("c", pb.unbind_request(3)),
        ],
        ("clear", None),
        ["searchRequest", "bindRequest", "unbindRequest", "bindResponse"],
        id="rootdse-search-before-the-bind-does-not-count",
    ),
]


@pytest.mark.parametrize(("exchange", "expected", "operations"), CASES)
def test_what_follows_the_sasl_bind(
    exchange: Exchange, expected: tuple[str | None, str | None], operations: list[str]
) -> None:
    facts = _facts(exchange)
    assert (facts["sasl_protection"], facts["sasl_token"]) == expected
    assert facts["operations"] == operations


def test_multi_step_bind_counts_from_the_last_bind() -> None:
    """NTLM binds in two rounds (saslBindInProgress, RFC 4511 4.2.2): what follows the last."""
    exchange = [
        ("c", pb.sasl_bind_request(1, "GSS-SPNEGO", b"NTLMSSP\x00\x01")),
        ("s", pb.bind_response(1, 14)),
        ("c", pb.sasl_bind_request(2, "GSS-SPNEGO", b"NTLMSSP\x00\x03")),
        ("s", pb.bind_response(2)),
        ("c", pb.sasl_buffer(sasl.ntlm_signed(SEARCH, sealed=True))),
    ]
    assert _facts(exchange)["sasl_protection"] == "sealed"
    assert _facts(exchange[:4])["sasl_protection"] is None


def test_a_sealed_buffer_cut_by_the_window_is_read_from_its_header() -> None:
    """A big sealed answer seldom fits the payload window; its 16-octet header does."""
    c2s, s2c = directions([*BIND, ("s", pb.sasl_buffer(sasl.krb5_wrap_sealed(ENTRY * 40)))])
    facts = ldap.parse(c2s, s2c[: len(pb.bind_response(1)) + 4 + 16])
    assert facts is not None and facts["sasl_protection"] == "sealed"
    facts = ldap.parse(c2s, s2c[: len(pb.bind_response(1)) + 4 + 15])
    assert facts is not None and facts["sasl_protection"] is None


def test_a_token_with_undefined_flags_or_filler_is_no_wrap_token() -> None:
    token = bytearray(sasl.krb5_wrap_sealed(SEARCH))
    for at, value in ((2, 0x12), (3, 0x00)):
        bad = bytearray(token)
        bad[at] = value
        facts = _facts([*BIND, ("c", pb.sasl_buffer(bytes(bad)))])
        assert facts["sasl_protection"] is None, at


def test_never_raises_on_cut_or_mutated_security_layers() -> None:
    rng = random.Random(4121)
    streams = [
        directions(
            [
                *BIND,
                ("c", pb.sasl_buffer(build(SEARCH))),
                ("s", pb.sasl_buffer(build(ENTRY))),
            ]
        )
        for build in (
            sasl.krb5_wrap_sealed,
            pb.krb5_wrap_clear,
            lambda data: sasl.rfc1964_wrap(data, sealed=True),
            lambda data: sasl.rfc1964_wrap(data, sealed=False),
            lambda data: sasl.ntlm_signed(data, sealed=True),
            lambda data: sasl.ntlm_signed(data, sealed=False),
        )
    ]
    for c2s, s2c in streams:
        for cut in range(len(c2s) + 1):
            check_json_ready(ldap.parse(c2s[:cut], s2c))
        for _ in range(300):
            mutated = bytearray(c2s)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            check_json_ready(ldap.parse(bytes(mutated), s2c[: rng.randrange(len(s2c) + 1)]))
