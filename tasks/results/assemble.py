"""Audiobook assembly: a finished run's chunks joined per document (and per chapter) with pauses, plus subtitles.

`voxbatch assemble OUT` reads the run from storage alone (plan and manifests), so it works after a resumed or
fanned-out run. Chunks are read one at a time and written straight into the output file, so a ten-hour book is
never held in memory: the file is written to a local temporary file and copied to storage streamed. Between
chunks of one paragraph comes the sentence pause, between paragraphs the paragraph pause, between chapters the
chapter pause. Beside each audio file, SRT and WebVTT subtitles: a cue per sentence by default (the row's
sentence timings, `tasks.shard.timing.spans_of`, split to reading length and speed by `tasks.results.cues`), or
one per chunk (`cues="chunk"`).

Opus is written at 48 kHz (the rates Opus knows; chunks are resampled as they are read). M4B, the audiobook
container, is one file per document with a chapter marker per chapter and the title in its metadata; it is made
by ffmpeg (AAC) from the streamed WAV, so it needs ffmpeg on the PATH (Debian: apt-get install ffmpeg).

A run with flagged chunks (they failed only the listening check; `voxbatch review` lists them) is assembled only
when asked (`include_flagged`, `--include-flagged`): their review audio takes their places, each of their cues in
the subtitles starts with FLAGGED_MARK, an M4B chapter holding any has " (N flagged)" after its title, and any
other file holding them says so in its comment tag (and the `Assembled` record counts them). A failed chunk (no
audio at all) still keeps a run from being assembled.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

from tasks.audio import dsp
from tasks.errors import ConfigError, InputError, RunIncomplete
from tasks.formats import BOOK_FORMATS, FORMATS
from tasks.results.cues import Cue, fit_reading_speed, row_sentences, sentence_cues
from tasks.results.run_state import load_run_state
from tasks.shard.rows import ManifestRow
from tasks.storage import ObjectStore
from tasks.storage.layout import content_type

M4B_BITRATE = "64k"  # AAC, mono speech
FLAGGED_MARK = "[flagged] "  # starts the subtitle cue of a flagged chunk in an assembled book
CUE_MODES = ("sentence", "chunk")  # `assemble --cues`: a cue per sentence (split to reading length), or per chunk


@dataclass(frozen=True)
class Pauses:
    """Silence between chunks, in seconds (on top of the silence each chunk keeps at its ends)."""

    sentence: float = 0.25
    paragraph: float = 0.75
    chapter: float = 2.0


@dataclass(frozen=True)
class Assembled:
    key: str  # the audio file's key under OUT
    chunks: int
    seconds: float
    flagged: int = 0  # flagged chunks in it (their review audio)
    starts: tuple[float, ...] = ()  # each chunk's start in the file, seconds


def assembled_prefix(run_id: str) -> str:
    return f"assembled/{run_id}/"


def _name(text: str) -> str:
    """A file name from a title or a source path: letters, digits and a few marks kept (CJK too), the rest '-'."""
    return re.sub(r"[^\w.()-]+", "-", text, flags=re.UNICODE).strip("-.")[:80] or "untitled"


def _pause(before: ManifestRow, after: ManifestRow, pauses: Pauses) -> float:
    if before.chapter_index != after.chapter_index:
        return pauses.chapter
    return pauses.sentence if before.line == after.line else pauses.paragraph


def _timestamp(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def subtitles(cues: list[tuple[float, float, str]]) -> tuple[str, str]:
    """(SRT, WebVTT) for (start, end, text) cues."""
    srt = [f"{n}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{t}\n" for n, (a, b, t) in enumerate(cues, start=1)]
    vtt = [f"{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{t}\n" for a, b, t in cues]
    return "\n".join(srt), "WEBVTT\n\n" + "\n".join(vtt)


def _row_cues(row: ManifestRow, offset: float, seconds: float, mark: str) -> list[Cue]:
    """A row's sentence cues, its audio starting at `offset` in the file and lasting `seconds`: each sentence's times
    are seconds into the chunk's audio, so resampling to the file's rate leaves them as they are."""
    cues: list[Cue] = []
    for span in row_sentences(row):
        text = row.text[span.char_start : span.char_end]
        start, end = (min(max(t, 0.0), seconds) for t in (span.start_s, span.end_s))
        if text.strip():
            cues += sentence_cues(text, offset + start, offset + max(start, end), mark)
    return cues


def _write(
    store: ObjectStore,
    rows: list[ManifestRow],
    key: str,
    rate: int,
    fmt: str,
    pauses: Pauses,
    title: str = "",
    cue_mode: str = "sentence",
) -> Assembled:
    """One audio file of these rows in order, with its subtitles; chunk by chunk into a temporary file."""
    made = FORMATS[fmt]
    out_rate = made.rate or rate
    cues: list[Cue] = []
    starts: list[float] = []
    chapters: list[tuple[int, str, int]] = []  # (first sample, title, flagged chunks) per chapter, for M4B
    position = 0  # samples written so far: the timings are exact, not summed floats
    flagged_total = sum(r.status == "flagged" for r in rows)
    with tempfile.TemporaryDirectory(prefix="voxbatch-assemble-") as tmp:
        path = Path(tmp) / (PurePosixPath(key).stem + (".wav" if made.via_ffmpeg else PurePosixPath(key).suffix))
        with sf.SoundFile(
            path, "w", samplerate=out_rate, channels=1, format=made.container, subtype=made.subtype
        ) as out:
            if flagged_total:  # before any audio: libsndfile takes tags only then
                out.comment = _flagged_comment(flagged_total)
            for i, row in enumerate(rows):
                if i:
                    gap = np.zeros(round(_pause(rows[i - 1], row, pauses) * out_rate), np.float32)
                    out.write(gap)
                    position += gap.size
                if i == 0 or rows[i - 1].chapter_index != row.chapter_index:
                    chapters.append((position, row.chapter_title or f"Chapter {row.chapter_index + 1}", 0))
                flagged = row.status == "flagged"
                if flagged:
                    start, name, n = chapters[-1]
                    chapters[-1] = (start, name, n + 1)
                samples, chunk_rate = dsp.decode(store.get(row.audio_key or ""))
                if chunk_rate != rate:
                    raise InputError(f"{row.audio_key}: {chunk_rate} Hz, the run's other chunks are {rate} Hz")
                if out_rate != rate:
                    samples = dsp.resample(samples, rate, out_rate, "soxr")
                out.write(samples)
                starts.append(position / out_rate)
                at, seconds, mark = position / out_rate, samples.size / out_rate, FLAGGED_MARK if flagged else ""
                if cue_mode == "chunk":
                    cues.append(Cue(at, at + seconds, mark + row.text))
                else:
                    cues += _row_cues(row, at, seconds, mark)
                position += samples.size
        if made.via_ffmpeg:
            path = _m4b(path, chapters, position, out_rate, title)
        store.put_file(key, path, overwrite=True, content_type=content_type(key))
    if cue_mode != "chunk":
        cues = fit_reading_speed(cues, position / out_rate)
    srt, vtt = subtitles([(c.start, c.end, c.text) for c in cues])
    stem = key.rsplit(".", 1)[0]
    for ext, text in (("srt", srt), ("vtt", vtt)):
        store.put(f"{stem}.{ext}", text.encode(), overwrite=True, content_type=content_type(f"{stem}.{ext}"))
    return Assembled(key, len(rows), position / out_rate, flagged_total, tuple(starts))


def _flagged_comment(n: int) -> str:
    return f"{n} flagged chunk(s) in it: they failed the listening check and were not reviewed"


def _ffmetadata(text: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", text)


def _m4b(wav: Path, chapters: list[tuple[int, str, int]], total: int, rate: int, title: str) -> Path:
    """The WAV as an M4B audiobook: AAC, a chapter marker per chapter, the title in its metadata (ffmpeg)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ConfigError(
            "assemble --format m4b needs ffmpeg, which is not on the PATH",
            hint="install it (Debian/Ubuntu: apt-get install ffmpeg), or assemble to flac/mp3/opus",
        )
    meta = [";FFMETADATA1", f"title={_ffmetadata(title)}", "genre=Audiobook"]
    if flagged := sum(n for _, _, n in chapters):
        meta.append(f"comment={_ffmetadata(_flagged_comment(flagged))}")
    bounds = [start for start, _, _ in chapters] + [total]
    for (start, name, flagged), end in zip(chapters, bounds[1:], strict=True):
        meta += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={start * 1000 // rate}", f"END={end * 1000 // rate}"]
        meta.append(f"title={_ffmetadata(name + (f' ({flagged} flagged)' if flagged else ''))}")
    metadata = wav.with_suffix(".ffmeta")
    metadata.write_text("\n".join(meta) + "\n", encoding="utf-8")
    out = wav.with_suffix(".m4b")
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(wav), "-i", str(metadata)]
    cmd += ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1", "-c:a", "aac", "-b:a", M4B_BITRATE]
    cmd += ["-f", "ipod", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise InputError(f"ffmpeg could not make the M4B: {done.stderr.strip()[-500:]}")
    return out


def _documents(rows: Iterable[ManifestRow], statuses: tuple[str, ...]) -> Iterator[list[ManifestRow]]:
    """The run's rows of these statuses (ok, and flagged when asked) per document, in plan order."""
    by_doc: dict[str, list[ManifestRow]] = {}
    for r in rows:
        if r.status in statuses:
            by_doc.setdefault(r.doc_id, []).append(r)
    for doc_rows in by_doc.values():
        yield sorted(doc_rows, key=lambda r: r.chunk_index)


def assemble_run(
    store: ObjectStore,
    run_id: str,
    fmt: str = "flac",
    pauses: Pauses | None = None,
    include_flagged: bool = False,
    cues: str = "sentence",
) -> list[Assembled]:
    """Every document of a finished run as one file, and each chapter of a document with chapters as one more;
    `include_flagged`: flagged chunks too (their review audio), marked (else a run with any is refused);
    `cues`: subtitles with a cue per sentence or per chunk (CUE_MODES)."""
    if fmt not in BOOK_FORMATS:
        raise InputError(f"assemble: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if cues not in CUE_MODES:
        raise InputError(f"assemble: unknown cues {cues!r} (known: {', '.join(CUE_MODES)})")
    pauses = pauses or Pauses()
    state = load_run_state(store, run_id)
    if not state.complete:
        raise RunIncomplete(
            f"run {run_id} has {len(state.pending)} shard(s) not committed yet: nothing assembled",
            hint="finish the run (the same `voxbatch run` command resumes it), then assemble",
        )
    stats = state.stats()
    if stats.failed:
        raise RunIncomplete(
            f"run {run_id} has {stats.failed} failed chunk(s): a book assembled now would have holes",
            hint="run the same `voxbatch run` command again to retry them (`voxbatch status` shows why they failed)",
        )
    if stats.flagged and not include_flagged:
        raise RunIncomplete(
            f"run {run_id} has {stats.flagged} chunk(s) flagged for review (they failed the listening check): "
            "nothing assembled",
            hint=f"listen with `voxbatch review {store.uri('')}`, then `voxbatch accept` them, or assemble with "
            "them, marked, with --include-flagged",
        )
    rate, prefix, made = state.plan.sample_rate, assembled_prefix(run_id), []
    names: set[str] = set()
    for doc_rows in _documents(state.rows(), ("ok", "flagged") if include_flagged else ("ok",)):
        first = doc_rows[0]
        name = _name(PurePosixPath(first.source).stem)
        if name in names:  # two inputs with one stem (a/book.txt, b/book.txt)
            name = f"{name}-{first.doc_id[-8:]}"
        names.add(name)
        title = PurePosixPath(first.source).stem  # the EPUB's own title is not kept in the plan yet
        if fmt == "epub":
            made.append(_epub(store, doc_rows, prefix, name, rate, pauses, cues))
            continue
        made.append(_write(store, doc_rows, f"{prefix}{name}.{fmt}", rate, fmt, pauses, title, cues))
        if fmt == "m4b":
            continue  # one audiobook per document: its chapters are markers inside it
        chapters = _by_chapter(doc_rows)
        if len(chapters) > 1:
            for index, chapter_rows in chapters.items():
                title = _name(chapter_rows[0].chapter_title or f"chapter {index + 1}")
                key = f"{prefix}{name}/{index + 1:03d}-{title}.{fmt}"
                made.append(_write(store, chapter_rows, key, rate, fmt, pauses, cue_mode=cues))
    return made


def _by_chapter(rows: list[ManifestRow]) -> dict[int, list[ManifestRow]]:
    chapters: dict[int, list[ManifestRow]] = {}
    for r in rows:
        chapters.setdefault(r.chapter_index, []).append(r)
    return chapters


def _epub(
    store: ObjectStore, rows: list[ManifestRow], prefix: str, name: str, rate: int, pauses: Pauses, cues: str
) -> Assembled:
    """The document as an EPUB 3 with a media overlay per chapter (`tasks.results.epub_book`); its chapters'
    MP3 files (inside it) are left beside it too, as `--format mp3` makes them."""
    from tasks.results.epub_book import ChapterAudio, read_along_epub, read_source, simple_epub

    source = rows[0].source
    chapters = _by_chapter(rows)
    raw, lines = read_source(source), None
    if raw is None:  # text or markdown, or an EPUB that is gone: a simple book of the rows' text
        raw, chapters, lines = simple_epub(chapters, PurePosixPath(source).stem, rows[0].lang)
        source = f"{source} (as a simple EPUB)"
    audio: dict[int, ChapterAudio] = {}
    for index, chapter_rows in chapters.items():
        title = _name(chapter_rows[0].chapter_title or f"chapter {index + 1}")
        made = _write(
            store, chapter_rows, f"{prefix}{name}/{index + 1:03d}-{title}.mp3", rate, "mp3", pauses, cue_mode=cues
        )
        audio[index] = ChapterAudio(store.get(made.key), made.seconds, made.starts)
    key = f"{prefix}{name}.epub"
    store.put(
        key, read_along_epub(raw, source, chapters, audio, lines), overwrite=True, content_type="application/epub+zip"
    )
    seconds = sum(a.seconds for a in audio.values()) + pauses.chapter * (len(audio) - 1)
    return Assembled(key, len(rows), seconds, sum(r.status == "flagged" for r in rows))
