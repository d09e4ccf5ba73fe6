"""A warm slot of `voxbatch worker`: one long-lived process that runs voxbatch-shard flow runs in itself, one after
another, so imports, the CUDA context, loaded voices and learned budgets carry over from one shard to the next.

The slot claims a scheduled run of its deployment the way Prefect's own runner does (proposing Pending: the
server lets exactly one claimant through), then runs the flow in this process with Prefect's flow engine, so
each shard is still a flow run of its own in the UI, with state, logs and progress. The device is fixed when
the slot starts (CUDA_VISIBLE_DEVICES, set by the supervisor in `flows.serve`) and stays pinned to it. The
slot tells the supervisor which run it is on through a small status file: if the slot dies, the supervisor
marks that run Crashed, and the dispatching parent sends it elsewhere.

Run by the supervisor as `python -m flows.slot`, never by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from tasks.lifetime import die_with_parent

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.client.schemas.objects import FlowRun

EXIT_RESTART = 75  # the slot asks for a fresh process (a fatal device error): not a crash
_log = logging.getLogger("voxbatch.worker")


def write_status(path: Path, flow_run_id: UUID | None) -> None:
    """Which flow run this slot is on (None: idle), replaced atomically for the supervisor to read."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"flow_run_id": str(flow_run_id) if flow_run_id else None, "pid": os.getpid()}))
    os.replace(tmp, path)


def read_status(path: Path) -> UUID | None:
    try:
        value = json.loads(path.read_text()).get("flow_run_id")
    except (OSError, ValueError):
        return None
    return UUID(value) if value else None


def _due(deployment_id: UUID) -> FlowRunFilter:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=datetime.now(UTC)),
    )


def claim_next(client: SyncPrefectClient, deployment_id: UUID) -> FlowRun | None:
    """The earliest due scheduled run of the deployment that this slot managed to move to Pending, else None.

    A read-only query (the deployment's get_scheduled_flow_runs endpoint also writes its last-polled time: a
    write per poll per slot, which a SQLite server pays for in locks)."""
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import Abort
    from prefect.states import Pending
    from prefect.utilities.engine import propose_state_sync

    due = _due(deployment_id)
    runs = client.read_flow_runs(flow_run_filter=due, sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=2)
    for run in runs:
        try:
            state = propose_state_sync(client, Pending(), flow_run_id=run.id)
        except Abort:
            continue  # another slot took it first
        if state.is_pending():
            return run
    return None


def serve(deployment_id: UUID, status: Path, poll_seconds: float) -> int:
    """Take and run shards until the supervisor goes; returns EXIT_RESTART after a fatal device error.

    The slot holds one slot of the pool-wide concurrency limit for as long as it lives (a slot is a device:
    the limit says how many serve at once), taken before its first shard and renewed by Prefect: one
    acquisition per slot, not one per shard (each is a locked write on the server, and on SQLite a refused
    write costs the client a 2 s backoff). The Prefect API away (a restart, an overload) is waited out."""
    from prefect.context import SyncClientContext
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.shard_flow import pool_slot
    from tasks.shard.device_slots import pool_limit_name

    # No Prefect flow-run heartbeats: a shard's storage lease already says whether its attempt is alive, and
    # the engine's heartbeat thread, which sleeps in whole seconds, costs up to a second at the end of every run.
    no_heartbeats = temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    # One client for the slot's life, which the flow engine finds in its context and uses for every shard (a
    # client of its own per run cost about 0.1 s of CPU: a new HTTP pool, an SSL context).
    with no_heartbeats, SyncClientContext.get_or_create() as clients, contextlib.ExitStack() as held:
        client = clients.client
        asked = time.monotonic()
        _while_server_is_away(lambda: held.enter_context(pool_slot(pool_limit_name(), stop_if_lost=False)))
        waited = time.monotonic() - asked
        _log.info("holding a slot of the pool-wide limit %s (waited %.1f s)", pool_limit_name(), waited)
        while True:
            run = _while_server_is_away(lambda: claim_next(client, deployment_id))
            if run is None:
                time.sleep(poll_seconds)
                continue
            if _run(run, status):
                return EXIT_RESTART


T = TypeVar("T")


def _while_server_is_away(call: Callable[[], T]) -> T:
    """`call()`, repeated with backoff while the Prefect API is unreachable or overloaded."""
    from flows.server_errors import Backoff, server_unavailable

    backoff = Backoff()
    while True:
        try:
            return call()
        except Exception as exc:
            if not server_unavailable(exc):
                raise
            # The server is restarting or overloaded: keep the slot (and its warm voice), ask again later.
            backoff.wait(exc, _log.warning)


def _run(run: FlowRun, status: Path) -> bool:
    """Run one claimed shard run in this process; True after a fatal device error (the slot must restart)."""
    from prefect.flow_engine import run_flow

    from flows.shard_flow import DEVICE_FATAL, shard_flow

    write_status(status, run.id)
    try:
        state = run_flow(shard_flow, flow_run=run, return_type="state")
    except Exception:
        _log.exception("flow run %s ended with an error outside the flow", run.id)
        state = None
    write_status(status, None)
    return (getattr(state, "message", None) or "").startswith(DEVICE_FATAL)


def preload_default_voice() -> None:
    """Load the voice a run with default synthesis settings uses (with this worker's own: lanes, threads), so
    the slot's first such shard starts warm too. A voice that fails to load here fails its shards as usual."""
    from flows.shard_flow import host_settings
    from tasks.backends.registry import load_cached, resolve_voice
    from tasks.config import validate_settings

    started = time.monotonic()
    try:
        synthesis = validate_settings(host_settings(), source="voxbatch worker").synthesis
        load_cached(resolve_voice(synthesis), synthesis)
    except Exception as exc:
        _log.warning("could not preload the default voice: %s", exc)
        return
    _log.info("default voice %s loaded in %.1f s", synthesis.voice or synthesis.backend, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.slot")
    parser.add_argument("--deployment-id", type=UUID, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--poll-seconds", type=float, default=0.25)
    parser.add_argument("--preload", action="store_true", help="load the default voice before taking shards")
    args = parser.parse_args(argv)
    die_with_parent()  # started from the supervisor's main thread: prctl holds
    # Asked to stop: unwind (a shard in progress ends Crashed, the pool-wide slot is given back), then exit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s slot %(process)d: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per API request, several per second
    write_status(args.status, None)
    if args.preload:
        preload_default_voice()
    return serve(args.deployment_id, args.status, args.poll_seconds)


if __name__ == "__main__":
    sys.exit(main())
