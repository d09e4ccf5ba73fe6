"""The whole run as a Prefect flow on a real Prefect API, with the real bundled voice, read back from disk."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.audio import dsp
from tasks.storage.layout import manifest_key, plan_key
from tests.helpers import SAMPLE_EN

pytestmark = pytest.mark.slow


def run_flow(out: Path, **settings: Any) -> dict[str, Any]:
    from flows.corpus import corpus_flow

    return corpus_flow([str(SAMPLE_EN)], str(out), {"run": {"shard_size": 4}, **settings})


def mtimes(out: Path) -> dict[str, int]:
    return {p: os.stat(p).st_mtime_ns for p in glob.glob(f"{out}/audio/**/*.flac", recursive=True)}


@pytest.fixture(scope="module")
def first_run(prefect_api: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("e2e") / "out dir"
    return out, run_flow(out)


def test_manifest_matches_plan_and_audio_fits_the_text(first_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = first_run
    run_id = summary["run_id"]
    plan = pq.read_table(out / plan_key(run_id)).to_pylist()
    rows = [r for s in range(summary["shards"]) for r in pq.read_table(out / manifest_key(run_id, s)).to_pylist()]
    assert summary["shards"] == 3
    assert len(rows) == len(plan) == summary["chunks"] >= 8
    assert [r["chunk_id"] for r in rows] == [p["chunk_id"] for p in plan]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    for r in rows:
        samples, rate = dsp.decode((out / r["audio_key"]).read_bytes())
        assert rate == r["sample_rate"] == 22050
        assert samples.size == r["num_samples"]
        seconds = samples.size / rate
        assert 8 <= len(r["text"]) / seconds <= 30, r["text"]
        peak = float(np.max(np.abs(samples)))
        assert dsp.db(peak) > -6  # normalized to -1 dBFS: not silent
        assert np.mean(np.abs(samples) >= 0.999) == 0  # not clipped
        assert r["attempts"] == 1 and r["device"] == "cpu" and not r["reused"]
    assert summary["audio_seconds"] == pytest.approx(sum(r["duration_s"] for r in rows))
    assert summary["failed"] == 0 and summary["synthesized"] == len(rows)


def test_the_audio_says_the_text(first_run: tuple[Path, dict[str, Any]]) -> None:
    """Listen: an offline Whisper transcript of the whole document matches its text."""
    from tests.listen import transcribe, word_error_rate

    out, summary = first_run
    rows = [
        r for s in range(summary["shards"]) for r in pq.read_table(out / manifest_key(summary["run_id"], s)).to_pylist()
    ]
    reference = " ".join(r["text"] for r in rows)
    heard = " ".join(transcribe(*dsp.decode((out / r["audio_key"]).read_bytes())) for r in rows)
    # Whisper tiny.en mishears a few words of clean synthetic speech (about 0.15 here); noise or a wrong voice is ~1.
    assert word_error_rate(reference, heard) < 0.3, heard


def test_duckdb_reads_the_manifests_directly(first_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = first_run
    got = duckdb.sql(
        f"select shard, count(*) as n, sum(duration_s) as s from read_parquet('{out}/manifests/**/*.parquet') "
        "group by shard order by shard"
    ).fetchall()
    assert [n for _, n, _ in got] == [4, 4, summary["chunks"] - 8]
    assert sum(s for _, _, s in got) == pytest.approx(summary["audio_seconds"])


def test_second_run_redoes_nothing(first_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = first_run
    before = mtimes(out)
    manifests = {p: os.stat(p).st_mtime_ns for p in glob.glob(f"{out}/manifests/**/*.parquet", recursive=True)}
    again = run_flow(out)
    assert again["run_id"] == summary["run_id"]
    assert again["synthesized"] == 0 and again["shards_already_done"] == 3
    assert again["ok"] == summary["ok"]
    assert mtimes(out) == before
    assert {p: os.stat(p).st_mtime_ns for p in manifests} == manifests


def test_after_a_crash_only_missing_work_is_done(first_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = first_run
    run_id = summary["run_id"]
    # As if killed during shard 1: its manifest was never written and its last object never stored.
    shard1 = pq.read_table(out / manifest_key(run_id, 1)).to_pylist()
    (out / manifest_key(run_id, 1)).unlink()
    (out / shard1[-1]["audio_key"]).unlink()
    before = mtimes(out)
    again = run_flow(out)
    assert again["synthesized"] == 1 and again["shards_already_done"] == 2
    assert again["failed"] == 0
    rows = pq.read_table(out / manifest_key(run_id, 1)).to_pylist()
    assert [r["reused"] for r in rows] == [True, True, True, False]
    assert {p: t for p, t in mtimes(out).items() if p in before} == before


@pytest.mark.parametrize(("rate", "resampler", "fmt"), [(16000, "resampy", "ogg"), (24000, "soxr", "mp3")])
def test_resampled_and_lossy_outputs(prefect_api: None, tmp_path: Path, rate: int, resampler: str, fmt: str) -> None:
    from flows.corpus import corpus_flow

    source = tmp_path / "short.txt"
    source.write_text(
        "The ferry stopped running at three o'clock.\n\nThe radio spoke of gusts above eighty miles an hour."
    )
    summary = corpus_flow(
        [str(source)], str(tmp_path / "out"), {"audio": {"sample_rate": rate, "resampler": resampler, "format": fmt}}
    )
    rows = pq.read_table(tmp_path / "out" / manifest_key(summary["run_id"], 0)).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for r in rows:
        assert r["audio_key"].endswith(f".{fmt}") and r["format"] == fmt
        samples, got_rate = dsp.decode((tmp_path / "out" / r["audio_key"]).read_bytes())
        assert got_rate == r["sample_rate"] == rate
        assert 8 <= len(r["text"]) / (samples.size / rate) <= 30
        assert f'"resampler": "{resampler}"' in r["params_json"]


def test_prefect_records_the_summary_table_and_report(first_run: tuple[Path, dict[str, Any]]) -> None:
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    _, summary = first_run
    key = f"voxbatch-{summary['run_id']}"
    with get_client(sync_client=True) as client:  # with fastapi 0.150 the client's own filters work (no 422)
        table, report = (
            client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{key}-{kind}"])))
            for kind in ("summary", "report")
        )
    assert table and report
    # Other runs of the same input share the run id and so the key: pick this flow run's artifacts.
    assert summary["flow_run_id"]
    table = [a for a in table if str(a.flow_run_id) == summary["flow_run_id"]]
    report = [a for a in report if str(a.flow_run_id) == summary["flow_run_id"]]
    assert len(table) == 1 and len(report) == 1
    data = table[0].data
    rows = {r["metric"]: r["value"] for r in (data if isinstance(data, list) else json.loads(data))}
    assert rows["output"] == summary["output"]
    assert rows["chunks"] == summary["chunks"] and rows["ok"] == summary["ok"]
    assert rows["audio hours"] == round(summary["audio_seconds"] / 3600, 4)
    assert rows["out-of-memory backoffs"] == summary["oom_backoffs"]
    status = f"voxbatch status {summary['output']} --run-id {summary['run_id']}"
    assert any(status in str(r.data) and summary["manifests"] in str(r.data) for r in report)
    # the report's figures: a row per measure and the worst chunks with their text
    with get_client(sync_client=True) as client:
        quality, worst = (
            [
                a
                for a in client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{key}-{kind}"]))
                )
                if str(a.flow_run_id) == summary["flow_run_id"]
            ]
            for kind in ("quality", "worst")
        )
    assert len(quality) == 1 and len(worst) == 1
    measures = {
        r["measure"]: r for r in (quality[0].data if isinstance(quality[0].data, list) else json.loads(quality[0].data))
    }
    assert measures["Duration s"]["chunks"] == summary["ok"]
    assert 0 < measures["Duration s"]["min"] <= measures["Duration s"]["median"] <= measures["Duration s"]["max"]
    assert measures["regenerated chunks"]["chunks"] == 0
    worst_rows = worst[0].data if isinstance(worst[0].data, list) else json.loads(worst[0].data)
    assert 0 < len(worst_rows) <= 10 and all(r["text"] and r["status"] == "ok" for r in worst_rows)
