"""A finished run of any size, written straight in the real layout without synthesizing anything.

`synthetic_run(out, rows)` writes what a committed run leaves under OUT: runs/<run_id>/plan.parquet (a real plan
file, format and checksums as the planner writes them, with the tone voice's record), manifests/<run_id>/
shard-NNNNN.parquet (MANIFEST_SCHEMA, every planned chunk, a few failed) and the audio objects the ok rows point
at. Audio is tiny (10 ms FLAC) and shared: row i points at one of `audio_objects` objects, so a million rows need
a hundred files, not a million. For the memory benchmark (tests/benchmarks/bench_results_memory.py) and tests.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from tasks.config import validate_settings
from tasks.plan.file import PlanRow, PlanWriter, header_for
from tasks.shard.rows import MANIFEST_SCHEMA
from tasks.storage import open_store
from tasks.storage.layout import audio_key, manifest_key, plan_key

SAMPLE_RATE = 22050
REASONS = ("qa: too short for its text", "qa: clipped ({n}% of samples)", "synthesis: out of memory at batch {n}")


def _chunk_id(i: int) -> str:
    return f"{(i * 2654435761) % (1 << 64):016x}{i:048x}"


def _text(i: int) -> str:
    return f"Line {i} of the harbour log: the tide turned at {i % 12 + 1} o'clock and the boats came in."


def _plan_row(i: int) -> PlanRow:
    return PlanRow(0, "doc-0", "harbour.txt", i, i + 1, 0, "", _chunk_id(i), _text(i), None, "en", "tone", "{}",
                   "", 0, "", "", "", "")  # fmt: skip


def synthetic_run(
    out: Path, rows: int, *, shard_size: int = 200, failed_every: int = 97, audio_objects: int = 100
) -> str:
    """Write a finished run of `rows` chunks under `out`; returns its run id. Every `failed_every`-th chunk failed
    (one of three reasons, with particulars); the rest ok, with measures (ASR figures on every third)."""
    from tasks.backends.registry import resolve_voice

    settings = validate_settings({"synthesis": {"backend": "tone"}, "run": {"shard_size": shard_size}})
    voice = resolve_voice(settings.synthesis)
    run_id = f"synthetic-{rows}"
    store = open_store(str(out))
    writer = PlanWriter(shard_size)
    block = 50_000
    for start in range(0, rows, block):
        writer.extend([_plan_row(i) for i in range(start, min(rows, start + block))])
    writer.flush()  # the last row group, so its digest is in the header
    header = header_for(writer, run_id, {"tone": voice}, SAMPLE_RATE, settings.model_dump(), [], [])
    store.put_file(plan_key(run_id), writer.close(header), overwrite=True)

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(SAMPLE_RATE // 100, np.float32), SAMPLE_RATE, format="FLAC")
    audio = [audio_key(_chunk_id(10**12 + k), "flac") for k in range(audio_objects)]
    for key in audio:
        store.put(key, buffer.getvalue(), overwrite=True)

    created = datetime(2026, 12, 4, tzinfo=UTC)
    for shard, first in enumerate(range(0, rows, shard_size)):
        index = np.arange(first, min(rows, first + shard_size))
        failed = (index % failed_every == failed_every - 1) if failed_every else np.zeros(len(index), bool)
        ids = index.tolist()  # Python ints (the id's arithmetic overflows int64)
        keys = [audio[i % audio_objects] for i in ids]
        asr = index % 3 == 0
        columns = {
            "run_id": [run_id] * len(index),
            "shard": [shard] * len(index),
            "doc_id": ["doc-0"] * len(index),
            "source": ["harbour.txt"] * len(index),
            "chunk_index": index,
            "line": index + 1,
            "chunk_id": [_chunk_id(i) for i in ids],
            "text": [_text(i) for i in ids],
            "lang": ["en"] * len(index),
            "voice": ["tone"] * len(index),
            "model": ["tone:tone"] * len(index),
            "audio_uri": [None if f else store.uri(k) for f, k in zip(failed, keys, strict=True)],
            "audio_key": [None if f else k for f, k in zip(failed, keys, strict=True)],
            "format": ["flac"] * len(index),
            "sample_rate": [SAMPLE_RATE] * len(index),
            "num_samples": [SAMPLE_RATE // 100] * len(index),
            "duration_s": 1.0 + (index % 50) / 10,
            "audio_bytes": [len(buffer.getvalue())] * len(index),
            "attempts": [1] * len(index),
            "qa_attempts": 1 + (index % 11 == 0),
            "status": np.where(failed, "failed", "ok"),
            "error": [REASONS[i % 3].format(n=i % 40) if f else None for i, f in zip(ids, failed, strict=True)],
            "chars_per_second": 10.0 + (index % 13),
            "loudness_lufs": -23.0 + (index % 7) / 10,
            "asr_wer": pa.array(np.where(asr, (index % 17) / 100, np.nan), from_pandas=True),
            "asr_transcript": [_text(i) if a else None for i, a in zip(ids, asr, strict=True)],
            "created_at": [created] * len(index),
        }
        table = pa.table(
            {
                f.name: pa.array(columns[f.name], type=f.type) if f.name in columns else _default(f, len(index))
                for f in MANIFEST_SCHEMA
            },
            schema=MANIFEST_SCHEMA,
        )
        path = out / manifest_key(run_id, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
    return run_id


def _default(f: pa.Field, n: int) -> pa.Array:
    if f.nullable:
        return pa.nulls(n, f.type)
    zero = {pa.string(): "", pa.bool_(): False, pa.float64(): 0.0}.get(f.type, 0)
    return pa.array([zero] * n, type=f.type)
