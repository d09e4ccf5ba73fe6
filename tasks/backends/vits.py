"""VITS voices on PyTorch (transformers VitsModel, MMS-TTS-style checkpoints) from a local directory.

Batched with attention masks; each item is cut to its true length (`sequence_lengths`). On CUDA, autocast to
bf16/fp16 per `synthesis.dtype`; on the CPU always fp32 (half precision breaks layer-norm and STFT kernels).
Checksums: a `SHA256SUMS` file in the directory (sha256sum format) is verified before use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backends import model_cache
from tasks.backends.checksums import digest_of, sha256_file, verify_sha256
from tasks.backends.devices import cuda_device, library_versions, torch_device
from tasks.backends.synthesizer import SynthOptions, VoiceInfo
from tasks.config import SynthesisSettings
from tasks.errors import ModelError

WEIGHTS = ("model.safetensors", "pytorch_model.bin")
REQUIRED = ("config.json", "vocab.json")
CHECKSUMS = "SHA256SUMS"


def _expected_digests(directory: Path) -> dict[str, str]:
    sums = directory / CHECKSUMS
    return model_cache.parse_sha256sums(sums.read_text()) if sums.exists() else {}


def _local_directory(voice: str) -> Path:
    """The checkpoint directory: local as given, or an s3:// / file:// folder fetched through the cache."""
    if not model_cache.is_remote(voice):
        return Path(voice).expanduser()
    return model_cache.fetch_folder(voice, checksums=CHECKSUMS)


class VitsBackend:
    name = "vits"

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo:
        directory = _local_directory(settings.voice)
        if not directory.is_dir():
            raise ModelError(
                f"synthesis.voice: {settings.voice!r} is not a directory; the vits backend takes a local "
                "checkpoint directory (config.json, model.safetensors, vocab.json)"
            )
        for name in REQUIRED:
            if not (directory / name).exists():
                raise ModelError(f"{directory / name}: missing from the VITS checkpoint directory")
        weights = next((directory / w for w in WEIGHTS if (directory / w).exists()), None)
        if weights is None:
            raise ModelError(f"{directory}: no model.safetensors (or pytorch_model.bin) in the checkpoint directory")
        expected = _expected_digests(directory)
        fix = "copy the checkpoint again from its source, or fix its SHA256SUMS"
        digests = {}
        for path in sorted(p for p in directory.iterdir() if p.is_file() and p.name != CHECKSUMS):
            want = expected.get(path.name) or (settings.sha256 if path == weights else None)
            digests[path.name] = verify_sha256(path, want, fix) if want else sha256_file(path)
        try:
            config = json.loads((directory / "config.json").read_text())
            rate = int(config["sampling_rate"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{directory / 'config.json'}: not a valid VITS config: {exc!r}") from exc
        lang = config.get("language")
        versions = library_versions("torch", "transformers")
        return VoiceInfo(
            backend="vits",
            name=directory.name,
            model_path=str(weights),
            model_sha256=digests[weights.name],
            sample_rate=rate,
            languages=(lang,) if isinstance(lang, str) else ("*",),
            identity=digest_of("vits", versions["transformers"], digests),
        )

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> VitsSynthesizer:
        import torch
        from transformers import VitsModel, VitsTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights: 100%" on every load says nothing here

        device = torch_device(settings)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        directory = Path(info.model_path).parent
        try:
            model = VitsModel.from_pretrained(directory, local_files_only=True).eval().to(device)
            tokenizer = VitsTokenizer.from_pretrained(directory, local_files_only=True)
        except Exception as exc:  # transformers/safetensors raise many types for a bad checkpoint
            raise ModelError(
                f"{directory}: cannot load the VITS checkpoint: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            ) from exc
        model.speaking_rate = 1.0 / settings.length_scale
        model.noise_scale = settings.noise_scale
        model.noise_scale_duration = settings.noise_w
        return VitsSynthesizer(info, model, tokenizer, device, settings.dtype)


@dataclass
class VitsSynthesizer:
    info: VoiceInfo
    model: Any  # transformers.VitsModel
    tokenizer: Any  # transformers.VitsTokenizer
    device: str
    dtype: str
    supports_batching: bool = True
    lanes: int = 1
    sampling: bool = True  # noise in the stochastic duration predictor and the flow

    def cost(self, text: str) -> int:
        return len(self.tokenizer(text).input_ids)

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]:

        rate = self.model.speaking_rate
        if options and options.seed is not None:  # a regenerated chunk's attempt: its own, repeatable noise
            import torch

            torch.manual_seed(options.seed)
        if options and options.length_scale:
            self.model.speaking_rate = 1.0 / options.length_scale
        try:
            return self._synthesize(texts)
        finally:
            self.model.speaking_rate = rate

    def _synthesize(self, texts: Sequence[str]) -> list[np.ndarray]:
        import torch

        inputs = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        for text, tokens in zip(texts, inputs.attention_mask.sum(dim=1).tolist(), strict=True):
            if tokens == 0:
                raise ValueError(f"no character of {text[:40]!r} is in the voice's vocabulary")
        inputs = inputs.to(self.device)
        autocast = torch.autocast(
            device_type="cuda",
            dtype=torch.bfloat16 if self.dtype == "bf16" else torch.float16,
            enabled=self.device == "cuda" and self.dtype != "fp32",
        )
        with torch.inference_mode(), autocast:
            out = self.model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask)
        waves = out.waveform.float().cpu().numpy()
        lengths = out.sequence_lengths.cpu().numpy()
        return [np.clip(waves[i, : int(lengths[i])], -1.0, 1.0).astype(np.float32) for i in range(len(texts))]

    def release(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def memory_key(self) -> dict[str, Any]:
        name, total = cuda_device() if self.device == "cuda" else ("cpu", 0)
        return {
            "backend": "vits",
            "model_sha256": self.info.model_sha256,
            "device": name,
            "memory": total,
            "dtype": self.dtype if self.device == "cuda" else "fp32",
            "versions": library_versions("torch", "transformers"),
        }

    def close(self) -> None:
        self.model = None
