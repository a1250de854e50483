"""The flow table against tshark's conversation tables on every capture of the real corpus.

With ``idle_timeout=0`` flowaudit counts as tshark does, and every TCP and UDP flow must match a
tshark conversation exactly: endpoints, packets, bytes (original frame lengths). With the
default idle timeout (60 s, as Zeek) UDP flows split where tshark's do not; then each tshark
conversation must equal the sum of flowaudit's flows on it, and every split must sit at a gap of
more than 60 s. Documented differences by design, checked here rather than hidden:

* tshark keeps one UDP conversation however long it is silent (it has no timeout);
* fragments: flowaudit counts every IP fragment to its flow; tshark reassembles and counts the
  reassembled datagram (no corpus file has fragments; the unit tests cover them).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

from flowaudit.flows import FlowConfig, build_flow_table
from tests.conftest import corpus_files
from tests.oracle import conversations

pytestmark = [pytest.mark.corpus, pytest.mark.tshark]

CAPTURES = corpus_files()
BROKEN = {
    "otrf_winrm_psremoting_trailing_byte.cap": "cut short",
    "sv_tls_corrupt_record.pcap": "damaged",
}


def _ends(row: pd.Series) -> frozenset[tuple[str, int]]:
    return frozenset({(row.client, int(row.client_port)), (row.server, int(row.server_port))})


def _transport(flows: pd.DataFrame) -> pd.DataFrame:
    return flows[flows["proto"].isin(["tcp", "udp"])]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_flows_equal_tshark_conversations(capture: Path, tshark: str) -> None:
    table = build_flow_table([capture], FlowConfig(idle_timeout=0))
    ours = Counter(
        (r.proto, _ends(r), int(r.packets), int(r.bytes))
        for r in _transport(table.flows).itertuples()
    )
    theirs = Counter((c.proto, c.endpoints, c.frames, c.bytes) for c in conversations(capture))
    assert ours == theirs, f"ours only: {ours - theirs}; tshark only: {theirs - ours}"
    info = table.captures[0]
    if capture.name in BROKEN:
        assert any(BROKEN[capture.name] in w for w in info.warnings), info.warnings
    else:
        assert info.warnings == []


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_default_idle_timeout_only_splits_long_silences(capture: Path, tshark: str) -> None:
    flows = _transport(build_flow_table([capture]).flows)
    by_conversation: dict[tuple[str, frozenset[tuple[str, int]]], list[pd.Series]] = defaultdict(
        list
    )
    for _, row in flows.iterrows():
        by_conversation[(row.proto, _ends(row))].append(row)
    for conv in conversations(capture):
        pieces = by_conversation.pop((conv.proto, conv.endpoints), [])
        assert sum(int(p.packets) for p in pieces) == conv.frames
        assert sum(int(p.bytes) for p in pieces) == conv.bytes
        if conv.proto == "tcp":
            assert len(pieces) == 1  # TCP never splits on time
        pieces.sort(key=lambda p: p.first_seen)
        for before, after in itertools.pairwise(pieces):
            gap = (after.first_seen - before.last_seen).total_seconds()
            assert gap > 60.0, f"split at a gap of {gap} s"
    assert not by_conversation, f"flows tshark does not have: {list(by_conversation)}"


def test_udp_idle_timeout_splits_somewhere_in_the_corpus(corpus: Path, tshark: str) -> None:
    # The LAN capture has NetBIOS/DHCPv6 chatter minutes apart on the same 5-tuple.
    capture = corpus / "sv_smb2_mixed_windows_lan.pcap"
    split = len(_transport(build_flow_table([capture]).flows))
    whole = len(_transport(build_flow_table([capture], FlowConfig(idle_timeout=0)).flows))
    assert whole == len(conversations(capture)) == 198
    assert split > whole
