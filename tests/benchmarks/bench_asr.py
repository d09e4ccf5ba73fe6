"""Benchmark: what listening to every chunk (qa.asr, Whisper tiny.en) adds to a CPU run's wall time.

Run: .venv/bin/python tests/benchmarks/bench_asr.py [--kb 20] [--rounds 2]
A corpus of about KB kilobytes is made from the English sample's sentences in seeded new orders (so every chunk
is new), then `voxbatch run` runs on it with and without --asr, alternating, each into a fresh output folder.
Prints the command's wall time and the run's own (planning to summary) for both, their ratios, and the ASR
figures of the --asr runs (mean WER, regenerations, time spent transcribing).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "en" / "the-lighthouse.txt"
VOXBATCH = str(Path(sys.executable).parent / "voxbatch")


def corpus(kb: int, seed: int = 11) -> str:
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", SAMPLE.read_text().replace("\n", " ")) if len(s) > 20]
    rng = random.Random(seed)
    paragraphs, size = [], 0
    while size < kb * 1000:
        paragraph = " ".join(rng.sample(sentences, k=min(4, len(sentences))))
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs) + "\n"


def one_run(text_file: Path, out: Path, asr: bool) -> dict[str, float]:
    started = time.perf_counter()
    cmd = [VOXBATCH, "run", str(text_file), "--out", str(out)] + (["--asr"] if asr else [])
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - started
    summary = json.loads(next(out.glob("runs/*/summary.json")).read_text())
    result = {"wall": wall, "run": summary["wall_seconds"], "audio": summary["audio_seconds"]}
    if asr:
        rows = pd.read_parquet(next(out.glob("runs/*/manifest.parquet")))
        result["wer"] = float(rows.asr_wer.mean())
        result["regenerated"] = int((rows.qa_attempts > 1).sum())
        result["failed"] = int((rows.status == "failed").sum())
        result["chunks"] = len(rows)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kb", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "corpus.txt"
        text_file.write_text(corpus(args.kb))
        results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for r in range(args.rounds):
            for asr in (False, True) if r % 2 == 0 else (True, False):
                results[asr].append(one_run(text_file, Path(tmp) / f"out-{r}-{asr}", asr))
    plain, heard = (min(results[k], key=lambda x: x["wall"]) for k in (False, True))
    print(f"corpus {args.kb} KB, {heard['chunks']} chunks, {plain['audio']:.0f} s of audio; best of {args.rounds}")
    print(f"{'':14}{'command wall s':>16}{'run wall s':>12}")
    print(f"{'without --asr':14}{plain['wall']:16.1f}{plain['run']:12.1f}")
    print(f"{'with --asr':14}{heard['wall']:16.1f}{heard['run']:12.1f}")
    ratios = f"{heard['wall'] / plain['wall']:16.2f}{heard['run'] / plain['run']:12.2f}"
    print(f"{'ratio':14}{ratios}   (goal: at most 1.25)")
    print(f"mean WER {heard['wer']:.3f}, regenerated {heard['regenerated']}, failed {heard['failed']}")


if __name__ == "__main__":
    main()
