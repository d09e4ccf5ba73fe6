"""voxbatch's environment variables, all `VOXBATCH_*`, read through one settings model (pydantic-settings).

They are for what a settings file cannot say: how a process was started (a worker's shard processes), where
this machine keeps things, fault injection for rehearsals. `voxbatch config` lists them with the settings.
The standard variables of other tools keep their own names: XDG_CACHE_HOME, AWS_*, PREFECT_*.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "VOXBATCH_"


class Environment(BaseSettings):
    """The VOXBATCH_* variables of this process, read when made (so a change made since is seen)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    faults: str = Field(
        "",
        description="Fault injection for rehearsals and tests: oom_rate=0.05,seed=7, memory_budget=4000, "
        "batch_delay=0.5, garble_rate=0.3, kill_after=manifest (tasks.shard.faults).",
    )
    voices: str = Field(
        "", description="Folder of voices built by `voxbatch voices install`; empty: $XDG_CACHE_HOME/voxbatch/voices."
    )
    gpu_slots: str = Field(
        "",
        description='Set by `voxbatch worker` for its shard processes: the GPUs ("0,1") of which each takes one.',
    )
    concurrency_limit: str = Field(
        "",
        description="The Prefect pool-wide concurrency limit a shard takes a slot of; empty: voxbatch-gpu on GPU "
        "hosts, voxbatch-cpu elsewhere.",
    )
    warm_slot: str = Field(
        "", description="Set by `voxbatch worker` in its slot processes (the slot number): shards run in-process."
    )
    worker_settings: str = Field(
        "", description="Set by `voxbatch worker` in its slot processes: its worker-role settings, as JSON."
    )
    lock_dir: str = Field("", description="Where shard processes lock the GPUs they claim; empty: the temp folder.")


def environment() -> Environment:
    return Environment()


def variable(name: str) -> str:
    """The variable of a field of `Environment`: "gpu_slots" -> "VOXBATCH_GPU_SLOTS"."""
    if name not in Environment.model_fields:
        raise KeyError(name)
    return PREFIX + name.upper()


def describe_environment() -> list[tuple[str, str, str]]:
    """(variable, description, value here) for each of them."""
    env = environment()
    return [(variable(n), f.description or "", getattr(env, n)) for n, f in Environment.model_fields.items()]


def cache_home() -> Path:
    """voxbatch's cache folder: $XDG_CACHE_HOME/voxbatch, else ~/.cache/voxbatch (learned budgets, models)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "voxbatch"
