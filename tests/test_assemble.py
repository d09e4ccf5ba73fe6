"""Audiobook assembly read back from disk and S3: durations are the chunks plus the pauses, subtitles match."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tasks.errors import RunIncomplete
from tasks.results.assemble import Pauses, assemble_run
from tasks.storage import open_store
from tasks.storage.layout import run_manifest_key
from tests.helpers import SAMPLE_EN, make_epub

pytestmark = pytest.mark.slow
PAUSES = Pauses(sentence=0.25, paragraph=0.75, chapter=2.0)


def run(inputs: list[str], out: str, **settings: Any) -> dict[str, Any]:
    from flows.corpus import corpus_flow

    return corpus_flow(inputs, out, {"run": {"shard_size": 4}, **settings})


def cues(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of an SRT file."""
    out = []
    for block in path.read_text().strip().split("\n\n"):
        _, times, text = block.split("\n", 2)
        a, b = (
            sum(float(x) * m for x, m in zip(re.split("[:,]", t.strip())[:3], (3600, 60, 1), strict=True))
            + int(t.strip()[-3:]) / 1000
            for t in times.split("-->")
        )
        out.append((a, b, text))
    return out


def expected_gaps(rows: list[dict[str, Any]]) -> list[float]:
    def gap(before: dict[str, Any], after: dict[str, Any]) -> float:
        if before["chapter_index"] != after["chapter_index"]:
            return PAUSES.chapter
        return PAUSES.sentence if before["line"] == after["line"] else PAUSES.paragraph

    return [gap(a, b) for a, b in itertools.pairwise(rows)]


def test_a_book_is_its_chunks_and_pauses_and_its_subtitles_match(prefect_api: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run([str(SAMPLE_EN)], str(out))  # the real voice, three shards
    (made,) = assemble_run(open_store(str(out)), summary["run_id"], "flac", PAUSES, cues="chunk")
    rows = pq.read_table(out / run_manifest_key(summary["run_id"])).to_pylist()
    samples, rate = sf.read(out / made.key, dtype="float32")
    gaps = expected_gaps(rows)
    expected = sum(r["num_samples"] for r in rows) + sum(round(g * rate) for g in gaps)
    assert abs(samples.size - expected) <= len(gaps)  # within a sample per joint (the goal: 10 ms)
    assert made.chunks == len(rows) and made.seconds == pytest.approx(samples.size / rate)
    subtitle = cues(out / made.key.replace(".flac", ".srt"))
    assert [t for _, _, t in subtitle] == [r["text"] for r in rows]
    position = 0.0
    for (start, end, _), row, gap in zip(subtitle, rows, [*gaps, 0.0], strict=True):
        assert abs(start - position) <= 0.002 and abs(end - start - row["duration_s"]) <= 0.002
        spoken = samples[int(start * rate) : int(end * rate)]
        assert np.sqrt(np.mean(spoken**2)) > 0.01  # speech under each cue (its middle may fall between sentences)
        if gap:
            edge = int(0.002 * rate)  # SRT times are rounded to the millisecond: up to 11 samples at 22,050 Hz
            pause = samples[int(end * rate) + edge : int((end + gap) * rate) - edge]
            assert np.max(np.abs(pause)) == 0  # and silence between
        position = end + gap
    vtt = (out / made.key.replace(".flac", ".vtt")).read_text()
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == len(rows)
    # by default a cue per sentence (the voice's sentence timings), within reading
    # length and speed, each inside its chunk's time where the voice reads slower than 20 characters a second
    assemble_run(open_store(str(out)), summary["run_id"], "flac", PAUSES)
    by_sentence = cues(out / made.key.replace(".flac", ".srt"))
    assert len(by_sentence) > len(rows)
    assert " ".join(" ".join(t.split()) for _, _, t in by_sentence) == " ".join(
        " ".join(r["text"].split()) for r in rows
    )
    for start, end, text in by_sentence:
        lines = text.split("\n")
        assert len(lines) <= 2 and max(map(len, lines)) <= 42
        assert len(text) - text.count("\n") <= 20 * (end - start) + 1e-6
    assert by_sentence[0][0] == subtitle[0][0] and by_sentence[-1][1] <= samples.size / rate + 0.002
    assert all(a[1] <= b[0] + 1e-9 for a, b in itertools.pairwise(by_sentence))


def test_an_epub_is_assembled_whole_and_per_chapter_from_s3(prefect_api: None, s3_bucket: str, tmp_path: Path) -> None:
    book = make_epub(tmp_path / "harbour.epub")
    out = f"s3://{s3_bucket}/books"
    summary = run([str(book)], out, synthesis={"backend": "tone"})
    made = assemble_run(open_store(out), summary["run_id"], "ogg", PAUSES)
    whole, *chapters = made
    assert whole.key.endswith("/harbour.ogg") and len(chapters) == 2
    assert [c.key.rsplit("/", 1)[-1] for c in chapters] == ["001-Morning.ogg", "002-Evening.ogg"]
    assert sum(c.chunks for c in chapters) == whole.chunks
    # the whole book is its chapters and one chapter pause (each chapter's own pauses inside it)
    assert whole.seconds == pytest.approx(sum(c.seconds for c in chapters) + PAUSES.chapter, abs=0.01)
    store = open_store(out)
    for c in made:
        assert store.exists(c.key.replace(".ogg", ".srt")) and store.exists(c.key.replace(".ogg", ".vtt"))


def test_a_run_with_failed_chunks_is_not_assembled(prefect_api: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run([str(SAMPLE_EN)], str(out), synthesis={"backend": "tone"}, qa={"max_chars_per_second_en": 1.0})
    with pytest.raises(RunIncomplete, match="failed chunk"):
        assemble_run(open_store(str(out)), summary["run_id"])


def test_run_then_assemble_from_the_command_line(tmp_path: Path, api_url: str) -> None:
    from tests.helpers import voxbatch

    out = tmp_path / "out"
    result = voxbatch("run", str(SAMPLE_EN), "--out", str(out), "--backend", "tone", "--assemble", api=api_url)
    assert result.returncode == 0, result.stderr
    (book,) = out.glob("assembled/*/the-lighthouse.flac")
    assert "assembled " in result.stdout and str(book) in result.stdout
    again = voxbatch("assemble", str(out), "--format", "wav", "--paragraph-pause", "1.5")
    assert again.returncode == 0, again.stderr
    longer = sf.info(book.with_suffix(".wav")).duration - sf.info(book).duration
    paragraphs = len({r["line"] for r in pq.read_table(next(out.glob("runs/*/manifest.parquet"))).to_pylist()})
    assert longer == pytest.approx((paragraphs - 1) * (1.5 - 0.75), abs=0.01)


@pytest.mark.needs("ffmpeg", "ffprobe")
def test_an_epub_becomes_an_m4b_with_chapters_and_an_opus_file(prefect_api: None, tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess

    ffprobe = shutil.which("ffprobe")
    assert ffprobe, "marked needs('ffmpeg', 'ffprobe')"
    book = make_epub(tmp_path / "harbour.epub")
    out = tmp_path / "out"
    summary = run([str(book)], str(out))  # the real voice
    store = open_store(str(out))
    (m4b,) = assemble_run(store, summary["run_id"], "m4b", PAUSES)  # one audiobook, chapters inside
    flac_whole, *flac_chapters = assemble_run(store, summary["run_id"], "flac", PAUSES)
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_chapters", "-show_format", str(out / m4b.key)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    info = json.loads(probe.stdout)
    chapters = info["chapters"]
    assert [c["tags"]["title"] for c in chapters] == ["Morning", "Evening"]
    # each marker starts where the chapter starts in the assembled book: after chapter one and a chapter pause
    first_len = flac_chapters[0].seconds
    assert float(chapters[0]["start_time"]) == pytest.approx(0.0, abs=0.01)
    assert float(chapters[1]["start_time"]) == pytest.approx(first_len + PAUSES.chapter, abs=0.01)
    assert float(chapters[1]["end_time"]) == pytest.approx(flac_whole.seconds, abs=0.01)
    assert info["format"]["tags"]["title"] == "harbour" and info["format"]["tags"]["genre"] == "Audiobook"
    assert float(info["format"]["duration"]) == pytest.approx(flac_whole.seconds, abs=0.1)  # AAC pads its frames
    (opus, *_) = assemble_run(store, summary["run_id"], "opus", PAUSES)
    decoded, rate = sf.read(out / opus.key, dtype="float32")
    assert rate == 48000 and decoded.size / rate == pytest.approx(flac_whole.seconds, abs=0.03)
    subtitle_cues = cues((out / opus.key).with_suffix(".srt"))
    flac_cues = cues((out / flac_whole.key).with_suffix(".srt"))
    assert [c[2] for c in subtitle_cues] == [c[2] for c in flac_cues]
    assert max(abs(a[0] - b[0]) for a, b in zip(subtitle_cues, flac_cues, strict=True)) <= 0.002
