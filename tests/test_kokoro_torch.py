"""tasks.backends.kokoro_torch: Kokoro-82M (its real configuration, random weights) in padded batches whose audio
equals each item's alone; the pace follows the durations; kokoro's own forward pass; weights files; on CUDA
(marked gpu) the same exactness and each precision."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.backends.kokoro_torch import KokoroItem, KokoroTorch, build_model
from tasks.errors import ConfigError, ModelError


def items(*shapes: tuple[int, float, int]) -> list[KokoroItem]:
    """(tokens, speed, seed) each: short texts of Kokoro ids and a voice-like style vector."""
    rng = np.random.default_rng(len(shapes))
    return [
        KokoroItem(list(map(int, rng.integers(1, 178, n))), (rng.standard_normal(256) * 0.15).astype(np.float32), s, i)
        for n, s, i in shapes
    ]


def voiced(model: Any) -> Any:
    """Random weights give a pitch of about 0 Hz (unvoiced: no harmonics). Raised into 100-250 Hz (with a few
    frames below the voicing threshold), the harmonic source and its phase are part of every test's audio."""
    model.predictor.F0_proj.bias.data.fill_(100.0)
    model.predictor.F0_proj.weight.data.mul_(300.0)
    return model


@pytest.fixture(scope="module")
def model() -> Any:
    return build_model(seed=0)


@pytest.fixture(scope="module")
def engine() -> KokoroTorch:
    return KokoroTorch(voiced(build_model(seed=0)))


def test_a_batch_of_different_lengths_gives_each_item_its_audio_alone(engine: KokoroTorch) -> None:
    batch = items((6, 5.0, 1), (14, 7.0, 2), (3, 4.0, 3), (9, 6.0, 4))
    together = engine.synthesize(batch)
    for item, audio in zip(batch, together, strict=True):
        (alone,) = engine.synthesize([item])
        assert audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
        assert audio.size == alone.size and audio.size % 600 == 0
        assert np.max(np.abs(audio - alone)) < 1e-4, np.max(np.abs(audio - alone))
    assert len({a.size for a in together}) > 1  # the padding was real
    twice = engine.synthesize([batch[0], batch[0], KokoroItem(batch[0].tokens, batch[0].style, 5.0, seed=9)])
    assert np.array_equal(twice[0], twice[1]) and np.max(np.abs(twice[0] - together[0])) < 1e-4
    assert twice[2].size == twice[0].size and not np.allclose(twice[2], twice[0])  # another seed, other noise


def test_audio_length_follows_the_durations_and_the_speed(engine: KokoroTorch) -> None:
    (slow,) = items((3, 1.0, 1))
    fast = KokoroItem(slow.tokens, slow.style, 2.0, seed=1)
    durations = engine.durations([slow, fast])
    assert [d.size for d in durations] == [5, 5] and all((d >= 1).all() for d in durations)  # with the 0 pads
    audio = engine.synthesize([slow, fast])
    assert [a.size for a in audio] == [int(d.sum()) * 600 for d in durations]  # 25 ms frames at 24 kHz
    assert audio[1].size / audio[0].size == pytest.approx(0.5, abs=0.1)


def test_one_item_is_kokoros_own_forward_pass(model: Any) -> None:
    """KModel.forward_with_tokens with the same seed, where the STFT's first frame (real by symmetry) gets the
    same phase convention: its sign of π is otherwise rounding noise (see _source_stft)."""
    import torch

    stft = model.decoder.generator.stft

    def transform(x: Any) -> tuple[Any, Any]:
        z = torch.stft(x, stft.filter_length, stft.hop_length, stft.win_length, window=stft.window, return_complex=True)
        z[..., 0] = z[..., 0].real.to(z.dtype)
        return z.abs(), z.angle()

    (item,) = items((7, 4.0, 5))
    (audio,) = KokoroTorch(model).synthesize([item])
    stft.transform = transform
    try:
        torch.manual_seed(item.seed)
        reference, _ = model.forward_with_tokens(
            torch.tensor([[0, *item.tokens, 0]]), torch.tensor(item.style)[None], 4.0
        )
    finally:
        del stft.transform
    assert reference.numel() == audio.size
    assert np.max(np.abs(reference.numpy() - audio)) < 1e-4


def test_the_harmonic_source_is_sinegens_with_each_items_noise(model: Any) -> None:
    import torch

    from tasks.backends.kokoro_torch import _source

    gen = model.decoder.generator
    f0 = torch.linspace(-20.0, 240.0, 16, dtype=torch.float64)[None]  # voiced and unvoiced frames
    mine = _source(gen, f0, torch.tensor([16]), items((1, 1.0, 7)))
    torch.manual_seed(7)
    with torch.no_grad():
        theirs = gen.m_source(gen.f0_upsamp(f0.float()[:, None]).transpose(1, 2))[0][..., 0]
    assert mine.shape == theirs.shape == (1, 16 * 300)
    assert torch.max(torch.abs(mine - theirs)) < 1e-4  # kokoro's float32 phase, ours float64


def test_weights_load_from_a_file_of_state_dicts_and_a_bad_file_is_a_model_error(model: Any, tmp_path: Path) -> None:
    import torch

    path = tmp_path / "kokoro-v1_0.pth"
    parts = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    torch.save({p: {f"module.{k}": v for k, v in getattr(model, p).state_dict().items()} for p in parts}, path)
    loaded = build_model(weights=path, seed=1)
    assert torch.equal(loaded.decoder.generator.conv_post.weight_v, model.decoder.generator.conv_post.weight_v)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(ModelError, match=re.escape(str(truncated))) as error:
        build_model(weights=truncated)
    assert error.value.__cause__ is not None
    partial = tmp_path / "partial.pth"
    torch.save({"decoder": model.decoder.state_dict()}, partial)
    with pytest.raises(ModelError, match=re.escape(str(partial))):
        build_model(weights=partial)


def test_half_precision_on_the_cpu_is_a_config_error(model: Any) -> None:
    with pytest.raises(ConfigError, match=r"synthesis\.dtype"):
        KokoroTorch(model, "cpu", "bf16")


@pytest.mark.gpu
def test_on_cuda_a_batch_gives_each_item_its_audio_alone_and_half_precision_runs() -> None:
    engine = KokoroTorch(voiced(build_model(seed=0)), "cuda")
    batch = items((12, 5.0, 1), (40, 7.0, 2), (3, 4.0, 3), (25, 6.0, 4))
    together = engine.synthesize(batch)
    for item, audio in zip(batch, together, strict=True):
        (alone,) = engine.synthesize([item])
        assert audio.size == alone.size and np.max(np.abs(audio - alone)) < 1e-4, np.max(np.abs(audio - alone))
    for dtype in ("bf16", "fp16"):
        half = KokoroTorch(engine.model, "cuda", dtype).synthesize(batch)
        assert [a.size for a in half] == [a.size for a in together]
        assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in half)
    engine.release()
