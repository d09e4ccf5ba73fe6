"""Whole runs against a real S3 server (SeaweedFS): output and input on S3, SIGKILL and resume, the server
stopped mid-run, 503 SlowDown retried, and no credential in any output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tasks.errors import EXIT_ENVIRONMENT, EXIT_OK
from tests.helpers import (
    KEY_ID,
    REPO,
    SAMPLE_EN,
    SECRET,
    check_complete,
    client,
    logbook,
    new_bucket,
    objects,
    read_parquet,
)
from tests.prefect_servers import wait_until_gone
from tests.s3_servers import SlowDownProxy, free_port, start_weed

pytestmark = pytest.mark.slow


def s3_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        **extra,
    }


def voxbatch(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def test_run_from_s3_to_s3_reads_back_and_never_shows_a_secret(s3_server: str, tmp_path: Path, api_url: str) -> None:
    bucket = new_bucket(s3_server)
    c = client(s3_server)
    c.put_object(Bucket=bucket, Key="inbox/the-lighthouse.txt", Body=SAMPLE_EN.read_bytes())
    c.put_object(Bucket=bucket, Key="inbox/..%2F..%2Fetc%2Fpasswd.txt", Body=b"A short note about keys.")
    c.put_object(Bucket=bucket, Key="inbox/我的 书.txt", Body=b"The book has a name in Chinese.")
    c.put_object(Bucket=bucket, Key="inbox/cover.jpg", Body=b"\xff\xd8 not text")  # not a text suffix: ignored
    env = s3_env(s3_server, PREFECT_API_URL=api_url)
    out = f"s3://{bucket}/books/"
    result = voxbatch(env, "run", f"s3://{bucket}/inbox/", "--out", out, "--shard-size", "4")
    assert result.returncode == EXIT_OK, result.stderr
    assert "s3://" in result.stdout and "run manifest" in result.stdout

    status = voxbatch(env, "status", out)
    assert status.returncode == EXIT_OK, status.stdout + status.stderr
    assert "pending 0" in status.stdout

    keys = objects(s3_server, bucket, "books/")
    plan_rows = read_parquet(s3_server, bucket, next(k for k in keys if k.endswith("/plan.parquet")))
    rows = check_complete(s3_server, bucket, "books/", len(plan_rows))
    assert set(rows["source"]) == {
        f"s3://{bucket}/inbox/the-lighthouse.txt",
        f"s3://{bucket}/inbox/..%2F..%2Fetc%2Fpasswd.txt",
        f"s3://{bucket}/inbox/我的 书.txt",
    }
    # Keys come from ids only: the odd names steer nothing.
    assert all(k.startswith(("books/audio/", "books/manifests/", "books/runs/")) for k in keys)
    audio_key = rows["audio_uri"][0].removeprefix(f"s3://{bucket}/")
    head = c.head_object(Bucket=bucket, Key=audio_key)
    assert head["ContentType"] == "audio/flac" and head["ContentLength"] == rows["audio_bytes"][0]

    # No credential in anything voxbatch wrote or printed.
    everything = result.stdout + result.stderr + status.stdout + status.stderr
    for key in keys:
        if not key.startswith("books/audio/"):
            everything += c.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
    assert SECRET not in everything and KEY_ID not in everything


def test_killed_run_on_s3_resumes_without_rewriting_or_losing_anything(s3_server: str, tmp_path: Path) -> None:
    bucket = new_bucket(s3_server)
    source = tmp_path / "log book.txt"
    source.write_text(logbook(30))
    config = tmp_path / "fast-checkpoints.toml"
    config.write_text("[run]\ncheckpoint_seconds = 0.5\nshard_size = 10\n")
    env = s3_env(s3_server)
    out = f"s3://{bucket}/out"
    args = [sys.executable, "-m", "flows.cli", "run", str(source), "--out", out, "--config", str(config)]
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while sum(k.startswith("out/audio/") for k in objects(s3_server, bucket, "out/")) < 14:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no audio appeared"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # voxbatch only: no cleanup runs in it
        proc.wait()
    # Its temporary Prefect API (and anything else it started) must not outlive it.
    left = wait_until_gone(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes outlived the killed run: {left}"
    before = {k: (o["ETag"], o["LastModified"]) for k, o in objects(s3_server, bucket, "out/audio/").items()}
    keys = objects(s3_server, bucket, "out/")
    recorded = len(
        set().union(
            *(
                read_parquet(s3_server, bucket, k)["chunk_id"]
                for k in keys
                if k.startswith("out/manifests/") or "/progress/" in k
            )
        )
    )
    assert recorded >= 10  # shard 0 committed, or checkpointed

    result = voxbatch(env, "run", str(source), "--out", out, "--config", str(config))
    assert result.returncode == EXIT_OK, result.stderr
    synthesized = int(result.stdout.split("synthesized now ")[1].split(",")[0])
    assert synthesized <= 30 - recorded  # what a manifest or checkpoint recorded is not synthesized again
    after = objects(s3_server, bucket, "out/audio/")
    assert {k: (after[k]["ETag"], after[k]["LastModified"]) for k in before} == before  # nothing rewritten
    check_complete(s3_server, bucket, "out/", 30)


def test_server_stopped_mid_run_fails_clearly_and_a_rerun_completes(tmp_path: Path) -> None:
    port = free_port()
    server = start_weed(tmp_path / "weed", port)
    try:
        bucket = new_bucket(server.endpoint)
        source = tmp_path / "log.txt"
        source.write_text(logbook(24))
        env = s3_env(server.endpoint, AWS_MAX_ATTEMPTS="2")
        out = f"s3://{bucket}/out"
        args = [sys.executable, "-m", "flows.cli", "run", str(source), "--out", out, "--shard-size", "6"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        deadline = time.monotonic() + 240
        while sum(k.startswith("out/audio/") for k in objects(server.endpoint, bucket, "out/")) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        server.stop()
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == EXIT_ENVIRONMENT, stdout + stderr
        assert "Traceback" not in stderr
        assert f"cannot reach the S3 endpoint {server.endpoint}" in stderr and bucket in stderr
        assert SECRET not in stdout + stderr

        server = start_weed(tmp_path / "weed", port)  # same data, same port
        result = voxbatch(env, "run", str(source), "--out", out, "--shard-size", "6")
        assert result.returncode == EXIT_OK, result.stderr
        check_complete(server.endpoint, bucket, "out/", 24)
    finally:
        server.stop()


def test_slowdown_503s_are_retried_until_done(s3_server: str, tmp_path: Path, api_url: str) -> None:
    bucket = new_bucket(s3_server)
    source = tmp_path / "short.txt"
    source.write_text(logbook(12))
    with SlowDownProxy(s3_server, rate=0.3, seed=3) as proxy:
        env = s3_env(proxy.endpoint, PREFECT_API_URL=api_url)
        result = voxbatch(env, "run", str(source), "--out", f"s3://{bucket}/out", "--backend", "tone")
        assert result.returncode == EXIT_OK, result.stderr
        assert proxy.slowdowns >= 3, (proxy.puts, proxy.slowdowns)
    check_complete(s3_server, bucket, "out/", 12)


def test_wrong_credentials_exit_4_before_any_synthesis_and_show_no_secret(tmp_path: Path) -> None:
    server = start_weed(tmp_path / "weed", free_port(), credentials=("AKIDRIGHT", "the-right-secret"))
    try:
        right = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            aws_access_key_id="AKIDRIGHT",
            aws_secret_access_key="the-right-secret",
            region_name="us-east-1",
        )
        right.create_bucket(Bucket="locked")
        result = voxbatch(s3_env(server.endpoint), "run", str(SAMPLE_EN), "--out", "s3://locked/out")
        assert result.returncode == EXIT_ENVIRONMENT, result.stdout + result.stderr
        assert "access denied" in result.stderr and "'locked'" in result.stderr and server.endpoint in result.stderr
        assert "Traceback" not in result.stderr and SECRET not in result.stdout + result.stderr
        assert right.list_objects_v2(Bucket="locked").get("KeyCount", 0) == 0  # nothing was written
    finally:
        server.stop()


def test_a_flagged_chunk_on_s3_is_reviewed_accepted_and_assembled(s3_server: str, tmp_path: Path, api_url: str) -> None:
    """The review flow on a real S3 server: a garbled chunk's audio kept under review/ in the bucket, listed by
    `voxbatch review` as an s3:// URI, copied to its audio/ key by `voxbatch accept` (same bytes), the run manifest
    then showing it ok, and a plain `voxbatch assemble` working."""
    import io

    import pyarrow.parquet as pq
    import soundfile as sf

    bucket = new_bucket(s3_server)
    c = client(s3_server)
    config = tmp_path / "qa.toml"
    config.write_text("[qa]\nregenerate = 0\n")
    env = s3_env(s3_server, PREFECT_API_URL=api_url, VOXBATCH_FAULTS="garble_rate=0.3,seed=4")
    out = f"s3://{bucket}/out"
    done = voxbatch(env, "run", str(SAMPLE_EN), "--out", out, "--asr", "--config", str(config))
    assert done.returncode == EXIT_OK, done.stderr
    review_keys = [k for k in objects(s3_server, bucket) if k.startswith("out/review/")]
    assert review_keys, objects(s3_server, bucket)
    for key in review_keys:
        samples, _ = sf.read(io.BytesIO(c.get_object(Bucket=bucket, Key=key)["Body"].read()), dtype="float32")
        assert samples.size and float((samples**2).mean()) ** 0.5 > 0.01  # decodes, not silent
    review = voxbatch(env, "review", out)
    assert review.returncode == EXIT_OK and all(f"s3://{bucket}/{k}" in review.stdout for k in review_keys)
    assert voxbatch(env, "assemble", out).returncode != EXIT_OK  # flagged chunks: not without --include-flagged
    accepted = voxbatch(env, "accept", out, "--all")
    assert accepted.returncode == EXIT_OK, accepted.stderr
    for key in review_keys:
        audio_key = key.replace("out/review/", "out/audio/")
        same = c.get_object(Bucket=bucket, Key=audio_key)["Body"].read()
        assert same == c.get_object(Bucket=bucket, Key=key)["Body"].read()
    manifest_key = next(k for k in objects(s3_server, bucket) if k.endswith("/manifest.parquet") and "/runs/" in k)
    table = pq.read_table(io.BytesIO(c.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()))
    assert set(table.column("status").to_pylist()) == {"ok"} and sum(table.column("accepted").to_pylist()) == len(
        review_keys
    )
    assembled = voxbatch(env, "assemble", out)
    assert assembled.returncode == EXIT_OK, assembled.stderr
    assert any(k.startswith("out/assembled/") and k.endswith(".flac") for k in objects(s3_server, bucket))
