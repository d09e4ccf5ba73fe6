"""Real inputs, made in the tests: an EPUB built with ebooklib, markdown, legacy encodings, stray bytes, and a
folder mixing good and bad files, through `voxbatch plan` (in-process) and the plan written to disk."""

from __future__ import annotations

import codecs
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main
from tasks.errors import EXIT_BAD_INPUT, EXIT_CHUNKS_FAILED, InputError
from tasks.text.ingest import read_document, read_documents
from tasks.text.normalize import TextOptions, to_paragraphs
from tests.helpers import make_epub

ZH_SIMPLIFIED = "小港的早晨。天刚亮，渔船就陆续出海了。码头上堆着渔网和木箱。"
ZH_TRADITIONAL = "小港的早晨。天剛亮，漁船就陸續出海了。碼頭上堆著漁網和木箱。"


def test_epub_chapters_in_spine_order_with_titles_and_nothing_else(tmp_path: Path) -> None:
    doc = read_document(make_epub(tmp_path / "harbour.epub"))
    text = " ".join(p.text for p in doc.paragraphs)
    for never in ("COVER", "TITLE PAGE", "COPYRIGHT", "FOOTNOTE", "HIDDEN", "color", "NON LINEAR", "Table of"):
        assert never not in text, never
    assert doc.chapters == ("Morning", "Evening")
    assert [(p.chapter, p.text) for p in doc.paragraphs] == [
        (0, "Chapter One"),
        (0, "The boats left the harbour at dawn."),
        (0, "Gulls followed them out."),
        (0, "The sea was calm."),
        (1, "Chapter Two"),
        (1, "They came back before dark."),
    ]
    assert all(p.line > 0 for p in doc.paragraphs)  # the element's line in its XHTML file
    assert doc.encoding == "epub"


def test_broken_epubs_are_refused_naming_the_file(tmp_path: Path) -> None:
    not_zip = tmp_path / "not a zip.epub"
    not_zip.write_bytes(b"plain text, not a zip archive " * 10)
    with pytest.raises(InputError, match=r"not a zip\.epub: not a readable EPUB"):
        read_document(not_zip)
    good = make_epub(tmp_path / "good.epub").read_bytes()
    truncated = tmp_path / "truncated.epub"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match=r"truncated\.epub: not a readable EPUB"):
        read_document(truncated)


def test_markdown_headings_make_chapters_and_settings_decide_code_and_urls() -> None:
    md = (
        "# The Book\n\nIntro text, see https://example.com/a?b=1.\n\n"
        "## First\n\nSome **bold** text.\n\n```python\nprint('code')\n```\n\n"
        "### A subsection\n\nStill the first chapter.\n\n## Second\n\nVisit www.example.org today."
    )
    paragraphs, chapters = to_paragraphs(md, markdown=True)
    assert chapters == ["The Book", "First", "Second"]
    by_chapter = {c: [p.text for p in paragraphs if p.chapter == c] for c in range(3)}
    assert by_chapter[0] == ["The Book", "Intro text, see link."]
    assert by_chapter[1] == ["First", "Some bold text.", "A subsection", "Still the first chapter."]
    assert by_chapter[2] == ["Second", "Visit link today."]

    read_code, _ = to_paragraphs(md, markdown=True, options=TextOptions(code_blocks="read", urls="skip"))
    texts = [p.text for p in read_code]
    assert "print('code')" in texts and "Intro text, see ." in texts
    one_level, chapters = to_paragraphs(md, markdown=True, options=TextOptions(chapter_heading_level=1))
    assert chapters == ["The Book"] and {p.chapter for p in one_level} == {0}


@pytest.mark.parametrize(
    ("raw", "encoding", "expected"),
    [
        (ZH_SIMPLIFIED.encode("gb18030"), "gb18030", ZH_SIMPLIFIED),
        (ZH_TRADITIONAL.encode("big5"), "big5", ZH_TRADITIONAL),
        (codecs.BOM_UTF16_LE + ZH_SIMPLIFIED.encode("utf-16-le"), "utf-16", ZH_SIMPLIFIED),
        (ZH_SIMPLIFIED.encode("utf-32"), "utf-32", ZH_SIMPLIFIED),
        ("Hello there, this is text.".encode("utf-16-le"), "utf-16-le", "Hello there, this is text."),
        ("これは日本語の文章です。".encode("shift_jis"), "shift_jis", "これは日本語の文章です。"),
        (codecs.BOM_UTF8 + b"Plain text.", "utf-8-sig", "Plain text."),
    ],
)
def test_encodings_are_detected(text_file, raw: bytes, encoding: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    doc = read_document(text_file(raw))
    assert doc.encoding == encoding
    assert next(iter(doc.paragraphs)).text == expected.replace("，", ",")  # NFKC: full-width comma to ASCII


def test_stray_control_bytes_are_removed_with_a_warning_naming_the_line(text_file) -> None:  # type: ignore[no-untyped-def]
    path = text_file(b"First line is fine.\nSecond\x00 line has a NUL.\nThird \x07has a bell.\nFourth.\n")
    doc = read_document(path)
    assert next(iter(doc.paragraphs)).text == "First line is fine. Second line has a NUL. Third has a bell. Fourth."
    (warning,) = doc.warnings
    assert str(path) in warning and "lines 2, 3" in warning and "removed 2" in warning


def test_a_folder_with_bad_files_plans_the_good_ones_and_exits_3(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a good.txt").write_text("A good file. It has two sentences.")
    (folder / "b empty.txt").write_bytes(b"")
    (folder / "c binary.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "d chinese.txt").write_bytes(ZH_SIMPLIFIED.encode("gb18030"))
    (folder / "e broken.epub").write_bytes(b"PK\x03\x04 not really")
    make_epub(folder / "f book.epub")

    code = main(["plan", str(folder), "--voice", "joe", "--lang", "en", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == EXIT_CHUNKS_FAILED, err
    assert "3 input file(s) set aside" in err
    for name, why in (("b empty.txt", "file is empty"), ("c binary.txt", "binary"), ("e broken.epub", "EPUB")):
        assert f"{folder / name}: " in err and why in err
    assert "(gb18030)" in out and "(epub, 2 chapters)" in out
    (plan_file,) = (tmp_path / "out").rglob("plan.parquet")
    table = pq.read_table(plan_file)
    assert set(table.column("source").to_pylist()) == {
        str(folder / n) for n in ("a good.txt", "d chinese.txt", "f book.epub")
    }
    rows = [r for r in table.to_pylist() if r["source"].endswith("f book.epub")]
    chapters = [(r["chapter_index"], r["chapter_title"]) for r in rows]
    assert chapters[0] == (0, "Morning") and chapters[-1] == (1, "Evening")

    assert main(["plan", str(folder), "--lang", "en", "--strict"]) == EXIT_BAD_INPUT
    assert "--strict refuses any bad input" in capsys.readouterr().err


def test_single_bad_input_keeps_exit_2_and_all_bad_inputs_too(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert main(["plan", str(empty)]) == EXIT_BAD_INPUT
    assert f"{empty}: file is empty" in capsys.readouterr().err
    other = tmp_path / "other.txt"
    other.write_bytes(b"\x00\x01\x02\x03" * 100)
    assert main(["plan", str(empty), str(other)]) == EXIT_BAD_INPUT
    assert "2 of 2 inputs are bad (no input is readable)" in capsys.readouterr().err


def test_mixed_inputs_files_globs_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("One.")
    (tmp_path / "b.md").write_text("# Two\n\nTwo.")
    make_epub(tmp_path / "c.epub")
    corpus = read_documents([str(tmp_path / "a"), str(tmp_path / "*.md"), str(tmp_path / "c.epub")])
    assert [Path(d.source).name for d in corpus.documents] == ["one.txt", "b.md", "c.epub"]
    assert corpus.rejected == []


@pytest.mark.slow
def test_a_run_over_a_book_and_a_bad_file_delivers_chapters_and_exits_3(tmp_path: Path, api_url: str) -> None:
    from tests.helpers import voxbatch

    folder = tmp_path / "in"
    folder.mkdir()
    make_epub(folder / "harbour.epub")
    (folder / "notes.txt").write_bytes(b"Scraped text.\x00 It has a stray NUL.\n")
    (folder / "zz junk.txt").write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "out"
    result = voxbatch("run", str(folder), "--out", str(out), api=api_url)
    assert result.returncode == EXIT_CHUNKS_FAILED, result.stderr
    assert "INPUTS SET ASIDE: 1 file(s)" in result.stdout and "zz junk.txt" in result.stdout
    assert "removed 1 stray control character(s)" in result.stderr and "notes.txt" in result.stderr
    assert "ok 7, failed 0" in result.stdout, result.stdout  # 6 paragraphs of the book, 1 of notes
    (manifest,) = out.glob("runs/*/manifest.parquet")
    rows = pq.read_table(manifest).to_pylist()
    book = [r for r in rows if r["source"].endswith("harbour.epub")]
    assert [r["chapter_title"] for r in book] == ["Morning"] * 4 + ["Evening"] * 2
    assert all(r["status"] == "ok" and r["duration_s"] > 0.5 for r in rows)
    assert any(r["text"] == "Scraped text. It has a stray NUL." for r in rows)
