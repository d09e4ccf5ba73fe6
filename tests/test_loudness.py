"""tasks/audio/loudness.py against pyloudnorm (the reference implementation of ITU-R BS.1770-4) on sines at every common
rate, noise, real speech, silence and gated quiet passages."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from tasks.audio.loudness import integrated_loudness
from tasks.shard import qa

RATES = [8000, 16000, 22050, 24000, 44100, 48000]


@pytest.mark.parametrize("rate", RATES)
def test_sines_and_noise_match_pyloudnorm(rate: int) -> None:
    t = np.arange(int(2.7 * rate)) / rate
    rng = np.random.default_rng(rate)
    signals = (0.5 * np.sin(2 * np.pi * 997 * t), 0.05 * np.sin(2 * np.pi * 60 * t), 0.2 * rng.standard_normal(t.size))
    for signal in signals:
        expected = pyloudnorm.Meter(rate).integrated_loudness(signal)
        assert integrated_loudness(signal, rate) == pytest.approx(expected, abs=1e-6)


def test_speech_with_quiet_passages_matches_pyloudnorm() -> None:
    from tasks.backends.registry import get_backend
    from tasks.config import validate_settings

    s = validate_settings({}).synthesis
    joe = get_backend("piper").load(get_backend("piper").resolve(s), s)
    speech = joe.synthesize(["The ferry left the harbour a little after seven, crowded with bicycles."])[0]
    rate = joe.info.sample_rate
    quiet = np.concatenate([speech, np.zeros(rate, np.float32), speech * 0.01, speech])  # gated blocks too
    for audio in (speech, quiet):
        expected = pyloudnorm.Meter(rate).integrated_loudness(audio.astype(np.float64))
        assert integrated_loudness(audio, rate) == pytest.approx(expected, abs=1e-6)


def test_silence_and_short_audio_have_no_loudness() -> None:
    assert integrated_loudness(np.zeros(16000), 16000) == float("-inf")
    assert qa.loudness_lufs(np.zeros(16000, np.float32), 16000) is None
    assert qa.loudness_lufs(np.ones(100, np.float32), 16000) is None  # shorter than one 400 ms block
    with pytest.raises(ValueError, match="400 ms"):
        integrated_loudness(np.ones(100), 16000)
