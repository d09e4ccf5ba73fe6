"""Chunk progress as a Prefect progress artifact, moved as batches finish."""

from __future__ import annotations

import time
from uuid import UUID

from tasks.shard.pipeline import ProgressFn


class ArtifactProgress:
    """A progress artifact in the Prefect UI, moved as batches finish (at most every `every` seconds)."""

    def __init__(self, total: int, description: str, every: float = 2.0, done: int = 0) -> None:
        from prefect.artifacts import create_progress_artifact

        self.total, self.done, self.every = max(total, 1), done, every
        self._last = time.monotonic()
        artifact = create_progress_artifact(self.percent, description=description)
        if not isinstance(artifact, UUID):  # sync_compatible: a coroutine only when called from async code
            raise TypeError(f"a progress artifact's id, not {type(artifact).__name__}")
        self.artifact = artifact

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


def both(first: ProgressFn, second: ProgressFn) -> ProgressFn:
    """One progress callback that calls two (the terminal's bar and the artifact)."""

    def report(chunks: int, audio_seconds: float) -> None:
        first(chunks, audio_seconds)
        second(chunks, audio_seconds)

    return report
