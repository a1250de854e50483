"""The ``flowaudit`` command: options in, one library call, a report out, an exit code.

No logic of its own (DESIGN.md): every command calls into the library and maps
``FlowauditError`` to one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from flowaudit import __version__
from flowaudit.config import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_PAYLOAD_BYTES,
    MAX_IDLE_TIMEOUT,
    MAX_PAYLOAD_BYTES,
    FlowConfig,
)
from flowaudit.errors import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FlowauditError,
    UsageError,
)
from flowaudit.report import AUDIT_FORMATS

if TYPE_CHECKING:
    from flowaudit.filters import Filters
    from flowaudit.flows import FlowTable

FLOWS_FORMATS = ["table", "csv", "json", "parquet"]
TABLE_FORMATS = ["table", "json", "csv"]  # hosts, matrix


def _stderr_line(message: str) -> None:
    """One line on stderr. Control and bidi characters (from a file name, a key of a YAML file,
    the capture) are shown escaped, as the terminal report shows them, so that none reaches
    the terminal."""
    if not message.isprintable():
        from flowaudit.report.terminal import clean  # loaded only when something needs it

        message = clean(message)
    click.echo(f"flowaudit: {message}", err=True)


@contextmanager
def _progress(paths: tuple[str, ...]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr while reading, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    total = 0
    for path in paths:
        with suppress(OSError):
            total += os.path.getsize(path)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=Console(stderr=True),  # never on stdout: it carries the report
    ) as bar:
        task = bar.add_task("reading", total=total or None)
        yield lambda done: bar.advance(task, done)


def _to_stdout(path: str | None) -> bool:
    return path is None or path == "-"


@contextmanager
def _output(path: str | None, binary: bool) -> Iterator[IO[Any]]:
    """Where a report goes: standard output, or the file ``path`` (``_file_output``)."""
    if path is None or path == "-":
        with _stdout_output(binary) as stream:
            yield stream
    else:
        with _file_output(path, binary) as handle:
            yield handle


@contextmanager
def _stdout_output(binary: bool) -> Iterator[IO[Any]]:
    """Standard output. When its reader goes away (``| head``) the writing stops quietly and
    the command's exit code stands: a closed pipe is not a failure, nor a success."""
    if binary and sys.stdout.isatty():
        raise UsageError("parquet output is binary: name a file with --output")
    stream: IO[Any] = sys.stdout.buffer if binary else sys.stdout
    try:
        yield stream
        stream.flush()
    except BrokenPipeError:
        _discard_stdout()
    except SystemExit as exc:
        # rich's Console turns a BrokenPipeError into SystemExit(1), our "findings" code
        if not isinstance(exc.__context__, BrokenPipeError):
            raise
        _discard_stdout()


def _discard_stdout() -> None:
    """Point standard output at os.devnull, so that what is still buffered for a reader that
    went away does not fail again at exit (Python's "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@contextmanager
def _file_output(path: str, binary: bool) -> Iterator[IO[Any]]:
    """The file ``path``, whole or not at all: written to a temporary file beside it, renamed
    over it once closed; on an error or Ctrl-C the temporary file goes and an earlier report
    stays as it was. A device or FIFO (``/dev/null``) is written directly, never renamed over;
    so is a file in a folder where we may not make one. A symbolic link keeps pointing at the
    new report, and an existing report keeps its permissions."""
    target = os.path.realpath(path)
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise _write_error(path, exc) from None
    handle: IO[Any] | None = None
    temporary = None
    if existing is None or stat.S_ISREG(existing.st_mode):
        try:
            temporary, handle = _temporary_beside(target, binary)
        except OSError as exc:
            if existing is None or not isinstance(exc, PermissionError):
                raise _write_error(path, exc) from None
    if handle is None:
        try:
            handle = open(path, "wb" if binary else "w", encoding=None if binary else "utf-8")  # noqa: SIM115
        except OSError as exc:
            raise _write_error(path, exc) from None
    try:
        with handle:
            yield handle
        if temporary is not None:
            if existing is not None:
                os.chmod(temporary, stat.S_IMODE(existing.st_mode))
            os.replace(temporary, target)
    except BaseException as exc:
        if temporary is not None:
            with suppress(OSError):
                os.unlink(temporary)
        if isinstance(exc, OSError) and exc.filename in (None, temporary, target):
            raise _write_error(path, exc) from None
        raise


def _temporary_beside(target: str, binary: bool) -> tuple[str, IO[Any]]:
    """A new file in ``target``'s folder, ``.NAME.flowaudit-PID.tmp``, open for writing.
    ``O_EXCL``: the file is ours alone, never a link someone left under that name."""
    folder, name = os.path.split(target)
    for attempt in range(100):
        suffix = f"-{attempt}" if attempt else ""
        temporary = os.path.join(folder, f".{name}.flowaudit-{os.getpid()}{suffix}.tmp")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        return temporary, os.fdopen(
            descriptor, "wb" if binary else "w", encoding=None if binary else "utf-8"
        )
    raise UsageError(f"{target}: cannot write (no free name for a temporary file beside it)")


def _write_error(path: str, exc: OSError) -> UsageError:
    return UsageError(f"{path}: cannot write ({exc.strerror or exc})")


# The format an output file's extension names, longest first ("x.sarif.json" is SARIF).
_EXTENSION_FORMATS = (
    (".sarif.json", "sarif"),
    (".sarif", "sarif"),
    (".jsonl", "jsonl"),
    (".json", "json"),
    (".csv", "csv"),
    (".html", "html"),
    (".htm", "html"),
    (".parquet", "parquet"),
)


def _output_format(
    fmt: str | None, output: str | None, choices: Sequence[str], command: str
) -> str:
    """``--format`` as given; else the format the ``--output`` file's extension names; else
    ``table``. A format the extension contradicts is refused, as is an extension this command
    has no format for (SARIF is JSON: ``--format sarif -o x.json`` is no contradiction)."""
    implied = None
    if not _to_stdout(output):
        name = os.path.basename(str(output)).lower()
        implied = next(
            (f for suffix, f in _EXTENSION_FORMATS if name.endswith(suffix) and name != suffix),
            None,
        )
    if fmt is None:
        if implied is None:
            return "table"
        if implied not in choices:
            choice = "|".join(choices)
            raise UsageError(
                f"--output {output}: {command} writes no {implied} (--format {choice})"
            )
        return implied
    if implied is not None and fmt != implied and (fmt, implied) != ("sarif", "json"):
        raise UsageError(f"--format {fmt} contradicts --output {output} (a {implied} file name)")
    return fmt


def _check_output(path: str | None, inputs: Iterable[tuple[str, str | None]] = ()) -> None:
    """Fail before anything is read when the output file cannot be made, or is one of the
    ``inputs`` (kind, path): the report would overwrite what it was made from."""
    if path == "":
        raise UsageError("--output: the file name is empty")
    if path is None or path == "-":
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"{path}: cannot write (no folder {folder})")
    if Path(path).is_dir():
        raise UsageError(f"{path}: cannot write (it is a folder)")
    for kind, name in inputs:
        if name is not None and name != "-" and _same_file(path, name):
            raise UsageError(f"--output {path} is the {kind} {name}: name another file")


def _same_file(first: str, second: str) -> bool:
    """Whether two spellings name one file (through links too)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them is not there (yet)
        return os.path.realpath(first) == os.path.realpath(second)


def _check_captures(captures: Sequence[str]) -> None:
    """Refuse, before reading, a capture given twice (counted twice otherwise, under any
    spelling or link) and standard input on a terminal (it would wait for ever)."""
    seen: dict[tuple[int, int], str] = {}
    for path in captures:
        if path == "-":
            if sys.stdin is not None and sys.stdin.isatty():
                raise UsageError("-: standard input is a terminal; pipe a capture in")
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue  # the reader says what is wrong with it
        if info.st_ino == 0:  # a file system without inode numbers
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen:
            first = seen[key]
            same = f"{path} is given twice" if first == path else f"{first} and {path} are one file"
            raise UsageError(f"{same}: give each capture once")
        seen[key] = path


def _wrote(output: str | None, what: str | None = None) -> None:
    """Say on stderr that the ``--output`` file was written, and what it holds, so that a run
    does not end in silence (a report on standard output speaks for itself)."""
    if not _to_stdout(output):
        _stderr_line(f"wrote {output}" + (f": {what}" if what else ""))


# The severities a finding of flowaudit's rules can have (signatures/findings.yaml: none is
# "critical", which the report's schema keeps for what may come).
FINDING_SEVERITIES = ["info", "low", "medium", "high"]
SEVERITY_CHOICES = [*FINDING_SEVERITIES, "never"]


def _format_option(choices: Sequence[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=None,
        help="Output format [default: the one the --output file's extension names "
        "(.json, .csv, ...), else table].",
    )


_FLOW_OPTIONS = (
    click.option(
        "--engine",
        type=click.Choice(["native", "pyshark"]),
        default="native",
        show_default=True,
        help="native reader, or tshark's dissection through pyshark.",
    ),
    click.option(
        "--payload-bytes",
        type=click.IntRange(min=0, max=MAX_PAYLOAD_BYTES),
        default=DEFAULT_PAYLOAD_BYTES,
        show_default=True,
        help="First payload bytes kept per flow direction (for dissectors).",
    ),
    click.option(
        "--idle-timeout",
        type=click.FloatRange(min=0, max=MAX_IDLE_TIMEOUT),
        default=DEFAULT_IDLE_TIMEOUT,
        show_default=True,
        help="Seconds of silence that end a UDP/ICMP flow (0: never, as tshark).",
    ),
)


def _flow_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of how packets become flows, shared by every command that reads captures."""
    for option in reversed(_FLOW_OPTIONS):
        command = option(command)
    return command


def _filter_options(*, judged: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--host``, ``--net``, ``--since``, ``--until`` and (``judged``: shown, for ``analyze``)
    ``--service``, ``--verdict``, ``--rule``, ``--min-severity`` (``flowaudit.filters``)."""
    options = (
        click.option(
            "--host",
            "filter_hosts",
            multiple=True,
            metavar="ADDR",
            help="Only flows with this address at either end (repeatable).",
        ),
        click.option(
            "--net",
            "filter_nets",
            multiple=True,
            metavar="CIDR",
            help="Only flows with an end in this network (repeatable).",
        ),
        click.option(
            "--since",
            "filter_since",
            default=None,
            metavar="TIME",
            help="Only flows active at or after TIME: ISO 8601, or +30s/+5m/+1h from the "
            "first packet.",
        ),
        click.option(
            "--until",
            "filter_until",
            default=None,
            metavar="TIME",
            help="Only flows active at or before TIME (as --since).",
        ),
        click.option(
            "--service",
            "filter_services",
            multiple=True,
            metavar="NAME",
            hidden=not judged,
            help="Only flows of this service (repeatable).",
        ),
        click.option(
            "--verdict",
            "filter_verdicts",
            multiple=True,
            type=click.Choice(["expected", "unexpected", "unknown"]),
            hidden=not judged,
            help="Only flows of this verdict (repeatable).",
        ),
        click.option(
            "--rule",
            "filter_rules",
            multiple=True,
            metavar="RULE",
            hidden=not judged,
            help="Only findings of this rule (repeatable).",
        ),
        click.option(
            "--min-severity",
            "filter_min_severity",
            type=click.Choice(FINDING_SEVERITIES),
            default=None,
            hidden=not judged,
            help="Only findings of at least this severity.",
        ),
    )

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _filters(params: dict[str, Any], *, judged: bool) -> Filters:
    """The filters of a command's parameters (``filter_*``), checked before a capture is read."""
    from flowaudit.filters import make_filters

    if not judged:
        for name, option in (
            ("filter_services", "--service"),
            ("filter_verdicts", "--verdict"),
            ("filter_rules", "--rule"),
            ("filter_min_severity", "--min-severity"),
        ):
            if params.get(name):
                raise UsageError(
                    f"{option}: flows has no services, verdicts or findings (use analyze)"
                )
    return make_filters(
        hosts=params.get("filter_hosts") or (),
        nets=params.get("filter_nets") or (),
        since=params.get("filter_since"),
        until=params.get("filter_until"),
        services=params.get("filter_services") or (),
        verdicts=params.get("filter_verdicts") or (),
        rules=params.get("filter_rules") or (),
        min_severity=params.get("filter_min_severity"),
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowaudit")
def cli() -> None:
    """Audit packet captures of a Configuration Manager site against its port matrix."""


@cli.command()
@click.argument("captures", nargs=-1, required=True)
@_format_option(FLOWS_FORMATS)
@click.option("--output", "-o", default=None, help="Write to this file instead of stdout.")
@_flow_options
@click.option(
    "--payload/--no-payload", default=False, help="Include payload bytes (base64) in JSON and CSV."
)
@click.option("--sha256/--no-sha256", default=False, help="Hash each capture as it is read.")
@_filter_options(judged=False)
def flows(
    captures: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    engine: str,
    payload_bytes: int,
    idle_timeout: float,
    payload: bool,
    sha256: bool,
    **filter_params: Any,
) -> None:
    """Print the flow table of one capture set (several files are merged in time order)."""
    from flowaudit.filters import select_table

    fmt = _output_format(fmt, output, FLOWS_FORMATS, "flows")
    filters = _filters(filter_params, judged=False)
    _check_captures(captures)
    _check_output(output, [("capture", path) for path in captures])
    table = _read_captures(captures, engine, payload_bytes, idle_timeout, sha256, False)
    table = select_table(table, filters)
    from flowaudit.report import flowtable

    with _output(output, binary=fmt == "parquet") as out:
        if fmt == "json":
            flowtable.write_json(table, out, payload=payload)
        elif fmt == "csv":
            flowtable.write_csv(table, out, payload=payload)
        elif fmt == "parquet":
            flowtable.write_parquet(table, out)
        else:
            color = out is sys.stdout and sys.stdout.isatty() and "NO_COLOR" not in os.environ
            flowtable.write_table(table, out, color=color)
    _wrote(output, _count(len(table), "flow"))


def _read_captures(
    captures: tuple[str, ...],
    engine: str,
    payload_bytes: int,
    idle_timeout: float,
    sha256: bool,
    conversations: bool,
) -> FlowTable:
    """The flow table of a capture set, with a progress bar and the readers' warnings."""
    from flowaudit.flows import build_flow_table

    if conversations and engine == "pyshark":
        # tshark hands over each packet's payload cut at --payload-bytes: read whole, every
        # longer segment would look like bytes missing from the capture
        _stderr_line("note: --engine pyshark reads each flow's first bytes only (--first-bytes)")
        conversations = False
    config = FlowConfig(
        payload_bytes=payload_bytes,
        idle_timeout=idle_timeout,
        sha256=sha256,
        conversations=conversations,
    )
    if engine == "native":
        from flowaudit.capture import kernels

        slow = kernels.slow_warning()
        sizes = [os.path.getsize(p) for p in captures if p != "-" and os.path.isfile(p)]
        if slow and (sum(sizes) > kernels.SLOW_WARNING_BYTES or "-" in captures):
            _stderr_line(f"note: {slow}")
    with _progress(captures) as progress:
        table = build_flow_table(list(captures), config, engine=engine, progress=progress)
    for info in table.captures:
        for warning in info.warnings:
            _stderr_line(f"warning: {info.path}: {warning}")
    if table.orphan_fragments:
        _stderr_line(
            f"warning: {table.orphan_fragments} IP fragments whose first fragment was not "
            "captured are not counted in any flow"
        )
    return table


@cli.command()
@click.argument("captures", nargs=-1, required=True)
@click.option("--site", "site_path", default=None, help="site.yaml: roles, ports, security mode.")
@_format_option(list(AUDIT_FORMATS))
@click.option(
    "--table",
    "table_choice",
    type=click.Choice(["flows", "findings", "operations", "identities"]),
    default=None,
    help="CSV: which table to write (default flows); terminal: 'flows' adds every flow, "
    "'operations' every operation of every conversation.",
)
@click.option("--output", "-o", default=None, help="Write to this file instead of stdout.")
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITY_CHOICES),
    default="high",
    show_default=True,
    help="Exit 1 when a finding has at least this severity (never: always exit 0).",
)
@click.option(
    "--baseline",
    "baseline_path",
    default=None,
    help="An earlier JSON report: mark each finding new or known.",
)
@click.option(
    "--fail-on-new",
    is_flag=True,
    default=False,
    help="With --baseline: only new findings decide the exit code.",
)
@click.option(
    "--accept",
    "accept_path",
    default=None,
    help="YAML of accepted findings (rule, match, justification, expires).",
)
@click.option("--sha256/--no-sha256", default=True, help="Hash each capture (evidence).")
@click.option(
    "--conversations/--first-bytes",
    default=True,
    show_default=True,
    help="Read whole SMB, DCE/RPC, HTTP, LDAP, Kerberos, TDS, DHCP and TFTP conversations "
    "(operations, identities), or only each flow's first payload bytes.",
)
@_flow_options
@_filter_options(judged=True)
def analyze(
    captures: tuple[str, ...],
    site_path: str | None,
    fmt: str | None,
    table_choice: str | None,
    output: str | None,
    fail_on: str,
    baseline_path: str | None,
    fail_on_new: bool,
    accept_path: str | None,
    sha256: bool,
    conversations: bool,
    engine: str,
    payload_bytes: int,
    idle_timeout: float,
    **filter_params: Any,
) -> int:
    """Classify every flow of a capture set and judge it against the ports matrix."""
    from flowaudit.audit import audit, severity_at_least
    from flowaudit.baseline import apply_accept, load_accept, load_report, mark_baseline
    from flowaudit.filters import select_result
    from flowaudit.report import ReportOptions, audit_writer
    from flowaudit.site import load_site

    fmt = _output_format(fmt, output, list(AUDIT_FORMATS), "analyze")
    if fail_on_new and baseline_path is None:
        raise UsageError("--fail-on-new needs --baseline")
    filters = _filters(filter_params, judged=True)
    _check_captures(captures)
    inputs: list[tuple[str, str | None]] = [("capture", path) for path in captures]
    inputs += [("site file", site_path), ("accept file", accept_path), ("baseline", baseline_path)]
    _check_output(output, inputs)
    # Every input file is read before the capture, so that a bad one fails at once.
    site = load_site(site_path) if site_path else None
    baseline = load_report(baseline_path) if baseline_path else None
    if baseline is not None:
        _filtered_report_warning(baseline_path, baseline)
    accept = load_accept(accept_path) if accept_path else None
    table = _read_captures(captures, engine, payload_bytes, idle_timeout, sha256, conversations)
    result = audit(table, site)
    result.command = _command_line(click.get_current_context())
    if baseline is not None:
        mark_baseline(result, baseline)
    if accept is not None:
        for warning in apply_accept(result, accept):
            _stderr_line(f"warning: {warning}")
    # The audit saw the whole capture; the filters choose what is shown and what counts.
    result = select_result(result, filters)
    code = EXIT_FINDINGS if severity_at_least(result, fail_on, new_only=fail_on_new) else EXIT_OK
    write = audit_writer(fmt)
    with _output(output, binary=False) as out:
        terminal = out is sys.stdout and sys.stdout.isatty()
        color = terminal and "NO_COLOR" not in os.environ and fmt == "table"
        width = shutil.get_terminal_size().columns if terminal else None  # COLUMNS wins
        write(result, out, ReportOptions(color=color, table=table_choice, width=width))
    _wrote(output, f"{_summary_words(result.summary())}, exit {code}")
    return code


def _summary_words(summary: dict[str, Any]) -> str:
    """The counts of a report: ``46 flows, 17 findings (6 high, 5 medium, 5 low, 1 info)``."""
    words = f"{_count(summary['flows'], 'flow')}, {_count(summary['findings'], 'finding')}"
    severities = [f"{count:,} {name}" for name, count in summary["severities"].items() if count]
    if severities:
        words += f" ({', '.join(severities)})"
    if summary["accepted"]:
        words += f", {summary['accepted']:,} accepted"
    return words


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


@cli.command()
@click.argument("captures", nargs=-1, required=True)
@click.option("--site", "site_path", default=None, help="site.yaml: roles, ports, security mode.")
@click.option(
    "--host",
    "host",
    default=None,
    metavar="ADDR",
    help="That host's timeline: every flow in time order with peer, verdict and findings.",
)
@_format_option(TABLE_FORMATS)
@click.option("--output", "-o", default=None, help="Write to this file instead of stdout.")
@_flow_options
def hosts(
    captures: tuple[str, ...],
    site_path: str | None,
    host: str | None,
    fmt: str | None,
    output: str | None,
    engine: str,
    payload_bytes: int,
    idle_timeout: float,
) -> None:
    """One line per host seen: roles, services served and used, peers, certificates,
    identities and findings (--host ADDR: that host's timeline)."""
    from flowaudit.audit import audit
    from flowaudit.filters import parse_host
    from flowaudit.hosts import write_hosts
    from flowaudit.site import load_site

    fmt = _output_format(fmt, output, TABLE_FORMATS, "hosts")
    address = parse_host(host) if host is not None else None
    _check_captures(captures)
    _check_output(output, [*(("capture", path) for path in captures), ("site file", site_path)])
    site = load_site(site_path) if site_path else None
    table = _read_captures(captures, engine, payload_bytes, idle_timeout, False, True)
    result = audit(table, site)
    with _output(output, binary=False) as out:
        write_hosts(result, out, fmt, address)
    _wrote(output, None if address is None else f"the timeline of {address}")


def _filtered_report_warning(path: str | None, report: dict[str, Any]) -> None:
    """A report made with filters holds only what they kept: what it lacks is not absent."""
    filters = report.get("filters")
    if isinstance(filters, dict) and filters.get("options"):
        from flowaudit.report.terminal import clean

        given = filters["options"]
        parts = given.items() if isinstance(given, dict) else []
        options = clean(
            " ".join(
                f"--{name.replace('_', '-')} {item}"
                for name, value in parts
                if value
                for item in (value if isinstance(value, list) else [value])
            )
        )
        _stderr_line(
            f"warning: {path} was made with filters ({options}): findings and flows outside "
            "them count as new or changed"
        )


def _command_line(context: click.Context) -> list[str]:
    """The command as it was typed (``main`` hands its arguments down), else as the options
    given on the command line spell it (the CLI called from another program)."""
    root = context.find_root()
    if isinstance(root.obj, dict) and "argv" in root.obj:
        return ["flowaudit", *root.obj["argv"]]
    words = ["flowaudit", context.info_name or "analyze"]
    for param in context.command.params:
        value = context.params.get(param.name or "")
        source = context.get_parameter_source(param.name or "")
        if source is not click.core.ParameterSource.COMMANDLINE:
            continue
        if isinstance(param, click.Argument):
            words.extend(str(v) for v in (value if isinstance(value, tuple) else (value,)))
        elif isinstance(param, click.Option) and param.multiple:
            for item in value or ():
                words.extend((param.opts[0], str(item)))
        elif isinstance(param, click.Option):
            flag = param.opts[-1] if param.is_flag and value else param.opts[0]
            if param.is_flag and not value and param.secondary_opts:
                flag = param.secondary_opts[-1]
            words.append(flag)
            if not param.is_flag:
                words.append(str(value))
    return words


@cli.command()
@click.argument("report", type=click.Path(dir_okay=False))
@click.option(
    "--rerun",
    is_flag=True,
    help="Also audit the captures again with the options of the report's command and compare "
    "the findings (rule, severity, flows).",
)
def verify(report: str, rerun: bool) -> int:
    """Check a JSON report's digest of its content and re-hash the captures and files it
    names: exit 0 if all still match, else 1."""
    from flowaudit.baseline import load_report
    from flowaudit.errors import InputError
    from flowaudit.evidence import located_files, rerun_findings, verified, verify_report
    from flowaudit.report.terminal import clean

    document = load_report(report)
    with _progress(tuple(map(str, located_files(document, Path(report))))) as progress:
        checks = verify_report(document, Path(report), progress)
    for check in checks:
        click.echo(clean(check.line))  # paths and digests from a foreign report: escaped
    good = verified(checks)
    click.echo(clean(f"{report}: evidence {'matches' if good else 'does NOT match'}"))
    if not rerun or not good:
        if rerun:
            click.echo(clean(f"{report}: not re-run, as the evidence does not hold"))
        return 0 if good else 1
    # The options of the report's own command line (its capture and site files are the ones
    # just verified); a report made by the library has none: the defaults.
    words = document.get("command") or ["flowaudit", "analyze", "-"]
    if words[:2] != ["flowaudit", "analyze"] or {"--help", "-h"} & set(words):
        raise InputError(clean(f"{report}: command: not an analyze command line to re-run"))
    try:
        options = analyze.make_context("analyze", list(words[2:])).params
    except click.ClickException as exc:
        raise InputError(clean(f"{report}: command: {exc.format_message()}")) from None
    found = tuple(check.found for check in checks if check.kind == "capture" and check.found)
    with _progress(found) as progress:
        again = rerun_findings(document, checks, options, progress)
    for line in again.lines:
        click.echo(clean(line))
    click.echo(
        clean(f"{report}: re-run: ")
        + (
            "the findings follow from the captures"
            if again.same
            else f"{len(again.lines)} differences in the findings"
        )
    )
    return 0 if again.same else 1


@cli.command()
@click.argument("old")
@click.argument("new")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format.",
)
def diff(old: str, new: str, fmt: str) -> int:
    """Findings and role-pair communications that appeared or disappeared between two JSON
    reports (matched by rule, roles, service and port; never by address or flow id).
    Exit 0 when nothing changed, 1 when something did."""
    import json

    from flowaudit.baseline import diff_is_empty, diff_lines, diff_reports, load_report
    from flowaudit.report.terminal import clean

    before, after = load_report(old), load_report(new)
    _filtered_report_warning(old, before)
    _filtered_report_warning(new, after)
    changes = diff_reports(before, after)
    if fmt == "json":
        click.echo(json.dumps(changes, indent=1))
    else:
        for line in diff_lines(changes):
            click.echo(clean(line))
        if diff_is_empty(changes):
            click.echo("no differences")
    return 0 if diff_is_empty(changes) else 1


@cli.command()
@click.option("--jsonl", is_flag=True, help="The schema of one --format jsonl record instead.")
def schema(jsonl: bool) -> None:
    """Print the JSON Schema of the analyze report (flowaudit/report/v1)."""
    from flowaudit.report.schema import jsonl_schema_text, schema_text

    click.echo(jsonl_schema_text() if jsonl else schema_text(), nl=False)


@cli.command()
@click.option("--site", "site_path", default=None, help="Apply this site's ports and options.")
@_format_option(TABLE_FORMATS)
@click.option("--output", "-o", default=None, help="Write to this file instead of stdout.")
def matrix(site_path: str | None, fmt: str | None, output: str | None) -> None:
    """Print the expected communications in force (one rule per row of the ports page)."""
    from flowaudit.report.matrix import write_matrix

    fmt = _output_format(fmt, output, TABLE_FORMATS, "matrix")
    _check_output(output, [("site file", site_path)])
    with _output(output, binary=False) as out:
        write_matrix(site_path, fmt, out)
    _wrote(output)


def _quick_exit(code: int) -> None:
    """Leave without the interpreter's teardown once all output is flushed.

    Tearing down numba's compiler and the loaded modules takes 0.1-0.15 s at every exit
    (measured here), a tenth of a whole run on a 1 GB capture; nothing is left to save by then,
    as every output file is closed by the command itself.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI and turns flowaudit's errors into one line and exit 2."""
    try:
        args = sys.argv[1:] if argv is None else argv
        result = cli.main(
            args=args, prog_name="flowaudit", standalone_mode=False, obj={"argv": list(args)}
        )
        _quick_exit(result if isinstance(result, int) else EXIT_OK)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # every one is a usage error (click's own codes say 1, our "findings" code, for some)
        _stderr_line(f"error: {exc.format_message()}")
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Abort:
        _stderr_line("aborted")
        sys.exit(EXIT_INTERRUPTED)
    except FlowauditError as exc:
        _stderr_line(f"error: {exc}")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`) where no command caught it (the
        # commands that write a report do, and keep their exit code): not an error of ours.
        with suppress(OSError, ValueError):
            _discard_stdout()
        os._exit(EXIT_OK)
    except KeyboardInterrupt:
        _stderr_line("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except MemoryError:
        _stderr_line("error: out of memory")
        sys.exit(EXIT_BAD_INPUT)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _stderr_line(f"error: {where}{exc.strerror or exc}")
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:
        # A bug of ours, not bad input: still one line, with the way to the traceback.
        if os.environ.get("FLOWAUDIT_DEBUG"):
            raise
        _stderr_line(
            f"internal error: {type(exc).__name__}: {exc} "
            "(set FLOWAUDIT_DEBUG=1 for the traceback, and please report it)"
        )
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()

__all__ = ["Path", "cli", "main"]
