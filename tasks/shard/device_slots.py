"""One GPU per concurrent shard on a worker host: each shard process claims a free device with a file lock.

`voxbatch worker` lists the GPUs it serves in VOXBATCH_GPU_SLOTS ("0,1,2,3"); each shard process it starts
takes the first device whose lock it can hold and sets CUDA_VISIBLE_DEVICES to it before CUDA initializes,
so the synthesizer's "cuda" is that one device. The lock is released when the process ends, even by SIGKILL.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from filelock import FileLock, Timeout

from tasks.environment import environment
from tasks.errors import VoxbatchError


def gpu_slots() -> list[str]:
    return [s.strip() for s in environment().gpu_slots.split(",") if s.strip()]


def pool_limit_name() -> str:
    """The pool-wide concurrency limit a shard on this host takes a slot of: per device class, or as set."""
    return pool_limit_name_for(gpu_slots())


def pool_limit_name_for(gpus: list[str]) -> str:
    return environment().concurrency_limit or f"voxbatch-{'gpu' if gpus else 'cpu'}"


def claim_gpu(slots: list[str], wait_seconds: float = 600.0) -> tuple[str, FileLock] | None:
    """Take a free GPU from `slots` for this process (None when there are none to take: a CPU host)."""
    if not slots:
        return None
    lock_dir = Path(environment().lock_dir or tempfile.gettempdir()) / "voxbatch-gpu-slots"
    lock_dir.mkdir(parents=True, exist_ok=True)
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
