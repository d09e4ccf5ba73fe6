"""Benchmark: thousands of one-sentence shards of the `tone` voice dispatched to two warm workers.

Run: .venv/bin/python tests/benchmarks/bench_scale.py [--shards 1000] [--baseline 100] [--restart-at 0.5] [--slots 2]

Its own `prefect server start` (SQLite, the default database; `--database postgres`: a PostgreSQL server of
its own on 127.0.0.1, from Debian's `postgresql` package) and pool-wide limit `voxbatch-cpu` (2 x slots),
two `voxbatch worker --limit SLOTS` processes, then `voxbatch run TEXT --shard-size 1 --backend tone
--dispatch ...` of a text of N lines, once with `--baseline` shards (memory baseline) and once with
`--shards`. Reported per run: wall time, orchestration CPU seconds per shard (parent, workers and server: the
tone voice costs next to nothing), the parent's peak memory (and its ratio to the baseline run's), the slowest
answer of `prefect flow-run ls` (asked every 10 s during the run; the command, and the same query sent to the
server straight away), and whether every chunk is in the manifests exactly once.

`--restart-at F`: stop the server when a fraction F of the shards is committed and start it again on the same
database after `--down` seconds; the run must complete, or exit 5 and complete when run again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.postgres_servers import start_postgres  # noqa: E402
from tests.prefect_servers import BIN, PrefectServer, Proc, spawn, start_prefect_server  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children still running, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid] + [int(p) for p in _children(pid)]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
    return total


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


class ListWatch(threading.Thread):
    """`prefect flow-run ls` every `every` seconds while a run goes, and the same query sent to the server
    straight away (`POST /flow_runs/filter`, 20 newest): keeps the slowest of each. The command's own time
    includes starting Python and importing Prefect (about 1.5 s here); the request's is the server's answer."""

    def __init__(self, server: PrefectServer, every: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.server, self.every = server, every
        self.times: list[float] = []
        self.answers: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            started = time.perf_counter()
            result = self.server.prefect("flow-run", "ls", "--limit", "20", timeout=120, check=False)
            if result.returncode == 0:
                self.times.append(time.perf_counter() - started)
            else:
                self.failures += 1
            query = json.dumps({"limit": 20, "sort": "EXPECTED_START_TIME_DESC"}).encode()
            request = urllib.request.Request(
                f"{self.server.api_url}/flow_runs/filter", data=query, headers={"Content-Type": "application/json"}
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
                self.answers.append(time.perf_counter() - started)
            except OSError:
                self.failures += 1


def committed(out: Path) -> int:
    return sum(1 for _ in out.glob("manifests/*/shard-*.parquet"))


def dispatch(
    server: PrefectServer, tmp: Path, shards: int, tag: str, restart_at: float | None, down: float
) -> tuple[dict[str, object], PrefectServer]:
    text = tmp / f"{tag}.txt"
    text.write_text("\n\n".join(f"Line {tag} {i}: the tide turned at dawn." for i in range(shards)))
    out = tmp / f"out-{tag}"
    args = [str(BIN / "voxbatch"), "run", str(text), "--out", str(out), "--backend", "tone", "--shard-size", "1"]
    config = tmp / "no-sqlite-limit.toml"  # measures SQLite past the fan-out voxbatch allows it, on purpose
    config.write_text("[run]\ndispatch_sqlite_max_shards = 0\n")
    args += ["--config", str(config), "--dispatch", "voxbatch-shard/voxbatch-shard"]
    server_cpu, server_base = 0.0, cpu_seconds(server.proc.pid)
    watch = ListWatch(server)
    watch.start()
    started = time.perf_counter()
    exits: list[int] = []
    restarted, peak_rss_kb, parent_cpu, log = False, 0, 0.0, tmp / f"{tag}.log"
    while True:
        with log.open("ab") as sink:
            proc = subprocess.Popen(args, env=server.env(), stdout=sink, stderr=subprocess.STDOUT)
        while True:  # wait4: this child's own peak memory, not that of every process this script started
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if restart_at is not None and not restarted and committed(out) >= restart_at * shards:
                server_cpu += cpu_seconds(server.proc.pid) - server_base  # the old server's; the new one's from 0
                server_base = 0.0
                server.proc.stop()
                time.sleep(down)
                server = server.restart()
                restarted = True
            time.sleep(0.5)
        peak_rss_kb = max(peak_rss_kb, usage.ru_maxrss)
        parent_cpu += usage.ru_utime + usage.ru_stime
        exits.append(os.waitstatus_to_exitcode(status))
        if exits[-1] != 5 or len(exits) >= 3:  # exit 5: the server stayed away; the same command resumes
            break
    wall = time.perf_counter() - started
    watch.stop.set()
    server_cpu += cpu_seconds(server.proc.pid) - server_base
    import pandas as pd

    manifests = sorted(out.glob("manifests/*/shard-*.parquet"))
    rows = pd.concat([pd.read_parquet(m) for m in manifests], ignore_index=True) if manifests else pd.DataFrame()
    result = {
        "shards": shards,
        "exit_codes": exits,
        "wall_s": round(wall, 1),
        "shards_per_s": round(shards / wall, 2),
        "server_cpu_s": round(server_cpu, 1),
        "parent_cpu_s": round(parent_cpu, 1),
        "parent_max_rss_mb": round(peak_rss_kb / 1024, 1),
        "flow_run_ls_max_s": round(max(watch.times), 2) if watch.times else None,
        "flow_run_ls_median_s": round(sorted(watch.times)[len(watch.times) // 2], 2) if watch.times else None,
        "server_answer_max_s": round(max(watch.answers), 3) if watch.answers else None,
        "server_answer_median_s": round(sorted(watch.answers)[len(watch.answers) // 2], 3) if watch.answers else None,
        "flow_run_ls_failures": watch.failures,
        "committed_shards": len(manifests),
        "chunks_exactly_once": bool(
            len(rows) == shards and rows["chunk_id"].is_unique and (rows["status"] == "ok").all()
        ),
        "tail": log.read_text(errors="replace")[-600:] if exits[-1] != 0 else "",
    }
    return result, server  # the server restarted mid-run is a new process: the caller stops that one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=100, help="shards of the memory baseline run (0: none)")
    parser.add_argument("--restart-at", type=float, help="restart the server at this fraction of the shards")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--slots", type=int, default=1, help="warm slots per worker (its --limit; default 1)")
    parser.add_argument("--down", type=float, default=10.0, help="seconds the server stays down (default 10)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voxbatch-bench-scale-"))
    postgres = start_postgres() if args.database == "postgres" else None
    server = start_prefect_server(tmp / "home", database_url=postgres.url() if postgres else "")
    workers: list[Proc] = []
    report: dict[str, object] = {"date": datetime.now().isoformat(timespec="minutes"), "database": args.database}
    try:
        server.prefect("gcl", "create", "voxbatch-cpu", "--limit", str(2 * args.slots))
        command = [str(BIN / "voxbatch"), "worker", "--limit", str(args.slots)]
        workers = [spawn(command, server.env(), tmp / f"worker-{i}.log") for i in range(2)]
        report["slots_per_worker"] = args.slots
        time.sleep(15)
        if args.baseline:
            report["baseline"], server = dispatch(server, tmp, args.baseline, "baseline", None, 0)
        worker_cpu = sum(cpu_seconds(w.pid) for w in workers)
        database_cpu = cpu_seconds(postgres.proc.pid) if postgres else 0.0
        report["run"], server = dispatch(server, tmp, args.shards, "scale", args.restart_at, args.down)
        report["run"]["workers_cpu_s"] = round(sum(cpu_seconds(w.pid) for w in workers) - worker_cpu, 1)  # type: ignore[index]
        if postgres:  # its backends are children of the postmaster: their CPU is counted when they end
            report["run"]["database_cpu_s"] = round(cpu_seconds(postgres.proc.pid) - database_cpu, 1)  # type: ignore[index]
    finally:
        for w in workers:
            w.stop()
        server.stop()
        if postgres:
            postgres.stop()
    print(json.dumps(report, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
