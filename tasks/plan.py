"""The plan of a run: documents to chunks with deterministic ids, grouped into shards, and the run id."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tasks.backends.base import VoiceInfo, digest_of
from tasks.chunking import chunk_paragraph, detect_lang, language_runs
from tasks.config import Settings
from tasks.errors import ConfigError, InputError, ModelError
from tasks.ingest import Corpus, Document, read_documents
from tasks.manifest import int32
from tasks.normalize import Paragraph, TextOptions
from tasks.speech_text import load_lexicon, spoken
from tasks.tables import Row
from tasks.voice_book import VoiceBook, speaks

# Typical speaking rates, for the dry run's duration estimate only.
CHARS_PER_SECOND = {"en": 15.0, "zh": 4.5}


@dataclass(frozen=True)
class PlannedChunk:
    """One chunk as the plan records it: everything a worker needs to make its audio (columns of plan.parquet)."""

    shard: int = int32()
    doc_id: str = ""
    source: str = ""
    chunk_index: int = int32(0)  # position within its document
    line: int = int32(0)  # 1-based source line of the paragraph the chunk starts in
    chapter_index: int = int32(0)  # EPUB spine chapter or markdown chapter heading; 0 for plain text
    chapter_title: str = ""
    chunk_id: str = ""
    text: str = ""  # the chunk as the input has it
    spoken_text: str = ""  # what the voice reads: text normalized for speech (numbers as words, lexicon, emoji)
    lang: str = ""
    voice: str = ""  # key into Plan.voices
    params_json: str = ""  # the settings besides text and voice that shape its audio
    utterance_id: str = ""  # tables: the row's id (its parts share it); "" for documents
    part: int = int32(0)  # tables: which part of a row split for length
    speaker: str = ""  # tables: the row's speaker of a multi-speaker voice
    extra_json: str = ""  # tables: the row's other columns, as JSON
    error: str = ""  # a row refused at plan time with text.bad_rows = "failed": the manifest row's error


@dataclass(frozen=True)
class Plan:
    run_id: str
    voices: dict[str, VoiceInfo]  # voice key -> identity (backend, name, spec, sha256)
    sample_rate: int  # output rate
    chunks: tuple[PlannedChunk, ...]  # in shard order
    shard_size: int
    settings: dict[str, Any] = field(default_factory=dict)  # the run's settings (a worker starts from them)
    checksum: str = ""  # over the work: chunks, voices, shard size, rate (not over the settings)
    inputs: tuple[dict[str, Any], ...] = ()  # per document: source, encoding, chapters, warnings
    rejected: tuple[dict[str, str], ...] = ()  # inputs set aside: source and reason

    @property
    def voice(self) -> VoiceInfo:
        """The run's own voice (`synthesis.voice`): the first of `voices`; rows and languages may add others."""
        return next(iter(self.voices.values()))

    @property
    def num_shards(self) -> int:
        return -(-len(self.chunks) // self.shard_size)

    def shard(self, n: int) -> list[PlannedChunk]:
        return list(self.chunks[n * self.shard_size : (n + 1) * self.shard_size])

    def estimated_seconds(self) -> float:
        return sum(len(c.text) / CHARS_PER_SECOND.get(c.lang, 15.0) for c in self.chunks)


def output_rate(settings: Settings, voice: VoiceInfo) -> int:
    rate = settings.audio.sample_rate
    return voice.sample_rate if rate == "native" else int(rate)


def audio_params(settings: Settings, voice: VoiceInfo, rate: int | None = None) -> dict[str, Any]:
    """Every setting that changes the audio of a chunk (and so its id), besides its text and the voice.

    `rate`: the run's output rate (the run's own voice sets it when it is "native")."""
    s, a = settings.synthesis, settings.audio
    rate = output_rate(settings, voice) if rate is None else rate
    return {
        "length_scale": s.length_scale,
        "noise_scale": s.noise_scale,
        "noise_w": s.noise_w,
        "sample_rate": rate,
        "resampler": a.resampler if rate != voice.sample_rate else None,
        "format": a.format,
        "peak_dbfs": a.peak_dbfs,
        "trim_silence": a.trim_silence,
        "pad_seconds": a.pad_seconds if a.trim_silence else None,
    }


def chunk_id(text: str, voice: VoiceInfo, params: dict[str, Any]) -> str:
    return digest_of("chunk/v1", text, voice.identity, params)[:32]


class _Planner:
    """Paragraphs and table rows to planned chunks, with their voices and parameters."""

    def __init__(self, settings: Settings, voice: VoiceInfo) -> None:
        self.settings = settings
        self.book = VoiceBook(settings, voice)
        self.rate = output_rate(settings, voice)
        self._params: dict[tuple[str, str, float | None], tuple[dict[str, Any], str]] = {}
        self.chunks: list[PlannedChunk] = []
        self._index = 0  # chunk_index within the current document
        t = settings.text
        self.lexicons = {voice: load_lexicon(path) for voice, path in t.lexicons.items()}

    def spoken(self, text: str, lang: str, key: str, table_row: bool) -> str:
        t = self.settings.text
        normalize = t.normalize == "on" or (t.normalize == "auto" and not table_row)
        voice = self.book.voices[key]
        lexicon = self.lexicons.get(voice.spec) or self.lexicons.get(key) or self.lexicons.get("*")
        return spoken(text, lang, normalize, t.emoji, lexicon)

    def params(self, key: str, speaker: str = "", length_scale: float | None = None) -> tuple[dict[str, Any], str]:
        cached = self._params.get((key, speaker, length_scale))
        if cached is None:
            params = audio_params(self.settings, self.book.voices[key], self.rate)
            if length_scale is not None:
                params["length_scale"] = length_scale
            if speaker:
                params["speaker"] = speaker
            cached = self._params[(key, speaker, length_scale)] = (params, json.dumps(params, sort_keys=True))
        return cached

    def limit(self, lang: str) -> int:
        t = self.settings.text
        return t.max_chars_zh if lang == "zh" else t.max_chars_en

    def add(self, doc: Document, paragraph: Paragraph, text: str, lang: str, key: str, **fields: Any) -> None:
        params, params_json = self.params(key, fields.get("speaker", ""), fields.pop("length_scale", None))
        if fields.get("error"):  # a row refused at plan time: its own id, never the id of real audio
            params = {**params, "failed": fields["error"]}
        said = self.spoken(text, lang, key, bool(fields.get("utterance_id")))
        self.chunks.append(
            PlannedChunk(
                shard=0,  # assigned once the order is known
                doc_id=doc.doc_id,
                source=doc.source,
                chunk_index=self._index,
                line=paragraph.line,
                chapter_index=paragraph.chapter,
                chapter_title=doc.chapters[paragraph.chapter],
                chunk_id=chunk_id(said, self.book.voices[key], params),
                text=text,
                spoken_text=said,
                lang=lang,
                voice=key,
                params_json=params_json,
                **fields,
            )
        )
        self._index += 1

    def document(self, doc: Document) -> None:
        self._index = 0
        for paragraph in doc.paragraphs:
            if paragraph.row is not None:
                self.row(doc, paragraph)
            else:
                self.paragraph(doc, paragraph)

    def paragraph(self, doc: Document, paragraph: Paragraph) -> None:
        where = f"{doc.source}: line {paragraph.line}"
        text = paragraph.text
        forced = self.settings.text.lang
        if self.book.routes_by_language():
            runs = language_runs(text)
        else:
            runs = [(0, len(text), detect_lang(text) if forced == "auto" else forced)]
        for start, end, lang in runs:
            key = self.book.for_language(lang, where)
            for c in chunk_paragraph(text[start:end], lang, self.limit(lang)):
                self.add(doc, paragraph, c.text, lang, key)

    def row(self, doc: Document, paragraph: Paragraph) -> None:
        row = paragraph.row
        assert row is not None
        text, problem = paragraph.text, row.problem
        lang = row.lang or (self.settings.text.lang if self.settings.text.lang != "auto" else detect_lang(text))
        key = self.book.default_key
        if not problem:
            try:
                key = self._row_voice(doc, row, lang)
            except InputError as exc:
                if self.settings.text.bad_rows != "failed":
                    raise
                problem = str(exc)
        fields = {"utterance_id": row.id, "extra_json": _extra_json(row.extra), "speaker": row.speaker}
        if problem:
            self.add(doc, paragraph, text, lang, self.book.default_key, error=problem, **fields)
            return
        parts = chunk_paragraph(text, lang, self.limit(lang))
        for part, c in enumerate(parts):
            self.add(doc, paragraph, c.text, lang, key, part=part, length_scale=row.length_scale, **fields)

    def _row_voice(self, doc: Document, row: Row, lang: str) -> str:
        """The row's voice key, validated against its language and speaker; InputError names row and column."""
        where = f"{doc.source}: row {row.number}"
        if row.voice:
            try:
                key = self.book.key_for(row.voice)
            except (ConfigError, ModelError) as exc:
                raise InputError(f"{where}, column 'voice': unknown voice {row.voice!r} ({exc})") from exc
            voice = self.book.voices[key]
            if not speaks(voice, lang):
                raise InputError(
                    f"{where}, column 'lang': the row is in {lang!r}, but voice {row.voice!r} speaks "
                    f"{', '.join(voice.languages)}"
                )
        else:
            key = self.book.for_language(lang, where)
            voice = self.book.voices[key]
        if row.speaker and row.speaker not in voice.speakers:
            known = ", ".join(voice.speakers[:20]) if voice.speakers else "it has a single speaker"
            raise InputError(
                f"{where}, column 'speaker': voice {voice.name!r} has no speaker {row.speaker!r} ({known})"
            )
        return key


def _extra_json(extra: dict[str, Any]) -> str:
    return json.dumps(extra, sort_keys=True, ensure_ascii=False, default=str) if extra else ""


def make_plan(docs: list[Document], settings: Settings, voice: VoiceInfo, corpus: Corpus | None = None) -> Plan:
    planner = _Planner(settings, voice)
    for doc in docs:
        planner.document(doc)
    size = settings.run.shard_size
    chunks = [replace(c, shard=i // size) for i, c in enumerate(planner.chunks)]
    run_id = settings.run.run_id or "run-" + digest_of([c.chunk_id for c in chunks], size)[:12]
    rate, voices = planner.rate, planner.book.voices
    rejected = tuple({"source": r.source, "reason": r.reason} for r in corpus.rejected) if corpus else ()
    return Plan(
        run_id,
        voices,
        rate,
        tuple(chunks),
        size,
        settings.model_dump(),
        plan_checksum(chunks, voices, size, rate),
        tuple(d.describe() for d in docs),
        rejected,
    )


def plan_checksum(
    chunks: list[PlannedChunk] | tuple[PlannedChunk, ...],
    voices: dict[str, VoiceInfo],
    shard_size: int,
    sample_rate: int,
) -> str:
    """Digest of the work a plan describes; a plan read back from storage must reproduce it."""
    identities = {k: v.identity for k, v in sorted(voices.items())}
    return digest_of("plan/v1", identities, shard_size, sample_rate, [asdict(c) for c in chunks])


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    plan: Plan
    documents: int


def prepare(inputs: list[str], settings: Settings) -> Prepared:
    """Inputs to a plan; every bad input, setting or voice file fails here, before any synthesis."""
    from tasks.backends import resolve_voice

    t = settings.text
    options = TextOptions(t.code_blocks, t.urls, t.chapter_heading_level, t.bad_rows)
    corpus = read_documents(inputs, t.encoding, options, t.strict)
    voice = resolve_voice(settings.synthesis)
    return Prepared(settings, make_plan(corpus.documents, settings, voice, corpus), len(corpus.documents))
