"""Paragraphs to chunks: sentence split (English and Chinese), packed up to a per-language length, lossless.

Every chunk is an exact slice `paragraph[start:end]`; what lies between chunks is only whitespace, so no
character of the normalized text is lost or duplicated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sentencex import segment

# Where an over-long sentence may be cut, best first: clause punctuation (ASCII after NFKC, and the
# CJK marks NFKC keeps), then whitespace, then anywhere.
_CLAUSE_END = set(";,:、;,:—") | {"\u2026"}
_MIN_PIECE_SHARE = 0.3  # a cut that leaves less than this share of the limit is only a last resort


@dataclass(frozen=True)
class TextChunk:
    """A chunk of one paragraph: its text and its span in the paragraph."""

    text: str
    lang: str
    start: int
    end: int


_IDEOGRAPH = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002ebef\uf900-\ufaff\u3005\u3007]")
_LETTER = re.compile(r"[^\W\d_]")


def detect_lang(text: str) -> str:
    """zh when ideographs make up over a third of the letters, else en (whole-string searches, no loop)."""
    if text.isascii() or not _IDEOGRAPH.search(text):
        return "en"
    letters = len(_LETTER.findall(text))
    return "zh" if letters and len(_IDEOGRAPH.findall(text)) / letters > 1 / 3 else "en"


def language_runs(text: str) -> list[tuple[int, int, str]]:
    """Spans of consecutive sentences in one language: (start, end, lang), covering the whole text."""
    runs: list[tuple[int, int, str]] = []
    for start, end in _sentence_spans(text, detect_lang(text)):
        lang = detect_lang(text[start:end]) if _LETTER.search(text, start, end) else None
        if runs and (lang is None or runs[-1][2] == lang):
            runs[-1] = (runs[-1][0], end, runs[-1][2])
        else:
            runs.append((start, end, lang or detect_lang(text)))
    return runs


def _sentence_spans(text: str, lang: str) -> Iterator[tuple[int, int]]:
    pos = 0
    for sentence in segment(lang, text):
        start = text.find(sentence, pos)
        if start < 0:  # the segmenter changed the text: fall back to one span for the rest
            break
        pos = start + len(sentence)
        yield start, pos
    if pos < len(text):
        yield pos, len(text)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    kept = piece.strip()
    if not kept:
        return start, start
    lead = len(piece) - len(piece.lstrip())
    return start + lead, start + lead + len(kept)


def _cut_point(text: str, start: int, end: int, limit: int) -> int:
    """Where to cut text[start:end] (longer than limit) so the first piece is at most `limit` long."""
    window_end = start + limit
    floor = start + max(1, int(limit * _MIN_PIECE_SHARE))
    for i in range(window_end, floor - 1, -1):  # after a clause mark, the piece includes the mark
        if text[i - 1] in _CLAUSE_END:
            return i
    for i in range(window_end, floor - 1, -1):
        if text[i].isspace() or text[i - 1].isspace():
            return i
    for i in range(window_end, start, -1):  # any whitespace at all before a hard cut
        if text[i].isspace():
            return i
    return window_end


def _pieces(text: str, start: int, end: int, limit: int) -> Iterator[tuple[int, int]]:
    """Split one sentence span into pieces of at most `limit` characters (after stripping)."""
    start, end = _strip(text, start, end)
    while end - start > limit:
        cut = _cut_point(text, start, end, limit)
        a, b = _strip(text, start, cut)
        if b > a:
            yield a, b
        start, end = _strip(text, cut, end)
    if end > start:
        yield start, end


def chunk_paragraph(text: str, lang: str, limit: int) -> list[TextChunk]:
    """Pack a paragraph's sentences greedily into chunks of at most `limit` characters."""
    start, end = _strip(text, 0, len(text))
    if end - start <= limit:  # every sentence fits in one chunk: no need to find them
        return [TextChunk(text[start:end], lang, start, end)] if end > start else []
    chunks: list[TextChunk] = []
    cur: tuple[int, int] | None = None
    for s_start, s_end in _sentence_spans(text, lang):
        sentence = text[s_start:s_end]
        core = sentence.strip()
        if len(core) <= limit:  # the common case, without _pieces
            a = s_start + len(sentence) - len(sentence.lstrip())
            pieces: Iterable[tuple[int, int]] = ((a, a + len(core)),) if core else ()
        else:
            pieces = _pieces(text, s_start, s_end, limit)
        for a, b in pieces:
            if cur is not None and b - cur[0] <= limit:
                cur = (cur[0], b)
                continue
            if cur is not None:
                chunks.append(TextChunk(text[cur[0] : cur[1]], lang, *cur))
            cur = (a, b)
    if cur is not None:
        chunks.append(TextChunk(text[cur[0] : cur[1]], lang, *cur))
    return chunks


_SPEAKABLE = re.compile(r"\w", re.UNICODE)


def is_speakable(text: str) -> bool:
    """True if the text has a letter or digit; '* * *' or '---' is not read aloud."""
    return bool(_SPEAKABLE.search(text))
