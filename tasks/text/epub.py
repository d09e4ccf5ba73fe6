"""EPUB books to chapters of paragraphs: spine order, titles from the table of contents, only the prose read.

ebooklib reads the container (spine, manifest, guide, table of contents) and BeautifulSoup the XHTML. Never
read aloud: the navigation document, spine items marked `linear="no"`, documents the guide or the landmarks
call a cover, table of contents, title or copyright page (or whose body says so in `epub:type`), and inside a
document scripts, styles, footnote references, footnotes and ruby annotations. A paragraph is the text of a
block element with no block inside it (p, h1-h6, li, blockquote, dd, td, figcaption, ...), and its line is
the line of that element in its XHTML file. The book's declared language (its package's first dc:language) is read
by `declared_language`: it says what Han characters without kana are (Chinese or Japanese, tasks.text.chunking).
"""

from __future__ import annotations

import io
import posixpath
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

from tasks.errors import InputError
from tasks.text.normalize import Paragraph, clean_line

# Guide (EPUB 2) and landmark / epub:type (EPUB 3) values of what is not read aloud.
NOT_READ = {
    "cover",
    "toc",
    "title-page",
    "titlepage",
    "halftitlepage",
    "copyright-page",
    "landmarks",
    "loi",
    "lot",
    "index",
    "page-list",
}
_BLOCKS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "div", "section", "article", "dd", "dt",
    "td", "th", "figcaption", "caption", "pre", "header", "footer", "aside",
}  # fmt: skip
_DROPPED_TAGS = ["script", "style", "head", "nav", "rt", "rp", "svg", "math"]
_DROPPED_TYPES = {"noteref", "footnote", "endnote", "rearnote", "note", "pagebreak"}


# A zip bomb is a bad input, not a killed process: the container's sizes are checked before anything is inflated
# (ebooklib reads every manifest item into memory, once per listing). Books run to a few MB of XHTML and images.
MAX_ENTRY_BYTES = 64 << 20  # one file inside the book, uncompressed
MAX_TOTAL_BYTES = 256 << 20  # all of them together
MAX_RATIO = 100  # uncompressed / compressed, for entries over RATIO_FLOOR (XHTML deflates 3-10x; zeros ~1000x)
RATIO_FLOOR = 1 << 20
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Chapter:
    title: str
    href: str  # the XHTML file inside the book
    paragraphs: tuple[Paragraph, ...]


def _flatten_toc(toc: object, titles: dict[str, str]) -> None:
    from ebooklib.epub import Link, Section

    for entry in toc if isinstance(toc, (list, tuple)) else [toc]:
        if isinstance(entry, tuple) and len(entry) == 2:  # (Section, children)
            _flatten_toc(entry[0], titles)
            _flatten_toc(entry[1], titles)
        elif isinstance(entry, (Link, Section)) and getattr(entry, "href", None):
            titles.setdefault(entry.href.split("#")[0], " ".join(entry.title.split()))


def _epub_types(tag: object) -> set[str]:
    value = getattr(tag, "attrs", {}).get("epub:type", "")
    return set(value.split()) if isinstance(value, str) else set(value)


def _landmarks(book: Any, soup_of: Any) -> set[str]:
    """hrefs the EPUB 3 navigation document lists as landmarks that are not read (cover, toc, ...)."""
    import ebooklib

    found: set[str] = set()
    for item in book.get_items_of_type(ebooklib.ITEM_NAVIGATION):
        if not item.get_name().endswith((".xhtml", ".html", ".htm")):
            continue
        soup = soup_of(item.get_content())
        for nav in soup.find_all("nav"):
            if "landmarks" in _epub_types(nav):
                for a in nav.find_all("a"):
                    if _epub_types(a) & NOT_READ and a.get("href"):
                        found.add(_resolve(item.get_name(), a["href"]))
    return found


def _declared_types(soup: Any) -> set[str]:  # bs4's tags, loosely typed
    """epub:type of the body and of its top-level sections: what the document says it is."""
    body = soup.find("body")
    if body is None:
        return set()
    types = _epub_types(body)
    for section in body.find_all("section", recursive=False):
        types |= _epub_types(section)
    return types


def _resolve(base: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), href.split("#")[0]))


def _paragraphs(soup: Any) -> list[Paragraph]:
    for name in _DROPPED_TAGS:
        for tag in soup.find_all(name):
            tag.decompose()
    for tag in soup.find_all(lambda t: bool(_epub_types(t) & _DROPPED_TYPES)):
        tag.decompose()
    body = soup.find("body") or soup
    out: list[Paragraph] = []
    for block in body.find_all(_BLOCKS):
        if block.find(_BLOCKS):  # not a leaf: its inner blocks are the paragraphs
            continue
        text = clean_line(block.get_text(" "))
        if text:
            out.append(Paragraph(text, block.sourceline or 0))
    return out


def _check_container(raw: bytes, source: str) -> None:
    """InputError naming the entry when the zip would inflate past the caps or lists an item twice."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise InputError(f"{source}: the EPUB holds {len(infos)} files (at most {MAX_ENTRIES} are read)")
            total, names = 0, set()
            for info in infos:
                where = f"{source}: entry {info.filename!r}"
                if info.filename in names:
                    raise InputError(f"{where} is in the EPUB twice")
                names.add(info.filename)
                if info.file_size > MAX_ENTRY_BYTES:
                    raise InputError(f"{where} inflates to {info.file_size} bytes (at most {MAX_ENTRY_BYTES})")
                if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                    raise InputError(
                        f"{where} inflates {info.file_size // max(info.compress_size, 1)}-fold "
                        f"(at most {MAX_RATIO}): a zip bomb, not a book"
                    )
                total += info.file_size
                if total > MAX_TOTAL_BYTES:
                    raise InputError(f"{source}: the EPUB inflates to over {MAX_TOTAL_BYTES} bytes")
            _check_manifest(zf, source)
    # zlib.error: a corrupt deflate stream; NotImplementedError: an unknown compression; RuntimeError: encrypted
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,  # a negative seek: offsets in the central directory that point before the file
        zlib.error,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise InputError(f"{source}: not a readable EPUB ({type(exc).__name__}: {exc})") from exc


def _check_manifest(zf: zipfile.ZipFile, source: str) -> None:
    """Refuse a package whose manifest lists one file twice: ebooklib would inflate it once per listing."""
    try:
        container = ElementTree.fromstring(zf.read("META-INF/container.xml"))
        rootfile = container.find(".//{*}rootfile")
        opf_path = rootfile.get("full-path", "") if rootfile is not None else ""
        package = ElementTree.fromstring(zf.read(opf_path))
    except (KeyError, ElementTree.ParseError, LookupError, ValueError):  # LookupError: an unknown encoding
        return  # no container or package to read: ebooklib says why, below
    seen: dict[str, str] = {}
    for item in package.iterfind(".//{*}manifest/{*}item"):
        href = _resolve(opf_path, unquote(item.get("href", "")))
        if href in seen:
            raise InputError(
                f"{source}: entry {href!r} is listed twice in the manifest ({seen[href]!r} and {item.get('id')!r})"
            )
        seen[href] = item.get("id", "")


# ISO 639-2 codes some older books declare instead of BCP 47's two letters
_THREE_LETTER = {"jpn": "ja", "zho": "zh", "chi": "zh", "eng": "en"}


def declared_language(raw: bytes) -> str:
    """The primary language subtag of the book's first dc:language ("ja-JP" and "jpn" are "ja"), else of the
    package's xml:lang; "" when it declares none or the container cannot be read (read_epub says why)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            container = ElementTree.fromstring(zf.read("META-INF/container.xml"))
            rootfile = container.find(".//{*}rootfile")
            package = ElementTree.fromstring(zf.read(rootfile.get("full-path", "") if rootfile is not None else ""))
    except (KeyError, ElementTree.ParseError, LookupError, ValueError, OSError, zipfile.BadZipFile, zlib.error):
        return ""
    found = package.find(".//{*}metadata/{*}language")
    tag = (found.text or "") if found is not None else ""
    tag = tag.strip() or package.get("{http://www.w3.org/XML/1998/namespace}lang", "")
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return _THREE_LETTER.get(primary, primary)


def read_epub(raw: bytes, source: str) -> list[Chapter]:
    """The book's chapters in spine order, each with its title and paragraphs; InputError if unreadable."""
    try:
        from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
        from ebooklib import epub
    except ImportError as exc:
        raise InputError(
            f"{source}: reading EPUB needs the optional extra 'epub' (ebooklib, AGPL-3.0)",
            hint="pip install 'voxbatch[epub]'",
        ) from exc

    def soup_of(data: bytes) -> BeautifulSoup:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            return BeautifulSoup(data, "html.parser")  # html.parser records each element's source line

    _check_container(raw, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib's FutureWarnings about its own defaults
            book = epub.read_epub(io.BytesIO(raw), options={"ignore_ncx": True})
    except (epub.EpubException, zipfile.BadZipFile, KeyError, IndexError, ValueError, AttributeError) as exc:
        detail = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise InputError(f"{source}: not a readable EPUB ({detail})") from exc
    except Exception as exc:  # lxml's XML errors and the like, from a broken container or package file
        raise InputError(f"{source}: not a readable EPUB ({type(exc).__name__}: {exc})") from exc

    try:
        chapters = _chapters(book, soup_of)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:  # ebooklib's view of a broken package
        raise InputError(f"{source}: not a readable EPUB (malformed package: {type(exc).__name__}: {exc})") from exc
    if not chapters:
        raise InputError(f"{source}: the EPUB has no readable chapter (after cover, contents and front matter)")
    return chapters


def _chapters(book: Any, soup_of: Any) -> list[Chapter]:
    import ebooklib
    from ebooklib import epub

    titles: dict[str, str] = {}
    _flatten_toc(book.toc, titles)
    skip = {(g.get("href") or "").split("#")[0] for g in book.guide if (g.get("type") or "").lower() in NOT_READ}
    skip |= _landmarks(book, soup_of)
    chapters: list[Chapter] = []
    for idref, linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or linear == "no":
            continue
        if isinstance(item, epub.EpubNav) or item.get_name() in skip:
            continue
        soup = soup_of(item.get_content())
        if _declared_types(soup) & NOT_READ:
            continue
        heading = soup.find(["h1", "h2", "h3"])
        title = titles.get(item.get_name()) or (clean_line(heading.get_text(" ")) if heading else "")
        paragraphs = _paragraphs(soup)
        if paragraphs:
            chapters.append(Chapter(title or f"Chapter {len(chapters) + 1}", item.get_name(), tuple(paragraphs)))
    return chapters
