"""Each stage of a shard alone, with the values it takes and returns: finish, check, store, make a row, add up."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tasks.audio import dsp
from tasks.config import Settings, validate_settings
from tasks.shard.checker import Checker
from tasks.shard.finish import finish
from tasks.shard.rows import ManifestRow, made_row, refused_row
from tasks.shard.stats import ShardStats, total
from tasks.shard.storing import store_audio, stored_audio
from tasks.shard.synthesis import Synthesized
from tasks.storage import open_store
from tests.helpers import CHUNK, RATE, place, speechlike


def made(audio: np.ndarray | None = None, error: str | None = None) -> Synthesized:
    return Synthesized(audio, error, batch_size=4, attempts=1, oom_retries=0, seconds=0.2, device="cpu")


def test_finish_resamples_levels_and_encodes() -> None:
    s = Settings()
    done = finish(speechlike(), CHUNK, s.audio, s.qa)
    assert done.ok and done.error is None and done.samples is not None and done.data is not None
    rate, frames = dsp.probe(done.data)
    assert rate == 16000 and frames == done.samples.size
    assert abs(20 * np.log10(np.max(np.abs(done.samples))) - s.audio.peak_dbfs) < 0.05


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (np.full(RATE, np.nan, np.float32), "qa: non-finite audio"),
        (np.zeros(RATE * 2, np.float32) + 1e-5, "qa: silent"),
        (speechlike(30.0), "qa: too long for its text"),
    ],
)
def test_finish_fails_audio_that_is_not_fit_to_keep(raw: np.ndarray, reason: str) -> None:
    s = Settings()
    done = finish(raw, CHUNK, s.audio, s.qa)
    assert not done.ok and (done.error or "").startswith(reason)


def test_a_check_that_fails_keeps_its_measures_on_the_row() -> None:
    s = Settings()
    done = finish(speechlike(30.0), CHUNK, s.audio, s.qa)
    checked = Checker(16000, s).offer(0, CHUNK, speechlike(30.0), redo=None)[0][1]
    assert checked.error and checked.error.endswith("(not regenerated: the voice makes the same audio every time)")
    row = made_row(place(), made(speechlike(30.0)), checked)
    assert row.status == "failed" and row.duration_s == done.duration_s and row.peak_dbfs is not None
    assert row.audio_uri is None and row.qa_attempts == 1 and row.batch_size == 4


def test_regeneration_keeps_the_first_attempt_that_passes() -> None:
    def attempts(seeds: list[int]) -> Callable[[int], np.ndarray]:
        def redo(seed: int) -> np.ndarray:  # the first regeneration fails too, the second passes
            seeds.append(seed)
            return speechlike(30.0) if len(seeds) < 2 else speechlike()

        return redo

    checker, first, again = Checker(16000, Settings()), [], []
    ((index, checked),) = checker.offer(5, CHUNK, speechlike(30.0), attempts(first))
    assert index == 5 and checked.error is None and checked.qa_attempts == 3 and checker.regenerations == 2
    assert len(set(first)) == 2  # a seed of its own per attempt
    assert checker.offer(6, CHUNK, speechlike(30.0), attempts(again))[0][1].qa_attempts == 3
    assert again == first  # a rerun makes the same attempts


def test_audio_is_stored_once_and_described_as_stored(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    s = Settings()
    done = finish(speechlike(), CHUNK, s.audio, s.qa)
    assert done.data is not None and done.samples is not None
    first = store_audio(store, "audio/cc/x.flac", done.data, done.samples, CHUNK.said)
    assert not first.reused and first.audio_bytes == len(done.data) and first.sample_rate == 16000
    again = store_audio(store, "audio/cc/x.flac", done.data, done.samples, CHUNK.said)
    assert again.reused and again.checksum == first.checksum
    other = finish(speechlike(2.0), CHUNK, s.audio, s.qa)
    assert other.data is not None and other.samples is not None
    kept = store_audio(store, "audio/cc/x.flac", other.data, other.samples, CHUNK.said)
    assert kept.reused and kept.checksum == first.checksum  # never overwritten: the row describes what is stored
    assert stored_audio(store, "audio/cc/x.flac", CHUNK.said).levels == kept.levels


def test_a_row_is_made_from_the_values_of_its_stages(tmp_path: Path) -> None:
    s = Settings()
    done = finish(speechlike(), CHUNK, s.audio, s.qa)
    checked = Checker(16000, s).offer(0, CHUNK, speechlike(), None)[0][1]
    assert done.data is not None and done.samples is not None
    stored = store_audio(open_store(str(tmp_path)), "audio/cc/y.flac", done.data, done.samples, CHUNK.said)
    row = made_row(place(), made(speechlike()), checked, stored)
    assert (row.status, row.error, row.audio_key, row.num_samples) == (
        "ok",
        None,
        "audio/cc/y.flac",
        stored.num_samples,
    )
    assert (row.chunk_index, row.line, row.device, row.reused) == (3, 7, "cpu", False)
    assert row.loudness_lufs == stored.levels.loudness_lufs and row.qa_attempts == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.status = "failed"  # type: ignore[misc]
    refused = refused_row(place(), "bad row")
    assert (refused.status, refused.error, refused.audio_uri) == ("failed", "bad row", None)


def test_shard_stats_add_up_from_rows_and_engines() -> None:
    rows = [
        ManifestRow("r", 0, status="ok", duration_s=2.0, synth_seconds=0.5),
        ManifestRow("r", 0, status="failed", error="boom", source="a.txt", line=3),
        ManifestRow("r", 0, status="skipped"),
    ]
    a = dataclasses.replace(ShardStats.from_rows(rows), batches=3, budget_trajectory=((0, 100.0), (2, 50.0)))
    b = dataclasses.replace(
        ShardStats.from_rows(rows[:1], already_done=True), batches=2, budget_trajectory=((1, 80.0),)
    )
    both = a + b
    assert (both.shards, both.shards_already_done, both.chunks, both.ok, both.failed) == (2, 1, 4, 2, 1)
    assert both.audio_seconds == 4.0 and both.budget_trajectory == ((0, 100.0), (2, 50.0), (4, 80.0))
    assert both.errors == ("a.txt:3 chunk 0: boom",)
    assert total([a, b]) == both and total([]).shards == 0
    assert ShardStats.from_dict(both.to_dict()) == both
    # A shard's JSON as the version before this record wrote it (a run resumed across the upgrade)
    older = ShardStats.from_dict({"chunks": 6, "ok": 6, "ooms": 2, "regenerations": 1, "gone": 5})
    assert (older.chunks, older.oom_backoffs, older.regenerations) == (6, 2, 1)


def test_settings_of_a_worker_never_shape_the_audio() -> None:
    s = validate_settings({"synthesis": {"batch_size": 8, "device": "cpu"}})
    assert Checker(16000, s).offer(0, CHUNK, speechlike(), None)[0][1].error is None
