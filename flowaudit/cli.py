"""The ``flowaudit`` command: options in, one library call, a report out, an exit code.

No logic of its own (DESIGN.md): every command calls into the library and maps
``FlowauditError`` to one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
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
from flowaudit.errors import EXIT_BAD_INPUT, FlowauditError, UsageError
from flowaudit.report import AUDIT_FORMATS

if TYPE_CHECKING:
    from flowaudit.filters import Filters
    from flowaudit.flows import FlowTable


class OutputClosed(Exception):
    """The reader of standard output went away (``| head``): not an error of ours."""


def _stderr_line(message: str) -> None:
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


@contextmanager
def _output(path: str | None, binary: bool) -> Iterator[IO[Any]]:
    if path is None or path == "-":
        if binary and sys.stdout.isatty():
            raise UsageError("parquet output is binary: name a file with --output")
        stream: IO[Any] = sys.stdout.buffer if binary else sys.stdout
        try:
            yield stream
            stream.flush()
        except BrokenPipeError:
            # click turns a broken pipe into exit 1, our "findings" code: step around it.
            raise OutputClosed from None
        return
    try:
        handle = open(path, "wb" if binary else "w", encoding=None if binary else "utf-8")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"{path}: cannot write ({exc.strerror})") from None
    with handle:
        yield handle


def _check_output(path: str | None) -> None:
    """Fail before the capture is read when the output file cannot be made."""
    if path is None or path == "-":
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"{path}: cannot write (no folder {folder})")
    if Path(path).is_dir():
        raise UsageError(f"{path}: cannot write (it is a folder)")


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
            type=click.Choice(["info", "low", "medium", "high", "critical"]),
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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--output", "-o", default=None, help="Write to this file instead of stdout.")
@_flow_options
@click.option(
    "--payload/--no-payload", default=False, help="Include payload bytes (base64) in JSON and CSV."
)
@click.option("--sha256/--no-sha256", default=False, help="Hash each capture as it is read.")
@_filter_options(judged=False)
def flows(
    captures: tuple[str, ...],
    fmt: str,
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

    filters = _filters(filter_params, judged=False)
    _check_output(output)
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


SEVERITY_CHOICES = ["info", "low", "medium", "high", "critical", "never"]


@cli.command()
@click.argument("captures", nargs=-1, required=True)
@click.option("--site", "site_path", default=None, help="site.yaml: roles, ports, security mode.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(AUDIT_FORMATS)),
    default="table",
    show_default=True,
    help="Output format.",
)
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
    fmt: str,
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

    if fail_on_new and baseline_path is None:
        raise UsageError("--fail-on-new needs --baseline")
    filters = _filters(filter_params, judged=True)
    _check_output(output)
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
    write = audit_writer(fmt)
    with _output(output, binary=False) as out:
        terminal = out is sys.stdout and sys.stdout.isatty()
        color = terminal and "NO_COLOR" not in os.environ and fmt == "table"
        width = shutil.get_terminal_size().columns if terminal else None  # COLUMNS wins
        write(result, out, ReportOptions(color=color, table=table_choice, width=width))
    return 1 if severity_at_least(result, fail_on, new_only=fail_on_new) else 0


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--output", "-o", default=None, help="Write to this file instead of stdout.")
@_flow_options
def hosts(
    captures: tuple[str, ...],
    site_path: str | None,
    host: str | None,
    fmt: str,
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

    address = parse_host(host) if host is not None else None
    _check_output(output)
    site = load_site(site_path) if site_path else None
    table = _read_captures(captures, engine, payload_bytes, idle_timeout, False, True)
    result = audit(table, site)
    with _output(output, binary=False) as out:
        write_hosts(result, out, fmt, address)


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
def verify(report: str) -> int:
    """Re-hash the captures and files a JSON report names: exit 0 if all still match, else 1."""
    from flowaudit.baseline import load_report
    from flowaudit.evidence import verified, verify_report

    checks = verify_report(load_report(report), Path(report))
    for check in checks:
        click.echo(check.line)
    good = verified(checks)
    click.echo(f"{report}: evidence {'matches' if good else 'does NOT match'}")
    return 0 if good else 1


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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--output", "-o", default=None, help="Write to this file instead of stdout.")
def matrix(site_path: str | None, fmt: str, output: str | None) -> None:
    """Print the expected communications in force (one rule per row of the ports page)."""
    from flowaudit.report.matrix import write_matrix

    with _output(output, binary=False) as out:
        write_matrix(site_path, fmt, out)


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
        _quick_exit(result if isinstance(result, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _stderr_line(f"error: {exc.format_message()}")
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _stderr_line("aborted")
        sys.exit(130)
    except FlowauditError as exc:
        _stderr_line(f"error: {exc}")
        sys.exit(exc.exit_code)
    except (OutputClosed, BrokenPipeError):
        # The reader of our output went away (e.g. `| head`): not an error of ours.
        os._exit(0)
    except KeyboardInterrupt:
        _stderr_line("interrupted")
        sys.exit(130)
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
