"""The listening check on a text of the kind that used to fail it (issue 23): quotations with bracketed
attributions, parentheses, a line of names, abbreviations, numbers and Roman-numeral headings. Run with `--asr
--assemble` as a user would: it exits 0, every chunk reads back (nothing flagged or failed), and the book holds
them all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from tests.helpers import voxbatch

TEXT = """I. Pruning

"Cut back the old wood in March (never in frost), and the vine will thank you by August."

[Quoted in "The Gardener's Almanac", volume 4, when speaking of grapes and of patience.]

The guests that evening were Sappho, Madame Récamier and Kitty O'Shea, or so the host claimed.

Dr. Watson wrote to Mr. Holmes on the 14th of June, 1887, about a parcel of seven letters.

II. Grafting

A good graft (the scion and the stock pressed close together) heals within three weeks.

"Nothing is so strong as gentleness; nothing is so gentle as real strength," said the old gardener.
"""


@pytest.mark.slow
def test_a_text_of_quotes_brackets_and_names_assembles_and_flags_nothing(api_url: str, tmp_path: Path) -> None:
    book = tmp_path / "almanac.txt"
    book.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "out"
    done = voxbatch("run", str(book), "--out", str(out), "--asr", "--assemble", api=api_url, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = pd.read_parquet(next(out.glob("runs/*/manifest.parquet")))
    assert len(rows) >= 8
    not_ok = rows[rows["status"] != "ok"]
    assert not_ok.empty, not_ok[["spoken_text", "status", "error", "asr_transcript"]].to_string()
    assert rows["asr_transcript"].notna().all()  # every chunk was listened to (whole or its opening)
    assert "FLAGGED" not in done.stdout
    (assembled,) = out.glob("assembled/*/almanac.flac")
    info = sf.info(str(assembled))
    assert info.duration >= rows["duration_s"].sum()  # every chunk, and the pauses between them
    srt = assembled.with_suffix(".srt").read_text(encoding="utf-8").replace("\n", " ")  # cues of two lines
    assert "[flagged]" not in srt and "Récamier" in srt and "[Quoted in" in srt
