"""One shard's work: skip finished chunks, synthesize the rest, post-process, check, store, and build its rows.

Plain Python, no Prefect: the flow wraps it in a task. Audio objects are keyed by chunk id, so a chunk whose
object already exists (from a killed run, or another run with the same settings) is not synthesized again.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tasks import audio, budget_store, faults, qa
from tasks.backends.base import Synthesizer
from tasks.chunking import chunk_paragraph, detect_lang, is_speakable
from tasks.config import Settings
from tasks.engine import BudgetState, Engine, EngineConfig, EngineStats, ItemResult
from tasks.errors import StorageError
from tasks.manifest import chunk_columns
from tasks.oom import DeviceFatal
from tasks.plan import Plan, PlannedChunk
from tasks.storage import ObjectStore

ProgressFn = Callable[[int, float], None]  # (chunks finished, audio seconds they hold)


def audio_key(chunk_id: str, fmt: str) -> str:
    # A hash-leading key spreads objects across folders (and S3 prefixes).
    return f"audio/{chunk_id[:2]}/{chunk_id}.{fmt}"


@dataclass
class ShardStats:
    shard: int
    chunks: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    reused: int = 0
    synthesized: int = 0  # chunks this call sent to the synthesizer (ok or failed)
    audio_seconds: float = 0.0
    synth_seconds: float = 0.0
    wall_seconds: float = 0.0
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

    def add(self, row: dict[str, Any]) -> None:
        self.chunks += 1
        status = row["status"]
        setattr(self, status, getattr(self, status) + 1)
        self.reused += bool(row["reused"])
        self.audio_seconds += row["duration_s"] or 0.0
        self.synth_seconds += row["synth_seconds"] or 0.0
        if status == "failed" and len(self.errors) < 5:
            self.errors.append(f"{row['source']}:{row['line']} chunk {row['chunk_index']}: {row['error']}")


def _base_row(plan: Plan, c: PlannedChunk, fmt: str) -> dict[str, Any]:
    return {
        **chunk_columns(plan.run_id, c),
        "voice": plan.voice.name,
        "model": f"{plan.voice.backend}:{plan.voice.name}",
        "model_sha256": plan.voice.model_sha256,
        "params_json": plan.params_json,
        "audio_uri": None,
        "audio_key": None,
        "format": fmt,
        "sample_rate": plan.sample_rate,
        "num_samples": None,
        "duration_s": None,
        "audio_bytes": None,
        "audio_checksum": None,
        "batch_size": None,
        "attempts": 0,
        "oom_retries": 0,
        "device": None,
        "synth_seconds": 0.0,
        "reused": False,
        "status": "ok",
        "error": None,
        "peak_dbfs": None,
        "rms_dbfs": None,
        "clipped_fraction": None,
        "chars_per_second": None,
        "loudness_lufs": None,
        "created_at": datetime.now(UTC),
    }


def _with_audio(row: dict[str, Any], store: ObjectStore, key: str, data: bytes) -> dict[str, Any]:
    rate, frames = audio.probe(data)
    row.update(
        audio_uri=store.uri(key),
        audio_key=key,
        sample_rate=rate,
        num_samples=frames,
        duration_s=frames / rate,
        audio_bytes=len(data),
        audio_checksum="sha256:" + hashlib.sha256(data).hexdigest(),
    )
    return row


def _reused_row(row: dict[str, Any], store: ObjectStore, key: str, text: str) -> dict[str, Any]:
    """A row for audio that already exists: levels are measured on the stored audio."""
    data = store.get(key)
    _with_audio(row, store, key, data)
    samples, rate = audio.decode(data)
    m = qa.measure(samples, row["duration_s"], text)
    row.update(
        reused=True,
        loudness_lufs=qa.loudness_lufs(samples, rate),
        peak_dbfs=m.peak_dbfs,
        rms_dbfs=m.rms_dbfs,
        clipped_fraction=m.clipped_fraction,
        chars_per_second=m.chars_per_second,
    )
    return row


def _finish(
    row: dict[str, Any], raw: np.ndarray, plan: Plan, settings: Settings, store: ObjectStore, key: str
) -> dict[str, Any]:
    """Post-process one chunk's raw audio, check it, and store it if it passes."""
    a = settings.audio
    out = audio.trim_silence(raw, plan.voice.sample_rate, a.pad_seconds) if a.trim_silence else raw
    out = audio.resample(out, plan.voice.sample_rate, plan.sample_rate, a.resampler)
    m = qa.measure(raw, out.size / plan.sample_rate, row["text"])
    row.update(
        peak_dbfs=m.peak_dbfs,
        rms_dbfs=m.rms_dbfs,
        clipped_fraction=m.clipped_fraction,
        chars_per_second=m.chars_per_second if np.isfinite(m.chars_per_second) else None,
    )
    found = qa.problems(m, row["text"], row["lang"], settings.qa)
    if found:
        row.update(status="failed", error="qa: " + "; ".join(found), duration_s=m.duration_s)
        return row
    final = audio.set_peak(out, a.peak_dbfs)
    row["loudness_lufs"] = qa.loudness_lufs(final, plan.sample_rate)
    data = audio.encode(final, plan.sample_rate, a.format)
    if not store.put(key, data):  # another worker finished the same chunk first: keep its object
        data = store.get(key)
        row["reused"] = True
    return _with_audio(row, store, key, data)


def split_for_retry(text: str) -> list[str]:
    """How the engine splits a chunk that runs out of memory alone: in halves, at clause boundaries first."""
    if len(text) < 8:
        return [text]
    return [c.text for c in chunk_paragraph(text, detect_lang(text), max(4, (len(text) + 1) // 2))]


def _engine_for(synth: Synthesizer, settings: Settings) -> tuple[Engine, Path, dict[str, Any]]:
    e = settings.engine
    state_dir = Path(e.state_dir).expanduser() if e.state_dir else budget_store.default_dir()
    key = synth.memory_key()
    state = budget_store.load(state_dir, key) or BudgetState(float(e.initial_budget))
    config = EngineConfig(
        max_batch_size=settings.synthesis.batch_size if synth.supports_batching else 1,
        grow_after=e.grow_after,
        forget_after=e.forget_after,
        item_oom_tries=e.item_oom_tries,
    )
    engine = Engine(
        synth.synthesize,
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


def process_shard(
    plan: Plan,
    shard: int,
    settings: Settings,
    store: ObjectStore,
    load_synthesizer: Callable[[], Synthesizer],
    previous_rows: list[dict[str, Any]] | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[list[dict[str, Any]], ShardStats]:
    """Do one shard; returns its manifest rows (in plan order) and stats. Never raises for one bad chunk.

    A fatal device error (DeviceFatal) is raised with `partial_rows` attached: the rows finished so far,
    for the caller to commit before the worker exits.
    """
    started = time.perf_counter()
    progress = on_progress or (lambda n, s: None)
    fmt = settings.audio.format
    done_before = {r["chunk_id"]: r for r in previous_rows or [] if r["status"] in ("ok", "skipped")}
    rows: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    chunks = plan.shard(shard)
    for i, c in enumerate(chunks):
        key = audio_key(c.chunk_id, fmt)
        prior = done_before.get(c.chunk_id)
        if prior is not None and (prior["status"] == "skipped" or store.exists(key)):
            rows[i] = {**_base_row(plan, c, fmt), **{k: prior[k] for k in prior if k not in ("run_id", "shard")}}
        elif not is_speakable(c.text):
            rows[i] = {**_base_row(plan, c, fmt), "status": "skipped", "error": "no speakable text"}
        elif store.exists(key):
            rows[i] = _reused_row(_base_row(plan, c, fmt), store, key, c.text)
        else:
            todo.append(i)
            continue
        progress(1, rows[i]["duration_s"] or 0.0)

    stats = ShardStats(shard, synthesized=len(todo))
    if todo:
        synth = load_synthesizer()  # loaded only when there is work: a finished shard costs no model load
        engine, state_dir, key = _engine_for(synth, settings)
        try:
            for result in engine.run([(i, chunks[i].text) for i in todo]):
                rows[result.index] = row = _row_for(result, chunks[result.index], plan, settings, store, synth)
                progress(1, row["duration_s"] or 0.0)
        except DeviceFatal as exc:
            exc.partial_rows = [rows[i] for i in sorted(rows)]  # type: ignore[attr-defined]
            raise
        finally:
            budget_store.save(state_dir, key, engine.state)
            stats.engine = engine.stats

    ordered = [rows[i] for i in range(len(chunks))]
    for row in ordered:
        stats.add(row)
    stats.wall_seconds = time.perf_counter() - started
    return ordered, stats


def _row_for(
    result: ItemResult, c: PlannedChunk, plan: Plan, settings: Settings, store: ObjectStore, synth: Synthesizer
) -> dict[str, Any]:
    fmt = settings.audio.format
    row = _base_row(plan, c, fmt)
    row.update(
        batch_size=result.batch_size,
        attempts=result.attempts,
        oom_retries=result.oom_retries,
        device=synth.device,
        synth_seconds=result.seconds,
    )
    if result.audio is None:
        return {**row, "status": "failed", "error": result.error}
    try:
        return _finish(row, result.audio, plan, settings, store, audio_key(c.chunk_id, fmt))
    except StorageError:
        raise  # the output location is broken: every later chunk would fail the same way
    except Exception as exc:  # post-processing of one chunk failed: record it, go on
        return {**row, "status": "failed", "error": f"post-processing: {type(exc).__name__}: {exc}"[:2000]}
