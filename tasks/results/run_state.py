"""What storage alone says about a run: shards committed and pending, chunk counts, failures by reason.

Built from the plan and one listing of the run's manifests (no request per chunk), so `voxbatch status` and
the parent of a fanned-out run see the same thing. When every shard is committed the run is consolidated into
one manifest.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tasks.plan.file import Plan
from tasks.plan.store import read_plan
from tasks.shard.manifest import read_manifest, shard_is_complete, write_run_manifest
from tasks.shard.rows import ManifestRow
from tasks.shard.stats import ShardStats, total
from tasks.storage import ObjectStore
from tasks.storage.layout import manifests_prefix, run_manifest_key, shard_of_manifest_key
from tasks.storage.s3_client import UPLOAD_THREADS


def failure_reason(error: str | None) -> str:
    """A failed row's error without its particulars (numbers, quoted text), to group alike failures."""
    text = (error or "unknown").split("\n")[0]
    head = ":".join(text.split(":")[:2])
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", head)).strip()[:120]


@dataclass
class RunState:
    plan: Plan
    committed: dict[int, list[ManifestRow]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.plan.run_id

    @property
    def pending(self) -> list[int]:
        return [n for n in range(self.plan.num_shards) if n not in self.committed]

    @property
    def unfinished(self) -> list[int]:
        """Shards that need work: not committed, or committed with failed chunks (a rerun retries those)."""
        return [
            n
            for n in range(self.plan.num_shards)
            if not shard_is_complete(self.committed.get(n), [c.chunk_id for c in self.plan.shard(n)])
        ]

    @property
    def complete(self) -> bool:
        return not self.pending

    def rows(self) -> list[ManifestRow]:
        return [r for n in sorted(self.committed) for r in self.committed[n]]

    def stats(self) -> ShardStats:
        """The committed shards' stats, counted from their manifests."""
        return total([ShardStats.from_rows(rows, already_done=True) for _, rows in sorted(self.committed.items())])

    def failures(self, examples: int = 3) -> list[tuple[str, int, list[ManifestRow]]]:
        """(reason, count, a few rows) for failed chunks, most common first."""
        groups: dict[str, list[ManifestRow]] = {}
        for r in self.rows():
            if r.status == "failed":
                groups.setdefault(failure_reason(r.error), []).append(r)
        ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
        return [(reason, len(rows), rows[:examples]) for reason, rows in ordered]


def load_run_state(store: ObjectStore, run_id: str, plan: Plan | None = None) -> RunState:
    """`plan`: the run's plan when the caller has already read it (it is one object, possibly large)."""
    if plan is None or plan.run_id != run_id:
        plan = read_plan(store, run_id)
    shards = sorted(n for k in store.list(manifests_prefix(run_id)) if (n := shard_of_manifest_key(k)) is not None)
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        manifests = list(pool.map(lambda n: read_manifest(store, run_id, n), shards))
    return RunState(plan, {n: rows for n, rows in zip(shards, manifests, strict=True) if rows is not None})


def consolidate(store: ObjectStore, state: RunState) -> str | None:
    """Write the run's one manifest when every shard is committed; returns its key (None while shards are pending)."""
    if not state.complete:
        return None
    voices = {
        key: {"backend": v.backend, "name": v.name, "identity": v.identity, "licence": v.licence}
        for key, v in state.plan.voices.items()
    }
    write_run_manifest(store, state.run_id, state.rows(), voices)
    return run_manifest_key(state.run_id)
