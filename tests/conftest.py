"""Session-wide fixtures: an isolated Prefect home, a real Prefect API server, the real bundled voice."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Prefect reads its settings at import: isolate it before anything imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="voxbatch-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

from tasks.config import Settings, validate_settings  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE_EN = REPO / "data" / "sample" / "en" / "the-lighthouse.txt"


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect API server (subprocess, temporary SQLite database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def tone_settings() -> Settings:
    """Settings for the fast test-signal backend (no voice files needed)."""
    return validate_settings({"synthesis": {"backend": "tone"}})


@pytest.fixture(scope="session")
def joe_settings() -> Settings:
    return validate_settings({})


@pytest.fixture
def text_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a text file (str or bytes) under tmp_path and return its path."""

    def write(content: str | bytes, name: str = "input.txt") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return write
