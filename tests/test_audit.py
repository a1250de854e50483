"""The judge: verdicts from roles, transport, service and port against matrix rules."""

from __future__ import annotations

from typing import Any

import pytest

from flowaudit.audit import EXPECTED, UNEXPECTED, UNKNOWN_VERDICT, Judge, is_group
from flowaudit.matrix import Rule
from flowaudit.site import parse_site

SITE = parse_site(
    """\
roles:
  site-server: [10.0.0.10]
  distribution-point: [10.0.0.13, 10.0.0.14]
  management-point: [10.0.0.12]
  client: [10.0.1.0/24]
options: {site-server-initiates: [10.0.0.14]}
"""
)


def rule(
    rule_id: str, client: str, server: str, proto: str, ports: Any, service: str, **kw: Any
) -> Rule:
    values: dict[str, Any] = {
        "id": rule_id,
        "section": f"{client} --> {server}",
        "row": service,
        "client_role": client,
        "server_role": server,
        "proto": proto,
        "ports": ports,
        "service": service,
        "bidirectional": False,
        "alternate": None,
        "notes": (),
        "group_sender": "client",
        "answer_from_dynamic": False,
        "source": "ports-page",
    }
    values.update(kw)
    return Rule(**values)


RULES = [
    rule("client-mp-http", "client", "management-point", "tcp", (80,), "http"),
    rule("client-mp-https", "client", "management-point", "tcp", (443,), "https"),
    rule(
        "ss-dp-smb",
        "site-server",
        "distribution-point",
        "tcp",
        (445,),
        "smb",
        notes=(5,),
        bidirectional=True,
    ),
    rule(
        "ss-dp-smb-reverse",
        "distribution-point",
        "site-server",
        "tcp",
        (445,),
        "smb",
        notes=(5,),
        bidirectional=True,
        reverse=True,
    ),
    rule(
        "client-dp-multicast",
        "client",
        "distribution-point",
        "udp",
        ((63000, 64000),),
        "multicast",
        group_sender="server",
    ),
    rule("ss-client-wol", "site-server", "client", "udp", (9,), "wake-on-lan"),
    rule(
        "client-dp-tftp",
        "client",
        "distribution-point",
        "udp",
        (69,),
        "tftp",
        answer_from_dynamic=True,
    ),
    rule("ss-dp-rpc", "site-server", "distribution-point", "tcp", None, "rpc-dynamic"),
]


@pytest.fixture()
def judge() -> Judge:
    return Judge(RULES, SITE)


@pytest.mark.parametrize(
    ("flow", "verdict", "rule_id", "finding"),
    [
        # (proto, service, port, client, server, tftp_answer)
        (("tcp", "http", 80, "10.0.1.5", "10.0.0.12", False), EXPECTED, "client-mp-http", None),
        # the other side started it: the pair is allowed the other way round
        (
            ("tcp", "http", 80, "10.0.0.12", "10.0.1.5", False),
            UNEXPECTED,
            "client-mp-http",
            "wrong-direction",
        ),
        # http on 443: the pair uses http, but not on that port
        (
            ("tcp", "http", 443, "10.0.1.5", "10.0.0.12", False),
            UNEXPECTED,
            None,
            "non-standard-port",
        ),
        # no rule between two clients
        (("tcp", "smb", 445, "10.0.1.5", "10.0.1.6", False), UNEXPECTED, None, "unexpected-flow"),
        # an end without a role: cannot judge
        (("tcp", "http", 80, "10.9.9.9", "10.0.0.12", False), UNKNOWN_VERDICT, None, None),
        # <--> with note 5: the DP may start SMB to the site server...
        (("tcp", "smb", 445, "10.0.0.13", "10.0.0.10", False), EXPECTED, "ss-dp-smb-reverse", None),
        # ...unless the site file says the site server must initiate to it: then the flow breaks
        # the site server's rule
        (
            ("tcp", "smb", 445, "10.0.0.14", "10.0.0.10", False),
            UNEXPECTED,
            "ss-dp-smb",
            "wrong-direction",
        ),
        # multicast is judged by the sender: a DP may stream to a group, a client may not
        (
            ("udp", "multicast", 63001, "10.0.0.13", "239.255.0.1", False),
            EXPECTED,
            "client-dp-multicast",
            None,
        ),
        (
            ("udp", "multicast", 63001, "10.0.1.5", "239.255.0.1", False),
            UNEXPECTED,
            None,
            "unexpected-flow",
        ),
        # WoL to a broadcast: the site server sends it
        (
            ("udp", "wake-on-lan", 9, "10.0.0.10", "10.0.1.255", False),
            EXPECTED,
            "ss-client-wol",
            None,
        ),
        # the TFTP answer from the DP's dynamic port back to the client
        (("udp", "tftp", 50123, "10.0.0.13", "10.0.1.5", True), EXPECTED, "client-dp-tftp", None),
        # RPC on a dynamic port
        (
            ("tcp", "rpc-dynamic", 49702, "10.0.0.10", "10.0.0.13", False),
            EXPECTED,
            "ss-dp-rpc",
            None,
        ),
    ],
)
def test_verdicts(
    judge: Judge, flow: tuple[Any, ...], verdict: str, rule_id: str | None, finding: str | None
) -> None:
    judgement = judge.judge(*flow)
    assert judgement.verdict == verdict
    assert (judgement.rule.id if judgement.rule else None) == rule_id
    assert judgement.finding == finding


def test_acting_roles_are_the_rule_roles(judge: Judge) -> None:
    judgement = judge.judge("udp", "multicast", 63001, "10.0.0.13", "239.255.0.1", False)
    assert judgement.client_role == "distribution-point"
    assert judgement.server_role is None


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("239.255.0.1", True),
        ("255.255.255.255", True),
        ("10.0.1.255", True),
        ("ff02::1", True),
        ("10.0.1.5", False),
        ("fe80::1", False),
    ],
)
def test_group_addresses(address: str, group: bool) -> None:
    assert is_group(address) is group
