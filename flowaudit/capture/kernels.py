"""Which implementation of the serial loops runs: the C extension, or the Python reference.

The loops that touch every record and packet (walking pcap/pcapng records, decoding headers,
folding packets into flows) are written twice. ``flowaudit/_kernels.c`` is built into
``flowaudit._kernels`` when the package is installed (setup.py; a C compiler and Python's
headers are all it needs) and is what normally runs: nothing compiles at run time, and
importing it costs nothing measurable. The Python functions in ``walk.py``, ``decode.py`` and
``flow_kernel.py`` are the specification the C follows line for line, and the fallback where
the extension is missing (no compiler at install) or ``FLOWAUDIT_PURE_PYTHON=1`` asks for it:
every command then works the same, about a hundred times slower per packet.
"""

from __future__ import annotations

import os
from types import ModuleType


def python_asked_for() -> bool:
    """Whether FLOWAUDIT_PURE_PYTHON asks for the Python loops."""
    return os.environ.get("FLOWAUDIT_PURE_PYTHON", "") not in ("", "0")


def _load() -> ModuleType | None:
    if python_asked_for():
        return None
    try:
        from flowaudit import _kernels
    except ImportError:
        return None
    return _kernels


compiled: ModuleType | None = _load()

# Captures larger than this make the CLI say once that the pure-Python loops are running.
SLOW_WARNING_BYTES = 16 * 1024 * 1024


def slow_warning() -> str | None:
    """What to tell a user whose captures will be read by the Python loops, if that is so."""
    if compiled is not None:
        return None
    if python_asked_for():
        return "FLOWAUDIT_PURE_PYTHON is set: reading with the Python loops (slow)"
    return (
        "the compiled kernels (flowaudit._kernels) are not installed, so captures are read by "
        "the Python loops, about 100x slower; reinstall with a C compiler present"
    )
