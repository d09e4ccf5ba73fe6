"""Exports of a finished run for training code: a Hugging Face `datasets` Parquet layout and a NeMo manifest.

    hf:   data/train-<i>-of-<n>.parquet, one file per shard: `audio` struct<bytes, path> with the audio inside,
          `text`, `id` and the chunk's metadata; the schema carries the `datasets` features, so
          `load_dataset("parquet", data_files=...)` returns an `Audio` column at the run's sample rate.
    nemo: manifest.jsonl: one line per chunk with audio_filepath (a local path, or the s3:// URI), duration,
          text, lang and voice.

Only `ok` chunks are exported. Written under OUT/exports/<run_id>/<format>/ unless a destination is given
(a folder or URI); audio is read from storage one shard at a time, so memory stays bounded.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa

from tasks.errors import RunIncomplete
from tasks.records import to_parquet_bytes
from tasks.results.run_state import load_run_state
from tasks.shard.rows import ManifestRow
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import EXPORT_FORMATS, content_type, export_prefix
from tasks.storage.s3_client import UPLOAD_THREADS

_HF_SCHEMA = pa.schema(
    [
        ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("text", pa.string()),
        ("spoken_text", pa.string()),
        ("id", pa.string()),
        ("utterance_id", pa.string()),
        ("speaker", pa.string()),
        ("duration", pa.float64()),
        ("lang", pa.string()),
        ("voice", pa.string()),
        ("doc_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("source", pa.string()),
    ]
)


@dataclass(frozen=True)
class Exported:
    rows: int
    location: str


def _hf_features(sample_rate: int) -> bytes:
    value = {"_type": "Value"}
    features = {
        "audio": {"_type": "Audio", "sampling_rate": sample_rate},
        "text": {**value, "dtype": "string"},
        "spoken_text": {**value, "dtype": "string"},
        "id": {**value, "dtype": "string"},
        "utterance_id": {**value, "dtype": "string"},
        "speaker": {**value, "dtype": "string"},
        "duration": {**value, "dtype": "float64"},
        "lang": {**value, "dtype": "string"},
        "voice": {**value, "dtype": "string"},
        "doc_id": {**value, "dtype": "string"},
        "chunk_index": {**value, "dtype": "int32"},
        "source": {**value, "dtype": "string"},
    }
    return json.dumps({"info": {"features": features}}).encode()


def _hf_table(rows: list[ManifestRow], audio: list[bytes], sample_rate: int) -> pa.Table:
    table = pa.Table.from_pylist(
        [
            {
                "audio": {"bytes": data, "path": (r.audio_key or "").rsplit("/", 1)[-1]},
                "text": r.text,
                "spoken_text": r.spoken_text or r.text,
                "id": r.chunk_id,
                "utterance_id": r.utterance_id,
                "speaker": r.speaker,
                "duration": r.duration_s,
                "lang": r.lang,
                "voice": r.voice,
                "doc_id": r.doc_id,
                "chunk_index": r.chunk_index,
                "source": r.source,
            }
            for r, data in zip(rows, audio, strict=True)
        ],
        schema=_HF_SCHEMA,
    )
    return table.replace_schema_metadata({b"huggingface": _hf_features(sample_rate)})


def _local_path(uri: str) -> str:
    """A file:// URI as the plain path NeMo expects; other URIs (s3://) as they are."""
    return urlparse(uri).path if uri.startswith("file://") else uri


def export_run(store: ObjectStore, run_id: str, fmt: str, to: str | None = None) -> Exported:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    state = load_run_state(store, run_id)
    if not state.complete:
        raise RunIncomplete(
            f"run {run_id} has {len(state.pending)} shard(s) not committed yet: nothing exported",
            hint="finish the run (the same `voxbatch run` command resumes it), then export",
        )
    dest, prefix = (open_store(to), "") if to else (store, export_prefix(run_id, fmt))
    per_shard = [[r for r in state.committed[n] if r.status == "ok"] for n in sorted(state.committed)]
    per_shard = [rows for rows in per_shard if rows]
    total = sum(len(rows) for rows in per_shard)
    if fmt == "nemo":
        lines = [
            json.dumps(
                {
                    "audio_filepath": _local_path(r.audio_uri or ""),
                    "duration": r.duration_s,
                    "text": r.text,
                    "normalized_text": r.spoken_text or r.text,  # NeMo's TTS manifests name it so
                    "lang": r.lang,
                    "voice": r.voice,
                    "id": r.chunk_id,
                    **({"utterance_id": r.utterance_id} if r.utterance_id else {}),
                    **({"speaker": r.speaker} if r.speaker else {}),
                },
                ensure_ascii=False,
            )
            for rows in per_shard
            for r in rows
        ]
        key = prefix + "manifest.jsonl"
        dest.put(key, ("\n".join(lines) + "\n").encode(), overwrite=True, content_type=content_type(key))
        return Exported(total, dest.uri(key))
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        for i, rows in enumerate(per_shard):
            audio = list(pool.map(lambda r: store.get(r.audio_key or ""), rows))
            key = f"{prefix}data/train-{i:05d}-of-{len(per_shard):05d}.parquet"
            data = to_parquet_bytes(_hf_table(rows, audio, state.plan.sample_rate))
            dest.put(key, data, overwrite=True, content_type=content_type(key))
    return Exported(total, dest.uri(prefix + "data/"))
