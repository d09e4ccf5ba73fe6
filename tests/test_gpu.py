"""On a CUDA GPU only (marked gpu; skipped elsewhere): half precision, real device OOM backoff, Piper on CUDA, the
GPU suite's VITS and Kokoro sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.backends.registry import get_backend
from tasks.config import validate_settings
from tasks.shard.engine import BudgetState, Engine, EngineConfig

pytestmark = pytest.mark.gpu

TEXTS = [f"line {i}: the ship passed the point at {i} o'clock, heading north again." for i in range(64)]


def vits(voice: Path, **synthesis: object):  # type: ignore[no-untyped-def]
    s = validate_settings({"synthesis": {"backend": "vits", "voice": str(voice), "device": "cuda", **synthesis}})
    backend = get_backend("vits")
    return backend.load(backend.resolve(s.synthesis), s.synthesis)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_vits_on_cuda_in_each_precision(tiny_vits: Path, dtype: str) -> None:
    synth = vits(tiny_vits, dtype=dtype)
    out = synth.synthesize(TEXTS[:8])
    assert synth.device == "cuda"
    assert all(a.dtype == np.float32 and a.size > 0 and np.isfinite(a).all() for a in out)
    assert synth.memory_key()["memory"] > 0


def test_real_cuda_oom_backs_off_and_finishes(tiny_vits: Path) -> None:
    import torch

    synth = vits(tiny_vits, length_scale=4.0)
    synth.synthesize(TEXTS[:1])
    # Leave the process only a sliver of the GPU, so a full batch cannot fit.
    torch.cuda.set_per_process_memory_fraction(0.002)
    try:
        engine = Engine(
            synth.synthesize, synth.cost, BudgetState(1e7), EngineConfig(max_batch_size=64), release=synth.release
        )
        results = list(engine.run(list(enumerate(TEXTS))))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert all(r.audio is not None for r in results), {r.error for r in results}
    assert engine.stats.ooms >= 1


def test_piper_batches_on_the_cuda_provider() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    s = validate_settings({"synthesis": {"device": "cuda", "noise_scale": 0.0, "noise_w": 0.0}})
    backend = get_backend("piper")
    synth = backend.load(backend.resolve(s.synthesis), s.synthesis)
    assert synth.device == "cuda:0" and synth.supports_batching
    texts = ["The keeper climbed the stairs.", "Hello.", "She carried a brass lantern and a notebook."]
    batched = synth.synthesize(texts)
    synth.batched = False
    for text, audio in zip(texts, batched, strict=True):
        (alone,) = synth.synthesize([text])
        assert audio.size == alone.size
        assert np.max(np.abs(audio - alone)) < 1e-2


def test_gpu_suite_recovers_from_a_real_cuda_oom_near_the_largest_batch_that_fits(tiny_vits: Path) -> None:
    """The bench's out-of-memory part: the process capped so about 24 texts fit; the engine, started at 8x what
    fits, backs off through real CUDA OOMs, synthesizes everything and settles within 10% of the largest batch."""
    from bench.gpu_suite import load_vits, oom_recovery

    recovery = oom_recovery(load_vits(tiny_vits, "cuda"))
    assert recovery.ooms >= 1 and recovery.done == recovery.total
    assert recovery.fits >= 2
    assert abs(recovery.settled - recovery.fits) <= max(1, 0.1 * recovery.fits), recovery.line()


def test_gpu_suite_sweeps_every_precision(tmp_path: Path) -> None:
    from bench.gpu_suite import run_gpu_suite

    points = run_gpu_suite("cuda", "tiny", [1, 8], min_seconds=0.5, plot_path=tmp_path / "p.png")
    assert {p.dtype for p in points} == {"fp32", "bf16", "fp16"}
    assert all(p.realtime > 0 and p.peak_mb and not p.error for p in points), points


def test_gpu_suite_sweeps_kokoro_82m_in_every_precision() -> None:
    """Kokoro-82M's real size (random weights) through the exact padded batches: throughput against batch 1 and
    peak memory, per precision."""
    from bench.gpu_suite import run_gpu_suite

    said: list[str] = []
    points = run_gpu_suite("cuda", "mms", [1, 8], min_seconds=0.5, printer=said.append, model="kokoro")
    assert said[0].startswith("Kokoro (82M size, random weights")
    assert {p.dtype for p in points} == {"fp32", "bf16", "fp16"}
    assert all(p.realtime > 0 and p.peak_mb and not p.error for p in points), points
