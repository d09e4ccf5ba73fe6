"""A process-wide hook for chunk progress: the CLI installs a progress bar, the flow reports into it."""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[int, float], None]  # (chunks finished, audio seconds)
_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def report(chunks: int, audio_seconds: float) -> None:
    if _reporter is not None:
        _reporter(chunks, audio_seconds)
