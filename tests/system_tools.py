"""The system tools the test suite uses beyond Python packages, found or installed with Debian's apt-get.

`make test` runs `python3 tests/system_tools.py --install` first: as root with apt-get it installs what is missing;
otherwise it prints the one command to run and goes on, and the tests that need a missing tool (marked
`@pytest.mark.needs("ffmpeg", ...)`) are skipped, listed by name at the end of the run. Under `CI=true` such a
skip is a failure (tests/conftest.py): CI must test everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this file runs with the system's python3 before any venv exists: pytest only in the hooks
    import pytest

# tool -> the Debian package that brings it, and what it is for.
TOOLS: dict[str, tuple[str, str]] = {
    "ffmpeg": ("ffmpeg", "M4B and Opus audiobooks (assemble)"),
    "ffprobe": ("ffmpeg", "reading assembled audiobooks back"),
    "chromium": ("chromium", "rendering the run report and photographing the Prefect UI"),
    "initdb": ("postgresql", "a PostgreSQL database for the Prefect server that holds fan-out"),
    "buildah": ("buildah", "building the container images without a Docker engine"),
    "debootstrap": ("debootstrap", "the Debian base of the images (no image registry is needed)"),
    "podman": ("podman", "running the container stack"),
    "epubcheck": ("epubcheck", "validating the read-along EPUB 3 that assemble --format epub makes"),
    "runc": ("runc", "podman's runtime here (crun cannot set rlimits on this kernel's cgroups)"),
}
_NEEDS = "needs system tools"  # the start of a skip's reason when a tool is missing (listed at the end)
_POSTGRES = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


def find(tool: str) -> str | None:
    """The path of a tool, or None (Debian keeps PostgreSQL's programs under /usr/lib/postgresql/N/bin)."""
    if tool == "initdb":
        for folder in _POSTGRES:
            if (folder / tool).exists():
                return str(folder / tool)
    return shutil.which(tool)


def missing(tools: tuple[str, ...] | list[str] = tuple(TOOLS)) -> list[str]:
    return [tool for tool in tools if find(tool) is None]


def install_command(tools: list[str]) -> str:
    packages = sorted({TOOLS.get(tool, (tool, ""))[0] for tool in tools})
    return f"sudo apt-get update && sudo apt-get install -y {' '.join(packages)}"


def install() -> int:
    """Install the missing tools where this can (root with apt-get); else say the command. Never fails the caller:
    the tests that need a missing tool are skipped and named."""
    absent = missing()
    if not absent:
        return 0
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"system tools missing: {', '.join(absent)}; the tests that need them will be skipped. Install them:")
        print(f"  {install_command(absent)}")
        return 0
    packages = sorted({TOOLS[tool][0] for tool in absent})
    print(f"installing {' '.join(packages)} (apt-get) for the tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str) -> bool:
        return subprocess.run(["apt-get", *args], stdout=subprocess.DEVNULL, env=env).returncode == 0

    done = apt_get("update", "-qq") and apt_get("install", "-y", "-qq", *packages)
    still = missing()
    if not done or still:
        print(f"could not install {', '.join(still) or 'everything'}; those tests will be skipped", file=sys.stderr)
    return 0


# The marker, as pytest hooks (tests/conftest.py imports them).

MARKER = (
    "needs(tool, ...): system tools the test runs (tests/system_tools.py): skipped without them, failed under CI=true"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.needs("ffmpeg", ...)`: skipped when a tool is missing (`make test` installs them where it can:
    tests/system_tools.py), a failure under CI=true, where everything must be tested."""
    import pytest

    for marker in item.iter_markers("needs"):
        absent = missing(marker.args)
        if absent:
            reason = f"{_NEEDS} {', '.join(absent)} (install: {install_command(absent)})"
            if os.environ.get("CI", "").lower() in ("true", "1"):
                pytest.fail(f"CI=true: {reason}", pytrace=False)
            pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The tests skipped for a missing system tool, by name, and the command that installs what they need."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if _NEEDS in str(getattr(r, "longrepr", ""))]
    if not skipped:
        return
    tools = sorted({t.strip() for r in skipped for t in str(r.longrepr).split(_NEEDS, 1)[1].split(" (")[0].split(",")})
    terminalreporter.section("skipped: system tools missing", sep="=", yellow=True)
    for report in skipped:
        terminalreporter.line(f"  {report.nodeid}")
    terminalreporter.line(f"{len(skipped)} tests need {', '.join(tools)}: {install_command(tools)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--install", action="store_true", help="install what is missing (root, apt-get)")
    args = parser.parse_args()
    if args.install:
        sys.exit(install())
    for tool, (package, purpose) in TOOLS.items():
        print(f"{tool:16}{find(tool) or 'missing (' + package + ')':40}{purpose}")


if __name__ == "__main__":
    main()
