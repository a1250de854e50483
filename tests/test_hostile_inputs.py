"""Configuration files and reports written to hurt: alias bombs, huge and deeply nested files,
wrong types, control characters, and reports that name what ``verify`` must not read.

Each gets one line naming the file (exit code 2), never a traceback; ``verify`` checks what it
can and says what it refused. The limits are docs/limits.md's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowaudit import yamlfile
from flowaudit.baseline import diff_lines, diff_reports, load_report, parse_accept
from flowaudit.errors import InputError
from flowaudit.evidence import DIGEST_FIELD, report_digest, verify_report
from flowaudit.site import NetworkIndex, load_site, parse_site
from flowaudit.yamlfile import MAX_YAML_BYTES, read_yaml
from tests.sample import SAMPLE, SITE, invoke, run_module

ESC = "\x1b"


def _error(call: Callable[[], Any]) -> str:
    """The message of the one ``InputError`` that ``call`` raises (one line)."""
    with pytest.raises(InputError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_module(*args, cwd=cwd, timeout=120)


def _one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("flowaudit: error: "), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


# --- YAML: aliases, size, depth, types, control characters ----------------------------------

LAUGHS = (
    "site: PS1\n"
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
)


def test_an_alias_bomb_is_refused_at_its_first_anchor() -> None:
    # 9^6 values once expanded: refused at the first anchor, before anything is expanded.
    assert _error(lambda: parse_site(LAUGHS, "s.yaml")) == (
        "s.yaml:2: anchors (&a) are not supported"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roles:\n  client: *nets\n", "s.yaml:2: aliases (*nets) are not supported"),
        ("roles: &r\n  client: [10.0.0.0/8]\n", "s.yaml:1: anchors (&r) are not supported"),
    ],
)
def test_anchors_and_aliases_are_refused_in_site_files(text: str, message: str) -> None:
    assert _error(lambda: parse_site(text, "s.yaml")) == message


def test_anchors_and_aliases_are_refused_in_accept_files() -> None:
    text = "accept:\n  - &e {rule: smb1, justification: x}\n  - *e\n"  # the same entry twice
    assert _error(lambda: parse_accept(text, "a.yaml")) == (
        "a.yaml:2: anchors (&e) are not supported"
    )


def test_a_yaml_file_over_the_size_limit_is_one_line(tmp_path: Path) -> None:
    from flowaudit.baseline import load_accept

    big = tmp_path / "big.yaml"
    big.write_text("site: PS1\n# " + "x" * MAX_YAML_BYTES + "\n")
    assert _error(lambda: load_site(big)) == (
        f"{big}: the site file is larger than 16 MiB (the limit)"
    )
    assert _error(lambda: load_accept(big)) == (
        f"{big}: the accept file is larger than 16 MiB (the limit)"
    )
    assert "larger than 16 MiB" in _error(lambda: read_yaml(big.read_bytes(), "big.yaml"))


def test_a_yaml_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    text = "site: PS1\n"
    path = tmp_path / "site.yaml"
    path.write_text(text + "#" * (MAX_YAML_BYTES - len(text) - 1) + "\n")
    assert path.stat().st_size == MAX_YAML_BYTES
    assert load_site(path).name == "PS1"


@pytest.mark.parametrize("loader", ["libyaml", "python"])
def test_deep_yaml_is_one_line(monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    if loader == "python":  # where libyaml is absent
        monkeypatch.setattr(yamlfile, "_Loader", yaml.SafeLoader)
    flow = "roles: " + "[" * 5000 + "]" * 5000 + "\n"
    message = _error(lambda: parse_site(flow, "s.yaml"))
    assert message.startswith("s.yaml:1: ")
    assert "nested deeper than 64 levels" in message or "maximum nesting depth" in message
    block = "".join("  " * level + f"k{level}:\n" for level in range(70))
    assert _error(lambda: parse_site(block, "s.yaml")) == (
        "s.yaml:65: nested deeper than 64 levels (the limit)"
    )


def test_nesting_up_to_the_limit_is_read() -> None:
    text = "a: " + "[" * 63 + "1" + "]" * 63 + "\n"  # the mapping and 63 lists: 64 levels
    data = read_yaml(text, "t.yaml").data
    for _ in range(64):
        (data,) = data if isinstance(data, list) else data.values()
    assert data == 1
    deeper = "a: " + "[" * 64 + "1" + "]" * 64 + "\n"
    assert _error(lambda: read_yaml(deeper, "t.yaml")) == (
        "t.yaml:1: nested deeper than 64 levels (the limit)"
    )


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.1", "10.0.0.0/24", "fd00::1", "2001:db8::/32", "1:30", "1_000", "0x1F", "017",
        "0o17", "+12", "-.5", ".inf", "-.Inf", ".NaN", "1e3", "1.5e+3", "2027-06-30",
        "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10", "yes", "No", "on", "OFF",
        "true", "False", "~", "null", "", "'quoted 1'", '"2027-06-30"', "1.2.3", "1.2",
        "1:2:3.5", "=", "<<x", "|\n  text\n", "a b", "1.0.0.0.0",
    ],
)  # fmt: skip
def test_scalars_are_typed_as_pyyamls_safe_loader_types_them(value: str) -> None:
    text = f"key: {value}\n"
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:
        _error(lambda: read_yaml(text, "t.yaml"))
        return
    got = read_yaml(text, "t.yaml").data
    if isinstance(expected["key"], float) and expected["key"] != expected["key"]:  # NaN
        assert got["key"] != got["key"]
    else:
        assert got == expected and type(got["key"]) is type(expected["key"])


def test_lines_are_named_as_before() -> None:
    doc = read_yaml("site: PS1\nroles:\n  client:\n    - 10.0.0.0/8\n    - 10.1.0.0/16\n", "s")
    assert doc.lines == {
        (): 1,
        ("site",): 1,
        ("roles",): 2,
        ("roles", "client"): 3,
        ("roles", "client", 0): 4,
        ("roles", "client", 1): 5,
    }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('roles:\n  "\\e[31mevil": [10.0.0.1]\n', r"roles.'\x1b[31mevil': unknown role"),
        ('roles:\n  client: ["\\e[2J"]\n', r"'\x1b[2J' is not an IP address"),
        ('"\\e]0;x\\a": 1\n"\\e]0;x\\a": 2\n', r"s.yaml:2: '\x1b]0;x\x07': given twice"),
        ('roles:\n  "\\u202eclient": [1]\n', r"roles.'\u202eclient': unknown role"),
    ],
)
def test_control_characters_of_keys_never_reach_an_error_line(text: str, shown: str) -> None:
    message = _error(lambda: parse_site(text, "s.yaml"))
    assert shown in message
    assert message.isprintable(), repr(message)


def test_control_characters_of_accept_keys_are_escaped() -> None:
    text = 'accept:\n  - {rule: smb1, justification: x, match: {"\\e[2J": 1}}\n'
    message = _error(lambda: parse_accept(text, "a.yaml"))
    assert message.startswith(r"a.yaml:2: accept.0.match.'\x1b[2J': unknown key")
    assert message.isprintable()


def test_an_unhashable_service_in_an_accept_file_is_one_line() -> None:
    text = "accept:\n  - {rule: smb1, justification: x, match: {service: [smb]}}\n"
    assert "accept.0.match.service: unknown service ['smb']" in _error(
        lambda: parse_accept(text, "a.yaml")
    )


# --- site files: which roles hold an address ------------------------------------------------


def _roles_by_scan(site_text: str, address: str) -> set[str]:
    """The roles of every network that contains ``address``, network by network."""
    import ipaddress

    data = yaml.safe_load(site_text)["roles"]
    ip = ipaddress.ip_address(address)
    return {
        role
        for role, items in data.items()
        for item in (items if isinstance(items, list) else [items])
        if ip in ipaddress.ip_network(str(item))
        and ipaddress.ip_network(str(item)).version == ip.version
    }


OVERLAPPING = """\
roles:
  client: [10.0.0.0/8, 'fd00::/16', 0.0.0.0/0]
  management-point: [10.1.0.0/16, 10.1.2.3, 10.1.255.255]
  distribution-point: [10.1.2.0/24, 10.1.3.0/24, 10.1.2.3]
  site-server: [10.1.2.3, 255.255.255.255, 'fd00::1']
  sql-server: ['::/0', 10.0.0.0/32]
"""


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3", "10.1.2.4", "10.1.3.0", "10.1.4.0", "10.1.255.255", "10.2.0.0", "10.0.0.0",
        "9.255.255.255", "11.0.0.0", "255.255.255.255", "0.0.0.0", "fd00::1", "fd00::2",
        "fe80::1", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "not an address",
    ],
)  # fmt: skip
def test_a_host_holds_the_roles_of_every_network_that_contains_it(address: str) -> None:
    site = parse_site(OVERLAPPING)
    expected = _roles_by_scan(OVERLAPPING, address) if address[0] != "n" else set()
    assert set(site.roles_of(address)) == expected


def test_network_index_over_touching_and_nested_ranges() -> None:
    import ipaddress

    net = ipaddress.ip_network
    index = NetworkIndex(
        [(net("10.0.0.0/31"), "a"), (net("10.0.0.2/31"), "a"), (net("10.0.0.1/32"), "b")]
    )
    assert [index.labels(f"10.0.0.{n}") for n in range(5)] == [
        {"a"}, {"a", "b"}, {"a"}, {"a"}, set()
    ]  # fmt: skip
    assert index.labels("::1") == set() and index.labels("x") == set()


def test_options_are_looked_up_by_network() -> None:
    site = parse_site(
        "options:\n  site-server-initiates: [10.0.0.0/24, 10.0.1.5]\n"
        "  internet-facing: ['2001:db8::/64']\n"
    )
    assert site.site_server_must_initiate("10.0.0.200")
    assert site.site_server_must_initiate("10.0.1.5")
    assert not site.site_server_must_initiate("10.0.1.6")
    assert site.is_internet_facing("2001:db8::5")
    assert not site.is_internet_facing("10.0.0.1")


# --- reports: depth, size, structure ---------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real report of the sample, with its site, as a Python object."""
    folder = tmp_path_factory.mktemp("report")
    path = folder / "r.json"
    invoke("analyze", str(SAMPLE), "--site", str(SITE), "--format", "json", "-o", str(path))
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _write(path: Path, document: dict[str, Any], *, digest: bool = True) -> Path:
    """``document`` as a report at ``path``, its digest recomputed (or left as it is)."""
    document = dict(document)
    if digest:
        document[DIGEST_FIELD] = report_digest(document)
    path.write_text(json.dumps(document))
    return path


def test_a_deeply_nested_report_is_one_line(tmp_path: Path, report: dict[str, Any]) -> None:
    shutil.copy(SAMPLE, tmp_path / "s.pcap")
    good = _write(tmp_path / "good.json", report)
    # json's own recursion limit, and beneath it the report's: under a key nothing reads
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema": "flowaudit/report/v1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    nested = tmp_path / "nested.json"
    _write(nested, {**report, "facts": json.loads("[" * 70 + "]" * 70)})
    for args in (
        ("diff", str(good), "deep.json"),
        ("verify", "deep.json"),
        ("analyze", "s.pcap", "--baseline", "deep.json"),
    ):
        _one_line_error(_run(*args, cwd=tmp_path), "deep.json: nested deeper than 64 levels")
    _one_line_error(
        _run("diff", str(good), "nested.json", cwd=tmp_path),
        "nested.json: facts: nested deeper than 64 levels (the limit)",
    )


def test_nesting_of_a_real_report_is_read(tmp_path: Path, report: dict[str, Any]) -> None:
    path = _write(tmp_path / "r.json", {**report, "x": json.loads("[" * 62 + "]" * 62)})
    assert load_report(path)["x"] == json.loads("[" * 62 + "]" * 62)


def test_what_cannot_start_a_json_text_is_refused_at_once(tmp_path: Path) -> None:
    assert _error(lambda: load_report(SAMPLE)) == (
        f"{SAMPLE}: not a JSON report (it does not start as JSON)"
    )
    if Path("/dev/zero").exists():  # read to the limit, it would take a GiB of memory
        assert "does not start as JSON" in _error(lambda: load_report("/dev/zero"))


def test_a_report_over_the_size_limit_is_one_line(
    tmp_path: Path, report: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowaudit import baseline

    path = _write(tmp_path / "r.json", report)
    monkeypatch.setattr(baseline, "MAX_REPORT_BYTES", path.stat().st_size - 1)
    assert _error(lambda: load_report(path)).startswith(f"{path}: the report is larger than ")
    monkeypatch.setattr(baseline, "MAX_REPORT_BYTES", path.stat().st_size)
    assert load_report(path)["schema"] == "flowaudit/report/v1"


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda d: d.update(signatures={"sha256": [1]}), "signatures.sha256: not an object"),
        (lambda d: d.update(signatures=[]), "signatures: not an object"),
        (lambda d: d["inputs"].update(accept="a.yaml"), "inputs.accept: not an object"),
        (lambda d: d["inputs"].update(accept={"sha256": None}), "inputs.accept.path: missing"),
        (lambda d: d["site"].update(path=["a"]), "site.path: not of the right kind"),
        (lambda d: d["site"].update(sha256=7), "site.sha256: not a SHA-256"),
        (lambda d: d["captures"][0].update(size="big"), "captures.0.size: not a size"),
        (lambda d: d["captures"][0].update(size=True), "captures.0.size: not a size"),
        (lambda d: d["captures"][0].update(path=None), "captures.0.path: not of the right"),
        (lambda d: d["findings"][0].update(flow_ids=["1"]), "findings.0.flow_ids.0: not a"),
        (lambda d: d["findings"][0].update(flow_ids="1"), "findings.0.flow_ids: not of the"),
        (lambda d: d["communications"][0].update(flows=[]), "communications.0.flows: not of"),
        (lambda d: d.update(command="flowaudit analyze x"), "command: not a list of words"),
        (lambda d: d.update(run_id={"a": 1}), "run_id: not a single value"),
        (lambda d: d.update(report_sha256="00"), "report_sha256: not a SHA-256"),
    ],
)
def test_wrong_types_in_a_report_are_one_line_naming_the_path(
    tmp_path: Path, report: dict[str, Any], edit: Callable[[dict[str, Any]], Any], where: str
) -> None:
    document = json.loads(json.dumps(report))
    edit(document)
    path = _write(tmp_path / "edited.json", document, digest=False)
    assert _error(lambda: load_report(path)).startswith(f"{path}: {where}")


def test_wrong_types_are_one_line_from_every_command(
    tmp_path: Path, report: dict[str, Any]
) -> None:
    good = _write(tmp_path / "good.json", report)
    _write(tmp_path / "edited.json", {**report, "signatures": {"sha256": [1]}})
    shutil.copy(SAMPLE, tmp_path / "s.pcap")
    for args in (
        ("diff", str(good), "edited.json"),
        ("verify", "edited.json"),
        ("analyze", "s.pcap", "--baseline", "edited.json"),
    ):
        _one_line_error(_run(*args, cwd=tmp_path), "edited.json: signatures.sha256: not an")


def _communication(number: int, verdict: str) -> dict[str, Any]:
    return {
        "client_role": "client",
        "server_role": "management-point",
        "proto": "tcp",
        "service": "unknown",
        "port": 1000 + number,
        "verdict": verdict,
        "flows": 1,
        "plaintext": False,
    }


def test_diff_of_thousands_of_communications_names_each_change_once(
    report: dict[str, Any],
) -> None:
    # ports 0-2999 before, 1000-3999 after; of those after, every third has become unexpected
    old = {**report, "communications": [_communication(n, "expected") for n in range(3000)]}
    new = {
        **report,
        "communications": [
            _communication(n, "unexpected" if n % 3 == 0 else "expected") for n in range(1000, 4000)
        ],
    }
    lines = diff_lines(diff_reports(old, new))
    became = [n for n in range(1000, 4000) if n % 3 == 0]  # unexpected, where none was
    appeared = [n for n in range(1000, 4000) if n >= 3000 or n % 3 == 0]
    gone = [n for n in range(3000) if n < 1000 or n % 3 == 0]
    label = "client -> management-point tcp unknown"
    expected = (
        [f"! now unexpected: {label} {1000 + n} (1 flows)" for n in became]
        + [
            f"+ communication {'unexpected' if n % 3 == 0 else 'expected'}: {label} {1000 + n} "
            "(1 flows)"
            for n in appeared
            if n not in became
        ]
        + [f"- communication expected: {label} {1000 + n} (1 flows)" for n in gone]
    )
    assert lines == expected


# --- verify: what a report names --------------------------------------------------------------


@pytest.fixture
def case(
    tmp_path: Path, report: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, Any]]:
    """A folder, the current one, with the sample capture and site file, and a copy of the
    report naming them there by name."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLE, tmp_path / "site.pcap")
    shutil.copy(SITE, tmp_path / "site.yaml")
    document = json.loads(json.dumps(report))
    document["captures"][0]["path"] = "site.pcap"
    document["site"]["path"] = "site.yaml"
    return tmp_path, document


def _verify(folder: Path, document: dict[str, Any], *args: str) -> tuple[int, list[str]]:
    path = _write(folder / "r.json", document)
    result = invoke("verify", str(path), *args)
    return result.return_value, result.output.splitlines()


def test_verify_passes_an_untouched_report(case: tuple[Path, dict[str, Any]]) -> None:
    code, lines = _verify(*case)
    assert code == 0, lines
    assert lines[0] == "ok       report content: digest matches"
    assert lines[-1].endswith("r.json: evidence matches")


def test_a_report_whose_findings_were_edited_does_not_verify(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    document["findings"][0]["severity"] = "info"
    path = _write(folder / "r.json", document, digest=False)
    result = invoke("verify", str(path))
    assert result.return_value == 1
    first = result.output.splitlines()[0]
    assert first.startswith("edited   report content: was edited after it was written")
    assert result.output.splitlines()[-1].endswith("evidence does NOT match")


def test_a_report_without_a_digest_does_not_verify(case: tuple[Path, dict[str, Any]]) -> None:
    folder, document = case
    document.pop(DIGEST_FIELD)
    path = _write(folder / "r.json", document, digest=False)
    result = invoke("verify", str(path))
    assert result.return_value == 1
    assert result.output.startswith("missing  report content: the report carries no digest")


def test_the_digest_is_of_the_data_not_of_the_layout(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    document[DIGEST_FIELD] = report_digest(document)
    path = folder / "r.json"
    path.write_text(json.dumps(document, indent=4, sort_keys=True, ensure_ascii=True))
    assert invoke("verify", str(path)).return_value == 0


def test_verify_refuses_what_is_not_a_regular_file_without_opening_it(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    os.mkfifo(folder / "pipe.pcap")  # opened, it would block until a writer comes
    (folder / "dir.pcap").mkdir()
    recorded = document["captures"][0]
    document["captures"] = [
        recorded,
        {**recorded, "path": "pipe.pcap"},
        {**recorded, "path": str(folder / "dir.pcap")},
    ]
    code, lines = _verify(folder, document)
    assert code == 1
    assert lines[1].startswith("ok       capture site.pcap")
    assert lines[2] == "refused  capture pipe.pcap: a named pipe: not read"
    assert lines[3] == f"refused  capture {folder / 'dir.pcap'}: a directory: not read"


@pytest.mark.parametrize("name", ["/dev/zero", "/proc/self/status", "/sys/kernel/notes"])
def test_verify_never_reads_under_dev_proc_or_sys(
    case: tuple[Path, dict[str, Any]], name: str
) -> None:
    if not Path(name).exists():
        pytest.skip(f"no {name} here")
    folder, document = case
    document["captures"][0].update(path=name, size=None)
    code, lines = _verify(folder, document)
    tree = "/" + name.split("/")[1]
    assert code == 1
    assert lines[1] == f"refused  capture {name}: under {tree}: not read"


def test_verify_never_reads_a_link_beside_the_report_into_dev(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    (folder / "site.pcap").unlink()
    (folder / "site.pcap").symlink_to("/dev/zero")
    code, lines = _verify(folder, document)
    assert code == 1
    assert lines[1] == "refused  capture site.pcap: under /dev: not read"


def test_verify_compares_sizes_before_hashing(
    case: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowaudit import evidence

    folder, document = case
    size = document["captures"][0]["size"]
    (folder / "site.pcap").write_bytes(b"x" * 12)
    hashed: list[Path] = []
    original = evidence.file_sha256
    monkeypatch.setattr(
        evidence, "file_sha256", lambda path, progress=None: hashed.append(path) or original(path)
    )
    code, lines = _verify(folder, document)
    assert code == 1
    assert lines[1] == f"changed  capture site.pcap: size differs (recorded {size}, found 12)"
    assert Path(folder / "site.pcap") not in hashed  # the site file was hashed, not this one


def test_a_wrong_recorded_size_is_not_called_a_change_of_sha256(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    size = document["captures"][0]["size"]
    document["captures"][0]["size"] = size + 1  # the bytes are right, the size is not
    code, lines = _verify(folder, document)
    assert code == 1
    assert (
        lines[1] == f"changed  capture site.pcap: size differs (recorded {size + 1}, found {size})"
    )
    assert "SHA-256" not in lines[1]


def test_a_changed_file_says_both_digests(case: tuple[Path, dict[str, Any]]) -> None:
    folder, document = case
    data = bytearray((folder / "site.pcap").read_bytes())
    data[-1] ^= 0xFF
    (folder / "site.pcap").write_bytes(bytes(data))
    code, lines = _verify(folder, document)
    want = document["captures"][0]["sha256"]
    assert code == 1
    assert lines[1].startswith("changed  capture site.pcap: SHA-256 differs: found ")
    assert lines[1].endswith(f", the report has {want}")
    assert lines[1].count(want) == 1


def test_a_path_that_cannot_be_used_fails_its_own_line_only(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    recorded = document["captures"][0]
    document["captures"] = [
        {**recorded, "path": "a" * 1_000_000},
        {**recorded, "path": "nul\u0000.pcap"},
        recorded,
    ]
    code, lines = _verify(folder, document)
    assert code == 1
    assert lines[1].startswith("missing  capture " + "a" * 100 + "...(1000000 characters)...")
    assert lines[1].endswith(": cannot read (File name too long)")
    assert len(lines[1]) < 400
    assert lines[2] == (
        r"refused  capture nul\x00.pcap: not a usable path (it holds a NUL character)"
    )
    assert lines[3].startswith("ok       capture site.pcap")


def test_control_characters_of_a_foreign_report_are_escaped(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    document["captures"][0]["path"] = "\x1b]0;owned\x07\u202e.pcap"
    code, lines = _verify(folder, document)
    assert code == 1
    assert (
        lines[1]
        == r"missing  capture \x1b]0;owned\x07\u202e.pcap: not found here or beside the report"
    )
    assert all(line.isprintable() for line in lines)


def test_verify_counts_the_bytes_it_hashes_for_a_progress_bar(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    done: list[int] = []
    checks = verify_report(load_report(_write(folder / "r.json", document)), folder, done.append)
    assert [check.status for check in checks] == ["ok", "ok", "ok", "ok"]
    assert sum(done) == SAMPLE.stat().st_size + SITE.stat().st_size


def test_verify_shows_progress_on_a_terminal_only_on_stderr(
    case: tuple[Path, dict[str, Any]],
) -> None:
    import pty

    folder, document = case
    _write(folder / "r.json", document)
    plain = _run("verify", "r.json", cwd=folder)
    controller, terminal = pty.openpty()
    try:
        shown = subprocess.run(
            [sys.executable, "-m", "flowaudit", "verify", "r.json"],
            cwd=folder, stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=120,
            check=False,
        )  # fmt: skip
    finally:
        os.close(terminal)
        os.close(controller)
    assert (shown.returncode, shown.stdout) == (0, plain.stdout)


# --- verify --rerun ----------------------------------------------------------------------------


def test_rerun_finds_the_same_findings(case: tuple[Path, dict[str, Any]]) -> None:
    code, lines = _verify(*case, "--rerun")
    assert code == 0, lines
    assert lines[-1].endswith("r.json: re-run: the findings follow from the captures")


def test_rerun_names_findings_edited_even_with_a_recomputed_digest(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    edited = document["findings"][0]
    assert edited["severity"] == "high"
    edited["severity"] = "info"
    removed = document["findings"].pop()
    code, lines = _verify(folder, document, "--rerun")
    assert code == 1
    # The digest was recomputed: the evidence holds, only the re-run tells.
    assert lines[:5] == [
        "ok       report content: digest matches",
        *(line for line in lines[1:4] if line.startswith("ok       ")),
        f"{folder / 'r.json'}: evidence matches",
    ]
    ids = ", ".join(str(i) for i in edited["flow_ids"])
    removed_ids = ", ".join(str(i) for i in removed["flow_ids"])
    assert lines[5] == f"- info {edited['rule']}: flows {ids} (in the report, not found again)"
    assert sorted(lines[6:8]) == sorted(
        [
            f"+ high {edited['rule']}: flows {ids} (found again, not in the report)",
            f"+ {removed['severity']} {removed['rule']}: flows {removed_ids} (found again, not "
            "in the report)",
        ]
    )
    assert lines[8:] == [f"{folder / 'r.json'}: re-run: 3 differences in the findings"]


def test_rerun_uses_the_recorded_options(tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "s.pcap")
    done = _run(
        "analyze", "s.pcap", "--format", "json", "-o", "r.json", "--first-bytes",
        "--rule", "smb1", "--host", "10.10.1.23", "--fail-on", "never", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    again = _run("verify", "r.json", "--rerun", cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    assert again.stdout.splitlines()[-1] == "r.json: re-run: the findings follow from the captures"


def test_rerun_is_not_tried_when_the_evidence_does_not_hold(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    (folder / "site.pcap").unlink()
    code, lines = _verify(folder, document, "--rerun")
    assert code == 1
    assert lines[-1].endswith("r.json: not re-run, as the evidence does not hold")


def test_rerun_of_a_command_that_is_not_analyze_is_one_line(
    case: tuple[Path, dict[str, Any]],
) -> None:
    folder, document = case
    document["command"] = ["flowaudit", "analyze", "--payload-bytes", "nope"]
    path = _write(folder / "r.json", document)
    assert _error(lambda: invoke("verify", str(path), "--rerun")).startswith(f"{path}: command: ")
