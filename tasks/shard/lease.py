"""Liveness and fencing of dispatched shards through storage: a worker keeps a lease fresh, the parent watches it.

A worker process killed outright (SIGKILL, a preempted node) cannot report its own death, and a self-hosted
Prefect server leaves its flow run Running. The shard's worker rewrites `runs/<run_id>/leases/shard-<n>.json`
every few seconds; the parent, which already polls its child runs, calls an attempt dead when no beat *of that
attempt* (its token, in the lease body) has changed the object for `lease_timeout_seconds` of the parent's own
clock (no clock comparison between machines). A stale attempt's beats never keep a newer one looking alive.

Fencing: before it dispatches an attempt, the parent writes the attempt's token to `leases/shard-<n>.fence`;
an attempt commits only while the fence still names it, so one that was superseded (paused, partitioned, slow)
stops before it commits. In-process runs have no token and no fence.
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
from tasks.storage.layout import content_type, fence_key, lease_key


def attempt_token(parent: str, attempt: int) -> str:
    """The token of one dispatched attempt of a shard: its parent run and attempt number."""
    return f"{parent}:attempt-{attempt}"


def write_fence(store: ObjectStore, run_id: str, shard: int, token: str) -> None:
    """Name the attempt that may commit the shard (any earlier one stops before its commit)."""
    key = fence_key(run_id, shard)
    store.put(key, token.encode(), overwrite=True, content_type=content_type(key))


def fence_holder(store: ObjectStore, run_id: str, shard: int) -> str | None:
    """The token the fence names (None: no fence, an in-process run or an older parent)."""
    try:
        return store.get(fence_key(run_id, shard)).decode()
    except ObjectMissing:
        return None


def may_commit(store: ObjectStore, run_id: str, shard: int, token: str) -> bool:
    """Whether the attempt with `token` still holds the shard (always, for a run with no token)."""
    if not token:
        return True
    holder = fence_holder(store, run_id, shard)
    return holder is None or holder == token


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


def _token_of(body: bytes | None) -> str | None:
    if body is None:
        return None
    try:
        token = json.loads(body).get("token")
    except (ValueError, AttributeError):
        return None
    return token if isinstance(token, str) else None


@dataclass
class LeaseWatch:
    """The parent's view: which dispatched attempts' leases went quiet for longer than `timeout` seconds."""

    store: ObjectStore
    run_id: str
    timeout: float
    _seen: dict[int, tuple[bytes | None, float]] = field(default_factory=dict)

    def restart(self, shard: int) -> None:
        """Forget what was seen (a new attempt gets the full timeout, counted from now)."""
        self._seen.pop(shard, None)

    def stale(self, shard: int, token: str | None = None) -> bool:
        """No beat of the attempt `token` (any attempt's, when None) for `timeout` seconds of this clock."""
        try:
            body: bytes | None = self.store.get(lease_key(self.run_id, shard))
        except ObjectMissing:
            body = None
        if token is not None and _token_of(body) != token:
            body = None  # another attempt's beat (or none yet): not a sign of life of this one
        now = time.monotonic()
        last = self._seen.get(shard)
        if last is None or last[0] != body:
            self._seen[shard] = (body, now)
            return False
        return now - last[1] > self.timeout
