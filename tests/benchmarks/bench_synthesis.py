"""Benchmark: Piper synthesis speed on the CPU by ONNX Runtime thread count, against one thread.

Run: .venv/bin/python tests/benchmarks/bench_synthesis.py [FILE]
Prints seconds of audio per second of compute (x real time) for each setting and the ratio to threads=1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tasks.backends import get_backend
from tasks.chunking import chunk_paragraph
from tasks.config import validate_settings
from tasks.ingest import read_document

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "en" / "the-lighthouse.txt"


def speed(texts: list[str], threads: int) -> tuple[float, float, float]:
    """(load seconds, synthesis seconds, audio seconds) for one fresh voice with `threads`."""
    settings = validate_settings({"synthesis": {"threads": threads}})
    backend = get_backend("piper")
    info = backend.resolve(settings.synthesis)
    t0 = time.perf_counter()
    synth = backend.load(info, settings.synthesis)
    load = time.perf_counter() - t0
    synth.synthesize(["Warm up."])
    t0 = time.perf_counter()
    out = synth.synthesize(texts)
    return load, time.perf_counter() - t0, sum(a.size for a in out) / info.sample_rate


def main() -> None:
    doc = read_document(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE)
    texts = [c.text for p in doc.paragraphs for c in chunk_paragraph(p.text, "en", 300)]
    results = {threads: speed(texts, threads) for threads in (1, 2, 0)}
    base = results[1][2] / results[1][1]
    print(f"{len(texts)} chunks from {doc.source}")
    for threads, (load, synth, audio) in results.items():
        x = audio / synth
        label = "default" if threads == 0 else str(threads)
        print(
            f"threads={label:7s} load {load:5.2f} s  synth {synth:6.2f} s  audio {audio:6.1f} s  "
            f"{x:5.1f}x real time  ratio vs 1 thread {x / base:4.2f}"
        )


if __name__ == "__main__":
    main()
