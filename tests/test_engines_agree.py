"""The two engines build the same flow table on every capture of the real corpus.

The native reader decodes the capture bytes itself; the pyshark engine takes every field from
tshark's dissection. Both feed the same flow assembly, so any difference in a row (endpoints,
counts per direction, times, TCP state, evidence frames, first payload bytes) is a difference
in how a packet was read -- which is what this test is for.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flowaudit.flows import FlowConfig, build_flow_table
from tests.conftest import corpus_files

pytestmark = [pytest.mark.corpus, pytest.mark.tshark]


@pytest.mark.parametrize("capture", corpus_files(), ids=lambda p: p.name)
def test_native_and_pyshark_engines_agree(capture: Path, tshark: str) -> None:
    config = FlowConfig(payload_bytes=512)
    native = build_flow_table([capture], config)
    dissected = build_flow_table([capture], config, engine="pyshark")
    pd.testing.assert_frame_equal(native.flows, dissected.flows)
    ours, theirs = native.captures[0], dissected.captures[0]
    assert (ours.packets, ours.bytes, ours.ip_packets) == (
        theirs.packets,
        theirs.bytes,
        theirs.ip_packets,
    )
    assert (ours.first_seen_ns, ours.last_seen_ns) == (theirs.first_seen_ns, theirs.last_seen_ns)
    assert bool(ours.warnings) == bool(theirs.warnings)
