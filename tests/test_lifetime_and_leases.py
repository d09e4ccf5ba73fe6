"""Unit tests: processes that end with their parent, shard leases, and which errors Prefect retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.errors import ConfigError, ModelError, StorageError
from tasks.shard.lease import Heartbeat, LeaseWatch
from tasks.storage import open_store
from tasks.storage.layout import lease_key
from tests.prefect_servers import alive

REPO = Path(__file__).resolve().parent.parent

# A parent that starts a child (which asks to die with it) and prints the child's pid, then sleeps.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """
import time
from tasks.lifetime import die_with_parent
die_with_parent(prctl={prctl})
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("prctl", [True, False], ids=["prctl", "watchdog"])
def test_a_child_ends_when_its_parent_is_killed(prctl: bool) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD.format(prctl=prctl)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(1.5)  # the child has imported and asked
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), "the child outlived its SIGKILLed parent"
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_a_heartbeat_renews_the_lease_and_the_watch_sees_it_go_quiet(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    watch = LeaseWatch(store, "run-x", timeout=0.5)
    assert not watch.stale(3)  # no lease yet: the clock starts now
    with Heartbeat(store, "run-x", 3, every=0.05, flow_run_id="abc") as beat:
        for _ in range(10):
            time.sleep(0.1)
            assert not watch.stale(3)  # it keeps changing
    lease = json.loads(store.get(lease_key("run-x", 3)))
    assert lease["flow_run_id"] == "abc" and lease["pid"] == os.getpid() and lease["beat"] == beat.beats >= 5
    watch.stale(3)  # the first look after the end may still see the last beat as new
    time.sleep(0.7)
    assert watch.stale(3)  # unchanged for longer than the timeout
    watch.restart(3)
    assert not watch.stale(3)  # a new attempt gets the whole timeout again


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (StorageError("s3://b/k: cannot write: cannot reach the S3 endpoint", transient=True), True),
        (StorageError("s3://b/k: cannot write: access denied"), False),
        (ModelError("voice file is corrupt"), False),
        (ConfigError("batch_size: wrong type"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_transient_errors_are_retried_by_prefect(error: Exception, retried: bool) -> None:
    from prefect.states import Failed

    from flows.shard_flow import _transient_only

    assert _transient_only(None, None, Failed(data=error)) is retried


def test_a_stale_attempts_beats_do_not_keep_the_new_attempt_alive(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    watch = LeaseWatch(store, "run-x", timeout=0.5)
    assert not watch.stale(4, "new")  # nothing seen yet: the clock starts now
    with Heartbeat(store, "run-x", 4, every=0.05, token="old"):  # the superseded attempt, still beating
        deadline = time.monotonic() + 2.0
        while not watch.stale(4, "new"):
            assert time.monotonic() < deadline, "the old attempt's beats kept the new one looking alive"
            time.sleep(0.05)
        assert not watch.stale(4, None)  # "some process" is alive: what the parent must not go by
    with Heartbeat(store, "run-x", 4, every=0.05, token="new"):
        watch.restart(4)
        for _ in range(10):
            assert not watch.stale(4, "new")
            time.sleep(0.1)


@pytest.mark.parametrize(
    ("make", "unavailable"),
    [
        (lambda: __import__("httpx").ConnectError("refused"), True),
        (lambda: __import__("httpx").ReadTimeout("slow"), True),
        (lambda: _status_error(503), True),
        (lambda: _status_error(429), True),
        (lambda: _status_error(404), False),
        (lambda: _status_error(422), False),
        (lambda: ValueError("a bug"), False),
        (lambda: _caused_by(__import__("httpx").ConnectError("refused")), True),
    ],
    ids=["refused", "timeout", "503", "429", "404", "422", "bug", "wrapped"],
)
def test_which_errors_mean_the_prefect_server_is_away(make, unavailable: bool) -> None:  # type: ignore[no-untyped-def]
    from flows.server_errors import server_unavailable

    assert server_unavailable(make()) is unavailable


def _status_error(code: int) -> Exception:
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    request = httpx.Request("POST", "http://127.0.0.1:4200/api/task_runs/")
    response = httpx.Response(code, request=request)
    return PrefectHTTPStatusError.from_httpx_error(httpx.HTTPStatusError("x", request=request, response=response))


def _caused_by(cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as exc:
            raise RuntimeError("engine could not set the final state") from exc
    except RuntimeError as outer:
        return outer


def test_a_busy_server_is_asked_again_sooner_than_a_gone_one_and_many_busy_answers_are_said_plainly() -> None:
    import httpx

    from flows.server_errors import Backoff, BusyWatch

    busy, gone = _status_error(503), httpx.ConnectError("refused")
    backoff = Backoff()
    first_busy = [backoff.next(busy) for _ in range(4)]
    assert 0.15 <= first_busy[0] <= 0.25 and 1.2 <= first_busy[3] <= 2.0  # 0.2 s, doubling (jittered ±25%)
    assert 0.75 <= Backoff().next(gone) <= 1.25
    assert max(Backoff().next(gone) for _ in range(50)) <= 1.25

    class Logger:
        def __init__(self) -> None:
            self.said: list[str] = []

        def warning(self, message: str, *args: object) -> None:
            self.said.append(message % args)

    logger = Logger()
    watch = BusyWatch(logger, per_minute=5)
    for _ in range(4):
        watch.saw(busy)
        watch.saw(gone)  # a refused connection is an outage, not a busy database
    assert logger.said == []
    for _ in range(3):
        watch.saw(busy)
    assert len(logger.said) == 1 and "PostgreSQL" in logger.said[0] and "5 times" in logger.said[0]
