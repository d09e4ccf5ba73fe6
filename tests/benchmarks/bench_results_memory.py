"""Benchmark: peak memory of reading a run's results (`voxbatch status`, `export` hf and nemo, `report`) by run size.

Run: .venv/bin/python tests/benchmarks/bench_results_memory.py [--rows 10000 1000000] [--old REV --old-rows N ...]

For each size it writes a finished run straight in the real layout (tests/synthetic_run.py: the plan file as the
planner writes it, a manifest per shard of 200 rows, one chunk in 97 failed; the ok rows' audio is one of a
hundred 10 ms FLAC objects, so the hf export really reads and embeds audio but the disk holds 100 files, not a
million), then runs each command on it as the user does (`python -m flows.cli ...`, a fresh process each;
`consolidate`: the run manifest written as a run's flow ends, by its function) and reads the child's peak RSS
from os.wait4 (ru_maxrss). The baseline in the same command is the smallest size:
each size's peak over the smallest's (goal: a million rows under 1 GB, within 1.5x of 10,000). `--old REV`: the
same commands with the code of commit REV (git archive into a temporary folder, first on the path) at
`--old-rows`, to show what reading every row as an object cost (about 6 KB a row; a million would need 6 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.synthetic_run import synthetic_run  # noqa: E402

# Consolidation has no command of its own (a run's last step): the function, called as the flow calls it.
_CONSOLIDATE = (
    "import sys; from tasks.storage import open_store; from tasks.results.run_state import consolidate, "
    "load_run_state; s = open_store(sys.argv[1]); consolidate(s, load_run_state(s, sys.argv[2]))"
)
COMMANDS = {
    "status": lambda run: ["-m", "flows.cli", "status", str(run)],
    "export-nemo": lambda run: ["-m", "flows.cli", "export", str(run), "--format", "nemo"],
    "export-hf": lambda run: ["-m", "flows.cli", "export", str(run), "--format", "hf"],
    "report": lambda run: ["-m", "flows.cli", "report", str(run)],
    "consolidate": lambda run: ["-c", _CONSOLIDATE, str(run), "synthetic-" + run.name.removeprefix("run-")],
}
LIMIT_MIB = 1024


def measure(code: Path, args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of `python ARGS` with the code under `code`."""
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, *args], cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code_ = os.waitstatus_to_exitcode(status)
    child.returncode = code_  # reaped here: Popen must not wait for it again
    if code_ not in (0, 3):  # 3: the run has failed chunks (status says so), as generated
        err = child.stderr.read().decode() if child.stderr else ""
        raise SystemExit(f"{' '.join(args)[:200]} failed ({code_}):\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, code_


def old_tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--old", help="a commit whose code is measured too (at --old-rows)")
    parser.add_argument("--old-rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work", type=Path, help="keep the generated runs here (and reuse those already there)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-results-"))
    results = []
    try:
        trees = [("this", REPO, sorted(args.rows))]
        if args.old:
            shutil.rmtree(work / "old", ignore_errors=True)
            (work / "old").mkdir(parents=True)
            trees.append((f"old {args.old}", old_tree(args.old, work / "old"), sorted(args.old_rows)))
        runs: dict[int, Path] = {}
        for rows in sorted({r for _, _, sizes in trees for r in sizes}):
            start = time.perf_counter()
            runs[rows] = work / f"run-{rows}"
            if (runs[rows] / "runs").exists():
                continue
            synthetic_run(runs[rows], rows)
            print(f"generated {rows} rows in {time.perf_counter() - start:.0f} s", flush=True)
        for label, code, sizes in trees:
            for name in args.commands:
                for rows in sizes:
                    wall, peak, _ = measure(code, COMMANDS[name](runs[rows]))
                    results.append(
                        {"code": label, "command": name, "rows": rows, "wall_seconds": wall, "peak_mib": peak}
                    )
                    print(f"{label:>12} {name:>12} {rows:>9} rows {wall:>7.1f} s {peak:>7.0f} MiB", flush=True)
        print(f"\n{'code':>12} {'command':>12} {'rows':>9} {'wall s':>7} {'peak MiB':>9} {'x smallest':>10}")
        for r in results:
            smallest = next(
                x
                for x in results
                if x["code"] == r["code"]
                and x["command"] == r["command"]
                and x["rows"] == min(y["rows"] for y in results if y["code"] == r["code"])
            )
            r["ratio_to_smallest"] = r["peak_mib"] / smallest["peak_mib"]
            print(
                f"{r['code']:>12} {r['command']:>12} {r['rows']:>9} {r['wall_seconds']:>7.1f} {r['peak_mib']:>9.0f} "
                f"{r['ratio_to_smallest']:>10.2f}"
            )
        over = [r for r in results if r["code"] == "this" and r["peak_mib"] >= LIMIT_MIB]
        print(f"\nthis code, every command under {LIMIT_MIB} MiB: {'yes' if not over else 'NO: ' + str(over)}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        if over:
            raise SystemExit(1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
