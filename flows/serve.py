"""`voxbatch worker`: serve the voxbatch-shard deployment on this host, one shard per GPU at a time.

A served deployment (`flow.serve`): no work pool, one long-running process that polls the server and starts
each shard run as a child process. Those children end with the worker (`tasks.lifetime`), claim a GPU of
their own (`tasks.shard.device_slots`) and a slot of the pool-wide concurrency limit `voxbatch-gpu` (`voxbatch-cpu`
on CPU hosts), which must exist on the server.
"""

from __future__ import annotations

import os
import sys

from tasks.environment import variable
from tasks.errors import EXIT_OK, ConfigError
from tasks.shard.device_slots import pool_limit_name


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


def serve_shards(name: str, limit: int | None) -> int:
    from flows.local_api import configured_api_url

    # Prefect's runner looks for new runs every 10 s by default: most of a small shard's dispatch latency.
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
    if not configured_api_url():
        raise ConfigError(
            "voxbatch worker needs a Prefect server to take shards from",
            hint="set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api (`prefect server start` runs one)",
        )
    gpus = visible_gpus()
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: a worker runs at least one shard at a time")
    limit = limit or max(1, len(gpus))
    os.environ[variable("gpu_slots")] = ",".join(gpus)  # inherited by each shard process, which claims one of them
    _check_limit_exists(pool_limit_name())
    from prefect.types.entrypoint import EntrypointType

    from flows.shard_flow import shard_flow

    where = f"GPUs {', '.join(gpus)}" if gpus else "the CPU"
    print(f"voxbatch worker: serving voxbatch-shard/{name}, {limit} shard(s) at a time on {where}", file=sys.stderr)
    shard_flow.serve(
        name=name,
        limit=limit,
        print_starting_message=False,
        pause_on_shutdown=False,  # other workers may serve the same deployment
        entrypoint_type=EntrypointType.MODULE_PATH,  # flows.shard_flow.shard_flow: found wherever voxbatch is installed
    )
    return EXIT_OK
