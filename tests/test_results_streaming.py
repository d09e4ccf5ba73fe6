"""Status, consolidation, report and export read a run a shard at a time: the same figures as row by row, memory
that does not grow with the run, and an hf export rerun that leaves no file of the earlier one.

Runs here are written straight in the real layout (tests/synthetic_run.py) and read back from disk; the
row-by-row oracles are the definitions the readers had before they streamed (every row a ManifestRow).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.config import Settings
from tasks.plan.planner import prepare
from tasks.plan.store import write_plan
from tasks.results.export import export_run
from tasks.results.figures import MEASURES, WORST, gather
from tasks.results.run_state import consolidate, failure_reason, load_run_state
from tasks.shard.lifecycle import run_shard
from tasks.shard.manifest import manifest_table, read_manifest, rows_from_table, rows_table, write_run_manifest
from tasks.shard.rows import ManifestRow
from tasks.shard.stats import ShardStats, total
from tasks.storage import ObjectStore, open_store
from tasks.storage.layout import manifest_key, run_manifest_key
from tests.synthetic_run import synthetic_run

REPO = Path(__file__).resolve().parents[1]


def _rows_by_shard(store: ObjectStore, run_id: str, shards: int) -> dict[int, list[ManifestRow]]:
    return {n: read_manifest(store, run_id, n) or [] for n in range(shards)}


def _values(rows: list[ManifestRow], name: str) -> list[float]:
    return [float(v) for r in rows if r.status == "ok" and (v := getattr(r, name)) is not None and math.isfinite(v)]


def _worst(rows: list[ManifestRow]) -> list[ManifestRow]:
    """The report's worst chunks as it ranked them over every row in memory."""
    failed = [r for r in rows if r.status == "failed"]
    ok = [r for r in rows if r.status == "ok"]
    rates = _values(ok, "chars_per_second")
    median = statistics.median(rates) if rates else 1.0

    def badness(r: ManifestRow) -> float:
        error = r.asr_cer if r.lang == "zh" else r.asr_wer
        if error is not None:
            return error
        return abs(math.log(max(r.chars_per_second or median, 1e-6) / max(median, 1e-6))) / 10

    return (failed + sorted(ok, key=badness, reverse=True))[:WORST]


def test_status_counts_equal_the_row_by_row_ones(tmp_path: Path) -> None:
    run_id = synthetic_run(tmp_path, 3000, shard_size=100, failed_every=250)
    store = open_store(str(tmp_path))
    # Shard 3's rows out of plan order: committed, all ok, but not the plan's chunks in order: unfinished.
    path = tmp_path / manifest_key(run_id, 3)
    table = pq.read_table(path)
    pq.write_table(table.take([*range(1, table.num_rows), 0]), path)
    by_shard = _rows_by_shard(store, run_id, 30)
    state = load_run_state(store, run_id)
    assert state.stats() == total([ShardStats.from_rows(rows, already_done=True) for rows in by_shard.values()])
    assert state.stats().failed == 12 and state.stats().errors  # the first failed rows, named
    groups: dict[str, list[ManifestRow]] = {}
    for rows in by_shard.values():
        for r in rows:
            if r.status == "failed":
                groups.setdefault(failure_reason(r.error), []).append(r)
    expected = [(reason, len(rows), rows[:3]) for reason, rows in sorted(groups.items(), key=lambda kv: -len(kv[1]))]
    assert state.failures() == expected
    with_failed = sorted(n for n, rows in by_shard.items() if any(r.status == "failed" for r in rows))
    assert state.unfinished == sorted([*with_failed, 3])


def test_report_figures_equal_the_row_by_row_ones(tmp_path: Path) -> None:
    run_id = synthetic_run(tmp_path, 3000, shard_size=100, failed_every=1000)  # 3 failed: the rest of the
    store = open_store(str(tmp_path))  # worst are ok rows ranked by ASR error (ties in row order) and speech rate
    rows = [r for shard in _rows_by_shard(store, run_id, 30).values() for r in shard]
    figures = gather(load_run_state(store, run_id))
    assert figures.rows == len(rows) and figures.regenerated == sum(r.qa_attempts > 1 for r in rows)
    assert {m: v.tolist() for m, v in figures.columns.items()} == {
        m: v for m in MEASURES if (v := _values(rows, m.field))
    }
    assert figures.worst == _worst(rows)
    assert [r.status for r in figures.worst] == ["failed"] * 3 + ["ok"] * 7


def test_consolidated_manifest_is_every_shard_in_order_written_in_bounded_row_groups(tmp_path: Path) -> None:
    run_id = synthetic_run(tmp_path, 1000, shard_size=100)
    store = open_store(str(tmp_path))
    assert consolidate(store, load_run_state(store, run_id)) == run_manifest_key(run_id)
    written = pq.ParquetFile(tmp_path / run_manifest_key(run_id))
    assert written.metadata.num_row_groups == 1  # 1,000 rows: fewer than a row group holds
    state = load_run_state(store, run_id)
    write_run_manifest(store, run_id, (table for _, table in state.tables()), {"tone": {}}, group_rows=300)
    written = pq.ParquetFile(tmp_path / run_manifest_key(run_id))
    sizes = [written.metadata.row_group(i).num_rows for i in range(written.metadata.num_row_groups)]
    assert sizes == [300, 300, 300, 100]  # shards of 100 rows gathered into row groups, written as they fill
    shards = pa.concat_tables([pq.read_table(tmp_path / manifest_key(run_id, n)) for n in range(10)])
    assert written.read().equals(shards)
    consolidate(store, load_run_state(store, run_id))
    written = pq.ParquetFile(tmp_path / run_manifest_key(run_id))
    assert written.read().equals(shards)
    voices = json.loads(written.schema_arrow.metadata[b"voxbatch.voices"])
    assert voices["tone"]["backend"] == "tone"


def test_a_manifest_without_the_newer_columns_reads_as_a_table_as_it_does_as_rows() -> None:
    old = rows_table([ManifestRow(run_id="r", shard=0, chunk_id="c", text="t")])
    old = old.drop_columns(["mixed", "voices", "silence_ratio"]).append_column("unknown", pa.array([1]))
    assert rows_from_table(manifest_table(old, "old"), "old") == rows_from_table(old, "old")


def _tone_run(tmp_path: Path, text_file: Any, settings: Settings, out: str = "") -> tuple[ObjectStore, str]:
    text = "\n\n".join(["The keeper climbed the stairs.", "She carried a lantern.", "The storm came early."])
    run = settings.run.model_copy(update={"shard_size": 1})
    plan = prepare([str(text_file(text))], settings.model_copy(update={"run": run})).plan
    store = open_store(out or str(tmp_path / "out"))
    write_plan(store, plan)
    for shard in range(plan.num_shards):
        run_shard(store, plan, shard)
    return store, plan.run_id


def test_an_hf_export_rerun_with_another_number_of_files_leaves_none_of_the_earlier_ones(
    tmp_path: Path, text_file: Any, tone_settings: Settings
) -> None:
    from datasets import load_dataset

    store, run_id = _tone_run(tmp_path, text_file, tone_settings)
    data = tmp_path / "out" / "exports" / run_id / "hf" / "data"
    # The first export while shard 1 had only failed chunks (2 files of ok rows), the second after a rerun
    # fixed it (3 files): the earlier train-*-of-00002 files must go.
    manifest = tmp_path / "out" / manifest_key(run_id, 1)
    committed = manifest.read_bytes()
    table = pq.read_table(manifest)
    failed = table.set_column(table.schema.get_field_index("status"), "status", pa.array(["failed"]))
    pq.write_table(failed, manifest)
    assert export_run(store, run_id, "hf").rows == 2
    assert sorted(p.name for p in data.iterdir()) == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    manifest.write_bytes(committed)
    (data / "notes.txt").write_text("a file of the user's: kept")
    assert export_run(store, run_id, "hf").rows == 3
    assert sorted(p.name for p in data.glob("*.parquet")) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert (data / "notes.txt").exists()
    assert len(load_dataset("parquet", data_files=str(data / "*.parquet"), split="train")) == 3


def test_an_hf_export_writes_every_new_file_before_it_removes_a_stale_one(
    tmp_path: Path, text_file: Any, tone_settings: Settings
) -> None:
    store, run_id = _tone_run(tmp_path, text_file, tone_settings)
    dest = tmp_path / "dest" / "data"
    dest.mkdir(parents=True)
    for i in range(5):
        (dest / f"train-0000{i}-of-00005.parquet").write_bytes(b"an earlier export")
    calls: list[str] = []
    real = open_store(str(tmp_path / "dest"))

    class Recording:  # the destination store, recording the order of writes and deletes
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put(self, key: str, data: bytes, **kw: Any) -> bool:
            calls.append("put")
            return real.put(key, data, **kw)

        def delete(self, key: str) -> None:
            calls.append("delete")
            real.delete(key)

    import tasks.results.export as export

    original = export.open_store
    export.open_store = lambda location, **kw: Recording()  # type: ignore[assignment,misc,return-value]
    try:
        export_run(store, run_id, "hf", str(tmp_path / "dest"))
    finally:
        export.open_store = original
    assert calls == ["put"] * 3 + ["delete"] * 5
    assert sorted(p.name for p in dest.iterdir()) == [f"train-0000{i}-of-00003.parquet" for i in range(3)]


def test_an_hf_export_to_s3_removes_the_earlier_exports_files_there_too(
    tmp_path: Path, text_file: Any, tone_settings: Settings, s3_bucket: str
) -> None:
    store, run_id = _tone_run(tmp_path, text_file, tone_settings, f"s3://{s3_bucket}/out")
    data = f"exports/{run_id}/hf/data/"
    for i in range(5):
        store.put(f"{data}train-0000{i}-of-00005.parquet", b"an earlier export")
    store.put(f"{data}README.md", b"the user's")
    assert export_run(store, run_id, "hf").rows == 3
    names = [k.removeprefix(data) for k in store.list(data)]
    assert names == ["README.md", *(f"train-0000{i}-of-00003.parquet" for i in range(3))]


# Peak memory of the real commands, in fresh processes: Python's own allocations (tracemalloc, exact and the same
# on every machine: a Python object per row shows up as megabytes), Arrow's pool peak, and the RSS peak.
_MEASURE = """
import resource, sys, tracemalloc
import pyarrow as pa
from flows.cli import main
import pandas, tasks.results.export, tasks.results.run_state, tasks.results.summary, tasks.storage.local_store
tracemalloc.start()  # after the imports: what the command holds, not what importing it costs
code = main(sys.argv[1:])
print(code, tracemalloc.get_traced_memory()[1], pa.default_memory_pool().max_memory(),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _peaks(*args: str) -> tuple[int, int, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, env=env, cwd=REPO)
    code, python, arrow, rss = map(int, done.stdout.split()[-4:])
    assert code in (0, 3), done.stdout + done.stderr
    print(args, python, arrow, rss)  # shown with -s, and when a check fails
    return python, arrow, rss


SIZES = (2000, 20_000)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("sizes")
    for rows in SIZES:
        synthetic_run(root / str(rows), rows, shard_size=100, failed_every=1000)
    return {rows: root / str(rows) for rows in SIZES}


@pytest.mark.parametrize("command", [["status"], ["export", "--format", "nemo"], ["export", "--format", "hf"]])
def test_memory_of_status_and_export_does_not_grow_with_the_run(two_runs: dict[int, Path], command: list[str]) -> None:
    """2,000 and 20,000 rows, both more than the readers read ahead (16 shards of 100 rows): the Python heap's
    peak may grow by what is kept per shard (counts: a few hundred bytes), not per row (as objects, 6 KB a row:
    over 100 MB more, as before). Arrow's peak stays, and RSS, noisier, stays within 1.25x."""
    small, large = (_peaks(command[0], str(two_runs[rows]), *command[1:]) for rows in SIZES)
    assert large[0] - small[0] < 4 * 2**20, (small, large)
    assert large[1] < 1.5 * small[1] + 4 * 2**20, (small, large)
    assert large[2] < 1.25 * small[2], (small, large)
