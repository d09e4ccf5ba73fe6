"""Fan a planned run out to the `voxbatch-shard` deployment and wait: one flow run per uncommitted shard.

Each dispatch carries an idempotency key made of the run id, the shard, this parent flow run and the attempt,
so a retried parent re-attaches to the shard runs it already started instead of starting them twice. A shard
run that crashed (its worker killed, its node preempted) is dispatched again, up to `max_attempts` in all; one
whose worker vanished without a word (its storage lease went quiet) is first marked Crashed on the server.
A shard run that failed (bad input, a corrupt model, storage retries exhausted) is not: the same would happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import State, StateType
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Crashed, Scheduled

from flows.server_database import Database, database_of, sqlite_advice
from flows.server_errors import Backoff, BusyWatch, server_unavailable
from flows.shard_flow import DEVICE_FATAL
from tasks.errors import ConfigError, RunIncomplete
from tasks.shard.lease import LeaseWatch, attempt_token, write_fence
from tasks.storage import ObjectStore

ACTIVE = {StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING}
STUCK = {StateType.PENDING, StateType.CANCELLING}  # states a live runner leaves within seconds


@dataclass
class ShardRun:
    shard: int
    attempt: int
    flow_run_id: UUID
    token: str
    state: StateType | None = None
    message: str = ""
    waiting_since: float = field(default_factory=time.monotonic)
    since: float = field(default_factory=time.monotonic)  # when `state` was first seen
    warned_unclaimed: bool = False


@dataclass
class DispatchResult:
    completed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # shard -> why (the last attempt's state message)
    redispatched: int = 0


def _deployment(client: SyncPrefectClient, deployment: str) -> tuple[UUID, Database]:
    """The deployment's id, and the server's database as its returned parameter schema shows it."""
    try:
        found = client.read_deployment_by_name(deployment)
    except ObjectNotFound as exc:
        raise ConfigError(
            f"--dispatch {deployment}: no such deployment on the Prefect server",
            hint="start `voxbatch worker` (it serves voxbatch-shard/voxbatch-shard) or `prefect deploy --all`",
        ) from exc
    return found.id, database_of(found.parameter_openapi_schema)


def _refuse_on_sqlite(database: Database, shards: int, most: int) -> None:
    if database == "sqlite" and most and shards > most:
        raise ConfigError(
            f"--dispatch of {shards} shards to a Prefect server on SQLite: more than run.dispatch_sqlite_max_shards "
            f"({most}); {sqlite_advice(shards)}",
            hint="run the server on PostgreSQL, or make fewer, larger shards (--shard-minutes, --shard-size); "
            "shards of many minutes each start rarely enough: raise run.dispatch_sqlite_max_shards (0: no limit)",
        )


@dataclass
class _Dispatcher:
    """Starts attempts of shards as flow runs of one deployment (what `run_deployment(timeout=0)` does, less
    its lookup of the deployment and its new client per call: one request per shard)."""

    client: SyncPrefectClient
    deployment_id: UUID
    store: ObjectStore
    run_id: str
    tags: list[str]

    def __call__(self, shard: int, attempt: int) -> tuple[UUID, str]:
        """Start one attempt of a shard; returns its flow run id and token. The fence names the attempt first,
        so an earlier attempt still going stops before its commit."""
        parent = flow_run.get_id() or "no-parent"
        token = attempt_token(str(parent), attempt)
        write_fence(self.store, self.run_id, shard, token)
        child = self.client.create_flow_run_from_deployment(
            self.deployment_id,
            parameters={"out": self.store.uri(""), "run_id": self.run_id, "shard": shard, "token": token},
            state=Scheduled(),
            name=f"{self.run_id}-shard-{shard}" + (f"-attempt-{attempt}" if attempt else ""),
            tags=self.tags,
            idempotency_key=f"voxbatch:{self.run_id}:shard-{shard}:parent-{parent}:attempt-{attempt}",
        )
        return child.id, token


def dispatch_shards(
    deployment: str,
    store: ObjectStore,
    run_id: str,
    shards: list[int],
    *,
    tags: list[str],
    max_attempts: int,
    lease_timeout: float,
    stuck_deadline: float = 120.0,
    server_deadline: float = 300.0,
    poll_seconds: float = 0.5,
    unclaimed_warning_seconds: float = 60.0,
    on_poll: Callable[[list[int], list[int]], None] | None = None,
    sqlite_max_shards: int = 0,
) -> DispatchResult:
    """Dispatch `shards` of run `run_id`, wait for all, re-dispatch crashed ones; `on_poll(running, completed)`.

    `stuck_deadline`: seconds a run may stay Pending or Cancelling (a runner that died between claiming and
    starting it, or while cancelling) before it is crashed and dispatched again. `server_deadline`: how long
    the Prefect API may be unreachable before this gives up with RunIncomplete (exit 5); what is committed is
    in storage, and the same command resumes. `sqlite_max_shards`: more shards than this to a server on SQLite
    are refused (ConfigError) before any is started; 0: no limit."""
    logger = get_run_logger()
    leases = LeaseWatch(store, run_id, lease_timeout)
    server = _Patience(server_deadline, logger)
    runs: dict[int, ShardRun] = {}
    result = DispatchResult()
    with get_client(sync_client=True) as client:
        deployment_id, database = server.call(partial(_deployment, client, deployment), pending=shards)
        _refuse_on_sqlite(database, len(shards), sqlite_max_shards)
        start = _Dispatcher(client, deployment_id, store, run_id, tags)
        for n in shards:
            flow_run_id, token = server.call(partial(start, n, 0), pending=shards)
            runs[n] = ShardRun(n, 0, flow_run_id, token)
        logger.info("dispatched %d shard(s) of run %s to %s (server database: %s)", len(runs), run_id, deployment,
                    database)  # fmt: skip
        while runs:
            time.sleep(poll_seconds)
            states = server.call(lambda: _read_states(client, [r.flow_run_id for r in runs.values()]), pending=runs)
            for run in list(runs.values()):
                state = states.get(run.flow_run_id)
                kind = state.type if state else StateType.SCHEDULED  # not returned: still waiting for a worker
                message = (state.message or state.name or "") if state else "Scheduled"
                if kind == StateType.CRASHED and server.call(
                    partial(_was_cancelled, client, run.flow_run_id), pending=runs
                ):  # cancelled by a user, then reported Crashed as its slot ended: not to be dispatched again
                    kind, message = StateType.CANCELLED, "cancelled while it ran"
                if run.state != kind:
                    run.since = time.monotonic()
                run.state = kind
                run.message = message
                crash = ""
                if run.state == StateType.RUNNING and leases.stale(run.shard, run.token):
                    crash = f"no lease renewal from its worker for {lease_timeout:.0f} s (worker gone)"
                elif run.state in STUCK and time.monotonic() - run.since > stuck_deadline:
                    crash = f"{run.state.value.lower()} for over {stuck_deadline:.0f} s (its runner is gone)"
                if crash:
                    run.message = crash
                    server.call(partial(_force_crashed, client, run.flow_run_id, crash), pending=runs)
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
                fatal = run.state == StateType.FAILED and run.message.startswith(DEVICE_FATAL)
                if run.state == StateType.COMPLETED:
                    result.completed.append(run.shard)
                elif (run.state == StateType.CRASHED or fatal) and run.attempt + 1 < max_attempts:
                    logger.warning("shard %d %s (%s); dispatching it again", run.shard, _ended(run), run.message)
                    attempt = run.attempt + 1
                    leases.restart(run.shard)
                    again = partial(start, run.shard, attempt)
                    flow_run_id, token = server.call(again, pending=runs)
                    runs[run.shard] = ShardRun(run.shard, attempt, flow_run_id, token)
                    result.redispatched += 1
                else:
                    state_name = run.state.value if run.state else "missing"
                    result.failed[run.shard] = f"{state_name}: {run.message}"
                    logger.error("shard %d ended %s: %s", run.shard, state_name, run.message)
            if on_poll:
                on_poll(sorted(r.shard for r in runs.values() if r.state == StateType.RUNNING), result.completed)
    return result


def _ended(run: ShardRun) -> str:
    return "crashed" if run.state == StateType.CRASHED else "hit a fatal device error"


def _read_states(client: SyncPrefectClient, ids: list[UUID]) -> dict[UUID, State | None]:
    """The states of those of the runs `ids` that have left Scheduled (a few running, the newly finished).

    Only what changed comes back: the filter holds every id, the answer the runs past Scheduled. Reading a
    thousand whole flow runs every poll cost the server more CPU than running the shards (bench_scale.py)."""
    states: dict[UUID, State | None] = {}
    past_scheduled = [t for t in StateType if t != StateType.SCHEDULED]
    for start in range(0, len(ids), 1000):
        where = FlowRunFilter(
            id=FlowRunFilterId(any_=ids[start : start + 1000]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=past_scheduled)),
        )
        offset = 0
        while True:  # the API answers at most 200 runs a request
            found = client.read_flow_runs(flow_run_filter=where, limit=200, offset=offset)
            states.update({fr.id: fr.state for fr in found})
            if len(found) < 200:
                break
            offset += 200
    return states


def _was_cancelled(client: SyncPrefectClient, flow_run_id: UUID) -> bool:
    """Whether a crashed run was being cancelled (a user's Cancel in the UI or CLI): its worker ends the slot
    that ran it, and Prefect's engine reports that end as Crashed, which must not send the shard out again."""
    return any(s.type == StateType.CANCELLING for s in client.read_flow_run_states(flow_run_id))


def _force_crashed(client: SyncPrefectClient, flow_run_id: UUID, message: str) -> None:
    client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)


T = TypeVar("T")


@dataclass
class _Patience:
    """Calls to the Prefect API retried with backoff while the server is away (a restart, an overload: 503,
    timeouts, refused connections), up to `deadline` seconds of outage in a row; then RunIncomplete (exit 5)."""

    deadline: float
    logger: Any
    _away_since: float | None = None

    def __post_init__(self) -> None:
        self.busy = BusyWatch(self.logger)
        self._quiet: tuple[Any, Any] | None = None  # (settings, the same without client retries)

    @contextmanager
    def _no_client_retries(self) -> Iterator[None]:
        """Prefect's settings with PREFECT_CLIENT_MAX_RETRIES = 0, made once and entered per call: building
        them (`temporary_settings`) costs about 50 ms of CPU, which was most of the parent's work per shard."""
        import prefect.context
        from prefect.settings import PREFECT_CLIENT_MAX_RETRIES

        context = prefect.context.get_settings_context()
        if self._quiet is None or self._quiet[0] is not context.settings:
            quiet = context.settings.copy_with_update(updates={PREFECT_CLIENT_MAX_RETRIES: 0})
            self._quiet = (context.settings, quiet)
        with prefect.context.SettingsContext(profile=context.profile, settings=self._quiet[1]):
            yield

    def call(self, fn: Callable[[], T], *, pending: Iterable[int]) -> T:
        backoff = Backoff()
        while True:
            asked = time.monotonic()
            try:
                # This loop's backoff, not the client's (5 retries of up to 32 s each: a minute per call).
                with self._no_client_retries():
                    value = fn()
            except Exception as exc:
                if not server_unavailable(exc):
                    raise
                self.busy.saw(exc)
                now = time.monotonic()
                self._away_since = self._away_since or asked
                away = now - self._away_since
                if away > self.deadline:
                    shards = sorted(pending)
                    raise RunIncomplete(
                        f"the Prefect server has not answered for {away:.0f} s ({type(exc).__name__}); "
                        f"{len(shards)} shard(s) not confirmed: {_listed(shards)}",
                        hint="what is committed is in storage: run the same command again once the server is back",
                    ) from exc
                backoff.wait(exc, self.logger.warning)
                continue
            self._away_since = None
            return value


def _listed(shards: list[int], most: int = 20) -> str:
    shown = ", ".join(str(n) for n in shards[:most])
    return shown + (f" … and {len(shards) - most} more" if len(shards) > most else "")
