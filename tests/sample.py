"""The bundled sample (``samples/``) and one way to run the command in-process on it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner, Result

from flowaudit.cli import cli
from tests.conftest import REPO

SAMPLE = REPO / "samples" / "configmgr_site.pcap"
SITE = REPO / "samples" / "site.yaml"


def invoke(*args: str) -> Result:
    """``flowaudit ARGS`` through click's runner; its exit code is ``result.return_value``."""
    return CliRunner().invoke(cli, list(args), standalone_mode=False, catch_exceptions=False)


def run_module(
    *args: str,
    cwd: Path,
    stdin: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python -m flowaudit ARGS`` in its own process, as a user meets it: exit code, stdout
    and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "flowaudit", *args],
        cwd=cwd,
        stdin=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
