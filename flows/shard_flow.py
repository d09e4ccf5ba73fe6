"""One shard as a Prefect task (in-process runs) and as a flow (the `voxbatch-shard` deployment on GPU workers).

Both call `tasks.shard.lifecycle.run_shard_at`: the shard is picked up from storage alone. Transient errors (storage
unreachable, a busy GPU) are retried with backoff; deterministic ones (bad input, a corrupt model) are not;
out-of-memory never reaches Prefect (the engine backs off its batch size).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows import progress
from tasks.errors import ConfigError, VoxbatchError
from tasks.lifetime import die_with_parent
from tasks.plan.store import read_plan
from tasks.shard.device_slots import claim_gpu, gpu_slots, pool_limit_name
from tasks.shard.lease import Heartbeat
from tasks.shard.lifecycle import ShardOutcome, run_shard_at
from tasks.shard.pipeline import ProgressFn
from tasks.storage import open_store

LEASE_SECONDS = 5.0  # how often a dispatched shard's worker renews its lease (the parent's timeout is longer)


def _transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry storage outages and busy devices; a bad input or corrupt model fails the same way every time."""
    try:
        state.result()
    except VoxbatchError as exc:
        return exc.transient
    except Exception:
        return False
    return False


def _log_outcome(outcome: ShardOutcome) -> None:
    logger = get_run_logger()
    s = outcome.stats
    logger.info(
        "shard %d: %s; %d ok, %d failed, %d skipped, %.1f s audio, %d OOM backoffs, %.2f s waiting on storage",
        outcome.shard,
        "already done" if outcome.already_done else "done",
        s.ok,
        s.failed,
        s.skipped,
        s.audio_seconds,
        s.oom_backoffs,
        s.storage_wait_seconds,
    )
    for error in s.errors:
        logger.warning("failed chunk %s", error)
    if s.failed > len(s.errors):
        logger.warning("… %d more failed chunks; each has its error in the shard's manifest", s.failed - len(s.errors))


@task(
    name="synthesize-shard",
    task_run_name="shard-{shard}",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=_transient_only,
)
def synthesize_shard(
    out: str,
    run_id: str,
    shard: int,
    overrides: dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
) -> ShardOutcome:
    """One shard, addressed by (output, run id, shard number); a fatal device error fails the task after commit.
    `on_progress(chunks, audio seconds)` as chunks finish."""
    outcome = run_shard_at(out, run_id, shard, overrides, on_progress=on_progress)
    _log_outcome(outcome)
    if outcome.fatal is not None:
        raise outcome.fatal
    return outcome


@contextlib.contextmanager
def _pool_slot(limit_name: str) -> Any:
    """A slot of the pool-wide global concurrency limit (strict: a missing limit is an error, not unthrottled)."""
    from prefect.concurrency.sync import concurrency

    try:
        with concurrency(limit_name, occupy=1, strict=True, lease_duration=60):
            yield
    except Exception as exc:
        if "not found" in str(exc).lower() or type(exc).__name__ == "ConcurrencySlotAcquisitionError":
            raise ConfigError(
                f"global concurrency limit {limit_name!r} is missing on the Prefect server ({exc})",
                hint=f"create it once for the pool: prefect gcl create {limit_name} --limit <devices in the pool>",
            ) from exc
        raise


@flow(name="voxbatch-shard", log_prints=False)  # the dispatching parent names each run
def shard_flow(out: str, run_id: str, shard: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one shard of a planned run on this worker: claim a device and a pool slot, heartbeat, synthesize."""
    from prefect.runtime import deployment, flow_run

    logger = get_run_logger()
    if deployment.id:  # started by a worker: never outlive it
        die_with_parent(prctl=False)
    claimed = claim_gpu(gpu_slots())
    if claimed:
        logger.info("shard %d on GPU %s of this host", shard, claimed[0])
    store = open_store(out)
    lease = Heartbeat(store, run_id, shard, LEASE_SECONDS, flow_run_id=str(flow_run.get_id()))
    with lease, _pool_slot(pool_limit_name()):
        started = time.perf_counter()
        plan = read_plan(store, run_id)
        bar = progress.ArtifactProgress(plan.shard_len(shard), f"voxbatch {run_id} shard {shard}: chunks done")
        outcome = synthesize_shard(out, run_id, shard, overrides, on_progress=bar.add)
    return {**outcome.stats.to_dict(), "worker_seconds": time.perf_counter() - started}
