"""A shard's synthesis work as engine items: one per chunk, or one per part of a chunk of two scripts.

A mixed chunk ("我们用Python写了…", see tasks.text.mixed_script) is planned with its parts and a voice for each. Its
parts go to the engines of their voices like any chunk (batched with the others of that voice), and once all
of them are made they are joined into the chunk's audio, at the rate of the chunk's own voice, which then goes
through post-processing as any chunk's does.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.audio.dsp import join_parts_placed
from tasks.backends.synthesizer import Synthesizer, TimedAudio, Timing, timing_of
from tasks.config import Settings
from tasks.plan.file import Plan, PlannedChunk
from tasks.shard.engine import ItemResult


class ShardWork:
    """Item ids: a chunk's own index for a whole chunk; numbers past the shard's chunks for parts."""

    def __init__(self, chunks: list[PlannedChunk], todo: list[int]) -> None:
        self._chunks = chunks
        self._items: dict[int, tuple[int, str, str]] = {}  # item id -> (chunk index, voice key, text)
        self._starts: dict[int, int] = {}  # part item id -> where its text starts in its chunk's spoken text
        self._parts: dict[int, list[int]] = {}  # mixed chunk index -> its part item ids, in order
        self._made: dict[int, tuple[ItemResult, Synthesizer]] = {}  # part item id -> its result
        next_id = len(chunks)
        for i in todo:
            c = chunks[i]
            said = c.spoken_text or c.text
            if not c.parts_json:
                self._items[i] = (i, c.voice, said)
                continue
            ids = []
            for start, end, key in json.loads(c.parts_json):
                self._items[next_id] = (i, key, said[start:end])
                self._starts[next_id] = start
                ids.append(next_id)
                next_id += 1
            self._parts[i] = ids

    @property
    def items(self) -> list[int]:
        return list(self._items)

    def chunk_of(self, n: int) -> int:
        return self._items[n][0]

    def voice(self, n: int) -> str:
        return self._items[n][1]

    def text(self, n: int) -> str:
        return self._items[n][2]

    def spoken_by(self, i: int) -> tuple[bool, str]:
        """(mixed, the voice keys that spoke chunk i in order of first use; "" for a chunk of one voice)."""
        if i not in self._parts:
            return False, ""
        return True, ",".join(dict.fromkeys(self.voice(n) for n in self._parts[i]))

    def deliver(
        self, result: ItemResult, synth: Synthesizer, plan: Plan, settings: Settings
    ) -> tuple[ItemResult, Synthesizer] | None:
        """The chunk's result for an item's: as it is for a whole chunk; for a part, None until the chunk's last
        part arrives, then the parts joined."""
        i = self.chunk_of(result.index)
        if i not in self._parts:
            return result, synth
        self._made[result.index] = (result, synth)
        ids = self._parts[i]
        if any(n not in self._made for n in ids):
            return None
        made = [self._made.pop(n) for n in ids]
        chunk_voice = self._chunks[i].voice
        own = next((s for n, (_, s) in zip(ids, made, strict=True) if self.voice(n) == chunk_voice), made[-1][1])
        parts = [(r, self.voice(n), self._starts[n]) for n, (r, _) in zip(ids, made, strict=True)]
        joined = _joined(i, parts, plan.voices[chunk_voice].sample_rate, plan, settings)
        return joined, own


def _joined(i: int, parts: list[tuple[ItemResult, str, int]], rate: int, plan: Plan, settings: Settings) -> ItemResult:
    """One chunk's result from its parts' results (each with its voice and where its text starts): its audio at
    `rate` (its own voice's), marked where each part's pieces begin, or the first failure."""
    failed = [(r, key) for r, key, _ in parts if r.audio is None]
    stats: dict[str, Any] = {
        "batch_size": max(r.batch_size for r, _, _ in parts),
        "attempts": max(r.attempts for r, _, _ in parts),
        "oom_retries": sum(r.oom_retries for r, _, _ in parts),
        "seconds": sum(r.seconds for r, _, _ in parts),
    }
    if failed:
        r, key = failed[0]
        return ItemResult(i, None, f"mixed chunk: the part spoken by {key!r} failed: {r.error}", **stats)
    made = [(r.audio, plan.voices[key].sample_rate, char) for r, key, char in parts if r.audio is not None]
    audio, placed = join_parts_placed([(a, part_rate) for a, part_rate, _ in made], rate, settings.audio.resampler)
    timing = Timing.joined(
        [
            (timing_of(a).moved(cut, part_rate, rate, audio.size - at), at, char)
            for (a, part_rate, char), (at, cut) in zip(made, placed, strict=True)
        ]
    )
    return ItemResult(i, TimedAudio.of(audio, timing), None, **stats)
