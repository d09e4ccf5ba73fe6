"""Scoring transcripts against what the voice read (tasks.audio.scoring), on a corpus of tricky pairs with the
rates they should get, and the checker's verdict: words unknown to the model excused, babble and misheard common
words failed. No audio and no model run: the normalizer and tiny.en's tokenizer file only."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tasks.audio.scoring import known, score
from tasks.config import validate_settings
from tasks.shard.checker import Checker
from tasks.shard.finish import ChunkAudio

PAIRS = Path(__file__).with_name("asr_pairs.tsv")
NAMES = "Sappho, Récamier, Kitty O'Shea and the rest of them."


def _pairs() -> list[tuple[str, str, str, float, float | None, str]]:
    with PAIRS.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r and not r[0].startswith("#")]
    return [
        (lang, ref, hyp, float(rate), None if k == "-" else float(k), note) for lang, ref, hyp, rate, k, note in rows
    ]


@pytest.mark.parametrize(("lang", "reference", "transcript", "rate", "rate_known", "note"), _pairs())
def test_tricky_pairs_score_as_expected(
    lang: str, reference: str, transcript: str, rate: float, rate_known: float | None, note: str
) -> None:
    s = score(reference, transcript, lang)
    got = s.cer if lang == "zh" else s.ser if lang == "ja" else s.wer
    assert got == pytest.approx(rate, abs=0.01), note
    if rate_known is not None:
        assert s.wer_known == pytest.approx(rate_known, abs=0.01), (note, s.excused)


def test_the_corpus_covers_its_cases_and_holds_bad_pairs_too() -> None:
    pairs = _pairs()
    assert len(pairs) >= 40 and {p[0] for p in pairs} == {"en", "zh", "ja"}
    limit = validate_settings({}).qa.max_wer
    assert sum(p[3] > limit for p in pairs) >= 8  # not a lenient normalizer: real misreadings still score badly


def test_names_are_unknown_to_the_model_and_common_words_known() -> None:
    for word in ("sappho", "recamier", "vms", "pruning"):
        assert not known(word), word
    for word in ("the", "house", "interrupts", "keeper", "14", "kitty"):
        assert known(word), word
    assert not known("kitty", frozenset({"kitty"}))  # capitalised mid-sentence: a name, its lower case split


def _verdict(said: str, heard: str) -> str | None:
    settings = validate_settings({"qa": {"asr": True}})
    chunk = ChunkAudio("c" * 64, said, "en", 22050, 22050)
    return Checker(22050, settings)._score(chunk, heard)[1]


def test_a_line_of_misheard_names_passes_but_babbled_fails() -> None:
    assert _verdict(NAMES, "Sapho, Ray Camier, Kitty O'Shay and the rest of them.") is None
    babble = _verdict(NAMES, "So far we came here to show the rest of the bread.")
    assert babble is not None and babble.startswith("qa: asr: WER 0.90 > 0.8 on all words"), babble
    assert "excused as unknown to the model: sappho" in babble


def test_misheard_common_words_fail_whatever_names_are_excused() -> None:
    said = "The keeper climbed the stairs again, counting each step."
    error = _verdict(said, "The sleeper climbed the stars a gain, counting its tap.")
    assert error is not None and error.startswith("qa: asr: WER 0.44 > qa.max_wer 0.4 (heard '"), error
    with_a_name = _verdict("Then Récamier climbed the stairs and counted each step.", "Then Ray Camier clam the stars.")
    assert with_a_name is not None and "on known words > qa.max_wer" in with_a_name, with_a_name
    assert "excused as unknown to the model: recamier" in with_a_name


def test_a_lone_word_is_scored_but_never_judged() -> None:
    # The GPL's heading "Preamble" (0.7 s) was heard "Pre-dumble" and "Pre-gamble": WER 2.0, a false flag.
    assert _verdict("Preamble", "Pre-gamble.") is None
    assert _verdict("Preamble.", "Something else entirely was heard.") is None
    assert _verdict("The preamble", "Something else entirely was heard.") is not None  # two words are judged


def test_chinese_is_judged_by_syllables_so_homophones_pass_and_wrong_sounds_fail() -> None:
    settings = validate_settings({"qa": {"asr": True}})
    poem = "碧阑干外绣帘垂，猩色屏风画折枝。八尺龙须方锦褥，已凉天气未寒时。"

    def verdict(heard: str) -> str | None:
        return Checker(22050, settings)._score(ChunkAudio("c" * 64, poem, "zh", 22050, 22050), heard)[1]

    # Whisper base heard zh-baker read it so: CER 0.57, but syllable error rate 0.07 ("xin" for "xing", ...).
    assert score(poem, "比蘭甘外秀連錘,新色平風畫折針,八尺龍虛方進入,以兩天氣位含時。", "zh").cer > 0.5
    assert verdict("比蘭甘外秀連錘,新色平風畫折針,八尺龍虛方進入,以兩天氣位含時。") is None
    wrong = verdict("今天我们去公园散步，天气很好，大家都很开心，然后一起吃饭。")
    assert wrong is not None and wrong.startswith("qa: asr: syllable error rate"), wrong


def test_a_chunk_far_faster_than_its_shard_of_which_little_was_heard_was_cut_short() -> None:
    said = "There are more dead people than living, and their numbers are increasing. (Eugene Ionesco)"
    heard = "There are more dead people than living, and there are no"  # tiny.en on its first half
    settings = validate_settings({"qa": {"asr": True}})
    checker = Checker(22050, settings)
    chunk = ChunkAudio("c" * 64, said, "en", 22050, 22050)
    assert checker._score(chunk, heard)[1] is None  # WER 0.29 on known words: under qa.max_wer alone
    error = checker._score(chunk, heard, pace=2.0)[1]
    assert error is not None and "2.0x the shard's typical speech rate and 62% of its letters heard" in error, error
    assert checker._score(chunk, said, pace=2.0)[1] is None  # fast, but all of it heard
    assert checker._score(chunk, heard, pace=1.2)[1] is None  # a little fast: within the normal spread
