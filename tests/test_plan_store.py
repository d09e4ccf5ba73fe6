"""The plan in storage describes itself: read back verified, refused when tampered with or reused for other
work, and enough for another process to pick up one shard by (output, run id, shard number)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.config import Settings
from tasks.errors import ConfigError, ModelError, StorageError
from tasks.plan.planner import prepare
from tasks.plan.store import parse_plan, read_plan, write_plan
from tasks.shard.lifecycle import worker_settings, worker_voice
from tasks.storage import open_store
from tasks.storage.layout import manifest_key, plan_key
from tests.helpers import REPO, voxbatch

TEXT = "\n\n".join(f"Buoy {i} rang twice as the fog came in over the bar." for i in range(7))


def test_plan_round_trips_through_storage(tmp_path: Path, text_file, tone_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    plan = prepare([str(text_file(TEXT))], tone_settings).plan
    store = open_store(str(tmp_path / "out"))
    key = write_plan(store, plan)
    back = parse_plan(store.get(key), key)  # from the bytes, not this process's cache
    assert back == plan
    assert back.voice.spec == "joe" and back.chunks[0].voice == plan.voice.name
    assert back.chunks[0].params_json == plan.chunks[0].params_json and '"format": "flac"' in back.chunks[0].params_json


def test_a_tampered_plan_is_refused(tmp_path: Path, text_file, tone_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    plan = prepare([str(text_file(TEXT))], tone_settings).plan
    store = open_store(str(tmp_path / "out"))
    key = write_plan(store, plan)
    table = pq.read_table(io.BytesIO(store.get(key)))
    header = pq.read_metadata(io.BytesIO(store.get(key))).metadata[b"voxbatch.plan"]
    texts = table.column("text").to_pylist()
    texts[2] = "Something else entirely."
    edited = table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts))
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, edited.schema) as writer:  # the same header, one text changed
        writer.write_table(edited)
        writer.add_key_value_metadata({"voxbatch.plan": header.decode()})
    with pytest.raises(StorageError, match="checksum does not match"):
        parse_plan(sink.getvalue(), key)
    with pytest.raises(StorageError, match="not a readable voxbatch plan"):
        parse_plan(store.get(key)[:100], key)


def test_a_run_id_cannot_be_reused_for_other_work(tmp_path: Path, text_file, tone_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    settings = tone_settings.model_copy(update={"run": tone_settings.run.model_copy(update={"run_id": "book-1"})})
    store = open_store(str(tmp_path / "out"))
    write_plan(store, prepare([str(text_file(TEXT))], settings).plan)
    other = prepare([str(text_file("A different book altogether.", "other.txt"))], settings).plan
    with pytest.raises(ConfigError, match="run id 'book-1' already holds a different plan"):
        write_plan(store, other)
    # The same work with settings that do not shape the audio: the plan is kept, and so are its settings.
    bigger = settings.model_copy(update={"synthesis": settings.synthesis.model_copy(update={"batch_size": 16})})
    again = prepare([str(text_file(TEXT))], bigger).plan
    write_plan(store, again)
    stored = parse_plan(store.get(plan_key("book-1")), "x").settings["synthesis"]["batch_size"]
    assert stored == settings.synthesis.batch_size != 16


def test_a_rerun_with_other_quality_settings_is_refused_naming_them(
    tmp_path: Path, text_file, tone_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """QA settings are in neither the run id nor the plan's checksum; a rerun that changed them would check only
    the chunks still to do with them. Refused, the stored plan untouched, unless asked for (--changed-qa apply)."""
    store = open_store(str(tmp_path / "out"))
    plan = prepare([str(text_file(TEXT))], tone_settings).plan
    write_plan(store, plan)
    before = store.get(plan_key(plan.run_id))
    stricter = tone_settings.model_copy(
        update={"qa": tone_settings.qa.model_copy(update={"max_wer": 0.05, "regenerate": 0})}
    )
    rerun = prepare([str(text_file(TEXT))], stricter).plan
    assert rerun.run_id == plan.run_id  # the same chunks: the same run
    with pytest.raises(ConfigError, match="planned with other quality settings") as err:
        write_plan(store, rerun)  # before: accepted, and the stored settings overwritten
    assert f"qa.max_wer: {tone_settings.qa.max_wer} in the plan, 0.05 now" in str(err.value) and "qa.regenerate" in str(
        err.value
    )
    assert store.get(plan_key(plan.run_id)) == before
    # Asked for: the plan takes them, the former settings are kept beside it, and it is said.
    applied = stricter.model_copy(update={"run": stricter.run.model_copy(update={"changed_qa": "apply"})})
    with caplog.at_level(logging.WARNING, logger="voxbatch"):
        write_plan(store, prepare([str(text_file(TEXT))], applied).plan)
    assert parse_plan(store.get(plan_key(plan.run_id)), "x").settings["qa"]["max_wer"] == 0.05
    (kept,) = store.list(f"runs/{plan.run_id}/settings/")
    former = json.loads(store.get(kept))
    assert former["settings"]["qa"] == tone_settings.qa.model_dump() and "qa.regenerate" in former["changed"][1]
    assert "other quality settings from now on" in caplog.text and kept in caplog.text


def test_the_settings_stored_with_a_plan_are_verified(tmp_path: Path, text_file, tone_settings: Settings) -> None:  # type: ignore[no-untyped-def]
    plan = prepare([str(text_file(TEXT))], tone_settings).plan
    store = open_store(str(tmp_path / "out"))
    key = write_plan(store, plan)
    table = pq.read_table(io.BytesIO(store.get(key)))
    header = json.loads(pq.read_metadata(io.BytesIO(store.get(key))).metadata[b"voxbatch.plan"])
    header["settings"]["qa"]["max_wer"] = 1.0  # the checks loosened in the stored plan, nothing else changed
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, table.schema) as writer:
        writer.write_table(table, row_group_size=len(table))
        writer.add_key_value_metadata({"voxbatch.plan": json.dumps(header, sort_keys=True)})
    # Before: read back as a sound plan, and every worker checked with max_wer 1.0.
    with pytest.raises(StorageError, match="settings stored with the plan do not match their checksum"):
        parse_plan(sink.getvalue(), key)


def test_voxbatch_plan_refuses_a_rerun_with_other_quality_settings(tmp_path: Path) -> None:
    source, out = tmp_path / "buoys.txt", str(tmp_path / "out")
    source.write_text(TEXT)
    first = voxbatch("plan", str(source), "--backend", "tone", "--out", out)
    assert first.returncode == 0, first.stderr
    refused = voxbatch("plan", str(source), "--backend", "tone", "--out", out, "--asr")
    assert refused.returncode == 2 and "qa.asr: False in the plan, True now" in refused.stderr, refused.stderr
    assert "--changed-qa apply" in refused.stderr
    other_batches = voxbatch("plan", str(source), "--backend", "tone", "--out", out, "--batch-size", "3")
    assert other_batches.returncode == 0, other_batches.stderr  # how a process runs may differ


def test_workers_may_change_how_they_compute_but_not_the_audio(
    tmp_path: Path, text_file, tone_settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    plan = prepare([str(text_file(TEXT))], tone_settings).plan
    s = worker_settings(plan, {"synthesis": {"batch_size": 32, "device": "cpu"}, "engine": {"grow_after": 2}})
    assert (s.synthesis.batch_size, s.engine.grow_after) == (32, 2)
    with pytest.raises(ConfigError, match=r"synthesis\.length_scale: a worker cannot change this setting"):
        worker_settings(plan, {"synthesis": {"length_scale": 1.3}})
    with pytest.raises(ConfigError, match=r"audio\.format: a worker cannot change"):
        worker_settings(plan, {"audio": {"format": "wav"}})
    other_voice = dataclasses.replace(plan.voice, identity="0" * 64, model_sha256="1" * 64)
    stale = dataclasses.replace(plan, voices={plan.voice.name: other_voice})
    with pytest.raises(ModelError, match=r"not the one run .* was planned with"):
        worker_voice(stale, s)


@pytest.mark.slow
def test_another_process_picks_up_one_shard_from_storage_alone(tmp_path: Path, api_url: str) -> None:
    source = tmp_path / "buoys.txt"
    source.write_text(TEXT)
    out = tmp_path / "out"
    planned = voxbatch("plan", str(source), "--out", str(out), "--backend", "tone", "--shard-size", "3")
    assert planned.returncode == 0, planned.stderr
    run_id = planned.stdout.split("run id")[1].split()[0]
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tasks.shard.lifecycle import run_shard_at; "
            "o = run_shard_at(sys.argv[1], sys.argv[2], 1); "
            "print(o.stats.ok, o.already_done)",
            str(out),
            run_id,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.split() == ["3", "False"]
    assert (out / manifest_key(run_id, 1)).exists() and not (out / manifest_key(run_id, 0)).exists()
    status = voxbatch("status", str(out))
    assert status.returncode == 5 and "pending shards: 0, 2" in status.stdout

    finished = voxbatch("run", str(source), "--out", str(out), "--backend", "tone", "--shard-size", "3", api=api_url)
    assert finished.returncode == 0, finished.stderr
    assert "synthesized now 4," in finished.stdout  # shard 1's three chunks were not made again
    assert read_plan(open_store(str(out)), run_id).num_shards == 3


def test_the_planners_rows_are_the_plan_files_columns() -> None:
    from tasks.plan.file import FIELDS, PlanRow

    assert PlanRow._fields == FIELDS
