"""The command line's edges: which format a file name asks for, what a run says when its
report goes to a file, closed pipes, a terminal as standard input, reports written whole or not
at all, an output that is an input, a capture given twice, control characters on stderr, the
commands that read no capture, and the process state the library leaves behind."""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import json
import os
import stat
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from flowaudit import cli as cli_module
from flowaudit.cli import _output, cli
from flowaudit.errors import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK
from tests import capbuild as cb
from tests.sample import SAMPLE, SITE, run_module

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """One TCP flow to 445 carrying SMB2's magic: a flow, and no finding without a site."""
    frames = [
        cb.Rec(T0, cb.ip4_tcp_frame("10.0.0.1", "10.0.0.2", 50000, 445, "S", seq=1000)),
        cb.Rec(T0 + 1_000, cb.ip4_tcp_frame("10.0.0.2", "10.0.0.1", 445, 50000, "SA", seq=9)),
        cb.Rec(T0 + 2_000, cb.ip4_tcp_frame("10.0.0.1", "10.0.0.2", 50000, 445, "A", seq=1001)),
    ]
    return cb.write(tmp_path / "site.pcap", cb.pcap_bytes(frames, cb.LINKTYPE_ETHERNET))


def invoke(*args: str) -> Result:
    """In process; ``result.exit_code`` is the code ``main`` would exit with for an error."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


run = run_module  # ``python -m flowaudit ARGS`` as a user meets it: exit code and stderr


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowaudit: error: "), done.stderr
    return lines[0].removeprefix("flowaudit: error: ")


def left_in(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


# --- 1. the format the output file's extension names --------------------------------------


def _is_json(text: str) -> bool:
    return isinstance(json.loads(text), dict)


@pytest.mark.parametrize(
    ("name", "looks_right"),
    [
        ("r.json", lambda text: json.loads(text)["schema"] == "flowaudit/report/v1"),
        ("r.JSON", lambda text: json.loads(text)["schema"] == "flowaudit/report/v1"),
        ("r.jsonl", lambda text: json.loads(text.splitlines()[0])["record"] == "run"),
        ("r.csv", lambda text: next(csv.reader(io.StringIO(text)))[0] == "id"),
        ("r.html", lambda text: text.lstrip().lower().startswith("<!doctype html")),
        ("r.sarif", lambda text: json.loads(text)["version"] == "2.1.0"),
        ("r.sarif.json", lambda text: json.loads(text)["version"] == "2.1.0"),
    ],
)
def test_analyze_writes_the_format_the_extension_names(
    capture: Path, tmp_path: Path, name: str, looks_right: Any
) -> None:
    out = tmp_path / name
    result = invoke("analyze", str(capture), "--no-sha256", "-o", str(out))
    assert result.exit_code == EXIT_OK, result.output
    assert looks_right(out.read_text())


def test_flows_hosts_and_matrix_write_the_format_the_extension_names(
    capture: Path, tmp_path: Path
) -> None:
    assert invoke("flows", str(capture), "-o", str(tmp_path / "f.parquet")).exit_code == 0
    assert pq.read_table(tmp_path / "f.parquet").num_rows == 1
    assert invoke("flows", str(capture), "-o", str(tmp_path / "f.json")).exit_code == 0
    assert _is_json((tmp_path / "f.json").read_text())
    assert invoke("hosts", str(capture), "-o", str(tmp_path / "h.csv")).exit_code == 0
    assert (tmp_path / "h.csv").read_text().startswith("ip,roles,")
    assert invoke("matrix", "-o", str(tmp_path / "m.json")).exit_code == 0
    assert "rules" in json.loads((tmp_path / "m.json").read_text())


def test_a_name_of_no_known_extension_gets_the_table(capture: Path, tmp_path: Path) -> None:
    for name in ("report.txt", "report"):
        assert invoke("analyze", str(capture), "-o", str(tmp_path / name)).exit_code == 0
        assert (tmp_path / name).read_text().startswith(f"{capture}: pcap, 3 packets")


def test_format_and_extension_that_disagree_are_refused(capture: Path, tmp_path: Path) -> None:
    done = run("analyze", str(capture), "--format", "json", "-o", "x.csv", cwd=tmp_path)
    assert one_error_line(done) == "--format json contradicts --output x.csv (a csv file name)"
    done = run("analyze", str(capture), "-o", "x.parquet", cwd=tmp_path)
    assert one_error_line(done) == (
        "--output x.parquet: analyze writes no parquet (--format table|json|jsonl|csv|html|sarif)"
    )
    done = run("hosts", str(capture), "--format", "table", "-o", "h.json", cwd=tmp_path)
    assert one_error_line(done) == "--format table contradicts --output h.json (a json file name)"
    assert left_in(tmp_path) == {"site.pcap"}
    # SARIF is JSON: a .json name does not contradict it
    result = invoke("analyze", str(capture), "--format", "sarif", "-o", str(tmp_path / "s.json"))
    assert result.exit_code == 0 and json.loads((tmp_path / "s.json").read_text())["runs"]


# --- 2. a report written to a file says so on stderr ---------------------------------------


def test_a_report_to_a_file_says_what_it_holds_and_the_exit_code(tmp_path: Path) -> None:
    done = run("analyze", str(SAMPLE), "--site", str(SITE), "-o", "r.json", cwd=tmp_path)
    assert done.returncode == EXIT_FINDINGS and done.stdout == ""
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    severities = ", ".join(f"{n} {name}" for name, n in summary["severities"].items() if n)
    assert done.stderr == (
        f"flowaudit: wrote r.json: {summary['flows']} flows, {summary['findings']} findings "
        f"({severities}), exit 1\n"
    )
    # on standard output the report speaks for itself
    done = run(
        "analyze", str(SAMPLE), "--site", str(SITE), "-o", "-", "--format", "json", cwd=tmp_path
    )
    assert done.returncode == EXIT_FINDINGS and done.stderr == ""


def test_flows_to_a_file_says_how_many(capture: Path) -> None:
    done = run("flows", "site.pcap", "-o", "f.csv", cwd=capture.parent)
    assert done.returncode == EXIT_OK
    assert done.stderr == "flowaudit: wrote f.csv: 1 flow\n"


# --- 3. a closed pipe does not change the exit code -----------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--fail-on", "never"], EXIT_OK),  # the table (through rich)
        (["--fail-on", "never", "--table", "operations"], EXIT_OK),
        (["--fail-on", "never", "--format", "json"], EXIT_OK),
        (["--format", "json"], EXIT_FINDINGS),  # high findings: the pipe does not hide them
        ([], EXIT_FINDINGS),
    ],
)
def test_a_reader_that_goes_away_leaves_the_exit_code_as_it_was(
    tmp_path: Path, args: list[str], code: int
) -> None:
    command = [sys.executable, "-m", "flowaudit", "analyze", str(SAMPLE), "--site", str(SITE)]
    with subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # `| head -0`: nobody reads, every write fails
        stderr = process.stderr.read()
        assert process.wait(timeout=300) == code, stderr
    assert stderr == b""


def test_a_reader_that_goes_away_mid_report(tmp_path: Path) -> None:
    # the JSON report of the sample is larger than a pipe holds: the writer is blocked
    # mid-report when `head -1` leaves
    command = [sys.executable, "-m", "flowaudit", "analyze", str(SAMPLE), "--site", str(SITE)]
    with subprocess.Popen(
        [*command, "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == b"{\n"
        process.stdout.close()
        stderr = process.stderr.read()
        assert process.wait(timeout=300) == EXIT_FINDINGS, stderr
    assert stderr == b""


# --- 4. --fail-on and --min-severity offer only severities a finding can have --------------


@pytest.mark.parametrize("option", ["--fail-on", "--min-severity"])
def test_critical_is_no_choice(capture: Path, option: str) -> None:
    done = run("analyze", "site.pcap", option, "critical", cwd=capture.parent)
    line = one_error_line(done)
    assert f"Invalid value for '{option}': 'critical' is not one of 'info', 'low'" in line


def test_no_rule_has_the_severity_critical() -> None:
    from flowaudit.signatures import load_signatures

    signatures = load_signatures()
    severities = {spec.severity for spec in signatures.findings.values()}
    severities |= set(signatures.plaintext_severity.values())
    assert severities <= set(cli_module.FINDING_SEVERITIES)


# --- 5. standard input on a terminal ---------------------------------------------------------


def test_standard_input_on_a_terminal_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("pty")
    leader, follower = os.openpty()
    try:
        done = run("analyze", "-", cwd=tmp_path, stdin=follower)
    finally:
        os.close(follower)
        os.close(leader)
    assert one_error_line(done) == "-: standard input is a terminal; pipe a capture in"


# --- 6. reports are written whole or not at all ----------------------------------------------


def _write_half_then(exception: BaseException) -> Any:
    def writer(result: Any, out: IO[str], options: Any) -> None:
        out.write('{"half": ')
        out.flush()
        raise exception

    return writer


@pytest.mark.parametrize("exception", [RuntimeError("bug"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_earlier_report(
    capture: Path, monkeypatch: pytest.MonkeyPatch, exception: BaseException
) -> None:
    report = capture.parent / "r.json"
    report.write_text('{"earlier": true}\n')
    import flowaudit.report.audit

    monkeypatch.setattr(flowaudit.report.audit, "write_json", _write_half_then(exception))
    result = invoke("analyze", str(capture), "--no-sha256", "-o", str(report))
    assert result.exit_code != 0
    assert report.read_text() == '{"earlier": true}\n'
    assert left_in(capture.parent) == {"site.pcap", "r.json"}


def test_the_report_appears_only_once_closed(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text("earlier")
    with _output(str(report), binary=False) as out:
        out.write("new")
        out.flush()
        assert report.read_text() == "earlier"
        assert left_in(tmp_path) == {"r.json", f".r.json.flowaudit-{os.getpid()}.tmp"}
    assert report.read_text() == "new"
    assert left_in(tmp_path) == {"r.json"}


def test_two_writers_of_one_report_each_leave_it_whole(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    with _output(str(report), binary=False) as first:
        with _output(str(report), binary=False) as second:
            first.write("first " * 10_000)
            second.write("second " * 10_000)
        assert report.read_text() == "second " * 10_000
    assert report.read_text() == "first " * 10_000  # the last rename wins
    assert left_in(tmp_path) == {"r.json"}


def test_file_modes_are_those_open_would_give(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        with _output(str(tmp_path / "new.json"), binary=False) as out:
            out.write("x")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        private = tmp_path / "private.json"
        private.write_text("earlier")
        private.chmod(0o600)
        with _output(str(private), binary=False) as out:
            out.write("x")
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(umask)


def test_a_symbolic_link_keeps_pointing_at_the_report(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    real = tmp_path / "reports" / "r.json"
    real.write_text("earlier")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    with _output(str(link), binary=False) as out:
        out.write("new")
    assert link.is_symlink() and real.read_text() == "new"
    assert left_in(tmp_path / "reports") == {"r.json"}


def test_devices_and_fifos_are_written_directly(tmp_path: Path) -> None:
    with _output(os.devnull, binary=False) as out:
        out.write("nothing")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    with _output(str(fifo), binary=True) as out:
        out.write(b"report")
    reader.join(timeout=60)
    assert received == [b"report"]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and left_in(tmp_path) == {"fifo"}


# --- 7. errors of the output name it ---------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("command", ["analyze", "flows"])
def test_a_full_device_is_named(capture: Path, command: str) -> None:
    done = run(command, "site.pcap", "-o", "/dev/full", cwd=capture.parent)
    assert one_error_line(done) == "/dev/full: cannot write (No space left on device)"


def test_an_empty_output_name_is_a_usage_error(capture: Path) -> None:
    done = run("analyze", "site.pcap", "-o", "", cwd=capture.parent)
    assert one_error_line(done) == "--output: the file name is empty"


def test_a_write_error_names_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowaudit.errors import UsageError

    def failing(result: Any, out: IO[str], options: Any) -> None:
        raise OSError(28, "No space left on device")

    import flowaudit.report.audit

    monkeypatch.setattr(flowaudit.report.audit, "write_json", failing)
    report = tmp_path / "r.json"
    with pytest.raises(UsageError, match=r"r\.json: cannot write \(No space left on device\)"):
        CliRunner().invoke(
            cli,
            ["analyze", str(SAMPLE), "--no-sha256", "-o", str(report)],
            standalone_mode=False,
            catch_exceptions=False,
        )
    assert left_in(tmp_path) == set()


# --- 8. an output that is an input -----------------------------------------------------------


def _baseline(folder: Path) -> Path:
    report = folder / "r.json"
    result = invoke("analyze", str(SAMPLE), "--no-sha256", "--format", "json", "-o", str(report))
    assert result.exit_code == 0 and report.stat().st_size, result.output
    return report


@pytest.mark.parametrize(
    ("option", "kind"),
    [
        (None, "capture"),
        ("--site", "site file"),
        ("--accept", "accept file"),
        ("--baseline", "baseline"),
    ],
)
@pytest.mark.parametrize("spelling", ["same", "dotted", "link"])
def test_analyze_refuses_to_write_over_an_input(
    tmp_path: Path, option: str | None, kind: str, spelling: str
) -> None:
    names = {"capture": "c.pcap", "site file": "s.yaml", "accept file": "a.yaml"}
    (tmp_path / "c.pcap").write_bytes(SAMPLE.read_bytes())
    (tmp_path / "s.yaml").write_bytes(SITE.read_bytes())
    (tmp_path / "a.yaml").write_text("accept: []\n")
    if kind == "baseline":
        names["baseline"] = _baseline(tmp_path).name
    given = names[kind]
    before = (tmp_path / given).read_bytes()
    output = {"same": given, "dotted": f"./{given}", "link": "link.json"}[spelling]
    if spelling == "link":
        (tmp_path / "link.json").symlink_to(tmp_path / given)
    args = ["analyze", "c.pcap", "-o", output]
    if option is not None:
        args += [option, given]
    line = one_error_line(run(*args, cwd=tmp_path))
    assert line == f"--output {output} is the {kind} {given}: name another file"
    assert (tmp_path / given).read_bytes() == before


@pytest.mark.parametrize("command", ["flows", "hosts"])
def test_flows_and_hosts_refuse_to_write_over_an_input(capture: Path, command: str) -> None:
    before = capture.read_bytes()
    line = one_error_line(run(command, "site.pcap", "-o", "./site.pcap", cwd=capture.parent))
    assert line == "--output ./site.pcap is the capture site.pcap: name another file"
    assert capture.read_bytes() == before


def test_hosts_refuses_to_write_over_its_site_file(capture: Path) -> None:
    site = capture.parent / "s.yaml"
    site.write_bytes(SITE.read_bytes())
    line = one_error_line(
        run("hosts", "site.pcap", "--site", "s.yaml", "-o", "s.yaml", cwd=capture.parent)
    )
    assert line == "--output s.yaml is the site file s.yaml: name another file"
    assert site.read_bytes() == SITE.read_bytes()


# --- 9. one capture given twice --------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
@pytest.mark.parametrize("command", ["analyze", "flows", "hosts"])
def test_a_capture_given_twice_is_refused(capture: Path, spelling: str, command: str) -> None:
    second = {
        "same": "site.pcap",
        "dotted": "./site.pcap",
        "symlink": "l.pcap",
        "hardlink": "h.pcap",
    }
    if spelling == "symlink":
        (capture.parent / "l.pcap").symlink_to(capture)
    if spelling == "hardlink":
        os.link(capture, capture.parent / "h.pcap")
    line = one_error_line(run(command, "site.pcap", second[spelling], cwd=capture.parent))
    if spelling == "same":
        assert line == "site.pcap is given twice: give each capture once"
    else:
        assert line == f"site.pcap and {second[spelling]} are one file: give each capture once"


def test_two_captures_are_still_two(capture: Path) -> None:
    other = capture.parent / "other.pcap"
    other.write_bytes(capture.read_bytes())
    done = run("flows", "site.pcap", "other.pcap", "--format", "json", cwd=capture.parent)
    assert done.returncode == EXIT_OK, done.stderr
    assert len(json.loads(done.stdout)["captures"]) == 2


# --- 10. nothing on stderr drives the terminal -----------------------------------------------


def test_control_and_bidi_characters_on_stderr_are_escaped(tmp_path: Path) -> None:
    name = "a\x1b]0;owned\x07b\u202ec\x9bd.pcap"
    done = run("analyze", name, cwd=tmp_path)
    line = one_error_line(done)
    assert line == "a\\x1b]0;owned\\x07b\\u202ec\\x9bd.pcap: no such file"
    assert not any(char in done.stderr for char in "\x1b\x07\u202e\x9b")


# --- 11. commands that read no capture load no capture engine --------------------------------

ENGINE = ("flowaudit.capture", "flowaudit.flow_kernel", "flowaudit._kernels", "pandas", "pyarrow")
LOADED = f"""\
import sys
from flowaudit.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="flowaudit", standalone_mode=False)
finally:
    print(" ".join(sorted(name for name in {ENGINE!r} if name in sys.modules)), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def report_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("reports")
    old = _baseline(folder)
    new = folder / "new.json"
    new.write_bytes(old.read_bytes())
    return old, new


@pytest.mark.parametrize(
    "command",
    [
        ["schema"],
        ["matrix"],
        ["diff", "{old}", "{new}"],
        ["verify", "{old}"],
    ],
)
def test_commands_that_read_no_capture_load_no_engine(
    report_pair: tuple[Path, Path], command: list[str]
) -> None:
    old, new = report_pair
    args = [word.format(old=old, new=new) for word in command]
    done = subprocess.run(
        [sys.executable, "-c", LOADED, *args], capture_output=True, text=True, check=False
    )
    assert done.stderr.splitlines()[-1:] == [""], done.stderr


# --- 12. the library leaves the process as it found it ---------------------------------------


@pytest.fixture
def gc_state() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("gc_state")
@pytest.mark.parametrize("enabled", [True, False])
def test_audit_leaves_the_garbage_collector_as_it_was(capture: Path, enabled: bool) -> None:
    from flowaudit.audit import audit
    from flowaudit.config import FlowConfig
    from flowaudit.flows import build_flow_table

    table = build_flow_table([capture], FlowConfig(conversations=True))
    # the stream readers pause the collector and freeze what they keep while they read,
    # and hand it all back when the table is made
    assert gc.get_freeze_count() == 0
    if enabled:
        gc.enable()
    else:
        gc.disable()
    audit(table)
    assert gc.isenabled() is enabled
    assert gc.get_freeze_count() == 0


@pytest.mark.skipif(sys.version_info >= (3, 14) or os.name == "nt", reason="no child watchers")
def test_the_pyshark_engine_leaves_the_child_watcher_it_found(capture: Path) -> None:
    pytest.importorskip("pyshark")
    from flowaudit.capture.pyshark_engine import PysharkReader, _missing_dependency

    missing = _missing_dependency()
    if missing is not None:
        pytest.skip(missing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = asyncio.new_event_loop()
        watcher = asyncio.SafeChildWatcher()
        asyncio.set_child_watcher(watcher)
        watcher.attach_loop(theirs)
        try:
            batches = list(PysharkReader(capture, 0))
            assert sum(len(batch) for batch in batches) == 3
            assert asyncio.get_child_watcher() is watcher
            assert getattr(watcher, "_loop", None) is theirs  # still serving its own loop
        finally:
            asyncio.set_child_watcher(asyncio.ThreadedChildWatcher())  # the default
            theirs.close()
