"""Sentence timings of a chunk: where each sentence of its text is heard in its audio (the manifest's
`sentences` column), and the one fallback for audio without timings (a span over the whole chunk)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Protocol

from tasks.backends.synthesizer import Marks, Timing

CLOSING = set("”’」』）)]》〉")  # marks that end the piece before when a piece begins with them


class TimedRow(Protocol):
    """What `spans_of` reads of a manifest row (tasks.shard.rows.ManifestRow)."""

    @property
    def sentences(self) -> list[dict[str, Any]] | None: ...
    @property
    def duration_s(self) -> float | None: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class Span:
    """A piece of a chunk's text (`text[char_start:char_end]`) and where it is heard in the chunk's stored audio."""

    start_s: float
    end_s: float
    char_start: int
    char_end: int

    def record(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "char_start": self.char_start, "char_end": self.char_end}


def spans_of(row: TimedRow) -> list[Span]:
    """The row's sentence spans, in order; one span over its whole text and audio where it has none (audio made
    before timings were kept, or by a voice that gives none)."""
    if row.sentences:
        return [
            Span(float(s["start_s"]), float(s["end_s"]), int(s["char_start"]), int(s["char_end"]))
            for s in row.sentences
        ]
    return [Span(0.0, float(row.duration_s or 0.0), 0, len(row.text))]


TIMING_TAG = "voxbatch-marks "  # starts the comment tag of a chunk's audio that holds its timing


def timing_tag(timing: Timing) -> str:
    """The timing as the comment tag of the chunk's stored audio, so audio found stored later (a rerun, another
    shard with the same chunk) still has it: pieces, then "|" and words where known ("0:0,29952:24|0:0,5120:6")."""

    def pairs(marks: Marks) -> str:
        return ",".join(f"{s}:{c}" for s, c in marks)

    return TIMING_TAG + pairs(timing.pieces) + (f"|{pairs(timing.words)}" if timing.words else "")


def timing_from_tag(comment: str) -> Timing | None:
    """The timing a comment tag holds, or None (audio stored without one, or another program's comment)."""
    if not comment.startswith(TIMING_TAG):
        return None
    try:
        pieces, _, words = comment[len(TIMING_TAG) :].partition("|")
        parsed = [
            tuple((int(s), int(c)) for s, c in (pair.split(":") for pair in part.split(","))) if part else ()
            for part in (pieces, words)
        ]
    except ValueError:
        return None
    return Timing(parsed[0], parsed[1]) if parsed[0] else None


def spans_from_marks(marks: Marks, samples: int, rate: int, said: str, text: str) -> list[Span]:
    """The spans of a chunk's text from the marks of its stored audio (`samples` long at `rate`): each mark begins a
    piece of the spoken text that runs to the next one; each piece is mapped back onto the written text (they
    differ where the text was made speakable: "Dr." read "Doctor"), whitespace left out. A piece with no written
    text of its own joins the one before it."""
    earliest = {c: s for s, c in sorted(marks, reverse=True)}  # each character's first sample
    ordered: list[tuple[int, int]] = []
    for char, sample in sorted(earliest.items()):  # by character, samples never going back
        ordered.append((char, max(sample, ordered[-1][1]) if ordered else sample))
    to_text = _position_map(said, text)
    spans: list[Span] = []
    for k, (char, sample) in enumerate(ordered):
        said_end = ordered[k + 1][0] if k + 1 < len(ordered) else len(said)
        end_sample = ordered[k + 1][1] if k + 1 < len(ordered) else samples
        a, b = _strip(text, to_text(char), to_text(said_end))
        while spans and a < b and _closes(text, a):  # a quote or bracket that closes the piece before
            last = spans[-1]
            spans[-1] = Span(last.start_s, last.end_s, last.char_start, a + 1)
            a = _strip(text, a + 1, b)[0]
        sample, end_sample = min(sample, samples), min(end_sample, samples)
        start_s, end_s = sample / rate, max(end_sample, sample) / rate
        if b <= a or (spans and a < spans[-1].char_end):
            if spans:  # nothing written of its own: the piece before it runs on
                last = spans[-1]
                spans[-1] = Span(last.start_s, max(last.end_s, end_s), last.char_start, max(last.char_end, b))
            continue
        spans.append(Span(start_s, end_s, a, b))
    if not spans:
        return [Span(0.0, samples / rate, 0, len(text))]
    if spans[0].char_start > 0 and text[: spans[0].char_start].strip():  # written text before the first mark
        first = spans[0]
        spans[0] = Span(0.0, first.end_s, 0, first.char_end)
    return spans


def _closes(text: str, at: int) -> bool:
    """A closing mark at `at`; a straight quote closes when whitespace or the end follows it."""
    if text[at] in CLOSING:
        return True
    return text[at] in "\"'" and (at + 1 == len(text) or text[at + 1].isspace())


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _position_map(said: str, text: str) -> Callable[[int], int]:
    """Where a position of the spoken text falls in the written text: exact where they agree, and at the start
    of a stretch that was rewritten (a sentence starts after whitespace, which both keep)."""
    if said == text:
        return lambda p: p
    blocks = SequenceMatcher(None, said, text, autojunk=False).get_opcodes()

    def to_text(p: int) -> int:
        if p >= len(said):
            return len(text)
        for tag, i1, i2, j1, _ in blocks:
            if i1 <= p < i2:
                return j1 + (p - i1) if tag == "equal" else j1
        return len(text)

    return to_text
