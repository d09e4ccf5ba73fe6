"""Exports of a finished run for training code: a Hugging Face `datasets` Parquet layout and a NeMo manifest.

    hf:   data/train-<i>-of-<n>.parquet, one file per shard: `audio` struct<bytes, path> with the audio inside,
          `text`, `id` and the chunk's metadata; the schema carries the `datasets` features, so
          `load_dataset("parquet", data_files=...)` returns an `Audio` column at the run's sample rate.
    nemo: manifest.jsonl: one line per chunk with audio_filepath (a local path, or the s3:// URI), duration,
          text, lang, voice and `alignment`: where each sentence of the text is heard (start, end, text).
    Both carry the chunk's sentence timings (the hf `sentences` and `words` columns are the manifest's).

Only `ok` chunks are exported: never a flagged one (it failed the listening check) unless accepted (then ok).
Written under OUT/exports/<run_id>/<format>/ unless a destination is given (a folder or URI). The manifests
and the audio are read one shard at a time and each file is written as it goes, so memory stays bounded
whatever the run's size. A rerun of the hf export removes the files of an
earlier one that it did not write again (the number of files, n, changes when shards do).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from tasks.errors import RunIncomplete
from tasks.records import SPAN_TYPE, to_parquet_bytes
from tasks.results.run_state import RunState, load_run_state
from tasks.shard.manifest import rows_from_table
from tasks.shard.rows import ManifestRow
from tasks.shard.timing import spans_of
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
        ("sentences", pa.list_(SPAN_TYPE)),
        ("words", pa.list_(SPAN_TYPE)),
    ]
)


@dataclass(frozen=True)
class Exported:
    rows: int
    location: str


_SPANS_FEATURE = {
    "_type": "List",
    "feature": {
        name: {"_type": "Value", "dtype": dtype}
        for name, dtype in (
            ("start_s", "float64"),
            ("end_s", "float64"),
            ("char_start", "int32"),
            ("char_end", "int32"),
        )
    },
}


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
        "sentences": _SPANS_FEATURE,
        "words": _SPANS_FEATURE,
    }
    return json.dumps({"info": {"features": features}}).encode()


def _hf_table(ok: pa.Table, audio: list[bytes], sample_rate: int) -> pa.Table:
    """A shard's ok rows (a manifest table) as the hf file's table, column by column (no object per row)."""
    keys = ok.column("audio_key").fill_null("").to_pylist()
    spoken, text = ok.column("spoken_text"), ok.column("text")
    said = pc.if_else(pc.fill_null(pc.not_equal(spoken, ""), False), spoken, text)  # spoken_text, else the text
    names = [k.rsplit("/", 1)[-1] for k in keys]
    columns = {
        "audio": pa.StructArray.from_arrays(
            [pa.array(audio, pa.binary()), pa.array(names, pa.string())], names=["bytes", "path"]
        ),
        "text": text,
        "spoken_text": said,
        "id": ok.column("chunk_id"),
        "utterance_id": ok.column("utterance_id"),
        "speaker": ok.column("speaker"),
        "duration": ok.column("duration_s"),
        "lang": ok.column("lang"),
        "voice": ok.column("voice"),
        "doc_id": ok.column("doc_id"),
        "chunk_index": ok.column("chunk_index"),
        "source": ok.column("source"),
        "sentences": ok.column("sentences"),
        "words": ok.column("words"),
    }
    table = pa.Table.from_pydict(columns, schema=_HF_SCHEMA)
    return table.replace_schema_metadata({b"huggingface": _hf_features(sample_rate)})


def _local_path(uri: str) -> str:
    """A file:// URI as the plain path NeMo expects; other URIs (s3://) as they are."""
    return urlparse(uri).path if uri.startswith("file://") else uri


def _nemo_line(r: ManifestRow) -> str:
    return json.dumps(
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
            # Where each sentence of `text` is heard (seconds into the audio), as NeMo's alignments give words
            "alignment": [
                {"start": round(s.start_s, 3), "end": round(s.end_s, 3), "text": r.text[s.char_start : s.char_end]}
                for s in spans_of(r)
            ],
        },
        ensure_ascii=False,
    )


def _ok_tables(state: RunState) -> Iterator[pa.Table]:
    """Each shard's ok rows (a manifest table) of the shards that have any, a shard at a time."""
    for _, table in state.tables(count=False):
        ok = table.filter(pc.equal(table.column("status"), "ok"))
        if ok.num_rows:
            yield ok


def _export_nemo(state: RunState, dest: ObjectStore, key: str) -> int:
    """manifest.jsonl written line by line into a local file, then stored streamed."""
    total = 0
    with tempfile.TemporaryDirectory(prefix="voxbatch-export-") as tmp:
        path = Path(tmp) / "manifest.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for ok in _ok_tables(state):
                rows = rows_from_table(ok, state.run_id)
                out.writelines(_nemo_line(r) + "\n" for r in rows)
                total += len(rows)
            if not total:
                out.write("\n")  # as before: an export of no rows is one empty line
        dest.put_file(key, path, overwrite=True, content_type=content_type(key))
    return total


def hf_file_key(prefix: str, i: int, n: int) -> str:
    return f"{prefix}data/train-{i:05d}-of-{n:05d}.parquet"


_HF_FILE = re.compile(r"data/train-\d{5}-of-\d{5}\.parquet")


def _export_hf(state: RunState, store: ObjectStore, dest: ObjectStore, prefix: str) -> int:
    """One file per shard with ok rows; then the files of an earlier export under the same prefix that this one
    did not write (another number of files: `data/*.parquet` would load both), so readers never see a mix."""
    with_ok = sum(1 for ok in state.ok_counts().values() if ok)  # n of train-i-of-n, before the first is written
    written: set[str] = set()
    total = 0
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        for i, ok in enumerate(_ok_tables(state)):
            audio = list(pool.map(lambda k: store.get(k or ""), ok.column("audio_key").to_pylist()))
            key = hf_file_key(prefix, i, with_ok)
            data = to_parquet_bytes(_hf_table(ok, audio, state.plan.sample_rate))
            dest.put(key, data, overwrite=True, content_type=content_type(key))
            written.add(key)
            total += ok.num_rows
    for key in dest.list(prefix + "data/"):
        if key not in written and _HF_FILE.fullmatch(key[len(prefix) :]):
            dest.delete(key)
    return total


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
    if fmt == "nemo":
        key = prefix + "manifest.jsonl"
        return Exported(_export_nemo(state, dest, key), dest.uri(key))
    return Exported(_export_hf(state, store, dest, prefix), dest.uri(prefix + "data/"))
