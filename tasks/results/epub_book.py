"""`assemble --format epub`: the run's book as an EPUB 3 with media overlays (read-along: each sentence is
highlighted while it is heard).

The source EPUB is read again from the plan's source path (`row.source`): every file in it is copied as it is,
except the chapters that were read (their sentences wrapped in spans, `tasks.results.read_along`, and a link to
a small stylesheet for the `-epub-media-overlay-active` class) and the package document (the overlays, the
audio and the stylesheet in its manifest, `media-overlay` on the chapters, `media:duration` and
`media:active-class` in its metadata). Beside them, in `voxbatch/`: a SMIL overlay and an MP3 per chapter (the
chapter as `assemble --format mp3` makes it, with the same pauses). Each sentence's clip is its chunk's place in
the chapter's audio plus its sentence timing (`tasks.results.cues.row_sentences`: the manifest's `sentences`, or
the chunk's time divided among its sentences by characters).

A run made from text or markdown, or whose source EPUB cannot be read any more, gets a simple EPUB 3 built from
the rows' text: a chapter per chapter_index, a paragraph per line (with a warning when an EPUB source is gone).
"""

from __future__ import annotations

import html
import io
import logging
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from tasks.errors import InputError
from tasks.results.cues import row_sentences
from tasks.results.read_along import add_stylesheet, wrap_sentences
from tasks.shard.rows import ManifestRow

log = logging.getLogger("voxbatch")
OPF_NS = "http://www.idpf.org/2007/opf"
ACTIVE_CLASS = "-epub-media-overlay-active"
CSS = f".{ACTIVE_CLASS} {{ background-color: #ffe98a; color: inherit; }}\n"
DIR = "voxbatch"  # beside the package document: the overlays, audio and stylesheet added


@dataclass(frozen=True)
class ChapterAudio:
    """A chapter's assembled audio: its bytes (MP3), length, and each row's start in it (seconds)."""

    data: bytes
    seconds: float
    starts: tuple[float, ...]


@dataclass(frozen=True)
class Clip:
    fragment: str  # the id in the chapter's XHTML
    begin: float
    end: float


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _sentences(
    rows: list[ManifestRow], starts: tuple[float, ...], seconds: float
) -> list[tuple[str, str, float, float, int]]:
    """(id, text, begin, end, line) of each sentence of these rows, in order, clips within the audio."""
    out = []
    for row, start in zip(rows, starts, strict=True):
        duration = float(row.duration_s or 0.0)
        for n, span in enumerate(row_sentences(row)):
            a = min(max(span.start_s, 0.0), duration) + start
            b = min(max(span.end_s, 0.0), duration) + start
            text = row.text[span.char_start : span.char_end]
            out.append((f"vb-{row.chunk_index}-{n}", text, min(a, seconds), min(max(a, b), seconds), row.line))
    return out


def smil(chapter_href: str, audio_href: str, clips: list[Clip]) -> bytes:
    """A SMIL media overlay: a `par` per clip (hrefs relative to the SMIL file)."""
    pars = "\n".join(
        f'    <par id="par{i}"><text src="{html.escape(chapter_href)}#{html.escape(c.fragment)}"/>'
        f'<audio src="{html.escape(audio_href)}" clipBegin="{c.begin:.3f}s" clipEnd="{c.end:.3f}s"/></par>'
        for i, c in enumerate(clips, start=1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<smil xmlns="http://www.w3.org/ns/SMIL" xmlns:epub="http://www.idpf.org/2007/ops" version="3.0">\n'
        f"  <body>\n{pars}\n  </body>\n</smil>\n"
    ).encode()


def _opf_path(zf: zipfile.ZipFile, source: str) -> str:
    try:
        container = etree.fromstring(zf.read("META-INF/container.xml"))
        rootfile = container.find(".//{*}rootfile")
        return str(rootfile.get("full-path")) if rootfile is not None else ""
    except (KeyError, etree.XMLSyntaxError) as exc:
        raise InputError(f"{source}: no readable META-INF/container.xml ({exc})") from exc


def _rel(from_file: str, to_file: str) -> str:
    return posixpath.relpath(to_file, posixpath.dirname(from_file) or ".")


def read_along_epub(
    raw: bytes,
    source: str,
    chapters: dict[int, list[ManifestRow]],
    audio: dict[int, ChapterAudio],
    lines: dict[int, dict[int, int]] | None = None,
) -> bytes:
    """The source EPUB (bytes) with a media overlay per chapter of these rows (keyed by chapter index as in
    `tasks.text.epub.read_epub`; `lines`: per chapter, the line in it of each row's line, where they differ);
    everything else in it copied untouched."""
    from tasks.text.epub import read_epub

    read = read_epub(raw, source)
    book = _ebooklib_book(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        opf_path = _opf_path(zf, source)
        base = posixpath.dirname(opf_path)
        changed: dict[str, bytes] = {}
        added: dict[str, tuple[str, bytes]] = {}  # zip path -> (media type, bytes)
        overlays: list[tuple[str, str, str, float]] = []  # (chapter zip path, overlay id, audio id, seconds)
        css_path = posixpath.join(base, DIR, "read-along.css")
        added[css_path] = ("text/css", CSS.encode())
        for index, rows in sorted(chapters.items()):
            if index >= len(read):
                raise InputError(f"{source}: the run has chapter {index + 1}, the EPUB now has {len(read)}")
            chapter = posixpath.join(base, read[index].href)
            ch_audio = audio[index]
            sentences = _sentences(rows, ch_audio.starts, ch_audio.seconds)
            moved = (lines or {}).get(index, {})
            by_line: dict[int, list[tuple[str, str]]] = {}
            for sid, text, *_, line in sentences:
                by_line.setdefault(moved.get(line, line), []).append((sid, text))
            item = book.get_item_with_href(read[index].href)
            where_from = f"{source}: {read[index].href}"
            xhtml, where = wrap_sentences(zf.read(chapter), item.get_content(), list(by_line.items()), where_from)
            changed[chapter] = add_stylesheet(xhtml, _rel(chapter, css_path))
            n = len(overlays) + 1
            audio_path = posixpath.join(base, DIR, f"{n:03d}.mp3")
            smil_path = posixpath.join(base, DIR, f"{n:03d}.smil")
            clips = [Clip(where[sid], a, b) for sid, _, a, b, _ in sentences]
            added[audio_path] = ("audio/mpeg", ch_audio.data)
            added[smil_path] = (
                "application/smil+xml",
                smil(_rel(smil_path, chapter), _rel(smil_path, audio_path), clips),
            )
            overlays.append((chapter, f"vb-mo-{n}", f"vb-audio-{n}", ch_audio.seconds))
        changed[opf_path] = _package(zf.read(opf_path), opf_path, added, overlays, source)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as new:
            new.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip", compress_type=zipfile.ZIP_STORED)
            for info in zf.infolist():
                if info.filename == "mimetype":
                    continue
                data = changed.get(info.filename)
                new.writestr(info, data if data is not None else zf.read(info), compress_type=zipfile.ZIP_DEFLATED)
            for path, (_, data) in added.items():
                new.writestr(path, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _package(
    opf: bytes,
    opf_path: str,
    added: dict[str, tuple[str, bytes]],
    overlays: list[tuple[str, str, str, float]],
    source: str,
) -> bytes:
    """The package document with the overlays, their audio and the stylesheet in it."""
    try:
        root = etree.fromstring(opf, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{source}: {opf_path}: not well-formed ({exc})") from exc
    if not str(root.get("version", "")).startswith("3"):
        raise InputError(f"{source}: an EPUB {root.get('version')} book: media overlays need EPUB 3")
    manifest, metadata = root.find(f"{{{OPF_NS}}}manifest"), root.find(f"{{{OPF_NS}}}metadata")
    if manifest is None or metadata is None:
        raise InputError(f"{source}: {opf_path} has no manifest or metadata")
    base = posixpath.dirname(opf_path)
    by_path = {posixpath.normpath(posixpath.join(base, i.get("href", ""))): i for i in manifest}
    ids = {"vb-css": posixpath.join(base, DIR, "read-along.css")}
    for n, (chapter, mo_id, audio_id, _) in enumerate(overlays, start=1):
        item = by_path.get(chapter)
        if item is None:
            raise InputError(f"{source}: {chapter} is not in the manifest of {opf_path}")
        item.set("media-overlay", mo_id)
        ids[mo_id] = posixpath.join(base, DIR, f"{n:03d}.smil")
        ids[audio_id] = posixpath.join(base, DIR, f"{n:03d}.mp3")
    for item_id, path in ids.items():
        etree.SubElement(
            manifest, f"{{{OPF_NS}}}item", id=item_id, href=_rel(opf_path, path), attrib={"media-type": added[path][0]}
        )
    for _, mo_id, _, seconds in overlays:
        meta = etree.SubElement(metadata, f"{{{OPF_NS}}}meta", property="media:duration", refines=f"#{mo_id}")
        meta.text = _clock(seconds)
    total = etree.SubElement(metadata, f"{{{OPF_NS}}}meta", property="media:duration")
    total.text = _clock(sum(s for *_, s in overlays))
    active = etree.SubElement(metadata, f"{{{OPF_NS}}}meta", property="media:active-class")
    active.text = ACTIVE_CLASS
    return bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="utf-8"))


def simple_epub(
    chapters: dict[int, list[ManifestRow]], title: str, lang: str
) -> tuple[bytes, dict[int, list[ManifestRow]], dict[int, dict[int, int]]]:
    """An EPUB 3 of the rows' text (a run made from text or markdown): a chapter per chapter_index, a `<p>` per
    paragraph (rows sharing a line); the rows by their chapter's index in it, and per chapter the line in it of
    each row's line."""
    from ebooklib import epub

    from tasks.text.epub import read_epub

    book = epub.EpubBook()
    book.set_identifier(f"voxbatch-{title}")
    book.set_title(title)
    book.set_language(lang or "en")
    items, order = [], sorted(chapters)
    for n, index in enumerate(order, start=1):
        rows = chapters[index]
        paragraphs: dict[int, list[str]] = {}
        for r in rows:
            paragraphs.setdefault(r.line, []).append(r.text)
        body = "\n".join(f"<p>{html.escape(' '.join(texts))}</p>" for texts in paragraphs.values())
        name = rows[0].chapter_title or f"Chapter {n}"
        item = epub.EpubHtml(title=name, file_name=f"chapter-{n:03d}.xhtml", lang=lang or "en")
        item.content = f"<html><head><title>{html.escape(name)}</title></head><body>\n{body}\n</body></html>"
        book.add_item(item)
        items.append(item)
    book.toc = [epub.Link(i.file_name, i.title, i.file_name.split(".")[0]) for i in items]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    out = io.BytesIO()
    epub.write_epub(out, book)
    raw = out.getvalue()
    read = read_epub(raw, title)
    moved: dict[int, list[ManifestRow]] = {}
    lines: dict[int, dict[int, int]] = {}
    for new_index, (index, chapter) in enumerate(zip(order, read, strict=True)):
        old = list(dict.fromkeys(r.line for r in chapters[index]))
        new = list(dict.fromkeys(p.line for p in chapter.paragraphs))
        moved[new_index], lines[new_index] = chapters[index], dict(zip(old, new, strict=True))
    return raw, moved, lines


def _ebooklib_book(raw: bytes) -> Any:
    """The book as `tasks.text.epub.read_epub` read it (it has read it without error just before)."""
    import warnings

    from ebooklib import epub

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return epub.read_epub(io.BytesIO(raw), options={"ignore_ncx": True})


def read_source(source: str) -> bytes | None:
    """The source EPUB's bytes, or None when it is not an EPUB or is gone (a warning naming it)."""
    if not source.lower().endswith(".epub"):
        return None
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        log.warning("%s: the source EPUB cannot be read (%s): a simple EPUB is made from the run's text", source, exc)
        return None
