"""The audio formats, declared once: those a chunk is stored in, and those a book is assembled in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# A chunk's audio format (`audio.format`): each stored by soundfile with the container and subtype below.
ChunkFormat = Literal["flac", "wav", "ogg", "mp3"]
CHUNK_FORMATS: tuple[str, ...] = get_args(ChunkFormat)


@dataclass(frozen=True)
class AudioFormat:
    name: str
    container: str  # soundfile's format
    subtype: str  # soundfile's subtype: FLAC takes no float, so 16-bit PCM
    content_type: str
    rate: int | None = None  # the only sample rate the format takes (Opus: 48 kHz); None: any
    via_ffmpeg: bool = False  # written by soundfile first, then made into this by ffmpeg


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        AudioFormat("flac", "FLAC", "PCM_16", "audio/flac"),
        AudioFormat("wav", "WAV", "PCM_16", "audio/wav"),
        AudioFormat("ogg", "OGG", "VORBIS", "audio/ogg"),
        AudioFormat("mp3", "MP3", "MPEG_LAYER_III", "audio/mpeg"),
        AudioFormat("opus", "OGG", "OPUS", "audio/ogg", rate=48000),
        AudioFormat("m4b", "WAV", "PCM_16", "audio/mp4", via_ffmpeg=True),  # AAC with chapters, from WAV by ffmpeg
    )
}
# `voxbatch assemble --format`: any of them (a book may be Opus or M4B; its chunks never are), or an EPUB 3 with
# media overlays (read-along: the book's text with MP3 audio per chapter, tasks/results/epub_book.py).
BOOK_FORMATS: tuple[str, ...] = (*FORMATS, "epub")
