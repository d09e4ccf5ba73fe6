"""The plan of a run: documents to chunks with deterministic ids, grouped into shards, and the run id."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tasks.backends.synthesizer import VoiceInfo
from tasks.config import Settings
from tasks.errors import ConfigError, InputError, ModelError
from tasks.plan.file import Plan, PlanRow, PlanWriter, header_for, open_plan
from tasks.plan.ids import audio_params, chunk_id_maker, output_rate
from tasks.plan.voice_book import VoiceBook, speaks
from tasks.text.chunking import HAN_LANGS, KANA, chunk_paragraph, detect_lang, language_runs
from tasks.text.ingest import Corpus, Document, read_documents
from tasks.text.mixed_script import is_mixed, script_runs
from tasks.text.normalize import Paragraph, TextOptions
from tasks.text.speech_text import Lexicon, load_lexicon, reads_as_written, spoken
from tasks.text.tables import Row


@dataclass(frozen=True)
class _Language:
    """What the paragraph chunks of one language share."""

    make_id: Callable[[str], str]
    speech: tuple[bool, str, Lexicon | None]  # how spoken text is made (normalize, emoji, lexicon)
    limit: int  # the longest chunk
    voice: str  # its key in the plan
    params_json: str


class _Planner:
    """Paragraphs and table rows to planned chunks, with their voices and parameters."""

    def __init__(self, settings: Settings, voice: VoiceInfo) -> None:
        self.settings = settings
        self.book = VoiceBook(settings, voice)
        self.rate = output_rate(settings, voice)
        self._params: dict[tuple[str, str, float | None], tuple[dict[str, Any], str, Callable[[str], str]]] = {}
        self.writer = PlanWriter(settings.run.shard_size, settings.run.shard_audio_minutes * 60.0)
        self._index = 0  # chunk_index within the current document
        self._by_lang: dict[str, _Language] = {}
        self._mixing = settings.text.lang == "auto"  # a forced language: one voice reads everything
        t = settings.text
        self.lexicons = {voice: load_lexicon(path) for voice, path in t.lexicons.items()}
        self._limits = {"en": t.max_chars_en, "zh": t.max_chars_zh, "ja": t.max_chars_ja}
        # The language of Han characters without kana in the current document: what it declares, else the setting;
        # and, where it is the setting's "zh", how many runs went to Chinese beside Japanese ones (a warning).
        self.han: str = t.han_lang
        self._han_by_setting = False
        self._han_runs = 0
        self._kana_runs = 0

    def _speech_options(self, key: str, table_row: bool) -> tuple[bool, str, Lexicon | None]:
        t = self.settings.text
        normalize = t.normalize == "on" or (t.normalize == "auto" and not table_row)
        voice = self.book.voices[key]
        lexicon = self.lexicons.get(voice.spec) or self.lexicons.get(key) or self.lexicons.get("*")
        return normalize, t.emoji, lexicon

    def spoken(self, text: str, lang: str, key: str, table_row: bool) -> str:
        return spoken(text, lang, *self._speech_options(key, table_row))

    def params(
        self, key: str, speaker: str = "", length_scale: float | None = None
    ) -> tuple[dict[str, Any], str, Callable[[str], str]]:
        """The audio parameters of a voice key, speaker and pace: as a dict, as JSON, and their chunk id maker."""
        cached = self._params.get((key, speaker, length_scale))
        if cached is None:
            voice = self.book.voices[key]
            params = audio_params(self.settings, voice, self.rate)
            if length_scale is not None:
                params["length_scale"] = length_scale
            if speaker:
                params["speaker"] = speaker
            made = (params, json.dumps(params, sort_keys=True), chunk_id_maker(voice, params))
            cached = self._params[(key, speaker, length_scale)] = made
        return cached

    def limit(self, lang: str) -> int:
        return self._limits.get(lang, self._limits["en"])

    def add(self, doc: Document, paragraph: Paragraph, text: str, lang: str, key: str, **fields: Any) -> None:
        params, params_json, make_id = self.params(key, fields.get("speaker", ""), fields.pop("length_scale", None))
        said = self.spoken(text, lang, key, bool(fields.get("utterance_id")))
        if fields.get("error"):  # a row refused at plan time: its own id, never the id of real audio
            make_id = chunk_id_maker(self.book.voices[key], {**params, "failed": fields["error"]})
        chapter = paragraph.chapter
        self.writer.add(
            PlanRow(
                shard=0,
                doc_id=doc.doc_id,
                source=doc.source,
                chunk_index=self._index,
                line=paragraph.line,
                chapter_index=chapter,
                chapter_title=doc.chapters[chapter],
                chunk_id=make_id(said),
                text=text,
                spoken_text=_unless_same(said, text),
                lang=lang,
                voice=key,
                params_json=params_json,
                utterance_id=fields.get("utterance_id", ""),
                part=fields.get("part", 0),
                speaker=fields.get("speaker", ""),
                extra_json=fields.get("extra_json", ""),
                error=fields.get("error", ""),
                parts_json="",  # table rows are one voice's
            )
        )
        self._index += 1

    def document(self, doc: Document) -> None:
        self._index = 0
        declared = doc.lang if doc.lang in HAN_LANGS else ""
        # Han characters alone: the document's declared language, else text.han_lang where set, else the one Han
        # language this run has a voice for (a Japanese voice alone: a kanji heading is read as Japanese), else zh
        text = self.settings.text
        chosen = "han_lang" in text.model_fields_set
        self.han = declared or (text.han_lang if chosen else self.book.han_by_voices() or text.han_lang)
        self._han_by_setting = not declared and self.han == "zh"
        self._han_runs = self._kana_runs = 0
        paragraphs = iter(doc.paragraphs)
        try:
            for paragraph in paragraphs:
                if paragraph.row is not None:
                    self.row(doc, paragraph, paragraph.row)
                else:
                    self.paragraph(doc, paragraph)
        finally:  # a streamed file's generator holds it open: closed when planning stops early too
            close = getattr(paragraphs, "close", None)  # (a tuple's iterator holds nothing)
            if close is not None:
                close()

    def warnings(self, doc: Document) -> list[str]:
        """What planning the document (the last one planned) found to warn of: Han characters without kana read as
        Chinese by the setting's default in a document mostly in Japanese, where the document declares nothing."""
        if not (self._han_by_setting and self._han_runs and self._kana_runs >= self._han_runs):
            return []  # none, or a Chinese document quoting some Japanese
        return [
            f"{doc.source}: {self._han_runs} passage(s) in Han characters without kana read as Chinese "
            "(text.han_lang = 'zh'; the document declares no language) beside Japanese text with kana: if they are "
            "Japanese, set text.han_lang = 'ja' (--han-lang ja)"
        ]

    def paragraph(self, doc: Document, paragraph: Paragraph) -> None:
        """A paragraph's chunks, as `add` would make them one by one, made in one loop (most of a plan's time)."""
        text = paragraph.text
        if self.book.routes_by_language():
            runs = language_runs(text, self.han)
        else:
            forced = self.settings.text.lang
            runs = [(0, len(text), detect_lang(text, self.han) if forced == "auto" else forced)]
        if self._han_by_setting and not text.isascii():
            for _, _, lang in runs:
                self._han_runs += lang == "zh"
                self._kana_runs += lang == "ja"
        doc_id, source, line, chapter = doc.doc_id, doc.source, paragraph.line, paragraph.chapter
        title = doc.chapters[chapter]
        rows: list[PlanRow] = []
        index = self._index
        for start, end, lang in runs:
            piece = text if (start, end) == (0, len(text)) else text[start:end]
            ctx = self._language(lang, f"{source}: line {line}", piece)
            as_written = reads_as_written(piece, lang, *ctx.speech)
            maybe_mixed = self._mixing and (lang != "en" or not piece.isascii())
            for c in chunk_paragraph(piece, lang, ctx.limit):
                chunk_id, said, parts_json = "", c.text, ""
                if (
                    maybe_mixed
                    and is_mixed(c.text, lang)
                    and (mixed := self._mixed(c.text, lang, f"{source}: line {line}"))
                ):
                    chunk_id, said, parts_json = mixed
                elif as_written:
                    chunk_id = ctx.make_id(c.text)
                else:
                    said = spoken(c.text, lang, *ctx.speech)
                    chunk_id = ctx.make_id(said)
                spoken_text = None if said == c.text else said  # null: the text is what the voice reads
                rows.append(
                    PlanRow(0, doc_id, source, index, line, chapter, title, chunk_id, c.text, spoken_text, lang,
                            ctx.voice, ctx.params_json, "", 0, "", "", "", parts_json)
                )  # fmt: skip
                index += 1
        self._index = index
        self.writer.extend(rows)

    def _language(self, lang: str, where: str, text: str = "") -> _Language:
        """What every paragraph chunk in `lang` shares (id maker, speech options, limit, voice and parameters),
        made once per language (`where` names the first place it occurs and `text` is its text, for the error of a
        language with no voice)."""
        known = self._by_lang.get(lang)
        if known is not None:
            return known
        key = self.book.for_language(lang, where, han_only=_han_only(text, lang))
        _, params_json, make_id = self.params(key)
        context = self._by_lang[lang] = _Language(
            make_id, self._speech_options(key, False), self.limit(lang), key, params_json
        )
        return context

    def _mixed(self, text: str, lang: str, where: str) -> tuple[str, str, str] | None:
        """A chunk of two scripts spoken by two voices: (chunk id, spoken text, parts as JSON), or None when one
        voice speaks it all (no voice for the other script, or the same voice for both)."""
        runs = script_runs(text, lang if lang in HAN_LANGS else self.han)
        keys: dict[str, str] = {}
        for run_lang in dict.fromkeys(r[2] for r in runs):
            try:
                keys[run_lang] = self.book.for_language(run_lang, where)
            except (ConfigError, ModelError, InputError):
                return None  # no voice for that script: the chunk's voice reads what it can
        if len(set(keys.values())) < 2:
            return None
        parts, said = [], ""
        for start, end, run_lang in runs:
            piece = spoken(text[start:end], run_lang, *self._language(run_lang, where).speech)
            parts.append([len(said), len(said) + len(piece), keys[run_lang]])
            said += piece
        make_id = self._language(lang, where).make_id
        identities = {k: self.book.voices[k].identity for k in sorted(set(keys.values()))}
        parts_json = json.dumps(parts)
        return make_id(json.dumps([said, parts, identities], sort_keys=True)), said, parts_json

    def row(self, doc: Document, paragraph: Paragraph, row: Row) -> None:
        """A table row's chunks (its parts, when it is longer than a chunk), or its failed row."""
        text, problem = paragraph.text, row.problem
        forced = self.settings.text.lang
        lang = row.lang or (forced if forced != "auto" else detect_lang(text, self.han))
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
            self.book.check_table_voice(row.voice, where)
            try:
                key = self.book.key_for(row.voice)
            except (ConfigError, ModelError) as exc:
                # Its first line only: the digests and hints are for the operator's terminal, not the manifest
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InputError(f"{where}, column 'voice': unknown voice {row.voice!r} ({why})") from exc
            voice = self.book.voices[key]
            if not speaks(voice, lang):
                raise InputError(
                    f"{where}, column 'lang': the row is in {lang!r}, but voice {row.voice!r} speaks "
                    f"{', '.join(voice.languages)}"
                )
        else:
            key = self.book.for_language(lang, where, han_only=not row.lang and _han_only(row.text, lang))
            voice = self.book.voices[key]
        if row.speaker and row.speaker not in voice.speakers:
            known = ", ".join(voice.speakers[:20]) if voice.speakers else "it has a single speaker"
            raise InputError(
                f"{where}, column 'speaker': voice {voice.name!r} has no speaker {row.speaker!r} ({known})"
            )
        return key


def _han_only(text: str, lang: str) -> bool:
    """Whether text in zh or ja is so for its Han characters alone (no kana): by the document's or the setting."""
    return lang in HAN_LANGS and bool(text) and KANA.search(text) is None


def _unless_same(said: str, text: str) -> str | None:
    """The spoken text as the plan stores it: null when it is the text itself (most chunks; read back as the text)."""
    return None if said == text else said


def _extra_json(extra: dict[str, Any]) -> str:
    return json.dumps(extra, sort_keys=True, ensure_ascii=False, default=str) if extra else ""


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Planning makes millions of short-lived tuples and no reference cycles; the cyclic garbage collector's
    passes over the rows buffered for a row group cost about a tenth of planning, so it waits until the end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def make_plan(docs: Iterable[Document], settings: Settings, voice: VoiceInfo, corpus: Corpus | None = None) -> Plan:
    """Plan the documents into a plan file, a row group at a time; the Plan reads it back by shard."""
    planner = _Planner(settings, voice)
    inputs: list[dict[str, Any]] = []
    rejected = [{"source": r.source, "reason": r.reason} for r in corpus.rejected] if corpus else []
    try:
        with _collector_paused():
            for doc in docs:
                before = planner.writer.num_chunks
                planner.document(doc)
                described = doc.describe()
                found = planner.warnings(doc)
                if found:
                    described["warnings"] = [*doc.warnings, *found]
                inputs.append(described)
                if planner.writer.num_chunks == before:
                    reason = f"{doc.source}: no speakable text after normalization"
                    rejected.append({"source": doc.source, "reason": reason})
        writer = planner.writer
        if not writer.num_chunks or (rejected and settings.text.strict):
            listing = "\n".join(f"  {r['reason']}" for r in rejected)
            raise InputError(listing.strip() if len(rejected) == 1 else f"{len(rejected)} inputs are bad:\n{listing}")
        writer.flush()  # the last row group, so its digest is in the header
        run_id = settings.run.run_id or "run-" + writer.run_id_digest()[:12]
        header = header_for(writer, run_id, planner.book.voices, planner.rate, settings.model_dump(), inputs, rejected)
        path = writer.close(header)
    except BaseException:
        planner.writer.abort()
        raise
    return open_plan(path, str(path), verify=False)


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    plan: Plan
    documents: int


def prepare(inputs: list[str], settings: Settings) -> Prepared:
    """Inputs to a plan; every bad input, setting or voice file fails here, before any synthesis."""
    from tasks.backends.registry import resolve_voice

    t = settings.text
    options = TextOptions(t.code_blocks, t.urls, t.chapter_heading_level, t.bad_rows)
    corpus = read_documents(inputs, t.encoding, options, t.strict)
    voice = resolve_voice(settings.synthesis)
    return Prepared(settings, make_plan(corpus.documents, settings, voice, corpus), len(corpus.documents))
