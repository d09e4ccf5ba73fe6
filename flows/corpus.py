"""The corpus flow: a planned run's shards done (in this process, or dispatched to workers), then consolidated
and summarized.

`voxbatch run` plans and writes the plan itself (to fail fast on bad input, and to do shards while a temporary
Prefect API boots), then hands the flow a reference to it: the output and the run id, and the stats of the
shards it did meanwhile. Triggered as a deployment, the flow plans its `inputs` itself. Thin over tasks/: the
shard lifecycle is tasks.shard.lifecycle, the run's state is read back from storage.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, TypeVar
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows import progress
from flows.shard_flow import STORAGE_RETRY_DELAYS, synthesize_shard
from tasks.config import Settings, validate_settings
from tasks.errors import VoxbatchError
from tasks.plan.file import Plan
from tasks.plan.planner import prepare
from tasks.plan.store import read_plan, write_plan
from tasks.results.figures import gather
from tasks.results.report import quality_table, worst_table
from tasks.results.run_state import RunState, consolidate, load_run_state
from tasks.results.summary import RunSummary, stats_from_storage, write_summary
from tasks.shard.manifest import read_checkpoint
from tasks.shard.pipeline import ProgressFn
from tasks.shard.stats import ShardStats, total
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import manifests_prefix, summary_key

T = TypeVar("T")


def _patiently(what: str, call: Callable[[], T]) -> T:
    """`call()`, tried again after each of the shard task's retry waits while it fails with a transient error (an
    endpoint unreachable): an outage its shards ride out, the flow's own storage calls (open, plan, state,
    consolidation, summary) ride out too. The last error is raised as it came (naming the endpoint)."""
    for wait in (*STORAGE_RETRY_DELAYS, None):
        try:
            return call()
        except VoxbatchError as exc:
            if not exc.transient or wait is None:
                raise
            get_run_logger().warning("%s: %s; trying again in %.0f s", what, exc, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def corpus_name(inputs: list[str]) -> str:
    """A short name for the flow run: the first input's file or folder name (+N more)."""
    first = PurePosixPath(inputs[0].rstrip("/")).name or "corpus" if inputs else "corpus"
    first = first.rsplit(".", 1)[0] if "." in first[1:] else first
    return first + (f"+{len(inputs) - 1}" if len(inputs) > 1 else "")


def _flow_run_name() -> str:
    return f"voxbatch-{corpus_name(list(flow_run.parameters.get('inputs') or []))}"


def _label(plan: Plan) -> tuple[str, list[str]]:
    voice = f"{plan.voice.backend}:{plan.voice.name}"
    return voice, ["voxbatch", "run-type:corpus", f"voice:{voice}"]


def _name_run(name: str, tags: list[str]) -> None:
    """Rename this flow run once the run id is known, and tag it (the name template runs before planning)."""
    from prefect.client.orchestration import get_client

    run_id = flow_run.get_id()
    if run_id:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(str(run_id)), name=name, tags=sorted(set(flow_run.get_tags()) | set(tags)))


def _run_in_process(
    plan: Plan, out: str, done_early: dict[int, ShardStats], on_progress: ProgressFn | None
) -> tuple[ShardStats, float]:
    """Run every shard here but those done early; returns the stats of all, and the seconds spent on those."""
    logger = get_run_logger()
    done = 0
    bar = progress.ArtifactProgress(plan.num_chunks, f"voxbatch {plan.run_id}: chunks done")
    advance = bar.add if on_progress is None else progress.both(on_progress, bar.add)
    shards: list[ShardStats] = []
    for shard in range(plan.num_shards):
        early = done_early.get(shard)
        if early is not None:  # by this run, before the flow started (its progress was shown then)
            logger.info("shard %d: done before the flow started; %d ok, %d failed", shard, early.ok, early.failed)
            shards.append(early)
        else:
            shards.append(synthesize_shard(out, plan.run_id, shard, on_progress=advance).stats)
        done += plan.shard_len(shard)
        bar.set(done, force=True)
    return total(shards), sum(s.wall_seconds for s in done_early.values())


def _run_dispatched(plan: Plan, store: ObjectStore, settings: Settings, tags: list[str], state: RunState) -> RunState:
    """Dispatch the shards `state` has unfinished (pending, or with failed chunks) and wait; returns the run's state
    afterwards."""
    from flows.dispatch import dispatch_shards

    logger = get_run_logger()
    sizes = {n: plan.shard_len(n) for n in range(plan.num_shards)}
    committed = set(state.committed)
    bar = progress.ArtifactProgress(
        plan.num_chunks, f"voxbatch {plan.run_id}: chunks done", done=sum(sizes[n] for n in committed)
    )
    last_read = [0.0]

    def on_poll(running: list[int], completed: list[int]) -> None:
        # Committed shards count whole; running ones by their checkpoint (rows whose audio is stored), read at
        # most every 10 s: one GET per running shard.
        if time.monotonic() - last_read[0] < 10.0:
            return
        last_read[0] = time.monotonic()
        in_flight = sum(len(read_checkpoint(store, plan.run_id, n) or []) for n in running)
        bar.set(sum(sizes[n] for n in committed | set(completed)) + in_flight)

    if state.unfinished:
        result = dispatch_shards(
            settings.run.dispatch,
            store,
            plan.run_id,
            state.unfinished,
            tags=[t for t in tags if t != "run-type:corpus"] + ["run-type:shard", f"run-id:{plan.run_id}"],
            max_attempts=settings.run.dispatch_attempts,
            lease_timeout=settings.run.lease_timeout_seconds,
            stuck_deadline=settings.run.stuck_seconds,
            server_deadline=settings.run.server_outage_seconds,
            sqlite_max_shards=settings.run.dispatch_sqlite_max_shards,
            on_poll=on_poll,
        )
        if result.redispatched:
            logger.warning("%d shard run(s) crashed and were dispatched again", result.redispatched)
        for shard, why in sorted(result.failed.items())[:20]:  # on the console too: Prefect's logs are not (no -v)
            print(f"voxbatch: shard {shard} not done: {why}", file=sys.stderr)
    else:
        logger.info("every chunk of run %s is already done", plan.run_id)
    state = load_run_state(store, plan.run_id, plan)
    bar.set(sum(sizes[n] for n in state.committed), force=True)
    return state


@flow(name="voxbatch-run", flow_run_name=_flow_run_name, log_prints=False)
def corpus_flow(
    inputs: list[str],
    out: str,
    settings: dict[str, Any] | None = None,
    run_id: str = "",
    done_early: dict[int, ShardStats] | None = None,
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Turn text files into audio objects plus a Parquet manifest under `out`; returns the run summary.

    `run_id`: a run the caller has planned and written under `out` already (its settings are the plan's; `inputs`
    only name the flow run); empty: plan `inputs` with `settings` here. `done_early`: stats of the shards the
    caller did before the flow started, by shard number. `on_progress(chunks, audio seconds)` as chunks finish
    in this process."""
    started = time.perf_counter()
    logger = get_run_logger()
    store = _patiently("open the output", lambda: open_store(out))
    cleaned = _patiently("clean up", store.cleanup)  # a killed run's temporary files (local only)
    if cleaned:
        logger.info("removed %d leftover temporary object(s) of an earlier, killed run", cleaned)
    if run_id:
        plan = _patiently("read the plan", lambda: read_plan(store, run_id))
    else:
        plan = prepare(inputs, validate_settings(settings or {})).plan
        write_plan(store, plan)
    run_settings = validate_settings(plan.settings, source=f"plan of {plan.run_id}")
    voice, tags = _label(plan)
    _name_run(f"{corpus_name(inputs)}-{plan.run_id}", tags)
    dispatch = run_settings.run.dispatch
    logger.info(
        "run %s: %d chunks in %d shard(s), voice %s, %s",
        plan.run_id,
        plan.num_chunks,
        plan.num_shards,
        voice,
        f"dispatched to {dispatch}" if dispatch else "in this process",
    )
    for doc in plan.inputs:
        for warning in doc["warnings"]:
            logger.warning("%s", warning)
    for r in plan.rejected:
        logger.error("input set aside: %s", r["reason"])
    if dispatch:
        before = _patiently("read the run's state", lambda: load_run_state(store, plan.run_id, plan))
        state = _run_dispatched(plan, store, run_settings, tags, before)
        stats = stats_from_storage(store, state, processed=set(before.unfinished) & set(state.committed))
    else:
        stats, early_seconds = _run_in_process(plan, out, done_early or {}, on_progress)
        started -= early_seconds  # the run's wall time includes the shards done before the flow started
        state = _patiently("read the run's state", lambda: load_run_state(store, plan.run_id, plan))
    consolidated = _patiently("consolidate", lambda: consolidate(store, state))
    summary = RunSummary(
        run_id=plan.run_id,
        output=store.uri(""),
        voice=", ".join(dict.fromkeys(f"{v.backend}:{v.name}" for v in plan.voices.values())),
        sample_rate=plan.sample_rate,
        format=run_settings.audio.format,
        documents=len(plan.inputs),
        stats=stats,
        wall_seconds=time.perf_counter() - started,
        manifests=store.uri(manifests_prefix(plan.run_id)),
        run_manifest=store.uri(consolidated) if consolidated else "",
        pending=tuple(state.pending),
        flow_run_id=str(flow_run.get_id() or ""),
        rejected=tuple(r["reason"] for r in plan.rejected),
    )
    _patiently("write the summary", lambda: write_summary(store, summary))
    _artifacts(summary, state, store)
    return summary.to_dict()


def _artifacts(summary: RunSummary, state: RunState, store: ObjectStore) -> None:
    """The run's summary table and a markdown artifact with where everything is, for the Prefect UI."""
    s = summary.stats
    rows: list[dict[str, Any]] = [
        {"metric": "output", "value": summary.output},
        {"metric": "chunks", "value": s.chunks},
        {"metric": "ok", "value": s.ok},
        {"metric": "flagged for review", "value": s.flagged},
        {"metric": "failed", "value": s.failed},
        {"metric": "skipped", "value": s.skipped},
        {"metric": "synthesized now", "value": s.synthesized},
        {"metric": "audio hours", "value": round(s.audio_seconds / 3600, 4)},
        {"metric": "real-time factor", "value": round(summary.realtime_factor, 4)},
        {"metric": "out-of-memory backoffs", "value": s.oom_backoffs},
        {"metric": "shards committed", "value": len(state.committed)},
        {"metric": "shards pending", "value": len(state.pending)},
        {"metric": "inputs set aside", "value": len(summary.rejected)},
    ]
    rows += [{"metric": f"failed: {reason}", "value": n} for reason, n, _ in state.failures()]
    key_id = summary.run_id.lower().replace("_", "-").replace(".", "-")
    create_table_artifact(rows, key=f"voxbatch-{key_id}-summary", description=f"voxbatch run {summary.run_id}")
    status_cmd = f"voxbatch status {summary.output} --run-id {summary.run_id}"
    lines = [
        f"# voxbatch run `{summary.run_id}`",
        "",
        f"- voice `{summary.voice}`, {summary.format} at {summary.sample_rate} Hz",
        f"- shard manifests: [{summary.manifests}]({summary.manifests})",
        f"- summary: [{store.uri(summary_key(summary.run_id))}]({store.uri(summary_key(summary.run_id))})",
    ]
    if summary.run_manifest:
        lines.append(f"- run manifest: [{summary.run_manifest}]({summary.run_manifest})")
    lines += ["", f"Progress and failures from storage alone: `{status_cmd}`", "", "```", summary.text(), "```"]
    create_markdown_artifact("\n".join(lines), key=f"voxbatch-{key_id}-report", description="where the output is")
    figures = gather(state)  # the report's figures (voxbatch report OUT writes them as HTML with histograms, audio)
    if figures.rows:
        create_table_artifact(quality_table(figures), key=f"voxbatch-{key_id}-quality", description="chunk measures")
        create_table_artifact(worst_table(figures), key=f"voxbatch-{key_id}-worst", description="the worst chunks")
