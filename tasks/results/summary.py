"""The run summary: totals over the shards' stats, written as JSON beside the manifests."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from tasks.results.run_state import RunState
from tasks.shard.stats import ShardStats, total
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import content_type, shard_stats_key, summary_key


@dataclass(frozen=True)
class RunSummary:
    """A run as its flow ends it: where and what it is, and the sum of its shards' stats."""

    run_id: str
    output: str
    voice: str  # "backend:name", or several, comma-separated: the run's voice first, then others it used
    sample_rate: int
    format: str
    documents: int
    stats: ShardStats = field(default_factory=lambda: ShardStats(shards=0))
    wall_seconds: float = 0.0
    manifests: str = ""
    run_manifest: str = ""
    pending: tuple[int, ...] = ()  # shards not committed (a dispatched shard that failed)
    flow_run_id: str = ""  # the Prefect flow run that wrote this summary (find it in the UI)
    rejected: tuple[str, ...] = ()  # input files set aside, each with its reason

    @property
    def realtime_factor(self) -> float:
        """Wall time per second of audio (below 1 is faster than real time)."""
        s = self.stats
        return self.wall_seconds / s.audio_seconds if s.audio_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """As summary.json: the run's fields, its stats' fields beside them, and the real-time factor."""
        run = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stats"}
        return {
            **run,
            "pending": list(self.pending),
            "rejected": list(self.rejected),
            **self.stats.to_dict(),
            "realtime_factor": self.realtime_factor,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """From `to_dict`'s JSON (or the flow's return value)."""
        run = {f.name for f in fields(cls)} - {"stats"}
        known = {k: v for k, v in data.items() if k in run}
        known["pending"] = tuple(known.get("pending", ()))
        known["rejected"] = tuple(known.get("rejected", ()))
        return cls(**known, stats=ShardStats.from_dict(data))

    def text(self) -> str:
        s = self.stats
        speed = f"{s.audio_seconds / self.wall_seconds:.1f}x real time" if self.wall_seconds else "n/a"
        lines = [
            f"run {self.run_id}: {s.chunks} chunks in {self.documents} document(s), {s.shards} shard(s)",
            f"  ok {s.ok}, {f'flagged {s.flagged}, ' if s.flagged else ''}failed {s.failed}, skipped {s.skipped} "
            f"(synthesized now {s.synthesized}, already done {s.chunks - s.synthesized - s.skipped})",
            f"  audio {hms(s.audio_seconds)} in {hms(self.wall_seconds)} wall: real-time factor "
            f"{self.realtime_factor:.3f} ({speed})",
            f"  {'voices' if ', ' in self.voice else 'voice'} {self.voice}, "
            f"{self.format} at {self.sample_rate} Hz; out-of-memory backoffs {s.oom_backoffs}",
        ]
        if s.regenerations or s.asr_seconds:
            lines.append(
                f"  checks: {s.regenerations} regeneration(s) of chunks that failed a check; "
                f"listening (ASR) {s.asr_seconds:.1f} s, {s.asr_heard} chunk(s) heard in full"
                + (f", {s.asr_spot_checked} spot-checked (qa.asr_sample)" if s.asr_spot_checked else "")
            )
        lines += [
            f"  output {self.output}",
            f"  manifests {self.manifests}",
        ]
        if self.run_manifest:
            lines.append(f"  run manifest {self.run_manifest}")
        if self.pending:
            lines.append(f"  INCOMPLETE: {len(self.pending)} shard(s) not committed: {shard_list(list(self.pending))}")
        if self.rejected:
            lines.append(f"  INPUTS SET ASIDE: {len(self.rejected)} file(s) were not read:")
            lines.extend(f"    {r}" for r in self.rejected)
        if s.flagged:
            lines.append(
                f"  FLAGGED FOR REVIEW: {s.flagged} chunk(s) failed only the listening check; their audio is kept: "
                f"listen with `voxbatch review {self.output}`; `voxbatch accept` makes those you accept ok"
            )
        if s.failed:
            lines.append("  failed chunks (first ones; every failed row has its error in the manifest):")
            lines.extend(f"    {e}" for e in s.errors)
        return "\n".join(lines)


def stats_from_storage(store: ObjectStore, state: RunState, processed: set[int]) -> ShardStats:
    """Every committed shard's stats, summed: those its worker recorded for `processed` shards (done by this run),
    else counted from its manifest (committed before)."""
    shards = []
    for shard in sorted(state.committed):
        recorded: ShardStats | None = None
        if shard in processed:
            with contextlib.suppress(ObjectMissing, ValueError, TypeError):
                recorded = ShardStats.from_dict(json.loads(store.get(shard_stats_key(state.run_id, shard))))
        if recorded is None:
            counted = state.shard_stats(shard)
            recorded = dataclasses.replace(counted, shards_already_done=int(shard not in processed))
        shards.append(recorded)
    return total(shards)


def shard_list(shards: list[int], most: int = 20) -> str:
    """Shard numbers for a message: the first `most` of them, then an ellipsis."""
    return ", ".join(str(n) for n in shards[:most]) + (" …" if len(shards) > most else "")


def hms(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}"


def write_summary(store: ObjectStore, summary: RunSummary) -> str:
    key = summary_key(summary.run_id)
    store.put(key, json.dumps(summary.to_dict(), indent=2).encode(), overwrite=True, content_type=content_type(key))
    return key
