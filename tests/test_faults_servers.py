"""Faults survived on purpose, servers going away mid-run: the S3 server SIGKILLed and started again 20 s later on
the same data, the Prefect server a run reports to restarted. (A worker's Prefect server stopped under a
dispatched run: test_server_outage.py. SIGKILL at each commit point and a full disk: test_faults.py.)

Either the run rides the fault out or it exits with a clear error; either way the same command run again
exits 0 with every planned chunk exactly once and nothing that stood before it written again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_PENDING, StorageError
from tests.helpers import (
    KEY_ID,
    REPO,
    SECRET,
    assert_exactly_once,
    assert_nothing_torn,
    assert_unchanged,
    check_complete,
    committed,
    logbook,
    new_bucket,
    objects,
)
from tests.prefect_servers import spawn, start_prefect_server
from tests.s3_servers import free_port, start_weed

pytestmark = pytest.mark.slow


def _clean_exit(code: int, log: str, expected: tuple[int, ...]) -> None:
    assert code in expected, f"exit {code}:\n{log}"
    assert "Traceback" not in log and "unexpected error" not in log, log


def test_the_s3_server_killed_and_back_20_s_later_loses_and_rewrites_nothing(tmp_path: Path) -> None:
    port = free_port()
    server = start_weed(tmp_path / "weed", port)
    try:
        bucket = new_bucket(server.endpoint)
        source = tmp_path / "log.txt"
        source.write_text(logbook(24))
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "VOXBATCH_FAULTS")}
        env |= {"PYTHONWARNINGS": "ignore", "AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        out = f"s3://{bucket}/out"
        args = [sys.executable, "-m", "flows.cli", "run", str(source), "--out", out, "--backend", "tone"]
        args += ["--shard-size", "6"]
        run = spawn(args, env | {"VOXBATCH_FAULTS": "batch_delay=0.3"}, tmp_path / "first.log", cwd=REPO)
        try:
            deadline = time.monotonic() + 180
            while sum(k.startswith("out/audio/") for k in objects(server.endpoint, bucket, "out/")) < 3:
                assert time.monotonic() < deadline and run.process.poll() is None, run.log()
                time.sleep(0.2)
            assert run.process.poll() is None, "the run ended before the server could be killed under it"
            server.kill()  # a crash: no clean shutdown
            time.sleep(20)
            server = start_weed(tmp_path / "weed", port)  # the same data, the same port
            code = run.process.wait(timeout=300)
        finally:
            run.stop()
        print(f"the run ended {code} across the S3 outage:\n{run.log(1500)}")  # which way it went, for the log (-rP)
        # It rode the outage out on retries, or gave up naming the endpoint (and never a secret).
        _clean_exit(code, run.log(20000), (EXIT_OK, EXIT_ENVIRONMENT))
        if code == EXIT_ENVIRONMENT:
            assert f"cannot reach the S3 endpoint {server.endpoint}" in run.log(20000), run.log()
        before = {k: (o["ETag"], o["LastModified"]) for k, o in objects(server.endpoint, bucket, "out/").items()
                  if k.startswith(("out/audio/", "out/manifests/"))}  # fmt: skip
        assert before, "nothing was stored before the kill"
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
        _clean_exit(again.returncode, again.stdout + again.stderr, (EXIT_OK,))
        printed = run.log(1 << 20) + again.stdout + again.stderr
        assert SECRET not in printed and KEY_ID not in printed
        after = objects(server.endpoint, bucket, "out/")
        assert {k: (after[k]["ETag"], after[k]["LastModified"]) for k in before} == before  # none rewritten
        check_complete(server.endpoint, bucket, "out/", 24)
    finally:
        server.stop()


def test_storage_unreachable_at_the_flows_own_calls_is_waited_out_like_a_shards(
    tmp_path: Path, prefect_api: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage at the flow's own storage calls (opening the output, consolidation, the summary), not only in a
    shard's: each waits and tries again as a shard task does (here with short waits); before, the run gave up at
    once with exit 4 where a shard meeting the same outage rode it out."""
    import flows.corpus as corpus

    monkeypatch.setattr(corpus, "STORAGE_RETRY_DELAYS", [0.05, 0.05, 0.05])
    calls: dict[str, int] = {}

    def flaky(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] <= 2:  # the endpoint away twice, back the third time
                raise StorageError("s3://b/out/: cannot reach the S3 endpoint http://127.0.0.1:9", transient=True)
            return real(*args, **kwargs)

        return call

    for name in ("open_store", "consolidate", "write_summary"):
        monkeypatch.setattr(corpus, name, flaky(name, getattr(corpus, name)))
    source = tmp_path / "log.txt"
    source.write_text(logbook(8))
    settings = {"synthesis": {"backend": "tone"}, "run": {"shard_size": 4}}
    summary = corpus.corpus_flow([str(source)], str(tmp_path / "out"), settings)
    assert calls == {"open_store": 3, "consolidate": 3, "write_summary": 3}
    assert not summary["pending"], summary
    assert_exactly_once(tmp_path / "out", 8)


def test_the_prefect_server_restarted_under_an_in_process_run_loses_nothing(tmp_path: Path) -> None:
    """PREFECT_API_URL set, no --dispatch: the shards run in the command's own process, reporting to a server
    that is stopped mid-run and started again on its database."""
    server = start_prefect_server(tmp_path / "home")
    source = tmp_path / "log.txt"
    source.write_text(logbook(24))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "flows.cli", "run", str(source), "--out", str(out), "--backend", "tone"]
    args += ["--shard-size", "4"]
    try:
        env = server.env(PYTHONWARNINGS="ignore")
        run = spawn(args, env | {"VOXBATCH_FAULTS": "batch_delay=0.3"}, tmp_path / "first.log", cwd=REPO)
        try:
            deadline = time.monotonic() + 180
            while not list(out.glob("manifests/*/shard-*.parquet")):  # under way: a shard committed
                assert time.monotonic() < deadline and run.process.poll() is None, run.log()
                time.sleep(0.2)
            assert run.process.poll() is None, "the run ended before the server could be stopped under it"
            server.stop()
            time.sleep(3)
            server = server.restart()
            code = run.process.wait(timeout=300)
        finally:
            run.stop()
        print(
            f"the run ended {code} across the Prefect restart:\n{run.log(1500)}"
        )  # which way it went, for the log (-rP)
        # It rode the restart out, or stopped saying the server went away and to run it again.
        _clean_exit(code, run.log(20000), (EXIT_OK, EXIT_PENDING))
        if code == EXIT_PENDING:  # voxbatch's one line, not Prefect's services' failed sends
            assert "run the same command again" in run.log(), run.log()
            assert "Error logging to API" not in run.log(20000), run.log()
            assert "failed to process item" not in run.log(20000), run.log()
        before = committed(out)
        assert before, "nothing was committed before the restart"
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
        _clean_exit(again.returncode, again.stdout + again.stderr, (EXIT_OK,))
    finally:
        server.stop()
    assert_unchanged(before, out)
    assert_nothing_torn(out)
    assert_exactly_once(out, 24)
