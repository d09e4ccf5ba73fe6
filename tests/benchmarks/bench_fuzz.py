"""Benchmark: hostile inputs fuzzed at length, through planning (decoding, markdown, EPUB, tables) and the settings
loader; counts inputs tried and crashes, and the slowest planning time per MB of inputs of 1 MB or more.

Run: nice -n 10 .venv/bin/python tests/benchmarks/bench_fuzz.py [--inputs 100000] [--big 60] [--seed 1]
     [--crashes DIR] [--json PATH]

The long version of tests/test_fuzz.py, with its targets and mutators (tests/fuzz_targets.py). In one process, in
turn: random bytes of every input and settings kind, mutated real files (the repository's samples and docs, a
publisher-style EPUB, tables, settings files), EPUBs mutated inside a valid zip, Parquet tables of random columns,
and structures nested up to 200,000 deep. A crash is any exception that is not voxbatch's own (VoxbatchError): it
is counted by type and place, and its input saved under --crashes. Then --big inputs of 1-2 MB of hostile shapes
(one huge line of a repeated markdown opener, numbers, CJK, a huge table cell, a huge EPUB paragraph): each is
planned and timed in CPU seconds; the floor is 1 s per MB. The first planning (imports) is not timed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fuzz_targets import (  # noqa: E402  (the repository on the path first)
    ALLOWED,
    CONFIG_SUFFIXES,
    INPUT_SUFFIXES,
    deep_nesting,
    huge_input,
    load_config_bytes,
    mutate,
    mutate_epub,
    plan_bytes,
    random_parquet,
    seeds,
)

STRATEGIES = ("random bytes", "mutated file", "epub inside", "random parquet", "deep nesting", "settings file")
WEIGHTS = (20, 50, 8, 6, 2, 14)  # of every 100 inputs


def _make(strategy: str, rng: random.Random, seed_files: dict[str, list[bytes]]) -> tuple[str, bytes]:
    """One input of `strategy`: its kind (suffix) and bytes."""
    others = [b for kind in INPUT_SUFFIXES for b in seed_files[kind]]
    if strategy == "random bytes":
        suffix = rng.choice(INPUT_SUFFIXES + CONFIG_SUFFIXES)
        data = rng.randbytes(rng.choice((0, 1, 8, 64, 512, 4096)))
    elif strategy == "mutated file":
        suffix = rng.choice(INPUT_SUFFIXES)
        data = mutate(rng.choice(seed_files[suffix]), rng, others)
    elif strategy == "epub inside":
        suffix, data = ".epub", mutate_epub(seed_files[".epub"][0], rng)
    elif strategy == "random parquet":
        suffix, data = ".parquet", random_parquet(rng)
    elif strategy == "deep nesting":
        suffix = rng.choice(INPUT_SUFFIXES[:-1] + CONFIG_SUFFIXES)
        data = deep_nesting(suffix, rng.choice((10, 990, 1_100, 30_000, 200_000)))
    else:
        suffix = rng.choice(CONFIG_SUFFIXES)
        data = mutate(rng.choice(seed_files[suffix]), rng, [])
    return suffix, data


def _feed(suffix: str, data: bytes, folder: Path) -> None:
    if suffix in CONFIG_SUFFIXES:
        load_config_bytes(data, suffix, folder)
    else:
        plan_bytes(data, suffix, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="small inputs to try (besides --big)")
    parser.add_argument("--big", type=int, default=60, help="inputs of 1-2 MB to time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crashes", type=Path, default=Path(tempfile.gettempdir()) / "voxbatch-fuzz-crashes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="voxbatch-fuzz-"))
    seed_files = seeds(folder)
    rng = random.Random(args.seed)
    plan_bytes(b"Warm up: imports and the voice.", ".txt", folder)
    tried: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    slowest_small: dict[str, object] = {"cpu_s": 0.0}
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for i in range(args.inputs):
        strategy = rng.choices(STRATEGIES, WEIGHTS)[0]
        suffix, data = _make(strategy, rng, seed_files)
        before = time.process_time()
        try:
            _feed(suffix, data, folder)
        except ALLOWED:
            pass
        except Exception as exc:  # a crash: anything but voxbatch's own errors
            where = traceback.extract_tb(exc.__traceback__)[-1]
            key = f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
            crashes[key] += 1
            args.crashes.mkdir(parents=True, exist_ok=True)
            (args.crashes / f"crash-{i}{suffix}").write_bytes(data)
            print(f"crash {i} ({strategy}): {key}: {str(exc)[:200]}", flush=True)
        tried[strategy] += 1
        spent = time.process_time() - before
        if spent > float(str(slowest_small["cpu_s"])):
            slowest_small = {"cpu_s": round(spent, 3), "strategy": strategy, "suffix": suffix, "bytes": len(data)}
        if (i + 1) % 10_000 == 0:
            print(
                f"{i + 1} inputs, {sum(crashes.values())} crashes, {time.process_time() - start_cpu:.0f} s CPU",
                flush=True,
            )
    small_cpu = time.process_time() - start_cpu

    big: list[dict[str, object]] = []
    for _ in range(args.big):
        suffix = rng.choice((".txt", ".md", ".jsonl", ".csv", ".tsv", ".epub"))
        data = huge_input(suffix, rng.randint(1_000_000, 2_000_000), rng)
        try:
            seconds = plan_bytes(data, suffix, folder)
        except Exception as exc:
            crashes[f"{type(exc).__name__} (big {suffix})"] += 1
            print(f"crash (big {suffix}, {len(data)} bytes): {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            continue
        megabytes = len(data) / 1e6
        big.append({"suffix": suffix, "mb": round(megabytes, 2), "head": data[:12].decode("utf-8", "replace"),
                    "cpu_s": round(seconds, 3), "s_per_mb": round(seconds / megabytes, 3)})  # fmt: skip
    worst = max(big, key=lambda b: float(str(b["s_per_mb"])), default=None)
    result = {
        "inputs_tried": sum(tried.values()) + len(big),
        "small_inputs": dict(tried),
        "big_inputs": len(big),
        "crashes": sum(crashes.values()),
        "crash_kinds": dict(crashes),
        "small_inputs_cpu_s": round(small_cpu, 1),
        "small_inputs_per_cpu_s": round(sum(tried.values()) / max(small_cpu, 1e-9), 1),
        "slowest_small_input": slowest_small,
        "slowest_big_input": worst,
        "wall_s": round(time.perf_counter() - start_wall, 1),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps({**result, "big": big}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
