"""Plain-text files read in blocks, so a file of any size is planned in bounded memory.

Two passes over the bytes, each streamed (a local file or an S3 object alike; the second pass over an S3 object
reads the version the first one read). `scan_text` detects the encoding from the first block, then decodes every block
strictly, counts stray control characters (with the lines they are on) and digests the bytes: a bad file is
refused before any of its chunks is planned. `text_paragraphs` reads again and yields normalized paragraphs
(blank lines separate them, as in tasks.text.normalize), each paragraph's text made with a few whole-string passes
rather than a loop over characters. A paragraph longer than `MAX_PARAGRAPH` characters (a file with no blank
lines) is cut at a line break, or at a space when it has none.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from tasks.errors import InputError
from tasks.text.decoding import BINARY_SHARE, STRAY, check_encoding, detect_encoding, stray_warning
from tasks.text.inputs import Input, open_blocks
from tasks.text.normalize import ANSI_ESCAPE, CJK_CHAR, INVISIBLE, Paragraph, replace_urls

BLOCK = 4 << 20  # bytes read at a time
MAX_PARAGRAPH = 1 << 20  # characters: a longer paragraph is cut at a line break
_PARAGRAPH = re.compile(r"[^\S\n]*\S.*(?:\n[^\S\n]*\S.*)*")  # consecutive lines that are not blank
_CJK_BREAK = re.compile(f"({CJK_CHAR.pattern})\\s*\\n\\s*(?={CJK_CHAR.pattern})")  # wrapped Chinese, Japanese: no space
_CC = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_WS = re.compile(r"\s+")
_VISIBLE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\u00ad\u200b\u200c\u200e\u200f\u2060\ufeff]")


@dataclass(frozen=True)
class TextScan:
    """What the first pass found: the encoding, a digest of the bytes, and warnings about stray bytes."""

    encoding: str
    digest: str
    warnings: tuple[str, ...] = ()
    strays: bool = False
    version: str = ""  # an S3 object's ETag: the second pass reads the same object or refuses


def _close(blocks: Iterator[bytes]) -> None:
    """Close a block generator early (on an error, or when the planner stops): it holds the file or the
    response open."""
    close = getattr(blocks, "close", None)
    if close is not None:
        close()


_NOT_STRAY_ASCII = bytes(b for b in range(0x80) if not STRAY.match(chr(b)))


def _may_have_strays(text: str) -> bool:
    """False when ASCII text has no stray control character (a quick check before the regex scan)."""
    return not text.isascii() or bool(text.encode("ascii").translate(None, _NOT_STRAY_ASCII))


def scan_text(item: Input, source: str, encoding: str = "auto") -> TextScan:
    """First pass: InputError naming the file (and line) if it is empty, binary or not in its encoding."""
    digest = hashlib.sha256()
    decoder: codecs.IncrementalDecoder | None = None
    name = ""
    lines_before = total = stray = 0
    stray_lines: list[int] = []
    more_lines = 0
    speakable = nonblank = False
    version, blocks = open_blocks(item, BLOCK)
    try:
        for raw in blocks:
            if decoder is None:
                if encoding == "auto":
                    name = detect_encoding(raw, source, partial=len(raw) == BLOCK)
                else:
                    name = check_encoding(encoding, source)
                decoder = codecs.getincrementaldecoder(name)("strict")
            digest.update(raw)
            text = _decode(decoder, raw, name, source, lines_before, final=False)
            total += len(text)
            nonblank = nonblank or not text.isspace()
            speakable = speakable or bool(_VISIBLE.search(text))
            if _may_have_strays(text) and STRAY.search(text):
                last, line = 0, lines_before + 1
                for m in STRAY.finditer(text):
                    stray += 1
                    line += text.count("\n", last, m.start())
                    last = m.start()
                    if not stray_lines or stray_lines[-1] != line:
                        if len(stray_lines) < 10:
                            stray_lines.append(line)
                        elif line != stray_lines[-1]:
                            more_lines += 1
            lines_before += text.count("\n")
    finally:
        _close(blocks)
    if decoder is None or not nonblank:
        raise InputError(f"{source}: file is empty")
    total += len(_decode(decoder, b"", name, source, lines_before, final=True))
    if stray > BINARY_SHARE * total:
        raise InputError(
            f"{source}: {stray} of {total} characters are control characters; this looks like a binary "
            f"file, not text (the limit is {BINARY_SHARE:.0%})"
        )
    if not speakable:
        raise InputError(f"{source}: no speakable text after normalization")
    warnings = (stray_warning(source, stray, stray_lines, more_lines),) if stray else ()
    return TextScan(name, digest.hexdigest(), warnings, bool(stray), version)


def _decode(
    decoder: codecs.IncrementalDecoder, raw: bytes, name: str, source: str, lines_before: int, final: bool
) -> str:
    try:
        return str(decoder.decode(raw, final=final))
    except UnicodeDecodeError as exc:
        line = lines_before + exc.object[: exc.start].count(b"\n") + 1
        byte = f"byte {exc.object[exc.start]:#04x}" if exc.start < len(exc.object) else "the file ends mid-character"
        raise InputError(
            f"{source}: line {line}: not valid {name} ({byte})",
            hint="name the file's encoding with --encoding NAME (e.g. gb18030, big5, latin-1)",
        ) from None


def clean_paragraph(text: str, urls: str) -> str:
    """One paragraph's lines to one normalized line: escapes, NFKC, controls and invisibles out, whitespace."""
    if "\x1b" in text:
        text = ANSI_ESCAPE.sub("", text)
    if text.isascii():
        text = text.replace("\n", " ")
        if "  " in text or not text.isprintable():
            text = _WS.sub(" ", _CC.sub(" ", text))
    else:
        text = unicodedata.normalize("NFKC", text).translate(INVISIBLE)
        if CJK_CHAR.search(text):
            text = _CJK_BREAK.sub(r"\1", text)
        text = _WS.sub(" ", _CC.sub(" ", text))
    if urls != "read" and ("://" in text or "www." in text.lower()):
        text = _WS.sub(" ", replace_urls(text, urls))
    return text.strip()


_PRINTABLE_ASCII_AND_NEWLINE = bytes(range(0x20, 0x7F)) + b"\n"


def _is_plain(text: str, urls: str) -> bool:
    """True when `clean_paragraph` would only join lines and collapse spaces in every paragraph of this text:
    ASCII with no control character but newlines, and no URL to handle (one check per block, not per paragraph;
    deleting the allowed bytes and finding none left is several times quicker than a regex search)."""
    return (
        text.isascii()
        and not text.encode("ascii").translate(None, _PRINTABLE_ASCII_AND_NEWLINE)
        and (urls == "read" or ("://" not in text and "www." not in text.lower()))
    )


def _clean_plain(text: str, urls: str) -> str:
    """`clean_paragraph` for a paragraph of a text `_is_plain` accepted."""
    text = text.replace("\n", " ")
    if "  " in text:
        text = _WS.sub(" ", text)
    return text.strip()


def _cut(buffer: str, final: bool) -> int:
    """Where the paragraphs complete in `buffer` end: after its last blank line (or the whole of a final one)."""
    if final:
        return len(buffer)
    cut = buffer.rfind("\n\n")
    if cut >= 0:
        return cut + 1
    if len(buffer) <= MAX_PARAGRAPH:
        return 0
    for sep in ("\n", " "):  # a paragraph this long is cut at a line break, else at a space, else anywhere
        cut = buffer.rfind(sep)
        if cut > 0:
            return cut + 1
    return len(buffer)


def text_paragraphs(item: Input, scan: TextScan, urls: str = "link") -> Iterator[Paragraph]:
    """Second pass: the file's normalized paragraphs with the line each starts on."""
    decoder = codecs.getincrementaldecoder(scan.encoding)("strict")
    _, blocks = open_blocks(item, BLOCK, scan.version)
    try:
        yield from _paragraphs_of(blocks, decoder, scan, urls)
    finally:
        _close(blocks)  # when the planner stops early too


def _paragraphs_of(
    blocks: Iterator[bytes], decoder: codecs.IncrementalDecoder, scan: TextScan, urls: str
) -> Iterator[Paragraph]:
    buffer, line = "", 1  # the text not yet split into paragraphs, and the line it starts on
    held = ""  # a CR at the end of a block: it may be the first half of CR LF
    while True:
        raw = next(blocks, None)
        final = raw is None
        text = held + str(decoder.decode(raw or b"", final=final))
        held = ""
        if not final and text.endswith("\r"):
            text, held = text[:-1], "\r"
        if scan.strays:
            text = STRAY.sub("", text)
        if "\r" in text or "\u2028" in text or "\u2029" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
        buffer += text
        cut = _cut(buffer, final)
        head, buffer = buffer[:cut], buffer[cut:]
        clean = _clean_plain if _is_plain(head, urls) else clean_paragraph
        last = 0
        for m in _PARAGRAPH.finditer(head):
            line += head.count("\n", last, m.start())
            last = m.start()
            cleaned = clean(m.group(0), urls)
            if cleaned:
                yield Paragraph(cleaned, line)
        line += head.count("\n", last)
        if final:
            return
