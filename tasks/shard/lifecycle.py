"""The shard lifecycle, addressed by (output URI, run id, shard number): skip if committed, do the rest, commit.

Commit order: every audio object first, the shard's stats, then its manifest last (the commit record). While a
shard is unfinished its checkpoint (rows whose audio is stored) is rewritten every few seconds, and after a
fatal device error it holds everything finished, so whoever picks the shard up next redoes only the rest.
The in-process flow and a deployment flow on a GPU worker call the same `run_shard_at`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.backends.registry import evict, load_cached, resolve_voice
from tasks.backends.synthesizer import Synthesizer, VoiceInfo
from tasks.config import Settings, SynthesisSettings, merge, validate_settings, worker_overridable
from tasks.errors import ConfigError, DeviceFatal, ModelError
from tasks.plan.file import Plan
from tasks.plan.store import read_plan
from tasks.shard import faults, lease
from tasks.shard.manifest import (
    commit_manifest,
    read_checkpoint,
    read_manifest,
    shard_is_complete,
    write_checkpoint,
)
from tasks.shard.pipeline import ProgressFn, process_shard
from tasks.shard.rows import ManifestRow
from tasks.shard.stats import ShardStats
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import content_type, shard_stats_key


@dataclass(frozen=True)
class ShardOutcome:
    run_id: str
    shard: int
    stats: ShardStats
    fatal: DeviceFatal | None = None  # the worker must stop; the finished rows are in the checkpoint
    superseded: bool = False  # a newer attempt holds the shard: this one stopped before its commit

    @property
    def already_done(self) -> bool:
        """Committed before: nothing was done for it now."""
        return bool(self.stats.shards_already_done)


class _Voices:
    """Loads the plan's voices for one shard (the process's cache keeps them for the next), remembering the last."""

    def __init__(self, plan: Plan, settings: Settings, load: Callable[[str], Synthesizer] | None) -> None:
        self.plan, self.settings, self.load = plan, settings, load
        self.last: Synthesizer | None = None

    def __call__(self, key: str) -> Synthesizer:
        self.last = self.load(key) if self.load else load_cached(*worker_voice(self.plan, self.settings, key))
        return self.last


def worker_voice(plan: Plan, settings: Settings, key: str | None = None) -> tuple[VoiceInfo, SynthesisSettings]:
    """A voice of the plan (its run voice by default) as found on this worker, verified to be the same model the
    plan was made with, and the synthesis settings that load it."""
    planned = plan.voices[key] if key is not None else plan.voice
    synthesis = settings.synthesis
    if (planned.backend, planned.spec) != (synthesis.backend, synthesis.voice):
        synthesis = synthesis.model_copy(update={"backend": planned.backend, "voice": planned.spec, "sha256": ""})
    info = resolve_voice(synthesis)
    if info.identity != planned.identity:
        raise ModelError(
            f"voice {planned.spec or planned.name!r} on this worker is not the one run {plan.run_id} was planned "
            f"with (sha256 {info.model_sha256[:16]}… here, {planned.model_sha256[:16]}… in the plan)",
            hint="install the same voice version on every worker, or plan the run again",
        )
    return info, synthesis


def worker_settings(plan: Plan, overrides: dict[str, Any] | None) -> Settings:
    """The plan's settings with a worker's own (those whose role allows it: how it computes, never what the audio
    is, which the plan fixes)."""
    check_worker_overrides(overrides or {})
    return validate_settings(merge(plan.settings, overrides or {}), source=f"plan of {plan.run_id}")


def check_worker_overrides(overrides: dict[str, Any]) -> None:
    """ConfigError unless every setting in `overrides` is one a worker may change."""
    overridable = worker_overridable()
    for section, values in overrides.items():
        allowed = overridable.get(section, frozenset())
        bad = [k for k in values if k not in allowed]
        if not allowed or bad:
            keys = ", ".join(f"{section}.{k}" for k in bad) if bad else section
            raise ConfigError(f"{keys}: a worker cannot change this setting (it shapes the audio the plan promised)")


def run_shard(
    store: ObjectStore,
    plan: Plan,
    shard: int,
    settings: Settings | None = None,
    *,
    on_progress: ProgressFn | None = None,
    load_synthesizer: Callable[[str], Synthesizer] | None = None,
    may_commit: Callable[[], bool] | None = None,
) -> ShardOutcome:
    """`may_commit()`: asked right before the commit; False means this attempt was superseded (fencing)."""
    if not 0 <= shard < plan.num_shards:
        raise ConfigError(f"shard {shard}: run {plan.run_id} has shards 0 to {plan.num_shards - 1}")
    settings = settings or validate_settings(plan.settings)
    planned = [c.chunk_id for c in plan.shard(shard)]
    committed = read_manifest(store, plan.run_id, shard)
    if committed is not None and shard_is_complete(committed, planned):
        stats = ShardStats.from_rows(committed, already_done=True)
        if on_progress:
            on_progress(len(committed), stats.audio_seconds)
        return ShardOutcome(plan.run_id, shard, stats)

    previous: dict[str, ManifestRow] = {r.chunk_id: r for r in committed or []}
    previous.update({r.chunk_id: r for r in read_checkpoint(store, plan.run_id, shard) or []})
    voices = _Voices(plan, settings, load_synthesizer)
    checkpoint = functools.partial(write_checkpoint, store, plan.run_id, shard)
    result = process_shard(plan, shard, settings, store, voices, list(previous.values()), on_progress, checkpoint)
    if result.fatal is None and may_commit is not None and not may_commit():
        return ShardOutcome(plan.run_id, shard, result.stats, superseded=True)  # its audio stays: content-addressed
    stats_key = shard_stats_key(plan.run_id, shard)
    store.put(
        stats_key,
        json.dumps(result.stats.to_dict(), indent=2).encode(),
        overwrite=True,
        content_type=content_type(stats_key),
    )
    faults.passed("stats")
    if result.fatal is not None:
        checkpoint([r for r in result.rows if r.done])
        if voices.last is not None:
            evict(voices.last)  # the voice may be half-recovered: the next shard in this process loads it afresh
        return ShardOutcome(plan.run_id, shard, result.stats, fatal=result.fatal)
    committed_rows = commit_manifest(store, plan.run_id, shard, result.rows)  # last: the shard's commit record
    if committed_rows is not result.rows:  # an overlapping attempt committed as much or more first: it stands
        return ShardOutcome(plan.run_id, shard, ShardStats.from_rows(committed_rows, already_done=True))
    return ShardOutcome(plan.run_id, shard, result.stats)


def run_shard_at(
    out: str,
    run_id: str,
    shard: int,
    overrides: dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
    token: str = "",
) -> ShardOutcome:
    """One shard picked up from storage alone: the plan, the voice identity and the settings come from OUT.
    `token`: the dispatched attempt's (tasks.shard.lease), which commits only while the fence names it."""
    store = open_store(out)
    plan = read_plan(store, run_id)
    fence = functools.partial(lease.may_commit, store, run_id, shard, token) if token else None
    return run_shard(store, plan, shard, worker_settings(plan, overrides), on_progress=on_progress, may_commit=fence)
