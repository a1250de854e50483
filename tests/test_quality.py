"""The test command also runs the linters configured in pyproject.toml (DESIGN.md, style)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _tool(name: str) -> list[str]:
    """A linter of the test extras (pip install '.[test]'), always installed with them."""
    return [sys.executable, "-m", name]


def test_ruff_lint_is_clean() -> None:
    result = subprocess.run(
        [*_tool("ruff"), "check", "flowaudit", "tests", "benchmarks", "samples"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([*_tool("mypy")], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_subpackage_ships_in_the_wheel() -> None:
    """A package folder missing from pyproject's list works in a checkout and fails installed
    (``pip install .`` leaves it out)."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(path.parent.relative_to(REPO).parts)
        for path in (REPO / "flowaudit").rglob("__init__.py")
    }
    assert found - listed == set()
