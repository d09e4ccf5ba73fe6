"""Benchmark: the Mandarin voice zh-baker's real-time factor, voxbatch's synthesizer against a plain loop.

Run: .venv/bin/python tests/benchmarks/bench_zh.py [--rounds 5] [--threads 1] [--json PATH]

Needs the voice (`voxbatch voices install zh-baker`). The same texts (the Chinese sample's paragraphs) go through
  - a plain loop over the same two ONNX models: ONNX Runtime sessions, phoneme ids from the same frontend, per
    clause the acoustic model then the vocoder, the clauses joined (the least any wrapper could do);
  - voxbatch's `twostage` synthesizer one clause at a time (the CPU default), and batched (batch_size 8: the
    vocoder takes a batch's clauses padded together, the GPU path);
alternating, several rounds, the median of each. Real-time factor: compute seconds per second of audio (lower is
faster). Then `voxbatch run` on the sample as a user runs it, start-up (imports, Prefect's local API) included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
SAMPLE = REPO / "data" / "sample" / "zh"


def texts() -> list[str]:
    return [p.strip() for f in sorted(SAMPLE.glob("*.txt")) for p in f.read_text().split("\n\n") if p.strip()]


def plain_loop(folder: Path, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from tasks.backends.zh_frontend import BakerFrontend

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    acoustic = ort.InferenceSession(str(folder / "acoustic.onnx"), options, providers=["CPUExecutionProvider"])
    vocoder = ort.InferenceSession(str(folder / "vocoder.onnx"), options, providers=["CPUExecutionProvider"])
    frontend = BakerFrontend(folder / "symbols.json")
    one = np.ones(1, np.float32)
    pause = np.zeros(4800, np.float32)

    def synthesize(batch: list[str]) -> list[np.ndarray]:
        out = []
        for text in batch:
            parts: list[np.ndarray] = []
            for clause in frontend.clauses(text):
                feeds = {"input_ids": np.asarray([clause.ids], np.int32), "speaker_ids": np.zeros(1, np.int32)}
                feeds |= {"speed_ratios": one, "f0_ratios": one, "energy_ratios": one}
                mel = acoustic.run(None, feeds)[1]
                if parts:
                    parts.append(pause)
                parts.append(vocoder.run(None, {"mels": mel})[0].reshape(-1))
            out.append(np.concatenate(parts))
        return out

    return synthesize


def voxbatch_synth(threads: int, batch_size: int):  # type: ignore[no-untyped-def]
    from tasks.backends.registry import get_backend
    from tasks.config import validate_settings

    s = validate_settings({"synthesis": {"voice": "zh-baker", "threads": threads, "batch_size": batch_size}}).synthesis
    backend = get_backend(s.backend)
    return backend.load(backend.resolve(s), s).synthesize


def end_to_end() -> tuple[float, float]:
    """Wall seconds and audio seconds of `voxbatch run` on the sample, as a user runs it."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", str(SAMPLE), "--voice", "zh-baker", "--out", out],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        manifest = next(Path(out).glob("runs/*/manifest.parquet"))
        return wall, float(sum(pq.read_table(manifest, columns=["duration_s"]).column(0).to_pylist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tasks.backends import voice_install

    folder = voice_install.installed("zh-baker")
    if folder is None:
        raise SystemExit("zh-baker is not installed: voxbatch voices install zh-baker")
    batch = texts()
    ways = {
        "plain loop (same ONNX models)": plain_loop(folder, args.threads),
        "voxbatch twostage, one clause at a time": voxbatch_synth(args.threads, 1),
        "voxbatch twostage, batched (batch_size 8)": voxbatch_synth(args.threads, 8),
    }
    rtf: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(args.rounds + 1):  # the first round warms up and is not counted
        for name in ways if round_ % 2 else reversed(list(ways)):
            start = time.perf_counter()
            audio = ways[name](batch)
            seconds = time.perf_counter() - start
            if round_:
                rtf[name].append(seconds / (sum(a.size for a in audio) / 24000))
    base = statistics.median(rtf["plain loop (same ONNX models)"])
    print(f"zh-baker, {len(batch)} paragraphs, {args.threads} thread(s), median of {args.rounds} rounds")
    print(f"{'':45s} {'RTF':>7s} {'x real time':>11s} {'vs loop':>8s}")
    results = {}
    for name, values in rtf.items():
        median = statistics.median(values)
        results[name] = median
        print(f"{name:45s} {median:7.4f} {1 / median:11.1f} {base / median:8.2f}")
    wall, audio_seconds = end_to_end()
    results["voxbatch run end to end (wall / audio)"] = wall / audio_seconds
    print(f"voxbatch run on the sample, start-up included: {audio_seconds:.1f} s of audio in {wall:.1f} s wall")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
