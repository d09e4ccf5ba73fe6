"""The plan of a run: documents to chunks with deterministic ids, grouped into shards, and the run id."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tasks.backends.base import VoiceInfo, digest_of
from tasks.chunking import chunk_paragraph, detect_lang
from tasks.config import Settings
from tasks.errors import InputError
from tasks.ingest import Corpus, Document, read_documents
from tasks.manifest import int32
from tasks.normalize import TextOptions

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
    text: str = ""
    lang: str = ""
    voice: str = ""  # key into Plan.voices
    params_json: str = ""  # the settings besides text and voice that shape its audio


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
        """The run's voice (one per run until per-row voices arrive)."""
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


def audio_params(settings: Settings, voice: VoiceInfo) -> dict[str, Any]:
    """Every setting that changes the audio of a chunk (and so its id), besides its text and the voice."""
    s, a = settings.synthesis, settings.audio
    return {
        "length_scale": s.length_scale,
        "noise_scale": s.noise_scale,
        "noise_w": s.noise_w,
        "sample_rate": output_rate(settings, voice),
        "resampler": a.resampler if output_rate(settings, voice) != voice.sample_rate else None,
        "format": a.format,
        "peak_dbfs": a.peak_dbfs,
        "trim_silence": a.trim_silence,
        "pad_seconds": a.pad_seconds if a.trim_silence else None,
    }


def chunk_id(text: str, voice: VoiceInfo, params: dict[str, Any]) -> str:
    return digest_of("chunk/v1", text, voice.identity, params)[:32]


def make_plan(docs: list[Document], settings: Settings, voice: VoiceInfo, corpus: Corpus | None = None) -> Plan:
    t = settings.text
    params = audio_params(settings, voice)
    params_json = json.dumps(params, sort_keys=True)
    key = voice.name
    chunks: list[PlannedChunk] = []
    for doc in docs:
        index = 0
        for paragraph in doc.paragraphs:
            lang = detect_lang(paragraph.text) if t.lang == "auto" else t.lang
            if lang not in voice.languages and "*" not in voice.languages:
                raise InputError(
                    f"{doc.source}: line {paragraph.line}: text is in {lang!r}, but voice {voice.name!r} speaks "
                    f"{', '.join(voice.languages)}",
                    hint="choose a voice for that language with --voice, or force the language with --lang",
                )
            limit = t.max_chars_zh if lang == "zh" else t.max_chars_en
            for c in chunk_paragraph(paragraph.text, lang, limit):
                cid = chunk_id(c.text, voice, params)
                chunks.append(
                    PlannedChunk(
                        shard=0,  # assigned below, once the order is known
                        doc_id=doc.doc_id,
                        source=doc.source,
                        chunk_index=index,
                        line=paragraph.line,
                        chapter_index=paragraph.chapter,
                        chapter_title=doc.chapters[paragraph.chapter],
                        chunk_id=cid,
                        text=c.text,
                        lang=lang,
                        voice=key,
                        params_json=params_json,
                    )
                )
                index += 1
    size = settings.run.shard_size
    chunks = [replace(c, shard=i // size) for i, c in enumerate(chunks)]
    run_id = settings.run.run_id or "run-" + digest_of([c.chunk_id for c in chunks], size)[:12]
    rate = output_rate(settings, voice)
    voices = {key: voice}
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
    options = TextOptions(t.code_blocks, t.urls, t.chapter_heading_level)
    corpus = read_documents(inputs, t.encoding, options, t.strict)
    voice = resolve_voice(settings.synthesis)
    return Prepared(settings, make_plan(corpus.documents, settings, voice, corpus), len(corpus.documents))
