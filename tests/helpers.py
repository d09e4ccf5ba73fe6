"""Helpers the tests share: the repository's samples, the `voxbatch` command as a subprocess, a small EPUB, a tiny
VITS checkpoint, a tone voice that samples and fails on cue (`Flaky`), prompt tables, and reading a run back
(from a local folder or the S3 test server). (Servers themselves: prefect_servers.py, s3_servers.py; listening:
listen.py.)"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile
from ebooklib import epub

from tasks.backends.synthesizer import SynthOptions
from tasks.backends.tone import ToneSynthesizer
from tasks.shard.finish import ChunkAudio
from tasks.shard.rows import Place
from tasks.storage.local_store import TMP_DIR

REPO = Path(__file__).resolve().parent.parent
SAMPLE_EN = REPO / "data" / "sample" / "en" / "the-lighthouse.txt"
SECRET = "s3cr3t-value-that-must-never-be-printed"
KEY_ID = "AKIDVOXBATCHTEST"


def voxbatch(
    *args: str, cwd: Path | None = None, timeout: float = 300, api: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The `voxbatch` command as a user runs it. `api`: a Prefect API to report to (the session's, `api_url`),
    as with PREFECT_API_URL set; None: none, so a run boots its own temporary API as on a machine without one."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PYTHONWARNINGS": "ignore"}
    if api:
        env["PREFECT_API_URL"] = api
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd or REPO,
    )


def build_tiny_vits(directory: Path, seed: int = 0) -> Path:
    """A tiny random VITS checkpoint saved with save_pretrained, plus its SHA256SUMS, loaded like a real one."""
    from bench.gpu_suite import build_vits_checkpoint

    return build_vits_checkpoint(directory, "tiny", seed)


def _chapter(file_name: str, title: str, body: str, epub_type: str = "") -> epub.EpubHtml:
    item = epub.EpubHtml(title=title, file_name=file_name, lang="en")
    if epub_type:  # ebooklib rewrites <body> without attributes; a top-level section keeps them
        body = f'<section epub:type="{epub_type}">{body}</section>'
    item.content = f"<html><head><title>{title}</title></head><body>{body}</body></html>"
    return item


def make_epub(path: Path) -> Path:
    """A small book as publishers make them: cover, title page, copyright page, two chapters, nav and NCX."""
    book = epub.EpubBook()
    book.set_identifier("voxbatch-test-book")
    book.set_title("The Harbour")
    book.set_language("en")
    cover = _chapter("cover.xhtml", "Cover", "<p>COVER IMAGE TEXT</p>")
    title_page = _chapter("title.xhtml", "Title", "<h1>THE HARBOUR TITLE PAGE</h1>", "titlepage")
    rights = _chapter("copyright.xhtml", "Copyright", "<p>All rights reserved COPYRIGHT.</p>")
    one = _chapter(
        "ch1.xhtml",
        "Morning",
        "<h1>Chapter One</h1>\n<p>The boats left the <em>harbour</em> at dawn."
        '<a epub:type="noteref" href="#n1">1</a></p>\n'
        "<div><p>Gulls followed them out.</p><p>The sea was calm.</p></div>\n"
        '<aside epub:type="footnote" id="n1"><p>FOOTNOTE TEXT.</p></aside>\n'
        "<script>var HIDDEN = 1;</script><style>p { color: red }</style>",
    )
    two = _chapter("ch2.xhtml", "Evening", "<h1>Chapter Two</h1>\n<p>They came back <b>before</b> dark.</p>")
    appendix = _chapter("notes.xhtml", "Notes", "<p>NON LINEAR NOTES.</p>")
    for item in (cover, title_page, rights, one, two, appendix):
        book.add_item(item)
    book.guide.append({"type": "copyright-page", "href": "copyright.xhtml", "title": "Copyright"})
    book.guide.append({"type": "cover", "href": "cover.xhtml", "title": "Cover"})
    book.toc = [epub.Link("ch1.xhtml", "Morning", "ch1"), epub.Link("ch2.xhtml", "Evening", "ch2")]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", cover, title_page, rights, one, two, (appendix, "no")]
    epub.write_epub(str(path), book)
    return path


def client(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1"
    )


def new_bucket(endpoint: str) -> str:
    name = "run-" + uuid.uuid4().hex[:10]
    client(endpoint).create_bucket(Bucket=name)
    return name


def objects(endpoint: str, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o for page in pages for o in page.get("Contents", [])}


def read_parquet(endpoint: str, bucket: str, key: str) -> pd.DataFrame:
    body = client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body)).to_pandas()


def logbook(n: int) -> str:
    ships = ["Morning Star", "Grey Heron", "Saint Brendan", "Calypso", "North Wind", "Marigold"]
    return "\n\n".join(
        f"Entry {i}. The {ships[i % len(ships)]} passed the point at {i % 12 + 1} o'clock, "
        f"heading {'north' if i % 2 else 'south'}."
        for i in range(n)
    )


def check_complete(endpoint: str, bucket: str, prefix: str, planned: int) -> pd.DataFrame:
    """Every planned chunk exactly once, ok, pointing at an object that exists; the run manifest agrees."""
    keys = objects(endpoint, bucket, prefix)
    shards = sorted(k for k in keys if k.startswith(f"{prefix}manifests/"))
    rows = pd.concat([read_parquet(endpoint, bucket, k) for k in shards], ignore_index=True)
    assert len(rows) == planned and rows["chunk_id"].is_unique
    assert (rows["status"] == "ok").all(), rows[rows["status"] != "ok"]["error"].tolist()
    for uri in rows["audio_uri"]:
        assert uri.startswith(f"s3://{bucket}/{prefix}audio/")
        assert uri.removeprefix(f"s3://{bucket}/") in keys
    (run_manifest,) = [k for k in keys if k.endswith("/manifest.parquet")]
    consolidated = read_parquet(endpoint, bucket, run_manifest)
    assert sorted(consolidated["chunk_id"]) == sorted(rows["chunk_id"])
    return rows


@dataclass
class Flaky(ToneSynthesizer):
    """A sampling tone voice: its first (unseeded) attempt is far too long for its text (the length check fails it,
    so it is regenerated), and seeded attempts raise `errors` in turn before they succeed."""

    sampling: bool = True
    errors: list[BaseException] = field(default_factory=list)

    def synthesize(self, texts: Sequence[str], options: SynthOptions | None = None) -> list[np.ndarray]:
        audio = super().synthesize(texts, options)
        if options is None or options.seed is None:
            return [np.tile(a, 12) for a in audio]
        if self.errors:
            raise self.errors.pop(0)
        return audio


# -- a local run read back: what stands, whole, once ---------------------------------------------------------


def committed(out: Path) -> dict[Path, tuple[int, int]]:
    """Every object that must never be written again once it stands: audio and shards' manifests (a rewrite
    makes a new inode or a new mtime)."""
    found = [*out.glob("audio/*/*"), *out.glob("manifests/*/shard-*.parquet")]
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in found if not p.name.startswith(".")}


def assert_unchanged(before: dict[Path, tuple[int, int]], out: Path) -> None:
    after = committed(out)
    changed = [str(p.relative_to(out)) for p, was in before.items() if after.get(p) != was]
    assert not changed, f"objects written again or lost: {changed}"


def assert_nothing_torn(out: Path) -> None:
    """Every Parquet object reads back and every audio object decodes: a write is whole or absent."""
    for path in out.rglob("*.parquet"):
        if TMP_DIR not in path.parts:
            pq.read_table(path)
    for path in out.glob("audio/*/*"):
        assert not path.name.startswith("."), f"a temporary file among the objects: {path}"
        with soundfile.SoundFile(path) as f:
            assert f.frames > 0 and len(f.read()) == f.frames


def assert_exactly_once(out: Path, planned: int) -> pd.DataFrame:
    """Every planned chunk exactly once in the shards' manifests, ok, its audio there; the run manifest agrees."""
    rows = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("manifests/*/shard-*.parquet"))], ignore_index=True)
    assert len(rows) == planned and rows["chunk_id"].is_unique, rows["chunk_id"].tolist()
    assert (rows["status"] == "ok").all(), rows[rows["status"] != "ok"]["error"].tolist()
    for uri in rows["audio_uri"]:
        assert Path(uri.removeprefix("file://")).is_file(), uri
    (run_manifest,) = out.glob("runs/*/manifest.parquet")
    assert sorted(pd.read_parquet(run_manifest)["chunk_id"]) == sorted(rows["chunk_id"])
    return rows


# -- prompt tables ------------------------------------------------------------------------------------------

TABLE_ROWS = [  # a small prompt table: ids, a per-row voice and pace, extra columns
    {"id": "utt-1", "text": "The first prompt.", "emotion": "calm", "weight": 1.5},
    {"id": "utt-2", "text": "The second prompt. It has two sentences.", "emotion": "happy", "weight": 2},
    {"id": "utt-3", "text": "A third.", "voice": "tone:t", "length_scale": 1.5, "emotion": "calm"},
]


def write_table(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = sorted({k for r in rows for k in r})
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix in (".csv", ".tsv"):
        sep = "\t" if path.suffix == ".tsv" else ","
        lines = [sep.join(columns)] + [sep.join(str(r.get(c, "")) for c in columns) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), path)
    return path


# -- one chunk through the shard stages ----------------------------------------------------------------------

RATE = 22050  # the voice's rate in these stage tests
CHUNK = ChunkAudio("c" * 32, "The keeper climbed the stairs at dusk.", "en", RATE, 16000)


def speechlike(seconds: float = 2.4, rate: int = RATE) -> np.ndarray:
    """Syllable-like bursts of a tone: loud enough, few pauses, a speech rate that fits the chunk's text."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.4 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def place(**changes: object) -> Place:
    fields = {f.name: "" for f in dataclasses.fields(Place)}
    fields |= {"shard": 0, "chunk_index": 3, "line": 7, "chapter_index": 0, "part": 0, "sample_rate": 16000}
    fields |= {"run_id": "run-x", "chunk_id": CHUNK.chunk_id, "text": CHUNK.said, "format": "flac"}
    return Place(**{**fields, **changes})  # type: ignore[arg-type]
