"""One shard's chunks: skip what is done, synthesize the rest, post-process, check, store, and build their rows.

Plain Python, no Prefect, no commit: tasks.shard.lifecycle decides what is done before and commits after. Audio objects
are keyed by chunk id and written once, so a chunk whose object exists (a killed run, another run with the
same settings) is never stored twice; storage writes overlap synthesis on a thread pool (tasks.shard.upload).
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.backends.synthesizer import Synthesizer, SynthOptions
from tasks.config import Settings
from tasks.errors import DeviceFatal
from tasks.plan.file import Plan, PlannedChunk
from tasks.shard import budgets, faults
from tasks.shard.checker import Checker, Redo
from tasks.shard.engine import BudgetState, Engine, EngineConfig, EngineStats, ItemResult
from tasks.shard.manifest import ManifestRow
from tasks.shard.rows import base_row, reused_row, store_chunk, with_place
from tasks.shard.upload import Uploader
from tasks.shard.work_items import ShardWork
from tasks.storage import ObjectStore
from tasks.storage.layout import audio_key
from tasks.text.chunking import chunk_paragraph, detect_lang, is_speakable

ProgressFn = Callable[[int, float], None]  # (chunks finished, audio seconds they hold)
CheckpointFn = Callable[[list[ManifestRow]], None]  # rows whose audio is stored, so far


@dataclass
class ShardStats:
    shard: int
    chunks: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    reused: int = 0
    synthesized: int = 0  # chunks this call sent to the synthesizer (ok or failed)
    audio_seconds: float = 0.0  # of ok chunks only: audio that failed QA is not delivered
    synth_seconds: float = 0.0
    wall_seconds: float = 0.0
    storage_wait_seconds: float = 0.0  # time synthesis stood still waiting for storage writes
    asr_seconds: float = 0.0  # time spent transcribing chunks (qa.asr)
    regenerations: int = 0  # chunks synthesized again after failing a check
    checkpoints: int = 0
    errors: list[str] = field(default_factory=list)
    engine: EngineStats | None = None

    def to_dict(self) -> dict[str, Any]:
        """What a shard records beside its manifest: counts, budget trajectory, padding and speed."""
        e = self.engine
        return {
            **{k: v for k, v in asdict(self).items() if k != "engine"},
            "batches": e.batches if e else 0,
            "ooms": e.ooms if e else 0,
            "splits": e.splits if e else 0,
            "budget_trajectory": e.trajectory if e else [],
            "padding_efficiency": e.padding_efficiency if e else None,
            "compute_seconds": e.compute_seconds if e else 0.0,
            "audio_seconds_per_compute_second": (
                self.audio_seconds / e.compute_seconds if e and e.compute_seconds else None
            ),
        }

    @classmethod
    def from_rows(cls, shard: int, rows: list[ManifestRow]) -> ShardStats:
        """Counts of a committed shard, from its manifest rows (nothing synthesized by this call)."""
        stats = cls(shard)
        for row in rows:
            stats.add(row)
        return stats

    def add(self, row: ManifestRow) -> None:
        self.chunks += 1
        setattr(self, row.status, getattr(self, row.status) + 1)
        self.reused += bool(row.reused)
        if row.status == "ok":
            self.audio_seconds += row.duration_s or 0.0
        self.synth_seconds += row.synth_seconds or 0.0
        if row.status == "failed" and len(self.errors) < 5:
            self.errors.append(f"{row.source}:{row.line} chunk {row.chunk_index}: {row.error}")


@dataclass
class ShardResult:
    """Rows in plan order (all of them unless `fatal`: then those finished), stats, and a fatal device error."""

    rows: list[ManifestRow]
    stats: ShardStats
    fatal: DeviceFatal | None = None


def split_for_retry(text: str) -> list[str]:
    """How the engine splits a chunk that runs out of memory alone: in halves, at clause boundaries first."""
    if len(text) < 8:
        return [text]
    return [c.text for c in chunk_paragraph(text, detect_lang(text), max(4, (len(text) + 1) // 2))]


TEXTS_PER_LANE = 4


def _max_batch_size(synth: Synthesizer, settings: Settings) -> int:
    if synth.supports_batching:
        return settings.synthesis.batch_size
    # Lanes: a call returns when its last text is done, so each lane gets several texts (the engine's queue is
    # sorted by length: they end close together). Measured, 2 lanes on 2 cores, 20 KB: 2 texts each 1.06x the
    # plain loop's steady throughput, 4 each 1.10x, 8 each 1.17x but the first audio 2 s later than with 4.
    return synth.lanes * TEXTS_PER_LANE if synth.lanes > 1 else 1


def _engine_for(
    synth: Synthesizer, settings: Settings, options: SynthOptions | None = None
) -> tuple[Engine, Path, dict[str, Any]]:
    e = settings.engine
    state_dir = Path(e.state_dir).expanduser() if e.state_dir else budgets.default_dir()
    key = synth.memory_key()
    state = budgets.load(state_dir, key) or BudgetState(float(e.initial_budget))
    config = EngineConfig(
        max_batch_size=_max_batch_size(synth, settings),
        first_batch_size=synth.lanes if synth.lanes > 1 else None,  # a text per lane: the first audio sooner
        grow_after=e.grow_after,
        forget_after=e.forget_after,
        item_oom_tries=e.item_oom_tries,
    )
    engine = Engine(
        synth.synthesize if options is None else functools.partial(synth.synthesize, options=options),
        synth.cost,
        state,
        config,
        release=synth.release,
        split=split_for_retry,
        gap_samples=int(0.12 * synth.info.sample_rate),  # a clause pause where a split chunk is rejoined
        faults=faults.from_env(),
        # A full collection costs about 0.24 s here with torch loaded. On a GPU it is worth it (a reference
        # cycle can pin gigabytes); on the CPU the failed batch's arrays are freed by reference counting once
        # the except block is left, so the young generations suffice.
        collect=gc.collect if synth.device != "cpu" else lambda: gc.collect(1),
    )
    return engine, state_dir, key


def _groups(
    chunks: list[PlannedChunk], work: ShardWork, settings: Settings
) -> list[tuple[str, SynthOptions | None, list[int]]]:
    """The work items (chunks, and the parts of mixed ones) grouped by voice and per-row options (pace,
    speaker), voice by voice: one engine runs each group, so a batch never mixes voices or options."""
    groups: dict[tuple[str, float, str], list[int]] = {}
    for n in work.items:
        c = chunks[work.chunk_of(n)]
        params = json.loads(c.params_json)
        key = (work.voice(n), float(params.get("length_scale", settings.synthesis.length_scale)), c.speaker)
        groups.setdefault(key, []).append(n)
    out = []
    for (voice, scale, speaker), indices in sorted(groups.items(), key=lambda g: g[0][0]):  # stable: plan order
        plain = scale == settings.synthesis.length_scale and not speaker
        out.append((voice, None if plain else SynthOptions(scale, speaker), indices))
    return out


def _merged(total: EngineStats | None, more: EngineStats) -> EngineStats:
    if total is None:
        return more
    offset = total.batches
    return EngineStats(
        batches=total.batches + more.batches,
        ooms=total.ooms + more.ooms,
        splits=total.splits + more.splits,
        padded_cost=total.padded_cost + more.padded_cost,
        real_cost=total.real_cost + more.real_cost,
        compute_seconds=total.compute_seconds + more.compute_seconds,
        trajectory=total.trajectory + [(offset + n, budget) for n, budget in more.trajectory],
    )


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
    started = time.perf_counter()
    progress = on_progress or (lambda n, s: None)
    fmt = settings.audio.format
    chunks = plan.shard(shard)
    keys = [audio_key(c.chunk_id, fmt) for c in chunks]
    done_before = {r.chunk_id: r for r in previous_rows or [] if r.done}
    rows: dict[int, ManifestRow] = {}

    def finished(i: int, row: ManifestRow) -> None:
        rows[i] = row
        progress(1, (row.duration_s or 0.0) if row.status == "ok" else 0.0)

    speakable = [is_speakable(c.spoken_text or c.text) for c in chunks]
    unknown = [i for i, c in enumerate(chunks) if c.chunk_id not in done_before and speakable[i] and not c.error]
    found = store.existing([keys[i] for i in unknown])  # a local stat each; remote stores confirm none
    todo: list[int] = []
    for i, c in enumerate(chunks):
        prior = done_before.get(c.chunk_id)
        if c.error:  # refused at plan time (text.bad_rows = "failed")
            finished(i, dataclasses.replace(base_row(plan, c, fmt), status="failed", error=c.error))
        elif prior is not None:
            finished(i, with_place(prior, base_row(plan, c, fmt)))
        elif not speakable[i]:
            finished(i, dataclasses.replace(base_row(plan, c, fmt), status="skipped", error="no speakable text"))
        elif keys[i] in found:
            finished(i, reused_row(base_row(plan, c, fmt), store, keys[i]))
        else:
            todo.append(i)

    stats = ShardStats(shard, synthesized=len(todo))
    fatal: DeviceFatal | None = None
    if todo:
        uploads: Uploader[ManifestRow] = Uploader()
        checker = Checker(plan, settings, garble=faults.from_env().garbles)
        last_checkpoint = time.perf_counter()
        checkpoint_seconds = 0.0
        work = ShardWork(chunks, todo)

        def deliver(ready: list[tuple[int, ManifestRow, tuple[Any, bytes] | None]]) -> None:
            for i, row, made in ready:
                if made is None:
                    finished(i, row)
                    continue
                final, data = made
                done = uploads.submit(i, lambda r=row, k=keys[i], d=data, f=final: store_chunk(store, r, k, d, f))
                for j, stored in done:
                    finished(j, stored)

        try:
            for voice_key, options, group in _groups(chunks, work, settings):
                # Loaded only when there is work (a finished shard costs no model load); a worker keeps the
                # most recently used voices loaded (synthesis.max_loaded_voices).
                synth = load_synthesizer(voice_key)
                engine, state_dir, memory_key = _engine_for(synth, settings, options)
                try:
                    for part_result in engine.run([(n, work.text(n)) for n in group]):
                        joined = work.deliver(part_result, synth, plan, settings)
                        if joined is None:
                            continue  # a part of a mixed chunk whose other parts are still to come
                        result, synth_done = joined
                        i = result.index
                        row = _row_for(result, chunks[i], plan, synth_done, fmt)
                        row.mixed, row.voices = work.spoken_by(i)
                        again = None if row.mixed else _redo(synth_done, options, work.text(i))
                        deliver(checker.offer(i, row, result.audio, again))
                        if (
                            checkpoint is not None
                            and time.perf_counter() - last_checkpoint > settings.run.checkpoint_seconds
                        ):
                            t0 = time.perf_counter()
                            checkpoint([rows[j] for j in sorted(rows) if rows[j].done])
                            last_checkpoint = time.perf_counter()
                            stats.checkpoints += 1
                            checkpoint_seconds += last_checkpoint - t0  # on this thread: synthesis waits too
                    deliver(checker.flush())  # while this voice is loaded: regenerations need it
                finally:
                    budgets.save(state_dir, memory_key, engine.state)
                    stats.engine = _merged(stats.engine, engine.stats)
        except DeviceFatal as exc:
            fatal = exc  # returned as a value: the caller commits what is finished, then stops the worker
        finally:
            for j, stored in uploads.finish():
                finished(j, stored)
            stats.storage_wait_seconds = uploads.wait_seconds + checkpoint_seconds
            checker.close()
            stats.asr_seconds, stats.regenerations = checker.asr_seconds, checker.regenerations
        if uploads.errors:
            raise uploads.errors[0]  # the output location is broken: the checkpoint keeps what was stored

    ordered = [rows[i] for i in sorted(rows)] if fatal else [rows[i] for i in range(len(chunks))]
    for row in ordered:
        stats.add(row)
    stats.wall_seconds = time.perf_counter() - started
    return ShardResult(ordered, stats, fatal)


def _redo(synth: Synthesizer, options: SynthOptions | None, text: str) -> Redo | None:
    """How to synthesize a chunk again with a given noise seed; None for a voice that would repeat itself."""
    if not synth.sampling:
        return None
    return lambda seed: synth.synthesize([text], dataclasses.replace(options or SynthOptions(), seed=seed))[0]


def _row_for(result: ItemResult, c: PlannedChunk, plan: Plan, synth: Synthesizer, fmt: str) -> ManifestRow:
    row = base_row(plan, c, fmt)
    row.batch_size, row.attempts, row.oom_retries = result.batch_size, result.attempts, result.oom_retries
    row.device, row.synth_seconds = synth.device, result.seconds
    if result.audio is None:
        row.status, row.error = "failed", result.error
    return row
