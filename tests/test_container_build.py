"""The CPU image built for real with buildah (no Docker engine here) and `voxbatch run` inside it.

Needs root, buildah and debootstrap (`.ci/run` installs them from Debian's packages), PyPI, about 5 GB of disk
and 5 minutes the first time (under a minute with the layers cached under /var/tmp/voxbatch-buildah). Skips, saying
which of those is missing, elsewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docker" / "buildah-check.sh"
WORK = Path(os.environ.get("VOXBATCH_BUILDAH_WORK", "/var/tmp/voxbatch-buildah"))
TAG = "localhost/voxbatch:check-cpu"
BACKGROUND = "VOXBATCH_IMAGE_CHECK"  # set by `make test` to the folder of the check it started


pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.needs("buildah", "debootstrap")]


def _check() -> tuple[int, str]:
    """The check's exit code and output: of the one `make test` started in the background beside the install
    (BACKGROUND names its folder; it writes exit-code when it ends), else of running it now."""
    started = Path(os.environ.get(BACKGROUND, "/nonexistent"))
    if (started / "output").exists():
        deadline = time.monotonic() + 1800
        while not (started / "exit-code").exists():
            assert time.monotonic() < deadline, "the image check started by make test did not end in 30 minutes"
            time.sleep(2)
        return int((started / "exit-code").read_text()), (started / "output").read_text()
    env = {**os.environ, "WORK": str(WORK), "TAG": TAG}
    env.pop("VOXBATCH_TEST_SESSION", None)  # buildah's own processes are not this session's leftovers
    result = subprocess.run([str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (buildah with chroot isolation)")
def test_the_cpu_image_builds_and_runs_the_sample_as_its_own_user() -> None:
    returncode, output = _check()
    assert returncode == 0, output[-4000:]

    assert re.search(r"(\d+) of \1 checks passed", output), output  # doctor, inside the image
    first, rerun = re.findall(r"synthesized now (\d+), already done (\d+)", output)
    assert int(first[0]) > 0 and first[1] == "0", first
    assert rerun == ("0", first[0]), rerun  # nothing finished is redone
    rows, ok = map(int, re.search(r"run manifest: (\d+) rows, (\d+) ok", output).groups())  # type: ignore[union-attr]
    assert rows == ok == int(first[0])

    store = ["--root", str(WORK / "storage"), "--runroot", str(WORK / "run"), "--storage-driver", "overlay"]
    inspected = subprocess.run(
        ["buildah", *store, "inspect", "--type", "image", TAG], capture_output=True, text=True, check=True
    )
    config = json.loads(inspected.stdout)["Docker"]["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["voxbatch"]
    assert set(config["Volumes"]) == {"/home/voxbatch/.cache", "/home/voxbatch/.prefect"}
    assert config["Healthcheck"]["Test"] == ["CMD", "voxbatch", "doctor", "--out", "/data"]
    assert "XDG_CACHE_HOME=/home/voxbatch/.cache" in config["Env"]
