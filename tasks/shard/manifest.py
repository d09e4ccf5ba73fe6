"""The manifest's Parquet objects: a shard's manifest (its commit record), its checkpoint, the run's manifest.

A shard's manifest is written in one piece, after all its audio, and only when it lists every planned chunk
of the shard: its existence is the shard's commit record. Until then, a checkpoint under runs/ holds the
rows whose audio is stored, so a killed worker's successor redoes only the rest.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import StorageError
from tasks.records import to_parquet_bytes
from tasks.shard import faults
from tasks.shard.rows import MANIFEST_SCHEMA, ManifestRow, column_defaults, row_from_record
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import checkpoint_key, content_type, manifest_key, run_manifest_key


def shard_is_complete(rows: list[ManifestRow] | None, planned_ids: list[str]) -> bool:
    """The one rule for "this shard needs no more work": every planned chunk, in order, done (ok, flagged or
    skipped: tasks.shard.rows.DONE_STATUSES)."""
    return rows is not None and [r.chunk_id for r in rows] == planned_ids and all(r.done for r in rows)


def rows_table(rows: list[ManifestRow]) -> pa.Table:
    return pa.Table.from_pylist([r.to_dict() for r in rows], schema=MANIFEST_SCHEMA)


# Columns added after manifests were first written: an older manifest (a run resumed after an upgrade) lacks them
# and its rows take their defaults.
_ADDED_LATER = {"mixed", "voices", "silence_ratio", "longest_pause_s", "accepted", "sentences", "words"}


def _check_columns(table: pa.Table, source: str) -> None:
    names = set(MANIFEST_SCHEMA.names)
    if not names - _ADDED_LATER <= set(table.column_names):
        missing = ", ".join(sorted(names - _ADDED_LATER - set(table.column_names)))
        raise StorageError(f"{source}: not a voxbatch manifest of this version (missing columns: {missing})")


def rows_from_table(table: pa.Table, source: str) -> list[ManifestRow]:
    _check_columns(table, source)
    return [row_from_record(d) for d in table.to_pylist()]


def manifest_table(table: pa.Table, source: str) -> pa.Table:
    """A manifest read back as a table of exactly MANIFEST_SCHEMA (the columns `rows_from_table` makes rows of):
    columns added later filled with the rows' defaults, unknown ones dropped; no row becomes a Python object."""
    _check_columns(table, source)
    defaults = column_defaults()
    columns = []
    for f in MANIFEST_SCHEMA:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.array([defaults[f.name]] * table.num_rows, type=f.type))
    return pa.Table.from_arrays(columns, schema=MANIFEST_SCHEMA)


def _write(store: ObjectStore, key: str, rows: list[ManifestRow], metadata: dict[str, str] | None = None) -> str:
    store.put(key, to_parquet_bytes(rows_table(rows), metadata), overwrite=True, content_type=content_type(key))
    return key


def read_table(store: ObjectStore, key: str, columns: list[str] | None = None) -> pa.Table | None:
    """A manifest object as it is stored, or only `columns` of it (None if there is none); StorageError if it is
    not Parquet."""
    try:
        data = store.get(key)
    except ObjectMissing:
        return None
    try:
        return pq.read_table(io.BytesIO(data), columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StorageError(f"{store.uri(key)}: unreadable Parquet ({exc})", hint="delete it and rerun") from exc


def _read(store: ObjectStore, key: str) -> list[ManifestRow] | None:
    table = read_table(store, key)
    return None if table is None else rows_from_table(table, store.uri(key))


def write_manifest(store: ObjectStore, run_id: str, shard: int, rows: list[ManifestRow]) -> str:
    """Write a shard's manifest in one atomic write (readers see all rows or none), whatever was there."""
    return _write(store, manifest_key(run_id, shard), rows)


def _completeness(rows: list[ManifestRow]) -> tuple[int, int]:
    """How complete a shard's rows are: chunks done, then (among as many done) chunks ok: a flagged chunk that
    was accepted (voxbatch accept) makes a manifest more complete."""
    return sum(r.done for r in rows), sum(r.status == "ok" for r in rows)


def commit_manifest(store: ObjectStore, run_id: str, shard: int, rows: list[ManifestRow]) -> list[ManifestRow]:
    """Commit a shard unless storage already holds a manifest at least as complete (more chunks done, or as many
    and more ok): two attempts that overlapped never leave the less complete one. Returns the rows that stand
    committed.

    The first commit is a create-only write, so of two first commits exactly one lands and the other compares;
    a later one (a rerun retrying failed chunks) reads back before it replaces. Between that read and the
    write only the attempt the fence names commits (`tasks.shard.lease`)."""
    key = manifest_key(run_id, shard)
    for _ in range(3):
        stored = read_manifest(store, run_id, shard)
        if stored is not None and _completeness(stored) >= _completeness(rows):
            return stored
        data = to_parquet_bytes(rows_table(rows))
        if store.put(key, data, overwrite=stored is not None, content_type=content_type(key)):
            faults.passed("manifest")
            return rows
    raise StorageError(f"{store.uri(key)}: the manifest kept changing while this shard committed", transient=True)


def read_manifest(store: ObjectStore, run_id: str, shard: int) -> list[ManifestRow] | None:
    return _read(store, manifest_key(run_id, shard))


def write_checkpoint(store: ObjectStore, run_id: str, shard: int, rows: list[ManifestRow]) -> str:
    key = _write(store, checkpoint_key(run_id, shard), rows)
    faults.passed("checkpoint")
    return key


def read_checkpoint(store: ObjectStore, run_id: str, shard: int) -> list[ManifestRow] | None:
    return _read(store, checkpoint_key(run_id, shard))


RUN_MANIFEST_GROUP_ROWS = 65_536  # rows per row group of the run manifest (a few tens of MB of Arrow buffered)


def write_run_manifest(
    store: ObjectStore,
    run_id: str,
    tables: Iterable[pa.Table],
    voices: dict[str, dict[str, Any]] | None = None,
    group_rows: int = RUN_MANIFEST_GROUP_ROWS,
) -> str:
    """The consolidated manifest, written from `tables` (each of MANIFEST_SCHEMA, e.g. a shard's) into a local
    file in row groups of `group_rows`, then stored streamed: never the whole run in memory. (Not a row group
    per shard: the writer keeps every row group's statistics until it closes, 300 MB for 5,000 shards, and
    readers would too.) `voices` (the plan's voice records: backend, name, identity, licence) go into its Parquet
    metadata as `voxbatch.voices`, so a dataset's terms travel with it."""
    key = run_manifest_key(run_id)
    metadata = {"voxbatch.voices": json.dumps(voices, sort_keys=True, ensure_ascii=False)} if voices else None
    schema = MANIFEST_SCHEMA.with_metadata(metadata) if metadata else MANIFEST_SCHEMA
    with tempfile.TemporaryDirectory(prefix="voxbatch-manifest-") as tmp:
        path = Path(tmp) / "manifest.parquet"
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            buffered: list[pa.Table] = []
            for table in tables:
                buffered.append(table)
                if sum(t.num_rows for t in buffered) >= group_rows:
                    rows = pa.concat_tables(buffered)
                    whole = rows.num_rows // group_rows * group_rows
                    writer.write_table(rows.slice(0, whole), row_group_size=group_rows)
                    buffered = [rows.slice(whole)]
            if buffered:
                writer.write_table(pa.concat_tables(buffered), row_group_size=group_rows)
        store.put_file(key, path, overwrite=True, content_type=content_type(key))
    return key


def read_run_manifest(store: ObjectStore, run_id: str) -> list[ManifestRow] | None:
    return _read(store, run_manifest_key(run_id))
