"""What `make test` does on a machine without the system tools: the install step says the one command and goes
on; a test marked `needs(...)` is skipped and listed by name at the end, and fails under CI=true."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.system_tools import TOOLS, install_command

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent

NEEDY_TESTS = """
import pytest

@pytest.mark.needs("voxbatch-no-such-tool")
def test_needs_a_missing_tool():
    assert False, "must not run without its tool"

@pytest.mark.needs("sh")
def test_needs_a_present_tool():
    assert True

def test_needs_nothing():
    assert True
"""
CONFTEST = (
    "from tests.system_tools import pytest_configure, pytest_runtest_setup, pytest_terminal_summary  # noqa: F401\n"
)


def test_install_on_a_machine_without_the_tools_names_the_command_and_exits_zero(tmp_path: Path) -> None:
    """The script itself, with the system's python3 (no venv yet) and a PATH where none of the tools is, nor
    apt-get: it cannot install, so it prints the one command, and `make test` goes on."""
    empty = tmp_path / "bin"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-I", str(REPO / "tests" / "system_tools.py"), "--install"],
        env={"PATH": str(empty)}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the tests that need them will be skipped" in result.stdout
    command = result.stdout.splitlines()[-1].strip()
    assert command.startswith("sudo apt-get update && sudo apt-get install -y ")
    # Every package a missing tool needs, once each (initdb may still be found under /usr/lib/postgresql).
    packages = command.split("install -y ", 1)[1].split()
    assert len(packages) == len(set(packages))
    assert {"ffmpeg", "chromium", "buildah", "debootstrap", "podman", "runc"} <= set(packages)
    assert set(packages) <= {package for package, _ in TOOLS.values()}


def test_install_command_names_each_package_once() -> None:
    assert (
        install_command(["ffprobe", "ffmpeg", "runc"]) == "sudo apt-get update && sudo apt-get install -y ffmpeg runc"
    )


def test_a_test_needing_a_missing_tool_is_skipped_and_listed_at_the_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_needy=NEEDY_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*skipped: system tools missing*",
            "  test_needy.py::test_needs_a_missing_tool",
            "1 tests need voxbatch-no-such-tool: sudo apt-get update && sudo apt-get install -y voxbatch-no-such-tool",
        ]
    )


def test_under_ci_a_test_needing_a_missing_tool_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_needy=NEEDY_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)  # failed in its set-up: an error, and the run exits non-zero
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*CI=true: needs system tools voxbatch-no-such-tool*"])
    assert "skipped: system tools missing" not in result.stdout.str()
