"""Liveness of dispatched shards through storage: a worker keeps a lease object fresh, the parent watches it.

A worker process killed outright (SIGKILL, a preempted node) cannot report its own death, and a self-hosted
Prefect server leaves its flow run Running. The shard's worker rewrites `runs/<run_id>/leases/shard-<n>.json`
every few seconds; the parent, which already polls its child runs, calls a shard dead when that object stops
changing for `lease_timeout_seconds` of the parent's own clock (no clock comparison between machines).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tasks.errors import StorageError
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import content_type, lease_key


class Heartbeat:
    """Context manager: a daemon thread rewriting the shard's lease every `every` seconds while the block runs."""

    def __init__(self, store: ObjectStore, run_id: str, shard: int, every: float, **info: Any) -> None:
        self.store, self.key, self.every = store, lease_key(run_id, shard), every
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "ppid": os.getppid(), **info}
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"voxbatch-lease-{shard}", daemon=True)

    def beat(self) -> None:
        self.beats += 1
        body = json.dumps({**self.info, "beat": self.beats, "time": time.time()}).encode()
        self.store.put(self.key, body, overwrite=True, content_type=content_type(self.key))

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            # Storage trouble shows up in the shard itself; a missed beat or two is within the parent's timeout.
            with contextlib.suppress(StorageError):
                self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)


@dataclass
class LeaseWatch:
    """The parent's view: which dispatched shards' leases went quiet for longer than `timeout` seconds."""

    store: ObjectStore
    run_id: str
    timeout: float
    _seen: dict[int, tuple[bytes | None, float]] = field(default_factory=dict)

    def restart(self, shard: int) -> None:
        """Forget what was seen (a new attempt gets the full timeout, counted from now)."""
        self._seen.pop(shard, None)

    def stale(self, shard: int) -> bool:
        try:
            body: bytes | None = self.store.get(lease_key(self.run_id, shard))
        except ObjectMissing:
            body = None
        now = time.monotonic()
        last = self._seen.get(shard)
        if last is None or last[0] != body:
            self._seen[shard] = (body, now)
            return False
        return now - last[1] > self.timeout
