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
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from tasks.lifetime import die_with_parent

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
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


def claim_next(client: SyncPrefectClient, deployment_id: UUID) -> FlowRun | None:
    """The earliest due scheduled run of the deployment that this slot managed to move to Pending, else None.

    A read-only query (the deployment's get_scheduled_flow_runs endpoint also writes its last-polled time: a
    write per poll per slot, which a SQLite server pays for in locks)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import Abort
    from prefect.states import Pending
    from prefect.utilities.engine import propose_state_sync

    due = FlowRunFilter(
        deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=datetime.now(UTC)),
    )
    runs = client.read_flow_runs(flow_run_filter=due, sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=8)
    for run in runs:
        try:
            state = propose_state_sync(client, Pending(), flow_run_id=run.id)
        except Abort:
            continue  # another slot took it first
        if state.is_pending():
            return run
    return None


def serve(deployment_id: UUID, status: Path, poll_seconds: float) -> int:
    """Take and run shards until the supervisor goes; returns EXIT_RESTART after a fatal device error."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.flow_engine import run_flow

    from flows.shard_flow import DEVICE_FATAL, shard_flow

    outage = 0.0
    with get_client(sync_client=True) as client:
        while True:
            try:
                run = claim_next(client, deployment_id)
                outage = 0.0
            except (httpx.HTTPError, PrefectHTTPStatusError, OSError) as exc:
                # The server is restarting or overloaded: keep the slot (and its warm voice), ask again later.
                outage = min(30.0, max(1.0, outage * 2))
                _log.warning("Prefect API unavailable (%s); asking again in %.0f s", type(exc).__name__, outage)
                time.sleep(outage)
                continue
            if run is None:
                time.sleep(poll_seconds)
                continue
            write_status(status, run.id)
            try:
                state = run_flow(shard_flow, flow_run=run, return_type="state")
            except Exception:
                _log.exception("flow run %s ended with an error outside the flow", run.id)
                state = None
            write_status(status, None)
            message = getattr(state, "message", None) or ""
            if message.startswith(DEVICE_FATAL):
                return EXIT_RESTART


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.slot")
    parser.add_argument("--deployment-id", type=UUID, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    args = parser.parse_args(argv)
    die_with_parent()  # started from the supervisor's main thread: prctl holds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s slot %(process)d: %(message)s", stream=sys.stderr)
    write_status(args.status, None)
    return serve(args.deployment_id, args.status, args.poll_seconds)


if __name__ == "__main__":
    sys.exit(main())
