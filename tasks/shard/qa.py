"""Quality checks on one chunk's audio: non-finite samples, silence, clipping, pauses, a speech rate that fits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.audio.dsp import db
from tasks.audio.loudness import integrated_loudness
from tasks.config import QASettings


def loudness_lufs(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness (ITU-R BS.1770-4, tasks.audio.loudness); None for audio shorter than one 400 ms block."""
    if audio.size < int(0.4 * sample_rate):
        return None
    value = integrated_loudness(audio, sample_rate)
    return value if np.isfinite(value) else None


FRAME_SECONDS = 0.02
SILENT_BELOW_PEAK_DB = -40.0  # a 20 ms frame this far below the chunk's peak (RMS) counts as silence


def silences(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """(share of 20 ms frames that are silent, longest run of silent frames between the first and last sound, s)."""
    n = max(1, int(FRAME_SECONDS * sample_rate))
    count = audio.size // n
    if count == 0:
        return 0.0, 0.0
    frames = audio[: count * n].reshape(count, n).astype(np.float64)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    peak = float(np.max(np.abs(audio)))
    silent = rms < peak * 10 ** (SILENT_BELOW_PEAK_DB / 20)
    sound = np.flatnonzero(~silent)
    if sound.size == 0:
        return 1.0, 0.0
    inner = silent[sound[0] : sound[-1] + 1].astype(np.int8)
    # runs of silent frames: where the padded 0/1 sequence steps up (a run starts) and down (it ends)
    steps = np.diff(np.concatenate([[0], inner, [0]]))
    runs = np.flatnonzero(steps == -1) - np.flatnonzero(steps == 1)
    return float(np.mean(silent)), float(runs.max() * FRAME_SECONDS) if runs.size else 0.0


@dataclass(frozen=True)
class Measures:
    peak_dbfs: float
    rms_dbfs: float
    clipped_fraction: float
    duration_s: float
    chars_per_second: float
    silence_ratio: float = 0.0
    longest_pause_s: float = 0.0


def measure(
    raw: np.ndarray, final_duration_s: float, text: str, trimmed: tuple[np.ndarray, int] | None = None
) -> Measures:
    """Levels from the raw synthesizer output (before any gain), rate from the final duration, silences from the
    trimmed audio (what is stored, before resampling) where given."""
    absolute = np.abs(raw) if raw.size else np.zeros(1, np.float32)
    ratio, pause = silences(*trimmed) if trimmed is not None else (0.0, 0.0)
    return Measures(
        peak_dbfs=db(float(absolute.max())),
        rms_dbfs=db(float(np.sqrt(np.mean(np.square(absolute, dtype=np.float64))))),
        clipped_fraction=float(np.mean(absolute >= 0.999)),
        duration_s=final_duration_s,
        chars_per_second=len(text) / final_duration_s if final_duration_s > 0 else float("inf"),
        silence_ratio=ratio,
        longest_pause_s=pause,
    )


def non_finite(raw: np.ndarray) -> str | None:
    """The reason to refuse audio with NaN or infinite samples (a diverged model: fp16 overflow, a bad checkpoint)."""
    bad = int(raw.size - np.count_nonzero(np.isfinite(raw)))
    if bad:
        return f"non-finite audio: {bad} of {raw.size} samples are NaN or infinite (the model diverged)"
    return None


def problems(m: Measures, text: str, lang: str, qa: QASettings) -> list[str]:
    """Reasons the audio is not fit to keep; empty when it passes."""
    found = []
    if m.duration_s <= 0:
        return ["no audio was produced"]
    if m.peak_dbfs < qa.silence_dbfs:
        found.append(f"silent: peak {m.peak_dbfs:.1f} dBFS is below qa.silence_dbfs {qa.silence_dbfs}")
    if m.clipped_fraction > qa.max_clipped_fraction:
        found.append(f"clipped: {m.clipped_fraction:.2%} of samples at full scale")
    if m.silence_ratio > qa.max_silence_ratio:
        found.append(
            f"mostly silence: {m.silence_ratio:.0%} of 20 ms frames are 40 dB below the peak "
            f"(qa.max_silence_ratio {qa.max_silence_ratio})"
        )
    if m.longest_pause_s > qa.max_pause_seconds:
        found.append(
            f"a {m.longest_pause_s:.1f} s silence inside the chunk (qa.max_pause_seconds {qa.max_pause_seconds})"
        )
    if len(text) >= qa.min_chars_for_rate_check:
        low, high = {
            "zh": (qa.min_chars_per_second_zh, qa.max_chars_per_second_zh),
            "ja": (qa.min_chars_per_second_ja, qa.max_chars_per_second_ja),
        }.get(lang, (qa.min_chars_per_second_en, qa.max_chars_per_second_en))
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
