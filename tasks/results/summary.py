"""The run summary: totals over the shards' stats, written as JSON beside the manifests."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.results.run_state import RunState
from tasks.shard.pipeline import ShardStats
from tasks.storage import ObjectMissing, ObjectStore
from tasks.storage.layout import content_type, shard_stats_key, summary_key


@dataclass
class RunSummary:
    run_id: str
    output: str
    voice: str
    sample_rate: int
    format: str
    documents: int
    chunks: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    reused: int = 0
    synthesized: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    shards: int = 0
    shards_already_done: int = 0
    oom_backoffs: int = 0
    storage_wait_seconds: float = 0.0
    regenerated: int = 0  # chunk syntheses made again after a failed check
    asr_seconds: float = 0.0  # time spent transcribing chunks (qa.asr)
    manifests: str = ""
    run_manifest: str = ""
    errors: list[str] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # shards not committed (a dispatched shard that failed)
    flow_run_id: str = ""  # the Prefect flow run that wrote this summary (find it in the UI)
    rejected: list[str] = field(default_factory=list)  # input files set aside, each with its reason

    @property
    def realtime_factor(self) -> float:
        """Wall time per second of audio (below 1 is faster than real time)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def add(self, stats: dict[str, Any], already_done: bool) -> None:
        """Add one shard's stats (`ShardStats.to_dict()`, or that JSON read back from storage)."""
        self.shards += 1
        self.shards_already_done += already_done
        for name in ("chunks", "ok", "failed", "skipped", "reused", "synthesized"):
            setattr(self, name, getattr(self, name) + int(stats.get(name, 0)))
        self.oom_backoffs += int(stats.get("ooms", 0))
        self.audio_seconds += float(stats.get("audio_seconds", 0.0))
        self.storage_wait_seconds += float(stats.get("storage_wait_seconds", 0.0))
        self.regenerated += int(stats.get("regenerations", 0))
        self.asr_seconds += float(stats.get("asr_seconds", 0.0))
        self.errors.extend(list(stats.get("errors", []))[: max(0, 10 - len(self.errors))])

    def add_from_storage(self, store: ObjectStore, state: RunState, processed: set[int]) -> None:
        """Add every committed shard: stats written by this run's workers for `processed` ones, else the manifest."""
        for shard in sorted(state.committed):
            stats: dict[str, Any] | None = None
            if shard in processed:
                with contextlib.suppress(ObjectMissing, ValueError):
                    stats = json.loads(store.get(shard_stats_key(state.run_id, shard)))
            if stats is None:
                stats = ShardStats.from_rows(shard, state.committed[shard]).to_dict()
            self.add(stats, already_done=shard not in processed)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "realtime_factor": self.realtime_factor}

    def text(self) -> str:
        speed = f"{self.audio_seconds / self.wall_seconds:.1f}x real time" if self.wall_seconds else "n/a"
        lines = [
            f"run {self.run_id}: {self.chunks} chunks in {self.documents} document(s), {self.shards} shard(s)",
            f"  ok {self.ok}, failed {self.failed}, skipped {self.skipped} "
            f"(synthesized now {self.synthesized}, already done {self.chunks - self.synthesized - self.skipped})",
            f"  audio {hms(self.audio_seconds)} in {hms(self.wall_seconds)} wall: real-time factor "
            f"{self.realtime_factor:.3f} ({speed})",
            f"  voice {self.voice}, {self.format} at {self.sample_rate} Hz; out-of-memory backoffs {self.oom_backoffs}",
        ]
        if self.regenerated or self.asr_seconds:
            lines.append(
                f"  checks: {self.regenerated} regeneration(s) of chunks that failed a check; "
                f"listening (ASR) {self.asr_seconds:.1f} s"
            )
        lines += [
            f"  output {self.output}",
            f"  manifests {self.manifests}",
        ]
        if self.run_manifest:
            lines.append(f"  run manifest {self.run_manifest}")
        if self.pending:
            lines.append(f"  INCOMPLETE: {len(self.pending)} shard(s) not committed: {shard_list(self.pending)}")
        if self.rejected:
            lines.append(f"  INPUTS SET ASIDE: {len(self.rejected)} file(s) were not read:")
            lines.extend(f"    {r}" for r in self.rejected)
        if self.failed:
            lines.append("  failed chunks (first ones; every failed row has its error in the manifest):")
            lines.extend(f"    {e}" for e in self.errors)
        return "\n".join(lines)


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
