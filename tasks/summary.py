"""The run summary: totals over the shards' stats, written as JSON beside the manifests."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.layout import content_type, summary_key
from tasks.storage import ObjectStore
from tasks.worker import ShardStats


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
    manifests: str = ""
    run_manifest: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def realtime_factor(self) -> float:
        """Wall time per second of audio (below 1 is faster than real time)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def add(self, stats: ShardStats, already_done: bool) -> None:
        self.shards += 1
        self.shards_already_done += already_done
        self.chunks += stats.chunks
        self.ok += stats.ok
        self.failed += stats.failed
        self.skipped += stats.skipped
        self.reused += stats.reused
        self.synthesized += stats.synthesized
        self.oom_backoffs += stats.engine.ooms if stats.engine else 0
        self.audio_seconds += stats.audio_seconds
        self.storage_wait_seconds += stats.storage_wait_seconds
        self.errors.extend(stats.errors[: max(0, 10 - len(self.errors))])

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
            f"  output {self.output}",
            f"  manifests {self.manifests}",
        ]
        if self.run_manifest:
            lines.append(f"  run manifest {self.run_manifest}")
        if self.failed:
            lines.append("  failed chunks (first ones; every failed row has its error in the manifest):")
            lines.extend(f"    {e}" for e in self.errors)
        return "\n".join(lines)


def hms(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}"


def write_summary(store: ObjectStore, summary: RunSummary) -> str:
    key = summary_key(summary.run_id)
    store.put(key, json.dumps(summary.to_dict(), indent=2).encode(), overwrite=True, content_type=content_type(key))
    return key
