"""Input files to documents: find them, decode their bytes, and normalize them into paragraphs."""

from __future__ import annotations

import codecs
import glob
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tasks.errors import InputError
from tasks.normalize import Paragraph, is_cjk, to_paragraphs
from tasks.storage.s3 import S3Store

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class Document:
    """One input file, normalized: `doc_id` is stable for the same file name and bytes."""

    doc_id: str
    source: str
    encoding: str
    paragraphs: tuple[Paragraph, ...]

    @property
    def num_chars(self) -> int:
        return sum(len(p.text) for p in self.paragraphs)


Input = Path | str  # a local path, or an s3:// URI of one object


def _bucket(uri: str) -> tuple[S3Store, str]:
    """The S3 store at the root of the URI's bucket, and the key (or prefix) the URI names in it."""
    store = S3Store(uri)
    return S3Store(f"s3://{store.bucket}"), uri.removeprefix(f"s3://{store.bucket}/")


def _expand_s3(uri: str) -> list[str]:
    """Text objects under an s3://bucket/prefix/ (or one object), in key order."""
    store, prefix = _bucket(uri)
    keys = store.list(prefix)
    if prefix in keys:
        return [uri]
    found = [store.uri(k) for k in keys if PurePosixPath(k).suffix.lower() in TEXT_SUFFIXES]
    if not found:
        raise InputError(f"{uri}: no .txt or .md object under this prefix")
    return found


def expand_inputs(patterns: list[str]) -> list[Input]:
    """Paths, globs and s3:// prefixes to a de-duplicated, ordered list; a directory contributes its text files."""
    found: list[Input] = []
    for pattern in patterns:
        if pattern.startswith("s3://"):
            found.extend(_expand_s3(pattern))
            continue
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputError(f"{pattern}: no file matches this pattern")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                inner = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in TEXT_SUFFIXES)
                if not inner:
                    raise InputError(f"{p}: directory holds no .txt or .md file")
                found.extend(inner)
            else:
                found.append(p)
    seen: set[str] = set()
    unique: list[Input] = []
    for item in found:
        key = item if isinstance(item, str) else str(item.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _read_bytes(item: Input) -> bytes:
    if isinstance(item, str):
        store, key = _bucket(item)
        return store.get(key)
    if not item.exists():
        raise InputError(f"{item}: no such file")
    if item.is_dir():
        raise InputError(f"{item}: is a directory")
    try:
        return item.read_bytes()
    except OSError as exc:
        raise InputError(f"{item}: cannot read: {exc.strerror}") from None


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _looks_chinese(text: str) -> bool:
    # Ideographs plus the punctuation Chinese text uses (fullwidth forms, curly quotes, dashes).
    non_ascii = [c for c in text if ord(c) > 127 and not c.isspace()]
    ideographs = sum(is_cjk(c) for c in non_ascii)
    punctuation = sum(0xFF00 <= ord(c) <= 0xFFEF or 0x2000 <= ord(c) <= 0x206F for c in non_ascii)
    return ideographs > 0 and (ideographs + punctuation) / len(non_ascii) > 0.9


def decode(raw: bytes, source: str, encoding: str = "auto") -> tuple[str, str]:
    """Bytes to text, returning (text, encoding used). Binary or undecodable bytes raise InputError."""
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except LookupError:
            raise InputError(f"{source}: unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{source}: line {_line_of(raw, exc.start)}: not valid {encoding} (byte {raw[exc.start]:#04x})"
            ) from None
    for bom, name in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(name), name
            except UnicodeDecodeError as exc:
                raise InputError(f"{source}: starts with a {name} byte-order mark but is not valid {name}") from exc
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(
            f"{source}: line {_line_of(raw, nul)}: contains NUL bytes; this looks like a binary file, not text"
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    # Chinese text saved by older Windows tools is GBK/GB18030; accept it only if it decodes to mostly CJK.
    try:
        text = raw.decode("gb18030")
        if _looks_chinese(text):
            return text, "gb18030"
    except UnicodeDecodeError:
        pass
    raise InputError(
        f"{source}: line {_line_of(raw, utf8_error.start)}: not UTF-8 text "
        f"(byte {raw[utf8_error.start]:#04x} at offset {utf8_error.start})",
        hint="if the file is text in another encoding, pass --encoding NAME (e.g. big5, latin-1)",
    )


def _check_text(text: str, source: str) -> None:
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\n\r\t\f\x1b")
    if controls > max(8, len(text) // 100):
        raise InputError(f"{source}: {controls} control characters; this looks like a binary file, not text")


def _slug(stem: str) -> str:
    slug = re.sub(r"[^\w.-]+", "-", stem, flags=re.UNICODE).strip("-.")
    return slug[:48] or "doc"


def read_document(path: Input, encoding: str = "auto") -> Document:
    source = str(path)
    raw = _read_bytes(path)
    if not raw.strip():
        raise InputError(f"{source}: file is empty")
    text, used = decode(raw, source, encoding)
    _check_text(text, source)
    name = PurePosixPath(path) if isinstance(path, str) else path
    paragraphs = to_paragraphs(text, markdown=name.suffix.lower() in (".md", ".markdown"))
    if not paragraphs:
        raise InputError(f"{source}: no speakable text after normalization")
    digest = hashlib.sha256(raw).hexdigest()[:10]
    return Document(f"{_slug(name.stem)}-{digest}", source, used, tuple(paragraphs))


def read_documents(patterns: list[str], encoding: str = "auto") -> list[Document]:
    """Read every input; the first bad file stops everything before any work starts."""
    docs = [read_document(p, encoding) for p in expand_inputs(patterns)]
    counts: dict[str, int] = {}
    unique = []
    for d in docs:  # identical bytes under the same file name: keep one id per document
        n = counts[d.doc_id] = counts.get(d.doc_id, 0) + 1
        unique.append(d if n == 1 else Document(f"{d.doc_id}-{n}", d.source, d.encoding, d.paragraphs))
    return unique
