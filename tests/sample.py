"""The bundled sample (``samples/``) and one way to run the command in-process on it."""

from __future__ import annotations

from click.testing import CliRunner, Result

from flowaudit.cli import cli
from tests.conftest import REPO

SAMPLE = REPO / "samples" / "configmgr_site.pcap"
SITE = REPO / "samples" / "site.yaml"


def invoke(*args: str) -> Result:
    """``flowaudit ARGS`` through click's runner; its exit code is ``result.return_value``."""
    return CliRunner().invoke(cli, list(args), standalone_mode=False, catch_exceptions=False)
