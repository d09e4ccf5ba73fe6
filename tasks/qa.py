"""Quality checks on one chunk's audio: silence, clipping, and a speech rate that fits the text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.audio import db
from tasks.config import QASettings


def loudness_lufs(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness (ITU-R BS.1770, torchaudio); None for audio shorter than one 400 ms block."""
    if audio.size < int(0.4 * sample_rate):
        return None
    import torch
    import torchaudio

    value = float(torchaudio.functional.loudness(torch.from_numpy(np.ascontiguousarray(audio))[None], sample_rate))
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class Measures:
    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float
    duration_s: float
    chars_per_second: float


def measure(raw: np.ndarray, final_duration_s: float, text: str) -> Measures:
    """Levels from the raw synthesizer output (before any gain), rate from the final duration."""
    absolute = np.abs(raw) if raw.size else np.zeros(1, np.float32)
    return Measures(
        peak_dbfs=db(float(absolute.max())),
        rms_dbfs=db(float(np.sqrt(np.mean(np.square(absolute, dtype=np.float64))))),
        clipped_fraction=float(np.mean(absolute >= 0.999)),
        duration_s=final_duration_s,
        chars_per_second=len(text) / final_duration_s if final_duration_s > 0 else float("inf"),
    )


def problems(m: Measures, text: str, lang: str, qa: QASettings) -> list[str]:
    """Reasons the audio is not fit to keep; empty when it passes."""
    found = []
    if m.duration_s <= 0:
        return ["no audio was produced"]
    if m.peak_dbfs < qa.silence_dbfs:
        found.append(f"silent: peak {m.peak_dbfs:.1f} dBFS is below qa.silence_dbfs {qa.silence_dbfs}")
    if m.clipped_fraction > qa.max_clipped_fraction:
        found.append(f"clipped: {m.clipped_fraction:.2%} of samples at full scale")
    if len(text) >= qa.min_chars_for_rate_check:
        low, high = (
            (qa.min_chars_per_second_zh, qa.max_chars_per_second_zh)
            if lang == "zh"
            else (qa.min_chars_per_second_en, qa.max_chars_per_second_en)
        )
        if m.chars_per_second > high:
            found.append(
                f"too short for its text: {m.duration_s:.2f} s for {len(text)} characters "
                f"({m.chars_per_second:.1f} chars/s > {high})"
            )
        elif m.chars_per_second < low:
            found.append(
                f"too long for its text: {m.duration_s:.2f} s for {len(text)} characters "
                f"({m.chars_per_second:.1f} chars/s < {low})"
            )
    return found
