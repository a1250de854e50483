"""Baselines, accept files and ``flowaudit diff``: findings matched by what they say, never by
address or flow id; accepted findings kept with their justification but not failing the run."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from flowaudit.baseline import parse_accept
from flowaudit.errors import InputError
from tests.conftest import REPO
from tests.sample import SAMPLE, SITE, invoke
from tests.test_cli import run_module


def _analyze(*args: str, capture: Path = SAMPLE) -> tuple[int, dict[str, Any]]:
    result = invoke("analyze", str(capture), "--format", "json", *args)
    return result.return_value, json.loads(result.output)


def _report(tmp_path: Path, name: str, *args: str) -> Path:
    path = tmp_path / name
    invoke("analyze", str(SAMPLE), "--format", "json", "-o", str(path), "--fail-on", "never", *args)
    return path


def _diff(old: Path, new: Path, fmt: str = "text") -> tuple[int, str]:
    result = invoke("diff", str(old), str(new), "--format", fmt)
    return result.return_value, result.output


def _site_without(tmp_path: Path, role: str) -> Path:
    lines = [line for line in SITE.read_text().splitlines() if not line.startswith(f"  {role}:")]
    assert len(lines) == len(SITE.read_text().splitlines()) - 1, role
    path = tmp_path / f"site-without-{role}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_diff_of_two_runs_on_the_same_capture_is_empty(tmp_path: Path) -> None:
    old = _report(tmp_path, "old.json", "--site", str(SITE))
    new = _report(tmp_path, "new.json", "--site", str(SITE))
    assert json.loads(old.read_text())["run_id"] != json.loads(new.read_text())["run_id"]
    code, text = _diff(old, new)
    assert (code, text) == (0, "no differences\n")
    code, text = _diff(old, new, "json")
    changes = json.loads(text)
    assert code == 0
    assert changes["findings"] == {"appeared": [], "disappeared": []}
    assert all(rows == [] for rows in changes["communications"].values())


def test_diff_names_what_became_unexpected_when_the_site_loses_a_role(tmp_path: Path) -> None:
    # The out-of-band service point (on the site server) is what may talk to AMT on 16993.
    old = _report(tmp_path, "old.json", "--site", str(SITE))
    new = _report(
        tmp_path, "new.json", "--site", str(_site_without(tmp_path, "out-of-band-service-point"))
    )
    code, text = _diff(old, new)
    assert code == 1
    lines = text.splitlines()
    assert "! now unexpected: site-server -> amt-management-controller tcp amt 16993 (1 flows)" in (
        lines
    )
    assert "+ finding high unexpected-flow: site-server -> amt-management-controller amt 16993" in (
        lines
    )
    assert (
        "- communication expected: out-of-band-service-point -> amt-management-controller tcp "
        "amt 16993 (1 flows)" in lines
    )
    changes = json.loads(_diff(old, new, "json")[1])
    became = changes["communications"]["became_unexpected"]
    assert [(c["client_role"], c["server_role"], c["service"], c["port"]) for c in became] == [
        ("site-server", "amt-management-controller", "amt", 16993)
    ]
    # Nothing else moved: the other 16 findings are matched across the two runs.
    assert len(changes["findings"]["appeared"]) == 1
    assert changes["findings"]["disappeared"] == []


def test_diff_matches_by_roles_not_addresses(tmp_path: Path) -> None:
    # The same site with every client address moved: flows keep their roles, so no change.
    old = _report(tmp_path, "old.json", "--site", str(SITE))
    document = json.loads(old.read_text())
    for finding in document["findings"]:
        finding["flow_ids"] = [i + 1000 for i in finding["flow_ids"]]
        finding["detail"] = finding["detail"].replace("10.10.", "192.168.")
    for flow in document["flows"]:
        flow["client"] = "192.0.2.1"
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(document))
    assert _diff(old, moved) == (0, "no differences\n")


def test_baseline_marks_new_and_known_and_fail_on_new(tmp_path: Path) -> None:
    old = _report(tmp_path, "old.json", "--site", str(SITE))
    code, same = _analyze("--site", str(SITE), "--baseline", str(old))
    assert code == 1  # high findings, all known, but --fail-on-new not given
    assert {f["baseline"] for f in same["findings"]} == {"known"}
    assert same["summary"]["known"] == len(same["findings"]) and same["summary"]["new"] == 0
    assert same["inputs"]["baseline"]["sha256"] and same["inputs"]["baseline"]["run_id"]
    code, _ = _analyze("--site", str(SITE), "--baseline", str(old), "--fail-on-new")
    assert code == 0
    smaller = _site_without(tmp_path, "out-of-band-service-point")
    code, changed = _analyze("--site", str(smaller), "--baseline", str(old), "--fail-on-new")
    assert code == 1  # the new unexpected-flow finding is high
    new = [f for f in changed["findings"] if f["baseline"] == "new"]
    assert [(f["rule"], f["server_role"]) for f in new] == [
        ("unexpected-flow", "amt-management-controller")
    ]


def test_fail_on_new_needs_a_baseline() -> None:
    done = run_module("analyze", str(SAMPLE), "--fail-on-new", cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip() == "flowaudit: error: --fail-on-new needs --baseline"


ACCEPT = """\
accept:
  - rule: smb-signing-not-required
    match: {client_role: site-server, server_role: distribution-point, port: 445}
    justification: "CHG-1234: legacy DP, signing enforced after the refresh"
    expires: 2999-06-30
  - rule: plaintext-http
    match: {server_role: management-point, client: 10.10.1.0/24}
    justification: "Enhanced HTTP rollout, ticket 42"
  - rule: smb1
    match: {server_role: distribution-point}
    justification: expired exception
    expires: 2001-01-01
"""


def test_accepted_findings_are_kept_with_their_justification(tmp_path: Path) -> None:
    accept = tmp_path / "accept.yaml"
    accept.write_text(ACCEPT)
    result = invoke(
        "analyze", str(SAMPLE), "--site", str(SITE), "--format", "json", "--accept", str(accept)
    )
    report = json.loads(result.stdout)
    accepted = [f for f in report["findings"] if f["accepted"]]
    assert {(f["rule"], f["server_role"]) for f in accepted} == {
        ("smb-signing-not-required", "distribution-point"),
        ("plaintext-http", "management-point"),
    }
    signing = next(f for f in accepted if f["rule"] == "smb-signing-not-required")
    assert signing["client_role"] == "site-server"  # the client's signing finding stays open
    assert signing["accepted"]["justification"].startswith("CHG-1234")
    assert signing["accepted"]["expires"] == "2999-06-30"
    assert signing["accepted"]["line"] == 2
    # the four plaintext-http findings to the MP, and the site server's signing finding
    assert report["summary"]["accepted"] == len(accepted) == 5
    assert report["summary"]["findings"] == len(report["findings"]) - 5
    assert report["inputs"]["accept"]["sha256"]
    # The expired entry accepts nothing and says so; SMB1 still fails the run.
    assert "expired on 2001-01-01" in result.stderr
    assert not any(f["accepted"] for f in report["findings"] if f["rule"] == "smb1")
    assert result.return_value == 1


def test_accepting_every_high_finding_passes_the_run(tmp_path: Path) -> None:
    _, report = _analyze("--site", str(SITE))
    high = [f for f in report["findings"] if f["severity"] == "high"]
    entries = "".join(
        f"  - rule: {f['rule']}\n    match: {json.dumps(f['match'])}\n"
        f"    justification: risk accepted {f['id']}\n"
        for f in high
    )
    accept = tmp_path / "accept.yaml"
    accept.write_text("accept:\n" + entries)
    code, accepted = _analyze("--site", str(SITE), "--accept", str(accept))
    assert code == 0
    assert accepted["summary"]["accepted"] == len(high)
    code, _ = _analyze("--site", str(SITE), "--accept", str(accept), "--fail-on", "medium")
    assert code == 1


def test_an_address_outside_the_entry_keeps_the_finding_open(tmp_path: Path) -> None:
    accept = tmp_path / "accept.yaml"
    accept.write_text(
        "accept:\n  - rule: smb1\n    match: {client: 10.10.9.0/24}\n    justification: other lab\n"
    )
    result = invoke(
        "analyze", str(SAMPLE), "--site", str(SITE), "--format", "json", "--accept", str(accept)
    )
    report = json.loads(result.stdout)
    assert not any(f["accepted"] for f in report["findings"])
    assert "accept entry 0 (smb1) matched nothing" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "accept:\n  - rule: smb9\n    justification: x\n",
            "a.yaml:2: accept.0.rule: unknown rule",
        ),
        ("accept:\n  - rule: smb1\n", "a.yaml:2: accept.0.justification: a justification"),
        (
            "accept:\n  - rule: smb1\n    justification: x\n    expires: soon\n",
            "a.yaml:4: accept.0.expires: must be a date",
        ),
        (
            "accept:\n  - rule: smb1\n    justification: x\n    match: {port: 70000}\n",
            "a.yaml:4: accept.0.match.port: a port",
        ),
        (
            "accept:\n  - rule: smb1\n    justification: x\n    match: {client_role: boss}\n",
            "a.yaml:4: accept.0.match.client_role: unknown role 'boss'",
        ),
        (
            "accept:\n  - rule: smb1\n    justification: x\n    match: {server: 10.0.0.300}\n",
            "a.yaml:4: accept.0.match.server: '10.0.0.300' is not an IP address or CIDR",
        ),
        ("accept:\n  - rule: smb1\n    justify: x\n", "a.yaml:3: accept.0.justify: unknown key"),
        ("rules: []\n", "a.yaml:1: expected one key, 'accept'"),
    ],
)
def test_bad_accept_file_names_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_accept(text, "a.yaml")
    assert str(caught.value).startswith(message), str(caught.value)


def test_bad_accept_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("accept:\n  - rule: smb9\n    justification: x\n")
    done = run_module("analyze", str(SAMPLE), "--accept", "a.yaml", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "a.yaml:2: accept.0.rule" in done.stderr


def test_expiry_is_a_date_and_today_decides() -> None:
    (entry,) = parse_accept("accept:\n  - {rule: smb1, justification: x, expires: 2027-01-31}\n")
    assert entry.expires == dt.date(2027, 1, 31)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON report"),
        ('{"schema": "flowaudit/flows/v1", "flows": []}', "not a flowaudit report"),
    ],
)
def test_diff_and_baseline_refuse_what_is_not_a_report(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "bad.json").write_text(content)
    good = _report(tmp_path, "good.json")
    for args in (
        ("diff", str(good), "bad.json"),
        ("analyze", str(SAMPLE), "--baseline", "bad.json"),
    ):
        done = run_module(*args, cwd=tmp_path)
        assert done.returncode == 2, args
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_verify_holds_the_report_to_its_files(tmp_path: Path) -> None:
    capture = tmp_path / "site.pcap"
    shutil.copy(SAMPLE, capture)
    site = tmp_path / "site.yaml"
    shutil.copy(SITE, site)
    report = tmp_path / "report.json"
    done = run_module(
        "analyze", "site.pcap", "--site", "site.yaml", "--format", "json", "-o", "report.json",
        "--fail-on", "never", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ok = run_module("verify", "report.json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.splitlines()[-1] == "report.json: evidence matches"
    assert "ok       capture site.pcap: SHA-256 " in ok.stdout
    # From another folder the files are found beside the report.
    elsewhere = run_module("verify", str(report), cwd=REPO)
    assert elsewhere.returncode == 0, elsewhere.stdout
    # One byte of the capture changed: the evidence no longer holds.
    data = bytearray(capture.read_bytes())
    data[-1] ^= 0xFF
    capture.write_bytes(bytes(data))
    changed = run_module("verify", "report.json", cwd=tmp_path)
    assert changed.returncode == 1
    assert "changed  capture site.pcap: SHA-256" in changed.stdout
    assert changed.stdout.splitlines()[-1] == "report.json: evidence does NOT match"
    capture.unlink()
    site.write_text(site.read_text() + "# edited\n")
    gone = run_module("verify", "report.json", cwd=tmp_path)
    assert gone.returncode == 1
    assert "missing  capture site.pcap" in gone.stdout
    assert "changed  site site.yaml" in gone.stdout


def test_verify_without_hashes_does_not_pass(tmp_path: Path) -> None:
    report = _report(tmp_path, "report.json", "--no-sha256")
    done = run_module("verify", str(report), cwd=REPO)
    assert done.returncode == 1
    assert "no SHA-256" in done.stdout


def test_verify_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[]")
    done = run_module("verify", "x.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "flowaudit: error: x.json: not a flowaudit report (schema 'flowaudit/report/v1' expected)"
    )


def test_communications_name_ports_that_change_from_run_to_run_dynamic() -> None:
    _, report = _analyze("--site", str(SITE))
    ports = {(c["service"], c["port"]) for c in report["communications"]}
    # the TFTP answer (from the port the server picked, note 4), dynamic RPC, WDS multicast
    assert {
        ("tftp", 69),
        ("tftp", "dynamic"),
        ("rpc-dynamic", "dynamic"),
        ("multicast", "dynamic"),
    } <= ports
    assert not any(
        isinstance(port, int) and port >= 49152 for service, port in ports if service != "unknown"
    )
    assert sum(c["flows"] for c in report["communications"]) == len(report["flows"])
    flows = {flow["id"]: flow for flow in report["flows"]}
    for group in report["communications"]:
        for flow_id in group["flow_ids"]:
            flow = flows[flow_id]
            assert (flow["client_role"], flow["server_role"], flow["verdict"]) == (
                group["client_role"],
                group["server_role"],
                group["verdict"],
            )


@pytest.mark.corpus
def test_tftp_answer_findings_match_by_dynamic_port(corpus: Path, tmp_path: Path) -> None:
    # Every transfer answers from a port of its own (note 4): the findings must not carry it.
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: T\nroles:\n  distribution-point: [192.168.0.10, 172.28.5.170, 192.168.2.200]\n"
        "  management-point: [192.168.0.253, 172.28.5.91, 192.168.2.45]\n"
    )
    result = invoke(
        "analyze", str(corpus / "ndpi_tftp.pcap"), "--site", str(site), "--format", "json"
    )
    report = json.loads(result.output)
    tftp = [f for f in report["findings"] if f["service"] == "tftp"]
    assert tftp, "the capture's TFTP transfers raise findings under this site"
    assert {f["match"]["port"] for f in tftp} <= {69, "dynamic"}
    keys = [json.dumps(f["match"], sort_keys=True) for f in report["findings"]]
    assert len(keys) == len(set(keys))


@pytest.mark.corpus
def test_findings_of_hosts_without_roles_are_told_apart_by_address(
    corpus: Path, tmp_path: Path
) -> None:
    # Two captures of unsigned SMB between hosts no role describes: not the same finding.
    old, new = tmp_path / "a.json", tmp_path / "b.json"
    for capture, path in (("zeek_smb2_kerberos.pcap", old), ("sv_smb2_async_read_big.pcap", new)):
        invoke("analyze", str(corpus / capture), "--format", "json", "-o", str(path))
    findings = json.loads(new.read_text())["findings"]
    signing = [f for f in findings if f["rule"] == "smb-signing-not-required"]
    assert signing and all(f["match"]["server"] == "192.168.20.100" for f in signing)
    code, text = _diff(old, new)
    assert code == 1
    assert "- finding medium smb-signing-not-required: 10.10.34.184 -> 172.19.23.143" in text
    assert "+ finding medium smb-signing-not-required: 172.16.10.105 -> 192.168.20.100" in text
    capture = corpus / "sv_smb2_async_read_big.pcap"
    code, marked = _analyze("--baseline", str(old), capture=capture)
    assert {f["baseline"] for f in marked["findings"]} == {"new"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["findings"][3].pop("severity"), "findings.3.severity: missing"),
        (lambda d: d["findings"][0].update(severity="bogus"), "findings.0.severity: not one of"),
        (lambda d: d["findings"][1]["match"].update(port=[1, 2]), "findings.1.match.port: not of"),
        (lambda d: d["findings"][2].update(match={}), "findings.2.match.rule: missing"),
        (lambda d: d.update(communications=["a"]), "communications.0: not an object"),
        (lambda d: d.update(captures=["a"]), "captures.0: not an object"),
        (lambda d: d["captures"][0].update(sha256="xyz"), "captures.0.sha256: not a SHA-256"),
        (lambda d: d.pop("findings"), "findings: missing or not a list"),
        (lambda d: d.update(site="x"), "site: not an object"),
    ],
)
def test_a_hand_edited_report_is_one_error_naming_the_key(
    tmp_path: Path, edit: Any, message: str
) -> None:
    good = _report(tmp_path, "good.json", "--site", str(SITE))
    document = json.loads(good.read_text())
    edit(document)
    (tmp_path / "edited.json").write_text(json.dumps(document))
    for args in (
        ("diff", "good.json", "edited.json"),
        ("analyze", str(SAMPLE), "--baseline", "edited.json"),
        ("verify", "edited.json"),
    ):
        done = run_module(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stdout)
        assert done.stderr.startswith(f"flowaudit: error: edited.json: {message}"), done.stderr
        assert done.stderr.count("\n") == 1


def test_verify_fails_a_report_that_names_no_capture(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(
        json.dumps(
            {"schema": "flowaudit/report/v1", "captures": [], "findings": [], "communications": []}
        )
    )
    done = run_module("verify", "r.json", cwd=tmp_path)
    assert done.returncode == 1
    assert "the report names no capture" in done.stdout


def test_verify_finds_files_beside_a_report_written_elsewhere(tmp_path: Path) -> None:
    work, reports = tmp_path / "work", tmp_path / "reports"
    work.mkdir()
    reports.mkdir()
    shutil.copy(SAMPLE, work / "site.pcap")
    done = run_module(
        "analyze", str(work / "site.pcap"), "--format", "json", "-o", "../reports/r.json",
        "--fail-on", "never", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The auditor gets the report and the capture in one folder; the analyst's folder is gone.
    shutil.move(work / "site.pcap", reports / "site.pcap")
    (tmp_path / "site.pcap").write_bytes(b"a decoy of the same name, here")
    ok = run_module("verify", "reports/r.json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout
    assert f"(at {Path('reports') / 'site.pcap'})" in ok.stdout


def test_verify_says_standard_input_cannot_be_read_again(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "flowaudit", "analyze", "-", "--format", "json", "-o", "r.json",
         "--fail-on", "never"],
        input=SAMPLE.read_bytes(), cwd=tmp_path, capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (tmp_path / "-").write_bytes(b"a file named -")
    result = run_module("verify", "r.json", cwd=tmp_path)
    assert result.returncode == 1
    assert "missing  capture -: read from standard input, cannot be read again" in result.stdout


def _accept_run(tmp_path: Path, text: str) -> tuple[dict[str, Any], list[str]]:
    accept = tmp_path / "accept.yaml"
    accept.write_text(text)
    result = invoke(
        "analyze", str(SAMPLE), "--site", str(SITE), "--format", "json", "--accept", str(accept)
    )
    return json.loads(result.stdout), result.stderr.splitlines()


def test_an_expired_entry_before_a_live_one_does_not_cry_wolf(tmp_path: Path) -> None:
    report, warnings = _accept_run(
        tmp_path,
        "accept:\n  - {rule: smb1, justification: old, expires: 2001-01-01}\n"
        "  - {rule: smb1, justification: renewed, expires: '2999-01-01'}\n",
    )
    (smb1,) = [f for f in report["findings"] if f["rule"] == "smb1"]
    assert smb1["accepted"]["justification"] == "renewed"
    assert smb1["accepted"]["expires"] == "2999-01-01"
    assert warnings == [
        f"flowaudit: warning: {tmp_path / 'accept.yaml'}:2: the acceptance of smb1 expired on "
        "2001-01-01: no open finding is hit"
    ]


def test_overlapping_entries_both_count_as_used(tmp_path: Path) -> None:
    report, warnings = _accept_run(
        tmp_path,
        "accept:\n  - {rule: smb1, justification: first}\n"
        "  - {rule: smb1, justification: second, match: {port: 445}}\n"
        "  - {rule: ldap-cleartext-bind, justification: x, expires: 2020-01-01}\n",
    )
    (smb1,) = [f for f in report["findings"] if f["rule"] == "smb1"]
    assert smb1["accepted"]["justification"] == "first"  # the first entry that matches
    assert len(warnings) == 1
    assert warnings[0].endswith("the acceptance of ldap-cleartext-bind expired on 2020-01-01: "
                                "no open finding is hit")  # fmt: skip
    assert ":4: " in warnings[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accept:\n  - {rule: '*', justification: x}\n", "a.yaml:2: accept.0.rule: unknown rule"),
        (
            "accept:\n  - {rule: smb1, justification: x, match: {service: smbb}}\n",
            "a.yaml:2: accept.0.match.service: unknown service 'smbb'",
        ),
        (
            "accept:\n  - {rule: smb1, justification: x, expires: '2027-02-30'}\n",
            "a.yaml:2: accept.0.expires: must be a date",
        ),
    ],
)
def test_no_catch_all_and_no_unknown_service(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_accept(text, "a.yaml")
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"accept:\n  - rule: smb1\n    justification: x\n    expires: 2027-02-30\n",
            "a.yaml:4: accept.0.expires: day is out of range for month",
        ),
        (b"accept:\n  - rule: smb1\n    justification: caf\xe9\n", "a.yaml: not valid YAML ("),
    ],
)
def test_yaml_level_errors_are_one_line_with_the_key(raw: bytes, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_accept(raw, "a.yaml")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_report_carries_the_digest_of_its_own_content(tmp_path: Path) -> None:
    import hashlib

    accept = tmp_path / "accept.yaml"
    accept.write_text('accept:\n  - {rule: smb1, justification: "caf\u00e9 \u202e"}\n')
    old = _report(tmp_path, "old.json", "--site", str(SITE))
    new = _report(
        tmp_path, "new.json", "--site", str(SITE), "--baseline", str(old), "--accept",
        str(accept), "--min-severity", "medium",
    )  # fmt: skip
    for path in (old, new):
        document = json.loads(path.read_text(encoding="utf-8"))
        recorded = document.pop("report_sha256")
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert recorded == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # The layout is the lead's: still one flow a line.
    lines = new.read_text().splitlines()
    assert sum(line.startswith('  {"id": ') for line in lines) >= 1
