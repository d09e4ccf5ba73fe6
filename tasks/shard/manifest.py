"""The manifest: one typed row per chunk (the Arrow schema is generated from it), and its Parquet objects.

A shard's manifest is written in one piece, after all its audio, and only when it lists every planned chunk
of the shard: its existence is the shard's commit record. Until then, a checkpoint under runs/ holds the
rows whose audio is stored, so a killed worker's successor redoes only the rest.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import StorageError
from tasks.records import arrow_schema, int32, to_parquet_bytes
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import checkpoint_key, content_type, manifest_key, run_manifest_key

STATUSES = ("ok", "failed", "skipped")
DONE_STATUSES = ("ok", "skipped")  # a chunk in one of these is never synthesized again


@dataclass
class ManifestRow:
    """What was made from one chunk; the README's "Manifest columns" table documents every field."""

    run_id: str
    shard: int = int32()
    doc_id: str = ""
    source: str = ""
    chunk_index: int = int32(0)
    line: int = int32(0)
    chapter_index: int = int32(0)
    chapter_title: str = ""
    chunk_id: str = ""
    text: str = ""
    spoken_text: str = ""
    lang: str = ""
    voice: str = ""  # the voice key in the plan (per chunk, so rows of one run may use different voices)
    utterance_id: str = ""  # tables: the row's id (parts of a split row share it)
    part: int = int32(0)
    speaker: str = ""
    extra_json: str = ""  # tables: the row's other columns, as JSON
    model: str = ""
    model_sha256: str = ""
    params_json: str = ""
    audio_uri: str | None = None
    audio_key: str | None = None
    format: str = ""
    sample_rate: int = int32(0)
    num_samples: int | None = None
    duration_s: float | None = None
    audio_bytes: int | None = None
    audio_checksum: str | None = None
    batch_size: int | None = int32(None)
    attempts: int = int32(0)
    oom_retries: int = int32(0)
    device: str | None = None
    synth_seconds: float = 0.0
    reused: bool = False
    status: str = "ok"
    error: str | None = None
    peak_dbfs: float | None = None
    rms_dbfs: float | None = None
    clipped_fraction: float | None = None
    chars_per_second: float | None = None
    loudness_lufs: float | None = None
    silence_ratio: float | None = None  # share of 20 ms frames 40 dB below the peak
    longest_pause_s: float | None = None  # longest such silence between the first and last sound
    mixed: bool = False  # spoken by two voices, a part each (Chinese with English words in it)
    voices: str = ""  # a mixed chunk's voice keys, comma-separated, in the order they speak; "" otherwise
    qa_attempts: int = int32(0)  # syntheses the quality checks saw (1: the first passed; more: regenerated)
    asr_transcript: str | None = None  # what Whisper heard (qa.asr)
    asr_wer: float | None = None  # word error rate of the transcript against spoken_text (English)
    asr_cer: float | None = None  # character error rate (both languages)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


MANIFEST_SCHEMA = arrow_schema(ManifestRow)


def shard_is_complete(rows: list[ManifestRow] | None, planned_ids: list[str]) -> bool:
    """The one rule for "this shard needs no more work": every planned chunk, in order, ok or skipped."""
    return rows is not None and [r.chunk_id for r in rows] == planned_ids and all(r.done for r in rows)


def rows_table(rows: list[ManifestRow]) -> pa.Table:
    return pa.Table.from_pylist([r.to_dict() for r in rows], schema=MANIFEST_SCHEMA)


# Columns added after manifests were first written: an older manifest (a run resumed after an upgrade) lacks them
# and its rows take their defaults.
_ADDED_LATER = {"mixed", "voices", "silence_ratio", "longest_pause_s"}


def rows_from_table(table: pa.Table, source: str) -> list[ManifestRow]:
    names = set(MANIFEST_SCHEMA.names)
    if not names - _ADDED_LATER <= set(table.column_names):
        missing = ", ".join(sorted(names - _ADDED_LATER - set(table.column_names)))
        raise StorageError(f"{source}: not a voxbatch manifest of this version (missing columns: {missing})")
    return [ManifestRow(**{k: v for k, v in d.items() if k in names}) for d in table.to_pylist()]


def _write(store: ObjectStore, key: str, rows: list[ManifestRow], metadata: dict[str, str] | None = None) -> str:
    store.put(key, to_parquet_bytes(rows_table(rows), metadata), overwrite=True, content_type=content_type(key))
    return key


def _read(store: ObjectStore, key: str) -> list[ManifestRow] | None:
    try:
        data = store.get(key)
    except ObjectMissing:
        return None
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise StorageError(f"{store.uri(key)}: unreadable Parquet ({exc})", hint="delete it and rerun") from exc
    return rows_from_table(table, store.uri(key))


def write_manifest(store: ObjectStore, run_id: str, shard: int, rows: list[ManifestRow]) -> str:
    """Commit a shard: its manifest in one atomic write (readers see all rows or none)."""
    return _write(store, manifest_key(run_id, shard), rows)


def read_manifest(store: ObjectStore, run_id: str, shard: int) -> list[ManifestRow] | None:
    return _read(store, manifest_key(run_id, shard))


def write_checkpoint(store: ObjectStore, run_id: str, shard: int, rows: list[ManifestRow]) -> str:
    return _write(store, checkpoint_key(run_id, shard), rows)


def read_checkpoint(store: ObjectStore, run_id: str, shard: int) -> list[ManifestRow] | None:
    return _read(store, checkpoint_key(run_id, shard))


def write_run_manifest(
    store: ObjectStore, run_id: str, rows: list[ManifestRow], voices: dict[str, dict[str, Any]] | None = None
) -> str:
    """The consolidated manifest; `voices` (the plan's voice records: backend, name, identity, licence) go into
    its Parquet metadata as `voxbatch.voices`, so a dataset's terms travel with it."""
    metadata = {"voxbatch.voices": json.dumps(voices, sort_keys=True, ensure_ascii=False)} if voices else None
    return _write(store, run_manifest_key(run_id), rows, metadata)


def read_run_manifest(store: ObjectStore, run_id: str) -> list[ManifestRow] | None:
    return _read(store, run_manifest_key(run_id))
