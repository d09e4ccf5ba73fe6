"""`voxbatch worker`: serve the voxbatch-shard deployment on this host, one shard per GPU at a time.

The worker registers the deployment (no work pool) and keeps one warm slot process per GPU (`--limit` on CPU
hosts), each of which takes shard runs from the server and runs them in itself (`flows.slot`), under a slot
of the pool-wide concurrency limit `voxbatch-gpu` (`voxbatch-cpu` on CPU hosts), which must exist on the
server. `flows.supervisor` restarts slots and reports the runs of dead ones. docs/deployment.md says why.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from flows.supervisor import Supervisor
from tasks.config import validate_settings
from tasks.errors import ConfigError
from tasks.shard.device_slots import pool_limit_name_for
from tasks.shard.lifecycle import check_worker_overrides


def visible_gpus() -> list[str]:
    """The GPUs this host shows CUDA (honouring CUDA_VISIBLE_DEVICES), as the ids CUDA_VISIBLE_DEVICES takes."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:
        count = 0
    if declared is not None:
        return [d.strip() for d in declared.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def _check_limit_exists(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            raise ConfigError(
                f"the Prefect server has no global concurrency limit {name!r}; shards would refuse to start",
                hint=f"create it once for the pool: prefect gcl create {name} --limit <devices in the pool>",
            ) from None
    print(f"voxbatch worker: pool-wide limit {name} allows {limit.limit} shard(s) at once", file=sys.stderr)


def _register(name: str) -> UUID:
    """Create or update the voxbatch-shard/NAME deployment (no work pool: this worker's slots run it)."""
    from prefect.types.entrypoint import EntrypointType

    from flows.shard_flow import shard_flow

    # flows.shard_flow.shard_flow: found wherever voxbatch is installed, for work-pool workers as well.
    deployment = shard_flow.to_deployment(name=name, entrypoint_type=EntrypointType.MODULE_PATH)
    if isinstance(deployment, Coroutine):  # async_dispatch: a coroutine only when called from async code
        raise TypeError("to_deployment returned a coroutine in sync code")
    deployment_id = deployment.apply()
    if not isinstance(deployment_id, UUID):  # async_dispatch: a coroutine only when called from async code
        raise TypeError(f"RunnerDeployment.apply returned {type(deployment_id).__name__}, not an id")
    return deployment_id


def _say_database(deployment_id: UUID, slots: int) -> None:
    """Say which database the server runs on, and on SQLite what fan-out it holds (measured)."""
    from prefect.client.orchestration import get_client

    from flows.server_database import database_of, sqlite_advice

    with get_client(sync_client=True) as client:
        database = database_of(client.read_deployment(deployment_id).parameter_openapi_schema)
    print(f"voxbatch worker: the Prefect server's database is {database}", file=sys.stderr)
    if database == "sqlite":
        more = " (and on SQLite more slots per worker make short shards slower, not faster)" if slots > 1 else ""
        print(
            f"voxbatch worker: {sqlite_advice(1000)}; a --dispatch of more than run.dispatch_sqlite_max_shards "
            f"shards is refused there{more}",
            file=sys.stderr,
        )


def serve_shards(
    name: str, limit: int | None, settings: dict[str, dict[str, Any]] | None = None, preload: bool = False
) -> int:
    """Serve voxbatch-shard/NAME with `limit` warm slots; `settings`: worker-role settings (how this host
    computes: lanes, threads) applied to every shard it runs, checked now."""
    from flows.local_api import configured_api_url

    if not configured_api_url():
        raise ConfigError(
            "voxbatch worker needs a Prefect server to take shards from",
            hint="set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api (`prefect server start` runs one)",
        )
    gpus = visible_gpus()
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: a worker runs at least one shard at a time")
    limit = limit or max(1, len(gpus))
    limit_name = pool_limit_name_for(gpus)
    _check_limit_exists(limit_name)
    if settings:
        check_worker_overrides(settings)
        validate_settings(settings, source="voxbatch worker flags")
    deployment_id = _register(name)
    _say_database(deployment_id, limit)
    slots = [gpus[i % len(gpus)] if gpus else None for i in range(limit)]
    where = f"GPUs {', '.join(gpus)}" if gpus else "the CPU"
    print(f"voxbatch worker: serving voxbatch-shard/{name}, {limit} warm slot(s) on {where}", file=sys.stderr)
    return Supervisor(deployment_id, slots, limit_name, worker_settings=settings or {}, preload=preload).run()
