"""tshark as the independent oracle: its conversation tables, read exactly.

``tshark -q -z conv,tcp -z conv,udp`` gives frames per conversation exactly but rounds bytes
above 1 kB ("1023 kB"). Exact bytes come from summing ``frame.len`` per ``tcp.stream`` /
``udp.stream`` -- the conversation ids the same tables are built on -- leaving out frames where
the transport header sits inside an ICMP error (the conversation tables do not count those
either). Each conversation is checked against the table's frame count.

One difference by design: a frame whose TCP header is cut short by the snap length (a SYN with
40 bytes of header under a 68-byte snaplen) makes tshark's TCP dissector stop with an exception
before it reaches the conversation tap, so the table leaves it out, though ``tcp.stream`` puts it
in the stream. flowaudit counts it (its ports and flags were captured). ``short_frames`` says how
many such frames each conversation has; the table's count is ``frames - short_frames``.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

Endpoints = frozenset[tuple[str, int]]


@dataclass(frozen=True)
class Conversation:
    proto: str
    endpoints: Endpoints
    frames: int
    bytes: int
    short_frames: int = 0


_CONV_LINE = re.compile(
    r"^(?P<a>\S+):(?P<ap>\d+)\s+<->\s+(?P<b>\S+):(?P<bp>\d+)\s+"
    r"(?P<f1>\d+)\s+\S+(?: bytes| kB| MB| GB)?\s+(?P<f2>\d+)\s+\S+(?: bytes| kB| MB| GB)?\s+"
    r"(?P<ft>\d+)\s"
)


def _run(args: list[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    return result.stdout


def conv_tables(path: Path) -> Counter[tuple[str, Endpoints, int]]:
    """(proto, endpoints, total frames) of every row of tshark's TCP and UDP tables."""
    text = _run(["tshark", "-n", "-q", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp"])
    rows: Counter[tuple[str, Endpoints, int]] = Counter()
    proto = ""
    for line in text.splitlines():
        if line.startswith("TCP Conversations"):
            proto = "tcp"
        elif line.startswith("UDP Conversations"):
            proto = "udp"
        match = _CONV_LINE.match(line)
        if match and proto:
            ends = frozenset({(match["a"], int(match["ap"])), (match["b"], int(match["bp"]))})
            rows[(proto, ends, int(match["ft"]))] += 1
    return rows


def conversations(path: Path) -> list[Conversation]:
    """Every TCP/UDP conversation with exact frames and bytes, as tshark counts them."""
    # Frames cut short inside the transport header itself (the last layer tshark reached).
    short = set()
    for line in _run(
        [
            "tshark",
            "-n",
            "-r",
            str(path),
            "-Y",
            "_ws.short",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.number",
            "-e",
            "frame.protocols",
        ]
    ).splitlines():
        number, _, layers = line.partition("|")
        if layers.rsplit(":", 1)[-1] in ("tcp", "udp"):
            short.add(int(number))
    fields = [
        "frame.number",
        "frame.len",
        "tcp.stream",
        "udp.stream",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
        "icmp.type",
        "icmpv6.type",
    ]
    args = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for name in fields:
        args += ["-e", name]
    streams: dict[tuple[str, int], list] = {}  # type: ignore[type-arg]
    for line in _run(args).splitlines():
        cols = line.split("|")
        if len(cols) != len(fields) or cols[12] or cols[13]:
            continue  # not dissected, or inside an ICMP error
        cols = [c.split(",")[0] for c in cols]  # outer header where a field repeats
        for proto, sid, sp, dp in (
            ("tcp", cols[2], cols[8], cols[9]),
            ("udp", cols[3], cols[10], cols[11]),
        ):
            if not sid:
                continue
            ends = frozenset({(cols[4] or cols[6], int(sp)), (cols[5] or cols[7], int(dp))})
            entry = streams.setdefault((proto, int(sid)), [ends, 0, 0, 0])
            entry[1] += 1
            entry[2] += int(cols[1])
            entry[3] += int(cols[0]) in short
    found = [
        Conversation(proto, ends, frames, size, shorts)
        for (proto, _), (ends, frames, size, shorts) in streams.items()
    ]
    table = conv_tables(path)
    summed = Counter((c.proto, c.endpoints, c.frames - c.short_frames) for c in found)
    if summed != table:
        raise AssertionError(f"{path.name}: tshark's stream fields disagree with its conv table")
    return found
