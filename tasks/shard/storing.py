"""A chunk's audio stored once, by chunk id, and described as it is stored (`StoredAudio`).

An object is written with "create only": one that exists already (a killed run's, another worker's, another
run's with the same settings) is never overwritten. When it exists and differs (a voice that samples made other
audio for the same chunk: first attempts are unseeded, so this is the normal case on a resume), the row
describes the stored object, not the audio made now, and `other_audio` says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from tasks.audio import dsp
from tasks.backends.synthesizer import Timing
from tasks.shard import faults
from tasks.shard.finish import Levels, measure_levels
from tasks.shard.timing import timing_from_tag
from tasks.storage import ObjectStore
from tasks.storage.layout import content_type


@dataclass(frozen=True)
class StoredAudio:
    """An audio object as stored: where, what it holds, its checksum and levels; `reused` when this call did
    not write it; `other_audio` when what is stored is not the audio this call was given (the quality checks of
    that audio say nothing about the object)."""

    uri: str
    key: str
    sample_rate: int
    num_samples: int
    duration_s: float
    audio_bytes: int
    checksum: str
    reused: bool
    levels: Levels
    other_audio: bool = False
    timing: Timing | None = None  # where the spoken text's pieces (and words) begin, from the file's tag


def _describe(
    store: ObjectStore, key: str, data: bytes, samples: np.ndarray, rate: int | None, said: str, reused: bool
) -> StoredAudio:
    """`rate`: the samples' rate (None: the header's)."""
    header_rate, frames = dsp.probe(data)
    duration = frames / header_rate
    return StoredAudio(
        uri=store.uri(key),
        key=key,
        sample_rate=header_rate,
        num_samples=frames,
        duration_s=duration,
        audio_bytes=len(data),
        checksum="sha256:" + hashlib.sha256(data).hexdigest(),
        reused=reused,
        levels=measure_levels(samples, rate or header_rate, duration, said),
        timing=timing_from_tag(dsp.comment_of(data)),
    )


def stored_audio(store: ObjectStore, key: str, said: str, data: bytes | None = None) -> StoredAudio:
    """Audio that is stored already (its bytes read when not given), measured as decoded."""
    data = store.get(key) if data is None else data
    samples, rate = dsp.decode(data)
    return _describe(store, key, data, samples, rate, said, reused=True)


def store_audio(store: ObjectStore, key: str, data: bytes, samples: np.ndarray, said: str) -> StoredAudio:
    """Write one chunk's audio once (on an upload thread); an existing object is kept, never overwritten."""
    written = store.put(key, data, content_type=content_type(key))
    if written:
        faults.passed("audio")
    # Not written: another worker or a killed run stored it first (S3 answered 412). Compare it with ours.
    stored = data if written else store.get(key)
    if stored != data:
        return dataclasses.replace(stored_audio(store, key, said, stored), other_audio=True)
    return _describe(store, key, data, samples, None, said, reused=not written)
