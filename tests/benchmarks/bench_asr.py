"""Benchmark: what listening to every chunk (qa.asr, Whisper tiny.en) adds to a CPU run's wall time.

Run: .venv/bin/python tests/benchmarks/bench_asr.py [--kb 20] [--rounds 2] [--sample 1.0 0.5]
A corpus of about KB kilobytes is made from the English sample's sentences in seeded new orders (so every chunk
is new), then `voxbatch run` runs on it without --asr and with it at each qa.asr_sample share, in turn (the order
reversed every other round), each into a fresh output folder. Prints the command's wall time and the run's own
(planning to summary) for each, their ratios to the run without, and the ASR figures of the --asr runs (mean WER,
chunks heard in full and spot-checked, regenerations).
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


def one_run(text_file: Path, out: Path, sample: float | None) -> dict[str, float]:
    """One run; `sample`: None without --asr, else with it at that qa.asr_sample."""
    cmd = [VOXBATCH, "run", str(text_file), "--out", str(out)]
    if sample is not None:
        config = out.with_suffix(".toml")
        config.write_text(f"[qa]\nasr_sample = {sample}\n")
        cmd += ["--asr", "--config", str(config)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - started
    summary = json.loads(next(out.glob("runs/*/summary.json")).read_text())
    result = {"wall": wall, "run": summary["wall_seconds"], "audio": summary["audio_seconds"]}
    result |= {"heard": summary.get("asr_heard", 0), "spot": summary.get("asr_spot_checked", 0)}
    if sample is not None:
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
    parser.add_argument("--sample", type=float, nargs="+", default=[1.0], help="qa.asr_sample shares to run")
    args = parser.parse_args()
    variants: list[float | None] = [None, *args.sample]
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "corpus.txt"
        text_file.write_text(corpus(args.kb))
        results: dict[float | None, list[dict[str, float]]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for n, v in enumerate(variants if r % 2 == 0 else variants[::-1]):
                results[v].append(one_run(text_file, Path(tmp) / f"out-{r}-{n}", v))
    best = {v: min(results[v], key=lambda x: x["wall"]) for v in variants}
    plain = best[None]
    first = best[args.sample[0]]
    print(f"corpus {args.kb} KB, {first['chunks']} chunks, {plain['audio']:.0f} s of audio; best of {args.rounds}")
    print(f"{'':22}{'command wall s':>16}{'run wall s':>12}{'ratio':>8}{'run ratio':>10}  full/spot, WER")
    print(f"{'without --asr':22}{plain['wall']:16.1f}{plain['run']:12.1f}")
    for v in args.sample:
        b = best[v]
        ratios = f"{b['wall'] / plain['wall']:8.2f}{b['run'] / plain['run']:10.2f}"
        figures = f"{b['heard']:.0f}/{b['spot']:.0f}, mean {b['wer']:.3f}, regenerated {b['regenerated']:.0f}"
        print(f"{f'--asr, asr_sample {v:g}':22}{b['wall']:16.1f}{b['run']:12.1f}{ratios}  {figures}")
    print("goal: ratio at most 1.25")


if __name__ == "__main__":
    main()
