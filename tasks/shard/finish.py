"""A chunk's raw audio finished: trimmed, resampled, checked (tasks.shard.qa), levelled and encoded.

`finish` is the stage between the synthesizer and the listening check; it returns a `Finished`: the audio to
store, or why there is none. `measure_levels` measures audio as it is stored (new or found), for its row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.audio import dsp
from tasks.backends.synthesizer import timing_of
from tasks.config import AudioSettings, QASettings
from tasks.shard import qa
from tasks.shard.timing import timing_tag


@dataclass(frozen=True)
class Levels:
    """Quality facts of a chunk's audio, as its manifest row records them (None where not measured)."""

    peak_dbfs: float | None = None
    rms_dbfs: float | None = None
    clipped_fraction: float | None = None
    chars_per_second: float | None = None
    loudness_lufs: float | None = None
    silence_ratio: float | None = None  # share of 20 ms frames 40 dB below the peak
    longest_pause_s: float | None = None  # longest such silence between the first and last sound


@dataclass(frozen=True)
class ChunkAudio:
    """What finishing a chunk's audio needs to know about the chunk."""

    chunk_id: str
    said: str  # what the voice read (the spoken text): "1984" takes as long as "nineteen eighty-four"
    lang: str
    rate_in: int  # the sample rate of the voice that made it (of the chunk's own voice, for a mixed chunk)
    rate_out: int  # the run's output rate


@dataclass(frozen=True)
class Finished:
    """The audio to store (`samples` at the output rate, `data` encoded), or the reason there is none: "qa: …"
    (a check failed: worth making again) or "post-processing: …". A chunk that failed a check keeps what was
    measured: its duration and levels."""

    samples: np.ndarray | None = None
    data: bytes | None = None
    error: str | None = None
    duration_s: float | None = None
    levels: Levels | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None


def measure_levels(samples: np.ndarray, rate: int, duration_s: float, said: str) -> Levels:
    """Levels of audio as stored (the same measures for new audio and audio found stored)."""
    m = qa.measure(samples, duration_s, said)
    ratio, pause = qa.silences(samples, rate)
    return Levels(
        peak_dbfs=m.peak_dbfs,
        rms_dbfs=m.rms_dbfs,
        clipped_fraction=m.clipped_fraction,
        chars_per_second=m.chars_per_second if np.isfinite(m.chars_per_second) else None,
        loudness_lufs=qa.loudness_lufs(samples, rate),
        silence_ratio=ratio,
        longest_pause_s=pause,
    )


def finish(raw: np.ndarray, chunk: ChunkAudio, audio: AudioSettings, checks: QASettings) -> Finished:
    """Post-process one chunk's raw audio and check it. One chunk's failure is its own: any error here becomes
    its reason, and the shard goes on."""
    try:
        return _finish(raw, chunk, audio, checks)
    except Exception as exc:  # post-processing of one chunk failed: record it, go on
        return Finished(error=f"post-processing: {type(exc).__name__}: {exc}"[:2000])


def _finish(raw: np.ndarray, chunk: ChunkAudio, a: AudioSettings, checks: QASettings) -> Finished:
    broken = qa.non_finite(raw)
    if broken:  # NaN would pass through every level measure below as NaN
        return Finished(error="qa: " + broken)
    start, end = dsp.trim_bounds(raw, chunk.rate_in, a.pad_seconds) if a.trim_silence else (0, raw.size)
    trimmed = raw[start:end]
    out = dsp.resample(trimmed, chunk.rate_in, chunk.rate_out, a.resampler)
    m = qa.measure(raw, out.size / chunk.rate_out, chunk.said, (trimmed, chunk.rate_in))  # before any gain
    found = qa.problems(m, chunk.said, chunk.lang, checks)
    if found:
        levels = Levels(
            peak_dbfs=m.peak_dbfs,
            rms_dbfs=m.rms_dbfs,
            clipped_fraction=m.clipped_fraction,
            silence_ratio=m.silence_ratio,
            longest_pause_s=m.longest_pause_s,
        )
        return Finished(error="qa: " + "; ".join(found), duration_s=m.duration_s, levels=levels)
    if a.loudness_lufs is not None and (measured := qa.loudness_lufs(out, chunk.rate_out)) is not None:
        final = dsp.set_loudness(out, measured, a.loudness_lufs, a.peak_dbfs)
    else:  # peak normalization, also for a chunk under 0.4 s (too short for a loudness measure)
        final = dsp.set_peak(out, a.peak_dbfs)
    timing = timing_of(raw).moved(start, chunk.rate_in, chunk.rate_out, final.size)
    # In the file's tag: the stored object carries its timing to its row and to any later run that finds it.
    return Finished(samples=final, data=dsp.encode(final, chunk.rate_out, a.format, comment=timing_tag(timing)))
