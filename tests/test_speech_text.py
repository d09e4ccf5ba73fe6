"""Text normalized for speech: rules by example, properties (only what a rule covers changes), lexicons, emoji,
and the plan keeping both the original and the spoken text."""

from __future__ import annotations

import string
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.config import validate_settings
from tasks.errors import ConfigError
from tasks.plan.planner import prepare
from tasks.text.speech_text import (
    _ABBREVIATIONS,
    _UNITS,
    chinese,
    english,
    handle_emoji,
    load_lexicon,
    reads_as_written,
    spoken,
)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "In 1984 he paid $12.50 for 3 books.",
            "In nineteen eighty-four he paid twelve dollars and fifty cents for three books.",
        ),
        (
            "The talk is at 3:45 pm on March 5, 2024.",
            "The talk is at three forty-five P M on March fifth, twenty twenty-four.",
        ),
        ("It grew 15% in the 1990s.", "It grew fifteen percent in the nineteen nineties."),
        ("She came 1st, he was 22nd.", "She came first, he was twenty-second."),
        ("Mr. Smith ran 5 km, Dr. Jones 1 km.", "Mister Smith ran five kilometers, Doctor Jones one kilometer."),
        ("We have 1,234 users.", "We have one thousand, two hundred and thirty-four users."),
        ("Meet on 2024-03-05 at 10:00.", "Meet on March fifth, twenty twenty-four at ten o'clock."),
        ("It costs $5 million.", "It costs five million dollars."),
        ("Version 2.5 is out.", "Version two point five is out."),
        ("Tom & Jerry, cartoons, etc.", "Tom and Jerry, cartoons, et cetera."),
        ("It was -3 outside, 25°C inside.", "It was minus three outside, twenty-five degrees Celsius inside."),
        ("Gate No. 7.", "Gate number seven."),
    ],
)
def test_english_reads_numbers_dates_money_units_and_abbreviations(text: str, said: str) -> None:
    assert english(text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("2024年3月5日，增长了15%。", "二零二四年三月五日，增长了百分之十五。"),
        ("气温是-3.5℃，花了1,234元。", "气温是负三点五摄氏度，花了一千二百三十四元。"),
        ("电话13800138000，会议在14:30开始。", "电话一三八零零一三八零零零，会议在十四点三十分开始。"),
        ("第3章", "第三章"),
    ],
)
def test_chinese_reads_numbers_dates_and_percentages(text: str, said: str) -> None:
    assert chinese(text) == said


PLAIN = st.text(alphabet=string.ascii_letters + " ,;!?'\"()-\n" + "你好世界，。", max_size=200)


@settings(max_examples=200, deadline=None)
@given(PLAIN)
def test_text_no_rule_covers_is_unchanged(text: str) -> None:
    assert english(text) == text
    assert chinese(text) == text
    assert spoken(text, "en", normalize=False, emoji_mode="keep", lexicon=None) == text


WORDS_NOT_UNITS = st.from_regex(r"[a-z]{2,8}", fullmatch=True).filter(lambda w: w not in _UNITS)  # "0 cm" is a unit


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(WORDS_NOT_UNITS, st.integers(0, 10**6)), min_size=1, max_size=8))
def test_only_the_numbers_change(pairs: list[tuple[str, int]]) -> None:
    from num2words import num2words

    text = " ".join(f"{word} {number}" for word, number in pairs)
    said = english(text)
    # 4-digit numbers from 1100 to 2099 read as years; others as cardinals
    expected = " ".join(f"{word} {num2words(n, to='year') if 1100 <= n <= 2099 else num2words(n)}" for word, n in pairs)
    assert said == expected


ANY_TOKEN = st.sampled_from(
    [
        *_ABBREVIATIONS,
        "(Mr.",
        "word",
        "words.",
        "Smith,",
        "&",
        "7",
        "3.5",
        "1984",
        "km",
        "café",
        "١٢",
        "①",
        "🎉",
        "中文",
        "x.",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(ANY_TOKEN, min_size=1, max_size=12),
    st.sampled_from(["drop", "name", "keep"]),
    st.booleans(),
    st.integers(0, 40),
    st.integers(0, 40),
)
def test_a_paragraph_that_reads_as_written_has_no_slice_that_would_not(
    tokens: list[str], emoji_mode: str, normalize: bool, a: int, b: int
) -> None:
    """The planner skips `spoken` for a paragraph `reads_as_written` accepts: no chunk of it may need a rule."""
    text = " ".join(tokens)
    if reads_as_written(text, "en", normalize, emoji_mode, None):
        piece = text[min(a, b) : max(a, b)] or text
        assert spoken(piece, "en", normalize, emoji_mode, None) == piece


def test_emoji_are_dropped_named_or_kept() -> None:
    text = "Party 🎉 time 👍🏽!"
    assert handle_emoji(text, "drop") == "Party time!"
    assert handle_emoji("Party 🎉 time!", "name") == "Party party popper time!"
    assert handle_emoji(text, "keep") == text


def test_lexicons_from_toml_and_csv(tmp_path: Path) -> None:
    toml = tmp_path / "lex.toml"
    toml.write_text('[words]\nGIF = "jif"\nSQL = "sequel"\n[regex]\n"\\\\bv(\\\\d)\\\\b" = "version \\\\1"\n')
    lexicon = load_lexicon(str(toml))
    assert lexicon.apply("A GIF in SQL, v2, GIFs.") == "A jif in sequel, version 2, GIFs."
    csv_file = tmp_path / "lex.csv"
    csv_file.write_text("# word,replacement\nnginx,engine x\n\\bk8s\\b,kubernetes,regex\n")
    assert load_lexicon(str(csv_file)).apply("nginx on k8s") == "engine x on kubernetes"
    bad = tmp_path / "bad.csv"
    bad.write_text("([,x,regex\n")
    with pytest.raises(ConfigError, match=r"bad\.csv: regex '\(\[' does not compile"):
        load_lexicon(str(bad))


def test_the_plan_keeps_the_original_and_the_spoken_text(tmp_path: Path) -> None:
    doc = tmp_path / "book.txt"
    doc.write_text("In 1984 there were 3 GIFs 🎉.")
    lexicon = tmp_path / "lex.toml"
    lexicon.write_text('[words]\nGIFs = "jifs"\n')
    plain = prepare([str(doc)], validate_settings({"text": {"normalize": "off", "emoji": "keep"}})).plan
    assert pq.read_table(plain.file.path, columns=["spoken_text"]).column(0).null_count == 1  # stored once
    plain = plain.chunks[0]
    assert plain.spoken_text == plain.text == "In 1984 there were 3 GIFs 🎉."
    chunk = prepare([str(doc)], validate_settings({"text": {"lexicons": {"joe": str(lexicon)}}})).plan.chunks[0]
    assert chunk.text == "In 1984 there were 3 GIFs 🎉."
    assert chunk.spoken_text == "In nineteen eighty-four there were three jifs."
    assert chunk.chunk_id != plain.chunk_id  # the id follows what is spoken


def test_table_rows_are_not_normalized_unless_asked(tmp_path: Path) -> None:
    table = tmp_path / "t.jsonl"
    table.write_text('{"id": "a", "text": "Say 42."}\n')
    assert prepare([str(table)], validate_settings({})).plan.chunks[0].spoken_text == "Say 42."
    on = validate_settings({"text": {"normalize": "on"}})
    assert prepare([str(table)], on).plan.chunks[0].spoken_text == "Say forty-two."
