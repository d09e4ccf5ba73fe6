"""One shard as a Prefect task (in-process runs) and as a flow (the `voxbatch-shard` deployment on GPU workers).

Both call `tasks.shard.lifecycle.run_shard_at`: the shard is picked up from storage alone. Transient errors (storage
unreachable, a busy GPU) are retried with backoff; deterministic ones (bad input, a corrupt model) are not;
out-of-memory never reaches Prefect (the engine backs off its batch size).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Failed
from prefect.tasks import exponential_backoff

from flows import progress
from tasks.config import merge
from tasks.environment import environment
from tasks.errors import ConfigError, DeviceFatal, VoxbatchError
from tasks.lifetime import die_with_parent
from tasks.plan.store import read_plan
from tasks.shard.device_slots import claim_gpu, gpu_slots, pool_limit_name
from tasks.shard.lease import Heartbeat
from tasks.shard.lifecycle import ShardOutcome, run_shard_at
from tasks.shard.pipeline import ProgressFn
from tasks.storage import open_store

DEVICE_FATAL = "voxbatch device fatal"  # how a shard run's Failed message says "dispatch me to a fresh process"
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
        "shard %d: %s; %d ok, %d flagged, %d failed, %d skipped, %.1f s audio, %d OOM backoffs, %.2f s waiting on "
        "storage",
        outcome.shard,
        "already done" if outcome.already_done else "done",
        s.ok,
        s.flagged,
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


# Waits between a shard task's attempts after a transient error (10, 20, 40 s, before jitter); the corpus flow's
# own storage calls wait the same (flows.corpus._patiently).
STORAGE_RETRY_DELAYS: list[float] = [float(d) for d in exponential_backoff(backoff_factor=10)(3)]


@task(
    name="synthesize-shard",
    task_run_name="shard-{shard}",
    cache_policy=NO_CACHE,
    retries=len(STORAGE_RETRY_DELAYS),
    retry_delay_seconds=STORAGE_RETRY_DELAYS,
    retry_jitter_factor=0.5,
    retry_condition_fn=_transient_only,
)
def synthesize_shard(
    out: str,
    run_id: str,
    shard: int,
    overrides: dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
    token: str = "",
) -> ShardOutcome:
    """One shard, addressed by (output, run id, shard number); a fatal device error fails the task after commit.
    `on_progress(chunks, audio seconds)` as chunks finish; `token`: the dispatched attempt's (fencing)."""
    outcome = run_shard_at(out, run_id, shard, overrides, on_progress=on_progress, token=token)
    if outcome.superseded:
        get_run_logger().warning("shard %d: a newer attempt holds it; this one stopped before its commit", shard)
        return outcome
    _log_outcome(outcome)
    if outcome.fatal is not None:
        raise outcome.fatal
    return outcome


def host_settings() -> dict[str, Any]:
    """The worker-role settings `voxbatch worker` was started with (--lanes, --threads), for its shards."""
    value = environment().worker_settings
    return dict(json.loads(value)) if value else {}


@contextlib.contextmanager
def pool_slot(limit_name: str, *, stop_if_lost: bool = True) -> Any:
    """A slot of the pool-wide global concurrency limit (strict: a missing limit is an error, not unthrottled).

    `stop_if_lost`: end the work when Prefect cannot renew the slot's lease (a server away for over a minute);
    a warm worker slot, which holds one across shards, waits the server out instead."""
    from prefect.concurrency.sync import concurrency

    try:
        with concurrency(
            limit_name, occupy=1, strict=True, lease_duration=60, raise_on_lease_renewal_failure=stop_if_lost
        ):
            yield
    except Exception as exc:
        if "not found" in str(exc).lower() or type(exc).__name__ == "ConcurrencySlotAcquisitionError":
            raise ConfigError(
                f"global concurrency limit {limit_name!r} is missing on the Prefect server ({exc})",
                hint=f"create it once for the pool: prefect gcl create {limit_name} --limit <devices in the pool>",
            ) from exc
        raise


@flow(name="voxbatch-shard", log_prints=False)  # the dispatching parent names each run
def shard_flow(
    out: str, run_id: str, shard: int, overrides: dict[str, Any] | None = None, token: str = ""
) -> dict[str, Any] | State:
    """Run one shard of a planned run on this worker: heartbeat, then take a pool slot and synthesize.

    `token`: the dispatching parent's name for this attempt; the lease carries it and the commit checks the
    fence against it. A fatal device error ends the run Failed with a message starting DEVICE_FATAL, which the
    parent dispatches again (a fresh process is what fixes it)."""
    from prefect.runtime import deployment, flow_run

    logger = get_run_logger()
    if deployment.id and not environment().warm_slot:  # started by a worker as a process of its own
        die_with_parent(prctl=False)
    claimed = claim_gpu(gpu_slots())
    if claimed:
        logger.info("shard %d on GPU %s of this host", shard, claimed[0])
    store = open_store(out, check=False)
    beat = Heartbeat(store, run_id, shard, LEASE_SECONDS, flow_run_id=str(flow_run.get_id()), token=token)
    with beat:  # alive from here on, before waiting on storage or for a pool slot
        waited = time.perf_counter()
        store.check()
        # A warm worker slot holds its pool slot across the shards it runs back to back (flows.slot).
        held = contextlib.nullcontext() if environment().warm_slot else pool_slot(pool_limit_name())
        with held:
            started = time.perf_counter()
            logger.info("shard %d: storage checked and pool slot taken in %.2f s", shard, started - waited)
            plan = read_plan(store, run_id)
            chunks = plan.shard_len(shard)
            # A progress bar for shards long enough to watch (a one-line prompt's progress is its state).
            bar = (
                progress.ArtifactProgress(chunks, f"voxbatch {run_id} shard {shard}: chunks done")
                if chunks >= 10
                else None
            )
            try:
                here = merge(host_settings(), overrides or {})
                outcome = synthesize_shard(out, run_id, shard, here, on_progress=bar.add if bar else None, token=token)
            except DeviceFatal as exc:
                return Failed(message=f"{DEVICE_FATAL}: {exc}")
    return {**outcome.stats.to_dict(), "worker_seconds": time.perf_counter() - started}
