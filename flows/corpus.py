"""The corpus flow: plan, run every shard (in this process, or dispatched to workers), consolidate, summarize.

Thin over tasks/: the shard lifecycle is `tasks.shard.lifecycle`, the run's state is read back from storage.
"""

from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from flows import progress
from flows.shard_flow import synthesize_shard
from tasks.config import Settings, validate_settings
from tasks.plan.file import Plan
from tasks.plan.planner import prepare
from tasks.plan.store import write_plan
from tasks.results.report import quality_table, worst_table
from tasks.results.run_state import RunState, consolidate, load_run_state
from tasks.results.summary import RunSummary, write_summary
from tasks.shard.manifest import read_checkpoint
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import manifests_prefix, run_manifest_key, summary_key


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
            client.update_flow_run(run_id, name=name, tags=sorted(set(flow_run.get_tags()) | set(tags)))


def _run_in_process(plan: Plan, out: str, summary: RunSummary) -> float:
    """Run every shard here; returns the seconds spent on shards done before the flow started."""
    done, early = 0, 0.0
    bar = progress.ArtifactProgress(plan.num_chunks, f"voxbatch {plan.run_id}: chunks done")

    def on_progress(chunks: int, audio_seconds: float) -> None:
        progress.report(chunks, audio_seconds)
        bar.add(chunks)

    for shard in range(plan.num_shards):
        outcome = synthesize_shard(out, plan.run_id, shard, on_progress=on_progress, plan=quote(plan))
        summary.add(outcome.stats.to_dict(), outcome.already_done)
        early += outcome.stats.wall_seconds if outcome.early else 0.0
        done += plan.shard_len(shard)
        bar.set(done, force=True)
    return early


def _run_dispatched(plan: Plan, store: ObjectStore, settings: Settings, tags: list[str], state: RunState) -> RunState:
    """Dispatch the shards `state` has pending and wait; returns the run's state afterwards."""
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

    if state.pending:
        result = dispatch_shards(
            settings.run.dispatch,
            store,
            plan.run_id,
            state.pending,
            tags=[t for t in tags if t != "run-type:corpus"] + ["run-type:shard", f"run-id:{plan.run_id}"],
            max_attempts=settings.run.dispatch_attempts,
            lease_timeout=settings.run.lease_timeout_seconds,
            on_poll=on_poll,
        )
        if result.redispatched:
            logger.warning("%d shard run(s) crashed and were dispatched again", result.redispatched)
    else:
        logger.info("every shard of run %s is already committed", plan.run_id)
    state = load_run_state(store, plan.run_id, plan)
    bar.set(sum(sizes[n] for n in state.committed), force=True)
    return state


@flow(name="voxbatch-run", flow_run_name=_flow_run_name, log_prints=False)
def corpus_flow(inputs: list[str], out: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn text files into audio objects plus a Parquet manifest under `out`; returns the run summary."""
    started = time.perf_counter()
    logger = get_run_logger()
    prep = prepare(inputs, validate_settings(settings or {}))
    plan, store = prep.plan, open_store(out)
    voice, tags = _label(plan)
    _name_run(f"{corpus_name(inputs)}-{plan.run_id}", tags)
    cleaned = store.cleanup()  # a killed run's temporary files / incomplete uploads
    if cleaned:
        logger.info("removed %d leftover temporary object(s) of an earlier, killed run", cleaned)
    write_plan(store, plan)
    dispatch = prep.settings.run.dispatch
    logger.info(
        "run %s: %d chunks in %d shard(s), voice %s, %s",
        plan.run_id,
        plan.num_chunks,
        plan.num_shards,
        voice,
        f"dispatched to {dispatch}" if dispatch else "in this process",
    )
    summary = RunSummary(
        run_id=plan.run_id,
        output=store.uri(""),
        voice=voice,
        sample_rate=plan.sample_rate,
        format=prep.settings.audio.format,
        documents=prep.documents,
        manifests=store.uri(manifests_prefix(plan.run_id)),
        flow_run_id=str(flow_run.get_id() or ""),
        rejected=[r["reason"] for r in plan.rejected],
    )
    for doc in plan.inputs:
        for warning in doc["warnings"]:
            logger.warning("%s", warning)
    for reason in summary.rejected:
        logger.error("input set aside: %s", reason)
    if dispatch:
        before = load_run_state(store, plan.run_id, plan)
        state = _run_dispatched(plan, store, prep.settings, tags, before)
        summary.add_from_storage(store, state, processed=set(state.committed) - set(before.committed))
        summary.pending = state.pending
    else:
        started -= _run_in_process(plan, out, summary)  # the wall time includes a shard done while Prefect started
        state = load_run_state(store, plan.run_id, plan)
    if consolidate(store, state):
        summary.run_manifest = store.uri(run_manifest_key(plan.run_id))
    summary.wall_seconds = time.perf_counter() - started
    write_summary(store, summary)
    _artifacts(summary, state, store)
    return summary.to_dict()


def _artifacts(summary: RunSummary, state: RunState, store: ObjectStore) -> None:
    """The run's summary table and a markdown artifact with where everything is, for the Prefect UI."""
    rows: list[dict[str, Any]] = [
        {"metric": "output", "value": summary.output},
        {"metric": "chunks", "value": summary.chunks},
        {"metric": "ok", "value": summary.ok},
        {"metric": "failed", "value": summary.failed},
        {"metric": "skipped", "value": summary.skipped},
        {"metric": "synthesized now", "value": summary.synthesized},
        {"metric": "audio hours", "value": round(summary.audio_seconds / 3600, 4)},
        {"metric": "real-time factor", "value": round(summary.realtime_factor, 4)},
        {"metric": "out-of-memory backoffs", "value": summary.oom_backoffs},
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
    rows_now = state.rows()
    if rows_now:  # the report's figures (voxbatch report OUT writes them as HTML with histograms and audio)
        create_table_artifact(quality_table(rows_now), key=f"voxbatch-{key_id}-quality", description="chunk measures")
        create_table_artifact(worst_table(rows_now), key=f"voxbatch-{key_id}-worst", description="the worst chunks")
