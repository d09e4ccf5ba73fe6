"""`voxbatch status` and `voxbatch export` as a user runs them, and the manifests read with each tool's defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

from tasks.errors import EXIT_CHUNKS_FAILED, EXIT_OK, EXIT_PENDING
from tests.helpers import voxbatch

pytestmark = pytest.mark.slow
TEXT = "\n\n".join(
    f"Line {i} of the harbour log: the tide turned at {i + 3} o'clock and the boats came in." for i in range(9)
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, api_url: str) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("status")
    source = root / "harbour.txt"
    source.write_text(TEXT)
    out = root / "out"
    result = voxbatch("run", str(source), "--out", str(out), "--backend", "tone", "--shard-size", "4", api=api_url)
    assert result.returncode == EXIT_OK, result.stderr
    return source, out


def test_status_of_a_complete_run(finished: tuple[Path, Path]) -> None:
    _, out = finished
    result = voxbatch("status", str(out))
    assert result.returncode == EXIT_OK, result.stderr
    assert "shards committed 3, pending 0" in result.stdout and "chunks ok 9, failed 0" in result.stdout


def test_manifests_read_with_every_tools_defaults(finished: tuple[Path, Path]) -> None:
    from datasets import load_dataset

    _, out = finished
    frame = pd.read_parquet(out / "manifests")
    assert len(frame) == 9 and frame["chunk_id"].is_unique and set(frame["shard"]) == {0, 1, 2}
    assert pads.dataset(out / "manifests").to_table().num_rows == 9
    ((n, shards),) = duckdb.sql(
        f"select count(*), count(distinct shard) from read_parquet('{out}/manifests/**/*.parquet')"
    ).fetchall()
    assert (n, shards) == (9, 3)
    ds = load_dataset("parquet", data_files=str(out / "manifests" / "**" / "*.parquet"), split="train")
    assert sorted(ds["chunk_id"]) == sorted(frame["chunk_id"])
    (run_manifest,) = out.glob("runs/*/manifest.parquet")
    assert sorted(pd.read_parquet(run_manifest)["chunk_id"]) == sorted(frame["chunk_id"])


def test_export_commands(finished: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = finished
    result = voxbatch("export", str(out), "--format", "nemo", "--to", str(tmp_path / "nemo"))
    assert result.returncode == EXIT_OK, result.stderr
    lines = (tmp_path / "nemo" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 9 and all(Path(json.loads(line)["audio_filepath"]).is_file() for line in lines)
    result = voxbatch("export", str(out), "--format", "hf")
    assert result.returncode == EXIT_OK, result.stderr
    assert len(list(out.glob("exports/*/hf/data/train-*.parquet"))) == 3


def test_status_reports_pending_shards_and_failures_by_reason(
    finished: tuple[Path, Path], tmp_path: Path, api_url: str
) -> None:
    source, out = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    next(copy.glob("manifests/*/shard-00001.parquet")).unlink()  # as if its worker never committed
    result = voxbatch("status", str(copy))
    assert result.returncode == EXIT_PENDING, result.stdout + result.stderr
    assert "pending 1" in result.stdout and "pending shards: 1" in result.stdout

    strict = tmp_path / "strict.toml"
    strict.write_text("[qa]\nmax_chars_per_second_en = 1.0\n")
    failing = tmp_path / "failing"
    run = voxbatch("run", str(source), "--out", str(failing), "--backend", "tone", "--config", str(strict), api=api_url)
    assert run.returncode == EXIT_CHUNKS_FAILED, run.stderr
    result = voxbatch("status", str(failing))
    assert result.returncode == EXIT_CHUNKS_FAILED
    assert "failed x9: qa: too short for its text" in result.stdout
    assert "harbour.txt:1 chunk 0" in result.stdout


def test_status_of_a_place_with_no_run(tmp_path: Path) -> None:
    result = voxbatch("status", str(tmp_path))
    assert result.returncode == 4 and "no voxbatch run here" in result.stderr


def test_a_manifest_written_before_the_mixed_and_voices_columns_still_reads() -> None:
    """A run resumed after an upgrade: its committed shards' manifests lack the newer columns."""
    import io

    import pyarrow.parquet as pq

    from tasks.shard.manifest import rows_from_table, rows_table
    from tasks.shard.rows import ManifestRow

    old = rows_table([ManifestRow(run_id="r", shard=0, chunk_id="c", text="t")]).drop_columns(["mixed", "voices"])
    buffer = io.BytesIO()
    pq.write_table(old, buffer)
    (row,) = rows_from_table(pq.read_table(io.BytesIO(buffer.getvalue())), "old.parquet")
    assert (row.chunk_id, row.mixed, row.voices) == ("c", False, "")
    with pytest.raises(Exception, match="missing columns: chunk_id"):
        rows_from_table(old.drop_columns(["chunk_id"]), "older.parquet")
