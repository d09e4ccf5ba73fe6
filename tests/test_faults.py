"""Faults survived on purpose, with real parts: the process SIGKILLed at each point of the commit sequence, the
local output filling up. (The S3 server and the Prefect server going away mid-run: test_faults_servers.py.)

Every case ends the same way: the same command run again exits 0 with every planned chunk exactly once, and no
object that stood before it (audio, a shard's manifest) is written again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.errors import EXIT_ENVIRONMENT, EXIT_OK
from tasks.storage.local_store import TMP_DIR
from tests.helpers import REPO, assert_exactly_once, assert_nothing_torn, assert_unchanged, committed, logbook

pytestmark = pytest.mark.slow


def voxbatch(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def run_env(api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VOXBATCH_FAULTS"}
    return env | {"PYTHONWARNINGS": "ignore", "PREFECT_API_URL": api_url, **extra}


# -- SIGKILL at each point of the commit sequence ---------------------------------------------------------------


def test_a_sigkill_at_each_commit_point_resumes_exactly(tmp_path: Path, api_url: str) -> None:
    """Audio, stats, checkpoint, manifest: the process killed right after each (VOXBATCH_FAULTS kill_after), in
    turn, each kill resumed by the next run; the last run, unharmed, ends exit 0 with every chunk exactly once."""
    source = tmp_path / "log book.txt"
    source.write_text(logbook(12))
    config = tmp_path / "often.toml"
    config.write_text("[run]\nshard_size = 4\ncheckpoint_seconds = 0.001\n")  # a checkpoint after every chunk
    out = tmp_path / "out"
    args = ["run", str(source), "--out", str(out), "--backend", "tone", "--config", str(config)]
    run_dir = lambda: next(out.glob("runs/*"))  # noqa: E731
    run_manifest = lambda: (run_dir() / "manifest.parquet").exists()  # noqa: E731
    # After each kill, what must stand (the point was reached) and what must not yet (it was not passed).
    steps = [
        ("kill_after=audio,kill_count=3", lambda: len(committed(out)) >= 3 and not (run_dir() / "shards").exists()),
        ("kill_after=stats", lambda: (run_dir() / "shards/shard-00000.json").exists() and not committed_shards(out)),
        ("kill_after=checkpoint", lambda: committed_shards(out) == [0] and 1 in checkpointed(run_dir())),
        # The last shard's manifest: every shard committed, the run manifest left to the resume.
        ("kill_after=manifest,kill_count=2", lambda: committed_shards(out) == [0, 1, 2] and not run_manifest()),
    ]
    for faults, reached in steps:
        before = committed(out)
        result = voxbatch(run_env(api_url, VOXBATCH_FAULTS=faults), *args)
        assert result.returncode == -signal.SIGKILL, f"{faults}: exit {result.returncode}\n{result.stderr}"
        assert reached(), f"{faults}: not killed where asked; {sorted(map(str, committed(out)))}"
        assert_unchanged(before, out)
        assert_nothing_torn(out)
    before = committed(out)
    final = voxbatch(run_env(api_url), *args)
    assert final.returncode == EXIT_OK, final.stdout + final.stderr
    assert_unchanged(before, out)
    assert_exactly_once(out, 12)
    assert int(final.stdout.split("synthesized now ")[1].split(",")[0]) == 0  # all made before: none again
    assert not [p for p in (out / TMP_DIR).iterdir()]  # the killed writers' temporary files are gone


def committed_shards(out: Path) -> list[int]:
    return sorted(int(p.stem[6:]) for p in out.glob("manifests/*/shard-*.parquet"))


def checkpointed(run_dir: Path) -> list[int]:
    return sorted(int(p.stem[6:]) for p in run_dir.glob("progress/shard-*.parquet"))


# -- the local output fills up ----------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the test (needs root, as in CI), unmounted after."""
    where.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.fail(f"this test mounts a small tmpfs and could not (root is needed): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_full_disk_exits_4_tears_nothing_and_the_rerun_resumes(tmp_path: Path, api_url: str) -> None:
    source = tmp_path / "long log.txt"
    source.write_text(logbook(60))
    args = ["--backend", "tone", "--shard-size", "10"]
    with small_disk(tmp_path / "disk", "2m") as disk:
        out = disk / "out"
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (1536 << 10))  # room left for the plan and a few shards, not for all
        first = voxbatch(run_env(api_url), "run", str(source), "--out", str(out), *args)
        assert first.returncode == EXIT_ENVIRONMENT, first.stdout + first.stderr
        assert "Traceback" not in first.stderr and "unexpected error" not in first.stderr, first.stderr
        assert "the disk is full" in first.stderr and str(out) in first.stderr, first.stderr
        assert committed(out), "the disk filled before any audio: the test does not test a run cut short"
        assert_nothing_torn(out)
        before = committed(out)
        filler.unlink()  # space freed: the filler gone and the disk made larger
        subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)
        again = voxbatch(run_env(api_url), "run", str(source), "--out", str(out), *args)
        assert again.returncode == EXIT_OK, again.stdout + again.stderr
        assert_unchanged(before, out)
        assert_nothing_torn(out)
        rows = assert_exactly_once(out, 60)
        synthesized = int(again.stdout.split("synthesized now ")[1].split(",")[0])
        assert synthesized <= len(rows) - len([p for p in before if p.parent.parent.name == "audio"])


def test_an_output_folder_on_another_file_system_is_still_written(tmp_path: Path) -> None:
    """Temporary files live in one folder under the output root; a link cannot cross file systems, so a key
    whose folder is mounted elsewhere (audio/ on another disk) is written through a temporary file beside it."""
    from tasks.storage import open_store

    out = tmp_path / "out"
    with small_disk(out / "audio", "1m"):
        store = open_store(str(out))
        assert store.put("audio/ab/x.flac", b"fLaC one") and not store.put("audio/ab/x.flac", b"two")
        assert store.put("audio/ab/x.flac", b"fLaC three", overwrite=True)
        assert store.get("audio/ab/x.flac") == b"fLaC three"
        assert store.put("manifests/r/shard-00000.parquet", b"PAR1")  # the root's own file system, as before
        assert not [p for p in out.rglob(".tmp-*") if p.is_file()]
