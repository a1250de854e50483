"""The C kernels (flowaudit/_kernels.c) against their Python specification.

Every corpus capture, damaged and random variants of real captures, and random bytes fed
straight into each kernel must give the same columns, flows, payload prefixes, counters and
warnings from both implementations -- and the C must never read or write outside an array
(random offsets and lengths are the test of that; a crash fails the whole run).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flowaudit import flow_kernel, flows
from flowaudit.capture import decode, kernels, reader, walk
from flowaudit.capture.batch import DECODED_COLUMNS, PacketBatch
from flowaudit.config import FlowConfig
from flowaudit.errors import FlowauditError
from tests import capbuild as cb
from tests.sample import run_module

CORPUS = Path(os.environ.get("FLOWAUDIT_CORPUS", Path(__file__).parents[2] / "shared" / "corpus"))
CAPTURES = sorted(p for p in CORPUS.glob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
LAB = sorted((Path(__file__).parents[1] / "lab" / "captures").glob("*.pcap"))

compiled = kernels.compiled
needs_c = pytest.mark.skipif(
    compiled is None and not os.environ.get("CI"), reason="flowaudit._kernels is not built"
)


def test_the_compiled_kernels_are_built_where_ci_runs() -> None:
    # CI installs with a C compiler: the extension must be there and chosen, or every other
    # test here would compare the Python kernels with themselves.
    if os.environ.get("CI"):
        assert compiled is not None
    if compiled is not None and not kernels.python_asked_for():
        assert walk.walk_pcap is compiled.walk_pcap
        assert flow_kernel.update_flows is compiled.update_flows


@contextmanager
def python_kernels() -> Iterator[None]:
    """Run the readers and the assembler on the Python reference kernels for a while."""
    saved = (reader.walk_pcap, reader.walk_pcapng, reader.decode_records)
    saved_flows = (flows.update_flows, flows.rebuild_table)
    reader.walk_pcap, reader.walk_pcapng = walk.walk_pcap_py, walk.walk_pcapng_py
    reader.decode_records = decode.decode_records_py
    flows.update_flows, flows.rebuild_table = (
        flow_kernel.update_flows_py,
        flow_kernel.rebuild_table_py,
    )
    try:
        yield
    finally:
        reader.walk_pcap, reader.walk_pcapng, reader.decode_records = saved
        flows.update_flows, flows.rebuild_table = saved_flows


def _table(path: Path, payload_bytes: int = 512) -> dict[str, Any]:
    """What a whole read gives: every flow column, payloads, capture facts, or the error."""
    try:
        table = flows.build_flow_table(
            [path], FlowConfig(payload_bytes=payload_bytes, idle_timeout=60)
        )
    except FlowauditError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = {k: np.asarray(v).tolist() for k, v in table.columns.items()}
    c2s, s2c = table.payloads.columns()
    out["payloads"] = (list(c2s), list(s2c))
    out["captures"] = [vars(c) for c in table.captures]
    out["orphans"] = table.orphan_fragments
    return out


def _both(path: Path, payload_bytes: int = 512) -> tuple[dict[str, Any], dict[str, Any]]:
    native = _table(path, payload_bytes)
    with python_kernels():
        reference = _table(path, payload_bytes)
    return native, reference


@needs_c
@pytest.mark.parametrize("path", CAPTURES + LAB, ids=lambda p: p.name)
def test_every_real_capture_reads_the_same_in_c_and_python(path: Path) -> None:
    if path.stat().st_size > 4_000_000:
        pytest.skip("larger than the reference loops read in a test's time")
    native, reference = _both(path)
    assert native == reference


def test_the_corpus_is_there_when_ci_runs() -> None:
    if os.environ.get("CI"):
        assert len(CAPTURES) >= 30


def _mutations(data: bytes, rng: random.Random, header: int) -> Iterator[bytes]:
    """Damaged copies of a capture: flipped bytes, cut short, lengths overwritten."""
    for _ in range(6):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 40)):
            at = rng.randrange(header, len(mutated))
            mutated[at] = rng.randrange(256)
        yield bytes(mutated)
    yield data[: rng.randrange(header, len(data))]
    mutated = bytearray(data)
    for _ in range(8):  # 32-bit fields set to extremes: lengths, timestamps, interface ids
        at = rng.randrange(header, len(mutated) - 4)
        mutated[at : at + 4] = rng.choice(
            [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]
        )
    yield bytes(mutated)


SMALL = [p for p in CAPTURES if p.stat().st_size < 40_000 and p.stat().st_size > 100]


@needs_c
@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.name)
def test_damaged_captures_read_the_same_in_c_and_python(path: Path, tmp_path: Path) -> None:
    rng = random.Random(path.name)
    data = path.read_bytes()
    header = 24 if path.suffix != ".pcapng" else 64
    for k, mutated in enumerate(_mutations(data, rng, header)):
        target = tmp_path / f"m{k}{path.suffix}"
        target.write_bytes(mutated)
        native, reference = _both(target, payload_bytes=64)
        assert native == reference, f"mutation {k}"


# ----------------------------------------------------------------- kernels fed directly


def _columns(capacity: int) -> tuple[np.ndarray, ...]:
    return walk.RecordColumns(capacity).outputs()


@needs_c
def test_walkers_agree_on_random_bytes_and_positions() -> None:
    assert compiled is not None
    rng = np.random.default_rng(7)
    for trial in range(300):
        size = int(rng.integers(0, 4096))
        buf = rng.integers(0, 256, size, dtype=np.uint8)
        if trial % 3 == 0 and size > 16:  # plausible record lengths, so walks go on
            for at in range(0, size - 16, 40):
                buf[at + 8 : at + 12] = np.frombuffer(np.uint32(24).tobytes(), np.uint8)
        pos = int(rng.integers(-8, size + 8))
        end = int(rng.integers(-8, size + 64))  # past the buffer too: the C must clamp
        big = bool(trial % 2)
        capacity = int(rng.integers(0, 8))
        a, b = _columns(capacity), _columns(capacity)
        got = compiled.walk_pcap(buf, pos, end, big, 1000, *a)
        want = walk.walk_pcap_py(buf, pos, end, big, 1000, *b)
        assert got == want
        n = got[0]
        assert all(np.array_equal(x[:n], y[:n]) for x, y in zip(a, b, strict=True))

        interfaces = int(rng.integers(0, 3))
        if_arrays = (
            np.array(rng.integers(0, 3, interfaces), dtype=np.int64),
            np.array(rng.choice([1, 10, 1000, 7], interfaces), dtype=np.int64),
            np.array(rng.integers(-(10**12), 10**12, interfaces), dtype=np.int64),
            np.array(rng.integers(0, 100, interfaces), dtype=np.int64),
        )
        stats_a, stats_b = np.zeros(2, np.int64), np.zeros(2, np.int64)
        got = compiled.walk_pcapng(buf, pos, end, big, *if_arrays, 5, *a, stats_a)
        want = walk.walk_pcapng_py(buf, pos, end, big, *if_arrays, 5, *b, stats_b)
        assert got == want
        n = got[0]
        assert all(np.array_equal(x[:n], y[:n]) for x, y in zip(a, b, strict=True))
        assert np.array_equal(stats_a, stats_b)


@pytest.mark.parametrize(
    ("raw", "kind", "factor", "offset", "expected"),
    [
        (1_700_000_000_000_000, walk.TS_MUL, 1000, 0, 1_700_000_000_000_000_000),
        (2**64 - 1, walk.TS_MUL, 1000, 0, None),  # wraps in int64 ns: refused
        (2**63, walk.TS_MUL, 1, 0, None),
        (2**63 - 1, walk.TS_MUL, 1, 1, None),  # the offset carries it past int64
        (0, walk.TS_MUL, 1, -(2**63), None),  # int64's minimum is NaT to numpy
        (2**64 - 1, walk.TS_DIV, 10, 0, (2**64 - 1) // 10),
        (5 << 32, walk.TS_BIN, 32, 0, 5_000_000_000),
        (2**64 - 1, walk.TS_BIN, 1, 0, None),
    ],
)
def test_pcapng_timestamps_outside_int64_nanoseconds_are_refused(
    raw: int, kind: int, factor: int, offset: int, expected: int | None
) -> None:
    assert walk.pcapng_ts(raw, kind, factor, offset) == expected


def _random_batch(rng: np.random.Generator, n: int, size: int) -> PacketBatch:
    batch = PacketBatch.empty(0, n, rng.integers(0, 256, size, dtype=np.uint8))
    batch.frame[:] = np.arange(1, n + 1)
    batch.ts_ns[:] = np.sort(rng.integers(0, 10**10, n))
    batch.wire_len[:] = rng.integers(0, 2000, n)
    # few addresses and ports, so that packets meet their flows again, in both directions
    batch.l3[:] = rng.choice([0, 4, 6], n, p=[0.05, 0.8, 0.15])
    batch.proto[:] = rng.choice([6, 17, 1], n, p=[0.6, 0.3, 0.1])
    hosts = rng.integers(0, 4, (2, n))
    batch.src_lo[:] = 0xFFFF00000000 + hosts[0].astype(np.uint64)
    batch.dst_lo[:] = 0xFFFF00000000 + hosts[1].astype(np.uint64)
    batch.sport[:] = rng.choice([445, 50000, 50001], n)
    batch.dport[:] = rng.choice([445, 50000, 50001], n)
    batch.tcp_flags[:] = rng.choice([0x02, 0x12, 0x10, 0x18, 0x11, 0x04], n)
    batch.tcp_seq[:] = rng.choice([0, 1, 100, 2**32 - 5, 7000], n)
    batch.payload_off[:] = rng.integers(-10, size + 10, n)
    batch.payload_len[:] = rng.integers(0, 3000, n)
    batch.payload_cap[:] = rng.integers(0, 3000, n)
    batch.l2_multicast[:] = rng.random(n) < 0.1
    batch.frag[:] = rng.choice([0, 1, 2], n, p=[0.8, 0.1, 0.1])
    batch.frag_id[:] = rng.integers(0, 3, n)
    return batch


@needs_c
def test_flow_update_agrees_on_random_packets_growing_every_table() -> None:
    rng = np.random.default_rng(11)
    for trial in range(40):
        batch = _random_batch(rng, int(rng.integers(1, 400)), int(rng.integers(0, 5000)))
        payload = int(rng.choice([0, 16, 300]))
        results = []
        for update, rebuild in (
            (flow_kernel.update_flows, flow_kernel.rebuild_table),
            (flow_kernel.update_flows_py, flow_kernel.rebuild_table_py),
        ):
            assembler = flows.FlowAssembler(FlowConfig(payload_bytes=payload, idle_timeout=1))
            assembler._flows = np.zeros(2, dtype=flow_kernel.FLOW_DTYPE)  # grow rows, table
            assembler._table = np.full(4, -1, dtype=np.int64)
            saved = flows.update_flows, flows.rebuild_table
            flows.update_flows, flows.rebuild_table = update, rebuild
            try:
                assembler.add(batch)
            finally:
                flows.update_flows, flows.rebuild_table = saved
            rows = assembler._flows[: assembler._rows]
            arena = assembler._arena.array[: assembler._slots].copy()
            results.append(
                (
                    rows.tobytes(),
                    arena.tobytes(),
                    assembler.orphan_fragments,
                    assembler._pkt_row[: len(batch)].tolist(),
                    assembler._pkt_fwd[: len(batch)].tolist(),
                )
            )
        assert results[0] == results[1], f"trial {trial}"


@needs_c
def test_decoder_agrees_on_random_records() -> None:
    assert compiled is not None
    rng = np.random.default_rng(3)
    for _ in range(200):
        size = int(rng.integers(0, 3000))
        buf = rng.integers(0, 256, size, dtype=np.uint8)
        # an IPv4 or IPv6 header start now and then, so decoding goes deep
        for at in range(0, max(0, size - 60), 97):
            buf[at + 12 : at + 14] = rng.choice([[8, 0], [0x86, 0xDD], [0x81, 0]])
            buf[at + 14] = rng.choice([0x45, 0x46, 0x60, 0x4F])
        count = int(rng.integers(0, 40))
        offset = rng.integers(-5, size + 5, count).astype(np.int64)
        caplen = rng.integers(0, 2000, count).astype(np.uint32)
        rec_if = rng.integers(-1, 3, count).astype(np.int32)
        linktypes = np.array(rng.choice([1, 113, 276, 0, 108, 101, 228, 229, 999], 2), np.int32)
        a = PacketBatch.empty(0, count)
        b = PacketBatch.empty(0, count)
        compiled.decode_records(buf, count, offset, caplen, rec_if, linktypes, *a.decoded())
        decode.decode_records_py(buf, count, offset, caplen, rec_if, linktypes, *b.decoded())
        for name in DECODED_COLUMNS:
            assert np.array_equal(getattr(a, name), getattr(b, name)), name


@needs_c
def test_the_c_refuses_arrays_of_the_wrong_width_or_length() -> None:
    assert compiled is not None
    buf = np.zeros(64, np.uint8)
    out = list(_columns(4))
    out[0] = np.zeros(4, np.int32)  # offsets are int64
    with pytest.raises(TypeError, match="offset"):
        compiled.walk_pcap(buf, 0, 64, False, 1000, *out)
    short = PacketBatch.empty(0, 2)
    with pytest.raises(ValueError, match="items"):  # 5 records into columns of 2
        compiled.decode_records(
            buf,
            5,
            np.zeros(5, np.int64),
            np.zeros(5, np.uint32),
            np.zeros(5, np.int32),
            np.ones(1, np.int32),
            *short.decoded(),
        )


def test_a_pcapng_of_many_interfaces_reads_all_of_them(tmp_path: Path) -> None:
    # 20,000 interface blocks, then a packet on the last: every block parsed, in linear time
    # (the interface arrays were rebuilt after each block, quadratic: 100,000 took minutes).
    interfaces = [cb.Interface(cb.LINKTYPE_ETHERNET) for _ in range(20_000)]
    frame = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"x", seq=1)
    section = cb.Section([*interfaces, cb.EPB(19_999, 1_700_000_000 * 10**9, frame)])  # type: ignore[list-item]
    path = cb.write(tmp_path / "many.pcapng", cb.pcapng_bytes(section))
    table = flows.build_flow_table([path], FlowConfig())
    assert table.captures[0].packets == 1 and len(table) == 1


def test_pcapng_timestamps_past_int64_warn_and_never_make_nat(tmp_path: Path) -> None:
    frame = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"x", seq=1)
    t = 1_700_000_000 * 10**6  # µs
    section = cb.Section(
        [
            cb.Interface(cb.LINKTYPE_ETHERNET),
            cb.EPB(0, 0, frame, ts_ticks=t),
            cb.EPB(0, 0, frame, ts_ticks=2**64 - 1),  # µs: past year 2262
            cb.EPB(0, 0, frame, ts_ticks=t + 5),
        ]
    )
    path = cb.write(tmp_path / "far.pcapng", cb.pcapng_bytes(section))
    table = flows.build_flow_table([path], FlowConfig())
    (info,) = table.captures
    assert any("1 packets have a timestamp outside" in w for w in info.warnings)
    first, last = table.columns["first_seen"][0], table.columns["last_seen"][0]
    assert not np.isnat(first) and not np.isnat(last)
    assert int(first.astype("int64")) == t * 1000 and int(last.astype("int64")) == (t + 5) * 1000


def test_a_block_whose_trailing_length_differs_is_read_with_a_warning(tmp_path: Path) -> None:
    frame = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"x", seq=1)
    section = cb.Section(
        [
            cb.Interface(cb.LINKTYPE_ETHERNET),
            cb.RawBlock(0x0BAD, b"abcd", trailing_length=999),
            cb.EPB(0, 1_700_000_000 * 10**9, frame),
        ]
    )
    path = cb.write(tmp_path / "trailer.pcapng", cb.pcapng_bytes(section))
    table = flows.build_flow_table([path], FlowConfig())
    (info,) = table.captures
    assert info.packets == 1
    assert any("1 pcapng blocks end with a length that differs" in w for w in info.warnings)


def test_a_section_header_with_megabytes_of_comment_is_read(tmp_path: Path) -> None:
    # tshark reads a 12 MB header block; the reader refused anything past its 8 MB buffer.
    comments = [(1, b"c" * 60_000)] * 210  # an option holds at most 65,535 bytes
    frame = cb.ip4_tcp_frame(sport=40000, dport=445, payload=b"x", seq=1)
    section = cb.Section(
        [cb.Interface(cb.LINKTYPE_ETHERNET), cb.EPB(0, 1_700_000_000 * 10**9, frame)],
        options=comments,
    )
    path = cb.write(tmp_path / "comment.pcapng", cb.pcapng_bytes(section))
    table = flows.build_flow_table([path], FlowConfig())
    assert table.captures[0].packets == 1 and not table.captures[0].warnings


def test_the_cli_says_when_the_python_loops_read_a_large_capture(tmp_path: Path) -> None:
    frame = cb.ip4_udp_frame(sport=40000, dport=53, payload=b"x" * 1400)
    records = [cb.Rec(1_700_000_000 * 10**9 + k, frame) for k in range(12_000)]  # ~17 MB
    path = cb.write(tmp_path / "big.pcap", cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET))
    done = run_module(
        "flows",
        str(path),
        "-o",
        str(tmp_path / "f.csv"),
        cwd=tmp_path,
        env={**os.environ, "FLOWAUDIT_PURE_PYTHON": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "FLOWAUDIT_PURE_PYTHON is set: reading with the Python loops (slow)" in done.stderr
