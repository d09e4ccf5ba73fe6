"""The corpus flow: plan, run every shard (in-process here), consolidate, summarize. Thin over tasks/."""

from __future__ import annotations

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

from flows import progress
from tasks.config import validate_settings
from tasks.layout import manifests_prefix, run_manifest_key
from tasks.plan import prepare
from tasks.plan_store import write_plan
from tasks.run_state import consolidate, load_run_state
from tasks.shard import ShardOutcome, run_shard_at
from tasks.storage import open_store
from tasks.summary import RunSummary, write_summary


@task(name="synthesize-shard", task_run_name="shard-{shard}", cache_policy=NO_CACHE)
def synthesize_shard(out: str, run_id: str, shard: int) -> ShardOutcome:
    """One shard, addressed by (output, run id, shard number); a fatal device error fails the task after commit."""
    outcome = run_shard_at(out, run_id, shard, on_progress=progress.report)
    s, e = outcome.stats, outcome.stats.engine
    get_run_logger().info(
        "shard %d: %s; %d ok, %d failed, %d skipped, %.1f s audio, %d OOM backoffs, %.2f s waiting on storage",
        shard,
        "already done" if outcome.already_done else "done",
        s.ok,
        s.failed,
        s.skipped,
        s.audio_seconds,
        e.ooms if e else 0,
        s.storage_wait_seconds,
    )
    if outcome.fatal is not None:
        raise outcome.fatal
    return outcome


def _shard_row(outcome: ShardOutcome) -> dict[str, Any]:
    """One line of the per-shard table in the Prefect UI."""
    stats = outcome.stats.to_dict()
    budgets = stats["budget_trajectory"]
    speed = stats["audio_seconds_per_compute_second"]
    efficiency = stats["padding_efficiency"]
    return {
        "shard": stats["shard"],
        "state": "already done" if outcome.already_done else "done",
        "ok": stats["ok"],
        "failed": stats["failed"],
        "audio_s": round(stats["audio_seconds"], 1),
        "oom_backoffs": stats["ooms"],
        "splits": stats["splits"],
        "final_budget": round(budgets[-1][1]) if budgets else None,
        "padding_efficiency": round(efficiency, 3) if efficiency is not None else None,
        "audio_s_per_compute_s": round(speed, 1) if speed else None,
        "storage_wait_s": round(stats["storage_wait_seconds"], 2),
    }


@flow(name="voxbatch-run", log_prints=False)
def corpus_flow(inputs: list[str], out: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn text files into audio objects plus a Parquet manifest under `out`; returns the run summary."""
    started = time.perf_counter()
    logger = get_run_logger()
    prep = prepare(inputs, validate_settings(settings or {}))
    plan, store = prep.plan, open_store(out)
    cleaned = store.cleanup()  # a killed run's temporary files / incomplete uploads
    if cleaned:
        logger.info("removed %d leftover temporary object(s) of an earlier, killed run", cleaned)
    write_plan(store, plan)
    logger.info("run %s: %d chunks in %d shard(s)", plan.run_id, len(plan.chunks), plan.num_shards)
    summary = RunSummary(
        run_id=plan.run_id,
        output=store.uri(""),
        voice=f"{plan.voice.backend}:{plan.voice.name}",
        sample_rate=plan.sample_rate,
        format=prep.settings.audio.format,
        documents=prep.documents,
        manifests=store.uri(manifests_prefix(plan.run_id)),
    )
    shard_rows: list[dict[str, Any]] = []
    artifact = create_progress_artifact(0.0, description=f"voxbatch {plan.run_id}: shards done")
    for shard in range(plan.num_shards):
        outcome = synthesize_shard(out, plan.run_id, shard)
        summary.add(outcome.stats, outcome.already_done)
        shard_rows.append(_shard_row(outcome))
        update_progress_artifact(artifact, 100.0 * (shard + 1) / plan.num_shards)
    if consolidate(store, load_run_state(store, plan.run_id)):
        summary.run_manifest = store.uri(run_manifest_key(plan.run_id))
    summary.wall_seconds = time.perf_counter() - started
    write_summary(store, summary)
    create_table_artifact(shard_rows, key="voxbatch-shards", description=f"voxbatch {plan.run_id}: per shard")
    create_markdown_artifact(
        f"```\n{summary.text()}\n```", key="voxbatch-run-summary", description=f"voxbatch {plan.run_id}"
    )
    return summary.to_dict()
