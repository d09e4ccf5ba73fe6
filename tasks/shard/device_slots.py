"""One GPU per concurrent shard on a worker host: each shard process claims a free device with a file lock.

`voxbatch worker` lists the GPUs it serves in VOXBATCH_GPU_SLOTS ("0,1,2,3"); each shard process it starts
takes the first device whose lock it can hold and sets CUDA_VISIBLE_DEVICES to it before CUDA initializes,
so the synthesizer's "cuda" is that one device. The lock is released when the process ends, even by SIGKILL.
The locks live in a folder of this user's own (`voxbatch-gpu-slots-<uid>`, mode 0700): a fixed name in the shared
temporary folder could be made first by another local user, who would then hold or swap our locks.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

from filelock import FileLock, Timeout

from tasks.environment import environment
from tasks.errors import StorageError, VoxbatchError


def gpu_slots() -> list[str]:
    return [s.strip() for s in environment().gpu_slots.split(",") if s.strip()]


def pool_limit_name() -> str:
    """The pool-wide concurrency limit a shard on this host takes a slot of: per device class, or as set."""
    return pool_limit_name_for(gpu_slots())


def pool_limit_name_for(gpus: list[str]) -> str:
    return environment().concurrency_limit or f"voxbatch-{'gpu' if gpus else 'cpu'}"


def slot_lock_dir() -> Path:
    """This user's folder of GPU slot locks: under VOXBATCH_LOCK_DIR, else $XDG_RUNTIME_DIR (private to the user),
    else the temporary folder; made 0700, and refused unless it is a real folder owned by us that no one else may
    write to."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = environment().lock_dir or (runtime if runtime and Path(runtime).is_dir() else tempfile.gettempdir())
    uid = os.getuid()
    folder = Path(base) / f"voxbatch-gpu-slots-{uid}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass  # ours from an earlier shard, or someone else's: checked below
    except OSError as exc:
        raise StorageError(f"{folder}: cannot make the GPU slot lock folder: {exc.strerror}") from exc
    st = folder.lstat()  # lstat: a symlink planted in our name is refused, not followed
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise StorageError(
            f"{folder}: the GPU slot lock folder is not ours (owner uid {st.st_uid}, mode "
            f"{stat.filemode(st.st_mode)}; this process runs as uid {uid})",
            hint="another local user made it first: remove it, or set VOXBATCH_LOCK_DIR to a folder of your own",
        )
    return folder


def claim_gpu(slots: list[str], wait_seconds: float = 600.0) -> tuple[str, FileLock] | None:
    """Take a free GPU from `slots` for this process (None when there are none to take: a CPU host)."""
    if not slots:
        return None
    lock_dir = slot_lock_dir()
    deadline = time.monotonic() + wait_seconds
    while True:
        for slot in slots:
            lock = FileLock(str(lock_dir / f"gpu-{slot}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            os.environ["CUDA_VISIBLE_DEVICES"] = slot
            return slot, lock
        if time.monotonic() > deadline:
            raise VoxbatchError(
                f"no free GPU among {', '.join(slots)} after {wait_seconds:.0f} s",
                hint="another process holds them; serve at most one shard per GPU (voxbatch worker --limit)",
                transient=True,
            )
        time.sleep(1.0)
