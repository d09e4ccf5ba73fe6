"""One contract for every registered synthesizer backend (tone, piper with the real voice, vits with a tiny
random checkpoint, twostage with the real Mandarin voice), then the registry as the settings and the CLI see it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tasks.backend_catalog import backend_names
from tasks.backends.registry import get_backend, load_cached, resolve_voice
from tasks.config import Settings, validate_settings
from tasks.errors import ConfigError, ModelError
from tests.helpers import voxbatch


@pytest.fixture(params=["tone", "piper", "vits", pytest.param("twostage", marks=pytest.mark.slow), "kokoro"])
def backend_settings(request: pytest.FixtureRequest) -> Settings:
    synthesis: dict[str, object] = {"backend": request.param}
    if request.param == "vits":
        synthesis["voice"] = str(request.getfixturevalue("tiny_vits"))
    if request.param == "twostage":
        synthesis["voice"] = str(request.getfixturevalue("zh_baker"))  # installed once per session
    if request.param == "kokoro":
        synthesis["voice"] = "jf_alpha"  # kokoro-ja's, installed with the kokoro extra
    return validate_settings({"synthesis": synthesis})


# The contract's texts in each backend's language: a short line, then a longer one
TEXTS = {
    "twostage": ["一句短话。", "一句稍微长一点的话，里面有一两个分句。"],
    "kokoro": ["短い文です。", "もう少し長い文で、その中に節がひとつかふたつあります。"],
    "*": ["A short line.", "A somewhat longer line of text, with a clause or two in it."],
}


def test_every_registered_backend_is_under_contract() -> None:
    assert backend_names() == ["piper", "vits", "twostage", "kokoro", "tone"]


def test_resolve_load_synthesize_contract(backend_settings: Settings) -> None:
    s = backend_settings.synthesis
    info = resolve_voice(s)
    assert info.backend == s.backend and info.spec == s.voice and len(info.identity) == 64
    assert info.sample_rate >= 8000 and info.languages
    assert resolve_voice(s) is info  # resolved (and hashed) once per process
    synth = load_cached(info, s)
    texts = TEXTS.get(s.backend, TEXTS["*"])
    costs = [synth.cost(t) for t in texts]
    assert all(isinstance(c, int) and c > 0 for c in costs) and costs[0] < costs[1]
    out = synth.synthesize(texts)
    assert len(out) == 2
    for wave in out:
        assert wave.dtype == np.float32 and wave.ndim == 1 and wave.size > 0.1 * info.sample_rate
        assert float(np.max(np.abs(wave))) <= 1.0
    json.dumps(synth.memory_key())  # a learned budget's key must be storable
    synth.release()  # after an OOM: must not break the voice
    assert len(synth.synthesize(texts[:1])) == 1


def test_a_seed_repeats_a_sampling_voice_and_others_say_they_do_not_sample(backend_settings: Settings) -> None:
    """What regeneration relies on: a voice that samples makes the same audio for the same seed, other audio for
    another; a voice that does not sample says so (and is never asked twice)."""
    from tasks.backends.synthesizer import SynthOptions

    s = backend_settings.synthesis
    synth = load_cached(resolve_voice(s), s)
    assert isinstance(synth.sampling, bool)
    text = TEXTS.get(s.backend, TEXTS["*"])[1]
    first, again, other = (synth.synthesize([text], SynthOptions(seed=n))[0] for n in (11, 11, 12))
    if synth.sampling:
        assert np.array_equal(first, again)
        assert first.size != other.size or not np.array_equal(first, other)
    else:
        assert np.array_equal(first, again) and np.array_equal(first, other)


@pytest.mark.parametrize("backend", ["piper", "vits", "twostage", "kokoro"])
def test_a_broken_model_is_a_model_error_chained_to_its_cause(backend: str, tmp_path: Path) -> None:
    synthesis: dict[str, str] = {"backend": backend}
    if backend == "kokoro":  # a model file cut short, as a download that stopped
        broken = tmp_path / "kokoro-v1.0.onnx"
        from tasks.backends.kokoro_files import kokoro_ja_model

        broken.write_bytes(kokoro_ja_model()[0].read_bytes()[:1_000_000])
        synthesis.update(voice="jf_alpha", kokoro_model=str(broken))
    elif backend == "piper":
        broken = tmp_path / "v.onnx"
        broken.write_bytes(b"not an onnx model")
        broken.with_name("v.onnx.json").write_text(json.dumps({"audio": {"sample_rate": 22050}}))
    elif backend == "twostage":  # files that match their SHA256SUMS but are no models
        broken = tmp_path / "voice"
        broken.mkdir()
        config = {"sample_rate": 24000, "hop_length": 300, "frontend": "baker", "symbols": "symbols.json"}
        (broken / "voice.json").write_text(json.dumps({**config, "acoustic": "a.onnx", "vocoder": "v.onnx"}))
        for name in ("a.onnx", "v.onnx", "symbols.json"):
            (broken / name).write_bytes(b"not a model")
        sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in broken.iterdir())
        (broken / "SHA256SUMS").write_text(sums)
    else:
        broken = tmp_path / "ckpt"
        broken.mkdir()
        (broken / "config.json").write_text("{not json")
        (broken / "vocab.json").write_text("{}")
        (broken / "model.safetensors").write_bytes(b"x")
    settings = validate_settings({"synthesis": {"voice": str(broken), **synthesis}})
    with pytest.raises(ModelError) as err:
        info = get_backend(backend).resolve(settings.synthesis)
        get_backend(backend).load(info, settings.synthesis)
    assert str(broken) in str(err.value)
    assert err.value.__cause__ is not None  # the library's error is kept, not swallowed


def test_settings_and_cli_take_their_choices_from_the_registry() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'espeak'; known: piper, vits, twostage, kokoro, tone"):
        validate_settings({"synthesis": {"backend": "espeak"}})
    result = voxbatch("config", "--backend", "nope")
    assert result.returncode == 2 and "--backend {piper,vits,twostage,kokoro,tone}" in result.stderr
