"""Benchmark: planning throughput and peak memory against input size (`voxbatch plan` on plain English text).

Run: .venv/bin/python tests/benchmarks/bench_plan.py [--sizes-mb 2 200] [--rounds 2] [--json PATH]

For each size it writes a deterministic plain-English corpus (paragraphs of words drawn from the bundled sample,
seeded), then runs `voxbatch plan FILE --out DIR` in a fresh subprocess pinned to one core (taskset), alternating
sizes each round. It reports the median wall time, the throughput in MB/s with start-up (imports, voice
lookup) included, the marginal throughput against the smallest size (MB more over seconds more: planning alone,
goal >= 20 on one core), the peak resident memory of the subprocess (ru_maxrss of the child), and the ratio of
each size's peak to the smallest's (goal: the larger input within 2x of the smaller). A baseline in the same
command: the imports alone (`python -c "import tasks.plan.planner"`), subtracted from nothing but shown beside.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VOXBATCH = [sys.executable, "-m", "flows.cli"]


def corpus(path: Path, megabytes: float, seed: int = 7) -> Path:
    words = " ".join(p.read_text() for p in sorted((REPO / "data" / "sample" / "en").glob("*.txt"))).split()
    rng = random.Random(seed)
    target = int(megabytes * 1_000_000)
    with path.open("w", encoding="utf-8") as out:
        written = 0
        while written < target:
            sentences = [
                " ".join(rng.choice(words) for _ in range(rng.randint(8, 24))).capitalize() + "." for _ in range(5)
            ]
            paragraph = " ".join(sentences) + "\n\n"
            out.write(paragraph)
            written += len(paragraph.encode())
    return path


def run_child(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process on one core."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [*pin, *args], cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak if peak > before else before  # ru_maxrss of children is the largest so far


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[2.0, 200.0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    try:
        files = {size: corpus(work / f"corpus-{size:g}mb.txt", size) for size in sorted(args.sizes_mb)}
        times: dict[float, list[float]] = {size: [] for size in files}
        peaks: dict[float, list[int]] = {size: [] for size in files}
        base_times: list[float] = []
        base_peaks: list[int] = []
        for round_ in range(args.rounds):
            # ru_maxrss of RUSAGE_CHILDREN only grows, so each measurement runs in its own wrapper process
            for size in files if round_ % 2 == 0 else reversed(list(files)):
                wrapper = [sys.executable, __file__, "--child", str(files[size]), str(work / f"out-{size:g}-{round_}")]
                wall, peak = _measured(wrapper)
                times[size].append(wall)
                peaks[size].append(peak)
            wall, peak = _measured([sys.executable, __file__, "--child-imports"])
            base_times.append(wall)
            base_peaks.append(peak)
        smallest = min(files)
        results = []
        print(f"imports alone: {statistics.median(base_times):.2f} s, {max(base_peaks) / 1024:.0f} MiB peak")
        print(f"{'input':>8} {'wall s':>8} {'MB/s':>7} {'marginal':>9} {'peak MiB':>9} {'x smallest':>10}")
        base_wall = statistics.median(times[smallest])
        for size in files:
            wall = statistics.median(times[size])
            peak = max(peaks[size])
            marginal = (size - smallest) / (wall - base_wall) if size > smallest and wall > base_wall else None
            row = {
                "megabytes": size,
                "wall_seconds": wall,
                "mb_per_second": size / wall,
                "marginal_mb_per_second": marginal,
                "peak_mib": peak / 1024,
                "peak_ratio_to_smallest": peak / max(peaks[smallest]),
            }
            results.append(row)
            shown = f"{marginal:>9.2f}" if marginal else f"{'-':>9}"
            print(
                f"{size:>6g}MB {wall:>8.2f} {row['mb_per_second']:>7.2f} {shown} {row['peak_mib']:>9.0f} "
                f"{row['peak_ratio_to_smallest']:>10.2f}"
            )
        if args.json:
            args.json.write_text(
                json.dumps({"imports_seconds": statistics.median(base_times), "sizes": results}, indent=2)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measured(command: list[str]) -> tuple[float, int]:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    wall, peak = result.stdout.split()
    return float(wall), int(peak)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(*run_child([*VOXBATCH, "plan", sys.argv[2], "--out", sys.argv[3]]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-imports":
        print(*run_child([sys.executable, "-c", "import tasks.plan.planner, tasks.plan.store, flows.cli"]))
    else:
        main()
