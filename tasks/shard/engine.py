"""Adaptive batching with out-of-memory backoff, independent of any backend.

Items are sorted by cost (the backend's input units: phonemes, tokens), longest first, and packed into
batches whose padded cost (items x longest item) fits a budget. An out-of-memory error lowers the budget by
bisecting between the largest padded cost that worked and the smallest that failed, and the failed batch is
re-split; after enough clean batches the budget grows back, never past the known-bad ceiling, and that
ceiling is slowly forgotten so a device with more room is found again. A chunk that fails alone is retried,
then split at clause boundaries and its audio rejoined; if that fails too it becomes a failed result.
Nothing is lost or repeated: every item yields exactly one result.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from tasks.backends.synthesizer import TimedAudio, Timing, timing_of
from tasks.errors import DeviceFatal, DeviceOutOfMemory, VoxbatchError
from tasks.shard.faults import Faults
from tasks.shard.oom import translate

SynthesizeFn = Callable[[list[str]], list[np.ndarray]]


@dataclass
class BudgetState:
    """What the engine has learned about the device: persisted between runs (see budget_store)."""

    budget: float
    largest_ok: float = 0.0
    smallest_bad: float | None = None


@dataclass(frozen=True)
class EngineConfig:
    max_batch_size: int = 64
    first_batch_size: int | None = None  # a smaller first call: its audio is the first the user sees
    grow_after: int = 5  # clean budget-limited batches before growing toward the ceiling
    forget_after: int = 50  # clean batches after which the known-bad ceiling is raised by 25%
    item_oom_tries: int = 2  # OOMs of a chunk alone before it is split
    converged: float = 0.02  # stop growing when within this share of the ceiling


@dataclass
class ItemResult:
    index: int
    audio: np.ndarray | None
    error: str | None
    batch_size: int
    attempts: int
    oom_retries: int
    seconds: float


@dataclass
class EngineStats:
    batches: int = 0
    ooms: int = 0
    splits: int = 0
    padded_cost: int = 0
    real_cost: int = 0
    compute_seconds: float = 0.0
    trajectory: list[tuple[int, float]] = field(default_factory=list)  # (batch number, budget) at each change

    @property
    def padding_efficiency(self) -> float:
        return self.real_cost / self.padded_cost if self.padded_cost else 1.0

    def __add__(self, more: EngineStats) -> EngineStats:
        """Two engines' work one after the other (a shard's voice groups): the second's batches numbered on."""
        return EngineStats(
            batches=self.batches + more.batches,
            ooms=self.ooms + more.ooms,
            splits=self.splits + more.splits,
            padded_cost=self.padded_cost + more.padded_cost,
            real_cost=self.real_cost + more.real_cost,
            compute_seconds=self.compute_seconds + more.compute_seconds,
            trajectory=self.trajectory + [(self.batches + n, budget) for n, budget in more.trajectory],
        )


@dataclass
class _Item:
    index: int
    text: str
    cost: int
    attempts: int = 0
    oom_retries: int = 0
    alone_ooms: int = 0
    alone: bool = False  # run in a batch of its own (after an OOM alone, or to isolate a bad chunk)


class Engine:
    def __init__(
        self,
        synthesize: SynthesizeFn,
        cost: Callable[[str], int],
        state: BudgetState,
        config: EngineConfig | None = None,
        release: Callable[[], None] = lambda: None,
        split: Callable[[str], list[str]] | None = None,
        gap_samples: int = 0,
        faults: Faults | None = None,
        collect: Callable[[], object] = gc.collect,
    ) -> None:
        self.synthesize = synthesize
        self.cost = cost
        self.state = state
        self.config = config or EngineConfig()
        self.release = release
        self.split = split
        self.gap = np.zeros(gap_samples, dtype=np.float32)
        self.faults = faults if faults is not None and faults.active else None
        self.collect = collect
        self.stats = EngineStats(trajectory=[(0, state.budget)])
        self._since_growth = 0
        self._since_oom = 0

    # -- budget ---------------------------------------------------------------------------------------
    def _set_budget(self, value: float) -> None:
        value = max(1.0, value)
        if value != self.state.budget:
            self.state.budget = value
            self.stats.trajectory.append((self.stats.batches, value))

    def _on_success(self, padded: int, budget_limited: bool) -> None:
        s = self.state
        s.largest_ok = max(s.largest_ok, padded)
        if s.smallest_bad is not None and s.largest_ok >= s.smallest_bad:
            s.smallest_bad = None  # that failure was transient: this size works
        self._since_oom += 1
        if s.smallest_bad is not None and self._since_oom >= self.config.forget_after:
            s.smallest_bad *= 1.25  # the device may have more room now; probe again, slowly
            self._since_oom = 0
        if not budget_limited:
            return  # a batch cut short by the queue or max_batch_size says nothing about the budget
        self._since_growth += 1
        if s.smallest_bad is None:  # no ceiling known: double, like a search for the limit
            self._set_budget(s.budget * 2)
            self._since_growth = 0
        elif self._since_growth >= self.config.grow_after:
            if s.smallest_bad - s.budget > self.config.converged * s.smallest_bad:
                self._set_budget((s.budget + s.smallest_bad) / 2)
            self._since_growth = 0

    def _on_oom(self, padded: int) -> None:
        s = self.state
        self.stats.ooms += 1
        s.smallest_bad = padded if s.smallest_bad is None else min(s.smallest_bad, padded)
        if s.largest_ok >= s.smallest_bad:
            s.largest_ok = s.smallest_bad / 2  # what worked before no longer does: memory is tighter now
        self._set_budget((s.largest_ok + s.smallest_bad) / 2)
        self._since_growth = 0
        self._since_oom = 0

    # -- batches --------------------------------------------------------------------------------------
    def _next_batch(self, queue: deque[_Item]) -> tuple[list[_Item], bool]:
        first = queue.popleft()
        batch = [first]
        if first.alone:
            return batch, False
        width = first.cost  # the queue is sorted longest first
        most = self.config.max_batch_size
        if self.stats.batches == 0 and self.config.first_batch_size:
            most = min(most, self.config.first_batch_size)
        while queue and len(batch) < most and not queue[0].alone:
            if (len(batch) + 1) * width > self.state.budget:
                return batch, True
            batch.append(queue.popleft())
        return batch, False

    def _call(
        self, synthesize: SynthesizeFn, texts: list[str], padded: int
    ) -> tuple[list[np.ndarray] | None, VoxbatchError | None, str]:
        """Run one batch. Returns (audio, None, "") or (None, own error, "") or (None, None, other error)."""
        try:
            audio = synthesize(texts)
            if self.faults is not None:
                # After the work, not before: an injected OOM wastes the whole batch, the worst case.
                self.faults.check(padded, len(texts))
                self.faults.check_texts(texts)
            return audio, None, ""
        except Exception as exc:  # translated to our own types below; nothing keeps `exc` alive
            own = translate(exc)
            if own is not None:
                return None, own, ""
            return None, None, f"{type(exc).__name__}: {exc}"[:2000]

    def run(self, items: Sequence[tuple[int, str]], synthesize: SynthesizeFn | None = None) -> Iterator[ItemResult]:
        """Synthesize (index, text) items; yields one result per item, in completion order. `synthesize`: another
        call than the engine's own (a regeneration with its seed), under the same budget, backoff and faults."""
        synthesize = synthesize or self.synthesize
        measured: list[_Item] = []
        for i, t in items:
            try:
                measured.append(_Item(i, t, max(1, self.cost(t))))
            except Exception as exc:  # a phonemizer or tokenizer that chokes on one text fails that chunk only
                own = translate(exc)
                if isinstance(own, DeviceFatal):
                    raise own from None
                yield ItemResult(i, None, f"cannot measure the text: {type(exc).__name__}: {exc}"[:2000], 0, 0, 0, 0.0)
        queue = deque(sorted(measured, key=lambda x: -x.cost))
        while queue:
            batch, budget_limited = self._next_batch(queue)
            width = max(it.cost for it in batch)
            padded = width * len(batch)
            for it in batch:
                it.attempts += 1
            t0 = time.perf_counter()
            audio, own, other = self._call(synthesize, [it.text for it in batch], padded)
            elapsed = time.perf_counter() - t0
            self.stats.batches += 1
            self.stats.compute_seconds += elapsed
            if audio is not None:
                self.stats.padded_cost += padded
                self.stats.real_cost += sum(it.cost for it in batch)
                self._on_success(padded, budget_limited)
                for it, a in zip(batch, audio, strict=True):
                    yield ItemResult(it.index, a, None, len(batch), it.attempts, it.oom_retries, elapsed / len(batch))
                continue
            if isinstance(own, DeviceFatal):
                raise own
            if isinstance(own, DeviceOutOfMemory):
                own = None  # drop the last reference before freeing memory
                self.collect()
                self._release()
                self._on_oom(padded)
                for it in batch:
                    it.oom_retries += 1
                if len(batch) > 1:
                    queue.extendleft(reversed(batch))
                    continue
                yield from self._oom_alone(batch[0], queue, synthesize)
                continue
            # Some other error: isolate each chunk so only the bad one fails.
            if len(batch) > 1:
                for it in reversed(batch):
                    it.alone = True
                    queue.appendleft(it)
                continue
            it = batch[0]
            yield ItemResult(it.index, None, other, 1, it.attempts, it.oom_retries, elapsed)

    def _release(self) -> None:
        """The backend frees its cache; if it cannot recover (a session that fails to load again), stop the worker."""
        try:
            self.release()
        except Exception as exc:
            raise DeviceFatal(
                f"the backend could not recover after running out of memory: {type(exc).__name__}: {exc}"[:500],
                hint="restart the worker; finished chunks are kept",
            ) from exc

    def _oom_alone(self, it: _Item, queue: deque[_Item], synthesize: SynthesizeFn) -> Iterator[ItemResult]:
        it.alone_ooms += 1
        if it.alone_ooms < self.config.item_oom_tries:
            it.alone = True
            queue.appendleft(it)
            return
        parts = self.split(it.text) if self.split else [it.text]
        if len(parts) < 2:
            yield ItemResult(
                it.index,
                None,
                f"out of memory even alone (cost {it.cost}, {it.oom_retries} backoffs) and it cannot be split "
                "further: lower text.max_chars_* or use a device with more memory",
                1,
                it.attempts,
                it.oom_retries,
                0.0,
            )
            return
        self.stats.splits += 1
        results = sorted(self.run(list(enumerate(parts)), synthesize), key=lambda r: r.index)
        failed = next((r for r in results if r.audio is None), None)
        attempts = it.attempts + sum(r.attempts for r in results)
        oom_retries = it.oom_retries + sum(r.oom_retries for r in results)
        seconds = sum(r.seconds for r in results)
        if failed is not None:
            yield ItemResult(
                it.index, None, f"split into {len(parts)}: {failed.error}", 1, attempts, oom_retries, seconds
            )
            return
        pieces: list[np.ndarray] = []
        placed: list[tuple[Timing, int, int]] = []  # each part's timing, first sample and first character
        at, char = 0, 0
        for part, r in zip(parts, results, strict=True):
            if r.audio is not None:
                if pieces:
                    pieces.append(self.gap)
                    at += self.gap.size
                found = it.text.find(part, char)  # the parts are slices of the text, whitespace between them
                char = found if found >= 0 else char
                placed.append((timing_of(r.audio), at, char))
                char += len(part)
                pieces.append(r.audio)
                at += r.audio.size
        audio = TimedAudio.of(np.concatenate(pieces), Timing.joined(placed))
        yield ItemResult(it.index, audio, None, 1, attempts, oom_retries, seconds)
