"""Paragraphs to chunks: sentence split (English, Chinese, Japanese), packed up to a per-language length, lossless.

Every chunk is an exact slice `paragraph[start:end]`; what lies between chunks is only whitespace, so no
character of the normalized text is lost or duplicated.

A sentence's language is told by its script: kana (hiragana, katakana, the prolonged sound mark) make it
Japanese, Latin letters English. Han characters alone do not say which of Chinese and Japanese a sentence is:
such a sentence is in the language the caller passes as `han` (the document's declared language, else the
setting `text.han_lang`, "zh" unless set), never a guess from the characters.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from itertools import accumulate
from operator import add, sub
from typing import NamedTuple

from sentencex import segment

# Where an over-long sentence may be cut, best first: clause punctuation (ASCII after NFKC, and the
# CJK marks NFKC keeps), then whitespace, then anywhere.
_CLAUSE_END = set(";,:、;,:—") | {"\u2026"}
_MIN_PIECE_SHARE = 0.3  # a cut that leaves less than this share of the limit is only a last resort
# sentencex takes time quadratic in a text's length on some shapes ("![a" repeated: 139 s for 1 MB), so it is given
# windows of at most this many characters, cut after a sentence's end where there is one (then the sentences are
# the same), else at whitespace; chunks are at most a few hundred characters, so a window always holds several.
SEGMENT_WINDOW = 1024
_SENTENCE_END = re.compile(r"[.!?。！？…]+[\"'”’)\]」』]*\s+")


class TextChunk(NamedTuple):
    """A chunk of one paragraph: its text and its span in the paragraph (a tuple: planning makes millions)."""

    text: str
    lang: str
    start: int
    end: int


IDEOGRAPH = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002ebef\uf900-\ufaff\u3005\u3007]")
# Kana: hiragana (with its iteration marks), katakana with the prolonged sound mark ー and its iteration marks (not
# the middle dot ・, which Chinese text uses too), the katakana extensions, and halfwidth katakana (NFKC makes them
# full width; raw text may still hold them).
KANA = re.compile("[\u3041-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_LETTER = re.compile(r"[^\W\d_]")
HAN_LANGS = ("zh", "ja")  # the languages a sentence of Han characters without kana may be in


def detect_lang(text: str, han: str = "zh") -> str:
    """ja when the text has kana and they and the ideographs make up over a third of its letters; else `han` (zh
    unless the caller knows better) when ideographs do; else en (whole-string searches, no loop)."""
    if text.isascii():
        return "en"
    kana = KANA.search(text) is not None
    if not kana and not IDEOGRAPH.search(text):
        return "en"
    letters = len(_LETTER.findall(text))
    if not letters:
        return "en"
    wide = len(IDEOGRAPH.findall(text)) + (len(KANA.findall(text)) if kana else 0)
    if wide / letters <= 1 / 3:
        return "en"
    return "ja" if kana else han


def language_runs(text: str, han: str = "zh") -> list[tuple[int, int, str]]:
    """Spans of consecutive sentences in one language: (start, end, lang), covering the whole text; a sentence of
    Han characters without kana is in `han` (see the module)."""
    runs: list[tuple[int, int, str]] = []
    whole = detect_lang(text, han)
    for start, end in _sentence_spans(text, sentences_of(whole, text)):
        lang = detect_lang(text[start:end], han) if _LETTER.search(text, start, end) else None
        if runs and (lang is None or runs[-1][2] == lang):
            runs[-1] = (runs[-1][0], end, runs[-1][2])
        else:
            runs.append((start, end, lang or whole))
    return runs


def sentences_of(lang: str, text: str) -> list[str]:
    """The text's sentences (they tile it), by sentencex in windows of at most SEGMENT_WINDOW characters. A window
    cut anywhere but after a sentence's end joins the sentences on either side of it again, as if never cut."""
    if len(text) <= SEGMENT_WINDOW:
        return segment(lang, text)  # type: ignore[no-any-return]
    out: list[str] = []
    start, rejoin = 0, False
    while start < len(text):
        end = min(start + SEGMENT_WINDOW, len(text))
        cut, at_sentence_end = end, end == len(text)
        if not at_sentence_end:
            for match in _SENTENCE_END.finditer(text, start + SEGMENT_WINDOW // 2, end):
                cut, at_sentence_end = match.end(), True
        window: list[str] = segment(lang, text[start:cut])
        if rejoin and out and window:
            out[-1] += window.pop(0)
        out.extend(window)
        start, rejoin = cut, not at_sentence_end
    return out


def sentence_spans(text: str, lang: str) -> list[tuple[int, int]]:
    """The text's sentences as (start, end) offsets, whitespace around each left out; [] for a blank text."""
    spans = (_strip(text, a, b) for a, b in _sentence_spans(text, sentences_of(lang, text)))
    return [(a, b) for a, b in spans if b > a]


def _sentence_spans(text: str, sentences: list[str]) -> list[tuple[int, int]]:
    spans = []
    pos = 0
    find = text.find
    for sentence in sentences:
        start = find(sentence, pos)
        if start < 0:  # the segmenter changed the text: fall back to one span for the rest
            break
        pos = start + len(sentence)
        spans.append((start, pos))
    if pos < len(text):
        spans.append((pos, len(text)))
    return spans


def _pack_fast(text: str, sentences: list[str], lang: str, limit: int) -> list[TextChunk] | None:
    """What the packing loop of `chunk_paragraph` makes, by bisection over sentence ends (no loop per sentence).

    None when it does not apply: the sentences do not tile the text exactly, one is blank or over the limit."""
    if "".join(sentences) != text:
        return None
    cores = list(map(len, map(str.strip, sentences)))
    if not cores or min(cores) == 0 or max(cores) > limit:
        return None
    ends_raw = list(accumulate(map(len, sentences)))
    # each sentence's span without its surrounding whitespace
    starts = list(map(sub, ends_raw, map(len, map(str.lstrip, sentences))))
    ends = list(map(add, starts, cores))
    chunks: list[TextChunk] = []
    i, n = 0, len(starts)
    while i < n:
        a = starts[i]
        j = bisect_right(ends, a + limit, i) - 1  # the last sentence that still fits (at least sentence i)
        chunks.append(TextChunk(text[a : ends[j]], lang, a, ends[j]))
        i = j + 1
    return chunks


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
    sentences = sentences_of(lang, text)
    fast = _pack_fast(text, sentences, lang, limit)
    return fast if fast is not None else _pack_loop(text, sentences, lang, limit)


def _pack_loop(text: str, sentences: list[str], lang: str, limit: int) -> list[TextChunk]:
    """Greedy packing, a sentence (or a piece of an over-long one) at a time."""
    chunks: list[TextChunk] = []
    cur_a = cur_b = -1  # the chunk being packed (none yet)
    for s_start, s_end in _sentence_spans(text, sentences):
        sentence = text[s_start:s_end]
        core = sentence.strip()
        if not core:
            continue
        if len(core) <= limit:  # the common case, without _pieces (inlined: this loop is most of planning)
            a = s_start + len(sentence) - len(sentence.lstrip())
            pieces: Iterable[tuple[int, int]] = ((a, a + len(core)),)
        else:
            pieces = _pieces(text, s_start, s_end, limit)
        for a, b in pieces:
            if cur_a >= 0:
                if b - cur_a <= limit:
                    cur_b = b
                    continue
                chunks.append(TextChunk(text[cur_a:cur_b], lang, cur_a, cur_b))
            cur_a, cur_b = a, b
    if cur_a >= 0:
        chunks.append(TextChunk(text[cur_a:cur_b], lang, cur_a, cur_b))
    return chunks


_SPEAKABLE = re.compile(r"\w", re.UNICODE)


def is_speakable(text: str) -> bool:
    """True if the text has a letter or digit; '* * *' or '---' is not read aloud."""
    return bool(_SPEAKABLE.search(text))
