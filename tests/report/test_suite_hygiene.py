"""The test suite itself: under CI no test vanishes for want of an input, and a run leaves no
cache or other new file in the repository (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CACHE_VARIABLES, REPO, tree_files

# A test parametrised over the corpus, and one that takes the corpus folder, run by a pytest of
# their own with the repository's conftest hook and fixture.
CORPUS_CONFTEST = "from tests.conftest import corpus, pytest_runtest_setup  # noqa: F401\n"
CORPUS_TESTS = """
import pytest

from tests.conftest import corpus_files


@pytest.mark.parametrize("capture", corpus_files(), ids=lambda path: path.name)
def test_each_capture(capture):
    assert capture.is_file()


def test_the_folder(corpus):
    assert corpus.is_dir()
"""


def run_corpus_tests(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CORPUS_CONFTEST)
    (tmp_path / "test_corpus_here.py").write_text(CORPUS_TESTS)
    (tmp_path / "empty").mkdir()
    environment = {
        **os.environ,
        "FLOWAUDIT_CORPUS": str(tmp_path / "empty"),
        "PYTHONPATH": str(REPO),
    }
    environment.pop("CI", None)
    if ci is not None:
        environment["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_empty_corpus_fails_the_corpus_tests_in_ci(tmp_path: Path) -> None:
    done = run_corpus_tests(tmp_path, "true")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    # the parametrised test fails at its setup, so does the corpus fixture
    assert "2 errors" in done.stdout, done.stdout
    assert "skipped" not in done.stdout and "passed" not in done.stdout
    assert f"no corpus capture in {tmp_path / 'empty'}" in done.stdout


def test_an_empty_corpus_skips_the_corpus_tests_elsewhere(tmp_path: Path) -> None:
    done = run_corpus_tests(tmp_path, None)
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "2 skipped" in done.stdout, done.stdout
    assert "got empty parameter set" in done.stdout and "no corpus capture in" in done.stdout


def test_caches_are_kept_out_of_the_repository() -> None:
    import hypothesis.configuration

    for variable in CACHE_VARIABLES:
        assert not Path(os.environ[variable]).resolve().is_relative_to(REPO), variable
    # hypothesis reads its folder when first used: conftest set it early enough
    examples = hypothesis.configuration.storage_directory("examples", intent_to_write=False)
    assert not examples.path.resolve().is_relative_to(REPO)


def test_pytest_writes_no_cache(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.is_blocked("cacheprovider")


def test_new_files_of_a_run_are_found_but_python_bytecode(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "module.py").write_text("")
    before = tree_files(tmp_path)
    (tmp_path / "pkg" / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "pkg" / "__pycache__" / "module.update-1.py311.nbi").write_bytes(b"")  # numba's
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "index").write_bytes(b"")
    (tmp_path / ".hypothesis" / "examples").mkdir(parents=True)
    (tmp_path / ".hypothesis" / "examples" / "a").write_bytes(b"")
    assert sorted(tree_files(tmp_path) - before) == [
        ".hypothesis/examples/a",
        "pkg/__pycache__/module.update-1.py311.nbi",
    ]
