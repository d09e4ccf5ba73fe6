"""A chunk's manifest row: its fields (the Arrow schema is made from them) and the one module that makes rows.

A row is made once, from the values the stages of a shard return: the chunk's place in the plan (`Place`), how
it was synthesized (tasks.shard.synthesis.Synthesized), the verdict of the checks on its finished audio
(tasks.shard.checker.Checked) and the object stored (tasks.shard.storing.StoredAudio); or from a row committed
earlier, or read back from Parquet. Rows are frozen: no module patches one afterwards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tasks.backends.synthesizer import Marks
from tasks.plan.file import Plan, PlannedChunk
from tasks.records import arrow_schema, int32, spans_field
from tasks.shard.checker import Checked
from tasks.shard.finish import Levels
from tasks.shard.storing import StoredAudio
from tasks.shard.synthesis import Synthesized
from tasks.shard.timing import spans_from_marks

STATUSES = ("ok", "flagged", "failed", "skipped")
# A chunk in one of these is never synthesized again. A flagged chunk (it failed only the listening check; its best
# attempt is stored under review/) is done: a rerun would make the same seeded attempts again.
DONE_STATUSES = ("ok", "flagged", "skipped")


@dataclass(frozen=True)
class ManifestRow:
    """What was made from one chunk; the README's "Manifest columns" table documents every field."""

    run_id: str
    shard: int = int32()
    doc_id: str = ""
    source: str = ""
    chunk_index: int = int32(0)
    line: int = int32(0)
    chapter_index: int = int32(0)
    chapter_title: str = ""
    chunk_id: str = ""
    text: str = ""
    spoken_text: str = ""
    lang: str = ""
    voice: str = ""  # the voice key in the plan (per chunk, so rows of one run may use different voices)
    utterance_id: str = ""  # tables: the row's id (parts of a split row share it)
    part: int = int32(0)
    speaker: str = ""
    extra_json: str = ""  # tables: the row's other columns, as JSON
    model: str = ""
    model_sha256: str = ""
    params_json: str = ""
    audio_uri: str | None = None
    audio_key: str | None = None
    format: str = ""
    sample_rate: int = int32(0)
    num_samples: int | None = None
    duration_s: float | None = None
    audio_bytes: int | None = None
    audio_checksum: str | None = None
    batch_size: int | None = int32(None)
    attempts: int = int32(0)
    oom_retries: int = int32(0)
    device: str | None = None
    synth_seconds: float = 0.0
    reused: bool = False
    status: str = "ok"
    error: str | None = None  # why it failed or was flagged (kept when a flagged row is accepted)
    accepted: bool = False  # an ok row whose flagged audio a person accepted (voxbatch accept)
    peak_dbfs: float | None = None
    rms_dbfs: float | None = None
    clipped_fraction: float | None = None
    chars_per_second: float | None = None
    loudness_lufs: float | None = None
    silence_ratio: float | None = None  # share of 20 ms frames 40 dB below the peak
    longest_pause_s: float | None = None  # longest such silence between the first and last sound
    mixed: bool = False  # spoken by two voices, a part each (Chinese with English words in it)
    voices: str = ""  # a mixed chunk's voice keys, comma-separated, in the order they speak; "" otherwise
    # Syntheses the quality checks saw (1: the first passed; more: regenerated); 0: they did not see the stored
    # audio (found stored, or stored first by an earlier attempt), and the asr_* figures are then None too.
    qa_attempts: int = int32(0)
    asr_transcript: str | None = None  # what Whisper heard (qa.asr)
    asr_wer: float | None = None  # word error rate of the transcript against spoken_text (English)
    asr_cer: float | None = None  # character error rate (every language; the one Chinese and Japanese are shown by)
    # Where each sentence (or clause, or part) of `text` is heard in the stored audio, as finely as its voice
    # tells: {start_s, end_s, char_start, char_end} (offsets into `text`), in order; None where not known (audio
    # found stored, made before timings were kept): tasks.shard.timing.spans_of then gives one span.
    sentences: list[dict[str, Any]] | None = spans_field()  # noqa: RUF009 (a dataclasses.field)
    words: list[dict[str, Any]] | None = spans_field()  # noqa: RUF009 the same per word, where the voice tells
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


MANIFEST_SCHEMA = arrow_schema(ManifestRow)
_NAMES = frozenset(MANIFEST_SCHEMA.names)


@dataclass(frozen=True)
class Place:
    """What a row says about its chunk's place in the plan (the first columns of every row)."""

    run_id: str
    shard: int
    doc_id: str
    source: str
    chunk_index: int
    line: int
    chapter_index: int
    chapter_title: str
    chunk_id: str
    text: str
    spoken_text: str
    lang: str
    voice: str
    utterance_id: str
    part: int
    speaker: str
    extra_json: str
    model: str
    model_sha256: str
    params_json: str
    format: str
    sample_rate: int  # the run's output rate (audio stored since is described by what is stored)

    @classmethod
    def of(cls, plan: Plan, c: PlannedChunk, fmt: str) -> Place:
        voice = plan.voices[c.voice]
        return cls(
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

    @property
    def said(self) -> str:
        """What the voice reads."""
        return self.spoken_text or self.text

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


# The place fields a finished row keeps from its own plan when it stands for another occurrence of its chunk id;
# the format and rate stay those of its audio (the chunk id covers them: they are the same).
_PLACE_ONLY = tuple(f.name for f in dataclasses.fields(Place) if f.name not in ("format", "sample_rate"))


def refused_row(place: Place, error: str) -> ManifestRow:
    """A chunk refused at plan time (a bad table row with text.bad_rows = "failed")."""
    return ManifestRow(**place.fields(), status="failed", error=error)


def skipped_row(place: Place) -> ManifestRow:
    """A chunk with nothing to say (`* * *`)."""
    return ManifestRow(**place.fields(), status="skipped", error="no speakable text")


def carried_row(place: Place, prior: ManifestRow) -> ManifestRow:
    """A finished row for another occurrence of the same chunk id (a rerun, a repeated sentence, two table rows
    with the same text): the audio and facts of `prior`, the place in the plan of this one."""
    fields = {**prior.to_dict(), **{name: getattr(place, name) for name in _PLACE_ONLY}}
    if prior.text != place.text:  # one spoken text written two ways ("Dr." and "Doctor"): offsets of the other
        fields["sentences"] = fields["words"] = None
    return ManifestRow(**fields)


def _audio_fields(stored: StoredAudio) -> dict[str, Any]:
    return {
        "audio_uri": stored.uri,
        "audio_key": stored.key,
        "sample_rate": stored.sample_rate,
        "num_samples": stored.num_samples,
        "duration_s": stored.duration_s,
        "audio_bytes": stored.audio_bytes,
        "audio_checksum": stored.checksum,
        "reused": stored.reused,
        **_level_fields(stored.levels),
    }


def _level_fields(levels: Levels | None) -> dict[str, Any]:
    return dataclasses.asdict(levels) if levels is not None else {}


def reused_row(place: Place, stored: StoredAudio) -> ManifestRow:
    """A chunk whose audio was found stored (a killed run's object, or another run's with the same settings)."""
    return ManifestRow(**{**place.fields(), **_audio_fields(stored), **_timings(place, stored)})


def _timings(place: Place, stored: StoredAudio) -> dict[str, Any]:
    """The `sentences` and `words` of stored audio from the timing its file's tag holds (the one it was made with:
    tasks.shard.finish writes it): None where not known."""
    timing = stored.timing

    def spans(marks: Marks) -> list[dict[str, Any]] | None:
        if not marks:
            return None
        found = spans_from_marks(marks, stored.num_samples, stored.sample_rate, place.said, place.text)
        return [span.record() for span in found]

    return {"sentences": spans(timing.pieces), "words": spans(timing.words)} if timing else {}


def made_row(place: Place, made: Synthesized, checked: Checked, stored: StoredAudio | None = None) -> ManifestRow:
    """A chunk synthesized now: how it was made, the checks' verdict and, when it passed or was flagged (then
    `stored` is its review object), the object stored."""
    fields: dict[str, Any] = {
        **place.fields(),
        "batch_size": made.batch_size,
        "attempts": made.attempts,
        "oom_retries": made.oom_retries,
        "device": made.device,
        "synth_seconds": made.seconds,
        "mixed": made.mixed,
        "voices": made.voices,
        "qa_attempts": checked.qa_attempts,
        "status": ("flagged" if checked.flagged and stored is not None else "failed") if checked.error else "ok",
        "error": checked.error,
    }
    if stored is not None and stored.other_audio:
        # The object holds another attempt's audio (stored by an earlier, killed attempt): what the checks heard
        # and how many tries they saw belong to audio that was thrown away. That audio passed the checks of the
        # attempt that stored it (only audio that passes is stored; a review object, audio flagged as this one
        # is), but its figures were not kept: not measured.
        fields["qa_attempts"] = 0
    elif checked.heard is not None:
        fields |= {
            "asr_transcript": checked.heard.transcript,
            "asr_wer": checked.heard.wer,
            "asr_cer": checked.heard.cer,
        }
    if stored is not None:
        fields |= _audio_fields(stored)
        fields |= _timings(place, stored)
    elif checked.finished is not None and checked.finished.levels is not None:  # it failed a signal check
        fields |= {"duration_s": checked.finished.duration_s, **_level_fields(checked.finished.levels)}
    return ManifestRow(**fields)


def accepted_row(flagged: ManifestRow, stored: StoredAudio) -> ManifestRow:
    """A flagged row a person accepted: ok, with its audio copied to the chunk's own key (`stored`); what was heard
    and why it was flagged are kept (unless that key held other audio already: then, as in `made_row`, they are
    not of the object described)."""
    fields = {**flagged.to_dict(), **_audio_fields(stored), "status": "ok", "accepted": True}
    if stored.other_audio:
        fields |= {"qa_attempts": 0, "asr_transcript": None, "asr_wer": None, "asr_cer": None}
    return ManifestRow(**fields)


def column_defaults() -> dict[str, Any]:
    """The fields' plain defaults: what a row read back takes for a column its file lacks (see row_from_record)."""
    return {f.name: f.default for f in dataclasses.fields(ManifestRow) if f.default is not dataclasses.MISSING}


def row_from_record(record: dict[str, Any]) -> ManifestRow:
    """A row read back (a Parquet record): its known columns; columns added since take their defaults."""
    return ManifestRow(**{k: v for k, v in record.items() if k in _NAMES})
