"""Chunk progress: a process-wide hook for the CLI's progress bar, and a Prefect progress artifact per batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

Reporter = Callable[[int, float], None]  # (chunks finished, audio seconds)
_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def report(chunks: int, audio_seconds: float) -> None:
    if _reporter is not None:
        _reporter(chunks, audio_seconds)


class ArtifactProgress:
    """A progress artifact in the Prefect UI, moved as batches finish (at most every `every` seconds)."""

    def __init__(self, total: int, description: str, every: float = 2.0, done: int = 0) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total, self.done, self.every = max(total, 1), done, every
        self._last = time.monotonic()
        self.artifact: UUID = create_progress_artifact(self.percent, description=description)

    @property
    def percent(self) -> float:
        return round(100.0 * min(self.done, self.total) / self.total, 1)

    def add(self, chunks: int, audio_seconds: float = 0.0) -> None:
        self.set(self.done + chunks)

    def set(self, done: int, force: bool = False) -> None:
        from prefect.artifacts import update_progress_artifact

        self.done = done
        now = time.monotonic()
        if force or now - self._last >= self.every or self.done >= self.total:
            self._last = now
            update_progress_artifact(self.artifact, self.percent)
