from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from tasks.errors import InputError
from tasks.text.decoding import decode
from tasks.text.ingest import read_document, read_documents
from tasks.text.inputs import expand_inputs
from tasks.text.normalize import to_paragraphs

ZH = "他说：“你好。”然后走了！\n第二段的文字。"


def test_utf8_bom_and_utf16_decode(text_file) -> None:  # type: ignore[no-untyped-def]
    for raw, enc in [
        (codecs.BOM_UTF8 + "héllo".encode(), "utf-8-sig"),
        ("héllo".encode("utf-16"), "utf-16"),
        ("héllo".encode(), "utf-8"),
    ]:
        decoded = decode(raw, "x")
        assert (decoded.text, decoded.encoding) == ("héllo", enc)


def test_gbk_chinese_is_detected(text_file) -> None:  # type: ignore[no-untyped-def]
    doc = read_document(text_file(ZH.encode("gbk")))
    assert doc.encoding == "gb18030"
    assert next(iter(doc.paragraphs)).text.startswith("他说:“你好。”然后走了!")


def test_western_code_page_is_detected_and_encoding_overrides(text_file) -> None:  # type: ignore[no-untyped-def]
    path = text_file("first line\nsecond caf\xe9, na\xefve r\xe9sum\xe9\n".encode("latin-1"))
    doc = read_document(path)
    assert doc.encoding == "cp1252"
    assert next(iter(doc.paragraphs)).text == "first line second café, naïve résumé"
    assert read_document(path, encoding="latin-1").encoding == "iso8859-1"
    with pytest.raises(InputError, match=r"input\.txt: line 2: not valid utf-8"):
        read_document(path, encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "file is empty"),
        (b"  \n\n\t ", "file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (bytes(range(1, 32)) * 20, "binary"),
        (b"\x1b[31m\x1b[0m\n* * *\n", None),  # speakable check is later; this file has text
    ],
)
def test_empty_and_binary_files(text_file, content: bytes, words: str | None) -> None:  # type: ignore[no-untyped-def]
    path = text_file(content)
    if words is None:
        assert next(iter(read_document(path).paragraphs)).text == "* * *"
        return
    with pytest.raises(InputError, match=words) as err:
        read_document(path)
    assert str(path) in str(err.value)


def test_missing_file_and_directory_without_text(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_document(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.txt")])
    with pytest.raises(InputError, match=r"holds no \.txt, \.md, \.epub"):
        expand_inputs([str(tmp_path)])


def test_paths_with_spaces_and_chinese_names(text_file) -> None:  # type: ignore[no-untyped-def]
    a = text_file("Hello there.", name="my books/第一章 intro.txt")
    b = text_file("Second file.", name="my books/two.md")
    docs = read_documents([str(a.parent)]).documents
    assert [d.source for d in docs] == sorted([str(a), str(b)])
    assert docs[1].doc_id.startswith("第一章-intro-")


def test_same_file_given_twice_is_read_once(text_file) -> None:  # type: ignore[no-untyped-def]
    a = text_file("Hello there.")
    assert len(read_documents([str(a), str(a.parent / "." / a.name)]).documents) == 1


def test_normalization_removes_escapes_controls_and_keeps_paragraphs() -> None:
    text = "\x1b[1;32mGreen\x1b[0m   text\u200b here\x07.\r\nnext\tline\n\n\n\uff21\uff22 full\u3000width"
    paras, _ = to_paragraphs(text)
    assert [p.text for p in paras] == ["Green text here . next line", "AB full width"]
    assert [p.line for p in paras] == [1, 5]


def test_markdown_markup_is_not_read() -> None:
    md = "# Title\nSome **bold** and _it_ text with [a link](http://x.y).\n```\ncode()\n```\n- item one\n---\nEnd"
    assert [p.text for p in to_paragraphs(md, markdown=True)[0]] == [
        "Title",
        "Some bold and it text with a link.",
        "item one",
        "End",
    ]


def test_wrapped_chinese_lines_join_without_spaces() -> None:
    assert to_paragraphs("第一行\n第二行。")[0][0].text == "第一行第二行。"
