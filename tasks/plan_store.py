"""The plan in storage: one Parquet object per run that describes itself, so any process can pick up a shard.

`runs/<run_id>/plan.parquet` holds one row per chunk (text, language, voice key, audio-shaping parameters,
shard) and, in its schema metadata under `voxbatch.plan`, the run header: voice identities (backend, name,
spec, sha256), the run's settings, shard size, output rate and the plan's checksum. `read_plan` verifies the
checksum, so a truncated or edited plan is refused rather than half-used.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.backends.base import VoiceInfo
from tasks.errors import ConfigError, StorageError
from tasks.layout import content_type, plan_key
from tasks.manifest import arrow_schema, to_parquet_bytes
from tasks.plan import Plan, PlannedChunk, plan_checksum
from tasks.storage import ObjectMissing, ObjectStore

PLAN_SCHEMA = arrow_schema(PlannedChunk)
_META = b"voxbatch.plan"
FORMAT = 3  # 2: chapters, inputs and rejected; 3: spoken text, table rows (utterance id, part, speaker, extra), errors


def _header(plan: Plan) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "run_id": plan.run_id,
        "shard_size": plan.shard_size,
        "num_chunks": len(plan.chunks),
        "num_shards": plan.num_shards,
        "sample_rate": plan.sample_rate,
        "voices": {k: dataclasses.asdict(v) for k, v in plan.voices.items()},
        "settings": plan.settings,
        "checksum": plan.checksum,
        "inputs": list(plan.inputs),
        "rejected": list(plan.rejected),
    }


def plan_bytes(plan: Plan) -> bytes:
    table = pa.Table.from_pylist([dataclasses.asdict(c) for c in plan.chunks], schema=PLAN_SCHEMA)
    table = table.replace_schema_metadata({_META: json.dumps(_header(plan), sort_keys=True).encode()})
    return to_parquet_bytes(table)


def parse_plan(data: bytes, where: str) -> Plan:
    try:
        table = pq.read_table(io.BytesIO(data))
        header = json.loads((table.schema.metadata or {})[_META])
        voices = {
            k: VoiceInfo(**{**v, "languages": tuple(v["languages"]), "speakers": tuple(v.get("speakers", ()))})
            for k, v in header["voices"].items()
        }
        chunks = tuple(PlannedChunk(**row) for row in table.to_pylist())
    except (pa.ArrowInvalid, OSError, KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"{where}: not a readable voxbatch plan ({type(exc).__name__}: {exc})") from exc
    if header.get("format") != FORMAT:
        raise StorageError(f"{where}: plan format {header.get('format')!r}; this voxbatch reads format {FORMAT}")
    checksum = plan_checksum(chunks, voices, header["shard_size"], header["sample_rate"])
    if checksum != header["checksum"]:
        raise StorageError(
            f"{where}: the plan's checksum does not match its contents (edited or corrupt)\n"
            f"  recorded {header['checksum']}\n  computed {checksum}",
            hint="plan the run again (the same `voxbatch run` command rewrites it)",
        )
    return Plan(
        header["run_id"],
        voices,
        header["sample_rate"],
        chunks,
        header["shard_size"],
        header["settings"],
        checksum,
        tuple(header.get("inputs", ())),
        tuple(header.get("rejected", ())),
    )


# Plans this process wrote or read, by (store location, run id): a worker running many shards reads it once.
_CACHE: dict[tuple[str, str], Plan] = {}


def write_plan(store: ObjectStore, plan: Plan) -> str:
    """Write the plan once per run id. The same work again (a rerun) keeps it; different work is refused."""
    key = plan_key(plan.run_id)
    try:
        existing: Plan | None = parse_plan(store.get(key), store.uri(key))
    except ObjectMissing:
        existing = None
    except StorageError:
        existing = None  # unreadable: replaced below by the plan just made
    if existing is not None and existing.checksum != plan.checksum:
        raise ConfigError(
            f"{store.uri(key)}: run id {plan.run_id!r} already holds a different plan (other inputs or settings)",
            hint="give another --run-id, or leave it empty so the run id follows the inputs and settings",
        )
    if existing is None or existing.settings != plan.settings:
        store.put(key, plan_bytes(plan), overwrite=True, content_type=content_type(key))
    _CACHE[(store.uri(""), plan.run_id)] = plan
    return key


def read_plan(store: ObjectStore, run_id: str) -> Plan:
    """The plan of `run_id` under this store, verified; StorageError if there is none."""
    cached = _CACHE.get((store.uri(""), run_id))
    if cached is not None:
        return cached
    key = plan_key(run_id)
    try:
        data = store.get(key)
    except ObjectMissing:
        raise StorageError(
            f"{store.uri(key)}: no plan for run {run_id!r} here", hint="`voxbatch status OUT` lists the runs"
        ) from None
    plan = parse_plan(data, store.uri(key))
    _CACHE[(store.uri(""), run_id)] = plan
    return plan


def list_runs(store: ObjectStore) -> list[str]:
    """Run ids with a plan under this store."""
    return sorted({k.split("/")[1] for k in store.list("runs/") if k.endswith("/plan.parquet")})
