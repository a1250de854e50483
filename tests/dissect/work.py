"""How much Python a reader runs on some bytes: the lines of flowaudit's code it executes.

A count, not a time: the same on any machine and under any load, so that a test can hold a
reader to work that grows with its input and no faster (bytes searched by ``re`` or
``bytes.find`` run in C and count nothing; a Python loop over the bytes counts per turn).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import flowaudit

PACKAGE = str(Path(flowaudit.__file__).resolve().parent)


def lines_run(function: Callable[..., Any], *args: Any, within: str = "") -> int:
    """The lines of the flowaudit package (of its subpackage ``within``, say "stream") that
    ``function(*args)`` executes."""
    count = 0
    prefix = str(Path(PACKAGE, within)) if within else PACKAGE

    def in_frame(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return in_frame

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        return in_frame if frame.f_code.co_filename.startswith(prefix) else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        function(*args)
    finally:
        sys.settrace(previous)
    return count
