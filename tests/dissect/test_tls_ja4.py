"""JA4 (FoxIO's TLS client fingerprint) of the ClientHello, against the published values.

The algorithm is FoxIO's JA4 (technical_details/JA4.md of https://github.com/FoxIO-LLC/ja4,
BSD 3-Clause, LICENSE-JA4 there). The expected fingerprints below are copied from that
repository at commit 0e54bc8371de34df94a35f2442c05bda2e8b2034: the specification's worked
example, and a few lines of python/test/testdata/*.json (the reference output for its test
captures), each with the ClientHello rebuilt here from the same line's JA4_ro (the ciphers,
extensions and signature algorithms in the client's order). Those are facts of the
fingerprint, BSD 3-Clause like JA4 itself; no capture is copied.

JA4S (the server fingerprint) is not computed: FoxIO licenses it under the FoxIO License 1.1
(non-commercial only, patent pending), which this MIT project does not take on.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from flowaudit.dissect import dissect, tls
from flowaudit.flows import FlowConfig, build_flow_table
from tests.protobytes.tls import (
    CLIENT_HELLO,
    CONTENT_HANDSHAKE,
    EXT_ALPN,
    EXT_SERVER_NAME,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_VERSIONS,
    TLS10,
    TLS12,
    TLS13,
    extension,
    handshake,
    records,
    server_name_extension,
    u16,
    vector8,
    vector16,
)

GREASE = (0x0A0A, 0x3A3A, 0xFAFA)  # RFC 8701 reserved values


def client_hello(
    ciphers: Sequence[int],
    extensions: Sequence[int],
    signature_algorithms: Sequence[int] = (),
    *,
    alpn: Sequence[bytes] = (b"h2",),
    versions: Sequence[int] = (),
    legacy_version: int = TLS12,
    sni: str = "www.example.com",
) -> bytes:
    """A ClientHello in records whose extensions are ``extensions``, in that order.

    SNI, ALPN, signature_algorithms and supported_versions carry their values; any other
    extension is empty (JA4 reads only its type).
    """
    blocks = b""
    for extension_type in extensions:
        if extension_type == EXT_SERVER_NAME:
            blocks += server_name_extension(sni)
        elif extension_type == EXT_ALPN:
            names = b"".join(vector8(name) for name in alpn)
            blocks += extension(EXT_ALPN, vector16(names))
        elif extension_type == EXT_SIGNATURE_ALGORITHMS:
            listed = b"".join(u16(value) for value in signature_algorithms)
            blocks += extension(EXT_SIGNATURE_ALGORITHMS, vector16(listed))
        elif extension_type == EXT_SUPPORTED_VERSIONS:
            listed = b"".join(u16(value) for value in versions)
            blocks += extension(EXT_SUPPORTED_VERSIONS, vector8(listed))
        else:
            blocks += extension(extension_type, b"")
    body = (
        u16(legacy_version)
        + bytes(32)
        + vector8(b"")
        + vector16(b"".join(u16(suite) for suite in ciphers))
        + vector8(b"\x00")
        + vector16(blocks)
    )
    return records(CONTENT_HANDSHAKE, handshake(CLIENT_HELLO, body), TLS10)


def ja4_of(hello: bytes) -> str | None:
    facts = tls.parse(hello, b"")
    assert facts is not None
    return facts["ja4"]


def hexes(text: str) -> list[int]:
    return [int(value, 16) for value in text.split(",")] if text else []


# JA4.md "Example": the ciphers, extensions and signature algorithms in the client's order.
SPEC_CIPHERS = hexes("1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035")
SPEC_EXTENSIONS = hexes(
    "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"
)
SPEC_SIGNATURES = hexes("0403,0804,0401,0503,0805,0501,0806,0601")


def test_specification_example() -> None:
    hello = client_hello(SPEC_CIPHERS, SPEC_EXTENSIONS, SPEC_SIGNATURES, versions=[TLS13, TLS12])
    assert ja4_of(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_grease_is_ignored_everywhere() -> None:
    hello = client_hello(
        [GREASE[0], *SPEC_CIPHERS],
        [GREASE[1], *SPEC_EXTENSIONS, GREASE[2]],
        [*SPEC_SIGNATURES[:2], GREASE[0], *SPEC_SIGNATURES[2:]],
        versions=[GREASE[1], TLS13, TLS12],
    )
    assert ja4_of(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_specification_example_without_signature_algorithms() -> None:
    # JA4.md: with no signature algorithms "the string ends without an underscore and is
    # hashed": 0005,...,ff01 = 6d807ffa2a79 (the list still holds 000d: an empty list here).
    hello = client_hello(SPEC_CIPHERS, SPEC_EXTENSIONS, (), versions=[TLS13])
    assert ja4_of(hello) == "t13d1516h2_8daaf6152771_6d807ffa2a79"


def test_no_ciphers_and_no_extensions_hash_to_zeros() -> None:
    assert ja4_of(client_hello([], [])) == "t12i000000_000000000000_000000000000"
    # only SNI and ALPN: both counted, but nothing is left for the extension hash
    hello = client_hello([0x002F], [EXT_SERVER_NAME, EXT_ALPN], legacy_version=TLS10)
    assert ja4_of(hello).endswith("_000000000000")  # type: ignore[union-attr]
    assert ja4_of(hello).startswith("t10d0102h2_")  # type: ignore[union-attr]


def test_version_sni_and_counts() -> None:
    # No supported_versions: the ClientHello's own version; an unknown one is "00".
    assert ja4_of(client_hello([0x002F], [0x000A], legacy_version=0x0302))[:4] == "t11i"  # type: ignore[index]
    assert ja4_of(client_hello([0x002F], [0x000A], legacy_version=0x0305))[:4] == "t00i"  # type: ignore[index]
    # supported_versions: its highest value, even when the ClientHello names TLS 1.2
    hello = client_hello([0x002F], [EXT_SUPPORTED_VERSIONS], versions=[TLS12, TLS13])
    assert ja4_of(hello)[:4] == "t13i"  # type: ignore[index]
    # more than 99 ciphers: "99"
    many = client_hello(list(range(1, 120)), [0x000A])
    assert ja4_of(many)[4:8] == "9901"  # type: ignore[index]


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        # JA4.md "ALPN Extension Value", every example it gives
        (b"h2", "h2"),
        (b"http/1.1", "h1"),
        (b"\xab", "ab"),
        (b"\x20", "20"),
        (b"\xab\xcd", "ad"),
        (b"\x20\x61", "21"),
        (b"\x30\xab", "3b"),
        (b"\x61\x20", "60"),
        (b"\x30\x31\xab\xcd", "3d"),
        (b"\x30\xab\xcd\x31", "01"),
        (b"a", "aa"),  # a single character is both first and last
        (b"", "00"),  # an empty first value
        (None, "00"),  # no ALPN extension or no value in it
    ],
)
def test_alpn_characters(first: bytes | None, expected: str) -> None:
    assert tls.ja4_alpn(first) == expected


def test_empty_alpn_list_is_00() -> None:
    hello = client_hello([0x002F], [EXT_ALPN], alpn=())
    assert ja4_of(hello)[:10] == "t12i0101" + "00"  # type: ignore[index]


def test_client_hello_cut_by_the_window_has_no_ja4() -> None:
    hello = client_hello(SPEC_CIPHERS, SPEC_EXTENSIONS, SPEC_SIGNATURES, versions=[TLS13])
    for end in range(len(hello) - 1, 5, -5):
        facts = tls.parse(hello[:end], b"")
        assert facts is None or facts["ja4"] is None, end


# Lines of FoxIO-LLC/ja4 python/test/testdata/<capture>.json: (capture, JA4, JA4_ro, first
# ALPN value, supported_versions the client sent (the fingerprint's version says which is
# highest), the ClientHello's own version).
REFERENCE = [
    (
        "tls12.pcap",
        "t13d1715h2_5b57614c22b0_3d5424432f57",
        "t13d1715h2_1301,1303,1302,c02b,c02f,cca9,cca8,c02c,c030,c00a,c009,c013,c014,009c,009d,"
        "002f,0035_0000,0017,ff01,000a,000b,0023,0010,0005,0022,0033,002b,000d,002d,001c,0015_"
        "0403,0503,0603,0804,0805,0806,0401,0501,0601,0203,0201",
        b"h2",
        [TLS13, TLS12],
        TLS12,
    ),
    (
        "latest.pcapng",
        "t12d190800_d83cc789557e_7af1ed941c26",
        "t12d190800_c02c,c02b,c030,c02f,c024,c023,c028,c027,c00a,c009,c014,c013,009d,009c,003d,"
        "003c,0035,002f,000a_0000,0005,000a,000b,000d,0023,0017,ff01_0804,0805,0806,0401,0501,"
        "0201,0403,0503,0203,0202,0601,0603",
        None,
        [],
        TLS12,
    ),
    (
        "tls-alpn-h2.pcap",
        "t12d4605h2_85626a9a5f7f_aaf95bb78ec9",
        "t12d4605h2_c030,c02c,c028,c024,c014,c00a,009f,006b,0039,cca9,cca8,ccaa,ff85,00c4,0088,"
        "0081,009d,003d,0035,00c0,0084,c02f,c02b,c027,c023,c013,c009,009e,0067,0033,00be,0045,"
        "009c,003c,002f,00ba,0041,c011,c007,0005,0004,c012,c008,0016,000a,00ff_0000,000b,000a,"
        "000d,0010_0601,0603,efef,0501,0503,0401,0403,eeee,eded,0301,0303,0201,0203",
        b"h2",
        [],
        TLS12,
    ),
    (
        "https3-301-get.pcap",
        "t10d230100_6a57a6f57151_000000000000",
        "t10d230100_0039,0038,0035,0016,0013,000a,0033,0032,002f,009a,0099,0096,0005,0004,0015,"
        "0012,0009,0014,0011,0008,0006,0003,00ff_0000",
        None,
        [],
        TLS10,
    ),
]


@pytest.mark.parametrize(
    ("expected", "original", "alpn", "versions", "legacy"),
    [case[1:] for case in REFERENCE],
    ids=[case[0] for case in REFERENCE],
)
def test_reference_output_rebuilt(
    expected: str, original: str, alpn: bytes | None, versions: list[int], legacy: int
) -> None:
    _, ciphers, extensions, *signatures = original.split("_")
    extension_types = hexes(extensions)
    if versions:
        extension_types.append(EXT_SUPPORTED_VERSIONS)  # 002b is in JA4_ro already: see below
        extension_types = [e for i, e in enumerate(extension_types) if e not in extension_types[:i]]
    hello = client_hello(
        hexes(ciphers),
        extension_types,
        hexes(signatures[0]) if signatures else (),
        alpn=[alpn] if alpn else (),
        versions=versions,
        legacy_version=legacy,
    )
    assert ja4_of(hello) == expected


def test_non_ascii_alpn_follows_the_specification_not_the_older_reference_output() -> None:
    # tls-non-ascii-alpn.pcapng's first ALPN value is 0xBA 0xAD: its testdata (and the Rust
    # snapshot) say "99", the rule before JA4.md's ALPN section was rewritten in January 2026;
    # the specification now prints the ends of the hex form: "bd". We follow the specification.
    hello = client_hello(
        SPEC_CIPHERS,
        SPEC_EXTENSIONS,
        SPEC_SIGNATURES,
        alpn=[b"\xba\xad", b"http/1.1"],
        versions=[TLS13, TLS12],
    )
    assert ja4_of(hello) == "t13d1516bd_8daaf6152771_e5627efa2ab1"  # reference: t13d151699_...


# --- the reference captures themselves, when a checkout of FoxIO-LLC/ja4 is at hand ----------

JA4_REFERENCE = os.environ.get("FLOWAUDIT_JA4_REFERENCE")
# Where our JA4 may differ from the reference output, and why.
KNOWN_DIFFERENCES = {
    # the first ALPN value is not alphanumeric: see the test above
    "tls-non-ascii-alpn.pcapng": "spec",
    # the ClientHello follows a SOCKS handshake: not the first bytes of the flow, so not TLS
    "socks-https-example.pcap": "not-first",
}


def _address(text: object) -> str:
    return str(ipaddress.ip_address(str(text)))


@pytest.mark.skipif(
    not JA4_REFERENCE,
    reason="FLOWAUDIT_JA4_REFERENCE (a checkout of FoxIO-LLC/ja4 with pcap/ and "
    "python/test/testdata/) is not set: its captures are not in the project",
)
def test_reference_captures() -> None:
    root = Path(str(JA4_REFERENCE))
    agreed = 0
    problems = []
    for expected_file in sorted((root / "python" / "test" / "testdata").glob("*.json")):
        capture = root / "pcap" / expected_file.name.removesuffix(".json")
        try:
            lines = json.loads(expected_file.read_text())
        except ValueError:
            continue
        expected: dict[tuple[str, int, str, int], str] = {}
        for line in lines:
            key = (
                _address(line["src"]),
                int(line["srcport"]),
                _address(line["dst"]),
                int(line["dstport"]),
            )
            # the first ClientHello of the connection (JA4 or JA4.1): the one we read
            value = line.get("JA4", line.get("JA4.1", ""))
            if value.startswith("t"):
                expected.setdefault(key, value)
        if not expected or not capture.exists():
            continue
        table = build_flow_table([capture], FlowConfig(payload_bytes=2048, idle_timeout=0))
        c2s, s2c = table.payloads.columns()
        columns = table.columns
        ours = {}
        for row in range(len(table)):
            if columns["proto"][row] != "tcp":
                continue
            protocol, facts = dissect("tcp", c2s[row], s2c[row])
            key = (
                _address(columns["client"][row]),
                int(columns["client_port"][row]),
                _address(columns["server"][row]),
                int(columns["server_port"][row]),
            )
            ours[key] = facts.get("ja4") if protocol == "tls" else None
        for key, value in expected.items():
            if ours.get(key) == value:
                agreed += 1
            elif capture.name not in KNOWN_DIFFERENCES:
                problems.append(f"{capture.name} {key}: ours {ours.get(key)}, reference {value}")
    assert not problems, problems
    assert agreed >= 100, agreed
