"""Quality gates on real speech made wrong on purpose: each kind of broken audio is flagged by its own check;
loudness normalization reaches its target on the real voice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.audio import dsp
from tasks.backends.registry import get_backend, voice_settings
from tasks.config import validate_settings
from tasks.shard import qa
from tasks.storage.layout import manifest_key
from tests.helpers import SAMPLE_EN

TEXT = "The keeper climbed the stairs again, counting each step, and lit the great lamp at dusk."


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    s = voice_settings(validate_settings({}).synthesis, "joe")
    joe = get_backend("piper").load(get_backend("piper").resolve(s), s)
    return joe.synthesize([TEXT])[0], joe.info.sample_rate


def judged(raw: np.ndarray, rate: int) -> list[str]:
    """The checks as post-processing runs them: levels on the raw output, silences and rate on the trimmed."""
    reason = qa.non_finite(raw)
    if reason:
        return [reason]
    trimmed = dsp.trim_silence(raw, rate, 0.1)
    m = qa.measure(raw, trimmed.size / rate, TEXT, (trimmed, rate))
    return qa.problems(m, TEXT, "en", validate_settings({}).qa)


def test_real_speech_passes(speech: tuple[np.ndarray, int]) -> None:
    assert judged(*speech) == []


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("silence", "silent"),
        ("clipped", "clipped"),
        ("truncated", "too short for its text"),
        ("looped", "too long for its text"),
        ("nan", "non-finite audio"),
        ("long pause", "s silence inside the chunk"),
        ("stutter", "mostly silence"),
    ],
)
def test_broken_audio_is_flagged_by_the_right_check(speech: tuple[np.ndarray, int], breakage: str, reason: str) -> None:
    raw, rate = speech
    broken = {
        "silence": lambda: np.zeros_like(raw),
        "clipped": lambda: np.clip(raw * 30, -1, 1),
        "truncated": lambda: raw[: raw.size // 8],
        "looped": lambda: np.tile(raw, 8),  # a model that loops: the sentence eight times over
        "nan": lambda: np.where(np.arange(raw.size) % 1000 == 0, np.nan, raw).astype(np.float32),
        "long pause": lambda: np.concatenate(
            [raw[: raw.size // 2], np.zeros(3 * rate, np.float32), raw[raw.size // 2 :]]
        ),
        # 40 ms bursts every 1.2 s: each gap under the pause limit, nearly all of it silence
        "stutter": lambda: np.concatenate(
            [
                np.concatenate([raw[i : i + int(0.04 * rate)], np.zeros(int(1.2 * rate), np.float32)])
                for i in range(0, raw.size, raw.size // 12)
            ]
        ),
    }[breakage]()
    found = judged(broken.astype(np.float32), rate)
    assert any(reason in f for f in found), found
    assert len(found) <= 2, found  # the right check, not every check


@pytest.mark.slow
def test_loudness_normalization_reaches_the_target(prefect_api: None, tmp_path: Path) -> None:
    from flows.corpus import corpus_flow

    out = tmp_path / "out"
    summary = corpus_flow([str(SAMPLE_EN)], str(out), {"audio": {"loudness_lufs": -23.0}})
    rows = [
        r for s in range(summary["shards"]) for r in pq.read_table(out / manifest_key(summary["run_id"], s)).to_pylist()
    ]
    measured = [r for r in rows if r["loudness_lufs"] is not None]
    assert len(measured) >= 5
    for r in measured:
        limited = r["peak_dbfs"] >= -1.05  # the peak ceiling stopped the gain first
        assert abs(r["loudness_lufs"] + 23.0) <= 0.5 or (limited and r["loudness_lufs"] < -23.0), r
        assert 0 <= r["silence_ratio"] <= 0.6 and 0 <= r["longest_pause_s"] <= 2.0
    assert sum(abs(r["loudness_lufs"] + 23.0) <= 0.5 for r in measured) >= len(measured) // 2
