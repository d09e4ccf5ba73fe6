"""What a Japanese chunk sounds like when read: dates, times, money, temperatures, units and percentages written so
that the Japanese frontend (pyopenjtalk, which Kokoro's Japanese voices read through) says them right.

pyopenjtalk reads plain numbers and most counters well by itself ("2026年" ni sen ni jū roku nen, "3.5" san ten go,
"10人" jū nin), so they stay digits. What it does not know, or reads by context and so sometimes wrong, is written
out: months, days of the month, hours and minutes as their readings in hiragana (12月5日 じゅうにがついつか:
the day readings are irregular, 1日 after a month is ついたち, elsewhere "one day", left to the frontend),
times with a colon as 時 and 分, symbols as words (¥1,000 1000円, 15°C 15度, 50% 50パーセント, -5 マイナス5,
60km/h 時速60キロメートル), and units after a number in katakana. Hiragana, not katakana: the frontend reads a
particle after hiragana as a particle (はつかは hatsuka wa) and a word after it as a word, where after katakana
it took 晴れ for ばれ.

Every rule needs a digit, so text without one reads as written. The text is NFKC already (full-width digits and
letters are ASCII); a rule that meets a full-width digit all the same reads it (int() takes it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_MONTHS = ["", "いち", "に", "さん", "し", "ご", "ろく", "しち", "はち", "く", "じゅう", "じゅういち", "じゅうに"]
_DAY_ONES = ["", "いち", "に", "さん", "", "ご", "ろく", "しち", "はち", "く"]  # 4: よっか, in _DAYS (14, 24)
# 8 and 10 in kanji: after a word the frontend reads hiragana ようか and とおか letter by letter (yo-u-ka, to-o-ka),
# 八日 and 十日 as yōka and tōka wherever they stand
_DAYS = {1: "ついたち", 2: "ふつか", 3: "みっか", 4: "よっか", 5: "いつか", 6: "むいか", 7: "なのか", 8: "八日",
         9: "ここのか", 10: "十日", 14: "じゅうよっか", 20: "はつか", 24: "にじゅうよっか"}  # fmt: skip
_HOURS = ["れい", "いち", "に", "さん", "よ", "ご", "ろく", "しち", "はち", "く"]
_MINUTE_ONES = ["", "いっぷん", "にふん", "さんぷん", "よんぷん", "ごふん", "ろっぷん", "ななふん", "はっぷん",
                "きゅうふん"]  # fmt: skip
_TENS = ["", "じゅう", "にじゅう", "さんじゅう", "よんじゅう", "ごじゅう"]
_UNITS = {
    "km": "キロメートル", "m": "メートル", "cm": "センチメートル", "mm": "ミリメートル", "kg": "キログラム",
    "g": "グラム", "mg": "ミリグラム", "L": "リットル", "l": "リットル", "ml": "ミリリットル", "mL": "ミリリットル",
    "KB": "キロバイト", "MB": "メガバイト", "GB": "ギガバイト", "TB": "テラバイト", "Hz": "ヘルツ", "kHz": "キロヘルツ",
    "MHz": "メガヘルツ", "GHz": "ギガヘルツ", "W": "ワット", "kW": "キロワット", "V": "ボルト",
}  # fmt: skip
_NUMBER = r"\d+(?:\.\d+)?"
_MINUS = "-\u2212"  # hyphen-minus and the minus sign (NFKC keeps U+2212)

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _day(n: int) -> str:
    """The reading of a day of the month (1-31): the irregular ones, else the number and にち."""
    if n in _DAYS:
        return _DAYS[n]
    tens, ones = divmod(n, 10)
    return f"{_TENS[tens]}{_DAY_ONES[ones]}にち"


def _hour(n: int) -> str:
    """The reading of an hour (0-24) with じ: 4時 よじ, 7時 しちじ, 9時 くじ, 0時 れいじ."""
    tens, ones = divmod(n, 10)
    return f"{_TENS[tens]}{_HOURS[ones] if ones or not tens else ''}じ"


def _minute(n: int) -> str:
    """The reading of minutes (1-59) with ふん/ぷん: 1 いっぷん, 8 はっぷん, 10 じゅっぷん, 30 さんじゅっぷん."""
    tens, ones = divmod(n, 10)
    if ones:
        return _TENS[tens] + _MINUTE_ONES[ones]
    return _TENS[tens][:-1] + "っぷん"  # じゅう -> じゅっぷん


def _date(m: re.Match[str]) -> str:
    year, month, day = m.group(1), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return f"{year}年{month}月{day}日"


def _clock(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 24 or minute > 59:
        return m.group(0)
    return f"{hour}時{minute}分" if minute else f"{hour}時"


def _minus(sign: str) -> str:
    return "マイナス" if sign else ""


def _month(m: re.Match[str]) -> str:
    return _MONTHS[int(m.group(1))] + "がつ"


def _day_of_month(m: re.Match[str]) -> str:
    n = int(m.group(1))
    before = m.string[max(0, m.start() - 2) : m.start()]
    if n == 1 and not (before.endswith("月") or before == "がつ"):
        return m.group(0)  # "1日3回": one day (いちにち), as the frontend reads it
    return _day(n)


def _minutes(m: re.Match[str]) -> str:
    n = int(m.group(1))
    return _minute(n) if n else m.group(0)


_UNIT_NAMES = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
JAPANESE_RULES: list[Rule] = [
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), lambda m: ""),  # thousands separators
    (re.compile(r"(?<!\d)(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?!\d)"), _date),  # 2026-12-05, 2026/12/5
    (re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])"), _clock),  # 9:30, 15:00
    (
        re.compile(f"([{_MINUS}]?)({_NUMBER})\\s?km/h(?![A-Za-z])"),
        lambda m: f"時速{_minus(m.group(1))}{m.group(2)}キロメートル",
    ),
    (
        re.compile(f"([{_MINUS}]?)({_NUMBER})\\s?m/s(?![A-Za-z])"),
        lambda m: f"秒速{_minus(m.group(1))}{m.group(2)}メートル",
    ),
    (re.compile(f"¥\\s?({_NUMBER})"), lambda m: f"{m.group(1)}円"),
    (
        re.compile(f"([{_MINUS}]?)({_NUMBER})\\s?(?:°\\s?C|℃)"),
        lambda m: f"{_minus(m.group(1))}{m.group(2)}度",
    ),
    (
        re.compile(f"([{_MINUS}]?)({_NUMBER})\\s?(?:°\\s?F|℉)"),
        lambda m: f"華氏{_minus(m.group(1))}{m.group(2)}度",
    ),
    (re.compile(f"({_NUMBER})\\s?%"), lambda m: f"{m.group(1)}パーセント"),
    (
        re.compile(f"(?<![A-Za-z])({_NUMBER})\\s?({_UNIT_NAMES})(?![A-Za-z])"),
        lambda m: m.group(1) + _UNITS[m.group(2)],
    ),
    (re.compile(f"(?<![\\w.])[{_MINUS}](?=\\d)"), lambda m: "マイナス"),
    (re.compile(r"(?<!\d)(1[0-2]|0?[1-9])月"), _month),
    (re.compile(r"(?<![\d.])(3[01]|[12]\d|0?[1-9])日(?!本)"), _day_of_month),  # not 日本 ("2日本" is rare)
    (  # 4時 よじ, 4時間 よじかん
        re.compile(r"(?<![\d.])(2[0-4]|1\d|0?\d)時(間?)"),
        lambda m: _hour(int(m.group(1))) + ("かん" if m.group(2) else ""),
    ),
    (re.compile(r"(?<![\d.])([0-5]?\d)分(?!の)"), _minutes),  # not 3分の1, a fraction
]
_DIGIT = re.compile(r"\d")


def japanese(text: str) -> str:
    """The Japanese rules (see the module); text without a digit is returned as it is."""
    if not _DIGIT.search(text):
        return text
    for pattern, replace in JAPANESE_RULES:
        text = pattern.sub(replace, text)
    return text
