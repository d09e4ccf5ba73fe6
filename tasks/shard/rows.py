"""A chunk's manifest row: made from its place in the plan, then from audio synthesized now or found stored.

Post-processing (trim, resample, QA, level, encode) and the write-once store of one chunk's audio live here
too: what turns a synthesizer's raw output into a row and an object.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from tasks.audio import dsp
from tasks.config import Settings
from tasks.plan.file import Plan, PlannedChunk
from tasks.shard import qa
from tasks.shard.manifest import ManifestRow
from tasks.storage import ObjectStore
from tasks.storage.layout import content_type


def base_row(plan: Plan, c: PlannedChunk, fmt: str) -> ManifestRow:
    voice = plan.voices[c.voice]
    return ManifestRow(
        run_id=plan.run_id,
        shard=c.shard,
        doc_id=c.doc_id,
        source=c.source,
        chunk_index=c.chunk_index,
        line=c.line,
        chapter_index=c.chapter_index,
        chapter_title=c.chapter_title,
        chunk_id=c.chunk_id,
        text=c.text,
        spoken_text=c.spoken_text,
        lang=c.lang,
        voice=c.voice,
        utterance_id=c.utterance_id,
        part=c.part,
        speaker=c.speaker,
        extra_json=c.extra_json,
        model=f"{voice.backend}:{voice.name}",
        model_sha256=voice.model_sha256,
        params_json=c.params_json,
        format=fmt,
        sample_rate=plan.sample_rate,
    )


# What a row says about the chunk's place in the plan; everything else describes its dsp.
_PLACE_FIELDS = (
    "run_id", "shard", "doc_id", "source", "chunk_index", "line", "chapter_index", "chapter_title", "text", "lang",
    "spoken_text",
    "voice", "utterance_id", "part", "speaker", "extra_json", "model", "model_sha256", "params_json",
)  # fmt: skip


def with_place(prior: ManifestRow, base: ManifestRow) -> ManifestRow:
    """A finished row for another occurrence of the same chunk id (a repeated sentence, two rows with the same
    text): the audio fields of `prior`, the place in the plan of `base`."""
    return dataclasses.replace(prior, **{name: getattr(base, name) for name in _PLACE_FIELDS})


def _levels(row: ManifestRow, samples: np.ndarray, rate: int) -> None:
    """Levels of the audio as stored (the same source for new and reused rows)."""
    m = qa.measure(samples, row.duration_s or 0.0, row.spoken_text or row.text)
    row.peak_dbfs, row.rms_dbfs, row.clipped_fraction = m.peak_dbfs, m.rms_dbfs, m.clipped_fraction
    row.chars_per_second = m.chars_per_second if np.isfinite(m.chars_per_second) else None
    row.loudness_lufs = qa.loudness_lufs(samples, rate)
    row.silence_ratio, row.longest_pause_s = qa.silences(samples, rate)


def _with_audio(row: ManifestRow, store: ObjectStore, key: str, data: bytes) -> ManifestRow:
    rate, frames = dsp.probe(data)
    row.audio_uri, row.audio_key, row.sample_rate, row.num_samples = store.uri(key), key, rate, frames
    row.duration_s, row.audio_bytes = frames / rate, len(data)
    row.audio_checksum = "sha256:" + hashlib.sha256(data).hexdigest()
    return row


def reused_row(row: ManifestRow, store: ObjectStore, key: str, data: bytes | None = None) -> ManifestRow:
    """A row for audio that is stored already (a killed run's object, or another run's)."""
    data = store.get(key) if data is None else data
    _with_audio(row, store, key, data)
    row.reused = True
    samples, rate = dsp.decode(data)
    _levels(row, samples, rate)
    return row


def store_chunk(store: ObjectStore, row: ManifestRow, key: str, data: bytes, final: np.ndarray) -> ManifestRow:
    """Write one chunk's audio once (runs on an upload thread); an existing object is kept, never overwritten."""
    written = store.put(key, data, content_type=content_type(key))
    # Not written: another worker or a killed run stored it first (S3 answered 412). Compare it with ours.
    stored = data if written else store.get(key)
    if stored != data:  # a sampling backend made other audio for the same chunk: the row describes what is stored
        return reused_row(row, store, key, stored)
    _with_audio(row, store, key, data)
    _levels(row, final, row.sample_rate)
    row.reused = not written
    return row


def _finish(row: ManifestRow, raw: np.ndarray, plan: Plan, settings: Settings) -> tuple[np.ndarray, bytes] | None:
    """Post-process one chunk's raw audio and check it; returns (final samples, encoded bytes), or None if failed."""
    a = settings.audio
    broken = qa.non_finite(raw)
    if broken:  # NaN would pass through every level measure below as NaN
        row.status, row.error = "failed", "qa: " + broken
        return None
    rate_in = plan.voices[row.voice].sample_rate
    trimmed = dsp.trim_silence(raw, rate_in, a.pad_seconds) if a.trim_silence else raw
    out = dsp.resample(trimmed, rate_in, plan.sample_rate, a.resampler)
    said = row.spoken_text or row.text  # what the voice read: "1984" takes as long as "nineteen eighty-four"
    m = qa.measure(raw, out.size / plan.sample_rate, said, (trimmed, rate_in))  # on the output before any gain
    found = qa.problems(m, said, row.lang, settings.qa)
    if found:
        row.status, row.error, row.duration_s = "failed", "qa: " + "; ".join(found), m.duration_s
        row.peak_dbfs, row.rms_dbfs, row.clipped_fraction = m.peak_dbfs, m.rms_dbfs, m.clipped_fraction
        row.silence_ratio, row.longest_pause_s = m.silence_ratio, m.longest_pause_s
        return None
    if a.loudness_lufs is not None and (measured := qa.loudness_lufs(out, plan.sample_rate)) is not None:
        final = dsp.set_loudness(out, measured, a.loudness_lufs, a.peak_dbfs)
    else:  # peak normalization, also for a chunk under 0.4 s (too short for a loudness measure)
        final = dsp.set_peak(out, a.peak_dbfs)
    return final, dsp.encode(final, plan.sample_rate, a.format)


def post_process(
    row: ManifestRow, raw: np.ndarray | None, plan: Plan, settings: Settings
) -> tuple[np.ndarray, bytes] | None:
    if raw is None:
        return None
    try:
        return _finish(row, raw, plan, settings)
    except Exception as exc:  # post-processing of one chunk failed: record it, go on
        row.status, row.error = "failed", f"post-processing: {type(exc).__name__}: {exc}"[:2000]
        return None
