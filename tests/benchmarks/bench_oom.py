"""Benchmark: synthesis throughput with 5% injected out-of-memory errors against none, same text, one process.

Run: .venv/bin/python tests/benchmarks/bench_oom.py [--chunks N] [--rounds R]
For the real Piper voice (CPU, one chunk per call) and for a tiny VITS checkpoint (batched, CPU), it runs the
engine over the same chunks with VOXBATCH_FAULTS-style faults off and at oom_rate=0.05, alternating rounds,
and prints audio seconds per wall second for each and the loss. An injected fault is raised after the batch
ran and its output is discarded, so each one wastes a whole batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.end_to_end import engine_speed  # raises if a chunk failed
from tasks.backends.registry import get_backend
from tasks.config import validate_settings

SHIPS = ["Morning Star", "Grey Heron", "Saint Brendan", "Calypso", "North Wind", "Marigold", "Kittiwake"]


def corpus(n: int) -> list[str]:
    """Deterministic sentences of varied length, like a log book."""
    out = []
    for i in range(n):
        ship = SHIPS[i % len(SHIPS)]
        extra = ", with gulls following close behind her stern" * (i % 4)
        out.append(f"Entry {i}. The {ship} passed the point at {i % 12 + 1} o'clock{extra}, heading home.")
    return out


def bench(name: str, synth, texts: list[str], batch: int, rounds: int) -> None:  # type: ignore[no-untyped-def]
    synth.synthesize(texts[:1])  # warm up
    clean, faulty, ooms = [], [], 0
    for r in range(rounds):  # alternate, so drift on the machine hits both alike
        clean.append(engine_speed(synth, texts, "", batch)[0])
        speed, n = engine_speed(synth, texts, f"oom_rate=0.05,seed={r}", batch)
        faulty.append(speed)
        ooms += n
    a, b = statistics.median(clean), statistics.median(faulty)
    print(
        f"{name:28s} no faults {a:7.1f}x real time | 5% OOM {b:7.1f}x real time ({ooms / rounds:.1f} OOMs/round) "
        f"| ratio {b / a:.3f} | loss {100 * (1 - b / a):.1f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = corpus(args.chunks)
    print(f"{len(texts)} chunks, {sum(map(len, texts))} characters, {args.rounds} rounds each, median shown")
    s = validate_settings({"synthesis": {"lanes": 1}})  # one session: one chunk a call, as measured
    piper = get_backend("piper")
    bench("piper joe (CPU, 1 per call)", piper.load(piper.resolve(s.synthesis), s.synthesis), texts, 1, args.rounds)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.helpers import build_tiny_vits

    with tempfile.TemporaryDirectory() as tmp:
        voice = build_tiny_vits(Path(tmp) / "tiny-vits")
        # No noise: random durations would make rounds differ by more than the faults do.
        v = validate_settings(
            {"synthesis": {"backend": "vits", "voice": str(voice), "noise_scale": 0.0, "noise_w": 0.0}}
        )
        vits = get_backend("vits")
        synth = vits.load(vits.resolve(v.synthesis), v.synthesis)
        bench("tiny vits (CPU, batches of 4)", synth, texts, 4, args.rounds)


if __name__ == "__main__":
    main()
