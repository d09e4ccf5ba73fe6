"""Audiobook assembly: a finished run's chunks joined per document (and per chapter) with pauses, plus subtitles.

`voxbatch assemble OUT` reads the run from storage alone (plan and manifests), so it works after a resumed or
fanned-out run. Chunks are read one at a time and written straight into the output file, so a ten-hour book is
never held in memory: the file is written to a local temporary file and copied to storage streamed. Between
chunks of one paragraph comes the sentence pause, between paragraphs the paragraph pause, between chapters the
chapter pause. Beside each audio file, SRT and WebVTT subtitles with each chunk's text at its place.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf

from tasks import audio
from tasks.errors import InputError, RunIncomplete
from tasks.layout import content_type
from tasks.manifest import ManifestRow
from tasks.run_state import load_run_state
from tasks.storage import ObjectStore

FORMATS = {
    "flac": ("FLAC", "PCM_16"),
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"),
}


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


def _write(store: ObjectStore, rows: list[ManifestRow], key: str, rate: int, fmt: str, pauses: Pauses) -> Assembled:
    """One audio file of these rows in order, with its subtitles; chunk by chunk into a temporary file."""
    container, subtype = FORMATS[fmt]
    cues: list[tuple[float, float, str]] = []
    position = 0  # samples written so far: the timings are exact, not summed floats
    with tempfile.TemporaryDirectory(prefix="voxbatch-assemble-") as tmp:
        path = Path(tmp) / PurePosixPath(key).name
        with sf.SoundFile(path, "w", samplerate=rate, channels=1, format=container, subtype=subtype) as out:
            for i, row in enumerate(rows):
                if i:
                    gap = np.zeros(round(_pause(rows[i - 1], row, pauses) * rate), np.float32)
                    out.write(gap)
                    position += gap.size
                samples, chunk_rate = audio.decode(store.get(row.audio_key or ""))
                if chunk_rate != rate:
                    raise InputError(f"{row.audio_key}: {chunk_rate} Hz, the run's other chunks are {rate} Hz")
                out.write(samples)
                cues.append((position / rate, (position + samples.size) / rate, row.text))
                position += samples.size
        store.put_file(key, path, overwrite=True, content_type=content_type(key))
    srt, vtt = subtitles(cues)
    stem = key.rsplit(".", 1)[0]
    for ext, text in (("srt", srt), ("vtt", vtt)):
        store.put(f"{stem}.{ext}", text.encode(), overwrite=True, content_type=content_type(f"{stem}.{ext}"))
    return Assembled(key, len(rows), position / rate)


def _documents(rows: list[ManifestRow]) -> Iterator[list[ManifestRow]]:
    """The run's ok rows per document, in plan order."""
    by_doc: dict[str, list[ManifestRow]] = {}
    for r in rows:
        if r.status == "ok":
            by_doc.setdefault(r.doc_id, []).append(r)
    for doc_rows in by_doc.values():
        yield sorted(doc_rows, key=lambda r: r.chunk_index)


def assemble_run(store: ObjectStore, run_id: str, fmt: str = "flac", pauses: Pauses | None = None) -> list[Assembled]:
    """Every document of a finished run as one file, and each chapter of a document with chapters as one more."""
    if fmt not in FORMATS:
        raise InputError(f"assemble: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    pauses = pauses or Pauses()
    state = load_run_state(store, run_id)
    if not state.complete:
        raise RunIncomplete(
            f"run {run_id} has {len(state.pending)} shard(s) not committed yet: nothing assembled",
            hint="finish the run (the same `voxbatch run` command resumes it), then assemble",
        )
    failed = state.counts().get("failed", 0)
    if failed:
        raise RunIncomplete(
            f"run {run_id} has {failed} failed chunk(s): a book assembled now would have holes",
            hint="run the same `voxbatch run` command again to retry them (`voxbatch status` shows why they failed)",
        )
    rate, prefix, made = state.plan.sample_rate, assembled_prefix(run_id), []
    names: set[str] = set()
    for doc_rows in _documents(state.rows()):
        first = doc_rows[0]
        name = _name(PurePosixPath(first.source).stem)
        if name in names:  # two inputs with one stem (a/book.txt, b/book.txt)
            name = f"{name}-{first.doc_id[-8:]}"
        names.add(name)
        made.append(_write(store, doc_rows, f"{prefix}{name}.{fmt}", rate, fmt, pauses))
        chapters: dict[int, list[ManifestRow]] = {}
        for r in doc_rows:
            chapters.setdefault(r.chapter_index, []).append(r)
        if len(chapters) > 1:
            for index, chapter_rows in chapters.items():
                title = _name(chapter_rows[0].chapter_title or f"chapter {index + 1}")
                key = f"{prefix}{name}/{index + 1:03d}-{title}.{fmt}"
                made.append(_write(store, chapter_rows, key, rate, fmt, pauses))
    return made
