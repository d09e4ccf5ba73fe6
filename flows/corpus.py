"""The corpus flow: ingest, plan, then one task per shard (in-process here), then the run summary."""

from __future__ import annotations

import json
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows import progress
from tasks.backends import load_cached
from tasks.config import Settings, validate_settings
from tasks.manifest import read_manifest, write_manifest, write_plan
from tasks.oom import DeviceFatal
from tasks.plan import Plan, prepare
from tasks.storage import ObjectStore, open_store
from tasks.summary import RunSummary, shard_stats_key, write_summary
from tasks.worker import ShardStats, process_shard


def _shard_is_complete(rows: list[dict[str, Any]] | None, plan: Plan, shard: int) -> bool:
    if not rows:
        return False
    planned = [c.chunk_id for c in plan.shard(shard)]
    return [r["chunk_id"] for r in rows] == planned and all(r["status"] in ("ok", "skipped") for r in rows)


@task(name="synthesize-shard", task_run_name="shard-{shard}", cache_policy=NO_CACHE)
def synthesize_shard(plan: Plan, shard: int, settings: Settings, store: ObjectStore) -> tuple[ShardStats, bool]:
    """One shard: skipped whole if its manifest says it is done; otherwise do what is left and commit."""
    previous = read_manifest(store, plan.run_id, shard)
    if previous is not None and _shard_is_complete(previous, plan, shard):
        stats = ShardStats(shard)
        for row in previous:
            stats.add(row)
        progress.report(len(previous), stats.audio_seconds)
        return stats, True
    try:
        rows, stats = process_shard(
            plan,
            shard,
            settings,
            store,
            load_synthesizer=lambda: load_cached(plan.voice, settings.synthesis),
            previous_rows=previous,
            on_progress=progress.report,
        )
    except DeviceFatal as exc:
        # Commit what is done (a partial manifest: the next run does only the rest), then let the worker die.
        write_manifest(store, plan.run_id, shard, getattr(exc, "partial_rows", []))
        raise
    store.put(shard_stats_key(plan.run_id, shard), json.dumps(stats.to_dict(), indent=2).encode(), overwrite=True)
    write_manifest(store, plan.run_id, shard, rows)  # last: the shard's commit record
    e = stats.engine
    get_run_logger().info(
        "shard %d: %d ok, %d failed, %d skipped, %.1f s audio, %d out-of-memory backoffs, budget %s",
        shard,
        stats.ok,
        stats.failed,
        stats.skipped,
        stats.audio_seconds,
        e.ooms if e else 0,
        f"{e.trajectory[-1][1]:.0f}" if e else "-",
    )
    return stats, False


def _shard_row(stats: dict[str, Any], already_done: bool) -> dict[str, Any]:
    """One line of the per-shard table in the Prefect UI."""
    budgets = stats["budget_trajectory"]
    speed = stats["audio_seconds_per_compute_second"]
    efficiency = stats["padding_efficiency"]
    return {
        "shard": stats["shard"],
        "state": "already done" if already_done else "done",
        "ok": stats["ok"],
        "failed": stats["failed"],
        "audio_s": round(stats["audio_seconds"], 1),
        "oom_backoffs": stats["ooms"],
        "splits": stats["splits"],
        "final_budget": round(budgets[-1][1]) if budgets else None,
        "padding_efficiency": round(efficiency, 3) if efficiency is not None else None,
        "audio_s_per_compute_s": round(speed, 1) if speed else None,
    }


@flow(name="voxbatch-run", log_prints=False)
def corpus_flow(inputs: list[str], out: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn text files into audio objects plus a Parquet manifest under `out`; returns the run summary."""
    started = time.perf_counter()
    logger = get_run_logger()
    prep = prepare(inputs, validate_settings(settings or {}))
    plan, store = prep.plan, open_store(out)
    write_plan(store, plan)
    logger.info("run %s: %d chunks in %d shard(s)", plan.run_id, len(plan.chunks), plan.num_shards)
    summary = RunSummary(
        run_id=plan.run_id,
        output=store.uri(""),
        voice=f"{plan.voice.backend}:{plan.voice.name}",
        sample_rate=plan.sample_rate,
        format=prep.settings.audio.format,
        documents=prep.documents,
        manifests=store.uri(f"manifests/run_id={plan.run_id}"),
    )
    shard_rows: list[dict[str, Any]] = []
    artifact = create_progress_artifact(0.0, description=f"voxbatch {plan.run_id}: shards done")
    for shard in range(plan.num_shards):
        # quote(): Prefect would otherwise walk every chunk of the plan to track task inputs, once per shard.
        stats, already_done = synthesize_shard(quote(plan), shard, prep.settings, store)
        summary.add(stats, already_done)
        shard_rows.append(_shard_row(stats.to_dict(), already_done))
        update_progress_artifact(artifact, 100.0 * (shard + 1) / plan.num_shards)
    summary.wall_seconds = time.perf_counter() - started
    write_summary(store, summary)
    create_table_artifact(shard_rows, key="voxbatch-shards", description=f"voxbatch {plan.run_id}: per shard")
    create_markdown_artifact(
        f"```\n{summary.text()}\n```", key="voxbatch-run-summary", description=f"voxbatch {plan.run_id}"
    )
    return summary.to_dict()
