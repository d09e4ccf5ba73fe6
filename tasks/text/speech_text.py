"""What a chunk's text sounds like when read: numbers, dates, times, money, units and abbreviations as words.

English is built on num2words, Chinese on cn2an, Japanese written out for pyopenjtalk (tasks.text.speech_ja); each
rule is a regular expression over plain text (never over markup) and only the text a rule matches changes. A user
lexicon (per voice) then replaces words or patterns, and emoji and other pictographs are dropped or named
(`text.emoji`). The chunk keeps its original text; the spoken text is what the voice reads and what the chunk id is
made from.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ConfigError
from tasks.text.speech_ja import japanese

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_ABBREVIATIONS = {
    "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miss", "Dr.": "Doctor", "Prof.": "Professor", "Jr.": "Junior",
    "Sr.": "Senior", "St.": "Saint", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example",
    "i.e.": "that is", "approx.": "approximately", "Mt.": "Mount", "Capt.": "Captain", "Gen.": "General",
    "Sgt.": "Sergeant", "Lt.": "Lieutenant", "Col.": "Colonel", "Gov.": "Governor", "Sen.": "Senator",
}  # fmt: skip
_CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent"), "¥": ("yen", "")}
_UNITS = {
    "km": "kilometer", "m": "meter", "cm": "centimeter", "mm": "millimeter", "kg": "kilogram", "g": "gram",
    "mg": "milligram", "l": "liter", "ml": "milliliter", "mph": "mile per hour", "km/h": "kilometer per hour",
    "kph": "kilometer per hour", "ft": "foot", "lb": "pound", "lbs": "pound", "oz": "ounce", "KB": "kilobyte",
    "MB": "megabyte", "GB": "gigabyte", "TB": "terabyte", "Hz": "hertz", "kHz": "kilohertz", "MHz": "megahertz",
    "GHz": "gigahertz", "ms": "millisecond", "°C": "degree Celsius", "°F": "degree Fahrenheit", "%": "percent",
}  # fmt: skip
_IRREGULAR_PLURALS = {"foot": "feet", "penny": "pence", "hertz": "hertz", "yen": "yen", "degree Celsius":
                      "degrees Celsius", "degree Fahrenheit": "degrees Fahrenheit", "percent": "percent",
                      "mile per hour": "miles per hour", "kilometer per hour": "kilometers per hour"}  # fmt: skip
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


@functools.lru_cache(maxsize=8192)  # num2words costs ~40 µs a number; a book repeats the same few thousand
def _words(number: str) -> str:
    from num2words import num2words

    value = number.replace(",", "")
    if "." in value:
        whole, frac = value.split(".", 1)
        return f"{num2words(int(whole or 0))} point {' '.join(num2words(int(d)) for d in frac)}"
    return str(num2words(int(value)))


def _plural(unit: str, number: str) -> str:
    if number.replace(",", "") in ("1", "1.0"):
        return unit
    return _IRREGULAR_PLURALS.get(unit, unit + "s")


@functools.lru_cache(maxsize=4096)
def _year(digits: str, plural: bool = False) -> str:
    from num2words import num2words

    said = str(num2words(int(digits), to="year"))
    if plural:  # the 1990s: nineteen nineties
        said = said[:-1] + "ies" if said.endswith("y") else said + "s"
    return said


def _money(m: re.Match[str]) -> str:
    symbol, number, scale = m.group(1), m.group(2), (m.group(3) or "").strip()
    major, minor = _CURRENCIES[symbol]
    if scale:
        return f"{_words(number)} {scale} {_plural(major, '2')}"
    whole, _, cents = number.replace(",", "").partition(".")
    said = f"{_words(whole)} {_plural(major, whole)}"
    if cents and int(cents) and minor:
        cents = (cents + "0")[:2]
        said += f" and {_words(str(int(cents)))} {_plural(minor, str(int(cents)))}"
    return said


def _time(m: re.Match[str]) -> str:
    hour, minute, meridiem = int(m.group(1)), int(m.group(2)), (m.group(3) or "").replace(".", "").lower()
    said = _words(str(hour))
    if minute == 0 and not meridiem:
        said += " o'clock"
    elif minute:
        said += f" oh {_words(str(minute))}" if minute < 10 else f" {_words(str(minute))}"
    return f"{said} {' '.join(meridiem.upper())}" if meridiem else said


def _date_iso(m: re.Match[str]) -> str:
    from num2words import num2words

    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return f"{_MONTHS[month - 1]} {num2words(day, to='ordinal')}, {_year(str(year))}"


def _ordinal_of(digits: str) -> str:
    from num2words import num2words

    return str(num2words(int(digits), to="ordinal"))


def _ordinal(m: re.Match[str]) -> str:
    return _ordinal_of(m.group(1))


_ABBREVIATION = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + r")(?=\s|$)")


def _abbreviation(m: re.Match[str]) -> str:
    said = _ABBREVIATIONS[m.group(1)]
    return said + "." if m.end() == len(m.string) else said  # "etc." ending the text also ended the sentence


_UNIT_NAMES = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
ENGLISH_RULES: list[Rule] = [
    (re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), _date_iso),
    (re.compile(r"\b(\d{1,2}):(\d{2})(?:\s?([ap]\.?m\.?))?(?![\d:])", re.IGNORECASE), _time),
    (
        re.compile(r"([$£€¥])\s?(" + _NUMBER + r")( (?:thousand|million|billion|trillion)\b)?"),
        _money,
    ),
    (
        re.compile(r"(?<![\w.])(-?)(" + _NUMBER + r")\s?(" + _UNIT_NAMES + r")(?![\w/])"),
        lambda m: f"{'minus ' if m.group(1) else ''}{_words(m.group(2))} {_plural(_UNITS[m.group(3)], m.group(2))}",
    ),
    (
        re.compile(r"\b(" + "|".join(_MONTHS) + r") (\d{1,2})(?:st|nd|rd|th)?\b"),
        lambda m: f"{m.group(1)} {_ordinal_of(m.group(2))}",
    ),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), _ordinal),
    (re.compile(r"(?<![\d,.])(1[1-9]\d\d|20\d\d)(s?)(?!\d|[,.]\d)"), lambda m: _year(m.group(1), bool(m.group(2)))),
    (re.compile(r"\bNo\. ?(?=\d)"), lambda m: "number "),
    (re.compile(r"(?<![\w.])-(?=\d)"), lambda m: "minus "),
    (re.compile(r"(?<![\w.])(" + _NUMBER + r")(?![\w.]\w)"), lambda m: _words(m.group(1))),
    (_ABBREVIATION, _abbreviation),
    (re.compile(r"\s&\s"), lambda m: " and "),
]


def _zh_digits(m: re.Match[str]) -> str:
    return "".join("零一二三四五六七八九"[int(d)] for d in m.group(0))


CHINESE_PRE_RULES: list[Rule] = [  # before cn2an: what it misreads
    (re.compile(r"(?<=\d),(?=\d{3})"), lambda m: ""),  # thousands separators
    (re.compile(r"\d{7,}"), _zh_digits),  # phone numbers, ids: digit by digit
    (re.compile(r"(\d{1,2}):(\d{2})(?!\d)"), lambda m: f"{int(m.group(1))}点{int(m.group(2))}分"),
    (re.compile(r"℃"), lambda m: "摄氏度"),
    (re.compile(r"(?<![\d.])-(?=\d)"), lambda m: "负"),
]


def apply_rules(text: str, rules: list[Rule]) -> str:
    for pattern, replace in rules:
        text = pattern.sub(replace, text)
    return text


# Every rule before the abbreviations needs a digit; the abbreviations need one of theirs; the last needs "&".
_DIGIT = re.compile(r"\d")
_DIGIT_RULES = ENGLISH_RULES[:-2]


# A quick scan for the abbreviation rule: each abbreviation ends with ".", so only the dots are looked behind,
# first at the letter before the dot (a sentence's last letter rarely ends an abbreviation), then at the words.
def _abbreviation_hint() -> re.Pattern[str]:
    by_letter: dict[str, list[str]] = {}
    for a in _ABBREVIATIONS:
        by_letter.setdefault(a[-2], []).append(a)
    branches = (
        f"(?<={re.escape(letter)}\\.)(?:" + "|".join(f"(?<={re.escape(a)})" for a in words) + ")"
        for letter, words in by_letter.items()
    )
    return re.compile(r"\.(?:" + "|".join(branches) + ")")


_ABBREVIATION_HINT = _abbreviation_hint()
_NOT_DIGIT = bytes(b for b in range(0x80) if not chr(b).isdigit())


def _has_digit(text: str) -> bool:
    if text.isascii():  # delete every other byte and see if anything is left: several times a regex scan's speed
        return bool(text.encode("ascii").translate(None, _NOT_DIGIT))
    return bool(_DIGIT.search(text))


def english(text: str) -> str:
    """The English rules, each run only on text that has what it needs (most prose has no digit)."""
    if _has_digit(text):
        text = apply_rules(text, _DIGIT_RULES)
    if _ABBREVIATION_HINT.search(text):
        text = ENGLISH_RULES[-2][0].sub(ENGLISH_RULES[-2][1], text)
    if "&" in text:
        text = ENGLISH_RULES[-1][0].sub(ENGLISH_RULES[-1][1], text)
    return text


def chinese(text: str) -> str:
    import cn2an

    text = apply_rules(text, CHINESE_PRE_RULES)
    try:
        return str(cn2an.transform(text, "an2cn"))
    except (ValueError, KeyError, IndexError):  # cn2an raises on odd digit runs; leave the text as it is
        return text


def _literally(said: str) -> Callable[[re.Match[str]], str]:
    """A replacement for re.sub that is `said` as it is (no backslash escapes read in it)."""
    return lambda _match: said


@dataclass(frozen=True)
class Lexicon:
    """A user's pronunciations: whole words (case-sensitive) and regular expressions, each to a replacement."""

    source: str
    words: tuple[tuple[str, str], ...] = ()
    patterns: tuple[tuple[str, str], ...] = ()

    def apply(self, text: str) -> str:
        for word, said in self.words:
            text = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", _literally(said), text)
        for pattern, said in self.patterns:
            text = re.sub(pattern, said, text)
        return text


def load_lexicon(path: str) -> Lexicon:
    """A TOML file ([words] and [regex] tables of text = replacement) or a CSV file (text,replacement[,regex])."""
    file = Path(path).expanduser()
    try:
        raw = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the lexicon: {exc.strerror}") from exc
    words: list[tuple[str, str]] = []
    patterns: list[tuple[str, str]] = []
    if file.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from exc
        words = [(str(k), str(v)) for k, v in data.get("words", {}).items()]
        patterns = [(str(k), str(v)) for k, v in data.get("regex", {}).items()]
    else:
        for number, row in enumerate(csv.reader(io.StringIO(raw)), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ConfigError(f"{file}: line {number}: expected text,replacement[,regex]")
            (patterns if len(row) > 2 and row[2].strip().lower() in ("regex", "1", "true") else words).append(
                (row[0], row[1])
            )
    for pattern, _ in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{file}: regex {pattern!r} does not compile ({exc})") from exc
    return Lexicon(str(file), tuple(words), tuple(patterns))


# Where emoji live (symbols, dingbats, pictographs, keycap and variation marks): the emoji library's per-character
# tokenizer runs only on text that has one of these, which plain prose in any script rarely does.
_MAYBE_EMOJI = re.compile(
    "[\u00a9\u00ae\u2000-\u2bff\u3030\u303d\u3297\u3299\ufe0f\U0001f000-\U0001faff\U000e0000-\U000e007f]"
)


def handle_emoji(text: str, how: str) -> str:
    """Emoji and pictographs: "drop" them, "name" them in words, or "keep" them for the voice to read."""
    if how == "keep" or text.isascii() or not _MAYBE_EMOJI.search(text):
        return text
    import emoji

    found = emoji.emoji_list(text)
    if not found:
        return text
    out, last = [], 0
    for item in found:
        start, end = item["match_start"], item["match_end"]
        if how == "name":
            said = item["emoji"]
            name = emoji.demojize(said, delimiters=("", "")).replace("_", " ")
            out.append(text[last:start] + name)
        else:  # drop it with the space before it, so "time 🎉!" reads "time!"
            out.append(text[last:start].rstrip(" ") if end < len(text) and text[end] in " !?.,;:" else text[last:start])
        last = end
    out.append(text[last:])
    return "".join(out).strip()


def reads_as_written(text: str, lang: str, normalize: bool, emoji_mode: str, lexicon: Lexicon | None) -> bool:
    """True when `spoken` leaves this text and every slice of it unchanged (no rule finds anything to do).

    One check for a whole paragraph instead of `spoken` per chunk: most prose has no digit, abbreviation,
    "&" or emoji."""
    if lexicon is not None or (normalize and lang == "zh"):
        return False
    if emoji_mode != "keep" and not text.isascii() and _MAYBE_EMOJI.search(text):
        return False
    if lang == "ja":  # every Japanese rule needs a digit
        return not normalize or not _has_digit(text)
    return not normalize or not (_has_digit(text) or "&" in text or _ABBREVIATION_HINT.search(text))


def spoken(text: str, lang: str, normalize: bool, emoji_mode: str, lexicon: Lexicon | None) -> str:
    """The text a voice reads for a chunk."""
    out = handle_emoji(text, emoji_mode)
    if normalize:
        out = chinese(out) if lang == "zh" else japanese(out) if lang == "ja" else english(out)
    if lexicon is not None:
        out = lexicon.apply(out)
    return out
