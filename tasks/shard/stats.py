"""What a shard's work amounted to, in one typed record that adds up from shard to run.

`ShardStats` is written beside each shard's manifest (runs/<run_id>/shards/shard-<n>.json) and summed into
the run's summary; `voxbatch status`, the report and the Prefect artifacts read the same record, summed from the
rows of committed manifests where no worker recorded more.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tasks.shard.engine import EngineStats
from tasks.shard.rows import ManifestRow

ERRORS_KEPT = 10  # failed chunks named in a summary (every failed row has its error in the manifest)
ERRORS_PER_SHARD = 5
# Keys of shard JSON written before this record (runs resumed across the upgrade keep their counts).
_RENAMED = {"ooms": "oom_backoffs", "regenerated": "regenerations"}


@dataclass(frozen=True)
class ShardStats:
    """Counts and times of one shard, or of several added together (`shards` says how many)."""

    shards: int = 1
    shards_already_done: int = 0  # committed before this call: nothing was synthesized for them
    chunks: int = 0
    ok: int = 0
    flagged: int = 0  # failed only the listening check: audio kept under review/ (voxbatch review, accept)
    failed: int = 0
    skipped: int = 0
    reused: int = 0  # rows whose audio was found stored (a killed run's, another run's)
    synthesized: int = 0  # chunks sent to the synthesizer (ok or failed)
    audio_seconds: float = 0.0  # of ok chunks only: audio that failed a check (or is flagged) is not delivered
    synth_seconds: float = 0.0
    wall_seconds: float = 0.0
    storage_wait_seconds: float = 0.0  # time synthesis stood still waiting for storage writes
    asr_seconds: float = 0.0  # time spent transcribing chunks (qa.asr)
    regenerations: int = 0  # chunk syntheses made again after a failed check
    asr_heard: int = 0  # first attempts the listening check heard in full (qa.asr)
    asr_spot_checked: int = 0  # first attempts that looked normal and passed a spot check of their opening seconds
    checkpoints: int = 0
    batches: int = 0
    oom_backoffs: int = 0  # batches that ran out of memory and were made smaller
    splits: int = 0  # chunks split because they did not fit alone
    padded_cost: int = 0
    real_cost: int = 0
    compute_seconds: float = 0.0  # inside the synthesizer's calls
    budget_trajectory: tuple[tuple[int, float], ...] = ()  # (batch number, budget) at each change
    errors: tuple[str, ...] = ()  # the first failed chunks, with where they are and why

    @classmethod
    def from_rows(cls, rows: list[ManifestRow], *, already_done: bool = False) -> ShardStats:
        """Counts of one shard from its manifest rows (nothing about how it was computed)."""
        statuses = [r.status for r in rows]
        failed = [r for r in rows if r.status == "failed"]
        return cls(
            shards_already_done=int(already_done),
            chunks=len(rows),
            ok=statuses.count("ok"),
            flagged=statuses.count("flagged"),
            failed=len(failed),
            skipped=statuses.count("skipped"),
            reused=sum(bool(r.reused) for r in rows),
            audio_seconds=sum(r.duration_s or 0.0 for r in rows if r.status == "ok"),
            synth_seconds=sum(r.synth_seconds or 0.0 for r in rows),
            errors=tuple(f"{r.source}:{r.line} chunk {r.chunk_index}: {r.error}" for r in failed[:ERRORS_PER_SHARD]),
        )

    def with_engine(self, e: EngineStats) -> ShardStats:
        """These stats with the engine's counters of this shard."""
        return dataclasses.replace(
            self,
            batches=e.batches,
            oom_backoffs=e.ooms,
            splits=e.splits,
            padded_cost=e.padded_cost,
            real_cost=e.real_cost,
            compute_seconds=e.compute_seconds,
            budget_trajectory=tuple(e.trajectory),
        )

    def __add__(self, other: ShardStats) -> ShardStats:
        if not isinstance(other, ShardStats):
            return NotImplemented
        summed: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            summed[f.name] = a + b
        offset = self.batches
        summed["budget_trajectory"] = self.budget_trajectory + tuple(
            (offset + n, b) for n, b in other.budget_trajectory
        )
        summed["errors"] = (self.errors + other.errors)[:ERRORS_KEPT]
        return ShardStats(**summed)

    @property
    def padding_efficiency(self) -> float | None:
        return self.real_cost / self.padded_cost if self.padded_cost else None

    @property
    def audio_seconds_per_compute_second(self) -> float | None:
        return self.audio_seconds / self.compute_seconds if self.compute_seconds else None

    def to_dict(self) -> dict[str, Any]:
        """As JSON: every field, and the figures derived from them."""
        return {
            **dataclasses.asdict(self),
            "budget_trajectory": [list(p) for p in self.budget_trajectory],
            "errors": list(self.errors),
            "padding_efficiency": self.padding_efficiency,
            "audio_seconds_per_compute_second": self.audio_seconds_per_compute_second,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardStats:
        """From `to_dict`'s JSON (the derived figures are computed again)."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = {_RENAMED.get(k, k): v for k, v in data.items()}
        known = {k: v for k, v in data.items() if k in names}
        known["budget_trajectory"] = tuple((int(n), float(b)) for n, b in known.get("budget_trajectory", ()))
        known["errors"] = tuple(known.get("errors", ()))
        return cls(**known)


def total(stats: list[ShardStats]) -> ShardStats:
    """The sum of several shards' stats (of none: zero shards)."""
    out = ShardStats(shards=0)
    for s in stats:
        out = out + s
    return out
