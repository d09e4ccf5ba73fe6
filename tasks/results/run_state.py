"""What storage alone says about a run: shards committed and pending, chunk counts, failures by reason.

Built from the plan and one listing of the run's manifests (no request per chunk), so `voxbatch status` and
the parent of a fanned-out run see the same thing. The manifests are read a shard at a time (tasks.results.scan)
when something asks for their counts, and only counts, digests and a few failed rows are kept, so memory does
not grow with the run. When every shard is committed the run is consolidated into one manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc

from tasks.plan.file import Plan
from tasks.plan.store import read_plan
from tasks.results.scan import Failures, ShardFacts, failure_reason, ids_digest, shard_facts, shard_tables
from tasks.shard.manifest import rows_from_table, write_run_manifest
from tasks.shard.rows import ManifestRow
from tasks.shard.stats import ShardStats, total
from tasks.storage import ObjectStore
from tasks.storage.layout import manifests_prefix, run_manifest_key, shard_of_manifest_key

__all__ = ["RunState", "consolidate", "failure_reason", "load_run_state"]


@dataclass
class RunState:
    plan: Plan
    store: ObjectStore
    committed: frozenset[int] = frozenset()  # shards with a manifest (listed)
    _facts: dict[int, ShardFacts] | None = field(default=None, repr=False)
    _failures: Failures | None = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        return self.plan.run_id

    @property
    def pending(self) -> list[int]:
        return [n for n in range(self.plan.num_shards) if n not in self.committed]

    @cached_property
    def unfinished(self) -> list[int]:
        """Shards that need work: not committed, or committed with failed chunks (a rerun retries those), or
        committed with other chunks than the plan's (`tasks.shard.manifest.shard_is_complete`)."""
        facts = self.facts()
        out = []
        for n in range(self.plan.num_shards):
            f = facts.get(n)
            if f is None or not f.all_done or f.ids != ids_digest(c.chunk_id for c in self.plan.shard(n)):
                out.append(n)
        return out

    @property
    def complete(self) -> bool:
        return not self.pending

    def tables(self, count: bool = True) -> Iterator[tuple[int, pa.Table]]:
        """(shard, manifest table) of every committed shard in order; the first complete pass also counts them
        (unless `count` is False: a reader that needs no counts skips their cost)."""
        counting = count and self._facts is None
        facts: dict[int, ShardFacts] = {}
        failures = Failures()
        for n, table in shard_tables(self.store, self.run_id, sorted(self.committed), self.plan.shard_len):
            if counting:
                facts[n] = shard_facts(table)
                failures.add(table)
            yield n, table
        if counting:
            self._facts, self._failures = facts, failures

    def rows(self) -> Iterator[ManifestRow]:
        """Every committed row, a shard at a time (for callers that need each row as an object)."""
        for _, table in self.tables():
            yield from rows_from_table(table, self.run_id)

    def facts(self) -> dict[int, ShardFacts]:
        if self._facts is None:
            for _ in self.tables():  # the pass counts them
                pass
        return self._facts if self._facts is not None else {}

    def ok_counts(self) -> dict[int, int]:
        """Each committed shard's ok rows: from the counts when they are made, else from the status column alone
        (a quick pass: an export needs no more before it writes)."""
        if self._facts is not None:
            return {n: f.stats.ok for n, f in self._facts.items()}
        shards = sorted(self.committed)
        tables = shard_tables(self.store, self.run_id, shards, self.plan.shard_len, columns=["status"])
        return {n: int(pc.sum(pc.equal(t.column("status"), "ok")).as_py() or 0) for n, t in tables}

    def shard_stats(self, shard: int) -> ShardStats:
        """A committed shard's stats counted from its manifest (not already done: the caller says so)."""
        return self.facts()[shard].stats

    def stats(self) -> ShardStats:
        """The committed shards' stats, counted from their manifests."""
        return total([dataclasses.replace(f.stats, shards_already_done=1) for _, f in sorted(self.facts().items())])

    def failures(self, examples: int = 3) -> list[tuple[str, int, list[ManifestRow]]]:
        """(reason, count, a few rows) for failed chunks, most common first."""
        self.facts()
        return (self._failures or Failures()).groups(examples)


def load_run_state(store: ObjectStore, run_id: str, plan: Plan | None = None) -> RunState:
    """`plan`: the run's plan when the caller has already read it (it is one object, possibly large). One listing
    here; the manifests are read when their counts are first asked for."""
    if plan is None or plan.run_id != run_id:
        plan = read_plan(store, run_id)
    shards = frozenset(n for k in store.list(manifests_prefix(run_id)) if (n := shard_of_manifest_key(k)) is not None)
    return RunState(plan, store, shards)


def consolidate(store: ObjectStore, state: RunState) -> str | None:
    """Write the run's one manifest when every shard is committed; returns its key (None while shards are pending)."""
    if not state.complete:
        return None
    voices = {
        key: {"backend": v.backend, "name": v.name, "identity": v.identity, "licence": v.licence}
        for key, v in state.plan.voices.items()
    }
    write_run_manifest(store, state.run_id, (table for _, table in state.tables()), voices)
    return run_manifest_key(state.run_id)
