"""A held-out EPUB 3 for the read-along tests: three chapters, a footnote, an image, a stylesheet, a table, and
sentences that cross inline elements (not the book the reading tests are built around)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from ebooklib import epub

# chapter file -> (title, body); each leaf block on its own line, as publishers' files have them
CHAPTERS = {
    "tide.xhtml": (
        "The Tide",
        "<h1>The Tide</h1>\n"
        "<p>The tide came in at <em>six o'clock, as the almanac said.</em> Nobody was on the sand.</p>\n"
        '<p>Old Tomas watched it from the <a href="reef.xhtml">reef path</a>, counting waves.'
        '<a epub:type="noteref" href="#fn1" id="ref1">1</a> He had counted them for forty years.</p>\n'
        '<figure><img src="images/harbour.png" alt="A small harbour at high tide"/>'
        "<figcaption>The harbour at high tide.</figcaption></figure>\n"
        '<aside epub:type="footnote" id="fn1"><p>Tomas kept his counts in a blue ledger.</p></aside>',
    ),
    "reef.xhtml": (
        "The Reef",
        "<h1>The Reef</h1>\n"
        "<p>Beyond the harbour lay the reef. Its rocks were <strong>black and sharp, and the gulls</strong> "
        "nested on them every spring.</p>\n"
        "<table><tr><td>Spring tide</td><td>Neap tide</td></tr></table>\n"
        "<p>When the wind turned west, the reef sang.</p>",
    ),
    "lamp.xhtml": ("The Lamp", "<h1>The Lamp</h1>\n<p>At dusk the lamp was lit. It burned until morning.</p>"),
}
CSS = b"body { font-family: serif; } figure img { width: 60%; }\n"


def png() -> bytes:
    """A small real PNG (a colour gradient), written by hand with zlib."""
    width, height = 32, 16
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 8, 64 + y * 8, 160)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make_read_along_epub(path: Path) -> Path:
    book = epub.EpubBook()
    book.set_identifier("voxbatch-read-along-test")
    book.set_title("Tides")
    book.set_language("en")
    style = epub.EpubItem(uid="style", file_name="style/book.css", media_type="text/css", content=CSS)
    book.add_item(style)
    book.add_item(epub.EpubImage(uid="harbour", file_name="images/harbour.png", media_type="image/png", content=png()))
    items = []
    for name, (title, body) in CHAPTERS.items():
        item = epub.EpubHtml(title=title, file_name=name, lang="en")
        item.content = f"<html><head><title>{title}</title></head><body>{body}</body></html>"
        item.add_item(style)
        book.add_item(item)
        items.append(item)
    book.toc = [epub.Link(i.file_name, i.title, i.file_name.split(".")[0]) for i in items]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    epub.write_epub(str(path), book)
    return path
