"""Audio post-processing: trim silence, resample (soxr or resampy), set the level (peak or loudness), encode,
and join the parts of a chunk spoken by two voices."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from tasks.formats import FORMATS

_TRIM_THRESHOLD_DB = -40.0  # relative to the chunk's peak
CROSSFADE_SECONDS = 0.015  # between the parts of a chunk spoken by two voices
KEEP_SECONDS = 0.04  # of the silence around each part: words of two voices still need a breath between them


def db(value: float) -> float:
    return float(20 * np.log10(max(value, 1e-10)))


def trim_silence(audio: np.ndarray, sample_rate: int, pad_seconds: float) -> np.ndarray:
    """Cut leading and trailing audio quieter than the threshold, keeping `pad_seconds` at each end."""
    start, end = trim_bounds(audio, sample_rate, pad_seconds)
    return audio[start:end]


def trim_bounds(audio: np.ndarray, sample_rate: int, pad_seconds: float) -> tuple[int, int]:
    """The (start, end) samples `trim_silence` keeps."""
    if audio.size == 0:
        return 0, 0
    peak = float(np.max(np.abs(audio)))
    if peak <= 0:
        return 0, audio.size
    loud = np.flatnonzero(np.abs(audio) >= peak * 10 ** (_TRIM_THRESHOLD_DB / 20))
    pad = int(pad_seconds * sample_rate)
    return max(0, int(loud[0]) - pad), min(audio.size, int(loud[-1]) + 1 + pad)


def resample(audio: np.ndarray, rate_in: int, rate_out: int, method: str) -> np.ndarray:
    if rate_in == rate_out or audio.size == 0:
        return audio
    if method == "soxr":
        import soxr

        return np.asarray(soxr.resample(audio, rate_in, rate_out, quality="HQ"), dtype=np.float32)
    if method == "resampy":
        import resampy  # loads numba and compiles on first use (about 1.5 s per process)

        return np.asarray(resampy.resample(audio, rate_in, rate_out, filter="kaiser_best"), dtype=np.float32)
    raise ValueError(f"unknown resampler {method!r}")


def set_peak(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0:
        return audio
    return (audio * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)


def set_loudness(audio: np.ndarray, measured_lufs: float, target_lufs: float, peak_limit_dbfs: float) -> np.ndarray:
    """Gain to the target loudness, but no more than keeps the peak at or below `peak_limit_dbfs` (a sample-peak
    ceiling, not a true-peak limiter: a chunk with a high peak-to-loudness ratio ends up quieter than the target)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0:
        return audio
    gain_db = min(target_lufs - measured_lufs, peak_limit_dbfs - db(peak))
    return (audio * 10 ** (gain_db / 20)).astype(np.float32)


def encode(audio: np.ndarray, sample_rate: int, fmt: str, comment: str = "") -> bytes:
    """The audio in a chunk format; `comment`: a text kept in the file's comment tag (every chunk format has one)."""
    container, subtype = FORMATS[fmt].container, FORMATS[fmt].subtype
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sample_rate, 1, format=container, subtype=subtype) as out:
        if comment:
            out.comment = comment  # before any audio: libsndfile takes tags only then
        out.write(np.clip(audio, -1.0, 1.0))
    return buf.getvalue()


def comment_of(data: bytes) -> str:
    """The comment tag of encoded audio ("" where it has none)."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        return str(f.comment or "")


def probe(data: bytes) -> tuple[int, int]:
    """(sample_rate, number of frames) of encoded audio, read from its header."""
    info = sf.info(io.BytesIO(data))
    return int(info.samplerate), int(info.frames)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return audio, int(rate)


def join_parts(parts: list[tuple[np.ndarray, int]], rate: int, resampler: str) -> np.ndarray:
    """Parts (samples, their rate) as one waveform at `rate`: each trimmed and resampled, joined by crossfades."""
    return join_parts_placed(parts, rate, resampler)[0]


def join_parts_placed(
    parts: list[tuple[np.ndarray, int]], rate: int, resampler: str
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """`join_parts`, and for each part where it went: (its first sample in the whole, the samples of its own
    rate trimmed from its start)."""
    fade = int(CROSSFADE_SECONDS * rate)
    out = np.zeros(0, np.float32)
    placed = []
    for samples, part_rate in parts:
        start, end = trim_bounds(samples, part_rate, KEEP_SECONDS)
        piece = resample(samples[start:end].astype(np.float32), part_rate, rate, resampler)
        if out.size >= fade and piece.size >= fade and fade:
            placed.append((out.size - fade, start))
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            overlap = out[-fade:] * (1.0 - ramp) + piece[:fade] * ramp
            out = np.concatenate([out[:-fade], overlap, piece[fade:]])
        else:
            placed.append((out.size, start))
            out = np.concatenate([out, piece])
    return out.astype(np.float32), placed
