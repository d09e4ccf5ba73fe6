"""assemble --format epub: the book's own XHTML with a span per sentence, a SMIL overlay and audio per chapter,
valid EPUB 3 (epubcheck), everything else in the book copied untouched."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
from lxml import etree

from tasks.audio import dsp
from tasks.results.read_along import wrap_sentences
from tests.epub_books import make_read_along_epub
from tests.listen import first_word_gaps, timed_words

CHAPTER = b"""<?xml version='1.0' encoding='utf-8'?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"><head><title>t</title></head>
<body>
<p>One <em>two. Three</em> four.<a epub:type="noteref" href="#n">1</a> Five <b>six</b>.</p>
<p>Caf\xc3\xa9 \xef\xac\x81ne.</p>
</body></html>"""


def test_sentences_are_wrapped_at_their_innermost_common_level() -> None:
    paragraphs = [(4, [("a", "One two."), ("b", "Three four."), ("c", "Five six.")]), (5, [("d", "Cafe fine.")])]
    out, where = wrap_sentences(CHAPTER, CHAPTER, paragraphs, "book.epub")
    root = etree.fromstring(out)
    spans = {s.get("id"): s for s in root.iter("{http://www.w3.org/1999/xhtml}span")}
    text = {k: " ".join("".join(s.itertext()).split()) for k, s in spans.items()}
    # "One two." ends inside <em>: the whole <em> goes into its span; "Three four." starts inside it, so its span
    # holds that one (nested spans: valid, and each sentence has its own id)
    assert text["a"] == "One two. Three" and where["a"] == "a"
    assert text["b"] == "One two. Three four." and spans["b"].find(".//*[@id='a']") is not None and where["b"] == "b"
    assert text["c"] == "Five six." and spans["c"].find("{http://www.w3.org/1999/xhtml}b") is not None
    # a footnote reference is left outside every span, untouched
    ref = root.find(".//{http://www.w3.org/1999/xhtml}a")
    assert ref is not None and ref.getparent().tag.endswith("p") and ref.text == "1"
    # text that changed when read (here "Cafe fine." for "Café ﬁne.") points at its block, given an id
    assert where["d"] == "d-block" and root.find(".//*[@id='d-block']").text.startswith("Caf")
    assert "".join(root.itertext()).split() == "".join(etree.fromstring(CHAPTER).itertext()).split()


def _clips(smil: bytes) -> list[tuple[str, str, float, float]]:
    root = etree.fromstring(smil)
    out = []
    for par in root.iter("{http://www.w3.org/ns/SMIL}par"):
        text = par.find("{http://www.w3.org/ns/SMIL}text")
        audio = par.find("{http://www.w3.org/ns/SMIL}audio")
        assert text is not None and audio is not None
        begin, end = (float(audio.get(k, "").rstrip("s")) for k in ("clipBegin", "clipEnd"))
        out.append((text.get("src", ""), audio.get("src", ""), begin, end))
    return out


def _srt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.strip().replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _placed(clips: list[tuple[float, float, str]]) -> tuple[str, list[tuple[float, int, int]]]:
    """The clips' sentences as one text, and each clip's begin and characters in it."""
    text, placed = "", []
    for begin, _, sentence in clips:
        placed.append((begin, len(text), len(text) + len(sentence)))
        text += sentence + " "
    return text, placed


@pytest.mark.slow
@pytest.mark.needs("epubcheck")
def test_a_real_run_becomes_a_valid_read_along_epub(prefect_api: None, tmp_path: Path) -> None:
    from flows.corpus import corpus_flow
    from tasks.results.assemble import assemble_run
    from tasks.storage import open_store

    book = make_read_along_epub(tmp_path / "tides.epub")
    out = tmp_path / "out"
    summary = corpus_flow([str(book)], str(out), {"run": {"shard_size": 4}})  # the real voice
    (made,) = assemble_run(open_store(str(out)), summary["run_id"], "epub")
    path = out / made.key
    assert path.name == "tides.epub"
    jar = os.path.realpath(shutil.which("epubcheck") or "")
    check = subprocess.run(["java", "-jar", jar, str(path)], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0 and "0 errors" in check.stdout, check.stdout + check.stderr
    source, made_zip = zipfile.ZipFile(book), zipfile.ZipFile(path)
    assert made_zip.infolist()[0].filename == "mimetype"
    for name in ("EPUB/images/harbour.png", "EPUB/style/book.css", "EPUB/nav.xhtml", "EPUB/toc.ncx"):
        assert made_zip.read(name) == source.read(name)  # copied untouched
    tide = made_zip.read("EPUB/tide.xhtml").decode()
    assert '<aside epub:type="footnote" id="fn1"><p>Tomas kept his counts in a blue ledger.</p></aside>' in tide
    assert '<img src="images/harbour.png" alt="A small harbour at high tide"/>' in tide
    opf = made_zip.read("EPUB/content.opf").decode()
    assert '<opf:meta property="media:active-class">-epub-media-overlay-active</opf:meta>' in opf or (
        "media:active-class" in opf and "-epub-media-overlay-active" in opf
    )
    assert "-epub-media-overlay-active" in made_zip.read("EPUB/voxbatch/read-along.css").decode()
    total = 0.0
    gaps: list[float] = []
    notes: list[str] = []
    sentences = 0
    for n, chapter in enumerate(("tide", "reef", "lamp"), start=1):
        assert f'href="{chapter}.xhtml"' in opf and f'media-overlay="vb-mo-{n}"' in opf
        clips = _clips(made_zip.read(f"EPUB/voxbatch/{n:03d}.smil"))
        (tmp_path / f"{n}.mp3").write_bytes(made_zip.read(f"EPUB/voxbatch/{n:03d}.mp3"))
        seconds = sf.info(str(tmp_path / f"{n}.mp3")).duration
        total += seconds
        xhtml = made_zip.read(f"EPUB/{chapter}.xhtml").decode()
        ids = set(re.findall(r'id="([^"]+)"', xhtml))
        assert clips and all(src.startswith(f"../{chapter}.xhtml#") and src.split("#")[1] in ids for src, *_ in clips)
        assert all(audio == f"{n:03d}.mp3" for _, audio, _, _ in clips)
        ends = [0.0] + [e for *_, e in clips]
        for (_, _, begin, end), before in zip(clips, ends, strict=False):
            assert before <= begin + 1e-3 and begin <= end <= seconds + 0.05  # monotonic, within the audio
        # a span per sentence here (every sentence of this book is found in its text)
        assert len({src for src, *_ in clips}) == len(clips) and all("-block" not in src for src, *_ in clips)
        # Each clip begins where Whisper hears its sentence's first word, in the chapter's own audio
        root = etree.fromstring(xhtml.encode())
        timed = []
        for src, _, begin, end in clips:
            (element,) = root.xpath("//*[@id=$id]", id=src.split("#")[1])
            timed.append((begin, end, " ".join("".join(element.itertext()).split())))
        samples, rate = dsp.decode((tmp_path / f"{n}.mp3").read_bytes())
        heard = timed_words(samples, rate, larger=True)  # tiny.en hears a heading and its first line once
        found = first_word_gaps(*_placed(timed), heard)
        gaps += found
        notes.append(
            f"{n}: gaps {[round(g, 2) for g in found]} clips {[(round(b, 2), t[:20]) for b, _, t in timed]}"
            f" heard {heard}"
        )
        sentences += len(clips)
    # the three overlays and the total duration in the package (MP3 frames round a little)
    durations = re.findall(r'property="media:duration"(?: refines="#vb-mo-\d")?>([^<]+)<', opf)
    assert len(durations) == 4
    assert made.chunks >= 9
    assert total == pytest.approx(made.seconds - 2 * 2.0, abs=0.3)
    assert len(gaps) >= 0.8 * sentences, f"Whisper's words matched {len(gaps)} of {sentences} sentence starts"
    off = sorted(abs(g) for g in gaps)
    print(f"\nclips vs Whisper's first words: median {statistics.median(off):.3f} s, worst {off[-1]:.3f} s")
    assert statistics.median(off) <= 0.15 and off[-1] <= 0.5, "\n".join(notes)

    # The same run's sentence subtitles: no cue over two lines of 42 characters, none faster than 20 a second
    whole = assemble_run(open_store(str(out)), summary["run_id"], "mp3")[0]
    srt = (out / whole.key).with_suffix(".srt").read_text(encoding="utf-8")
    blocks = [b.split("\n") for b in srt.strip().split("\n\n")]
    assert len(blocks) >= sentences
    for block in blocks:
        start, end = (_srt_seconds(t) for t in block[1].split(" --> "))
        lines = block[2:]
        assert len(lines) <= 2 and max(map(len, lines)) <= 42, block
        assert sum(map(len, lines)) <= 20 * (end - start) + 1e-6, block


@pytest.mark.slow
@pytest.mark.needs("epubcheck")
def test_a_book_whose_source_is_gone_becomes_a_simple_read_along_epub(prefect_api: None, tmp_path: Path) -> None:
    import logging

    from flows.corpus import corpus_flow
    from tasks.results.assemble import assemble_run
    from tasks.storage import open_store

    book = make_read_along_epub(tmp_path / "tides.epub")
    out = tmp_path / "out"
    summary = corpus_flow([str(book)], str(out), {"run": {"shard_size": 4}, "synthesis": {"backend": "tone"}})
    book.unlink()
    warned: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("voxbatch")  # where its handlers go depends on Prefect's logging set-up
    logger.addHandler(handler)
    try:
        (made,) = assemble_run(open_store(str(out)), summary["run_id"], "epub")
    finally:
        logger.removeHandler(handler)
    assert any(f"{book}: the source EPUB cannot be read" in w for w in warned), warned
    jar = os.path.realpath(shutil.which("epubcheck") or "")
    check = subprocess.run(["java", "-jar", jar, str(out / made.key)], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0 and "0 errors" in check.stdout, check.stdout + check.stderr
    made_zip = zipfile.ZipFile(out / made.key)
    chapters = sorted(n for n in made_zip.namelist() if re.fullmatch(r"EPUB/chapter-\d+\.xhtml", n))
    assert len(chapters) == 3  # a chapter per chapter of the run, a <p> per paragraph, a span per sentence
    first = made_zip.read(chapters[0]).decode()
    assert "<p><span id=" in first and "six o'clock, as the almanac said." in first
    for n in range(1, len(chapters) + 1):
        clips = _clips(made_zip.read(f"EPUB/voxbatch/{n:03d}.smil"))
        assert clips and all("-block" not in src and "voxbatch-body" not in src for src, *_ in clips)
