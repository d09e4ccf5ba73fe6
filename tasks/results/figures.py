"""The report's figures, gathered in one pass over a run's manifests a shard at a time (tasks.results.scan).

What is kept does not grow with the run as rows would: each measure's values as float64 (8 bytes a chunk, for
exact medians, percentiles and histograms), 25 bytes per ok chunk to rank the worst ones, and as objects only the
rows shown: the first WORST failed ones, the WORST worst ok ones (read again from their shards at the end) and the
first FLAGGED_SHOWN flagged ones.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.results.run_state import RunState
from tasks.results.scan import shard_tables
from tasks.shard.manifest import rows_from_table
from tasks.shard.rows import ManifestRow

WORST = 10  # chunks shown with text, transcript and audio
FLAGGED_SHOWN = 200  # flagged chunks shown with their audio (`voxbatch review` lists them all)


@dataclass(frozen=True)
class Measure:
    title: str
    field: str
    unit: str


MEASURES = (
    Measure("Duration", "duration_s", "s"),
    Measure("Speech rate", "chars_per_second", "characters/s"),
    Measure("Loudness", "loudness_lufs", "LUFS"),
    Measure("Word error rate (ASR)", "asr_wer", ""),
    Measure("Character error rate (ASR)", "asr_cer", ""),
)


def distribution(numbers: np.ndarray) -> dict[str, float]:
    """min, median, 95th percentile, max, mean (empty for no numbers); as `statistics` computes them."""
    if not len(numbers):
        return {}
    ordered = np.sort(numbers)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {
        "min": float(ordered[0]),
        "median": float(median),
        "p95": float(ordered[min(n - 1, math.ceil(0.95 * n) - 1)]),
        "max": float(ordered[-1]),
        "mean": statistics.fmean(ordered.tolist()),
    }


def _floats(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A float column as float64, nulls as NaN."""
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


@dataclass
class Figures:
    """What the report shows, for a run of any size."""

    rows: int = 0  # committed rows
    regenerated: int = 0  # rows whose audio was made again after a failed check
    columns: dict[Measure, np.ndarray] = field(default_factory=dict)  # each measure's finite values over ok rows
    worst: list[ManifestRow] = field(default_factory=list)  # failed chunks first, then the worst ok ones
    flagged: list[ManifestRow] = field(default_factory=list)  # the first flagged chunks, for review


class _Gather:
    def __init__(self) -> None:
        self.figures = Figures()
        self.parts: dict[Measure, list[np.ndarray]] = {m: [] for m in MEASURES}
        self.failed: list[ManifestRow] = []
        # per ok row, in row order: its ASR error (NaN: none), whether it has one, its speech rate, where it is
        self.error: list[np.ndarray] = []
        self.has_error: list[np.ndarray] = []
        self.rate: list[np.ndarray] = []
        self.shard: list[np.ndarray] = []
        self.index: list[np.ndarray] = []

    def add(self, n: int, table: pa.Table) -> None:
        f = self.figures
        f.rows += table.num_rows
        f.regenerated += int(pc.sum(pc.greater(table.column("qa_attempts"), 1)).as_py() or 0)
        status = table.column("status")
        if len(self.failed) < WORST:
            failed = table.filter(pc.equal(status, "failed")).slice(0, WORST - len(self.failed))
            self.failed += rows_from_table(failed, "manifest")
        if len(f.flagged) < FLAGGED_SHOWN:
            flagged = table.filter(pc.equal(status, "flagged")).slice(0, FLAGGED_SHOWN - len(f.flagged))
            f.flagged += rows_from_table(flagged, "manifest")
        where = np.flatnonzero(np.asarray(pc.equal(status, "ok").to_numpy(zero_copy_only=False)))
        ok = table.take(pa.array(where))
        for m in MEASURES:
            v = _floats(ok.column(m.field))
            self.parts[m].append(v[np.isfinite(v)])
        asr = pc.if_else(pc.equal(ok.column("lang"), "en"), ok.column("asr_wer"), ok.column("asr_cer"))
        self.has_error.append(np.asarray(pc.is_valid(asr).to_numpy(zero_copy_only=False), dtype=bool))
        self.error.append(_floats(asr))
        self.rate.append(_floats(ok.column("chars_per_second").fill_null(0.0)))
        self.shard.append(np.full(len(where), n, dtype=np.int32))
        self.index.append(where.astype(np.int32))

    def finish(self, state: RunState) -> Figures:
        f = self.figures
        for m in MEASURES:
            values = np.concatenate(self.parts[m]) if self.parts[m] else np.zeros(0)
            if len(values):
                f.columns[m] = values
        f.worst = list(self.failed)
        need = WORST - len(f.worst)
        if need <= 0 or not self.index:
            return f
        rates = f.columns.get(MEASURES[1])
        median = distribution(rates)["median"] if rates is not None else 1.0
        # Below any ASR error rate's scale: how far the speech rate is from the median (as worst_chunks ranked them)
        rate = np.concatenate(self.rate)
        rate = np.where(rate == 0.0, median, rate)
        off = np.abs(np.log(np.maximum(rate, 1e-6) / max(median, 1e-6))) / 10
        badness = np.where(np.concatenate(self.has_error), np.concatenate(self.error), off)
        chosen = np.argsort(-badness, kind="stable")[:need]  # stable: equal ones in row order, as sorted() keeps
        shards, index = np.concatenate(self.shard)[chosen], np.concatenate(self.index)[chosen]
        found: dict[tuple[int, int], ManifestRow] = {}
        plan = state.plan
        for n, table in shard_tables(state.store, state.run_id, sorted(set(shards.tolist())), plan.shard_len):
            rows = [int(i) for s, i in zip(shards, index, strict=True) if s == n]
            for i, row in zip(rows, rows_from_table(table.take(pa.array(rows)), "manifest"), strict=True):
                found[(n, i)] = row
        f.worst += [found[(int(s), int(i))] for s, i in zip(shards, index, strict=True)]
        return f


def gather(state: RunState) -> Figures:
    """The report's figures of the run's committed rows (its counts in `state` come with them, same pass)."""
    g = _Gather()
    for n, table in state.tables():
        g.add(n, table)
    return g.finish(state)
