"""The shard worker with the test-signal backend and with backends that fail: rows, skips, reuse."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tasks.backends.tone import ToneBackend, ToneSynthesizer
from tasks.config import Settings
from tasks.manifest import MANIFEST_SCHEMA, read_manifest, write_manifest
from tasks.plan import prepare
from tasks.storage import open_store
from tasks.worker import audio_key, process_shard

TEXT = "The keeper climbed the stairs at dusk. She carried a lantern and a notebook.\n\n* * *\n\nThe storm came early."


@dataclass
class FlakySynth:
    """Wraps the tone synthesizer; fails on texts containing a marker, and counts what it was asked."""

    inner: ToneSynthesizer
    fail_on: str = "storm"
    supports_batching: bool = True
    device: str = "cpu"
    calls: list[list[str]] = field(default_factory=list)

    @property
    def info(self):  # type: ignore[no-untyped-def]
        return self.inner.info

    def synthesize(self, texts: Sequence[str]) -> list[np.ndarray]:
        self.calls.append(list(texts))
        if any(self.fail_on in t for t in texts):
            raise RuntimeError("synthesizer exploded")
        return self.inner.synthesize(texts)

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
    rows, stats = process_shard(plan, 0, settings, store, lambda: synth)
    assert [r["status"] for r in rows] == ["ok", "skipped", "failed"]
    assert rows[2]["error"] == "RuntimeError: synthesizer exploded"
    assert rows[1]["error"] == "no speakable text"
    # The failing batch was retried one chunk at a time.
    assert synth.calls[0] == [rows[0]["text"], rows[2]["text"]] and len(synth.calls) == 3
    assert store.exists(rows[0]["audio_key"]) and rows[2]["audio_key"] is None
    assert (stats.ok, stats.failed, stats.skipped) == (1, 1, 1)
    assert rows[0]["duration_s"] == pytest.approx(rows[0]["num_samples"] / rows[0]["sample_rate"])
    assert rows[0]["audio_checksum"].startswith("sha256:")


def test_rerun_synthesizes_only_what_failed_and_reuses_objects(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    rows, _ = process_shard(plan, 0, tone_settings, store, lambda: synth)
    write_manifest(store, plan.run_id, 0, rows)
    previous = read_manifest(store, plan.run_id, 0)
    synth.fail_on = "no such marker"
    synth.calls.clear()
    rows2, stats2 = process_shard(plan, 0, tone_settings, store, lambda: synth, previous_rows=previous)
    assert synth.calls == [[rows[2]["text"]]]
    assert [r["status"] for r in rows2] == ["ok", "skipped", "ok"]
    assert rows2[0]["audio_checksum"] == rows[0]["audio_checksum"]
    assert stats2.failed == 0


def test_objects_left_by_a_killed_run_are_reused_without_a_manifest(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    synth.fail_on = "no such marker"
    process_shard(plan, 0, tone_settings, store, lambda: synth)  # no manifest written: as if killed here
    synth.calls.clear()
    rows, stats = process_shard(plan, 0, tone_settings, store, lambda: synth)
    assert synth.calls == []
    assert [r["reused"] for r in rows] == [True, False, True]
    assert stats.reused == 2


def test_nothing_to_do_loads_no_model(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    synth.fail_on = "no such marker"
    rows, _ = process_shard(plan, 0, tone_settings, store, lambda: synth)

    def must_not_load():  # type: ignore[no-untyped-def]
        raise AssertionError("model loaded although every chunk was done")

    rows2, _ = process_shard(plan, 0, tone_settings, store, must_not_load, previous_rows=rows)
    assert [r["status"] for r in rows2] == ["ok", "skipped", "ok"]


def test_manifest_rows_fit_the_schema(tmp_path: Path, text_file, tone_settings) -> None:  # type: ignore[no-untyped-def]
    plan, store, synth = _setup(tmp_path, text_file, tone_settings)
    rows, _ = process_shard(plan, 0, tone_settings, store, lambda: synth)
    assert set(rows[0]) == set(MANIFEST_SCHEMA.names)
    write_manifest(store, plan.run_id, 0, rows)
    back = read_manifest(store, plan.run_id, 0)
    assert back is not None and [r["chunk_id"] for r in back] == [r["chunk_id"] for r in rows]
    assert audio_key(rows[0]["chunk_id"], "flac") == rows[0]["audio_key"]


def test_fatal_device_error_commits_finished_rows_and_stops(  # type: ignore[no-untyped-def]
    tmp_path: Path, text_file, tone_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.corpus as corpus
    from tasks.oom import DeviceFatal

    path = text_file("\n\n".join(f"Paragraph number {i} is here." for i in range(6)))
    prep = prepare([str(path)], tone_settings)
    store = open_store(str(tmp_path / "out"))
    synth = FlakySynth(ToneBackend().load(prep.plan.voice, tone_settings.synthesis), fail_on="no such marker")
    real = synth.synthesize
    healthy_calls = [3]

    def poisoned(texts):  # type: ignore[no-untyped-def]
        if len(synth.calls) >= healthy_calls[0]:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(texts)

    monkeypatch.setattr(synth, "synthesize", poisoned)
    with pytest.raises(DeviceFatal, match="illegal memory access") as err:
        process_shard(prep.plan, 0, tone_settings, store, lambda: synth)
    partial = err.value.partial_rows  # type: ignore[attr-defined]
    assert len(partial) == 3 and all(r["status"] == "ok" for r in partial)

    # Through the shard task: what is finished is committed as a partial manifest before the error goes on.
    synth.calls.clear()
    healthy_calls[0] = 1
    monkeypatch.setattr(corpus, "load_cached", lambda info, s: synth)
    with pytest.raises(DeviceFatal):
        corpus.synthesize_shard.fn(prep.plan, 0, tone_settings, store)
    committed = read_manifest(store, prep.plan.run_id, 0)
    assert committed is not None and len(committed) == 4  # 3 objects found again + 1 new, in the manifest

    # The restarted worker does only the rest.
    monkeypatch.setattr(synth, "synthesize", real)
    synth.calls.clear()
    rows, _ = process_shard(prep.plan, 0, tone_settings, store, lambda: synth, previous_rows=committed)
    assert [r["status"] for r in rows] == ["ok"] * 6
    assert sum(len(c) for c in synth.calls) == 2
