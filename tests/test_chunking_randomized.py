"""Chunking invariants over generated text: nothing lost or duplicated, limits held."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sentencex import segment

from tasks.text.chunking import _pack_fast, _pack_loop, chunk_paragraph, detect_lang, language_runs
from tasks.text.mixed_script import script_runs
from tasks.text.normalize import clean_line

EN_WORDS = st.sampled_from(
    ["the", "Mr.", "Dr.", "lighthouse", "keeper", "said", "12,000", "3.5", "e.g.", "—", "...", "😀", "x" * 40]
)
EN_PUNCT = st.sampled_from([" ", " ", " ", ". ", "! ", "? ", ", ", "; ", ": ", '" ', "\u2026 "])
ZH_CHARS = st.sampled_from(
    list("我们的灯塔守护者说今天海上有风浪船回来了") + list("。！？，；：、“”") + ["😀", "a", " "]
)

JA_CHARS = st.sampled_from(
    list("図書館の坂を上りきったところにがあるテーマはホームーｶﾀｶﾅ東京都庁")
    + list("。！？、「」『』…")
    + ["Python", " Home ", "2026年", "12月5日", "3.5", " ", "😀"]
)


@st.composite
def english(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(EN_WORDS, EN_PUNCT), min_size=1, max_size=400))
    return clean_line("".join(w + p for w, p in parts))


@st.composite
def chinese(draw: st.DrawFn) -> str:
    return clean_line("".join(draw(st.lists(ZH_CHARS, min_size=1, max_size=1500))))


@st.composite
def japanese(draw: st.DrawFn) -> str:
    return clean_line("".join(draw(st.lists(JA_CHARS, min_size=1, max_size=800))))


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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=japanese(), limit=st.integers(min_value=10, max_value=200), han=st.sampled_from(["zh", "ja"]))
def test_japanese_chunks_and_runs_are_lossless_and_within_limit(text: str, limit: int, han: str) -> None:
    check_lossless(text, "ja", limit)
    for runs in (language_runs(text, han), script_runs(text, han)):  # each tiles the text, in order
        assert "".join(text[a:b] for a, b, _ in runs) == text or (not runs and not any(c.isalpha() for c in text))
        assert all(lang in ("en", "zh", "ja") for _, _, lang in runs)
    for a, b, lang in language_runs(text, han):  # each run's chunks are exact slices of its run
        check_lossless(text[a:b], lang, limit)


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=1, max_size=600), limit=st.integers(min_value=10, max_value=300))
def test_any_unicode_text_is_lossless(text: str, limit: int) -> None:
    check_lossless(clean_line(text), detect_lang(text), limit)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(english(), chinese(), japanese()), limit=st.integers(min_value=10, max_value=400))
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


def test_japanese_splits_at_full_stops() -> None:
    text = "窓が大きい。午後になると光が差しこむ！本当？「寒いですね」と笑った。"
    chunks = chunk_paragraph(text, "ja", 20)
    assert [c.text for c in chunks] == ["窓が大きい。午後になると光が差しこむ！", "本当？「寒いですね」と笑った。"]


def test_language_detection() -> None:
    assert detect_lang("The keeper said hello.") == "en"
    assert detect_lang("老陈今年六十二岁，他说 OK。") == "zh"
    assert detect_lang("123 !!!") == "en"
    assert detect_lang("小さな図書館がある。") == "ja"  # kana: Japanese
    assert detect_lang("テーマはホーム。") == detect_lang("ｶﾀｶﾅ") == detect_lang("ラーメン。") == "ja"
    # Han characters alone: the language the caller knows (the document's, else text.han_lang), zh unless told
    assert detect_lang("東京都庁。") == "zh" and detect_lang("東京都庁。", "ja") == "ja"
    assert detect_lang("老陈今年六十二岁。", "zh") == "zh"
    assert detect_lang("The word ラーメン is Japanese, the sentence English.") == "en"
