"""Fault injection for rehearsals and tests: VOXBATCH_FAULTS makes batches fail with real OOM exceptions.

    VOXBATCH_FAULTS="oom_rate=0.05,seed=7"   a fraction of batches fail, at random (seeded)
    VOXBATCH_FAULTS="memory_budget=4000"     every batch whose padded cost exceeds 4000 fails
    VOXBATCH_FAULTS="batch_delay=0.5"        every batch takes 0.5 s longer (a slow device: time to kill a worker)
    VOXBATCH_FAULTS="garble_rate=0.3"        a fraction of chunks (by chunk id and seed) come out unintelligible
                                             the first time (babble for the quality checks to catch)
    VOXBATCH_FAULTS="fail_rate=0.2"          a fraction of chunks (by text and seed) fail to synthesize: failed
                                             manifest rows, for rehearsing "rerun to retry only those"
    VOXBATCH_FAULTS="kill_after=stats"       the process SIGKILLs itself right after a point of the commit
    VOXBATCH_FAULTS="kill_after=audio,kill_count=5"   sequence (audio, stats, checkpoint, manifest), the
                                             kill_count-th time it passes it (default the first): a crash at
                                             exactly that point, for rehearsing resumes

The exception is torch.OutOfMemoryError when torch is installed (a plain RuntimeError with CUDA's message
otherwise), raised after the batch ran and its output is thrown away (the costliest case), so the whole
recovery path runs as it would on a GPU, and costs at least as much.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from tasks.environment import environment, variable
from tasks.errors import ConfigError

ENV = variable("faults")
COMMIT_POINTS = ("audio", "stats", "checkpoint", "manifest")  # in commit order (tasks.shard.lifecycle)


@dataclass
class Faults:
    oom_rate: float = 0.0
    memory_budget: int | None = None
    seed: int = 0
    batch_delay: float = 0.0
    garble_rate: float = 0.0
    fail_rate: float = 0.0
    kill_after: str = ""
    kill_count: int = 1

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.injected = 0

    @property
    def active(self) -> bool:
        return self.oom_rate > 0 or self.memory_budget is not None or self.batch_delay > 0 or self.fail_rate > 0

    def check(self, padded_cost: int, batch_size: int) -> None:
        """Raise an OOM for this batch if the fault plan says so (after the delay, if any)."""
        if self.batch_delay > 0:
            time.sleep(self.batch_delay)
        if self.memory_budget is not None and padded_cost > self.memory_budget:
            self._raise(f"batch of {batch_size} with padded cost {padded_cost} > memory_budget {self.memory_budget}")
        if self.oom_rate > 0 and self._rng.random() < self.oom_rate:
            self._raise(f"random fault, oom_rate {self.oom_rate}")

    def garbles(self, chunk_id: str) -> bool:
        """Whether this chunk's first attempt is garbled: the same chunks on every run with the same seed."""
        return self._picked(chunk_id, self.garble_rate)

    def check_texts(self, texts: list[str]) -> None:
        """Fail a batch holding a text picked by `fail_rate` (the engine then isolates it: that chunk fails)."""
        picked = [t for t in texts if self._picked(t, self.fail_rate)]
        if picked:
            raise RuntimeError(f"synthesis failed (injected by {ENV}: fail_rate {self.fail_rate}): {picked[0][:40]!r}")

    def _picked(self, key: str, rate: float) -> bool:
        """The same keys on every run with the same seed."""
        if rate <= 0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < rate

    def _raise(self, why: str) -> None:
        self.injected += 1
        message = (
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB "
            f"(injected by {ENV}: {why})"
        )
        try:
            import torch
        except ImportError:
            raise RuntimeError(f"CUDA error: out of memory ({message})") from None
        raise torch.OutOfMemoryError(message)


def parse(spec: str) -> Faults:
    """Parse the VOXBATCH_FAULTS value; a bad value is a ConfigError naming the variable."""
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = (x.strip() for x in part.partition("="))
        try:
            if key == "batch_delay":
                values[key] = float(value)
                if not 0.0 <= values[key] <= 60.0:
                    raise ValueError("must be in [0, 60] seconds")
            elif key in ("oom_rate", "garble_rate", "fail_rate"):
                values[key] = float(value)
                if not 0.0 <= values[key] < 1.0:
                    raise ValueError("must be in [0, 1)")
            elif key in ("memory_budget", "seed", "kill_count"):
                values[key] = int(value)
                if key in ("memory_budget", "kill_count") and values[key] <= 0:
                    raise ValueError("must be positive")
            elif key == "kill_after":
                if value not in COMMIT_POINTS:
                    raise ValueError(f"must be one of {', '.join(COMMIT_POINTS)}")
                values[key] = value
            else:
                known = "oom_rate, garble_rate, fail_rate, memory_budget, seed, batch_delay, kill_after, kill_count"
                raise ValueError(f"unknown key (known: {known})")
        except ValueError as exc:
            raise ConfigError(f"{ENV}: {part!r}: {exc}") from None
    return Faults(**values)


def from_env() -> Faults:
    return parse(environment().faults)


_passed: dict[str, int] = {}
_passed_lock = threading.Lock()  # audio is stored on several upload threads


def passed(point: str) -> None:
    """A point of the commit sequence is behind this process (the write returned): SIGKILL it here if
    VOXBATCH_FAULTS says so. Cheap when no fault is set (one environment lookup)."""
    spec = os.environ.get(ENV, "")
    if "kill_after" not in spec:
        return
    plan = parse(spec)
    if plan.kill_after != point:
        return
    with _passed_lock:
        _passed[point] = _passed.get(point, 0) + 1
        if _passed[point] >= plan.kill_count:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind runs: a power cut's view
