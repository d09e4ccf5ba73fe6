"""Exports read back the way training code reads them: `datasets.load_dataset` and a NeMo JSONL manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.audio import dsp
from tasks.config import Settings
from tasks.errors import RunIncomplete
from tasks.plan.file import Plan
from tasks.plan.planner import prepare
from tasks.plan.store import write_plan
from tasks.results.export import export_run
from tasks.results.run_state import consolidate, load_run_state
from tasks.shard.lifecycle import run_shard
from tasks.storage import ObjectStore, open_store

TEXT = "\n\n".join(
    [
        "The keeper climbed the stairs at dusk.",
        "* * *",  # skipped: nothing speakable, so not exported
        "She carried a lantern and a notebook full of tide tables.",
        "The storm came early in 1987, and the ferry stopped running at 3.",
        "By morning the light was still turning.",
    ]
)


def finished_run(tmp_path: Path, text_file, settings: Settings, out: str) -> tuple[ObjectStore, Plan]:  # type: ignore[no-untyped-def]
    plan = prepare(
        [str(text_file(TEXT))], settings.model_copy(update={"run": settings.run.model_copy(update={"shard_size": 2})})
    ).plan
    store = open_store(out)
    write_plan(store, plan)
    for shard in range(plan.num_shards):
        run_shard(store, plan, shard)
    consolidate(store, load_run_state(store, plan.run_id))
    return store, plan


def test_hf_export_loads_with_the_audio_feature(tmp_path: Path, text_file, tone_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    from datasets import Audio, load_dataset

    store, plan = finished_run(tmp_path, text_file, tone_settings, str(tmp_path / "out"))
    exported = export_run(store, plan.run_id, "hf")
    assert exported.rows == 4
    files = sorted(str(p) for p in (tmp_path / "out" / "exports" / plan.run_id / "hf" / "data").glob("*.parquet"))
    assert len(files) == 3  # one per shard that has ok rows
    ds = load_dataset("parquet", data_files={"train": files}, split="train")
    assert isinstance(ds.features["audio"], Audio) and ds.features["audio"].sampling_rate == plan.sample_rate
    spoken = [c.text for c in plan.chunks if c.text != "* * *"]
    assert ds["text"] == spoken
    assert "The storm came early in nineteen eighty-seven, and the ferry stopped running at three." in ds["spoken_text"]
    raw = ds.cast_column("audio", Audio(decode=False))
    for item, duration in zip(raw, ds["duration"], strict=True):
        samples, rate = dsp.decode(item["audio"]["bytes"])
        assert rate == plan.sample_rate and samples.size / rate == pytest.approx(duration)
        assert item["audio"]["path"] == f"{item['id']}.flac"
    # The manifest's sentence timings (the tone voice gives none: one span over each chunk, its whole audio)
    for text, duration, spans in zip(ds["text"], ds["duration"], ds["sentences"], strict=True):
        assert spans and spans[0]["start_s"] == 0.0 and spans[-1]["end_s"] == pytest.approx(duration)
        assert text[spans[0]["char_start"] : spans[-1]["char_end"]] == text.strip()


def test_nemo_export_lines_point_at_readable_audio(tmp_path: Path, text_file, tone_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    store, plan = finished_run(tmp_path, text_file, tone_settings, str(tmp_path / "out"))
    dest = tmp_path / "nemo dest"
    exported = export_run(store, plan.run_id, "nemo", str(dest))
    lines = (dest / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert exported.rows == len(lines) == 4
    for line in lines:
        entry = json.loads(line)
        assert {"audio_filepath", "duration", "text", "normalized_text", "lang", "voice"} <= set(entry)
        samples, rate = dsp.decode(Path(entry["audio_filepath"]).read_bytes())
        assert samples.size / rate == pytest.approx(entry["duration"])
        assert entry["lang"] == "en" and entry["voice"] == "tone"
        assert entry["alignment"] == [{"start": 0.0, "end": round(entry["duration"], 3), "text": entry["text"]}]


def test_export_from_s3_and_refusal_while_shards_are_pending(  # type: ignore[no-untyped-def]
    tmp_path: Path, text_file, tone_settings: Settings, s3_bucket: str
) -> None:
    store, plan = finished_run(tmp_path, text_file, tone_settings, f"s3://{s3_bucket}/out")
    exported = export_run(store, plan.run_id, "nemo")
    assert exported.location == f"s3://{s3_bucket}/out/exports/{plan.run_id}/nemo/manifest.jsonl"
    first = json.loads(store.get(f"exports/{plan.run_id}/nemo/manifest.jsonl").decode().splitlines()[0])
    assert first["audio_filepath"].startswith(f"s3://{s3_bucket}/out/audio/")

    pending = open_store(str(tmp_path / "pending"))
    write_plan(pending, plan)
    run_shard(pending, plan, 0)
    with pytest.raises(RunIncomplete, match="2 shard"):
        export_run(pending, plan.run_id, "hf")
