"""The plan in storage: one Parquet object per run that describes itself, so any process can pick up a shard.

`runs/<run_id>/plan.parquet` is the plan file (tasks.plan.file): one row per chunk (text, language, voice key,
audio-shaping parameters, shard) in row groups of whole shards, and in its metadata under `voxbatch.plan` the
run header: voice identities (backend, name, spec, sha256), the run's settings, shard size, output rate, totals,
each row group's digest and the plan's checksum. Plans move between storage and a local file streamed, so a
plan of millions of chunks is never held in memory; a process reads a plan once and then a shard at a time.
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import ConfigError, StorageError
from tasks.plan.file import Plan, open_plan, spool_file
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import content_type, plan_key

# Plans this process wrote or read, by (store location, run id): a worker running many shards reads it once.
_CACHE: dict[tuple[str, str], Plan] = {}


def _download(store: ObjectStore, key: str) -> Path:
    path = spool_file()
    try:
        store.get_file(key, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def parse_plan(data: bytes, where: str) -> Plan:
    """A plan from its bytes, every row group checked (tests and tools; workers use read_plan)."""
    path = spool_file()
    path.write_bytes(data)
    return open_plan(path, where)


def write_plan(store: ObjectStore, plan: Plan) -> str:
    """Write the plan once per run id. The same work again (a rerun) keeps it; different work is refused."""
    key = plan_key(plan.run_id)
    written = _CACHE.get((store.uri(""), plan.run_id))
    if written is plan:  # this process wrote (or read) this very plan already: nothing to compare or write
        return key
    existing: Plan | None
    try:
        existing = open_plan(_download(store, key), store.uri(key), verify=False)
    except ObjectMissing:
        existing = None
    except StorageError:
        existing = None  # unreadable or an older format: replaced below by the plan just made
    if existing is not None and existing.checksum != plan.checksum:
        raise ConfigError(
            f"{store.uri(key)}: run id {plan.run_id!r} already holds a different plan (other inputs or settings)",
            hint="give another --run-id, or leave it empty so the run id follows the inputs and settings",
        )
    if existing is None or existing.settings != plan.settings:
        store.put_file(key, plan.file.path, overwrite=True, content_type=content_type(key))
    if existing is not None:
        existing.file.path.unlink(missing_ok=True)
    _CACHE[(store.uri(""), plan.run_id)] = plan
    return key


def read_plan(store: ObjectStore, run_id: str) -> Plan:
    """The plan of `run_id` under this store, verified; StorageError if there is none."""
    cached = _CACHE.get((store.uri(""), run_id))
    if cached is not None:
        return cached
    key = plan_key(run_id)
    try:
        path = _download(store, key)
    except ObjectMissing:
        raise StorageError(
            f"{store.uri(key)}: no plan for run {run_id!r} here", hint="`voxbatch status OUT` lists the runs"
        ) from None
    plan = open_plan(path, store.uri(key))
    _CACHE[(store.uri(""), run_id)] = plan
    return plan


def list_runs(store: ObjectStore) -> list[str]:
    """Run ids with a plan under this store."""
    return sorted({k.split("/")[1] for k in store.list("runs/") if k.endswith("/plan.parquet")})
