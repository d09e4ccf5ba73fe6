"""The backend interface: resolve a voice cheaply (identity, checksums), then load it and synthesize text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tasks.errors import ModelError

if TYPE_CHECKING:
    from tasks.config import SynthesisSettings


@dataclass(frozen=True)
class VoiceInfo:
    """What a voice is, known before loading it; `identity` enters every chunk id."""

    backend: str
    name: str
    model_path: str
    model_sha256: str
    sample_rate: int
    languages: tuple[str, ...]
    identity: str  # digest of model + config bytes + backend version that determine the audio
    spec: str = ""  # the voice as the settings name it (bundled name, path or URI): a worker resolves it again
    speakers: tuple[str, ...] = ()  # speaker names (or numbers) of a multi-speaker voice; () for one speaker
    licence: str = ""  # the voice's terms where they matter (shown by doctor, kept in the plan and manifests)


@dataclass(frozen=True)
class SynthOptions:
    """Per-utterance choices a table row can make: pace and speaker. None / "": the voice's settings. `seed`
    fixes the noise of voices that sample (a regenerated chunk's attempt); None: the backend's own."""

    length_scale: float | None = None
    speaker: str = ""
    seed: int | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SynthOptions:
        return cls(params.get("length_scale"), params.get("speaker") or "")


class Synthesizer(Protocol):
    """A loaded voice. `synthesize` returns one float32 mono array in [-1, 1] per text."""

    info: VoiceInfo
    supports_batching: bool  # padded batches: several texts in one model call
    lanes: int  # texts it synthesizes side by side on separate sessions (Piper on a CPU); 1 for the others
    device: str
    sampling: bool  # the same text can come out differently (noise): worth synthesizing a failed chunk again

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]: ...

    def cost(self, text: str) -> int:
        """Size of the text in the model's input units (phonemes, tokens): the engine's batch budget unit."""
        ...

    def release(self) -> None:
        """Give cached device memory back after an out-of-memory error."""
        ...

    def memory_key(self) -> dict[str, Any]:
        """What a learned batch budget depends on: weights, device, memory, dtype, library versions."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo: ...

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> Synthesizer: ...


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(chunk_size):
                h.update(block)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror}") from exc
    return h.hexdigest()


def verify_sha256(path: Path, expected: str | None, fix: str) -> str:
    """Hash `path`; if an expected digest is known and differs, raise ModelError naming both digests."""
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        size = path.stat().st_size
        raise ModelError(
            f"{path}: checksum mismatch, the file is corrupt or truncated ({size} bytes)\n"
            f"  expected sha256 {expected.lower()}\n  actual   sha256 {actual}",
            hint=fix,
        )
    return actual


def digest_of(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def cuda_device() -> tuple[str, int]:
    """(name, total bytes) of CUDA device 0 as torch sees it, or ("cpu", 0) without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return "cpu", 0
    if not torch.cuda.is_available():
        return "cpu", 0
    props = torch.cuda.get_device_properties(0)
    return props.name, int(props.total_memory)


def library_versions(*dists: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def onnx_cuda(settings: SynthesisSettings) -> bool:
    """Whether an ONNX Runtime voice runs on CUDA: the provider is there and the settings allow it; asking for
    CUDA without the provider is a ConfigError that says what to install."""
    import onnxruntime as ort

    from tasks.errors import ConfigError

    available = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if settings.device == "cuda" and not cuda:
        raise ConfigError(
            "synthesis.device = 'cuda', but ONNX Runtime has no CUDA provider here "
            f"(providers: {', '.join(available)})",
            hint="install onnxruntime-gpu matching your CUDA, or use device 'auto'/'cpu'",
        )
    return cuda and settings.device in ("auto", "cuda")


def onnx_session_setup(threads: int, use_cuda: bool) -> tuple[Any, list[Any]]:
    """ONNX Runtime session options and providers for a voice: intra-op threads, CUDA first where used.

    kSameAsRequested (with arena shrinkage on the next run, where the backend asks for it) lets the CUDA arena give
    memory back after an out-of-memory error; by default it only grows (onnxruntime issue 11740)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not use_cuda:
        # Memory patterns are planned per input shape, and every sentence has its own: off, a Piper session's peak
        # on 20 KB of text falls from 435 to 333 MB at the same speed (measured, issue 12).
        options.enable_mem_pattern = False
    providers: list[Any] = ["CPUExecutionProvider"]
    if use_cuda:
        cuda = {"device_id": 0, "arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"}
        providers.insert(0, ("CUDAExecutionProvider", cuda))
    return options, providers
