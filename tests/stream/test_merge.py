"""What a whole conversation adds to the first-bytes facts the audit judges on."""

from __future__ import annotations

from typing import Any

from flowaudit.stream.merge import deepen


def _conversation(protocol: str, facts: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"conversation": {"protocol": protocol, protocol: facts}, **more}


def test_smb_shares_connected_after_the_window_are_added() -> None:
    found = {"dialect": "3.1.1", "shares": ["\\\\dc\\IPC$"]}
    merged = deepen(
        "smb", found, _conversation("smb", {"trees": ["\\\\dc\\IPC$", "\\\\dp\\SCCMContentLib$"]})
    )
    assert merged["shares"] == ["\\\\dc\\IPC$", "\\\\dp\\SCCMContentLib$"]
    assert found["shares"] == ["\\\\dc\\IPC$"]  # the first-bytes facts are not changed


def test_endpoints_announced_late_are_added() -> None:
    late = {"host": None, "port": 49153, "by": "epm"}
    merged = deepen("dcerpc", {"announced": []}, _conversation("dcerpc", {"announced": [late]}))
    assert merged["announced"] == [late]


def test_every_dhcp_message_type_once_in_order() -> None:
    merged = deepen(
        "dhcp",
        {"message_types": ["DISCOVER"]},
        _conversation(
            "dhcp", {"message_types": ["DISCOVER", "OFFER", "DISCOVER", "REQUEST", "ACK"]}
        ),
    )
    assert merged["message_types"] == ["DISCOVER", "OFFER", "REQUEST", "ACK"]


def test_a_simple_bind_with_a_password_later_in_the_connection_counts() -> None:
    found = {"simple_bind_with_password": False}
    clear = {"protocol": "ldap-simple", "method": "simple", "password_sent": True}
    merged = deepen("ldap", found, _conversation("ldap", {}, identities=[clear]))
    assert merged["simple_bind_with_password"] is True


def test_anonymous_and_sasl_binds_are_no_cleartext_bind() -> None:
    found = {"simple_bind_with_password": False}
    others = [
        {"protocol": "ldap-simple", "method": "anonymous", "password_sent": False},
        {"protocol": "kerberos", "method": "AP-REQ", "carrier": "ldap"},
    ]
    merged = deepen("ldap", found, _conversation("ldap", {}, identities=others))
    assert merged["simple_bind_with_password"] is False


def test_a_conversation_of_another_protocol_adds_nothing() -> None:
    found = {"shares": []}
    assert deepen("smb", found, _conversation("dcerpc", {"trees": ["x"]})) is found
