"""The GPU suite of `voxbatch bench`: VITS (or Kokoro) throughput by batch size and precision, memory, utilisation,
OOM recovery.

A VITS of the real MMS-TTS size (transformers' VitsConfig defaults: 36.3 M parameters, 16 kHz) is built from its
configuration with random weights: throughput does not depend on the weights, only on the shapes, and the pace is
set so its speech lasts what real speech would (random duration predictors speak too fast). It goes through the
`vits` backend as any checkpoint would. For each precision (fp32, bf16, fp16 on CUDA; fp32 on the CPU), batches
of 1, 2, 4, ... texts of a typical chunk's length: aggregate audio seconds per wall second, against batch 1, peak
device memory, GPU utilisation sampled meanwhile (nvidia-smi). Then a real CUDA out-of-memory: the process is
capped to a sliver of the device, the largest batch that fits is found by bisection, and the engine, started far
above it, must settle within 10% of it. On the CPU (`--gpu-device cpu`, what the tests run) the same sweep runs
and the out-of-memory part is skipped. `--gpu-model kokoro` sweeps Kokoro-82M instead (random weights, through
tasks.backends.kokoro_torch, its padded batches exact), paced the same way; without the out-of-memory part.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.end_to_end import SENTENCES
from tasks.backends.kokoro_torch import KOKORO_CONFIG

VOCAB = list("abcdefghijklmnopqrstuvwxyz '.,;:!?-")
TINY = {  # a few thousand parameters: for tests of the suite itself
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "ffn_dim": 64,
    "flow_size": 32,
    "spectrogram_bins": 33,
    "upsample_initial_channel": 32,
    "upsample_rates": [8, 8, 2, 2],
    "upsample_kernel_sizes": [16, 16, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "prior_encoder_num_flows": 2,
    "prior_encoder_num_wavenet_layers": 1,
    "posterior_encoder_num_wavenet_layers": 1,
    "duration_predictor_filter_channels": 32,
    "depth_separable_num_layers": 2,
}
SIZES: dict[str, dict[str, Any]] = {"tiny": TINY, "mms": {}}  # mms: VitsConfig's defaults are MMS-TTS's shapes
SPEECH_CHARS_PER_SECOND = 14.0  # English read speech, about what the bundled voice speaks
# Kokoro's decoder has its channel counts built in: tiny shrinks PL-BERT, the text layers and the generator's
# resblocks (for tests of the suite itself: about 6x real time on two CPU cores, the real size 3x). "mms" is
# the real Kokoro-82M here.
KOKORO_TINY = {
    "plbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 512,
               "num_hidden_layers": 2},
    "n_layer": 1,
    "istftnet": {**KOKORO_CONFIG["istftnet"], "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]},
}  # fmt: skip


def build_vits_checkpoint(directory: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random VITS checkpoint saved with save_pretrained, with its SHA256SUMS: loaded like a real one."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(VOCAB)}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = VitsTokenizer(str(directory / "vocab.json"), phonemize=False, add_blank=True, normalize=True)
    config = VitsConfig(vocab_size=len(vocab), sampling_rate=16000, **SIZES[size])
    torch.manual_seed(seed)
    VitsModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    sums = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != "SHA256SUMS"
    ]
    (directory / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return directory


def chunk_texts(n: int, seed: int = 3) -> list[str]:
    """`n` texts of a typical chunk's length (two sentences, about 150 characters)."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(SENTENCES, k=2)) for _ in range(n)]


def load_vits(directory: Path, device: str, dtype: str = "fp32", length_scale: float = 1.0) -> Any:
    from tasks.backends.registry import get_backend
    from tasks.config import validate_settings

    settings = validate_settings(
        {
            "synthesis": {
                "backend": "vits",
                "voice": str(directory),
                "device": device,
                "dtype": dtype,
                "length_scale": length_scale,
            }
        }
    )
    backend = get_backend("vits")
    return backend.load(backend.resolve(settings.synthesis), settings.synthesis)


def realistic_length_scale(directory: Path, device: str) -> float:
    """The length scale at which this (random) voice speaks about SPEECH_CHARS_PER_SECOND. Durations are rounded
    up to whole frames, so pace is not proportional to the scale: a few corrections, each measured."""
    from tasks.backends.synthesizer import SynthOptions

    texts = chunk_texts(8, seed=11)
    synth = load_vits(directory, device)
    scale = 1.0
    for _ in range(4):
        audio = synth.synthesize(texts, SynthOptions(length_scale=scale, seed=0))
        seconds = sum(a.size for a in audio) / synth.info.sample_rate
        chars_per_second = sum(len(t) for t in texts) / seconds
        if abs(chars_per_second / SPEECH_CHARS_PER_SECOND - 1) < 0.1:
            break
        scale = min(5.0, max(0.11, scale * chars_per_second / SPEECH_CHARS_PER_SECOND))
    return scale


@dataclass
class KokoroInfo:
    backend: str
    sample_rate: int


class KokoroBench:
    """Kokoro (random weights) through KokoroTorch, with what sweep() reads of a synthesizer: texts in, audio
    out. A text's letters stand for its phonemes (Kokoro's vocabulary holds a-z and punctuation: about as many
    tokens); one style vector for all, as a voice's."""

    def __init__(self, model: Any, device: str, dtype: str = "fp32", speed: float = 1.0) -> None:
        import numpy as np

        from tasks.backends.kokoro_torch import SAMPLE_RATE, KokoroTorch

        self.engine, self.device, self.speed = KokoroTorch(model, device, dtype), device, speed
        self.vocab: dict[str, int] = model.vocab
        self.info = KokoroInfo("kokoro", SAMPLE_RATE)
        self.style = (np.random.default_rng(0).standard_normal(256) * 0.15).astype(np.float32)

    def items(self, texts: list[str]) -> list[Any]:
        from tasks.backends.kokoro_torch import MAX_TOKENS, KokoroItem

        ids = [[self.vocab[c] for c in text.lower() if c in self.vocab][:MAX_TOKENS] for text in texts]
        return [KokoroItem(tokens, self.style, self.speed, seed=i) for i, tokens in enumerate(ids)]

    def synthesize(self, texts: list[str]) -> list[Any]:
        return self.engine.synthesize(self.items(texts))

    def release(self) -> None:
        self.engine.release()


def realistic_speed(synth: KokoroBench) -> float:
    """The speed at which this (random) Kokoro speaks about SPEECH_CHARS_PER_SECOND. Random weights may give
    any durations (about 25 of the predictor's 50 frames a token; all 1 or all 50 where its weights lean):
    corrections, each measured on the duration predictor alone, until the pace is within 10% (durations are
    whole 25 ms frames, at least one)."""
    texts, speed = chunk_texts(8, seed=11), 1.0
    for _ in range(8):
        synth.speed = speed
        frames = sum(int(d.sum()) for d in synth.engine.durations(synth.items(texts)))
        chars_per_second = sum(len(t) for t in texts) / (frames * 600 / synth.info.sample_rate)
        if abs(chars_per_second / SPEECH_CHARS_PER_SECOND - 1) < 0.1:
            break
        speed = min(100.0, max(0.01, speed * SPEECH_CHARS_PER_SECOND / chars_per_second))
    return speed


class Utilisation:
    """GPU utilisation (%) sampled every 100 ms by nvidia-smi while in the `with` block; None without it."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # off: samples nothing (a CPU run)
        self.samples: list[float] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Utilisation:
        if not self.enabled:
            return self
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100", "-i", "0"]
        try:
            self._process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return self
        process = self._process

        stdout = process.stdout
        if stdout is None:
            raise RuntimeError("nvidia-smi was started without a pipe for its output")

        def read() -> None:
            for line in stdout:
                if line.strip().isdigit():
                    self.samples.append(float(line))

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2)

    @property
    def mean(self) -> float | None:
        # The first samples cover nvidia-smi's own start; the last, the tail of the window
        inner = self.samples[2:-1] if len(self.samples) > 4 else self.samples
        return statistics.mean(inner) if inner else None


@dataclass
class Point:
    """One precision at one batch size."""

    dtype: str
    batch: int
    realtime: float = 0.0  # audio seconds per wall second, all items together
    peak_mb: float | None = None  # device memory (CUDA only)
    utilisation: float | None = None  # % (CUDA with nvidia-smi only)
    error: str = ""


def _is_oom(exc: BaseException) -> bool:
    from tasks.shard.oom import ErrorKind, classify

    return classify(exc) is ErrorKind.OOM  # what the engine backs off from


def sweep(synth: Any, dtype: str, batches: list[int], texts: list[str], min_seconds: float) -> list[Point]:
    """Throughput at each batch size: whole batches over the texts, repeated until `min_seconds` have passed."""
    import torch

    cuda = synth.device.startswith("cuda")
    torch_memory = cuda and synth.info.backend in ("vits", "kokoro")  # ONNX Runtime's arena is not torch's
    points = []
    for b in batches:
        point = Point(dtype, b)
        if torch_memory:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            synth.synthesize(texts[:b])  # warm-up at this shape (cuDNN picks its kernels)
            audio, started = 0, time.perf_counter()
            with Utilisation(enabled=cuda) as util:
                calls = 0
                while calls < 2 or time.perf_counter() - started < min_seconds:
                    start = (calls * b) % max(1, len(texts) - b + 1)
                    audio += sum(a.size for a in synth.synthesize(texts[start : start + b]))
                    calls += 1
            point.realtime = audio / synth.info.sample_rate / (time.perf_counter() - started)
            point.utilisation = util.mean
            if torch_memory:
                point.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        except Exception as exc:  # an OOM ends the sweep for this precision; anything else too, reported
            point.error = "out of memory" if _is_oom(exc) else f"{type(exc).__name__}: {str(exc)[:200]}"
            points.append(point)
            synth.release()
            break
        points.append(point)
    return points


def largest_batch_that_fits(synth: Any, text: str, high: int) -> int:
    """Bisection with real calls: the largest batch of `text` that runs without an out-of-memory error."""
    low = 0  # fits (0 trivially)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            synth.synthesize([text] * middle)
            low = middle
        except Exception as exc:
            if not _is_oom(exc):
                raise
            synth.release()
            high = middle
    return low


@dataclass
class Recovery:
    fits: int  # the largest batch that ran under the cap, found by bisection
    start: int  # the engine's first batch
    ooms: int
    settled: int  # texts in the engine's budget at the end
    done: int
    total: int

    def line(self) -> str:
        return (
            f"real CUDA OOM: {self.fits} texts fit under the cap; the engine, starting at {self.start}, hit "
            f"{self.ooms} OOMs and settled at {self.settled} texts ({self.settled / self.fits:.0%} of what fits); "
            f"{self.done} of {self.total} texts synthesized"
        )


def oom_recovery(synth: Any, target: int = 24) -> Recovery:
    """A real CUDA OOM: cap the process so about `target` texts fit, find the largest batch that does, and let the
    engine, starting at 8x that, back off and settle."""
    import torch

    from tasks.shard.engine import BudgetState, Engine, EngineConfig

    text = chunk_texts(1, seed=5)[0]
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    synth.synthesize([text])
    base = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    synth.synthesize([text] * 8)
    per_item = max(1, (torch.cuda.max_memory_allocated() - base) / 7)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (base + per_item * target) / total))
    try:
        torch.cuda.empty_cache()
        fits = largest_batch_that_fits(synth, text, high=target * 4)
        width = synth.cost(text)
        engine = Engine(
            synth.synthesize,
            synth.cost,
            BudgetState(float(width * fits * 8)),
            EngineConfig(max_batch_size=fits * 8),
            release=synth.release,
        )
        results = list(engine.run(list(enumerate([text] * fits * 12))))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    done = sum(r.audio is not None for r in results)
    return Recovery(fits, fits * 8, engine.stats.ooms, int(engine.state.budget // width), done, len(results))


def piper_on_cuda(
    batches: list[int], texts: list[str], min_seconds: float, printer: Callable[[str], None]
) -> list[Point]:
    """The bundled Piper voice batched on ONNX Runtime's CUDA provider (rows "piper"), where it is installed."""
    import onnxruntime as ort

    from tasks.backends.registry import get_backend
    from tasks.config import validate_settings

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        printer("piper on CUDA: skipped (this onnxruntime has no CUDA provider; onnxruntime-gpu brings it)")
        return []
    settings = validate_settings({"synthesis": {"device": "cuda"}}).synthesis
    backend = get_backend("piper")
    synth = backend.load(backend.resolve(settings), settings)
    try:
        return sweep(synth, "piper", batches, texts, min_seconds)
    finally:
        synth.close()


def table(points: list[Point]) -> str:
    base = {p.dtype: p.realtime for p in points if p.batch == 1 and p.realtime}
    lines = [f"{'dtype':6}{'batch':>6}{'x real time':>13}{'vs batch 1':>12}{'peak MB':>10}{'GPU util %':>12}"]
    for p in points:
        if p.error:
            lines.append(f"{p.dtype:6}{p.batch:>6}  {p.error}")
            continue
        ratio = p.realtime / base[p.dtype] if base.get(p.dtype) else None
        cells = [f"{p.realtime:.1f}", f"{ratio:.2f}" if ratio else "n/a"]
        cells += [f"{p.peak_mb:.0f}" if p.peak_mb is not None else "n/a"]
        cells += [f"{p.utilisation:.0f}" if p.utilisation is not None else "n/a"]
        lines.append(f"{p.dtype:6}{p.batch:>6}{cells[0]:>13}{cells[1]:>12}{cells[2]:>10}{cells[3]:>12}")
    return "\n".join(lines)


def plot(points: list[Point], path: Path, title: str) -> None:
    """Throughput against batch size, a line per precision (log-2 batch axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for dtype in dict.fromkeys(p.dtype for p in points):
        ok = [p for p in points if p.dtype == dtype and not p.error]
        ax.plot([p.batch for p in ok], [p.realtime for p in ok], marker="o", label=dtype)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (texts per call)")
    ax.set_ylabel("audio s per wall s")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def kokoro_sweep(
    device: str,
    size: str,
    dtypes: list[str],
    batches: list[int],
    min_seconds: float,
    name: str,
    printer: Callable[[str], None],
) -> list[Point]:
    """Kokoro-82M (or its tiny variant) from its configuration, random weights, at a realistic pace."""
    from tasks.backends.kokoro_torch import build_model

    model = build_model({**KOKORO_CONFIG, **(KOKORO_TINY if size == "tiny" else {})}, device=device)
    speed = realistic_speed(KokoroBench(model, device))
    printer(f"Kokoro ({'82M' if size == 'mms' else size} size, random weights, speed {speed:.2f}) on {name}")
    texts = chunk_texts(max(batches) * 2)
    if size == "tiny":  # tests of the suite itself, on a CPU: shorter texts
        texts = [t[:60] for t in texts]
    points: list[Point] = []
    for dtype in dtypes:
        points += sweep(KokoroBench(model, device, dtype, speed), dtype, batches, texts, min_seconds)
    return points


def run_gpu_suite(
    device: str,
    size: str = "mms",
    batches: list[int] | None = None,
    min_seconds: float = 3.0,
    plot_path: Path | None = None,
    printer: Callable[[str], None] = print,
    model: str = "vits",
) -> list[Point]:
    """The whole suite on `device` ("cuda" or "cpu") for `model` ("vits" or "kokoro"); prints its table and
    lines, returns the sweep's points."""
    from tasks.backends.devices import cuda_device

    batches = batches or [1, 2, 4, 8, 16, 32, 64, 128, 256]
    dtypes = ["fp32", "bf16", "fp16"] if device == "cuda" else ["fp32"]
    name = cuda_device()[0] if device == "cuda" else "CPU"
    points: list[Point] = []
    if model == "kokoro":
        points = kokoro_sweep(device, size, dtypes, batches, min_seconds, name, printer)
    else:
        with tempfile.TemporaryDirectory(prefix="voxbatch-bench-vits-") as tmp:
            directory = build_vits_checkpoint(Path(tmp) / f"vits-{size}", size)
            scale = realistic_length_scale(directory, device)
            printer(f"VITS ({size} size, random weights, length scale {scale:.2f}) on {name}")
            texts = chunk_texts(max(batches) * 2)
            for dtype in dtypes:
                synth = load_vits(directory, device, dtype, scale)
                points += sweep(synth, dtype, batches, texts, min_seconds)
                if dtype == "fp32" and device == "cuda":
                    printer(oom_recovery(synth).line())
                synth.close()
        if device == "cuda":
            points += piper_on_cuda(batches, texts, min_seconds, printer)
    printer(table(points))
    best = max(points, key=lambda p: p.realtime)
    one = next((p.realtime for p in points if p.dtype == best.dtype and p.batch == 1 and p.realtime), None)
    printer(
        f"best: {best.realtime:.0f}x real time ({best.dtype}, batch {best.batch})"
        + (f", {best.realtime / one:.1f}x its batch 1" if one else "")
    )
    if plot_path is not None:
        plot(points, plot_path, f"{'Kokoro' if model == 'kokoro' else 'VITS'} {size} size on {name}")
        printer(f"plot: {plot_path}")
    return points
