"""Fan a planned run out to the `voxbatch-shard` deployment and wait: one flow run per uncommitted shard.

Each dispatch carries an idempotency key made of the run id, the shard, this parent flow run and the attempt,
so a retried parent re-attaches to the shard runs it already started instead of starting them twice. A shard
run that crashed (its worker killed, its node preempted) is dispatched again, up to `max_attempts` in all; one
whose worker vanished without a word (its storage lease went quiet) is first marked Crashed on the server.
A shard run that failed (bad input, a corrupt model, storage retries exhausted) is not: the same would happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Crashed

from tasks.errors import ConfigError
from tasks.shard.lease import LeaseWatch
from tasks.storage import ObjectStore

ACTIVE = {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING}


@dataclass
class ShardRun:
    shard: int
    attempt: int
    flow_run_id: UUID
    state: StateType | None = None
    message: str = ""
    waiting_since: float = field(default_factory=time.monotonic)
    warned_unclaimed: bool = False


@dataclass
class DispatchResult:
    completed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # shard -> why (the last attempt's state message)
    redispatched: int = 0


def _dispatch(deployment: str, out: str, run_id: str, shard: int, attempt: int, tags: list[str]) -> UUID:
    parent = flow_run.get_id() or "no-parent"
    try:
        child = run_deployment(
            deployment,
            parameters={"out": out, "run_id": run_id, "shard": shard},
            timeout=0,
            idempotency_key=f"voxbatch:{run_id}:shard-{shard}:parent-{parent}:attempt-{attempt}",
            flow_run_name=f"{run_id}-shard-{shard}" + (f"-attempt-{attempt}" if attempt else ""),
            tags=tags,
            as_subflow=True,
        )
    except ObjectNotFound as exc:
        raise ConfigError(
            f"--dispatch {deployment}: no such deployment on the Prefect server",
            hint="start `voxbatch worker` (it serves voxbatch-shard/voxbatch-shard) or `prefect deploy --all`",
        ) from exc
    if not isinstance(child, FlowRun):  # sync_compatible: a coroutine only when called from async code
        raise TypeError(f"run_deployment returned {type(child).__name__}, not a flow run")
    return child.id


def dispatch_shards(
    deployment: str,
    store: ObjectStore,
    run_id: str,
    shards: list[int],
    *,
    tags: list[str],
    max_attempts: int,
    lease_timeout: float,
    poll_seconds: float = 2.0,
    unclaimed_warning_seconds: float = 60.0,
    on_poll: Callable[[list[int], list[int]], None] | None = None,
) -> DispatchResult:
    """Dispatch `shards` of run `run_id`, wait for all, re-dispatch crashed ones; `on_poll(running, completed)`."""
    logger = get_run_logger()
    out = store.uri("")
    leases = LeaseWatch(store, run_id, lease_timeout)
    runs = {n: ShardRun(n, 0, _dispatch(deployment, out, run_id, n, 0, tags)) for n in shards}
    logger.info("dispatched %d shard(s) of run %s to %s", len(runs), run_id, deployment)
    result = DispatchResult()
    with get_client(sync_client=True) as client:
        while runs:
            time.sleep(poll_seconds)
            ids = [r.flow_run_id for r in runs.values()]
            states = {fr.id: fr.state for fr in client.read_flow_runs(flow_run_filter=_ids(ids), limit=len(ids))}
            for run in list(runs.values()):
                state = states.get(run.flow_run_id)
                run.state = state.type if state else None
                run.message = (state.message or state.name or "") if state else "flow run not found"
                if run.state == StateType.RUNNING and leases.stale(run.shard):
                    run.message = f"no lease renewal from its worker for {lease_timeout:.0f} s (worker gone)"
                    client.set_flow_run_state(run.flow_run_id, Crashed(message=run.message), force=True)
                    run.state = StateType.CRASHED
                elif (
                    run.state in (StateType.SCHEDULED, StateType.PENDING)
                    and not run.warned_unclaimed
                    and time.monotonic() - run.waiting_since > unclaimed_warning_seconds
                ):
                    run.warned_unclaimed = True
                    logger.warning(
                        "shard %d has waited %.0f s for a worker: is `voxbatch worker` running?",
                        run.shard,
                        unclaimed_warning_seconds,
                    )
                if run.state in ACTIVE:
                    continue
                del runs[run.shard]
                if run.state == StateType.COMPLETED:
                    result.completed.append(run.shard)
                elif run.state == StateType.CRASHED and run.attempt + 1 < max_attempts:
                    logger.warning("shard %d crashed (%s); dispatching it again", run.shard, run.message)
                    attempt = run.attempt + 1
                    leases.restart(run.shard)
                    new_id = _dispatch(deployment, out, run_id, run.shard, attempt, tags)
                    runs[run.shard] = ShardRun(run.shard, attempt, new_id)
                    result.redispatched += 1
                else:
                    state_name = run.state.value if run.state else "missing"
                    result.failed[run.shard] = f"{state_name}: {run.message}"
                    logger.error("shard %d ended %s: %s", run.shard, state_name, run.message)
            if on_poll:
                on_poll(sorted(r.shard for r in runs.values() if r.state == StateType.RUNNING), result.completed)
    return result


def _ids(ids: list[UUID]) -> FlowRunFilter:
    return FlowRunFilter(id=FlowRunFilterId(any_=ids))
