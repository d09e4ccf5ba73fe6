"""Subtitle cues of a sentence: pieces short and slow enough to read, timed within the sentence's span.

Subtitle guidelines (e.g. the BBC's and Netflix's) ask for at most two lines of 42 characters and at most about 20
characters per second. A sentence longer than two lines is split at punctuation (sentence ends first, then clause
marks: , ; : and the Chinese 。！？，；、), else at a space, else anywhere (a 100 KB run of letters); the pieces are
as even as the breaks allow. Its time is divided among its pieces in proportion to their characters. A piece over
42 characters is broken into two lines at the space nearest its middle (no space, as in Chinese: at the middle).

Characters are counted as code points, spaces included, line breaks not (Chinese text has no spaces to count).
A cue that reads faster than 20 characters per second takes time from the silence after it, then from the
silence before it; where the voice itself is faster than that, it is lengthened and the cues after it are
delayed as little as that takes (`fit_reading_speed`), so no cue is ever over the limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.shard.rows import ManifestRow
from tasks.shard.timing import Span, spans_of
from tasks.text.chunking import sentence_spans

LINE_CHARS = 42
MAX_LINES = 2
MAX_CPS = 20.0
SENTENCE_ENDS = frozenset(".!?…。！？")
CLAUSE_MARKS = frozenset(",;:—–、，；：")
CLOSERS = frozenset("\"'”’»)]」』）")  # may follow a break mark before the break: 'down?" her' breaks after the quote
WIDE_MARKS = frozenset("。！？，；、：…")  # a break after them needs no space (Chinese, Japanese)


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str  # its lines joined by "\n"


def length(text: str) -> int:
    """Characters that count for reading: code points, line breaks left out."""
    return len(text) - text.count("\n")


def _break_rank(text: str, i: int) -> int:
    """How good a break is before text[i] (higher is better; 0: none): after a sentence end, a clause mark, at
    a space. Closing quotes and brackets stay with the mark before them."""
    if text[i] in CLOSERS:
        return 0
    j = i - 1
    while j > 0 and text[j] in CLOSERS:
        j -= 1
    mark = text[j]
    if text[i].isspace() or mark in WIDE_MARKS:
        if mark in SENTENCE_ENDS:
            return 3
        if mark in CLAUSE_MARKS:
            return 2
    return 1 if text[i].isspace() or text[i - 1].isspace() else 0


def split_text(text: str, mark: str = "") -> list[str]:
    """The text as pieces that fit two lines with `mark` before each, broken at punctuation, else spaces, else
    anywhere; whitespace at the pieces' ends left out. Linear in the text's length (a window around each break)."""
    limit = LINE_CHARS * MAX_LINES - len(mark)
    pieces: list[str] = []
    rest = " ".join(text.split()) if any(c in text for c in "\n\r\t") else text.strip()
    while length(rest) > limit or not _wraps(mark + rest):
        target = math.ceil(len(rest) / max(2, math.ceil(len(rest) / limit)))
        lo = max(1, min(limit, len(rest)) // 3)  # punctuation anywhere past a third; spaces nearest the target
        ranked = sorted(
            (
                (rank, -abs(i - target), i)
                for i in range(lo, min(limit, len(rest) - 1) + 1)
                if (rank := _break_rank(rest, i))
            ),
            reverse=True,
        )
        # the best break whose piece wraps at a space (else the limit itself: a word longer than a line)
        best = next((i for *_, i in ranked if _wraps(mark + rest[:i].strip())), None)
        if best is None:
            if length(rest) <= limit:
                break  # no break helps: two lines broken mid-word
            best = limit
        head, rest = rest[:best].strip(), rest[best:].strip()
        if head:
            pieces.append(head)
    if rest:
        pieces.append(rest)
    return pieces


def _line_break(piece: str, width: int) -> int | None:
    """The space nearest the middle that leaves both lines within the width, or None."""
    spaces = [i for i, c in enumerate(piece) if c == " " and i <= width and len(piece) - i - 1 <= width]
    return min(spaces, key=lambda s: abs(s - len(piece) / 2)) if spaces else None


def _wraps(piece: str) -> bool:
    """Whether the piece fits two lines broken at a space (or has no space to break at)."""
    return len(piece) <= LINE_CHARS or " " not in piece or _line_break(piece, LINE_CHARS) is not None


def wrap(piece: str, width: int = LINE_CHARS) -> str:
    """A piece of at most two widths as one line, or two broken at the space nearest the middle (at the middle
    where no space leaves both lines within the width)."""
    if len(piece) <= width:
        return piece
    i = _line_break(piece, width)
    if i is not None:
        return f"{piece[:i].rstrip()}\n{piece[i + 1 :].lstrip()}"
    i = math.ceil(len(piece) / 2)
    return f"{piece[:i]}\n{piece[i:]}"


def sentence_cues(text: str, start: float, end: float, mark: str = "") -> list[Cue]:
    """A sentence heard from `start` to `end` as cues: its pieces, each given time in proportion to its
    characters, each wrapped to two lines; `mark` (e.g. "[flagged] ") starts each of them."""
    pieces = split_text(text, mark)
    total = sum(map(len, pieces)) or 1
    cues, at, done = [], start, 0
    for piece in pieces:
        done += len(piece)
        stop = start + (end - start) * done / total
        cues.append(Cue(at, stop, wrap(mark + piece)))
        at = stop
    return cues


def row_sentences(row: ManifestRow) -> list[Span]:
    """The row's sentences, timed: its spans (`spans_of`), each holding more than one sentence (a chunk without
    timings) cut into its sentences, the span's time divided among them in proportion to their characters."""
    out: list[Span] = []
    for span in spans_of(row):
        text = row.text[span.char_start : span.char_end]
        parts = sentence_spans(text, row.lang or "en")
        total = sum(b - a for a, b in parts) or 1
        at, done = span.start_s, 0
        for a, b in parts:
            done += b - a
            stop = span.start_s + (span.end_s - span.start_s) * done / total
            out.append(Span(at, stop, span.char_start + a, span.char_start + b))
            at = stop
    return out


def _need(cue: Cue) -> float:
    """Its shortest time: MAX_CPS, plus 2 ms for the millisecond rounding of SRT and WebVTT times."""
    return length(cue.text) / MAX_CPS + 0.002


def fit_reading_speed(cues: list[Cue], end_of_audio: float) -> list[Cue]:
    """The cues (in time order) with none read faster than MAX_CPS: each too fast takes time from the silence
    after it (up to the next cue or the audio's end), then before it (back to the previous cue); what is still
    missing lengthens it and delays the cues after it just enough (only where the voice is that fast)."""
    out = list(cues)
    for i, cue in enumerate(out):  # into the silence after
        if cue.end - cue.start < _need(cue):
            room = out[i + 1].start if i + 1 < len(out) else max(end_of_audio, cue.end)
            out[i] = Cue(cue.start, max(cue.end, min(room, cue.start + _need(cue))), cue.text)
    for i, cue in enumerate(out):  # into the silence before
        if cue.end - cue.start < _need(cue):
            room = out[i - 1].end if i else 0.0
            out[i] = Cue(min(cue.start, max(room, cue.end - _need(cue))), cue.end, cue.text)
    last_end = 0.0
    for i, cue in enumerate(out):  # what is left: later
        start = max(cue.start, last_end)
        end = max(cue.end, start + _need(cue))
        out[i] = Cue(start, end, cue.text)
        last_end = end
    return out


def too_fast_or_long(cue: Cue) -> str | None:
    """Why the cue breaks the guidelines, or None: over two lines, a line over LINE_CHARS, over MAX_CPS."""
    lines = cue.text.split("\n")
    if len(lines) > MAX_LINES or max(map(len, lines)) > LINE_CHARS:
        return f"{len(lines)} line(s), longest {max(map(len, lines))} characters"
    seconds = cue.end - cue.start
    if length(cue.text) > MAX_CPS * seconds + 1e-6:
        return f"{length(cue.text)} characters in {seconds:.3f} s"
    return None
