"""Chinese text to the phoneme ids of a DataBaker-style voice: clauses, pinyin (pypinyin), initials and finals.

What a Chinese book holds is handled before the pinyin: traditional characters are converted to simplified
(OpenCC, so pypinyin's phrase dictionary, which reads polyphones from words, sees the words it knows); digits
left in the text (normalization off, or forms cn2an does not know) are read by the Chinese number rules of
tasks.text.speech_text; full-width and ASCII punctuation both end clauses. Latin letters are not this voice's: a mixed
sentence is split by script before it gets here (tasks.text.mixed_script), and what has no pinyin is left out, never
an error.

The symbols follow the voice's `symbols.json` (TensorFlowTTS's baker_mapper.json): `sil`, then per syllable its
initial (`^` for none) and final with its tone (1-5, 5 neutral), `#0` between syllables, `sil`, `eos`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tasks.errors import ModelError

CLAUSE_END = re.compile(r"[,.!?;:、。，！？；：…—\n]+")  # NFKC made most full-width marks ASCII; 、and 。 stay
MAX_SYLLABLES = 60  # per clause: the acoustic model's position table ends at 2,048 frames (about 25 s)
_DIGIT = re.compile(r"\d")
# Interjections pypinyin spells without a vowel, as the voice's nearest syllables
_SPECIAL = {"n": "en", "ng": "en", "m": "mu", "hm": "hen", "hng": "heng", "ê": "ei"}


@dataclass
class Clause:
    """One clause's phoneme ids (the model reads a clause at a time) and how many syllables it has."""

    ids: list[int]
    syllables: int
    start: int = 0  # where the clause begins in the text given (0 where that is not known)


@dataclass
class BakerFrontend:
    """Text to clauses of ids, with the voice's symbol table and pinyin-to-phoneme map."""

    symbols_path: Path
    _cache: dict[str, list[Clause]] = field(default_factory=dict)

    @cached_property
    def _tables(self) -> tuple[dict[str, int], dict[str, list[str]]]:
        try:
            data = json.loads(self.symbols_path.read_text(encoding="utf-8"))
            return dict(data["symbol_to_id"]), {k: list(v) for k, v in data["pinyin_dict"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{self.symbols_path}: not a readable symbol table ({exc!r})") from exc

    @cached_property
    def _to_simplified(self) -> Any:
        import opencc

        return opencc.OpenCC("t2s")

    def clauses(self, text: str) -> list[Clause]:
        """The clauses of a chunk as phoneme ids; clauses with nothing speakable are left out."""
        cached = self._cache.get(text)
        if cached is None:
            parts = CLAUSE_END.split(self.prepare(text))
            # Where each part begins in the text as given: after the same clause marks, unless preparing the text
            # made or removed one ("3.5" read 三点五): then not known.
            starts = [0, *(m.end() for m in CLAUSE_END.finditer(text))]
            if len(starts) != len(parts):
                starts = [0] * len(parts)
            cached = [
                dataclasses.replace(c, start=start)
                for part, start in zip(parts, starts, strict=True)
                for c in self._clause(part)
            ]
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[text] = cached
        return cached

    def prepare(self, text: str) -> str:
        text = self._to_simplified.convert(text)
        if _DIGIT.search(text):
            from tasks.text.speech_text import chinese

            text = chinese(text)
        return text

    def _clause(self, text: str) -> list[Clause]:
        from pypinyin import Style, pinyin

        if not text.strip():
            return []
        syllables = [s[0] for s in pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")]
        phones = [p for s in syllables for p in [*self._phones(s), "#0"]][:-1]
        if not phones:
            return []
        out = []
        for start in range(0, len(phones), 3 * MAX_SYLLABLES):  # a syllable is 3 symbols with its #0
            piece = phones[start : start + 3 * MAX_SYLLABLES]
            if piece[-1] == "#0":
                piece = piece[:-1]
            ids = self._ids(["sil", *piece, "sil", "eos"])
            out.append(Clause(ids, sum(1 for p in piece if p != "#0") // 2))
        return out

    def _phones(self, syllable: str) -> list[str]:
        """One pinyin syllable ("zhong1") as [initial, final+tone]; [] for one the voice has no phones for."""
        table = self._tables[1]
        tone = syllable[-1] if syllable[-1:].isdigit() else "5"
        base = syllable.rstrip("012345")
        base = _SPECIAL.get(base, base)
        if base in table:
            initial, final = table[base]
            return [initial, final + tone]
        if base.endswith("r") and base[:-1] in table:  # erhua spelled in one syllable ("huar1")
            initial, final = table[base[:-1]]
            return [initial, final + tone, "er5"]  # as the voice's training labels spell it
        return []

    def _ids(self, symbols: list[str]) -> list[int]:
        ids = self._tables[0]
        return [ids[s] for s in symbols if s in ids]

    def cost(self, text: str) -> int:
        """Phoneme ids in the text: the engine's batch budget unit."""
        return sum(len(c.ids) for c in self.clauses(text))
