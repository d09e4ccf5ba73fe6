"""Where Piper's audio says each sentence and word of a text: the text phonemized a sentence at a time, and each
written word found among the sentence's phonemes, so the model's phoneme durations time it.

espeak reads function words together ("on the" is one phoneme word, `ɔnðə`), so its word boundaries are not the
text's. Each written word is phonemized alone and its phonemes aligned with the sentence's: a word starts at the
first of its phonemes found there; a word said differently alone ("a", alone the letter's name) at the first
phoneme after the word before it. A word with no phoneme of its own there (a symbol espeak reads as nothing)
starts no span: it joins the word before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

from tasks.backends.synthesizer import ONE_PIECE, Timing

WORD = re.compile(r"\S*\w\S*")  # a written word, with any punctuation stuck to it
# Phonemes that make no sound of a word's own: espeak's punctuation, word breaks, and Piper's pad, start and end.
SILENT = frozenset({",", ".", "!", "?", ";", ":", "—", "…", '"', "(", ")", "-", "'", " ", "_", "^", "$"})
STRESS = frozenset({"ˈ", "ˌ"})  # marks, not sounds: left out of the alignment


@dataclass(frozen=True)
class Piece:
    """A sentence of a text as Piper reads it."""

    char: int  # where it begins in the text
    sentences: list[list[int]]  # phoneme ids of each sentence espeak makes of it (usually one)
    words: list[tuple[int, int, int]]  # (character in the text, sentence, phoneme id index) where each word begins


def phoneme_positions(phonemes: list[str], id_map: dict[str, list[int]]) -> list[int]:
    """The index in Piper's phoneme ids (`phonemes_to_ids`: start, pad, then each phoneme's ids and a pad, end)
    of each phoneme; -1 for one the voice does not know (left out of the ids)."""
    pad = len(id_map.get("_", []))
    at = len(id_map.get("^", [])) + pad
    out = []
    for phoneme in phonemes:
        if phoneme in id_map:
            out.append(at)
            at += len(id_map[phoneme]) + pad
        else:
            out.append(-1)
    return out


def piece(
    text: str,
    start: int,
    end: int,
    phonemize: Callable[[str], list[list[str]]],
    to_ids: Callable[[list[str]], list[int]],
    id_map: dict[str, list[int]],
    phonemize_word: Callable[[str], list[list[str]]] | None = None,
) -> Piece | None:
    """The sentence `text[start:end]` phonemized (its ids by the voice's `to_ids`), and where each of its written
    words begins; None: nothing to say. No words where the ids are not made as `_ids` makes them (a voice whose
    phonemes are not espeak's)."""
    spoken = [p for p in phonemize(text[start:end]) if p]
    if not spoken:
        return None
    ids = [to_ids(p) for p in spoken]
    if any(made != _ids(p, id_map) for made, p in zip(ids, spoken, strict=True)):
        return Piece(start, ids, [])
    # Every sounding phoneme of the sentence: (phoneme, sentence, id index)
    stream = [
        (ph, n, at)
        for n, phonemes in enumerate(spoken)
        for ph, at in zip(phonemes, phoneme_positions(phonemes, id_map), strict=True)
        if at >= 0 and ph not in SILENT and ph not in STRESS
    ]
    tokens = list(WORD.finditer(text, start, end))
    alone = [
        (ph, k)
        for k, token in enumerate(tokens)
        for phonemes in (phonemize_word or phonemize)(token.group())
        for ph in phonemes
        if ph not in SILENT and ph not in STRESS
    ]
    matcher = SequenceMatcher(None, [p for p, _ in alone], [p for p, _, _ in stream], autojunk=False)
    first: dict[int, int] = {}  # token -> index in the stream of its first phoneme found
    last: dict[int, int] = {}  # and of its last
    for a, b, size in matcher.get_matching_blocks():
        for i in range(size):
            first.setdefault(alone[a + i][1], b + i)
            last[alone[a + i][1]] = b + i
    words, previous_end = [], -1  # the stream index the previous word ended at
    for k, token in enumerate(tokens):
        found = first.get(k)
        if found is None:
            # Said differently alone ("a" alone is the letter's name, in a sentence ɐ): the first phoneme after the
            # word before, if that is before the next word found.
            following = next((first[j] for j in range(k + 1, len(tokens)) if j in first), len(stream))
            found = previous_end + 1 if previous_end + 1 < following else None
        if found is not None and found > previous_end:  # in order, or not at all
            _, sentence, at = stream[found]
            words.append((token.start(), sentence, at))
            previous_end = max(found, last.get(k, found))
    return Piece(start, ids, words)


def _ids(phonemes: list[str], id_map: dict[str, list[int]]) -> list[int]:
    """Piper's `phonemes_to_ids` (so the alignment above and the model's input agree by construction)."""
    pad = id_map.get("_", [])
    ids = [*id_map.get("^", []), *pad]
    for phoneme in phonemes:
        if phoneme in id_map:
            ids += [*id_map[phoneme], *pad]
    return ids + id_map.get("$", [])


def timing(pieces: Sequence[Piece], starts: Sequence[Sequence[int]], samples: Sequence[Sequence[np.ndarray]]) -> Timing:
    """A text's timing from its pieces: `starts[p][s]`, the sample where sentence s of piece p begins in the
    text's audio, and `samples[p][s]`, the audio samples of each of its phoneme ids (empty: not known)."""
    marks = tuple((starts[p][0], piece.char) for p, piece in enumerate(pieces) if starts[p])
    words: list[tuple[int, int]] = []
    for p, piece in enumerate(pieces):
        for char, sentence, at in piece.words:
            per_id = samples[p][sentence]
            if not len(per_id):
                return Timing(marks or ONE_PIECE)  # durations not known: no words
            words.append((starts[p][sentence] + int(np.sum(per_id[:at])), char))
    return Timing(marks or ONE_PIECE, tuple(words) if words else ())
