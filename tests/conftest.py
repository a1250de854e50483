"""Shared fixtures: where the real corpus is, and whether tshark (the oracle) is here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def corpus_dir() -> Path:
    """The corpus folder: ``FLOWAUDIT_CORPUS``, else ``../shared/corpus`` beside the repo."""
    return Path(os.environ.get("FLOWAUDIT_CORPUS", REPO.parent / "shared" / "corpus"))


def corpus_files() -> list[Path]:
    folder = corpus_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap")
    )


@pytest.fixture(scope="session")
def corpus() -> Path:
    folder = corpus_dir()
    if not folder.is_dir():
        if "FLOWAUDIT_CORPUS" in os.environ:
            pytest.fail(f"FLOWAUDIT_CORPUS={folder} is not a folder")
        pytest.skip(f"no corpus at {folder}")
    return folder


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is required in CI (the oracle); .ci/run installs it")
        pytest.skip("tshark not installed")
    return path
