"""``flowaudit matrix``: the rules in force as a table grep can read (no rule id wrapped or cut),
the roles they name, and a site file's misspelt role answered with the nearest one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowaudit.errors import EXIT_BAD_INPUT, InputError
from flowaudit.matrix import ANY_ROLE, ROLES, load_rules, rules_in_force
from flowaudit.site import parse_site
from tests.sample import invoke
from tests.test_cli import run_module


def test_table_lines_hold_whole_rule_ids() -> None:
    lines = invoke("matrix").stdout.splitlines()
    rules = rules_in_force(load_rules())
    longest = max(rules, key=lambda rule: len(rule.id))
    assert len(longest.id) > 70  # longer than a narrow column would hold
    for rule in rules:
        found = [line for line in lines if line.split()[:1] == [rule.id]]
        assert len(found) == 1, rule.id  # grep '^ID ' finds it, on one line
        assert found[0].split()[1:3] == [rule.client_role, rule.server_role]
    assert f"{len(rules)} rules" in lines


def test_table_lists_the_roles_with_what_they_are() -> None:
    text = invoke("matrix").stdout
    roles_part = text[text.index("\nrole ") :]
    rows = {line.split()[0]: line for line in roles_part.splitlines()[1:] if line.strip()}
    for role in ROLES:
        assert role in rows, role
    assert "site system" in rows["management-point"]
    assert "ConfigMgr client" in rows["client"]
    assert "peer of the site" in rows["domain-controller"]
    assert "not named in a site file" in rows["internet"]
    # the counts are the rules in force that name the role on each side
    rules = rules_in_force(load_rules())
    as_client = sum(rule.client_role == "management-point" for rule in rules)
    as_server = sum(rule.server_role == "management-point" for rule in rules)
    assert rows["management-point"].split()[-2:] == [str(as_client), str(as_server)]
    anywhere = sum(ANY_ROLE in (rule.client_role, rule.server_role) for rule in rules)
    assert f"{len(ROLES)} roles; {anywhere} rules more are between any hosts" in text


def test_json_lists_the_roles() -> None:
    document = json.loads(invoke("matrix", "--format", "json").stdout)
    assert [entry["role"] for entry in document["roles"]] == list(ROLES)
    site_server = next(entry for entry in document["roles"] if entry["role"] == "site-server")
    assert site_server["kind"] == "the site server" and site_server["client_rules"] > 0


@pytest.mark.parametrize(
    ("role", "message"),
    [
        (
            "managment-point",
            "roles.managment-point: unknown role 'managment-point'; "
            "did you mean 'management-point'?",
        ),
        ("site-servers", "unknown role 'site-servers'; did you mean 'site-server'?"),
        ("toaster", "roles.toaster: unknown role 'toaster' (see `flowaudit matrix`"),
        ("internet", "roles.internet: internet is not named in a site file"),
    ],
)
def test_a_misspelt_role_gets_the_nearest_one(role: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_site(f"roles:\n  {role}: [10.0.0.1]\n")
    assert message in str(caught.value)
    if role == "toaster":
        assert "did you mean" not in str(caught.value)


def test_a_misspelt_role_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("roles:\n  managment-point: [10.0.0.1]\n")
    done = run_module("matrix", "--site", "site.yaml", cwd=tmp_path)
    assert done.returncode == EXIT_BAD_INPUT and done.stdout == ""
    assert done.stderr.splitlines() == [
        "flowaudit: error: site.yaml:2: roles.managment-point: unknown role 'managment-point'; "
        "did you mean 'management-point'? (see `flowaudit matrix` for the roles)"
    ]
