"""The plan in storage: one Parquet object per run that describes itself, so any process can pick up a shard.

`runs/<run_id>/plan.parquet` is the plan file (tasks.plan.file): one row per chunk (text, language, voice key,
audio-shaping parameters, shard) in row groups of whole shards, and in its metadata under `voxbatch.plan` the
run header: voice identities (backend, name, spec, sha256), the run's settings, shard size, output rate, totals,
each row group's digest and the plan's checksum. Plans move between storage and a local file streamed, so a
plan of millions of chunks is never held in memory; a process reads a plan once and then a shard at a time.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError, StorageError
from tasks.plan.file import Plan, open_plan, spool_file
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import content_type, plan_key, replaced_settings_key

logger = logging.getLogger("voxbatch")

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


# Settings the shards read that neither the chunk ids (so the run id) nor the plan's checksum cover: the quality
# checks decide which chunks fail and which attempt's audio is stored. Changed on a rerun, they would apply to the
# chunks still to do and not to those done, so such a rerun is refused unless `run.changed_qa` is "apply". The
# other settings need no check: those that shape the audio are in the chunk ids, those of planning in the plan's
# checksum, and how a process runs (dispatch, leases, batch sizes, devices) may differ between invocations.
OUTCOME_SECTIONS = ("qa",)


def changed_outcome_settings(stored: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`section.name: stored -> now` for each outcome setting that differs."""
    changes = []
    for section in OUTCOME_SECTIONS:
        before, after = stored.get(section, {}), now.get(section, {})
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                changes.append(f"{section}.{name}: {before.get(name)!r} in the plan, {after.get(name)!r} now")
    return changes


def write_plan(store: ObjectStore, plan: Plan) -> str:
    """Write the plan once per run id. The same work again (a rerun) keeps the stored plan and its settings; with
    other quality settings it is refused (ConfigError), or with `run.changed_qa = "apply"` the plan is stored
    with them and the former settings are kept beside it. Different work under the same run id is refused."""
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
        existing = None  # unreadable, corrupt or an older format: replaced below by the plan just made
    try:
        if existing is not None and existing.checksum != plan.checksum:
            raise ConfigError(
                f"{store.uri(key)}: run id {plan.run_id!r} already holds a different plan (other inputs or settings)",
                hint="give another --run-id, or leave it empty so the run id follows the inputs and settings",
            )
        changed = changed_outcome_settings(existing.settings, plan.settings) if existing is not None else []
        if changed and existing is not None:
            _replace_settings(store, existing, plan, changed)
        elif existing is None:
            store.put_file(key, plan.file.path, overwrite=True, content_type=content_type(key))
    finally:
        if existing is not None:
            existing.file.path.unlink(missing_ok=True)
    _CACHE[(store.uri(""), plan.run_id)] = plan
    return key


def _replace_settings(store: ObjectStore, existing: Plan, plan: Plan, changed: list[str]) -> None:
    """A rerun's other quality settings: refused, or (run.changed_qa = "apply") the former ones kept and said."""
    key = plan_key(plan.run_id)
    listing = "\n".join(f"  {c}" for c in changed)
    if plan.settings.get("run", {}).get("changed_qa") != "apply":
        raise ConfigError(
            f"{store.uri(key)}: run {plan.run_id} was planned with other quality settings; they would apply only "
            f"to its chunks still to do:\n{listing}",
            hint="rerun with the run's settings, add --changed-qa apply to check the chunks still to do (failed "
            "ones included) with the new ones, or give another --run-id",
        )
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    former = {"replaced_at": when, "changed": changed, "settings": existing.settings}
    kept = replaced_settings_key(plan.run_id, when)
    store.put(kept, json.dumps(former, sort_keys=True, indent=1).encode(), content_type=content_type(kept))
    store.put_file(key, plan.file.path, overwrite=True, content_type=content_type(key))
    logger.warning(
        "run %s: other quality settings from now on (run.changed_qa = apply); the chunks done were checked with "
        "the former ones, kept in %s:\n%s",
        plan.run_id,
        store.uri(kept),
        listing,
    )


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
