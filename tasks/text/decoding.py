"""Bytes of a text file to text: the encoding detected (or given), stray control bytes removed, binary refused.

Detection, in order: a byte-order mark (UTF-8/16/32); strict UTF-8; UTF-16/32 without a mark when NUL bytes
make up a large share; the East Asian legacy encodings (GB18030/GBK, Big5, Shift-JIS), each scored by how
much of the decoded text is its language's common characters (short texts defeat statistical detectors);
then charset-normalizer for the rest, limited to the Windows code pages of European languages (preferring
cp1252).

The binary rule: a file is refused as binary when, after decoding, more than `BINARY_SHARE` of its characters
are control characters other than tab, line feed, carriage return, form feed and escape (ANSI colour codes
are removed later), or when it decodes in no supported encoding. Fewer stray control characters are removed,
with a warning that names the file and the lines they were on.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass

from charset_normalizer import from_bytes

from tasks.errors import InputError

BINARY_SHARE = 0.05
_NUL_SHARE_FOR_UTF16 = 0.2
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_KEPT_CONTROLS = set("\n\r\t\f\x1b")
_MIN_CJK_SCORE = 0.6
# What charset-normalizer may answer: the Windows code pages of European text. Rarer single-byte encodings
# (Urdu cp1006, ISO 8859-5, ...) decode almost any bytes; accepting them would read garbage aloud.
_CODE_PAGES = {"cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257", "koi8_r", "latin_1"}


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str
    warnings: tuple[str, ...] = ()


def decode_bytes(raw: bytes, name: str, partial: bool = False) -> str:
    """Strict decoding; with `partial`, raw is the start of a longer file and may end inside a character."""
    if not partial:
        return raw.decode(name)
    return str(codecs.getincrementaldecoder(name)("strict").decode(raw, final=False))


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _is_stray(c: str) -> bool:
    return unicodedata.category(c) == "Cc" and c not in _KEPT_CONTROLS


# Category Cc is U+0000-001F and U+007F-009F; of those, tab, LF, CR, FF and ESC are kept.
STRAY = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f]")


# --- how much of a decoding is its language's common text -------------------------------------------------------


def _gb_common(c: str) -> bool:
    """GB2312 level-1 hanzi (the 3,755 most common) or GB2312 punctuation and full-width forms."""
    try:
        b = c.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(b) == 2 and (0xB0 <= b[0] <= 0xD7 or 0xA1 <= b[0] <= 0xA3)


def _big5_common(c: str) -> bool:
    """Big5's frequent characters (A440-C67E) or its symbols (A140-A3BF)."""
    try:
        b = c.encode("big5")
    except UnicodeEncodeError:
        return False
    code = int.from_bytes(b, "big") if len(b) == 2 else 0
    return 0xA440 <= code <= 0xC67E or 0xA140 <= code <= 0xA3BF


def _sjis_common(c: str) -> bool:
    """Kana, JIS level-1 kanji or JIS symbols."""
    try:
        b = c.encode("shift_jis")
    except UnicodeEncodeError:
        return False
    code = int.from_bytes(b, "big") if len(b) == 2 else 0
    return 0x889F <= code <= 0x9872 or 0x8140 <= code <= 0x84BE or 0x829F <= code <= 0x8396 or 0xA1 <= code <= 0xDF


_CJK = (("gb18030", _gb_common), ("big5", _big5_common), ("shift_jis", _sjis_common))


def _cjk_guess(raw: bytes, partial: bool) -> tuple[str, str] | None:
    best: tuple[float, str, str] | None = None
    for name, common in _CJK:
        try:
            text = decode_bytes(raw, name, partial)
        except UnicodeDecodeError:
            continue
        wide = [c for c in text if ord(c) > 127 and not c.isspace()]
        if not wide:
            continue
        score = sum(map(common, wide)) / len(wide)
        if score >= _MIN_CJK_SCORE and (best is None or score > best[0]):  # ties keep the earlier (GB18030)
            best = (score, name, text)
    return (best[2], best[1]) if best else None


def _utf16_or_32(raw: bytes, partial: bool) -> tuple[str, str] | None:
    """UTF-16/32 without a byte-order mark: the decoding with the fewest odd characters, then the one whose high
    bytes are where the NULs are (ASCII decodes cleanly both ways round, as itself or as ideographs)."""
    nuls = [raw[k::4].count(0) for k in range(4)]  # NUL bytes at each offset modulo 4
    high_bytes = {"utf-16-le": (1, 3), "utf-16-be": (0, 2), "utf-32-le": (2, 3), "utf-32-be": (0, 1)}
    found = []
    for name, positions in high_bytes.items():
        try:
            text = decode_bytes(raw, name, partial)
        except UnicodeDecodeError:
            continue
        odd = sum(_is_stray(c) or unicodedata.category(c) in ("Co", "Cn", "Cs") for c in text)
        found.append((odd / max(1, len(text)), -sum(nuls[k] for k in positions), name, text))
    if not found:
        return None
    share, _, name, text = min(found)
    # Many NULs mean mostly Latin-1 characters in a wide encoding; anything else is binary that decodes by chance.
    latin = sum(c.isspace() or (" " <= c <= "\xff" and not "\x7f" <= c <= "\x9f") for c in text)
    return (text, name) if share <= BINARY_SHARE and latin >= 0.8 * len(text) else None


def _detect(raw: bytes, source: str, partial: bool = False) -> tuple[str, str]:
    """(text, encoding) of raw; with `partial`, raw is the first block of a longer file (see decode_bytes)."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            try:
                return decode_bytes(raw, name, partial), name
            except UnicodeDecodeError as exc:
                raise InputError(f"{source}: starts with a {name} byte-order mark but is not valid {name}") from exc
    if raw.count(0) / len(raw) > _NUL_SHARE_FOR_UTF16:
        wide = _utf16_or_32(raw, partial)
        if wide:
            return wide
    try:
        return decode_bytes(raw, "utf-8", partial), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    cjk = _cjk_guess(raw, partial)
    if cjk:
        return cjk
    matches = [m for m in from_bytes(raw) if m.encoding in _CODE_PAGES]
    if matches:
        preferred = next((m for m in matches if m.encoding == "cp1252"), matches[0])
        return str(preferred), preferred.encoding
    raise InputError(
        f"{source}: not text in any supported encoding (a binary file?): line {_line_of(raw, utf8_error.start)}, "
        f"byte {raw[utf8_error.start]:#04x} at offset {utf8_error.start}, is not UTF-8",
        hint="if the file is text, name its encoding with --encoding NAME (e.g. big5, latin-1)",
    )


def decode(raw: bytes, source: str, encoding: str = "auto") -> Decoded:
    """Bytes to text. Binary or undecodable bytes raise InputError naming the file (and line)."""
    if encoding != "auto":
        try:
            text, used = raw.decode(encoding), encoding
        except LookupError:
            raise InputError(f"{source}: unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{source}: line {_line_of(raw, exc.start)}: not valid {encoding} (byte {raw[exc.start]:#04x})"
            ) from None
    else:
        text, used = _detect(raw, source)
    return _remove_strays(text, codecs.lookup(used).name, source)


def _remove_strays(text: str, encoding: str, source: str) -> Decoded:
    if not STRAY.search(text):
        return Decoded(text, encoding)
    stray = len(STRAY.findall(text))
    if not stray:
        return Decoded(text, encoding)
    if stray > BINARY_SHARE * len(text):
        raise InputError(
            f"{source}: {stray} of {len(text)} characters are control characters; this looks like a binary "
            f"file, not text (the limit is {BINARY_SHARE:.0%})"
        )
    lines: list[int] = []
    kept: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        clean = STRAY.sub("", line)
        if len(clean) != len(line):
            lines.append(number)
        kept.append(clean)
    warning = stray_warning(source, stray, lines[:10], max(0, len(lines) - 10))
    return Decoded("\n".join(kept), encoding, (warning,))


def detect_encoding(sample: bytes, source: str, partial: bool) -> str:
    """The encoding of a file from its first block (`partial`: more follows), as codecs names it."""
    return codecs.lookup(_detect(sample, source, partial)[1]).name


def check_encoding(name: str, source: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise InputError(f"{source}: unknown encoding {name!r}") from None


def stray_warning(source: str, stray: int, lines: list[int], more_lines: int) -> str:
    shown = ", ".join(map(str, lines)) + (f" and {more_lines} more" if more_lines else "")
    noun = "line" if len(lines) + more_lines == 1 else "lines"
    return f"{source}: removed {stray} stray control character(s) (NUL and the like) on {noun} {shown}"
