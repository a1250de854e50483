"""Pivots (flowaudit/pivots.py): the Community ID against the published test vectors and
tshark's own Community ID, and every flow's Wireshark display filter run through
``tshark -Y`` on the corpus.

No Zeek or Suricata baseline prints a Community ID for a trace of our corpus: Zeek's
Community ID tests run on traces of their own (``communityid/*.pcap``,
``tcp/handshake-reorder.trace``, ``http/get.trace``) and none of the eight suricata-verify tests
the corpus comes from enables or checks ``community_id`` (checked against the MANIFEST's
paths). So the vectors are the spec's own, and tshark's ``communityid`` post-dissector (a third
implementation, Wireshark's) is the oracle on the corpus.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from flowaudit.audit import AuditResult, audit
from flowaudit.flows import build_flow_table
from flowaudit.pivots import community_id, display_filter
from tests.conftest import corpus_files, missing

# Community ID test vectors published with the spec (corelight/community-id-spec,
# BSD-3-Clause): source, licence and layout are in the file.
VECTORS = json.loads(
    (Path(__file__).parent / "pivots_data" / "community_id_vectors.json").read_text()
)

# Flows whose filter is run through tshark: every flow of a capture with fewer, else this
# many spread evenly over its flows.
SAMPLED_FLOWS = 60


@pytest.mark.parametrize("vector", VECTORS["table"] + VECTORS["baseline"])
def test_community_id_matches_the_published_vectors(vector: list[Any]) -> None:
    proto, src, sport, dst, dport, seed0, seed1 = vector
    assert community_id(proto, src, sport, dst, dport) == seed0
    assert community_id(proto, src, sport, dst, dport, seed=1) == seed1


def test_community_id_is_the_same_both_ways_but_for_one_way_icmp() -> None:
    assert community_id(6, "10.0.0.1", 1234, "127.0.0.1", 80) == community_id(
        6, "127.0.0.1", 80, "10.0.0.1", 1234
    )
    # Equal addresses: the ports decide the order.
    assert community_id(17, "10.0.0.1", 53, "10.0.0.1", 5353) == community_id(
        17, "10.0.0.1", 5353, "10.0.0.1", 53
    )
    # Time exceeded (11) has no counterpart: one-way, its endpoints never swapped.
    assert community_id(1, "1.2.3.4", 11, "5.6.7.8", 0) != community_id(
        1, "5.6.7.8", 11, "1.2.3.4", 0
    )
    # A protocol without ports ignores any it is given.
    assert community_id(46, "1.2.3.4", 1, "5.6.7.8", 2) == community_id(
        46, "1.2.3.4", None, "5.6.7.8", None
    )
    with pytest.raises(ValueError):
        community_id(6, "1.2.3.4", 1, "::1", 2)


def _flow(**changes: Any) -> dict[str, Any]:
    flow = {
        "proto": "tcp",
        "client": "10.0.0.5",
        "client_port": 49722,
        "server": "10.0.0.1",
        "server_port": 445,
        "first_frame": 7,
        "last_frame": 90,
        "file": "a.pcap",
    }
    return {**flow, **changes}


def test_display_filter_names_each_direction_and_the_frames() -> None:
    assert display_filter(_flow()) == (
        "((ip.src#1 == 10.0.0.5 && ip.dst#1 == 10.0.0.1 && tcp.srcport == 49722"
        " && tcp.dstport == 445) || (ip.src#1 == 10.0.0.1 && ip.dst#1 == 10.0.0.5"
        " && tcp.srcport == 445 && tcp.dstport == 49722)) && !icmp"
        " && frame.number >= 7 && frame.number <= 90"
    )
    six = display_filter(_flow(proto="udp", client="fe80::1", server="ff02::1:2"))
    assert six.startswith("((ipv6.src#1 == fe80::1 && ipv6.dst#1 == ff02::1:2 && udp.srcport")
    assert "!icmpv6" in six
    icmp = display_filter(_flow(proto="icmp", client_port=0, server_port=0))
    assert "!icmp" not in icmp and "&& icmp)" in icmp


def test_display_filter_of_a_flow_over_several_files_has_no_frame_range() -> None:
    """Frame numbers count per file: no range selects a flow whose frames are in two files."""
    spanning = display_filter(_flow(first_file="a.pcap", last_file="b.pcap"))
    assert "frame.number" not in spanning
    assert spanning.endswith("tcp.dstport == 49722)) && !icmp")


def test_display_filters_tell_apart_reversed_ports_and_tunnelled_copies(
    tshark: str, tmp_path: Path
) -> None:
    """Two flows with the same addresses and port numbers the other way round, at the same
    time, and a GRE copy of one of them: each filter selects its own flow's frames only."""
    from tests import capbuild as cb

    def tcp(src: str, dst: str, sport: int, dport: int, flags: str, seq: int) -> bytes:
        return cb.ip4_tcp_frame(src, dst, sport, dport, flags, b"", seq=seq)

    a, b = "10.0.0.1", "10.0.0.2"
    inner = cb.ipv4(a, b, cb.PROTO_TCP, cb.tcp(50001, 445, "S", 100, ip_src=a, ip_dst=b))
    gre = cb.ipv4("192.0.2.1", "192.0.2.2", 47, b"\x00\x00\x08\x00" + inner)
    frames = [
        tcp(a, b, 50001, 445, "S", 100),
        tcp(b, a, 50001, 445, "S", 500),
        tcp(b, a, 445, 50001, "SA", 900),
        tcp(a, b, 445, 50001, "SA", 700),
        cb.ether(cb.MAC_A, cb.MAC_B, cb.ETH_IPV4, gre),
        tcp(a, b, 50001, 445, "A", 101),
        tcp(b, a, 50001, 445, "A", 501),
    ]
    records = [cb.Rec(1_700_000_000_000_000_000 + k * 1000, f) for k, f in enumerate(frames)]
    path = cb.write(tmp_path / "edge.pcap", cb.pcap_bytes(records, cb.LINKTYPE_ETHERNET))
    result = _result(path)
    assert len(result.flows) == 2  # (the GRE packet is an other-protocol flow of its own)
    for flow in result.flows:
        selected = _tshark_frames(tshark, path, flow["wireshark_filter"])
        assert len(selected) == flow["packets"], flow["wireshark_filter"]
        assert (selected[0], selected[-1]) == (flow["first_frame"], flow["last_frame"])


def _tshark_frames(tshark: str, path: Path, display: str) -> list[int]:
    out = subprocess.run(
        [tshark, "-n", "-r", str(path), "-Y", display, "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=False,  # a capture cut short ends in exit status 2, all read
    ).stdout
    return [int(number) for number in out.split()]


def _tshark_community_ids(tshark: str, path: Path) -> dict[int, str]:
    out = subprocess.run(
        [
            *(tshark, "-n", "--enable-protocol", "communityid", "-r", str(path)),
            *("-T", "fields", "-e", "frame.number", "-e", "communityid"),
        ],
        capture_output=True,
        text=True,
        check=False,  # a capture cut short ends in exit status 2, all read
    ).stdout
    ids = {}
    for line in out.splitlines():
        number, _, value = line.partition("\t")
        ids[int(number)] = value
    return ids


def _sample(flows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if len(flows) <= SAMPLED_FLOWS:
        return list(flows)
    return [flows[k * len(flows) // SAMPLED_FLOWS] for k in range(SAMPLED_FLOWS)]


def _result(path: Path) -> AuditResult:
    return audit(build_flow_table([path]))


@pytest.mark.corpus
@pytest.mark.tshark
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_community_id_agrees_with_tshark_on_every_corpus_flow(
    corpus: Path, tshark: str, path: Path
) -> None:
    """Wireshark's ``communityid`` post-dissector gives each frame its flow's id: ours, at the
    flow's first and last frame."""
    result = _result(path)
    if not result.flows:
        pytest.skip(f"{path.name}: no TCP or UDP flow")
    ids = _tshark_community_ids(tshark, path)
    wrong = [
        (flow["id"], flow["community_id"], ids.get(flow["first_frame"]))
        for flow in result.flows
        if flow["community_id"] != ids.get(flow["first_frame"])
        or flow["community_id"] != ids.get(flow["last_frame"])
    ]
    assert not wrong, f"{path.name}: {len(wrong)} flows differ, e.g. {wrong[:3]}"
    for finding in result.findings:
        of_flows = {flow["id"]: flow["community_id"] for flow in result.flows}
        assert finding.community_ids == list(
            dict.fromkeys(of_flows[flow_id] for flow_id in finding.flow_ids)
        )
        assert finding.to_dict()["community_ids"] == finding.community_ids


@pytest.mark.corpus
@pytest.mark.tshark
@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_display_filter_selects_exactly_the_flows_frames(
    corpus: Path, tshark: str, path: Path
) -> None:
    """``tshark -Y FILTER`` selects the flow's packets, no more, from its first frame to its
    last (every flow of a capture of fewer than 60, else 60 spread evenly)."""
    result = _result(path)
    if not result.flows:
        pytest.skip(f"{path.name}: no TCP or UDP flow")
    sample = _sample(result.flows)
    with ThreadPoolExecutor(max_workers=8) as pool:
        selected = list(
            pool.map(lambda flow: _tshark_frames(tshark, path, flow["wireshark_filter"]), sample)
        )
    wrong = [
        (flow["id"], flow["packets"], len(frames), flow["wireshark_filter"])
        for flow, frames in zip(sample, selected, strict=True)
        if len(frames) != flow["packets"]
        or frames[0] != flow["first_frame"]
        or frames[-1] != flow["last_frame"]
    ]
    assert not wrong, f"{path.name}: {len(wrong)} of {len(sample)} filters wrong: {wrong[:3]}"


@pytest.mark.corpus
@pytest.mark.tshark
def test_display_filters_over_a_capture_set_split_in_two(
    corpus: Path, tshark: str, tmp_path: Path
) -> None:
    """A capture split in two files: a flow within one file is selected exactly in that file
    (frames count per file); a flow over both gets no frame range, and its filter selects its
    packets in the two files together."""
    source = corpus / "sv_smb_psexec_add_user.pcap"
    if not source.is_file():
        missing(f"{source.name} in the corpus")
    if shutil.which("editcap") is None:
        missing("editcap (Wireshark's, installed with tshark)")
    subprocess.run(
        ["editcap", "-c", "200", str(source), str(tmp_path / "part.pcap")],
        check=True,
        capture_output=True,
    )
    parts = sorted(tmp_path.glob("part*.pcap"))
    assert len(parts) == 2
    table = build_flow_table(parts)
    last_file = dict(
        zip(table.columns["id"].tolist(), table.columns["last_file"].tolist(), strict=True)
    )
    result = audit(table)
    spanning = within = 0
    for flow in result.flows:
        if last_file[flow["id"]] != flow["file"]:
            spanning += 1
            assert "frame.number" not in flow["wireshark_filter"]
            frames = sum(len(_tshark_frames(tshark, p, flow["wireshark_filter"])) for p in parts)
            # Without the range, another flow of the same ends (a port reused) would be
            # selected too: none here.
            assert frames == flow["packets"], flow
        else:
            within += 1
            frames = _tshark_frames(tshark, Path(flow["file"]), flow["wireshark_filter"])
            assert (len(frames), frames[0], frames[-1]) == (
                flow["packets"],
                flow["first_frame"],
                flow["last_frame"],
            ), flow
    assert spanning and within


@pytest.mark.corpus
def test_a_narrowed_finding_names_only_its_flows_community_ids(corpus: Path) -> None:
    path = corpus / "sv_smb2_mixed_windows_lan.pcap"
    if not path.is_file():
        missing(f"{path.name} in the corpus")
    result = _result(path)
    finding = next(f for f in result.findings if len(set(f.community_ids)) > 1)
    narrowed = replace(finding, flow_ids=finding.flow_ids[:1])
    flow = next(flow for flow in result.flows if flow["id"] == finding.flow_ids[0])
    assert narrowed.community_ids == [flow["community_id"]]
