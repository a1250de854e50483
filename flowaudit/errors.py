"""The one exception tree of flowaudit and the exit codes it maps to (DESIGN.md, principle 6).

Exit codes: 0 clean, 1 findings at or above ``--fail-on``, 2 bad input or usage, 130 interrupted.
Every error raised on purpose is a ``FlowauditError``; its message is the one line the CLI
prints on stderr, so it names what is wrong and where.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


class FlowauditError(Exception):
    """Base of every error flowaudit raises on purpose."""

    exit_code = EXIT_BAD_INPUT


class UsageError(FlowauditError):
    """The command line asks for something that cannot be done."""


class InputError(FlowauditError):
    """An input file cannot be used at all."""


class CaptureFormatError(InputError):
    """A file is not a capture flowaudit can read (bad magic, bad header, unknown link type)."""


class EngineError(FlowauditError):
    """An optional engine (pyshark/tshark) is missing or failed."""
