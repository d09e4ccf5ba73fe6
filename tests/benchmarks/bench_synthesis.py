"""Benchmark: Piper synthesis speed on the CPU by ONNX Runtime thread count and lanes, against one thread.

Run: .venv/bin/python tests/benchmarks/bench_synthesis.py [FILE] [--rounds N]
Prints seconds of audio per second of compute (x real time) for each setting and the ratio to threads=1, the
median of alternating rounds. Texts are given as the worker gives them: one a call on one session, lanes x 4 a
call with lanes.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from tasks.backends.registry import get_backend
from tasks.config import validate_settings
from tasks.text.chunking import chunk_paragraph
from tasks.text.ingest import read_document

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "en" / "the-lighthouse.txt"


def speed(texts: list[str], threads: int, lanes: int) -> tuple[float, float, float]:
    """(load seconds, synthesis seconds, audio seconds) for one fresh voice with `threads` and `lanes`."""
    from tasks.shard.synthesis import TEXTS_PER_LANE

    settings = validate_settings({"synthesis": {"threads": threads, "lanes": lanes}})
    backend = get_backend("piper")
    info = backend.resolve(settings.synthesis)
    t0 = time.perf_counter()
    synth = backend.load(info, settings.synthesis)
    load = time.perf_counter() - t0
    per_call = synth.lanes * TEXTS_PER_LANE if synth.lanes > 1 else 1
    synth.synthesize(["Warm up."] * per_call)
    t0 = time.perf_counter()
    out = [a for i in range(0, len(texts), per_call) for a in synth.synthesize(texts[i : i + per_call])]
    return load, time.perf_counter() - t0, sum(a.size for a in out) / info.sample_rate


SETTINGS = [(1, 1), (2, 1), (0, 1), (2, 2), (0, 0)]  # (threads, lanes); 0: auto


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 2
    args = [a for a in args if a != str(rounds)] if "--rounds" in sys.argv else args
    doc = read_document(Path(args[0]) if args else SAMPLE)
    texts = [c.text for p in doc.paragraphs for c in chunk_paragraph(p.text, "en", 300)]
    results: dict[tuple[int, int], list[tuple[float, float, float]]] = {k: [] for k in SETTINGS}
    for r in range(rounds):  # alternating order: this machine drifts
        for key in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
            results[key].append(speed(texts, *key))
    print(f"{len(texts)} chunks from {doc.source}, median of {rounds} rounds")
    x = {k: statistics.median(a / s for _, s, a in v) for k, v in results.items()}
    for (threads, lanes), runs in results.items():
        load = statistics.median(r[0] for r in runs)
        label = f"threads={threads or 'auto'} lanes={lanes or 'auto'}"
        speed_x = x[threads, lanes]
        print(f"{label:24s} load {load:5.2f} s  {speed_x:5.1f}x real time  vs 1 thread {speed_x / x[1, 1]:4.2f}")


if __name__ == "__main__":
    main()
