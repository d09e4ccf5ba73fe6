"""Chunking invariants over generated text: nothing lost or duplicated, limits held."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sentencex import segment

from tasks.text.chunking import _pack_fast, _pack_loop, chunk_paragraph, detect_lang
from tasks.text.normalize import clean_line

EN_WORDS = st.sampled_from(
    ["the", "Mr.", "Dr.", "lighthouse", "keeper", "said", "12,000", "3.5", "e.g.", "—", "...", "😀", "x" * 40]
)
EN_PUNCT = st.sampled_from([" ", " ", " ", ". ", "! ", "? ", ", ", "; ", ": ", '" ', "\u2026 "])
ZH_CHARS = st.sampled_from(
    list("我们的灯塔守护者说今天海上有风浪船回来了") + list("。！？，；：、“”") + ["😀", "a", " "]
)


@st.composite
def english(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(EN_WORDS, EN_PUNCT), min_size=1, max_size=400))
    return clean_line("".join(w + p for w, p in parts))


@st.composite
def chinese(draw: st.DrawFn) -> str:
    return clean_line("".join(draw(st.lists(ZH_CHARS, min_size=1, max_size=1500))))


def check_lossless(text: str, lang: str, limit: int) -> None:
    chunks = chunk_paragraph(text, lang, limit)
    pos = 0
    for c in chunks:
        assert 0 < len(c.text) <= limit
        assert text[c.start : c.end] == c.text
        assert c.start >= pos
        assert text[pos : c.start].strip() == ""  # only whitespace between chunks: nothing lost
        assert c.text == c.text.strip()
        pos = c.end
    assert text[pos:].strip() == ""
    # Concatenated without whitespace, the chunks are exactly the text without whitespace.
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(text.split())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=english(), limit=st.integers(min_value=20, max_value=400))
def test_english_chunks_are_lossless_and_within_limit(text: str, limit: int) -> None:
    check_lossless(text, "en", limit)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=chinese(), limit=st.integers(min_value=10, max_value=200))
def test_chinese_chunks_are_lossless_and_within_limit(text: str, limit: int) -> None:
    check_lossless(text, "zh", limit)


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=1, max_size=600), limit=st.integers(min_value=10, max_value=300))
def test_any_unicode_text_is_lossless(text: str, limit: int) -> None:
    check_lossless(clean_line(text), detect_lang(text), limit)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(english(), chinese()), limit=st.integers(min_value=10, max_value=400))
def test_packing_by_bisection_equals_packing_sentence_by_sentence(text: str, limit: int) -> None:
    lang = detect_lang(text)
    sentences = segment(lang, text)
    fast = _pack_fast(text, sentences, lang, limit)
    if fast is not None:  # it declines paragraphs with a blank or over-long sentence; the loop takes those
        assert fast == _pack_loop(text, sentences, lang, limit)


def test_long_line_without_punctuation_or_spaces_is_cut_hard() -> None:
    text = "a" * 100_000
    chunks = chunk_paragraph(text, "en", 300)
    assert len(chunks) == 334
    assert "".join(c.text for c in chunks) == text


def test_long_sentence_prefers_clause_boundaries() -> None:
    text = ", ".join(["the keeper climbed the stairs again"] * 20) + "."
    chunks = chunk_paragraph(text, "en", 100)
    assert all(c.text.endswith((",", ".")) for c in chunks)


def test_sentences_pack_up_to_the_limit() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(50))
    chunks = chunk_paragraph(text, "en", 120)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(len(c.text) > 80 for c in chunks[:-1])  # packed, not one sentence per chunk


def test_chinese_splits_at_full_stops() -> None:
    text = "天刚亮,小港的渔船就陆续出海了。码头上堆着渔网和木箱。老陈今年六十二岁!"
    chunks = chunk_paragraph(text, "zh", 16)
    assert [c.text for c in chunks] == [
        "天刚亮,小港的渔船就陆续出海了。",
        "码头上堆着渔网和木箱。",
        "老陈今年六十二岁!",
    ]


def test_language_detection() -> None:
    assert detect_lang("The keeper said hello.") == "en"
    assert detect_lang("老陈今年六十二岁，他说 OK。") == "zh"
    assert detect_lang("123 !!!") == "en"
