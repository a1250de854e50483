"""Operations and identities in every view of the bundled sample: the JSON has them per flow,
the CSV tables hold the same rows, the terminal and the HTML show who authenticated, and
``--first-bytes`` leaves them out."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from flowaudit.report.conversations import IDENTITY_FIELDS, OPERATION_FIELDS
from tests.sample import SAMPLE, SITE, invoke


def _run(*args: str) -> str:
    return invoke("analyze", str(SAMPLE), "--site", str(SITE), "--fail-on", "never", *args).output


def _report(*args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_run("--format", "json", *args))
    return document


def test_json_flows_carry_operations_and_identities() -> None:
    flows = _report()["flows"]
    smb = [f for f in flows if f["service"] == "smb" and f["facts"].get("operations")]
    assert smb
    commands = {entry["operation"] for flow in smb for entry in flow["facts"]["operations"]}
    assert {"NEGOTIATE", "SESSION_SETUP", "TREE_CONNECT"} <= commands
    for flow in smb:
        for entry in flow["facts"]["operations"]:
            assert entry["direction"] in ("c2s", "s2c")
            assert flow["first_frame"] <= entry["frame"] <= flow["last_frame"]
            assert entry["time"].endswith("Z")
    accounts = {
        (entry.get("domain"), entry.get("account"))
        for flow in flows
        for entry in flow["facts"].get("identities") or []
    }
    assert ("CONTOSO", "PS1-SS01$") in accounts


def test_first_bytes_leaves_conversations_out() -> None:
    for flow in _report("--first-bytes")["flows"]:
        assert not {"operations", "identities", "conversation"} & set(flow["facts"])


def test_csv_operation_and_identity_tables_hold_the_json_rows() -> None:
    flows = _report()["flows"]
    expected = sum(len(flow["facts"].get("operations") or []) for flow in flows)
    rows = list(csv.reader(io.StringIO(_run("--format", "csv", "--table", "operations"))))
    assert tuple(rows[0]) == OPERATION_FIELDS
    assert len(rows) - 1 == expected > 0
    rows = list(csv.reader(io.StringIO(_run("--format", "csv", "--table", "identities"))))
    assert tuple(rows[0]) == IDENTITY_FIELDS
    by_account = {
        (row[IDENTITY_FIELDS.index("domain")], row[IDENTITY_FIELDS.index("account")])
        for row in rows[1:]
    }
    assert ("CONTOSO", "PS1-SS01$") in by_account


def test_terminal_shows_identities_and_operations_on_request() -> None:
    text = _run()
    assert "\nidentities" in text
    assert "CONTOSO\\PS1-SS01$" in text
    assert "\noperations\n" not in text
    listed = _run("--table", "operations")
    assert "\noperations\n" in listed
    assert "TREE_CONNECT" in listed


def test_html_lists_operations_under_flows_and_identities_per_host() -> None:
    page = _run("--format", "html")
    assert '<details class="operations">' in page
    assert 'id="identities"' in page
    assert "CONTOSO\\PS1-SS01$" in page
