"""Checking chunks before they are stored, and making them again when they fail.

Every chunk goes through post-processing and the signal checks (tasks.shard.rows, tasks.shard.qa); with `qa.asr` it is
also transcribed (tasks.audio.asr, in batches) and scored. Transcription runs on a thread of its own while synthesis
goes on (Whisper on one CPU thread gains almost nothing from a second, Piper gains 1.7x: overlapping them is
cheaper than taking turns); one pool of chunks is heard while the next one fills, so memory stays bounded.

A chunk that fails is synthesized again, up to `qa.regenerate` times, each time with a noise seed derived from
its chunk id and the attempt (so a rerun makes the same attempts), and the best attempt is kept: the first that
passes, else the one with the lowest error, which is then a failed row with its reason. Voices that do not
sample (the same text always gives the same audio) are not asked twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.config import Settings
from tasks.errors import ConfigError
from tasks.plan.file import Plan
from tasks.shard.manifest import ManifestRow
from tasks.shard.rows import post_process

Made = tuple[np.ndarray, bytes]  # final samples, encoded bytes
Redo = Callable[[int], np.ndarray]  # synthesize the chunk again with this seed
Ready = tuple[int, ManifestRow, Made | None]  # (chunk index, row, audio to store or None: failed)
TRANSCRIPT_CHARS = 2000
# Chunks are handed to Whisper in pools of this many batches: sorted by length over a pool, batches pad far less
# (measured: a pool of 40 chunks transcribes in 55% of the time of five pools of 8).
POOL_BATCHES = 6
IN_FLIGHT = 1  # pools being transcribed while the next one fills; then synthesis waits for the oldest


def attempt_seed(chunk_id: str, attempt: int) -> int:
    """The noise seed of a chunk's attempt (1 is the first regeneration): the same on every rerun."""
    return int.from_bytes(hashlib.sha256(f"{chunk_id}:{attempt}".encode()).digest()[:4], "big")


@dataclass
class _Pending:
    index: int
    row: ManifestRow  # after post-processing (levels set)
    template: ManifestRow  # before it: what each new attempt starts from
    made: Made
    redo: Redo | None


class Checker:
    """Takes chunks as the engine makes them and gives them back checked, in batches when listening."""

    def __init__(self, plan: Plan, settings: Settings, garble: Callable[[str], bool] | None = None) -> None:
        self.plan = plan
        self.settings = settings
        self.qa = settings.qa
        if self.qa.asr:
            from tasks.audio.asr import missing

            problem = missing()
            if problem:
                raise ConfigError(f"qa.asr is on, but {problem}", hint="pip install 'voxbatch[asr]', or drop --asr")
        self._listeners: dict[str, Any] = {}  # tasks.audio.asr.Listener per language, made on first use
        self._queue: list[_Pending] = []
        self._in_flight: list[tuple[list[_Pending], Future[list[str]]]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._garble = garble or (lambda chunk_id: False)
        self.asr_seconds = 0.0
        self.regenerations = 0

    def offer(self, index: int, row: ManifestRow, raw: np.ndarray | None, redo: Redo | None) -> list[Ready]:
        """Check one chunk's first attempt; returns the chunks now ready (this one, or a batch, or none yet)."""
        template = dataclasses.replace(row)
        if raw is not None and self._garble(row.chunk_id):
            raw = _garbled(raw)
        made = post_process(row, raw, self.plan, self.settings)
        row.qa_attempts = 1 if raw is not None else 0
        if made is None:
            if raw is None or not (row.error or "").startswith("qa:"):
                return [(index, row, None)]  # synthesis or post-processing failed: not a quality problem
            return [self._again(index, template, redo, (row, None, None))]
        if not self.qa.asr:
            return [(index, row, made)]
        self._queue.append(_Pending(index, row, template, made, redo))
        if len(self._queue) >= self.qa.asr_batch_size * POOL_BATCHES:
            self._submit()
        return self._collect(keep=IN_FLIGHT)

    def flush(self) -> list[Ready]:
        """Listen to everything still queued or in flight: rows that read back are ready; the others are made
        again first (call it while their voice is loaded)."""
        self._submit()
        return self._collect(keep=0)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _submit(self) -> None:
        batch, self._queue = self._queue, []
        by_lang: dict[str, list[_Pending]] = {}
        for p in batch:
            by_lang.setdefault(p.row.lang, []).append(p)
        if by_lang and self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="voxbatch-asr")
        for lang, items in by_lang.items():
            assert self._pool is not None
            self._in_flight.append((items, self._pool.submit(self._transcribe, lang, [p.made[0] for p in items])))

    def _collect(self, keep: int) -> list[Ready]:
        """Verdicts of the finished batches, in order; waits for the oldest while more than `keep` are in flight."""
        out: list[Ready] = []
        while self._in_flight and (len(self._in_flight) > keep or self._in_flight[0][1].done()):
            items, heard = self._in_flight.pop(0)
            for p, text in zip(items, heard.result(), strict=True):
                error = self._score(p.row, text)
                if error is not None and self._listener(p.row.lang).fitted:  # the full window decides
                    error = self._score(p.row, self._transcribe(p.row.lang, [p.made[0]], full_window=True)[0])
                if error is None:
                    out.append((p.index, p.row, p.made))
                else:
                    out.append(self._again(p.index, p.template, p.redo, (p.row, p.made, error)))
        return sorted(out, key=lambda r: r[0])

    def _again(
        self, index: int, template: ManifestRow, redo: Redo | None, first: tuple[ManifestRow, Made | None, str | None]
    ) -> Ready:
        """Regenerate a failed chunk; the first attempt that passes, else the best, with its reason."""
        attempts = [first]
        sampling = redo is not None
        for attempt in range(1, self.qa.regenerate + 1 if sampling else 1):
            assert redo is not None
            self.regenerations += 1
            row = dataclasses.replace(template)
            try:
                raw = redo(attempt_seed(template.chunk_id, attempt))
            except Exception as exc:  # one failed regeneration is one failed attempt, not a failed shard
                row.status, row.error = "failed", f"regeneration: {type(exc).__name__}: {exc}"[:500]
                attempts.append((row, None, row.error))
                continue
            made = post_process(row, raw, self.plan, self.settings)
            error = None
            if made is not None and self.qa.asr:
                error = self._score(row, self._transcribe(row.lang, [made[0]], full_window=True)[0])
            attempts.append((row, made, error))
            if made is not None and error is None:
                break
        best_row, best_made, best_error = min(attempts, key=_badness)
        best_row.qa_attempts = len(attempts)
        if best_made is not None and best_error is None:
            return index, best_row, best_made
        reason = best_error or best_row.error or "failed"
        if not sampling:
            tail = " (not regenerated: the voice makes the same audio every time)"
        else:
            tail = f" (best of {len(attempts)} attempts)"
        best_row.status, best_row.error = "failed", (reason if reason.startswith("qa:") else "qa: " + reason) + tail
        return index, best_row, None

    def _listener(self, lang: str) -> Any:
        from tasks.audio.asr import Listener, asr_device

        key = "zh" if lang == "zh" else "en"
        if key not in self._listeners:
            self._listeners[key] = Listener(key, asr_device(self.settings.synthesis.device), self.qa.asr_batch_size)
        return self._listeners[key]

    def _transcribe(self, lang: str, audios: list[np.ndarray], full_window: bool = False) -> list[str]:
        listener = self._listener(lang)
        started = time.perf_counter()
        try:
            return listener.transcribe(audios, self.plan.sample_rate, full_window=full_window)
        finally:
            with self._lock:
                self.asr_seconds += time.perf_counter() - started

    def _score(self, row: ManifestRow, transcript: str) -> str | None:
        """Record the transcript and its error rates on the row; the reason it fails, or None."""
        from tasks.audio.asr import score

        said = row.spoken_text or row.text
        s = score(said, transcript, row.lang)
        row.asr_transcript, row.asr_wer, row.asr_cer = transcript[:TRANSCRIPT_CHARS], s.wer, s.cer
        if sum(ch.isalnum() for ch in said) < self.qa.min_chars_for_asr_check:
            return None  # recorded, not judged
        if row.lang == "zh":
            if s.cer > self.qa.max_cer_zh:
                return f"qa: asr: CER {s.cer:.2f} > qa.max_cer_zh {self.qa.max_cer_zh} (heard {transcript[:80]!r})"
        elif s.wer is not None and s.wer > self.qa.max_wer:
            return f"qa: asr: WER {s.wer:.2f} > qa.max_wer {self.qa.max_wer} (heard {transcript[:80]!r})"
        return None


def _badness(attempt: tuple[ManifestRow, Made | None, str | None]) -> tuple[int, float]:
    row, made, error = attempt
    if made is None:
        return 2, 0.0
    if error is None:
        return 0, 0.0
    return 1, (row.asr_cer if row.lang == "zh" else row.asr_wer) or 0.0


def _garbled(raw: np.ndarray, block: int = 4410) -> np.ndarray:
    """Speech made unintelligible but not quieter or shorter: each 0.2 s block reversed (fault injection)."""
    out = raw.copy()
    for start in range(0, raw.size, block):
        out[start : start + block] = raw[start : start + block][::-1]
    return out
