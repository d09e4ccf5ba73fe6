"""Sentence cues split to reading length and speed (unit tests of tasks/results/cues.py and of the cues an
assembled row gets from its sentence timings)."""

from __future__ import annotations

import itertools

import pytest

from tasks.results.assemble import FLAGGED_MARK, _row_cues
from tasks.results.cues import (
    LINE_CHARS,
    Cue,
    _break_rank,
    fit_reading_speed,
    length,
    row_sentences,
    sentence_cues,
    split_text,
    too_fast_or_long,
    wrap,
)
from tasks.shard.rows import ManifestRow

LONG = (
    "The keeper climbed the stairs at dusk, counting each of the hundred and twelve steps as his father had, "
    "and when he reached the lamp room he wiped the great lens clean; the sea below was grey, the gulls were "
    "quiet, and somewhere past the reef a ship was waiting for the light."
)


def check(cues: list[Cue]) -> None:
    for cue in cues:
        assert too_fast_or_long(cue) is None, (cue, too_fast_or_long(cue))
    for a, b in itertools.pairwise(cues):
        assert a.start <= a.end <= b.start + 1e-9


def test_a_long_sentence_is_split_at_punctuation_and_timed_by_characters() -> None:
    cues = sentence_cues(LONG, 10.0, 25.0)
    assert len(cues) >= 3
    assert " ".join(c.text.replace("\n", " ") for c in cues) == LONG
    # pieces end at punctuation where the sentence has it
    assert all(c.text[-1] in ",;." for c in cues)
    assert cues[0].start == 10.0 and cues[-1].end == pytest.approx(25.0)
    for c in cues:  # time in proportion to characters
        share = len(c.text.replace("\n", " ")) / sum(len(x.text) for x in cues)
        assert c.end - c.start == pytest.approx(15.0 * share, rel=0.05)
    check(cues)


def test_lines_break_at_the_space_nearest_the_middle() -> None:
    text = "one two three four five six seven eight nine ten eleven"
    first, second = wrap(text).split("\n")
    assert first + " " + second == text
    assert abs(len(first) - len(second)) <= 6 and max(len(first), len(second)) <= LINE_CHARS
    assert wrap("short") == "short"
    # a piece that two lines of 42 hold only when broken mid-word is split shorter instead
    text = "Through the rain she watched a small fishing boat fight its way around the point, its engine coughing."
    for cue in sentence_cues(text, 0.0, 10.0):
        assert all(line == line.strip() and line for line in cue.text.split("\n"))
        assert " ".join(cue.text.split("\n")) in text


def test_a_100_kb_sentence_without_punctuation_or_spaces() -> None:
    text = "a" * 100_000
    pieces = split_text(text)
    assert "".join(pieces) == text and max(map(len, pieces)) <= 84
    cues = fit_reading_speed(sentence_cues(text, 0.0, 5000.0), 5000.0)
    check(cues)
    assert all(len(line) <= LINE_CHARS for c in cues for line in c.text.split("\n"))
    words = "tide " * 20_000  # 100 KB of words, no punctuation: broken at spaces, each line whole words
    cues = fit_reading_speed(sentence_cues(words, 0.0, 5000.0), 5000.0)
    check(cues)
    assert all(line.split() and set(line.split()) == {"tide"} for c in cues for line in c.text.split("\n"))
    assert sum(len(c.text.split()) for c in cues) == 20_000


def test_words_over_the_limit_and_emoji() -> None:
    text = "🙂 " * 30 + "x" * 200 + " done 🎉"
    cues = fit_reading_speed(sentence_cues(text, 0.0, 30.0), 30.0)
    check(cues)
    assert "".join(c.text.replace("\n", "").replace(" ", "") for c in cues) == text.replace(" ", "")


def test_chinese_splits_at_its_own_punctuation_and_counts_characters() -> None:
    text = "灯塔看守人每天傍晚都要爬上塔顶，擦亮那面巨大的透镜；海面是灰色的，海鸥也安静了下来。" * 3
    assert length(text) == len(text)
    cues = sentence_cues(text, 0.0, 40.0)
    assert len(cues) >= 2 and all(c.text.replace("\n", "")[-1] in "。！？，；、" for c in cues)
    assert "".join(c.text.replace("\n", "") for c in cues) == text
    check(fit_reading_speed(cues, 40.0))


def test_too_fast_cues_take_the_silence_after_then_before_then_delay_the_rest() -> None:
    fast = "x" * 40  # needs 2 s
    cues = [Cue(1.0, 1.5, fast), Cue(5.0, 5.5, fast), Cue(5.6, 6.0, fast)]
    fitted = fit_reading_speed(cues, 6.5)
    check(fitted)
    assert fitted[0] == Cue(1.0, pytest.approx(3.002), fast)  # type: ignore[arg-type]  # into the silence after
    assert fitted[1].end > 5.5 and fitted[1].start < 5.0  # took the silence before it too
    assert fitted[2].end >= fitted[1].end + 2.0  # the voice is too fast there: delayed
    slow = [Cue(0.0, 10.0, "slow")]
    assert fit_reading_speed(slow, 10.0) == slow  # cues within the limit are left alone


def test_a_rows_sentence_timings_give_its_cues_at_the_chunks_place() -> None:
    text = "First sentence here. " + LONG
    row = ManifestRow(
        run_id="r",
        shard=0,
        text=text,
        duration_s=20.0,
        sentences=[
            {"start_s": 0.1, "end_s": 1.5, "char_start": 0, "char_end": 20},
            {"start_s": 1.8, "end_s": 19.5, "char_start": 21, "char_end": len(text)},
        ],
    )
    cues = _row_cues(row, 100.0, 20.0, "")
    assert cues[0] == Cue(100.1, 101.5, "First sentence here.")
    assert cues[1].start == pytest.approx(101.8) and cues[-1].end == pytest.approx(119.5)
    check(cues)
    # without timings: one span over the chunk; flagged rows keep their mark on each cue, within the limits
    flagged = _row_cues(ManifestRow(run_id="r", shard=0, text=LONG, duration_s=18.0), 3.0, 18.0, FLAGGED_MARK)
    assert flagged[0].start == 3.0 and flagged[-1].end == pytest.approx(21.0)
    assert len(flagged) >= 3 and all(c.text.startswith(FLAGGED_MARK) for c in flagged)
    check(fit_reading_speed(flagged, 21.0))


def test_a_chunk_without_timings_is_cut_into_its_sentences_by_characters() -> None:
    row = ManifestRow(run_id="r", shard=0, text='"Why?" she asked. The sea won\'t.', lang="en", duration_s=3.3)
    spans = row_sentences(row)
    assert [row.text[s.char_start : s.char_end] for s in spans] == ['"Why?" she asked.', "The sea won't."]
    assert spans[0].start_s == 0.0 and spans[-1].end_s == pytest.approx(3.3)
    assert spans[0].end_s == pytest.approx(3.3 * 17 / 31) and spans[1].start_s == spans[0].end_s
    assert _break_rank('down?" her', 6) == 3 and _break_rank('down?" her', 5) == 0  # after the quote, not before
