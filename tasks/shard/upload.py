"""Storage writes overlapped with synthesis: a bounded thread pool, and the time its caller spent waiting on it.

The synthesizer hands each finished chunk over and goes on; the pool writes it. Only when too many writes are
in flight (memory stays bounded) or at the end of a shard does the caller wait, and that wait is measured:
it is the share of a run's wall time that storage costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from tasks.storage.s3_client import UPLOAD_THREADS

T = TypeVar("T")


class Uploader(Generic[T]):
    def __init__(self, threads: int = UPLOAD_THREADS, max_pending: int = 4 * UPLOAD_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="voxbatch-upload")
        self._pending: dict[Future[T], int] = {}
        self._max_pending = max_pending
        self.wait_seconds = 0.0  # time the caller was blocked on storage
        self.errors: list[BaseException] = []

    def submit(self, tag: int, fn: Callable[[], T]) -> list[tuple[int, T]]:
        """Start a write; returns the writes that have finished meanwhile (blocking only when too many are pending)."""
        self._pending[self._pool.submit(fn)] = tag
        if len(self._pending) >= self._max_pending:
            return self._collect(block=True)
        return self._collect(block=False)

    def _collect(self, block: bool) -> list[tuple[int, T]]:
        if not self._pending:
            return []
        started = time.perf_counter()
        done, _ = wait(list(self._pending), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        if block:
            self.wait_seconds += time.perf_counter() - started
        finished = []
        for future in done:
            tag = self._pending.pop(future)
            exc = future.exception()
            if exc is not None:
                self.errors.append(exc)
            else:
                finished.append((tag, future.result()))
        return finished

    def finish(self) -> list[tuple[int, T]]:
        """Wait for every write still in flight; the pool is closed afterwards."""
        finished = []
        try:
            while self._pending:
                finished.extend(self._collect(block=True))  # each wait is counted there
        finally:
            self._pool.shutdown(wait=True)
        return finished
