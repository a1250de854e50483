"""Generated site files, accept files and reports, thrown at the code that reads them.

Whatever comes in, the answer is a result or one ``InputError`` line (exit code 2), never
another exception: site and accept files as YAML text (plausible ones and random ones), and
reports mutated from a real one of the sample (types swapped, fields removed, deep nesting,
huge numbers, control characters) through ``diff``, ``verify`` and ``--baseline`` in-process,
and a few through the real command. The reading of YAML is also held to PyYAML's own, and the
index of a site's networks to a scan of every network.

Bounded: each test a fixed number of examples, no deadline, no example database (nothing is
written to the repository); the file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowaudit import yamlfile
from flowaudit.audit import AuditResult, audit
from flowaudit.baseline import (
    diff_lines,
    diff_reports,
    load_report,
    mark_baseline,
    parse_accept,
)
from flowaudit.errors import InputError
from flowaudit.evidence import DIGEST_FIELD, report_digest, verified, verify_report
from flowaudit.matrix import ROLES
from flowaudit.site import OPTION_KEYS, PORT_KEYS, SITE_KEYS, NetworkIndex, parse_site
from flowaudit.yamlfile import read_yaml
from tests.sample import SAMPLE, SITE, invoke, run_module

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _one_line(error: InputError) -> None:
    message = str(error)
    assert message and "\n" not in message, repr(message)
    assert message.isprintable(), repr(message)  # no control character from the input


# --- YAML text ------------------------------------------------------------------------------

_TOKENS = [
    "[", "]", "{", "}", ":", ": ", "- ", ",", "&a ", "*a", "!!int ", "!!str ", "!!binary ",
    "!!python/name:os.system ", "!x ", "<<: ", "'", '"', "\n", "  ", "    ", "\t", "#", "|",
    ">", "? ", "~", "---\n", "...\n", "%YAML 1.1\n", "10.0.0.1", "10.0.0.0/24", "fd00::/64",
    "client", "roles", "site", "ports", "options", "security", "accept", "rule", "match",
    "smb1", "justification", "expires", "2027-02-30", "2027-06-30", "65536", "0x1F",
    "1e999", "9" * 5000, "-1", ".nan", "yes", "\\e", "\x1b", "\u202e", "\x00", "é", "\ufeff",
    "http: ", "²-5", "80-", "1-" + "9" * 5000,
]  # fmt: skip

yaml_soup = st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
any_text = st.text(max_size=200)


def _address() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.ip_addresses().map(str),
        st.builds(
            lambda ip, prefix: f"{ip}/{prefix}",
            st.ip_addresses(v=4).map(str),
            st.integers(min_value=-1, max_value=40),
        ),
        st.text(max_size=20),
        st.integers(),
        st.none(),
    )


def _scalar() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True),
        st.text(max_size=30),
        st.dates(),
    )


def _key(known: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(known), st.text(max_size=15), st.integers())


def _value(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


site_data = st.dictionaries(
    _key(SITE_KEYS),
    st.one_of(
        st.dictionaries(_key(ROLES), st.one_of(_address(), st.lists(_address(), max_size=5))),
        st.dictionaries(
            _key(PORT_KEYS),
            st.one_of(
                st.integers(min_value=-5, max_value=70000),
                st.text(max_size=12),
                st.lists(st.integers(min_value=0, max_value=70000), max_size=3),
            ),
        ),
        st.dictionaries(_key(OPTION_KEYS), st.lists(_address(), max_size=3)),
        _value(_scalar()),
    ),
    max_size=6,
)

accept_entry = st.dictionaries(
    _key(("rule", "match", "justification", "expires")),
    st.one_of(
        st.sampled_from(["smb1", "plaintext-http", "legacy-tls", "*"]),
        st.dictionaries(
            _key(("client_role", "server_role", "service", "port", "qualifier", "client")),
            st.one_of(_scalar(), _address(), st.lists(st.integers(0, 70000), max_size=3)),
            max_size=4,
        ),
        _value(_scalar()),
    ),
    max_size=5,
)
accept_data = st.one_of(
    st.fixed_dictionaries({"accept": st.lists(accept_entry, max_size=4)}),
    _value(_scalar()),
)


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, default_flow_style=None)


def _parse_site(text: str) -> None:
    try:
        parse_site(text, "site.yaml")
    except InputError as error:
        _one_line(error)


def _parse_accept(text: str) -> None:
    try:
        parse_accept(text, "accept.yaml")
    except InputError as error:
        _one_line(error)


@FUZZ
@given(site_data)
def test_plausible_site_files_load_or_give_one_line(data: dict[Any, Any]) -> None:
    _parse_site(_dump(data))


@FUZZ
@given(st.one_of(yaml_soup, any_text))
def test_random_site_files_load_or_give_one_line(text: str) -> None:
    _parse_site(text)


@FUZZ
@given(accept_data)
def test_plausible_accept_files_load_or_give_one_line(data: Any) -> None:
    _parse_accept(_dump(data))


@FUZZ
@given(st.one_of(yaml_soup, any_text))
def test_random_accept_files_load_or_give_one_line(text: str) -> None:
    _parse_accept(text)


@FUZZ
@given(_value(_scalar()))
def test_yaml_is_read_as_pyyaml_reads_it(data: Any) -> None:
    text = _dump(data)
    expected = yaml.safe_load(text)
    got = read_yaml(text, "t.yaml").data
    # NaN is not equal to itself: compare the texts of both readings
    assert _dump(got) == _dump(expected)
    assert _types(got) == _types(expected)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


@FUZZ
@given(yaml_soup)
def test_random_yaml_is_read_as_pyyaml_reads_it_or_refused(text: str) -> None:
    try:  # with the same parser (libyaml's, where it is installed)
        expected = yaml.load(text, Loader=yamlfile._Loader)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError, IndexError):
        expected = None
        refused_by_pyyaml = True
    else:
        refused_by_pyyaml = False
    try:
        got = read_yaml(text, "t.yaml").data
    except InputError as error:
        _one_line(error)
        return  # refused: aliases, anchors, merge keys, keys given twice, or as PyYAML
    assert not refused_by_pyyaml, text
    if not (isinstance(expected, float) and math.isnan(expected)):
        assert _dump(got) == _dump(expected)


# --- networks -------------------------------------------------------------------------------

networks_v4 = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=255),
        st.integers(min_value=24, max_value=32),
        st.sampled_from(["client", "site-server", "sql-server"]),
    ),
    max_size=12,
)


@FUZZ
@given(networks_v4, st.lists(st.integers(min_value=0, max_value=255), max_size=20))
def test_the_network_index_agrees_with_a_scan_of_every_network(
    entries: list[tuple[int, int, str]], hosts: list[int]
) -> None:
    networks = [
        (ipaddress.ip_network(f"10.0.0.{low}/{prefix}", strict=False), label)
        for low, prefix, label in entries
    ]
    index = NetworkIndex(networks)
    for host in [*hosts, 0, 255]:
        address = ipaddress.ip_address(f"10.0.0.{host}")
        expected = {label for network, label in networks if address in network}
        assert index.labels(str(address)) == expected


# --- reports --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A report of the sample (with its site) in a folder of its own, and its content."""
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "good.json"
    invoke("analyze", str(SAMPLE), "--site", str(SITE), "--format", "json", "-o", str(path))
    return path, json.loads(path.read_text())


@pytest.fixture(scope="module")
def sample_result() -> AuditResult:
    from flowaudit.flows import build_flow_table

    return audit(build_flow_table([SAMPLE]), None)


json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**300, -(10**300), 2**63, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\x1b[2J", "\u202e", "../../../etc/passwd", "/dev/zero", "-", "a" * 5000]),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a report (keys and indexes), the first items of long lists only."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found.extend(_paths(item, (*prefix, index)))
    return found


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def _mutate(data: st.DataObject, document: dict[str, Any]) -> dict[str, Any]:
    """The report with one to three of its parts removed, replaced, re-typed or nested deep."""
    document = copy.deepcopy(document)
    paths = [path for path in _paths(document) if path]
    for _ in range(data.draw(st.integers(min_value=1, max_value=3), label="changes")):
        path = data.draw(st.sampled_from(paths), label="path")
        parent: Any = document
        try:
            for part in path[:-1]:
                parent = parent[part]
            old = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # (an earlier change took it away)
        last = path[-1]
        action = data.draw(
            st.sampled_from(["remove", "replace", "retype", "nest", "huge"]), label="action"
        )
        if action == "remove":
            del parent[last]
        elif action == "replace":
            parent[last] = data.draw(json_value, label="value")
        elif action == "retype":
            parent[last] = (
                list(old.values())
                if isinstance(old, dict)
                else {str(i): item for i, item in enumerate(old)}
                if isinstance(old, list)
                else [old]
            )
        elif action == "nest":
            depth = data.draw(st.sampled_from([5, 63, 64, 65, 200, 3000]), label="depth")
            parent[last] = _nest(old, depth)
        else:
            parent[last] = data.draw(st.sampled_from([10**4000, -1, 2**64, 1e308, -0.0]))
    return document


def _write(folder: Path, document: dict[str, Any], digest: bool) -> Path:
    path = folder / "mutated.json"
    if digest:
        # (what json cannot write has no digest either: the report goes as it is)
        with contextlib.suppress(ValueError, RecursionError):
            document = {**document, DIGEST_FIELD: report_digest(document)}
    try:
        text = json.dumps(document)
    except (ValueError, RecursionError):  # too deep or a number too long: deep it is
        text = '{"schema": "flowaudit/report/v1", "x": ' + "[" * 5000 + "]" * 5000 + "}"
    path.write_text(text)
    return path


def _printable(text: str) -> None:
    assert all(line.isprintable() for line in text.splitlines()), repr(text)


@settings(FUZZ, max_examples=80)
@given(data=st.data(), digest=st.booleans())
def test_mutated_reports_are_read_or_give_one_line(
    sample_report: tuple[Path, dict[str, Any]],
    sample_result: AuditResult,
    data: st.DataObject,
    digest: bool,
) -> None:
    good, document = sample_report
    mutated = _mutate(data, document)
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), mutated, digest)
        try:
            report = load_report(path)
        except InputError as error:
            _one_line(error)
            return
        # Read: every command that reads reports must take it.
        changes = diff_reports(load_report(good), report)
        for line in diff_lines(changes):
            assert isinstance(line, str)
        json.dumps(changes)
        checks = verify_report(report, path)
        assert isinstance(verified(checks), bool)
        for check in checks:
            assert isinstance(check.line, str)
        mark_baseline(sample_result, report)
        for args in (("diff", str(good), str(path)), ("verify", str(path))):
            result = invoke(*args)
            assert result.return_value in (0, 1)
            _printable(result.output)


@settings(FUZZ, max_examples=4)
@given(data=st.data())
def test_mutated_reports_through_the_command(
    sample_report: tuple[Path, dict[str, Any]], data: st.DataObject
) -> None:
    good, document = sample_report
    mutated = _mutate(data, document)
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), mutated, digest=True)
        for args in (("diff", str(good), str(path)), ("verify", str(path))):
            done = run_module(*args, cwd=Path(folder), timeout=120)
            assert done.returncode in (0, 1, 2), done.stderr
            assert "internal error" not in done.stderr and "Traceback" not in done.stderr
            if done.returncode == 2:
                assert done.stderr.count("\n") == 1, done.stderr
