"""Parquet manifests: the Arrow schemas of the plan and of the per-chunk manifest, and their atomic writes.

Layout under the output root (hive-style, so DuckDB and pyarrow datasets see run_id and shard):
    plans/run_id=<id>/plan.parquet
    manifests/run_id=<id>/shard=<n>/part-0.parquet    one writer per file, written last: the shard's commit
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.plan import Plan, PlannedChunk
from tasks.storage import ObjectStore

# The columns of a planned chunk: the plan has only these, the manifest starts with them.
_CHUNK_FIELDS = [
    ("run_id", pa.string()),
    ("shard", pa.int32()),
    ("doc_id", pa.string()),
    ("source", pa.string()),
    ("chunk_index", pa.int32()),
    ("line", pa.int32()),
    ("chunk_id", pa.string()),
    ("text", pa.string()),
    ("lang", pa.string()),
]
PLAN_SCHEMA = pa.schema(_CHUNK_FIELDS)

MANIFEST_SCHEMA = pa.schema(
    [
        *_CHUNK_FIELDS,
        ("voice", pa.string()),
        ("model", pa.string()),
        ("model_sha256", pa.string()),
        ("params_json", pa.string()),
        ("audio_uri", pa.string()),
        ("audio_key", pa.string()),
        ("format", pa.string()),
        ("sample_rate", pa.int32()),
        ("num_samples", pa.int64()),
        ("duration_s", pa.float64()),
        ("audio_bytes", pa.int64()),
        ("audio_checksum", pa.string()),
        ("batch_size", pa.int32()),
        ("attempts", pa.int32()),
        ("oom_retries", pa.int32()),
        ("device", pa.string()),
        ("synth_seconds", pa.float64()),
        ("reused", pa.bool_()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("peak_dbfs", pa.float64()),
        ("rms_dbfs", pa.float64()),
        ("clipped_fraction", pa.float64()),
        ("chars_per_second", pa.float64()),
        ("loudness_lufs", pa.float64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
STATUSES = ("ok", "failed", "skipped")


def plan_key(run_id: str) -> str:
    return f"plans/run_id={run_id}/plan.parquet"


def manifest_key(run_id: str, shard: int) -> str:
    return f"manifests/run_id={run_id}/shard={shard}/part-0.parquet"


def to_parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def chunk_columns(run_id: str, c: PlannedChunk) -> dict[str, Any]:
    """A planned chunk as the plan's columns (and the first columns of its manifest row)."""
    return {
        "run_id": run_id,
        "shard": c.shard,
        "doc_id": c.doc_id,
        "source": c.source,
        "chunk_index": c.chunk_index,
        "line": c.line,
        "chunk_id": c.chunk_id,
        "text": c.text,
        "lang": c.lang,
    }


def plan_table(plan: Plan) -> pa.Table:
    return pa.Table.from_pylist([chunk_columns(plan.run_id, c) for c in plan.chunks], schema=PLAN_SCHEMA)


def write_plan(store: ObjectStore, plan: Plan) -> str:
    key = plan_key(plan.run_id)
    store.put(key, to_parquet_bytes(plan_table(plan)), overwrite=True)
    return key


def write_manifest(store: ObjectStore, run_id: str, shard: int, rows: list[dict[str, Any]]) -> str:
    """Write a shard's manifest in one piece (temp file + rename): readers see all rows or none."""
    key = manifest_key(run_id, shard)
    store.put(key, to_parquet_bytes(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)), overwrite=True)
    return key


def read_manifest(store: ObjectStore, run_id: str, shard: int) -> list[dict[str, Any]] | None:
    key = manifest_key(run_id, shard)
    if not store.exists(key):
        return None
    return pq.read_table(io.BytesIO(store.get(key))).to_pylist()
