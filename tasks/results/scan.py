"""A run's committed manifests read a shard at a time, as Arrow tables, and what status needs counted from them.

No reader of a whole run holds its rows as Python objects (about 6 KB each: 6 GB at a million chunks): each
shard's manifest is read as a table, counted with Arrow compute, and let go before the next ones. A few shards
are read ahead in threads (an S3 GET each), at most `READ_AHEAD_ROWS` rows of them at once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tasks.errors import StorageError
from tasks.shard.manifest import manifest_table, read_table
from tasks.shard.rows import DONE_STATUSES, ManifestRow, row_from_record
from tasks.shard.stats import ERRORS_PER_SHARD, ShardStats
from tasks.storage import ObjectStore
from tasks.storage.layout import manifest_key
from tasks.storage.s3_client import UPLOAD_THREADS

READ_AHEAD_ROWS = 4_000  # rows of shards read ahead of the one in use (a shard is read whole, however large)
FAILURE_EXAMPLES = 3  # failed rows kept per reason, as examples
MAX_REASONS = 1000  # kinds of failure counted apart; the rest are counted together
OTHER_REASONS = f"other reasons (more than {MAX_REASONS} kinds)"


def shard_tables(
    store: ObjectStore,
    run_id: str,
    shards: Iterable[int],
    rows_of: Callable[[int], int],
    columns: list[str] | None = None,
) -> Iterator[tuple[int, pa.Table]]:
    """(shard, its manifest as a MANIFEST_SCHEMA table, or only `columns` of it as stored) in the order of
    `shards`; `rows_of(n)`: shard n's planned chunks, to bound the read-ahead. A manifest listed but gone when
    read is a StorageError."""

    def read(n: int) -> pa.Table:
        key = manifest_key(run_id, n)
        table = read_table(store, key, columns)
        if table is None:
            raise StorageError(f"{store.uri(key)}: the manifest was listed but is gone", hint="run the command again")
        return table if columns else manifest_table(table, store.uri(key))

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        ahead: list[tuple[int, int, Future[pa.Table]]] = []
        queued = 0
        todo = iter(shards)
        while True:
            for n in todo:
                size = max(1, rows_of(n))
                ahead.append((n, size, pool.submit(read, n)))
                queued += size
                if queued >= READ_AHEAD_ROWS or len(ahead) >= 2 * UPLOAD_THREADS:
                    break
            if not ahead:
                return
            n, size, future = ahead.pop(0)
            queued -= size
            yield n, future.result()


def failure_reason(error: str | None) -> str:
    """A failed row's error without its particulars (numbers, quoted text), to group alike failures."""
    text = (error or "unknown").split("\n")[0]
    head = ":".join(text.split(":")[:2])
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", head)).strip()[:120]


def _sum(values: pa.ChunkedArray) -> float:
    """Python's sum over the values, nulls as 0.0: the same float, to the last bit, as summing the rows."""
    return float(sum(values.fill_null(0.0).to_pylist()))


def shard_stats(table: pa.Table) -> ShardStats:
    """`ShardStats.from_rows` of a manifest table's rows, counted on the table."""
    status = table.column("status")
    ok, failed = pc.equal(status, "ok"), pc.equal(status, "failed")
    first_failed = table.filter(failed).slice(0, ERRORS_PER_SHARD)
    return ShardStats(
        chunks=table.num_rows,
        ok=_count(ok),
        flagged=_count(pc.equal(status, "flagged")),
        failed=_count(failed),
        skipped=_count(pc.equal(status, "skipped")),
        reused=_count(table.column("reused").fill_null(False)),
        audio_seconds=_sum(table.column("duration_s").filter(ok)),
        synth_seconds=_sum(table.column("synth_seconds")),
        errors=tuple(
            f"{r['source']}:{r['line']} chunk {r['chunk_index']}: {r['error']}"
            for r in first_failed.select(["source", "line", "chunk_index", "error"]).to_pylist()
        ),
    )


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def ids_digest(ids: Iterable[str]) -> str:
    """Digest of chunk ids in order: a committed shard is compared with its plan without keeping its ids."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass(frozen=True)
class ShardFacts:
    """What a committed shard's manifest says, kept instead of its rows."""

    stats: ShardStats  # as `ShardStats.from_rows(rows)` (not already done: callers set that)
    ids: str  # ids_digest of its chunk ids in order
    all_done: bool  # every row done: ok, flagged or skipped


def shard_facts(table: pa.Table) -> ShardFacts:
    done = _count(pc.is_in(table.column("status"), pa.array(DONE_STATUSES)))
    return ShardFacts(shard_stats(table), ids_digest(table.column("chunk_id").to_pylist()), done == table.num_rows)


@dataclass
class Failures:
    """Failed rows grouped by reason: a count per reason and its first few rows (bounded, whatever the run)."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[ManifestRow]] = field(default_factory=dict)

    def add(self, table: pa.Table) -> None:
        failed = table.filter(pc.equal(table.column("status"), "failed"))
        for i, error in enumerate(failed.column("error").to_pylist()):
            reason = failure_reason(error)
            if reason not in self.counts and len(self.counts) >= MAX_REASONS:
                reason = OTHER_REASONS
            self.counts[reason] = self.counts.get(reason, 0) + 1
            kept = self.examples.setdefault(reason, [])
            if len(kept) < FAILURE_EXAMPLES:
                kept.append(row_from_record(failed.slice(i, 1).to_pylist()[0]))

    def groups(self, examples: int = FAILURE_EXAMPLES) -> list[tuple[str, int, list[ManifestRow]]]:
        """(reason, count, its first rows) for failed chunks, most common first."""
        ordered = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return [(reason, n, self.examples[reason][:examples]) for reason, n in ordered]
