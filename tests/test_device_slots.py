"""GPU slot locks: a folder of this user's own, which another local user cannot make first or write to."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tasks.errors import StorageError
from tasks.shard.device_slots import claim_gpu, slot_lock_dir


@pytest.fixture
def shared_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the shared temporary folder (/tmp), world-writable with the sticky bit, as /tmp is."""
    tmp_path.chmod(0o1777)
    monkeypatch.delenv("VOXBATCH_LOCK_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # claim_gpu sets it; restored after the test
    return tmp_path


def test_the_lock_folder_is_private_to_the_user(shared_tmp: Path) -> None:
    claimed = claim_gpu(["0", "1"], wait_seconds=0)
    assert claimed is not None
    slot, lock = claimed
    try:
        folder = Path(lock.lock_file).parent
        st = folder.lstat()
        assert folder.parent == shared_tmp and slot == "0"
        assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
    finally:
        lock.release()


def test_a_world_writable_lock_folder_is_refused(shared_tmp: Path) -> None:
    folder = shared_tmp / f"voxbatch-gpu-slots-{os.getuid()}"
    folder.mkdir()
    folder.chmod(0o777)  # anyone could swap the lock files in it
    with pytest.raises(StorageError, match="not ours") as err:
        claim_gpu(["0"], wait_seconds=0)
    assert str(folder) in str(err.value)


def test_a_symlink_planted_in_our_name_is_refused(shared_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (shared_tmp / f"voxbatch-gpu-slots-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(StorageError, match="not ours"):
        slot_lock_dir()
    assert not list(elsewhere.iterdir())


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_another_user_made_first_is_refused(shared_tmp: Path) -> None:
    folder = shared_tmp / f"voxbatch-gpu-slots-{os.getuid()}"
    folder.mkdir(mode=0o700)
    os.chown(folder, 4242, 4242)
    with pytest.raises(StorageError, match="owner uid 4242"):
        claim_gpu(["0"], wait_seconds=0)


def test_xdg_runtime_dir_is_preferred(
    shared_tmp: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path_factory.mktemp("run-user")
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert slot_lock_dir().parent == runtime
