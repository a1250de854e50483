"""Our protocol labels against Wireshark's own dissection of the same flows, per protocol.

For every TCP/UDP conversation of the corpus, tshark's label is the first application protocol
in ``frame.protocols`` (after the transport) of its first frame that has one; ours is the
protocol the dissectors recognised (``flow["protocol"]``). The test prints the agreement per
protocol and requires every disagreement to be one explained in ``EXPLAINED``.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from flowaudit.audit import audit
from flowaudit.config import FlowConfig
from flowaudit.flows import build_flow_table
from tests.conftest import corpus_files

# tshark protocol name -> our dissector's name
TSHARK_NAMES = {
    "smb": "smb",
    "smb2": "smb",
    "dcerpc": "dcerpc",
    "tds": "tds",
    "tls": "tls",
    "http": "http",
    "dhcp": "dhcp",
    "dhcpv6": "dhcp",
    "tftp": "tftp",
    "ldap": "ldap",
    "cldap": "ldap",
    "kerberos": "kerberos",
    "rdp": "rdp",
    "wol": "wol",
}
PROTOCOLS = sorted(set(TSHARK_NAMES.values()))

# (file, tshark's label, ours) -> why they differ, by design
EXPLAINED = {
    ("ndpi_tftp.pcap", "tftp", None): (
        "a read request whose file name is twelve NUL bytes: tshark shows an empty name, our "
        "TFTP reader requires a printable name before it calls a datagram a request"
    ),
    ("sv_smb2_mixed_windows_lan.pcap", "smb", None): (
        "SMB1 browser announcements in NetBIOS datagrams (UDP 138): our SMB reader reads TCP "
        "sessions; the flow is netbios-dgm by its port"
    ),
    ("sv_smb_psexec_add_user.pcap", "smb", None): "as above: SMB1 mailslots over UDP 138",
    ("zeek_smb3_multichannel.pcap", "smb", None): "as above: SMB1 mailslots over UDP 138",
}

Key = tuple[str, frozenset[tuple[str, int]]]


def tshark_labels(tshark: str, path: Path) -> dict[Key, str | None]:
    fields = ["frame.protocols", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst"]
    fields += ["tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]
    command = [tshark, "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    for field in fields:
        command += ["-e", field]
    output = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    labels: dict[Key, str | None] = {}
    for line in output.splitlines():
        cells = line.split("\t")
        if len(cells) < len(fields):
            continue
        protocols = cells[0].split(":")
        # the outermost header's addresses (an ICMP error quotes an inner one after a comma)
        source = (cells[1] or cells[2]).split(",")[0]
        target = (cells[3] or cells[4]).split(",")[0]
        if cells[5]:
            transport, ports = "tcp", (cells[5], cells[6])
        elif cells[7]:
            transport, ports = "udp", (cells[7], cells[8])
        else:
            continue
        if transport not in protocols or "icmp" in protocols or "icmpv6" in protocols:
            continue
        after = protocols[protocols.index(transport) + 1 :]
        label = next((TSHARK_NAMES[p] for p in after if p in TSHARK_NAMES), None)
        key = (
            transport,
            frozenset(
                {(source, int(ports[0].split(",")[0])), (target, int(ports[1].split(",")[0]))}
            ),
        )
        if labels.get(key) is None:
            labels[key] = label
    return labels


@pytest.mark.corpus
@pytest.mark.tshark
def test_labels_agree_with_wireshark(corpus: Path, tshark: str) -> None:
    del corpus
    seen: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    unexplained = []
    for path in corpus_files():
        result = audit(build_flow_table([path], FlowConfig(idle_timeout=0)))
        ours: dict[Key, str | None] = {}
        for flow in result.flows:
            key = (
                flow["proto"],
                frozenset(
                    {(flow["client"], flow["client_port"]), (flow["server"], flow["server_port"])}
                ),
            )
            ours.setdefault(key, flow["protocol"])
        for key, theirs in tshark_labels(tshark, path).items():
            mine = ours.get(key)
            if theirs is not None:
                seen[theirs] += 1
                agreed[theirs] += mine == theirs
            if mine != theirs and (path.name, theirs, mine) not in EXPLAINED:
                unexplained.append(f"{path.name} {sorted(key[1])}: tshark {theirs}, ours {mine}")
    report = "\n".join(
        f"{name:9s} {agreed[name]:3d} of {seen[name]:3d} conversations agree" for name in PROTOCOLS
    )
    print("\nlabels against tshark, per protocol:\n" + report)
    assert not unexplained, report + "\nunexplained:\n" + "\n".join(unexplained)
    for name in PROTOCOLS:
        assert seen[name] > 0, f"the corpus has no {name} conversation for tshark: {report}"
