"""One shard's chunks through the stages: synthesized, finished and checked, stored, each made into its row.

    planned chunk -> Synthesized (synthesis) -> Checked (checker: finish, listen, regenerate)
                  -> StoredAudio (storing, on upload threads) -> ManifestRow (rows)

Chunks done before (in a committed manifest or a checkpoint), refused at plan time, with nothing to say, or whose
audio object exists already become their rows without synthesis. Plain Python, no Prefect, no commit:
tasks.shard.lifecycle decides what is done before and commits after. Audio objects are keyed by chunk id and
written once; storage writes overlap synthesis on a thread pool (tasks.shard.upload).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasks.backends.synthesizer import Synthesizer
from tasks.config import Settings
from tasks.errors import DeviceFatal
from tasks.plan.file import Plan
from tasks.shard import budgets, faults
from tasks.shard.checker import Checked, Checker, Verdict
from tasks.shard.engine import EngineStats
from tasks.shard.finish import ChunkAudio
from tasks.shard.rows import ManifestRow, Place, carried_row, made_row, refused_row, reused_row, skipped_row
from tasks.shard.stats import ShardStats
from tasks.shard.storing import store_audio, stored_audio
from tasks.shard.synthesis import Synthesized, engine_for, synthesize_group, voice_groups
from tasks.shard.upload import Uploader
from tasks.shard.work_items import ShardWork
from tasks.storage import ObjectStore
from tasks.storage.layout import audio_key, review_key
from tasks.text.chunking import is_speakable

ProgressFn = Callable[[int, float], None]  # (chunks finished, audio seconds they hold)
CheckpointFn = Callable[[list[ManifestRow]], object]  # rows whose audio is stored, so far


@dataclass(frozen=True)
class ShardResult:
    """Rows in plan order (all of them unless `fatal`: then those finished), stats, and a fatal device error."""

    rows: list[ManifestRow]
    stats: ShardStats
    fatal: DeviceFatal | None = None


def process_shard(
    plan: Plan,
    shard: int,
    settings: Settings,
    store: ObjectStore,
    load_synthesizer: Callable[[str], Synthesizer],
    previous_rows: list[ManifestRow] | None = None,
    on_progress: ProgressFn | None = None,
    checkpoint: CheckpointFn | None = None,
) -> ShardResult:
    """Do one shard's missing work. One bad chunk becomes a failed row; a storage failure raises StorageError;
    a fatal device error stops synthesis and is returned in the result with the rows finished so far."""
    return _ShardPass(plan, shard, settings, store, on_progress, checkpoint).run(load_synthesizer, previous_rows)


class _ShardPass:
    """The state of one pass over a shard: the rows made so far (by chunk index), the writes in flight, the
    checker, the engines' counters and when the checkpoint was last written."""

    def __init__(
        self,
        plan: Plan,
        shard: int,
        settings: Settings,
        store: ObjectStore,
        on_progress: ProgressFn | None,
        checkpoint: CheckpointFn | None,
    ) -> None:
        self.plan, self.settings, self.store = plan, settings, store
        self.fmt = settings.audio.format
        self.chunks = plan.shard(shard)
        self.places = [Place.of(plan, c, self.fmt) for c in self.chunks]
        self.keys = [audio_key(c.chunk_id, self.fmt) for c in self.chunks]
        self.rows: dict[int, ManifestRow] = {}
        self.on_progress = on_progress
        self.checkpoint = checkpoint
        self.uploads: Uploader[ManifestRow] = Uploader()
        self.engine = EngineStats()  # the engines' counters, voice group after voice group
        self.checkpoints, self.checkpoint_seconds = 0, 0.0
        self._last_checkpoint = time.perf_counter()

    def run(self, load_synthesizer: Callable[[str], Synthesizer], previous: list[ManifestRow] | None) -> ShardResult:
        started = time.perf_counter()
        todo = self._without_synthesis(previous or [])
        fatal: DeviceFatal | None = None
        asr_seconds, regenerations, heard, spot_checked = 0.0, 0, 0, 0
        if todo:
            checker = Checker(self.plan.sample_rate, self.settings, garble=faults.from_env().garbles)
            try:
                self._synthesize(ShardWork(self.chunks, todo), load_synthesizer, checker)
            except DeviceFatal as exc:
                fatal = exc  # returned as a value: the caller commits what is finished, then stops the worker
            finally:
                for i, row in self.uploads.finish():
                    self._finished(i, row)
                checker.close()
                asr_seconds, regenerations = checker.asr_seconds, checker.regenerations
                heard, spot_checked = checker.heard, checker.spot_checked
            if self.uploads.errors:
                raise self.uploads.errors[0]  # the output location is broken: the checkpoint keeps what was stored
        indices = sorted(self.rows) if fatal else range(len(self.chunks))
        ordered = [self.rows[i] for i in indices]
        stats = dataclasses.replace(
            ShardStats.from_rows(ordered).with_engine(self.engine),
            synthesized=len(todo),
            wall_seconds=time.perf_counter() - started,
            storage_wait_seconds=self.uploads.wait_seconds + self.checkpoint_seconds,
            asr_seconds=asr_seconds,
            regenerations=regenerations,
            asr_heard=heard,
            asr_spot_checked=spot_checked,
            checkpoints=self.checkpoints,
        )
        return ShardResult(ordered, stats, fatal)

    def _without_synthesis(self, previous: list[ManifestRow]) -> list[int]:
        """Rows for the chunks that need no synthesis; returns the indices of those that do."""
        done_before = {r.chunk_id: r for r in previous if r.done}
        speakable = [is_speakable(c.spoken_text or c.text) for c in self.chunks]
        unknown = [
            i for i, c in enumerate(self.chunks) if c.chunk_id not in done_before and speakable[i] and not c.error
        ]
        found = self.store.existing([self.keys[i] for i in unknown])  # a local stat each; remote stores confirm none
        todo: list[int] = []
        for i, c in enumerate(self.chunks):
            place, prior = self.places[i], done_before.get(c.chunk_id)
            if c.error:  # refused at plan time (text.bad_rows = "failed")
                self._finished(i, refused_row(place, c.error))
            elif prior is not None:
                self._finished(i, carried_row(place, prior))
            elif not speakable[i]:
                self._finished(i, skipped_row(place))
            elif self.keys[i] in found:
                self._finished(i, reused_row(place, stored_audio(self.store, self.keys[i], place.said)))
            else:
                todo.append(i)
        return todo

    def _synthesize(self, work: ShardWork, load_synthesizer: Callable[[str], Synthesizer], checker: Checker) -> None:
        """Every group of work items through its voice's engine, each chunk then checked and stored."""
        for group in voice_groups(self.chunks, work, self.settings):
            # Loaded only when there is work (a finished shard costs no model load); a worker keeps the most
            # recently used voices loaded (synthesis.max_loaded_voices).
            synth = load_synthesizer(group.voice)
            engine, state_dir, memory_key = engine_for(synth, self.settings, group.options)
            made: dict[int, Synthesized] = {}
            checker.expect(len({work.chunk_of(n) for n in group.items}))
            try:
                for i, synthesized in synthesize_group(engine, synth, group, work, self.plan, self.settings):
                    made[i] = synthesized
                    self._deliver(made, self._check(i, synthesized, checker))
                    self._checkpoint_now_and_then()
                self._deliver(made, checker.flush())  # while this voice is loaded: regenerations need it
            finally:
                budgets.save(state_dir, memory_key, engine.state)
                self.engine = self.engine + engine.stats

    def _check(self, i: int, synthesized: Synthesized, checker: Checker) -> list[Verdict]:
        c = self.chunks[i]
        if synthesized.audio is None:  # the synthesizer could not make it: nothing to check
            return [(i, Checked(None, None, 0, synthesized.error))]
        chunk = ChunkAudio(
            c.chunk_id, self.places[i].said, c.lang, self.plan.voices[c.voice].sample_rate, self.plan.sample_rate
        )
        return checker.offer(i, chunk, synthesized.audio, synthesized.redo)

    def _deliver(self, made: dict[int, Synthesized], verdicts: list[Verdict]) -> None:
        """Rows for failed chunks now; the others' audio to the upload pool (a flagged chunk's under review/), their
        rows as the writes finish."""
        for i, checked in verdicts:
            place, synthesized = self.places[i], made.pop(i)
            data = checked.finished.data if checked.finished is not None else None
            samples = checked.finished.samples if checked.finished is not None else None
            if (checked.error is not None and not checked.flagged) or data is None or samples is None:
                self._finished(i, made_row(place, synthesized, checked))
                continue
            key = review_key(place.chunk_id, self.fmt) if checked.flagged else self.keys[i]
            write = functools.partial(self._store, place, synthesized, checked, key, data, samples)
            for j, row in self.uploads.submit(i, write):
                self._finished(j, row)

    def _store(
        self, place: Place, made: Synthesized, checked: Checked, key: str, data: bytes, samples: np.ndarray
    ) -> ManifestRow:
        """On an upload thread: the chunk's audio stored, and its row."""
        return made_row(place, made, checked, store_audio(self.store, key, data, samples, place.said))

    def _finished(self, i: int, row: ManifestRow) -> None:
        self.rows[i] = row
        if self.on_progress is not None:
            self.on_progress(1, (row.duration_s or 0.0) if row.status == "ok" else 0.0)

    def _checkpoint_now_and_then(self) -> None:
        """Record the rows whose audio is stored every `run.checkpoint_seconds` (on this thread: synthesis waits)."""
        if (
            self.checkpoint is None
            or time.perf_counter() - self._last_checkpoint <= self.settings.run.checkpoint_seconds
        ):
            return
        t0 = time.perf_counter()
        self.checkpoint([self.rows[j] for j in sorted(self.rows) if self.rows[j].done])
        self._last_checkpoint = time.perf_counter()
        self.checkpoints += 1
        self.checkpoint_seconds += self._last_checkpoint - t0
