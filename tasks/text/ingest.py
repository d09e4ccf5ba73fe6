"""Input files to documents: each file decoded and read by its kind (text, markdown, EPUB) into paragraphs.

One bad file among several does not stop the others: it is set aside with its reason (`Corpus.rejected`), and
the caller reports it. A single bad input, every input bad, or `strict` stops everything before any work.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from tasks.errors import InputError
from tasks.text.decoding import decode
from tasks.text.inputs import BOOK_SUFFIXES, TABLE_SUFFIXES, Input, expand_inputs, name_of, read_bytes
from tasks.text.normalize import Paragraph, TextOptions, clean_line, to_paragraphs
from tasks.text.text_stream import TextScan, scan_text, text_paragraphs

MARKDOWN_SUFFIXES = (".md", ".markdown")


@dataclass(frozen=True)
class StreamedText:
    """A plain-text file's paragraphs, read from the file each time they are iterated (bounded memory)."""

    item: Input
    scan: TextScan
    urls: str

    def __iter__(self) -> Iterator[Paragraph]:
        return text_paragraphs(self.item, self.scan, self.urls)


@dataclass(frozen=True)
class Reread:
    """A markdown, EPUB or table file's paragraphs, parsed again when iterated (once a corpus holds too much)."""

    item: Input
    encoding: str
    options: TextOptions | None

    def __iter__(self) -> Iterator[Paragraph]:
        return iter(read_document(self.item, self.encoding, self.options).paragraphs)


# Paragraphs of markdown, EPUB and tables held in memory between reading and planning, in characters: past
# this, a document's paragraphs are parsed again when it is planned, so a corpus of many files stays bounded.
HELD_CHARS = 32 << 20


@dataclass(frozen=True)
class Document:
    """One input file, normalized: `doc_id` is stable for the same file name and bytes."""

    doc_id: str
    source: str
    encoding: str
    paragraphs: tuple[Paragraph, ...] | StreamedText | Reread  # plain text streams; see HELD_CHARS for the rest
    chapters: tuple[str, ...] = ("",)  # titles; Paragraph.chapter indexes this
    warnings: tuple[str, ...] = ()
    lang: str = ""  # the language the document declares (an EPUB's dc:language, primary subtag), "" for none

    def describe(self) -> dict[str, object]:
        """What the plan records about this input (its declared language only where it declares one)."""
        described: dict[str, object] = {
            "doc_id": self.doc_id,
            "source": self.source,
            "encoding": self.encoding,
            "chapters": len(self.chapters),
            "warnings": list(self.warnings),
        }
        if self.lang:
            described["lang"] = self.lang
        return described


@dataclass(frozen=True)
class Rejected:
    """An input set aside, and why (the message a single bad input would have stopped the run with)."""

    source: str
    reason: str


@dataclass
class Corpus:
    documents: list[Document]
    rejected: list[Rejected] = field(default_factory=list)


# A chapter's title goes into every row of its chunks: a 1 MB heading line in a 1 MB file made 3 GB of titles (and
# a plan pyarrow could not write). The heading's text is still read as a paragraph; only the title is clipped.
MAX_TITLE_CHARS = 200


def _slug(stem: str) -> str:
    slug = re.sub(r"[^\w.-]+", "-", stem, flags=re.UNICODE).strip("-.")
    return slug[:48] or "doc"


def _read_book(raw: bytes, source: str) -> tuple[list[Paragraph], list[str]]:
    from tasks.text.epub import read_epub

    paragraphs: list[Paragraph] = []
    titles: list[str] = []
    for index, chapter in enumerate(read_epub(raw, source)):
        titles.append(chapter.title)
        paragraphs.extend(p._replace(chapter=index) for p in chapter.paragraphs)
    return paragraphs, titles


def _read_table(
    raw: bytes, suffix: str, source: str, encoding: str, options: TextOptions
) -> tuple[list[Paragraph], str]:
    from tasks.text.tables import read_rows

    rows, used = read_rows(raw, suffix, source, options.bad_rows, encoding)
    return [Paragraph(clean_line(r.text), r.number, 0, r) for r in rows], used


def read_document(path: Input, encoding: str = "auto", options: TextOptions | None = None) -> Document:
    source = str(path)
    name = name_of(path)
    suffix = name.suffix.lower()
    if suffix not in BOOK_SUFFIXES and suffix not in TABLE_SUFFIXES and suffix not in MARKDOWN_SUFFIXES:
        scan = scan_text(path, source, encoding)
        stream = StreamedText(path, scan, (options or TextOptions()).urls)
        return Document(f"{_slug(name.stem)}-{scan.digest[:10]}", source, scan.encoding, stream, ("",), scan.warnings)
    raw = read_bytes(path)
    if not raw.strip():
        raise InputError(f"{source}: file is empty")
    warnings: tuple[str, ...] = ()
    declared = ""
    if suffix in BOOK_SUFFIXES:
        from tasks.text.epub import declared_language

        used = "epub"
        paragraphs, chapters = _read_book(raw, source)
        declared = declared_language(raw)
    elif suffix in TABLE_SUFFIXES:
        paragraphs, used = _read_table(raw, suffix, source, encoding, options or TextOptions())
        chapters = [""]
    else:
        decoded = decode(raw, source, encoding)
        used, warnings = decoded.encoding, decoded.warnings
        paragraphs, chapters = to_paragraphs(decoded.text, True, options)
    if not paragraphs:
        raise InputError(f"{source}: no speakable text after normalization")
    digest = hashlib.sha256(raw).hexdigest()[:10]
    titles = tuple(t if len(t) <= MAX_TITLE_CHARS else t[: MAX_TITLE_CHARS - 1] + "…" for t in chapters)
    return Document(f"{_slug(name.stem)}-{digest}", source, used, tuple(paragraphs), titles, tuple(warnings), declared)


def _reason(exc: InputError) -> str:
    return f"{exc} ({exc.hint})" if exc.hint else str(exc)  # one line: it goes into lists


def read_documents(
    patterns: list[str], encoding: str = "auto", options: TextOptions | None = None, strict: bool = False
) -> Corpus:
    """Read every input. Bad files are set aside when others are good (unless `strict`); else InputError."""
    found = expand_inputs(patterns)
    items = found.items
    docs: list[Document] = []
    rejected = [Rejected(str(path), _reason(exc)) for path, exc in found.refused]
    first_error: InputError | None = found.refused[0][1] if found.refused else None
    held = 0
    for item in items:
        try:
            doc = read_document(item, encoding, options)
            if isinstance(doc.paragraphs, tuple):
                held += sum(len(p.text) for p in doc.paragraphs)
                if held > HELD_CHARS:
                    doc = replace(doc, paragraphs=Reread(item, encoding, options))
            docs.append(doc)
        except InputError as exc:
            first_error = first_error or exc
            rejected.append(Rejected(str(item), _reason(exc)))
    total = len(items) + len(found.refused)
    if first_error is not None and (total == 1 or not docs or strict):
        if len(rejected) == 1:
            raise first_error
        listing = "\n".join(f"  {r.reason}" for r in rejected)
        why = "--strict refuses any bad input" if docs else "no input is readable"
        raise InputError(f"{len(rejected)} of {total} inputs are bad ({why}):\n{listing}") from first_error
    counts: dict[str, int] = {}
    unique = []
    for d in docs:  # identical bytes under the same file name: keep one id per document
        n = counts[d.doc_id] = counts.get(d.doc_id, 0) + 1
        unique.append(d if n == 1 else replace(d, doc_id=f"{d.doc_id}-{n}"))
    return Corpus(unique, rejected)
