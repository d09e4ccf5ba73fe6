"""Whole runs under injected out-of-memory faults: every chunk still ends ok, and the backoffs are recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tasks.audio import dsp
from tasks.storage.layout import manifest_key, shard_stats_key
from tests.helpers import SAMPLE_EN

pytestmark = pytest.mark.slow

# Random weights make noise, not speech: the vits runs check the engine, not the voice.
LOOSE_QA = {
    "silence_dbfs": -300.0,
    "max_clipped_fraction": 1.0,
    "min_chars_per_second_en": 0.0,
    "max_chars_per_second_en": 1e9,
}


def run(out: Path, settings: dict[str, Any], source: Path = SAMPLE_EN) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from flows.corpus import corpus_flow

    summary = corpus_flow([str(source)], str(out), settings)
    rows = [
        r for s in range(summary["shards"]) for r in pq.read_table(out / manifest_key(summary["run_id"], s)).to_pylist()
    ]
    return summary, rows


def stats(out: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads((out / shard_stats_key(summary["run_id"], s)).read_text()) for s in range(summary["shards"])]


def assert_speech_fits_text(out: Path, rows: list[dict[str, Any]]) -> None:
    for r in rows:
        samples, rate = dsp.decode((out / r["audio_key"]).read_bytes())
        assert 8 <= len(r["text"]) / (samples.size / rate) <= 30, r["text"]


@pytest.mark.parametrize("lanes", [1, 2])
def test_random_ooms_with_the_real_voice(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lanes: int
) -> None:
    """One Piper session (a chunk a call) and two lanes (eight chunks a call); this seed's first draws fail the
    first two calls, so both meet OOMs whatever the number of calls."""
    monkeypatch.setenv("VOXBATCH_FAULTS", "oom_rate=0.3,seed=4")
    summary, rows = run(tmp_path / "out", {"synthesis": {"lanes": lanes, "threads": 2}})
    assert [r["status"] for r in rows] == ["ok"] * len(rows)
    assert sum(r["oom_retries"] for r in rows) > 0
    assert max(r["attempts"] for r in rows) > 1
    assert summary["oom_backoffs"] == sum(s["oom_backoffs"] for s in stats(tmp_path / "out", summary)) > 0
    assert_speech_fits_text(tmp_path / "out", rows)


def test_tight_memory_budget_splits_long_chunks_and_rejoins_them(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.listen import transcribe, word_error_rate

    monkeypatch.setenv("VOXBATCH_FAULTS", "memory_budget=120")  # phonemes: long chunks do not fit alone
    summary, rows = run(tmp_path / "out", {})
    assert [r["status"] for r in rows] == ["ok"] * len(rows)
    split = [r for r in rows if r["oom_retries"] >= 2]
    assert split, "no chunk was large enough to need splitting"
    assert_speech_fits_text(tmp_path / "out", rows)
    assert sum(s["splits"] for s in stats(tmp_path / "out", summary)) >= len(split)
    # The rejoined audio still says the whole chunk.
    reference = " ".join(r["text"] for r in split)
    heard = " ".join(transcribe(*dsp.decode((tmp_path / "out" / r["audio_key"]).read_bytes())) for r in split)
    assert word_error_rate(reference, heard) < 0.3, heard


def test_batched_vits_run_backs_off_and_regrows(
    prefect_api: None, tiny_vits: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "many.txt"
    source.write_text("\n\n".join(f"line {i}: the ship passed the point at {i} o'clock." for i in range(60)))
    settings = {
        "synthesis": {"backend": "vits", "voice": str(tiny_vits), "batch_size": 16},
        "engine": {"initial_budget": 400, "state_dir": str(tmp_path / "budgets")},
        "qa": LOOSE_QA,
    }
    monkeypatch.setenv("VOXBATCH_FAULTS", "memory_budget=900,oom_rate=0.1,seed=5")
    summary, rows = run(tmp_path / "out", settings, source)
    assert [r["status"] for r in rows] == ["ok"] * 60
    assert max(r["batch_size"] for r in rows) > 1
    assert sum(r["oom_retries"] for r in rows) > 0
    (shard,) = stats(tmp_path / "out", summary)
    budgets = [b for _, b in shard["budget_trajectory"]]
    assert max(budgets) > 400 and 0 < shard["padding_efficiency"] <= 1
    assert shard["audio_seconds_per_compute_second"] > 0
    # The learned budget is saved for the next run on this kind of device.
    (saved,) = (tmp_path / "budgets").glob("*.json")
    state = json.loads(saved.read_text())
    assert state["key"]["backend"] == "vits" and state["budget"] == budgets[-1]
