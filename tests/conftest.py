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
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="voxbatch-test-cache-")  # learned budgets, model cache
os.environ.pop("VOXBATCH_FAULTS", None)
# Voices built by `voxbatch voices install` (zh-baker: a minute or two): a folder of this session's, unless the
# developer points VOXBATCH_VOICES at one that holds them already (the install is then a no-op).
os.environ.setdefault("VOXBATCH_VOICES", tempfile.mkdtemp(prefix="voxbatch-test-voices-"))
# Hugging Face `datasets` (reading exports back): its cache in a temporary folder, and never the network.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="voxbatch-test-hf-")
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Every process the tests start inherits this mark; at the end none may be left running (see below).
_SESSION_MARK = f"VOXBATCH_TEST_SESSION={os.getpid()}-{os.urandom(4).hex()}"
os.environ["VOXBATCH_TEST_SESSION"] = _SESSION_MARK.split("=", 1)[1]

import pytest  # noqa: E402

from tasks.config import Settings, validate_settings  # noqa: E402

# `@pytest.mark.needs("ffmpeg", ...)`: skipped without the tool and listed at the end, failed under CI=true.
from tests.system_tools import pytest_configure, pytest_runtest_setup, pytest_terminal_summary  # noqa: E402, F401


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


# Seconds of each module's tests, measured on the 2-core development machine (2026-12-04, test
# times from a fresh clone's `make test`, set-up included where it is long), for the order
# below only (a module missing here goes after these): the longest first, so that with several workers none
# of them starts last and keeps the others waiting. The image build (about 6 CPU minutes) goes before them all.
_MODULE_CPU_SECONDS = {
    "test_prefect_production": 181, "test_bench": 130, "test_s3_runs": 180, "test_engine_e2e": 87,
    "test_backends_contract": 125, "test_asr": 80, "test_zh_voice": 66, "test_cli": 70, "test_server_outage": 64,
    "test_real_oom": 37, "test_run_e2e": 25, "test_assemble": 17, "test_piper_backend": 12, "test_kokoro_backend": 105,
    "test_status_and_readers": 12, "test_s3_servers": 10, "test_quality": 9, "test_tables_and_voices": 11,
    "test_corpora": 9, "test_server_database": 30, "test_faults": 58, "test_faults_servers": 108, "test_fuzz": 18,
    "test_hostile_inputs": 14, "test_results_streaming": 45, "test_review": 65, "test_asr_scoring": 3,
    "test_asr_books": 45, "test_container_stack": 150, "test_system_tools": 5, "test_cues": 2, "test_read_along": 20,
    "test_timing": 40, "test_japanese": 12, "test_kokoro_japanese": 90, "test_kokoro_torch": 25,
}  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules longest first, each in file order. `make test` hands whole modules to its workers in this order
    (--dist loadscope --no-loadscope-reorder: xdist would otherwise order them by their number of tests, which put
    the long few-test modules last and left one worker running them alone at the end).
    Tests marked gpu skip, saying so, on machines without CUDA (CI has none)."""

    # Where `make test` started the image check beside the install, its test only waits for it: last, not first.
    image_check = -1.0 if os.environ.get("VOXBATCH_IMAGE_CHECK") else 1e6

    def weight(item: pytest.Item) -> float:
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        return image_check if "container" in item.keywords else _MODULE_CPU_SECONDS.get(module, 0)

    items.sort(key=lambda item: -weight(item))  # stable: file order within a module
    if any("gpu" in item.keywords for item in items) and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU; none here")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def _leftover_processes() -> list[str]:
    """Processes other than this one whose environment carries this session's mark: what the tests left behind."""
    from pathlib import Path as _Path

    mark = _SESSION_MARK.encode()
    found = []
    for entry in _Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"pid {entry.name}: {cmdline[:200]}")
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process a test started is still running (a temporary API, a worker, a shard)."""
    import time as _time

    if not os.path.isdir("/proc"):
        return
    deadline = _time.monotonic() + 20  # processes told to stop a moment ago
    while (left := _leftover_processes()) and _time.monotonic() < deadline:
        _time.sleep(0.5)
    if left:
        print("\nvoxbatch tests left processes running:\n  " + "\n  ".join(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect API server (subprocess, temporary SQLite database) for the whole session."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # Flow heartbeats off: with them every flow call costs about 1 s at teardown (measured).
    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture(scope="session")
def api_url(prefect_api: None) -> str:
    """The session's Prefect API, for `voxbatch` commands that need not boot a temporary API each (about 5 s of
    CPU a run); the tests of that temporary API itself (runs killed, early shards, the image) leave this out."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise RuntimeError("the Prefect test harness gave no API URL")
    return str(url)


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


@pytest.fixture(scope="session")
def zh_baker() -> Path:
    """The Mandarin voice, installed once per session into $VOXBATCH_VOICES (a folder every test process of the
    session shares: the first to get here builds it, the others find it installed)."""
    from filelock import FileLock

    from tasks.backends import voice_install

    with FileLock(str(voice_install.voices_dir()) + ".lock"):
        return voice_install.install("zh-baker", log=lambda line: None)


@pytest.fixture(scope="session")
def tiny_vits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers import build_tiny_vits

    return build_tiny_vits(tmp_path_factory.mktemp("vits") / "tiny-vits")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible server (SeaweedFS `weed mini`) on 127.0.0.1; yields its endpoint URL.

    Every port it opens is a free one: its defaults include 8080, which Prefect's temporary API also takes.
    """
    from tests.s3_servers import free_port, start_weed

    server = start_weed(tmp_path_factory.mktemp("seaweedfs"), free_port())
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The standard AWS environment pointing at the test server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-never-printed")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from tasks.storage import s3_client

    s3_client.reset_client()  # the process's client was made for other settings
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A new, empty bucket on the test server."""
    import uuid

    import boto3

    name = "t-" + uuid.uuid4().hex[:12]
    boto3.client("s3").create_bucket(Bucket=name)
    return name
