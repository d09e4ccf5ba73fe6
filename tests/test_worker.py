"""The shard worker with the test-signal backend and with backends that fail: rows, skips, reuse."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tasks.backends.tone import ToneBackend, ToneSynthesizer
from tasks.config import Settings
from tasks.plan.planner import prepare
from tasks.plan.store import write_plan
from tasks.shard.lifecycle import run_shard
from tasks.shard.manifest import read_checkpoint, read_manifest, write_manifest
from tasks.shard.pipeline import process_shard
from tasks.shard.rows import MANIFEST_SCHEMA
from tasks.storage import open_store
from tasks.storage.layout import audio_key

TEXT = "The keeper climbed the stairs at dusk. She carried a lantern and a notebook.\n\n* * *\n\nThe storm came early."


@dataclass
class FlakySynth:
    """Wraps the tone synthesizer; fails on texts containing a marker, and counts what it was asked."""

    inner: ToneSynthesizer
    fail_on: str = "storm"
    supports_batching: bool = True
    lanes: int = 1
    device: str = "cpu"
    sampling: bool = False
    calls: list[list[str]] = field(default_factory=list)

    @property
    def info(self):  # type: ignore[no-untyped-def]
        return self.inner.info

    def synthesize(self, texts: Sequence[str], options: object = None) -> list[np.ndarray]:
        self.calls.append(list(texts))
        if any(self.fail_on in t for t in texts):
            raise RuntimeError("synthesizer exploded")
        return self.inner.synthesize(texts, options)  # type: ignore[arg-type]

    def cost(self, text: str) -> int:
        return self.inner.cost(text)

    def release(self) -> None:
        pass

    def memory_key(self):  # type: ignore[no-untyped-def]
        return self.inner.memory_key()

    def close(self) -> None:
        pass


def _setup(tmp_path: Path, text_file, settings: Settings):  # type: ignore[no-untyped-def]
    path = text_file(TEXT)
    prep = prepare([str(path)], settings)
    store = open_store(str(tmp_path / "out"))
    synth = FlakySynth(ToneBackend().load(prep.plan.voice, settings.synthesis))
    return prep.plan, store, synth


def test_one_bad_chunk_fails_alone_and_the_rest_is_stored(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    settings = tone_settings.model_copy(
        update={"synthesis": tone_settings.synthesis.model_copy(update={"batch_size": 8})}
    )
    plan, store, synth = _setup(tmp_path, text_file, settings)
    result = process_shard(plan, 0, settings, store, lambda key: synth)
    rows, stats = result.rows, result.stats
    assert [r.status for r in rows] == ["ok", "skipped", "failed"]
    assert rows[2].error == "RuntimeError: synthesizer exploded"
    assert rows[1].error == "no speakable text"
    # The failing batch was retried one chunk at a time.
    assert synth.calls[0] == [rows[0].text, rows[2].text] and len(synth.calls) == 3
    assert rows[0].audio_key and store.exists(rows[0].audio_key) and rows[2].audio_key is None
    assert (stats.ok, stats.failed, stats.skipped) == (1, 1, 1)
    assert rows[0].duration_s == pytest.approx(rows[0].num_samples / rows[0].sample_rate)
    assert rows[0].audio_checksum.startswith("sha256:")
    assert stats.audio_seconds == pytest.approx(rows[0].duration_s)  # the failed chunk's audio is not counted


def test_qa_failed_audio_is_not_counted_as_delivered(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    strict = tone_settings.model_copy(
        update={"qa": tone_settings.qa.model_copy(update={"max_chars_per_second_en": 1.0})}
    )
    plan, store, synth = _setup(tmp_path, text_file, strict)
    synth.fail_on = "no such marker"
    result = process_shard(plan, 0, strict, store, lambda key: synth)
    assert [r.status for r in result.rows] == ["failed", "skipped", "failed"]
    assert all(r.duration_s for r in result.rows if r.status == "failed")  # measured, recorded ...
    assert result.stats.audio_seconds == 0.0  # ... but not delivered


def test_levels_describe_the_stored_audio_for_new_and_reused_rows(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    synth.fail_on = "no such marker"
    new = process_shard(plan, 0, tone_settings, store, lambda key: synth).rows
    reused = process_shard(plan, 0, tone_settings, store, lambda key: synth).rows  # objects exist: measured from them
    assert [r.reused for r in reused] == [True, False, True]
    for a, b in ((new[0], reused[0]), (new[2], reused[2])):
        assert a.peak_dbfs == pytest.approx(tone_settings.audio.peak_dbfs, abs=0.1)  # after gain, as stored
        assert a.peak_dbfs == pytest.approx(b.peak_dbfs, abs=0.05)
        assert a.rms_dbfs == pytest.approx(b.rms_dbfs, abs=0.05)
        assert a.loudness_lufs == pytest.approx(b.loudness_lufs, abs=0.05)


def test_rerun_synthesizes_only_what_failed_and_reuses_objects(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    rows = process_shard(plan, 0, tone_settings, store, lambda key: synth).rows
    write_manifest(store, plan.run_id, 0, rows)
    previous = read_manifest(store, plan.run_id, 0)
    synth.fail_on = "no such marker"
    synth.calls.clear()
    result = process_shard(plan, 0, tone_settings, store, lambda key: synth, previous_rows=previous)
    assert synth.calls == [[rows[2].text]]
    assert [r.status for r in result.rows] == ["ok", "skipped", "ok"]
    assert result.rows[0].audio_checksum == rows[0].audio_checksum
    assert result.stats.failed == 0


def test_objects_left_by_a_killed_run_are_reused_without_a_manifest(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    synth.fail_on = "no such marker"
    process_shard(plan, 0, tone_settings, store, lambda key: synth)  # no manifest written: as if killed here
    synth.calls.clear()
    result = process_shard(plan, 0, tone_settings, store, lambda key: synth)
    assert synth.calls == []
    assert [r.reused for r in result.rows] == [True, False, True]
    assert result.stats.reused == 2


def test_nothing_to_do_loads_no_model(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    synth.fail_on = "no such marker"
    rows = process_shard(plan, 0, tone_settings, store, lambda key: synth).rows

    def must_not_load(key):  # type: ignore[no-untyped-def]
        raise AssertionError("model loaded although every chunk was done")

    again = process_shard(plan, 0, tone_settings, store, must_not_load, previous_rows=rows).rows
    assert [r.status for r in again] == ["ok", "skipped", "ok"]


def test_manifest_rows_fit_the_schema(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    rows = process_shard(plan, 0, tone_settings, store, lambda key: synth).rows
    assert set(rows[0].to_dict()) == set(MANIFEST_SCHEMA.names)
    write_manifest(store, plan.run_id, 0, rows)
    back = read_manifest(store, plan.run_id, 0)
    assert back is not None and [r.chunk_id for r in back] == [r.chunk_id for r in rows]
    assert back[0] == rows[0]  # every field survives the Parquet round trip with its type
    assert audio_key(rows[0].chunk_id, "flac") == rows[0].audio_key


def test_fatal_device_error_returns_finished_rows_and_the_lifecycle_keeps_them(  # type: ignore[no-untyped-def]
    tmp_path: Path, text_file, tone_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = text_file("\n\n".join(f"Paragraph number {i} is here." for i in range(6)))
    prep = prepare([str(path)], tone_settings)
    store = open_store(str(tmp_path / "out"))
    write_plan(store, prep.plan)
    synth = FlakySynth(ToneBackend().load(prep.plan.voice, tone_settings.synthesis), fail_on="no such marker")
    real = synth.synthesize
    healthy_calls = [3]

    def poisoned(texts):  # type: ignore[no-untyped-def]
        if len(synth.calls) >= healthy_calls[0]:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(texts)

    monkeypatch.setattr(synth, "synthesize", poisoned)
    result = process_shard(prep.plan, 0, tone_settings, store, lambda key: synth)
    assert result.fatal is not None and "illegal memory access" in str(result.fatal)
    assert len(result.rows) == 3 and all(r.status == "ok" for r in result.rows)

    # Through the lifecycle: the finished rows go to the checkpoint, no manifest is committed.
    synth.calls.clear()
    healthy_calls[0] = 1
    outcome = run_shard(store, prep.plan, 0, tone_settings, load_synthesizer=lambda key: synth)
    assert outcome.fatal is not None
    assert read_manifest(store, prep.plan.run_id, 0) is None
    kept = read_checkpoint(store, prep.plan.run_id, 0)
    assert kept is not None and len(kept) == 4  # 3 objects found again + 1 new

    # The restarted worker does only the rest, and commits.
    monkeypatch.setattr(synth, "synthesize", real)
    synth.calls.clear()
    outcome = run_shard(store, prep.plan, 0, tone_settings, load_synthesizer=lambda key: synth)
    assert outcome.fatal is None and sum(len(c) for c in synth.calls) == 2
    committed = read_manifest(store, prep.plan.run_id, 0)
    assert committed is not None and [r.status for r in committed] == ["ok"] * 6


def test_on_s3_unrecorded_objects_are_kept_by_the_write_once_put(text_file, tone_settings, s3_bucket) -> None:  # type: ignore[no-untyped-def]
    import boto3

    path = text_file(TEXT)
    plan = prepare([str(path)], tone_settings).plan
    store = open_store(f"s3://{s3_bucket}/out")
    synth = FlakySynth(ToneBackend().load(plan.voice, tone_settings.synthesis), fail_on="no such marker")
    first = process_shard(plan, 0, tone_settings, store, lambda key: synth).rows  # as if killed before any record
    client = boto3.client("s3")
    before = {
        r.audio_key: client.head_object(Bucket=s3_bucket, Key=f"out/{r.audio_key}")["LastModified"]
        for r in first
        if r.audio_key
    }
    synth.calls.clear()
    again = process_shard(plan, 0, tone_settings, store, lambda key: synth).rows
    assert synth.calls  # S3 confirms nothing per chunk: without a record the chunks are made again ...
    assert [r.reused for r in again] == [True, False, True]  # ... and the put finds them (412): kept, not rewritten
    assert [r.audio_checksum for r in again] == [r.audio_checksum for r in first]
    after = {k: client.head_object(Bucket=s3_bucket, Key=f"out/{k}")["LastModified"] for k in before}
    assert after == before


def test_a_commit_never_replaces_a_more_complete_manifest(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    """Two attempts of one shard overlapped: the complete one committed first, the one with a failed chunk
    finishes later. Its commit reads back and leaves the complete manifest standing."""
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    write_plan(store, plan)
    slow = run_shard(store, plan, 0, tone_settings, load_synthesizer=lambda key: synth, may_commit=lambda: False)
    assert slow.superseded and read_manifest(store, plan.run_id, 0) is None  # fenced off: nothing committed
    good = FlakySynth(synth.inner, fail_on="no such marker")
    complete = run_shard(store, plan, 0, tone_settings, load_synthesizer=lambda key: good)
    assert complete.stats.failed == 0
    committed = read_manifest(store, plan.run_id, 0)
    late = run_shard(store, plan, 0, tone_settings, load_synthesizer=lambda key: synth)  # complete: nothing to do
    assert late.already_done and read_manifest(store, plan.run_id, 0) == committed

    from tasks.shard.manifest import commit_manifest

    assert committed is not None and committed[0].status == "ok"
    worse = [dataclasses.replace(committed[0], status="failed", error="synthesizer exploded"), *committed[1:]]
    kept = commit_manifest(store, plan.run_id, 0, worse)
    assert kept == committed and read_manifest(store, plan.run_id, 0) == committed
    # The other way round, the more complete one replaces the less complete one (a rerun that retried).
    write_manifest(store, plan.run_id, 0, worse)
    assert commit_manifest(store, plan.run_id, 0, committed) == committed
    assert read_manifest(store, plan.run_id, 0) == committed


def test_an_attempt_commits_only_while_the_fence_names_it(tmp_path: Path) -> None:
    from tasks.shard.lease import attempt_token, may_commit, write_fence

    store = open_store(str(tmp_path / "out"))
    first, second = attempt_token("parent-a", 0), attempt_token("parent-a", 1)
    assert may_commit(store, "run-x", 2, first)  # no fence yet (an older parent): allowed
    write_fence(store, "run-x", 2, first)
    assert may_commit(store, "run-x", 2, first) and not may_commit(store, "run-x", 2, second)
    write_fence(store, "run-x", 2, second)  # the parent dispatched again: the first attempt is superseded
    assert not may_commit(store, "run-x", 2, first) and may_commit(store, "run-x", 2, second)
    assert may_commit(store, "run-x", 2, "")  # an in-process run has no token
