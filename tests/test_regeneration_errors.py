"""A regeneration that fails for the device's sake is not one failed attempt: an out-of-memory error backs off and
is retried by the engine, a fatal device error stops the shard (the worker commits and is re-dispatched); only
what fails this one chunk is counted as a failed attempt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.backends.registry import resolve_voice
from tasks.backends.tone import ToneSynthesizer
from tasks.config import Settings
from tasks.errors import DeviceFatal, StorageError
from tasks.plan.planner import prepare
from tasks.shard.checker import Checker
from tasks.shard.finish import ChunkAudio
from tasks.shard.pipeline import process_shard
from tasks.shard.synthesis import engine_for, synthesize_group, voice_groups
from tasks.shard.work_items import ShardWork
from tasks.storage import open_store
from tests.helpers import Flaky

SAID = "The keeper climbed the stairs at dusk."
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"
FATAL = "CUDA error: an illegal memory access was encountered"


def _flaky(settings: Settings, errors: list[BaseException]) -> Flaky:
    return Flaky(resolve_voice(settings.synthesis), settings.synthesis.length_scale, errors=errors)


def _first_attempt(tmp_path: Path, settings: Settings, synth: Flaky) -> tuple[ChunkAudio, np.ndarray, object, object]:
    source = tmp_path / "keeper.txt"
    source.write_text(SAID)
    plan = prepare([str(source)], settings).plan
    chunks = plan.shard(0)
    work = ShardWork(chunks, [0])
    engine, _, _ = engine_for(synth, settings)
    ((_, made),) = list(synthesize_group(engine, synth, voice_groups(chunks, work, settings)[0], work, plan, settings))
    assert made.audio is not None and made.redo is not None
    c = chunks[0]
    chunk = ChunkAudio(c.chunk_id, SAID, c.lang, plan.voices[c.voice].sample_rate, plan.sample_rate)
    return chunk, made.audio, made.redo, engine


def test_an_oom_in_a_regeneration_backs_off_and_the_attempt_is_made(tmp_path: Path, tone_settings: Settings) -> None:
    synth = _flaky(tone_settings, [RuntimeError(OOM)])
    chunk, audio, redo, engine = _first_attempt(tmp_path, tone_settings, synth)
    checker = Checker(chunk.rate_out, tone_settings)
    ((_, checked),) = checker.offer(0, chunk, audio, redo)  # type: ignore[arg-type]
    # Before: the OOM was swallowed as a failed attempt, and the chunk failed "(best of 2 attempts)".
    assert checked.error is None and checked.qa_attempts == 2
    assert engine.stats.ooms == 1  # type: ignore[attr-defined]  # the engine's own backoff ran


def test_a_fatal_device_error_in_a_regeneration_is_not_swallowed(tmp_path: Path, tone_settings: Settings) -> None:
    chunk, audio, redo, _ = _first_attempt(tmp_path, tone_settings, _flaky(tone_settings, [RuntimeError(FATAL)]))
    with pytest.raises(DeviceFatal, match="illegal memory access"):
        Checker(chunk.rate_out, tone_settings).offer(0, chunk, audio, redo)  # type: ignore[arg-type]


def test_any_other_voxbatch_error_from_a_regeneration_reaches_the_shard(tone_settings: Settings) -> None:
    """A redo that raises anything but AttemptFailed (storage, model, device) is not a failed attempt."""
    chunk = ChunkAudio("c" * 32, SAID, "en", 22050, 16000)
    too_long = ToneSynthesizer(resolve_voice(tone_settings.synthesis), 12.0).synthesize([SAID])[0]

    def broken(seed: int) -> np.ndarray:
        raise StorageError("s3://b/x: cannot read")

    with pytest.raises(StorageError):
        Checker(16000, tone_settings).offer(0, chunk, too_long, broken)


def test_a_fatal_device_error_in_a_regeneration_stops_the_shard_for_redispatch(
    tmp_path: Path, tone_settings: Settings
) -> None:
    source = tmp_path / "keeper.txt"
    source.write_text(SAID)
    plan = prepare([str(source)], tone_settings).plan
    synth = _flaky(tone_settings, [RuntimeError(FATAL)])
    result = process_shard(plan, 0, tone_settings, open_store(str(tmp_path / "out")), lambda voice: synth)
    # Before: the chunk became a failed row ("regeneration: RuntimeError: CUDA error…") and the shard went on.
    assert isinstance(result.fatal, DeviceFatal) and "illegal memory access" in str(result.fatal)
    assert result.rows == []  # nothing made of the chunk: a fresh worker makes it again


def test_what_fails_one_chunk_is_one_failed_attempt(tmp_path: Path, tone_settings: Settings) -> None:
    chunk, audio, redo, _ = _first_attempt(tmp_path, tone_settings, _flaky(tone_settings, [ValueError("bad seed")]))
    ((_, checked),) = Checker(chunk.rate_out, tone_settings).offer(0, chunk, audio, redo)  # type: ignore[arg-type]
    assert checked.error is None and checked.qa_attempts == 3  # the failed regeneration counted, the next passed

    from tasks.shard.checker import AttemptFailed  # here: the module's other tests also run on older code

    def refuses(seed: int) -> np.ndarray:
        raise AttemptFailed("ValueError: bad seed")

    ((_, checked),) = Checker(chunk.rate_out, tone_settings).offer(0, chunk, audio, refuses)
    assert checked.error is not None and checked.qa_attempts == tone_settings.qa.regenerate + 1
