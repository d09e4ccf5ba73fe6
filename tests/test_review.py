"""Flagged chunks: a chunk that fails only the listening check keeps its audio for review (qa.flag); `voxbatch
review` lists it, the report plays it, assembly needs --include-flagged and marks it, `voxbatch accept` makes it ok
(then a plain assemble works and a rerun synthesizes nothing). Plus the rules under it, without a run."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tasks.shard import faults
from tasks.shard.manifest import commit_manifest, read_manifest
from tasks.shard.rows import ManifestRow
from tasks.shard.stats import ShardStats
from tasks.storage import open_store
from tests.helpers import SAMPLE_EN, voxbatch

GARBLE = "garble_rate=0.3,seed=4"  # garbles a few of the sample's chunks' first (and, regenerate = 0, only) attempt


def _shard_rows(out: Path) -> pd.DataFrame:
    """The shard manifests as stored, read back with pandas."""
    return pd.concat([pd.read_parquet(p) for p in sorted(out.glob("manifests/*/shard-*.parquet"))], ignore_index=True)


def _run_manifest(out: Path) -> list[dict]:
    return pq.read_table(next(out.glob("runs/*/manifest.parquet"))).to_pylist()


def _srt_texts(path: Path) -> list[str]:
    return [block.split("\n", 2)[2] for block in path.read_text().strip().split("\n\n")]


@pytest.mark.slow
def test_a_garbled_chunk_is_flagged_reviewed_assembled_marked_and_accepted(
    api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOXBATCH_FAULTS", GARBLE)
    out = tmp_path / "out"
    config = tmp_path / "qa.toml"
    config.write_text("[qa]\nregenerate = 0\n")  # the garbled attempt is the only one: it is the one kept
    run = ("run", str(SAMPLE_EN), "--out", str(out), "--asr", "--config", str(config))
    done = voxbatch(*run, "--report", "--assemble", api=api_url, timeout=600)
    assert done.returncode == 0, done.stderr  # flagged chunks do not fail the run
    rows = _shard_rows(out)
    flagged = rows[rows["status"] == "flagged"]
    assert len(flagged) and (rows["status"] != "failed").all(), rows[["status", "error"]]
    assert f"FLAGGED FOR REVIEW: {len(flagged)} chunk(s)" in done.stdout and "voxbatch review" in done.stdout
    for r in flagged.itertuples():
        assert faults.parse(GARBLE).garbles(r.chunk_id)
        assert r.error.startswith("qa: asr: WER") and r.asr_wer > 0.4 and r.asr_transcript is not None
        assert r.audio_key == f"review/{r.chunk_id[:2]}/{r.chunk_id}.flac" and r.audio_uri.endswith(r.audio_key)
        samples = sf.read(out / r.audio_key, dtype="float32")[0]
        assert samples.size == r.num_samples and np.sqrt(np.mean(samples**2)) > 0.01  # decodes, not silent
        assert not (out / "audio" / r.chunk_id[:2] / f"{r.chunk_id}.flac").exists()
    assert sorted(flagged["chunk_id"]) == sorted(r["chunk_id"] for r in _run_manifest(out) if r["status"] == "flagged")

    # voxbatch status and review
    status = voxbatch("status", str(out))
    assert status.returncode == 0 and f"flagged {len(flagged)}" in status.stdout, status.stdout + status.stderr
    review = voxbatch("review", str(out))
    assert review.returncode == 0, review.stderr
    for r in flagged.itertuples():
        assert f"{r.chunk_id}  {SAMPLE_EN}:{r.line} chunk {r.chunk_index}: WER" in review.stdout
        assert f"text:  {r.spoken_text or r.text}" in review.stdout and str(out / r.audio_key) in review.stdout
    # the report plays it: a path relative to the report
    report_path = next(out.glob("runs/*/report.html"))
    report = report_path.read_text()
    assert "Flagged for review" in report
    sources = re.findall(r"<audio controls preload='none' src='([^']+)'>", report)
    assert len(sources) == len(flagged)
    assert all((report_path.parent / s).resolve().is_file() for s in sources)

    # run --assemble put them in, marked; a plain assemble refuses; --include-flagged makes the same book
    (book,) = out.glob("assembled/*/the-lighthouse.flac")
    assert "flagged (cues start [flagged])" in done.stdout
    texts = _srt_texts(book.with_suffix(".srt"))
    # a cue per sentence piece (tests/test_cues.py): each piece of a flagged chunk starts with the mark
    marked = " ".join(" ".join(t.removeprefix("[flagged] ").split()) for t in texts if t.startswith("[flagged] "))
    assert all(" ".join(text.split()) in marked for text in flagged["text"])
    assert len(texts) >= len(rows) - (rows["status"] == "skipped").sum()
    assert "flagged" in (sf.SoundFile(book).comment or "")
    refused = voxbatch("assemble", str(out))
    assert refused.returncode == 5 and "flagged" in refused.stderr
    assert "--include-flagged" in refused.stderr and "voxbatch review" in refused.stderr
    wav = voxbatch("assemble", str(out), "--include-flagged", "--format", "wav")
    assert wav.returncode == 0, wav.stderr
    whole = sf.info(book.with_suffix(".wav")).frames
    assert whole == sf.info(book).frames
    spoken = rows[rows["status"].isin(["ok", "flagged"])]
    assert whole > spoken["num_samples"].sum()  # every chunk, the flagged included, and the pauses between

    # exports leave them out
    export = voxbatch("export", str(out), "--format", "nemo")
    assert export.returncode == 0 and f"exported {(rows['status'] == 'ok').sum()} chunk(s)" in export.stdout

    # accept: a wrong id is named; the flagged ones become ok with their audio copied, unchanged
    wrong = voxbatch("accept", str(out), "0123456789abcdef")
    assert wrong.returncode == 2 and "0123456789abcdef" in wrong.stderr
    first, *others = list(flagged["chunk_id"])
    accepted = voxbatch("accept", str(out), first[:10], *others)
    assert accepted.returncode == 0 and f"accepted {len(flagged)} chunk(s)" in accepted.stdout, accepted.stderr
    after = _shard_rows(out).set_index("chunk_id")
    for r in flagged.itertuples():
        a = after.loc[r.chunk_id]
        assert a.status == "ok" and a.accepted and a.audio_key == f"audio/{r.chunk_id[:2]}/{r.chunk_id}.flac"
        assert (out / a.audio_key).read_bytes() == (out / r.audio_key).read_bytes()
        assert a.audio_checksum == r.audio_checksum and a.asr_wer == r.asr_wer and a.error == r.error
    assert all(r["status"] == "ok" for r in _run_manifest(out) if r["status"] != "skipped")
    nothing = voxbatch("accept", str(out), "--all")
    assert nothing.returncode == 2 and "no flagged chunk" in nothing.stderr

    # a plain assemble now: the same book, no marks
    plain = voxbatch("assemble", str(out))
    assert plain.returncode == 0, plain.stderr
    assert sf.info(book).frames == whole and not any("[flagged]" in t for t in _srt_texts(book.with_suffix(".srt")))
    # a rerun synthesizes nothing and keeps them ok
    again = voxbatch(*run, api=api_url, timeout=600)
    assert again.returncode == 0 and "synthesized now 0" in again.stdout, again.stdout + again.stderr
    assert (_shard_rows(out).set_index("chunk_id").loc[list(flagged["chunk_id"]), "status"] == "ok").all()


def _row(i: int, status: str) -> ManifestRow:
    return ManifestRow(run_id="r", shard=0, chunk_id=f"{i:032x}", chunk_index=i, status=status)


def test_a_commit_replaces_a_manifest_only_with_a_more_complete_one(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    flagged = [_row(0, "ok"), _row(1, "flagged"), _row(2, "failed")]
    assert commit_manifest(store, "r", 0, flagged) == flagged
    accepted = [_row(0, "ok"), _row(1, "ok"), _row(2, "failed")]
    assert commit_manifest(store, "r", 0, accepted) == accepted  # as many done, more ok: accepted stands
    assert commit_manifest(store, "r", 0, flagged) == accepted  # an attempt with the flagged row never undoes it
    retried = [_row(0, "ok"), _row(1, "flagged"), _row(2, "flagged")]
    assert commit_manifest(store, "r", 0, retried) == retried  # more done comes first
    assert [r.status for r in read_manifest(store, "r", 0) or []] == ["ok", "flagged", "flagged"]


def test_stats_count_flagged_chunks_and_read_older_records() -> None:
    stats = ShardStats.from_rows([_row(0, "ok"), _row(1, "flagged"), _row(2, "failed"), _row(3, "skipped")])
    assert (stats.ok, stats.flagged, stats.failed, stats.skipped) == (1, 1, 1, 1)
    assert (stats + stats).flagged == 2
    assert ShardStats.from_dict(stats.to_dict()) == stats
    older = {k: v for k, v in stats.to_dict().items() if k != "flagged"} | {"ooms": 3}
    assert ShardStats.from_dict(older).flagged == 0 and ShardStats.from_dict(older).oom_backoffs == 3
