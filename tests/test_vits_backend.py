"""The PyTorch VITS backend, through the same code users run, on a tiny random checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks.backends.registry import get_backend
from tasks.config import validate_settings
from tasks.errors import ConfigError, ModelError


def settings_for(voice: Path, **synthesis: object):  # type: ignore[no-untyped-def]
    return validate_settings({"synthesis": {"backend": "vits", "voice": str(voice), **synthesis}})


def test_batched_output_matches_one_by_one(tiny_vits: Path) -> None:
    s = settings_for(tiny_vits, noise_scale=0.0, noise_w=0.0)
    backend = get_backend("vits")
    info = backend.resolve(s.synthesis)
    assert info.sample_rate == 16000 and len(info.model_sha256) == 64
    synth = backend.load(info, s.synthesis)
    texts = ["the keeper climbed the stairs.", "hello!", "she carried a brass lantern, a notebook, and tea."]
    batched = synth.synthesize(texts)
    longest = max(a.size for a in batched)
    for text, audio in zip(texts, batched, strict=True):
        (alone,) = synth.synthesize([text])
        assert audio.size == alone.size > 0  # each item cut to its own length, not the batch's
        # The HiFi-GAN decoder is not masked: its receptive field (about 8 frames x 256 samples) sees the
        # padding of shorter items, so only their last ~0.13 s may differ. The longest item matches whole.
        tail = 0 if audio.size == longest else 8 * 256
        assert np.max(np.abs(audio[: audio.size - tail] - alone[: audio.size - tail])) < 1e-3
    assert synth.cost("hello") == len(synth.tokenizer("hello").input_ids) > 5
    assert synth.memory_key()["device"] == "cpu"


def test_half_precision_on_the_cpu_is_refused(tiny_vits: Path) -> None:
    with pytest.raises(ConfigError, match="half precision breaks layer-norm"):
        settings_for(tiny_vits, device="cpu", dtype="fp16")
    s = settings_for(tiny_vits, device="auto", dtype="bf16")  # auto resolves to the CPU here
    backend = get_backend("vits")
    with pytest.raises(ConfigError, match=r"dtype = 'bf16' on the CPU"):
        backend.load(backend.resolve(s.synthesis), s.synthesis)


def test_corrupt_weights_are_caught_by_their_checksum(tiny_vits: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_vits, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelError, match="checksum mismatch") as err:
        get_backend("vits").resolve(settings_for(copy).synthesis)
    assert str(weights) in str(err.value) and "expected sha256" in str(err.value)


def test_truncated_weights_without_checksums_fail_to_load_with_the_directory_named(
    tiny_vits: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_vits, copy)
    (copy / "SHA256SUMS").unlink()
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    s = settings_for(copy)
    backend = get_backend("vits")
    with pytest.raises(ModelError, match="cannot load the VITS checkpoint"):
        backend.load(backend.resolve(s.synthesis), s.synthesis)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a directory"):
        get_backend("vits").resolve(settings_for(tmp_path / "nope").synthesis)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"vocab\.json: missing"):
        get_backend("vits").resolve(settings_for(tmp_path).synthesis)
