"""The sentences of a chapter's XHTML wrapped in `<span id>`s, for an EPUB 3 media overlay (read-along).

A row's `line` is the line of its paragraph's leaf block element in the chapter's XHTML as ebooklib gives it to
`tasks.text.epub` (ebooklib writes the document anew: its lines are not the file's); the leaf blocks that start
on that line there (a line may hold several) are the paragraph, found in the file's own XHTML by their place
under `<body>` (ebooklib keeps the body's elements as they are). Each sentence's text is found
in their text in order, whitespace left out (footnote references and other parts that are not read are skipped),
and wrapped in one span at the innermost level that holds it whole: a sentence that starts or ends inside an
inline element (`<em>`, `<a>`) takes that whole element into its span, so the markup stays valid and nothing
is split. A sentence that cannot be found (its text was changed when read, e.g. by Unicode normalisation) points
at its whole block (given an id when it has none), so every sentence still has a place in the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lxml import etree

from tasks.errors import InputError

XHTML = "http://www.w3.org/1999/xhtml"
EPUB_NS = "http://www.idpf.org/2007/ops"
BLOCKS = {
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "blockquote",
    "div",
    "section",
    "article",
    "dd",
    "dt",
    "td",
    "th",
    "figcaption",
    "caption",
    "pre",
    "header",
    "footer",
    "aside",
}  # fmt: skip  (tasks.text.epub's leaf blocks)
SKIPPED_TAGS = {"script", "style", "head", "nav", "rt", "rp", "svg", "math"}
SKIPPED_TYPES = {"noteref", "footnote", "endnote", "rearnote", "note", "pagebreak"}
_MARK = f"{{{XHTML}}}voxbatch-mark"


def _local(el: Any) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _skipped(el: Any) -> bool:
    types = set((el.get(f"{{{EPUB_NS}}}type") or "").split())
    return _local(el) in SKIPPED_TAGS or bool(types & SKIPPED_TYPES)


def _leaf_blocks(root: Any, line: int) -> list[Any]:
    found = []
    for el in root.iter():
        if not isinstance(el.tag, str) or el.sourceline != line or _local(el) not in BLOCKS:
            continue
        if any(_local(d) in BLOCKS for d in el.iterdescendants() if isinstance(d.tag, str)):
            continue
        if any(_skipped(a) for a in el.iterancestors()) or _skipped(el):
            continue
        found.append(el)
    return found


def _pieces(el: Any) -> Iterator[tuple[Any, str, str]]:
    """The element's text read aloud, as (element, "text" | "tail", string) in document order."""
    if el.text:
        yield el, "text", el.text
    for child in el:
        if isinstance(child.tag, str) and not _skipped(child):
            yield from _pieces(child)
        if child.tail:
            yield child, "tail", child.tail


def _stream(blocks: list[Any]) -> list[tuple[Any, str, int]]:
    """Each character that is not whitespace, as (element, "text" | "tail", offset), in order."""
    return [
        (el, kind, i) for block in blocks for el, kind, s in _pieces(block) for i, c in enumerate(s) if not c.isspace()
    ]


def _insert_mark(el: Any, kind: str, offset: int) -> Any:
    mark = etree.Element(_MARK)
    if kind == "text":
        s = el.text or ""
        el.text, mark.tail = s[:offset], s[offset:]
        el.insert(0, mark)
    else:
        s = el.tail or ""
        el.tail, mark.tail = s[:offset], s[offset:]
        el.addnext(mark)
        mark.tail = s[offset:]  # addnext moves el's tail: set again
    return mark


def _remove(el: Any) -> None:
    """The element out of the tree, its tail kept where it was."""
    parent, tail = el.getparent(), el.tail or ""
    prev = el.getprevious()
    if prev is not None:
        prev.tail = (prev.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(el)


def _wrap(start: Any, end: Any, span_id: str) -> None:
    """Everything from mark `start` to mark `end` in one span, at their innermost common level."""
    ancestors = [start, *start.iterancestors()]
    end_line = [end, *end.iterancestors()]
    common = next(a for a in end_line[1:] if a in ancestors)
    first = ancestors[ancestors.index(common) - 1]  # the mark, or the inline element holding it
    last = end_line[end_line.index(common) - 1]
    span = etree.Element(f"{{{XHTML}}}span", id=span_id)
    first.addprevious(span)  # takes no tail: the text before the sentence stays where it was
    span.tail = None
    siblings, el = [], first
    while el is not None:
        siblings.append(el)
        if el is last:
            break
        el = el.getnext()
    after = last.tail
    for el in siblings:
        span.append(el)  # with its tail
    last.tail = None
    span.tail = after
    for mark in (start, end):
        _remove(mark)


def _parse(xhtml: bytes, source: str) -> Any:
    try:
        return etree.fromstring(xhtml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{source}: not well-formed XHTML ({exc})") from exc


def _body(root: Any) -> Any:
    return next((el for el in root.iter(f"{{{XHTML}}}body")), root)


def _place(el: Any, body: Any) -> list[int]:
    """The element's path under body: its index among its parent's elements, at each level."""
    path = []
    while el is not body and el.getparent() is not None:
        parent = el.getparent()
        path.append([c for c in parent if isinstance(c.tag, str)].index(el))
        el = parent
    return path[::-1]


def _at(body: Any, path: list[int]) -> Any:
    el = body
    for i in path:
        children = [c for c in el if isinstance(c.tag, str)]
        if i >= len(children):
            return None
        el = children[i]
    return el


def wrap_sentences(
    xhtml: bytes, read_as: bytes, paragraphs: list[tuple[int, list[tuple[str, str]]]], source: str
) -> tuple[bytes, dict[str, str]]:
    """The chapter's file `xhtml` with each (id, sentence) of each (line, sentences) wrapped in a span with that
    id, lines being those of `read_as` (ebooklib's version of it, which the run read); and the fragment each
    id's sentence is found at (its own id, or its block's where its text was not found)."""
    root, read_root = _parse(xhtml, source), _parse(read_as, source)
    body, read_body = _body(root), _body(read_root)
    where: dict[str, str] = {}
    for line, sentences in paragraphs:
        found = (_at(body, _place(b, read_body)) for b in _leaf_blocks(read_root, line))
        blocks = [b for b in found if b is not None]
        if not blocks:
            target = _id_of(body, "voxbatch-body")
            where.update((sid, target) for sid, _ in sentences)
            continue
        cursor = 0
        for sid, sentence in sentences:
            stream = _stream(blocks)
            letters = "".join((el.text if kind == "text" else el.tail)[i] for el, kind, i in stream)
            wanted = "".join(sentence.split())
            at = letters.find(wanted, cursor) if wanted else -1
            if at < 0:
                where[sid] = _id_of(blocks[0], f"{sid}-block")
                continue
            cursor = at + len(wanted)
            end_el, end_kind, end_i = stream[cursor - 1]
            end = _insert_mark(end_el, end_kind, end_i + 1)  # the end first: the start's offsets stay right
            start_el, start_kind, start_i = stream[at]
            start = _insert_mark(start_el, start_kind, start_i)
            _wrap(start, end, sid)
            where[sid] = sid
    out = etree.tostring(root.getroottree(), xml_declaration=True, encoding="utf-8")
    return out, where


def _id_of(el: Any, fallback: str) -> str:
    if not el.get("id"):
        el.set("id", fallback)
    return str(el.get("id"))


def add_stylesheet(xhtml: bytes, href: str) -> bytes:
    """The chapter with a `<link rel="stylesheet">` to href in its head."""
    root = etree.fromstring(xhtml, etree.XMLParser(resolve_entities=False, no_network=True))
    head = root.find(f"{{{XHTML}}}head")
    if head is None:
        head = etree.Element(f"{{{XHTML}}}head")
        root.insert(0, head)
    etree.SubElement(head, f"{{{XHTML}}}link", rel="stylesheet", type="text/css", href=href)
    return bytes(etree.tostring(root.getroottree(), xml_declaration=True, encoding="utf-8"))
