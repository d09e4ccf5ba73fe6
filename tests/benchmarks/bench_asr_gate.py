"""Benchmark: the listening check's false failures on good chunks and its catches on broken ones (issue 23).

Run: .venv/bin/python tests/benchmarks/bench_asr_gate.py OUT [--broken 20] [--sample 1.0]
OUT is a finished run (its manifest and audio, local): its ok chunks are the good set. Each goes through the check
a run uses (tasks.shard.checker.Checker: fitted batches, spot checks, the full window, the second opinion; no
regeneration), then the first BROKEN of them again, broken four ways: garbled (each 0.2 s reversed), looped (the
chunk twice over), truncated (cut at half), silent. A good chunk that fails is a false failure; a broken one that
passes is a miss. Prints both, per kind.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from tasks.config import validate_settings
from tasks.shard.checker import Checker, _garbled
from tasks.shard.finish import ChunkAudio

BROKEN = {
    "garbled": lambda a: _garbled(a),
    "looped": lambda a: np.concatenate([a, a]),
    "truncated": lambda a: a[: a.size // 2],
    "silent": lambda a: np.zeros_like(a),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--broken", type=int, default=20, help="good chunks to break each way")
    parser.add_argument("--sample", type=float, default=0.1, help="qa.asr_sample")
    args = parser.parse_args()
    rows = pd.read_parquet(glob.glob(str(args.out / "runs/*/manifest.parquet"))[0])
    rows = rows[rows.status == "ok"].drop_duplicates("chunk_id")
    items: list[tuple[str, str, np.ndarray, int]] = []  # (kind, said, audio, rate)
    for r in rows.itertuples():
        audio, rate = sf.read(args.out / str(r.audio_key), dtype="float32")
        items.append(("good", r.spoken_text or r.text, audio, rate))
    for kind, broken in BROKEN.items():
        items += [(kind, said, broken(audio), rate) for _, said, audio, rate in items[: args.broken]]
    rate = items[0][3]
    settings = validate_settings({"qa": {"asr": True, "regenerate": 0, "asr_sample": args.sample}})
    checker = Checker(rate, settings)
    verdicts = []
    for n, (kind, said, audio, _) in enumerate(items):
        verdicts += checker.offer(n, ChunkAudio(f"{kind}-{n}", said, "en", rate, rate), audio, None)
    verdicts += checker.flush()
    checker.close()
    failed = {i: v.error for i, v in verdicts if v.error}
    print(f"{'kind':10}{'chunks':>8}{'failed':>8}{'rate':>8}")
    for kind in ("good", *BROKEN):
        picked = [n for n, item in enumerate(items) if item[0] == kind]
        n_failed = sum(n in failed for n in picked)
        print(f"{kind:10}{len(picked):8d}{n_failed:8d}{n_failed / len(picked):8.1%}")
    for n, error in failed.items():
        if items[n][0] == "good":
            print(f"false failure: {items[n][1][:70]!r}: {error[:160]}")
    heard = {i: v.heard.transcript if v.heard else "" for i, v in verdicts}
    broken_total = [n for n, item in enumerate(items) if item[0] != "good"]
    for n in broken_total:
        if n not in failed:
            print(f"missed {items[n][0]}: {items[n][1][:60]!r}, heard {heard.get(n, '')[:60]!r}")
    caught = sum(n in failed for n in broken_total)
    print(f"catch rate {caught}/{len(broken_total)} = {caught / len(broken_total):.1%}")
    print(f"heard in full {checker.heard}, spot-checked {checker.spot_checked}")


if __name__ == "__main__":
    main()
