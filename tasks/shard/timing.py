"""Sentence timings of a chunk: where each sentence of its text is heard in its audio (the manifest's
`sentences` column), and the one fallback for audio without timings (a span over the whole chunk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.shard.rows import ManifestRow


@dataclass(frozen=True)
class Span:
    """A piece of a chunk's text (`text[char_start:char_end]`) and where it is heard in the chunk's stored audio."""

    start_s: float
    end_s: float
    char_start: int
    char_end: int

    def record(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "char_start": self.char_start, "char_end": self.char_end}


def spans_of(row: ManifestRow) -> list[Span]:
    """The row's sentence spans, in order; one span over its whole text and audio where it has none (audio made
    before timings were kept, or by a voice that gives none)."""
    if row.sentences:
        return [
            Span(float(s["start_s"]), float(s["end_s"]), int(s["char_start"]), int(s["char_end"]))
            for s in row.sentences
        ]
    return [Span(0.0, float(row.duration_s or 0.0), 0, len(row.text))]
