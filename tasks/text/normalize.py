"""Text normalization: ANSI escapes and control characters out, NFKC, whitespace collapsed, paragraphs kept."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tasks.text.tables import Row

# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks), and two-byte escapes.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
# Invisible format characters that TTS front ends read as garbage; ZWJ stays for emoji sequences.
INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200e\u200f\u2060\ufeff"))
_WS = re.compile(r"\s+")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")
# Every pattern below runs in time linear in the line: no span may cross the next opener of its own kind (a
# link's text stops at "[", its target at "(", a tag at "<", emphasis at its own delimiter), so each character
# is scanned from at most one start. Spans that could run on ("[^\]]*", ".*?") made 20k characters of "*a "
# take over a second, and a 1 MB line about an hour.
_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*)$")  # its closing #s are stripped by str methods
_MD_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_MD_LIST = re.compile(r"^\s*(?:[-*+]|>+)\s+")
_MD_IMAGE = re.compile(r"!\[([^\[\]]*)\]\([^()]*\)")
_MD_LINK = re.compile(r"\[([^\[\]]+)\]\([^()]*\)")
_MD_EMPHASIS = re.compile(
    r"(\*{1,3})([^\s*](?:[^*]*?[^\s*])?)\1"
    r"|(_{1,3})([^\s_](?:[^_]*?[^\s_])?)\3"
    r"|(?<!`)(`++)([^\s`](?:[^`]*?[^\s`])?)\5"  # a run of backticks is one opener, tried once
    r"|~~([^\s~](?:[^~]*?[^\s~])?)~~"
)
_MD_HTML = re.compile(r"</?[A-Za-z][^<>]*>")


def _emphasis_text(match: re.Match[str]) -> str:
    return match.group(2) or match.group(4) or match.group(6) or match.group(7)


# The characters is_cjk accepts, as a character class (for whole-string searches).
CJK_CHAR = re.compile(
    "[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002ebef\uf900-\ufaff\u3000-\u303f\u3041-\u30ff\u31f0-\u31ff]"
)
_CC = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= o <= 0x4DBF  # extension A
        or 0x20000 <= o <= 0x2EBEF  # extensions B-F
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0x3000 <= o <= 0x303F  # CJK punctuation (。、「」)
        or 0x3041 <= o <= 0x30FF  # hiragana and katakana (Japanese lines wrapped in the source join without a space)
        or 0x31F0 <= o <= 0x31FF  # katakana extensions
    )


_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"')\]]+[^\s<>\"')\].,;:!?]", re.IGNORECASE)


class Paragraph(NamedTuple):
    """One paragraph of normalized text, the 1-based source line it starts on, and its chapter (index).

    A tuple rather than a dataclass: a large corpus makes millions, and a tuple is several times quicker to make."""

    text: str
    line: int
    chapter: int = 0
    row: Row | None = None  # the table row this paragraph is (its own utterance), for tables


@dataclass(frozen=True)
class TextOptions:
    """How markup-like content is read: fenced code blocks (skip or read) and bare URLs (skip, "link" or read)."""

    code_blocks: str = "skip"
    urls: str = "link"
    chapter_heading_level: int = 2  # markdown headings of this level or higher start a chapter
    bad_rows: str = "error"  # a table row with no text, a duplicate id or a bad value: "error" or "failed"


def replace_urls(line: str, how: str) -> str:
    if how == "read":
        return line
    return _URL.sub("link" if how == "link" else "", line)


def clean_line(line: str) -> str:
    """Normalize one source line: escapes, NFKC, control and invisible characters, whitespace."""
    line = ANSI_ESCAPE.sub("", line)
    line = unicodedata.normalize("NFKC", line)
    line = line.translate(INVISIBLE)
    line = _CC.sub(" ", line)
    return _WS.sub(" ", line).strip()


def strip_markdown(line: str) -> tuple[str, int]:
    """Markdown markup out of one line; returns (text, boundary): 0 for none, 7 for a rule, else heading level."""
    if _MD_RULE.match(line):
        return "", 7
    heading = _MD_HEADING.match(line)
    if heading:  # "## Title ##": the closing sequence out, as the lazy "(.*?)\s*#*\s*$" did, without its cost
        line = heading.group(2).rstrip().rstrip("#").rstrip()
    line = _MD_LIST.sub("", line)
    line = _MD_IMAGE.sub(r"\1", line)
    line = _MD_LINK.sub(r"\1", line)
    line = _MD_HTML.sub("", line)
    for _ in range(2):  # nested emphasis such as ***x*** or **_x_**
        line = _MD_EMPHASIS.sub(_emphasis_text, line)
    return line, len(heading.group(1)) if heading else 0


def _join(left: str, right: str) -> str:
    # Lines of Chinese or Japanese wrapped in the source join without a space; other lines join with one.
    if left and right and is_cjk(left[-1]) and is_cjk(right[0]):
        return left + right
    return f"{left} {right}" if left else right


def to_paragraphs(
    text: str, markdown: bool = False, options: TextOptions | None = None
) -> tuple[list[Paragraph], list[str]]:
    """Split decoded text into normalized paragraphs at blank lines (and markdown headings/rules).

    Returns the paragraphs and the chapter titles: chapter 0 is untitled ("") unless a markdown heading of
    `chapter_heading_level` or higher opens the text; each such heading starts a chapter titled by it.
    """
    opts = options or TextOptions()
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    paragraphs: list[Paragraph] = []
    chapters: list[str] = [""]
    current, start = "", 0
    in_fence = False

    def flush() -> None:
        nonlocal current
        if current:
            paragraphs.append(Paragraph(current, start, len(chapters) - 1))
        current = ""

    for number, raw in enumerate(text.split("\n"), start=1):
        if markdown and _MD_FENCE.match(raw):
            in_fence = not in_fence
            flush()
            continue
        if in_fence and opts.code_blocks == "skip":  # code is not read aloud unless asked
            continue
        line = replace_urls(clean_line(raw), opts.urls)
        boundary = 0
        if markdown and not in_fence:
            line, boundary = strip_markdown(line)
            line = line.strip()
        if boundary:
            flush()
        if 0 < boundary <= opts.chapter_heading_level and line:
            if paragraphs or len(chapters) > 1:  # text before the first heading keeps chapter 0
                chapters.append(line)
            else:
                chapters[0] = line
        if not line:
            flush()
            continue
        if not current:
            start = number
        current = _join(current, line)
        if boundary:
            flush()
    flush()
    return paragraphs, chapters
