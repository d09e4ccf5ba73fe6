from __future__ import annotations

import numpy as np
import pytest

from tasks.audio import dsp
from tasks.config import QASettings
from tasks.shard import qa


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("method", ["soxr", "resampy"])
@pytest.mark.parametrize(("rate_in", "rate_out"), [(22050, 16000), (22050, 24000), (22050, 48000)])
def test_resampling_keeps_length_and_pitch(method: str, rate_in: int, rate_out: int) -> None:
    x = tone(1000.0, rate_in, 1.0)
    y = dsp.resample(x, rate_in, rate_out, method)
    assert abs(y.size - rate_out) <= 2
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    peak_hz = np.argmax(spectrum) * rate_out / y.size
    assert abs(peak_hz - 1000.0) < 3.0


def test_soxr_removes_content_above_the_new_nyquist() -> None:
    # A 10 kHz tone cannot exist at 16 kHz: a correct resampler filters it out instead of aliasing it to 6 kHz.
    y = dsp.resample(tone(10_000.0, 22050, 1.0), 22050, 16000, "soxr")
    assert dsp.db(float(np.max(np.abs(y[1000:-1000])))) < -80


@pytest.mark.parametrize("fmt", ["flac", "wav", "ogg", "mp3"])
def test_each_format_encodes_and_decodes(fmt: str) -> None:
    x = tone(440.0, 22050, 0.5)
    data = dsp.encode(x, 22050, fmt)
    rate, frames = dsp.probe(data)
    decoded, rate2 = dsp.decode(data)
    assert rate == rate2 == 22050
    # Lossy codecs may pad a little; lossless ones must be exact in length.
    assert frames == x.size if fmt in ("flac", "wav") else abs(frames - x.size) < 3000
    assert abs(dsp.db(float(np.max(np.abs(decoded)))) - dsp.db(0.5)) < 1.5


def test_trim_keeps_padding_and_set_peak() -> None:
    rate = 16000
    x = np.concatenate([np.zeros(rate), tone(300, rate, 0.5), np.zeros(rate)]).astype(np.float32)
    trimmed = dsp.trim_silence(x, rate, 0.1)
    assert abs(trimmed.size - int(0.7 * rate)) < 50
    assert dsp.db(float(np.max(np.abs(dsp.set_peak(trimmed, -1.0))))) == pytest.approx(-1.0, abs=0.01)
    assert dsp.trim_silence(np.zeros(10, np.float32), rate, 0.1).size == 10


def test_qa_flags_silence_clipping_and_bad_rates() -> None:
    q = QASettings()
    text = "A sentence of some forty characters, ok."
    good = qa.measure(tone(200, 16000, 2.5), 2.5, text)
    assert qa.problems(good, text, "en", q) == []
    silent = qa.measure(np.full(16000, 1e-4, np.float32), 2.5, text)
    assert "silent" in qa.problems(silent, text, "en", q)[0]
    clipped = qa.measure(np.clip(tone(200, 16000, 2.5, amp=3.0), -1, 1), 2.5, text)
    assert "clipped" in qa.problems(clipped, text, "en", q)[0]
    short = qa.measure(tone(200, 16000, 0.3), 0.3, text)
    assert "too short" in qa.problems(short, text, "en", q)[0]
    long = qa.measure(tone(200, 16000, 60), 60.0, text)
    assert "too long" in qa.problems(long, text, "en", q)[0]
    assert qa.problems(qa.measure(np.zeros(0, np.float32), 0.0, text), text, "en", q) == ["no audio was produced"]
    # Short chunks skip the rate check: 'Yes.' in 1.5 s is fine.
    assert qa.problems(qa.measure(tone(200, 16000, 1.5), 1.5, "Yes."), "Yes.", "en", q) == []
