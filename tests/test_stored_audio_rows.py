"""A manifest row describes the audio object it points at, never audio that was thrown away.

When a chunk's write is refused because the object exists (S3 answers 412: an earlier, killed attempt stored it,
and first attempts are unseeded, so its bytes differ), the row takes the stored object's checksum, length and
levels, and none of the quality figures of the audio made now: the transcript, WER/CER and qa_attempts of the
discarded attempt would describe other audio. Checked against a real S3 server, the manifest read back as Parquet.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tasks.audio import dsp
from tasks.backends.registry import resolve_voice
from tasks.backends.tone import ToneSynthesizer
from tasks.config import Settings
from tasks.plan.planner import prepare
from tasks.shard.checker import Checked, Heard
from tasks.shard.finish import ChunkAudio, finish
from tasks.shard.lifecycle import run_shard
from tasks.shard.manifest import read_manifest
from tasks.shard.rows import made_row
from tasks.shard.storing import store_audio
from tasks.shard.synthesis import Synthesized
from tasks.storage import open_store
from tasks.storage.layout import audio_key
from tests.helpers import CHUNK, Flaky, place, speechlike

SAID = "The keeper climbed the stairs at dusk."


def _encoded(raw: np.ndarray, chunk: ChunkAudio, settings: Settings) -> bytes:
    done = finish(raw, chunk, settings.audio, settings.qa)
    assert done.data is not None
    return done.data


def test_a_row_refused_by_412_describes_the_stored_object_not_the_audio_heard(s3_bucket: str) -> None:
    s = Settings()
    store = open_store(f"s3://{s3_bucket}/out")
    key = "audio/cc/" + CHUNK.chunk_id + ".flac"
    earlier = _encoded(speechlike(2.0), CHUNK, s)  # an earlier attempt's audio, stored before it was killed
    assert store.put(key, earlier)
    now = finish(speechlike(2.4), CHUNK, s.audio, s.qa)
    assert now.data is not None and now.samples is not None and now.data != earlier
    heard = Heard("the keeper climbed the stairs at dusk", 0.0, 0.0)  # what was heard of the audio made now
    checked = Checked(now, heard, 2, None)
    made = Synthesized(now.samples, None, batch_size=1, attempts=1, oom_retries=0, seconds=0.1, device="cpu")

    row = made_row(place(), made, checked, store_audio(store, key, now.data, now.samples, CHUNK.said))

    assert row.audio_checksum == "sha256:" + hashlib.sha256(earlier).hexdigest() and row.reused
    assert row.audio_bytes == len(earlier) and row.duration_s == dsp.probe(earlier)[1] / dsp.probe(earlier)[0]
    # Before: the transcript, WER/CER and the 2 attempts of the discarded audio stayed on the row.
    assert (row.asr_transcript, row.asr_wer, row.asr_cer, row.qa_attempts) == (None, None, None, 0)
    # The audio written now keeps its own figures.
    other = made_row(place(), made, checked, store_audio(store, key + ".2", now.data, now.samples, CHUNK.said))
    assert (other.asr_transcript, other.qa_attempts, other.reused) == (heard.transcript, 2, False)


def test_a_resumed_shard_on_s3_commits_rows_that_match_their_objects(
    s3_bucket: str, tmp_path: Path, tone_settings: Settings
) -> None:
    source = tmp_path / "keeper.txt"
    source.write_text(SAID)
    plan = prepare([str(source)], tone_settings).plan
    store = open_store(f"s3://{s3_bucket}/out")
    c = plan.shard(0)[0]
    chunk = ChunkAudio(c.chunk_id, SAID, c.lang, plan.voices[c.voice].sample_rate, plan.sample_rate)
    voice = resolve_voice(tone_settings.synthesis)
    # A killed attempt stored its audio (another noise draw: a little slower) but committed no manifest.
    earlier = _encoded(ToneSynthesizer(voice, 1.1).synthesize([SAID])[0], chunk, tone_settings)
    assert store.put(audio_key(c.chunk_id, "flac"), earlier)

    # This attempt's first synthesis fails the length check and is regenerated: 2 attempts, for audio discarded.
    synth = Flaky(voice, tone_settings.synthesis.length_scale)
    run_shard(store, plan, 0, tone_settings, load_synthesizer=lambda key: synth)

    (row,) = read_manifest(store, plan.run_id, 0) or []  # the committed Parquet, read back from the server
    assert row.status == "ok" and row.reused
    assert row.audio_checksum == "sha256:" + hashlib.sha256(store.get(row.audio_key or "")).hexdigest()
    assert row.audio_checksum == "sha256:" + hashlib.sha256(earlier).hexdigest()
    assert row.qa_attempts == 0  # before: 2, the attempts of audio that is not the object
