"""docker/compose.yaml run for real with podman: the local stand-ins of docker/compose.local.yaml (built from Debian
packages and PyPI by docker/local-images.sh), the host's network, a run dispatched from the CLI's container to the
worker's, a worker killed mid-shard, the Prefect server restarted mid-run, the stack taken down and up again.

Needs root, podman, runc, buildah and debootstrap (`apt-get install podman runc podman-compose buildah debootstrap`),
podman-compose 1.6.0 from the venv (the dev extra), Debian's archive and PyPI for the first build, and Chromium for
the UI's picture. One stack for the module, under a project name of its own, on free ports; the tests run in file
order and each leaves it up for the next. About 3 minutes with the images cached. `VOXBATCH_UI_PICTURE=PATH` keeps
the picture of the UI (docs/img/compose-stack-flow-run.png was made so)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.compose_servers import Stack, build_images, missing, start_stack, wait_for_image_check, wait_for_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.container,
    pytest.mark.needs("podman", "runc", "buildah", "debootstrap"),
    pytest.mark.skipif(missing() is not None, reason=missing() or ""),
]

SAMPLE = "/opt/voxbatch-data/sample/en"  # the English sample, baked into the image
SHARD = "voxbatch-shard/voxbatch-shard"
CHUNKS = 10  # the sample's chunks
# A worker gone quiet is noticed after 10 s (the least allowed); progress recorded every half second, so a shard
# is seen under way early.
QUICK = "[run]\nlease_timeout_seconds = 10\ncheckpoint_seconds = 0.5\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("compose-stack")
    wait_for_image_check()
    code, seconds, output = build_images(directory / "images.log")
    assert code == 0, output[-4000:]
    print(f"docker/local-images.sh: {seconds:.0f} s")
    stack = start_stack(directory)
    (directory / "quick.toml").write_text(QUICK)
    try:
        yield stack
    finally:
        stack.cleanup()


def _summary(output: str) -> tuple[str, int, int]:
    """(run id, synthesized now, already done) from a run's summary."""
    run = re.search(r"^run (\S+): (\d+) chunks", output, re.MULTILINE)
    counts = re.search(r"synthesized now (\d+), already done (\d+)", output)
    assert run and counts, output[-3000:]
    return run.group(1), int(counts.group(1)), int(counts.group(2))


def _run_manifest(stack: Stack, prefix: str, run_id: str) -> list[dict[str, object]]:
    body = stack.s3().get_object(Bucket="voxbatch", Key=f"{prefix}runs/{run_id}/manifest.parquet")["Body"].read()
    rows: list[dict[str, object]] = pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


def _every_chunk_once(stack: Stack, prefix: str, run_id: str) -> list[dict[str, object]]:
    """The run manifest has each chunk once, all ok, each pointing at an audio object in the bucket."""
    rows = _run_manifest(stack, prefix, run_id)
    ids = [row["chunk_id"] for row in rows]
    assert len(rows) == CHUNKS and len(set(ids)) == CHUNKS, ids
    assert all(row["status"] == "ok" for row in rows), [(row["status"], row["error"]) for row in rows]
    keys = set(stack.keys(prefix))
    for row in rows:
        assert str(row["audio_uri"]).removeprefix("s3://voxbatch/") in keys, row["audio_uri"]
    return rows


def _not_rewritten(before: dict[str, str], after: dict[str, str]) -> None:
    """Every object of `before` is still there with the same ETag: nothing stored was written again."""
    assert before, "nothing was stored to compare"
    changed = [key for key, etag in before.items() if after.get(key) != etag]
    assert not changed, f"written again or lost: {changed}"


def _mid_shard(stack: Stack, prefix: str, run: subprocess.Popen[str], output: Path, timeout: float = 240) -> None:
    """Wait until a shard has stored some chunks (its progress record exists) but not committed its manifest."""
    deadline = time.monotonic() + timeout
    while True:
        keys = stack.keys(prefix)
        assert not any(k.startswith(f"{prefix}manifests/") for k in keys), "the shard committed before it was seen"
        if any("/progress/shard-" in k for k in keys):
            return
        assert run.poll() is None, output.read_text()[-3000:]
        assert time.monotonic() < deadline, "no shard got under way\n" + stack.logs("worker")
        time.sleep(0.2)


def test_the_stack_comes_up_healthy_and_a_run_dispatched_from_a_container_lands_in_seaweedfs(stack: Stack) -> None:
    for service in ("postgres", "seaweedfs", "prefect-server", "worker"):
        assert stack.health(service) == "healthy", service
    assert "database is postgresql" in stack.logs("worker", tail=200)

    result = stack.voxbatch("run", SAMPLE, "--out", "s3://voxbatch/demo", "--dispatch", SHARD)
    assert result.returncode == 0, result.stdout + result.stderr + stack.logs()
    run_id, made, done = _summary(result.stdout)
    assert (made, done) == (CHUNKS, 0)

    # Read back from the host: the manifest and the audio, through the stack's S3 on 127.0.0.1.
    rows = _every_chunk_once(stack, "demo/", run_id)
    first = str(rows[0]["audio_uri"]).removeprefix("s3://voxbatch/")
    assert stack.s3().get_object(Bucket="voxbatch", Key=first)["Body"].read(4) == b"fLaC"
    assert sum(float(row["duration_s"]) for row in rows) > 30  # type: ignore[arg-type]

    # The shard ran as a flow run of the worker's deployment, on the server on PostgreSQL.
    shard_runs = stack.flow_runs(tags={"all_": [f"run-id:{run_id}"]})
    assert [r["state_type"] for r in shard_runs] == ["COMPLETED"], shard_runs
    status = stack.voxbatch("status", "s3://voxbatch/demo")
    assert status.returncode == 0, status.stdout + status.stderr


def test_a_worker_container_killed_mid_shard_the_shard_is_dispatched_again_and_every_chunk_lands_once(
    stack: Stack,
) -> None:
    config = {stack.directory / "quick.toml": "/config/quick.toml"}
    args = ["run", SAMPLE, "--out", "s3://voxbatch/kill", "--run-id", "container-kill", "--batch-size", "1"]
    run, output = stack.start_voxbatch(
        "kill", *args, "--config", "/config/quick.toml", "--dispatch", SHARD, mounts=config
    )
    try:
        _mid_shard(stack, "kill/", run, output)
        stack.podman("kill", "-s", "KILL", stack.container("worker"))
        stored = stack.etags("kill/audio/")  # what the killed worker had stored: never written again
        # podman applies no restart policy to a container `podman kill` stopped (it counts as stopped by the
        # user): started again here, as an operator or an orchestrator would.
        stack.podman("start", stack.container("worker"))
        assert run.wait(timeout=400) == 0, output.read_text()[-3000:] + stack.logs("worker")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    _every_chunk_once(stack, "kill/", "container-kill")
    _not_rewritten(stored, stack.etags("kill/audio/"))
    shard_runs = stack.flow_runs(tags={"all_": ["run-id:container-kill"]})
    crashed = [r for r in shard_runs if r["state_type"] == "CRASHED"]
    assert len(crashed) == 1 and "lease" in crashed[0]["state"]["message"], shard_runs
    assert [r["name"] for r in shard_runs if r["state_type"] == "COMPLETED"] == ["container-kill-shard-0-attempt-1"]
    stack.wait_healthy()


def test_a_prefect_server_restarted_mid_run_the_run_completes(stack: Stack) -> None:
    config = {stack.directory / "quick.toml": "/config/quick.toml"}
    args = ["run", SAMPLE, "--out", "s3://voxbatch/restart", "--run-id", "container-restart", "--batch-size", "1"]
    args += ["--config", "/config/quick.toml", "--dispatch", SHARD]
    run, output = stack.start_voxbatch("restart", *args, mounts=config)
    try:
        _mid_shard(stack, "restart/", run, output)
        stored = stack.etags("restart/audio/")
        stack.podman("restart", stack.container("prefect-server"), timeout=180)
        code = run.wait(timeout=400)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # Complete, or shards left uncommitted (exit 5) that the same command then completes.
    assert code in (0, 5), output.read_text()[-3000:]
    if code == 5:
        again = stack.voxbatch(*args, mounts=config)
        assert again.returncode == 0, again.stdout + again.stderr
    _every_chunk_once(stack, "restart/", "container-restart")
    _not_rewritten(stored, stack.etags("restart/audio/"))
    stack.wait_healthy()


def test_down_and_up_keeps_the_output_and_the_ui_history(stack: Stack, tmp_path: Path) -> None:
    before = {r["id"]: r["name"] for r in stack.flow_runs()}
    (killed_parent,) = [i for i, name in before.items() if name == "en-container-kill"]
    assert len(before) >= 6, before  # three parents, their shards, the crashed one

    kept = stack.etags("demo/audio/") | stack.etags("demo/manifests/")
    stack.down()
    assert stack.containers() == []
    stack.up()
    again = stack.voxbatch("run", SAMPLE, "--out", "s3://voxbatch/demo", "--dispatch", SHARD)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _summary(again.stdout)[1:] == (0, CHUNKS)  # synthesized now 0: the volumes kept the audio
    _not_rewritten(kept, stack.etags("demo/"))  # nor were the audio and the shard manifests written again

    # The history is on PostgreSQL's volume: every earlier flow run is still there, and the UI answers.
    after = {r["id"]: r["name"] for r in stack.flow_runs()}
    assert before.items() <= after.items()
    status, page = wait_for_url(stack.ui_url + f"/runs/flow-run/{killed_parent}")
    assert status == 200 and "<html" in page.lower()
    status, settings = wait_for_url(stack.ui_url + "/ui-settings", accept="application/json")
    assert status == 200 and json.loads(settings)["api_url"] == stack.api_url  # the UI's browser code calls here
    png = tmp_path / "flow-run.png"
    _photograph(stack.ui_url + f"/runs/flow-run/{killed_parent}", png)
    if keep := os.environ.get("VOXBATCH_UI_PICTURE"):
        shutil.copy(png, keep)

    # No secret in anything the stack said: commands, podman-compose, every container's log, the runs' output.
    said = stack.all_output() + "".join(p.read_text() for p in stack.directory.glob("*.log"))
    for name, value in stack.secrets.items():
        assert value not in said, f"{name} appears in the stack's output"


def _photograph(url: str, png: Path) -> None:
    """The page in headless Chromium (its script given time to load the run); not a blank or an error page."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert chromium, "headless Chromium is needed to photograph the UI (apt-get install chromium; .ci/run does)"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,900",
         "--virtual-time-budget=15000", f"--screenshot={png}", url],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.shape == (900, 1400)
    # Prefect's dark UI: mostly dark, with light text on much of the page (an error page is white, a blank one flat).
    assert (pixels < 80).mean() > 0.5, "not the UI's dark page"
    light = pixels > 160
    assert light.mean() > 0.01 and np.flatnonzero(light.any(axis=1)).size > 300, "little or no text on the page"
