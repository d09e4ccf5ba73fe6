"""Prompt tables (JSONL, CSV, TSV, Parquet) with ids, voices, pace and extra columns; voices per language and per
row; the worker's loaded voices. Tables are written in the tests; plans and manifests are read back from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from tasks.backends import registry as backends
from tasks.config import validate_settings
from tasks.errors import EXIT_CHUNKS_FAILED, EXIT_OK, InputError
from tasks.plan.planner import prepare
from tests.helpers import TABLE_ROWS as ROWS
from tests.helpers import write_table


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv", ".parquet"])
def test_each_row_is_one_utterance_with_its_id_voice_pace_and_extra_columns(tmp_path: Path, suffix: str) -> None:
    table = write_table(tmp_path / f"prompts{suffix}", ROWS)
    plan = prepare([str(table)], validate_settings({})).plan
    assert [c.utterance_id for c in plan.chunks] == ["utt-1", "utt-2", "utt-3"]  # never merged with neighbours
    assert [c.text for c in plan.chunks] == [r["text"] for r in ROWS]
    assert [c.voice for c in plan.chunks] == ["joe", "joe", "tone"]
    assert json.loads(plan.chunks[2].params_json)["length_scale"] == 1.5
    assert json.loads(plan.chunks[0].params_json)["length_scale"] == 1.0
    extra = json.loads(plan.chunks[1].extra_json)
    assert extra["emotion"] == "happy" and float(extra["weight"]) == 2.0
    assert set(plan.voices) == {"joe", "tone"}


def test_a_long_row_is_split_into_parts_that_share_its_id(tmp_path: Path) -> None:
    long = " ".join(f"Sentence number {i} of a long prompt." for i in range(40))
    table = write_table(tmp_path / "long.jsonl", [{"id": "long-1", "text": long}, {"id": "short", "text": "Hi."}])
    plan = prepare([str(table)], validate_settings({})).plan
    parts = [(c.utterance_id, c.part) for c in plan.chunks]
    assert parts[:-1] == [("long-1", n) for n in range(len(parts) - 1)] and len(parts) > 3
    assert parts[-1] == ("short", 0)
    assert " ".join(c.text for c in plan.chunks[:-1]) == long


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([{"id": "a", "text": "Fine."}, {"id": "b", "text": "  "}], r"row 2, column 'text': no text"),
        (
            [{"id": "a", "text": "One."}, {"id": "a", "text": "Two."}],
            r"row 2, column 'id': duplicate id 'a' \(first in row 1\)",
        ),
        (
            [{"id": "a", "text": "One.", "voice": "no-such-voice"}],
            r"row 1, column 'voice': unknown voice 'no-such-voice'",
        ),
        ([{"id": "a", "text": "One.", "speaker": "alice"}], r"row 1, column 'speaker': voice 'joe' has no speaker"),
        ([{"id": "a", "text": "One.", "length_scale": "fast"}], r"row 1, column 'length_scale'"),
        ([{"id": "a", "text": "One.", "lang": "fr"}], r"row 1, column 'lang': unknown language 'fr'"),
    ],
)
def test_bad_rows_are_errors_naming_file_row_and_column(
    tmp_path: Path, rows: list[dict[str, object]], words: str
) -> None:
    table = write_table(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InputError, match=words) as err:
        prepare([str(table)], validate_settings({}))
    assert str(table) in str(err.value)


def test_with_bad_rows_failed_they_are_planned_as_failed_rows(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "text": "Fine."},
        {"id": "b", "text": ""},
        {"id": "b", "text": "Duplicate."},
        {"id": "c", "text": "Odd voice.", "voice": "nope"},
    ]
    table = write_table(tmp_path / "bad.jsonl", rows)
    plan = prepare([str(table)], validate_settings({"text": {"bad_rows": "failed"}})).plan
    assert [bool(c.error) for c in plan.chunks] == [False, True, True, True]
    assert "column 'voice'" in plan.chunks[3].error
    assert len({c.chunk_id for c in plan.chunks}) == 4


def test_sentences_go_to_the_voice_of_their_language(tmp_path: Path) -> None:
    doc = tmp_path / "mixed.txt"
    doc.write_text("An English sentence. 这是一个中文句子。还有一句。 Back to English.\n\n只有中文的段落。")
    settings = validate_settings({"synthesis": {"voices": {"zh": "tone:zh"}}})
    plan = prepare([str(doc)], settings).plan
    assert [(c.lang, c.voice) for c in plan.chunks] == [("en", "joe"), ("zh", "tone"), ("en", "joe"), ("zh", "tone")]
    assert plan.chunks[1].text == "这是一个中文句子。还有一句。"


def test_a_language_without_a_voice_is_an_error_at_plan_time_naming_where(tmp_path: Path) -> None:
    doc = tmp_path / "mixed.txt"
    doc.write_text("English only here.\n\nStill English.\n\n然后是中文。\n")
    settings = validate_settings({"synthesis": {"voices": {"en": "joe"}}})
    with pytest.raises(InputError, match=r"mixed\.txt: line 5: text is in 'zh', but no voice speaks it") as err:
        prepare([str(doc)], settings)
    assert "--voices zh=VOICE" in (err.value.hint or "")


def test_voices_flag_and_unknown_languages_are_checked(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "zh.txt"
    doc.write_text("只有中文的段落。")
    assert main(["plan", str(doc), "--voices", "en=joe,zh=tone:zh"]) == EXIT_OK
    assert "chunks     1 (zh 1)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["plan", str(doc), "--voices", "zh"])
    assert main(["plan", str(doc), "--voices", "fr=joe"]) == 2
    assert "unknown language 'fr'" in capsys.readouterr().err


def test_the_worker_keeps_at_most_max_loaded_voices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_LOADED", type(backends._LOADED)())
    closed: list[str] = []
    settings = validate_settings({"synthesis": {"backend": "tone", "max_loaded_voices": 2}}).synthesis
    synths = []
    for name in ("a", "b", "a", "c"):
        s = backends.voice_settings(settings, f"tone:{name}")
        info = backends.resolve_voice(s)
        synth = backends.load_cached(info, s)
        monkeypatch.setattr(synth, "close", lambda n=name: closed.append(n), raising=False)
        synths.append(synth)
    assert synths[0] is synths[2]  # still loaded: "a" was used again before "c" came
    assert closed == ["b"]  # the least recently used went first
    assert len(backends._LOADED) == 2


@pytest.mark.slow
def test_a_table_run_with_two_voices_and_per_row_pace(tmp_path: Path, api_url: str) -> None:
    from tests.helpers import voxbatch

    text = "The harbour was quiet in the morning."
    rows = [
        {"id": "normal", "text": text, "split": "train"},
        {"id": "slow", "text": text, "length_scale": 1.6, "split": "train"},
        {"id": "tone", "text": "A test signal.", "voice": "tone:t", "split": "test"},
        {"id": "missing", "text": "", "split": "test"},
    ]
    table = write_table(tmp_path / "prompts.jsonl", rows)
    config = tmp_path / "c.toml"
    config.write_text('[text]\nbad_rows = "failed"\n[synthesis]\nmax_loaded_voices = 1\n')
    out = tmp_path / "out"
    result = voxbatch("run", str(table), "--out", str(out), "--config", str(config), api=api_url)
    assert result.returncode == EXIT_CHUNKS_FAILED, result.stderr
    assert "ok 3, failed 1" in result.stdout
    (manifest,) = out.glob("runs/*/manifest.parquet")
    by_id = {r["utterance_id"]: r for r in pq.read_table(manifest).to_pylist()}
    assert by_id["missing"]["status"] == "failed" and "column 'text': no text" in by_id["missing"]["error"]
    assert by_id["tone"]["model"] == "tone:tone" and by_id["normal"]["model"] == "piper:joe"
    assert by_id["slow"]["duration_s"] > 1.3 * by_id["normal"]["duration_s"]  # the row's pace was honoured
    assert json.loads(by_id["tone"]["extra_json"]) == {"split": "test"}
    assert all(r["sample_rate"] == 22050 for r in by_id.values() if r["status"] == "ok")  # one output rate
    rerun = voxbatch("run", str(table), "--out", str(out), "--config", str(config), api=api_url)
    assert "synthesized now 0," in rerun.stdout  # the refused row is failed again, nothing is redone


def _joe_copy(tmp_path: Path) -> Path:
    import shutil

    from tasks.backends.piper_voices import voice_files

    model, config, _ = voice_files("joe")
    dst = tmp_path / "voices" / "copy.onnx"
    dst.parent.mkdir()
    shutil.copy(model, dst)
    shutil.copy(config, dst.with_name("copy.onnx.json"))
    return dst


@pytest.mark.parametrize("kind", ["onnx path", "relative onnx", "home", "vits file uri", "s3 uri", "twostage folder"])
def test_a_table_cannot_reach_for_voice_files_without_the_opt_in(tmp_path: Path, kind: str) -> None:
    spec = {
        "onnx path": str(_joe_copy(tmp_path)),  # a real voice: it would load
        "relative onnx": "copy.onnx",
        "home": "~/voice.onnx",
        "vits file uri": "vits:file:///etc/",
        "s3 uri": "s3://other-bucket/voices/v.onnx",
        "twostage folder": "twostage:../voices/zh-baker",
    }[kind]
    table = write_table(
        tmp_path / "inbox.jsonl", [{"id": "a", "text": "Fine."}, {"id": "b", "text": "X.", "voice": spec}]
    )
    with pytest.raises(InputError, match=r"inbox\.jsonl: row 2, column 'voice': .* is a path or URI") as err:
        prepare([str(table)], validate_settings({}))
    assert "text.table_voice_paths" in (err.value.hint or "")
    failed = prepare([str(table)], validate_settings({"text": {"bad_rows": "failed"}})).plan
    assert "is a path or URI" in failed.chunks[1].error and set(failed.voices) == {"joe"}  # nothing loaded


def test_voice_files_in_a_table_with_the_opt_in_or_configured(tmp_path: Path) -> None:
    path = str(_joe_copy(tmp_path))
    table = write_table(tmp_path / "t.jsonl", [{"id": "a", "text": "Fine.", "voice": path}])
    plan = prepare([str(table)], validate_settings({"text": {"table_voice_paths": True}})).plan
    assert [c.voice for c in plan.chunks] == ["joe"]  # the same bytes as joe: the same voice
    configured = validate_settings({"synthesis": {"voices": {"en": path}}})
    assert [c.voice for c in prepare([str(table)], configured).plan.chunks] == ["joe"]


def test_a_named_voice_that_fails_keeps_digests_out_of_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOXBATCH_VOICES", str(tmp_path / "voices"))
    # This process may have resolved the real zh-baker already (another module's test): forget it for this one.
    monkeypatch.setattr(backends, "_RESOLVED", {})
    broken = tmp_path / "voices" / "zh-baker"
    broken.mkdir(parents=True)
    (broken / "voice.json").write_text("{}")
    (broken / "SHA256SUMS").write_text("0" * 64 + "  voice.json\n")
    table = write_table(
        tmp_path / "t.jsonl", [{"id": "a", "text": "Fine."}, {"id": "b", "text": "X.", "voice": "zh-baker"}]
    )
    plan = prepare([str(table)], validate_settings({"text": {"bad_rows": "failed"}})).plan
    error = plan.chunks[1].error
    assert "row 2, column 'voice': unknown voice 'zh-baker'" in error
    assert "0" * 64 not in error and "\n" not in error  # the expected and actual digests stay on the terminal
