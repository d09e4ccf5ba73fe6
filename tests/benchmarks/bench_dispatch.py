"""Benchmark: a run fanned out to two `voxbatch worker` processes against the same run in one process.

Run: .venv/bin/python tests/benchmarks/bench_dispatch.py [--entries N] [--shard-size S] [--backend piper|tone]

It starts its own Prefect server (`prefect server start`, SQLite in a temporary PREFECT_HOME, stopped at the end)
and the pool-wide limit `voxbatch-cpu` (2), then, both runs against that server into fresh local folders:

1. Baseline: `voxbatch run TEXT --out A` (every shard in the one process), with PREFECT_API_URL set.
2. Fan-out: two `voxbatch worker` processes (started and warm before the clock starts), then
   `voxbatch run TEXT --out B --dispatch voxbatch-shard/voxbatch-shard`.

Reported: wall time and audio seconds per wall second of each, their ratio, and per dispatched shard the
overhead from dispatch to its first synthesis: the shard flow run's creation on the server to the moment its
first chunk started synthesizing (first audio file's mtime minus that chunk's synth_seconds), split into the
wait for a worker to pick the run up (created -> start_time) and the start of the shard process (start_time ->
first synthesis: a new Python process importing voxbatch, reading the plan, loading the voice). All shards are
dispatched at once and two run at a time, so later shards' pickup includes queueing; the first wave's is the
overhead alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.helpers import logbook  # noqa: E402
from tests.prefect_servers import BIN, spawn, start_prefect_server  # noqa: E402


def run(env: dict[str, str], *args: str) -> tuple[float, dict]:
    started = time.perf_counter()
    result = subprocess.run([str(BIN / "voxbatch"), *args], env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"voxbatch {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    out = Path(args[args.index("--out") + 1])
    summary = json.loads(next(out.glob("runs/*/summary.json")).read_text())
    return wall, summary


def shard_overheads(api_url: str, run_id: str, out: Path) -> list[tuple[float, float]]:
    import pyarrow.parquet as pq
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"run-id:{run_id}"])))
    found = []
    for r in runs:
        shard = int(r.name.rsplit("-", 1)[1])
        rows = pq.read_table(out / "manifests" / run_id / f"shard-{shard:05d}.parquet").to_pylist()
        first = min((out / row["audio_key"]).stat().st_mtime - (row["synth_seconds"] or 0.0) for row in rows)
        created, started = r.created.timestamp(), r.start_time.timestamp()
        found.append((started - created, first - started))
    return found


def timeline(api_url: str, run_id: str, out: Path, t0: float) -> None:
    """Per shard run, seconds from the parent's start: created, Running, first synthesis, last audio, ended."""
    import pyarrow.parquet as pq
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"run-id:{run_id}"])))
    print("shard  created  running  first-synth  last-audio  ended", file=sys.stderr)
    for r in sorted(runs, key=lambda r: r.created):
        shard = int(r.name.rsplit("-", 1)[1])
        rows = pq.read_table(out / "manifests" / run_id / f"shard-{shard:05d}.parquet").to_pylist()
        mtimes = [(out / row["audio_key"]).stat().st_mtime for row in rows]
        first = min(m - (row["synth_seconds"] or 0.0) for m, row in zip(mtimes, rows, strict=True))
        marks = [r.created.timestamp(), r.start_time.timestamp(), first, max(mtimes), r.end_time.timestamp()]
        print(f"{shard:5d}  " + "  ".join(f"{m - t0:7.2f}" for m in marks), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=48, help="chunks in the text (default: %(default)s)")
    parser.add_argument("--shard-size", type=int, default=6)
    parser.add_argument("--backend", default="piper", choices=["piper", "tone"])
    parser.add_argument("--timeline", action="store_true", help="print each fanned-out shard's timeline to stderr")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voxbatch-bench-dispatch-"))
    server = start_prefect_server(tmp / "home")
    workers = []
    try:
        server.prefect("gcl", "create", "voxbatch-cpu", "--limit", "2")
        env = server.env()
        text = tmp / "bench log.txt"
        text.write_text(logbook(args.entries))
        common = ["--backend", args.backend, "--shard-size", str(args.shard_size)]
        run(env, "run", str(text), "--out", str(tmp / "warmup"), "--run-id", "warmup", *common)  # caches, imports
        in_process, base = run(env, "run", str(text), "--out", str(tmp / "in-process"), *common)
        # One lane on one thread each (what each of the in-process run's two lanes has), the voice loaded.
        worker = [str(BIN / "voxbatch"), "worker", "--lanes", "1", "--threads", "1", "--preload"]
        workers = [spawn(worker, env, tmp / f"worker-{i}.log") for i in range(2)]
        time.sleep(15)  # both registered and polling
        dispatch = ["--dispatch", "voxbatch-shard/voxbatch-shard"]
        t0 = time.time()
        fanned, fan = run(env, "run", str(text), "--out", str(tmp / "fanned"), *common, *dispatch)
        overheads = shard_overheads(server.api_url, fan["run_id"], tmp / "fanned")
        if args.timeline:
            timeline(server.api_url, fan["run_id"], tmp / "fanned", t0)
            print(f"parent: {fanned:.2f} s", file=sys.stderr)
        # Warm: workers that have run shards take a run of two shards, one each (no queueing), three times.
        warm = []
        for i in range(3):
            small = tmp / f"warm {i}.txt"
            small.write_text(logbook(2 * args.shard_size).replace("Entry", f"Entry {i}-"))
            _, w = run(env, "run", str(small), "--out", str(tmp / f"warm-{i}"), *common, *dispatch)
            warm += shard_overheads(server.api_url, w["run_id"], tmp / f"warm-{i}")
    finally:
        for w in workers:
            w.stop()
        server.stop()
    pickup = [o[0] for o in overheads]
    start = [o[1] for o in overheads]
    report = {
        "date": datetime.now().isoformat(timespec="minutes"),
        "chunks": base["chunks"],
        "shards": base["shards"],
        "audio_seconds": round(base["audio_seconds"], 1),
        "in_process_wall_s": round(in_process, 1),
        "two_workers_wall_s": round(fanned, 1),
        "in_process_audio_s_per_s": round(base["audio_seconds"] / in_process, 2),
        "two_workers_audio_s_per_s": round(fan["audio_seconds"] / fanned, 2),
        "throughput_ratio_two_workers_over_in_process": round(in_process / fanned, 3),
        "dispatch_to_first_synthesis_s_median": round(statistics.median(p + s for p, s in overheads), 2),
        "dispatch_to_pickup_s_median": round(statistics.median(pickup), 2),
        "pickup_to_first_synthesis_s_median": round(statistics.median(start), 2),
        "dispatch_to_first_synthesis_s_max": round(max(p + s for p, s in overheads), 2),
        # The first wave finds a worker free: its pickup is the dispatch overhead itself, not queueing.
        "first_wave_dispatch_to_first_synthesis_s": round(min(p + s for p, s in overheads), 2),
        "first_wave_dispatch_to_pickup_s": round(min(pickup), 2),
        "warm_dispatch_to_first_synthesis_s_median": round(statistics.median(p + s for p, s in warm), 2),
        "warm_dispatch_to_first_synthesis_s_max": round(max(p + s for p, s in warm), 2),
        "warm_dispatch_to_pickup_s_median": round(statistics.median(p for p, _ in warm), 2),
    }
    print(json.dumps(report, indent=2))
    if args.timeline:
        print(f"logs kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
