"""Benchmark: storage writes through the real upload path, and a whole run to S3 against the same run to a folder.

Run: .venv/bin/python tests/benchmarks/bench_storage.py [--objects N] [--rounds R] [--json PATH]

It starts its own SeaweedFS S3 server (`weed mini` on 127.0.0.1, in a temporary directory, stopped at the end) and
measures, each pair alternating in one command so drift on a shared machine hits both alike (medians shown):

1. Uploads: N objects of 100 KB (random bytes, keys like audio/<2 hex>/<hex>.flac, every one new) written the way
   tasks/worker.py writes audio: `Uploader.submit` of a `put(key, data, content_type=...)` (write-once, so
   IfNoneMatch on S3), then `Uploader.finish`. Objects per second with the default pool (UPLOAD_THREADS) against
   one thread (the baseline), to S3 and to a local folder, and each PUT's latency. Goal: >= 200 objects/s to S3.
2. End to end: a deterministic 60 KB English text through `voxbatch run FILE --out s3://bench/<new prefix>` and
   `voxbatch run FILE --out <new folder>` as subprocesses, each round into a fresh location (nothing reused), one
   Prefect home for all of them (migrated by an untimed warm-up run first). Median wall time of each from the runs'
   summary.json, the ratio S3/local (goal: <= 1.10) and storage_wait_seconds / wall_seconds of the S3 runs (goal:
   < 5%), with the subprocesses' own elapsed time and the per-shard stats that say where the rest went. Both
   synthesize the same chunks, so their synthesis times differ by machine noise only (on a shared 2-core machine,
   by tens of percent); the time spent on everything but synthesis isolates what the storage backend costs, and
   the ratio with synthesis equalized (local wall + the S3 run's extra non-synthesis time) / local wall says so.
3. The storage calls a run makes besides audio (open and check the store, plan, checkpoint, manifest), one at a
   time, S3 against a folder, with a real run's rows: they block their caller and are not in storage_wait_seconds.

With defaults (1000 objects, 3 upload rounds, 60 KB text, 2 runs each) it took 13 minutes on a quiet 2-core machine
and 23 while other work shared it: the text is about 54 minutes of audio, which Piper synthesizes at 12-20x real
time there (7x when the machine is shared), about 3 minutes a run.
--rounds 1 or a smaller --text-bytes shortens it; --skip-uploads / --skip-e2e run one part.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.s3_servers import WeedServer, free_port, start_weed  # noqa: E402

VOXBATCH = REPO / ".venv" / "bin" / "voxbatch"
BUCKET = "bench"
OBJECT_BYTES = 100_000
TEXT_BYTES = 60_000
S3_GOAL_OBJECTS_PER_SECOND = 200.0
WALL_RATIO_GOAL = 1.10
WAIT_SHARE_GOAL = 0.05

# --- part 1: uploads through tasks.shard.upload.Uploader ------------------------------------------------------------


@dataclass
class UploadRound:
    store: str  # "s3" or "local"
    threads: int
    objects: int
    seconds: float
    wait_seconds: float  # Uploader.wait_seconds: the caller blocked on storage (here: nearly all of it)
    put_p50_ms: float
    put_p95_ms: float

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def upload_round(store: Any, label: str, threads: int, payloads: list[bytes]) -> UploadRound:
    """Write every payload under a new key through an Uploader of `threads`, as the worker does; time it all."""
    from tasks.shard.upload import Uploader
    from tasks.storage.layout import content_type

    keys = [f"audio/{h[:2]}/{h}.flac" for h in (secrets.token_hex(16) for _ in payloads)]
    latencies: list[float] = []  # list.append is atomic: the upload threads share it

    def put(key: str, data: bytes) -> bool:
        t0 = time.perf_counter()
        written = bool(store.put(key, data, content_type=content_type(key)))
        latencies.append(time.perf_counter() - t0)
        return written

    uploads: Uploader[bool] = Uploader(threads=threads)
    written = 0
    t0 = time.perf_counter()
    for i, (key, data) in enumerate(zip(keys, payloads, strict=True)):
        for _tag, ok in uploads.submit(i, lambda k=key, d=data: put(k, d)):
            written += ok
    for _tag, ok in uploads.finish():
        written += ok
    seconds = time.perf_counter() - t0
    if uploads.errors:
        raise uploads.errors[0]
    if written != len(payloads):
        raise RuntimeError(f"{label}: {written} of {len(payloads)} new keys were written (write-once said exists)")
    return UploadRound(
        label,
        threads,
        len(payloads),
        seconds,
        uploads.wait_seconds,
        1000 * statistics.median(latencies),
        1000 * _percentile(latencies, 0.95),
    )


def bench_uploads(objects: int, rounds: int, tmp: Path) -> list[UploadRound]:
    from tasks.storage.local_store import LocalStore
    from tasks.storage.s3_client import UPLOAD_THREADS
    from tasks.storage.s3_store import S3Store

    s3_store = S3Store(f"s3://{BUCKET}/uploads-{secrets.token_hex(4)}")
    s3_store.check()

    def local_store() -> LocalStore:
        folder = Path(tempfile.mkdtemp(prefix="local-", dir=tmp))
        store = LocalStore(folder)
        store.check()
        return store

    rng = random.Random(1)
    # Warm-up, untimed: the process's S3 client and as many pooled connections as upload threads, page cache.
    warm = [rng.randbytes(OBJECT_BYTES) for _ in range(4 * UPLOAD_THREADS)]
    upload_round(s3_store, "s3", UPLOAD_THREADS, warm)
    warm_local = local_store()
    upload_round(warm_local, "local", UPLOAD_THREADS, warm)
    shutil.rmtree(warm_local.root)

    results: list[UploadRound] = []
    for r in range(rounds):
        payloads = [rng.randbytes(OBJECT_BYTES) for _ in range(objects)]  # made before the clock starts
        order = [UPLOAD_THREADS, 1] if r % 2 == 0 else [1, UPLOAD_THREADS]  # ABBA: drift cancels
        for threads in order:
            res = upload_round(s3_store, "s3", threads, payloads)
            results.append(res)
            print(f"  round {r + 1} s3    {threads} thread(s): {res.objects_per_second:7.1f} objects/s", flush=True)
        for threads in order:
            store = local_store()
            try:
                res = upload_round(store, "local", threads, payloads)
            finally:
                shutil.rmtree(store.root)
            results.append(res)
            print(f"  round {r + 1} local {threads} thread(s): {res.objects_per_second:7.1f} objects/s", flush=True)
    return results


def summarize_uploads(results: list[UploadRound]) -> list[dict[str, Any]]:
    from tasks.storage.s3_client import UPLOAD_THREADS

    rows = []
    for store in ("s3", "local"):
        base = statistics.median(r.objects_per_second for r in results if r.store == store and r.threads == 1)
        for threads in (UPLOAD_THREADS, 1):
            mine = [r for r in results if r.store == store and r.threads == threads]
            ops = statistics.median(r.objects_per_second for r in mine)
            rows.append(
                {
                    "store": store,
                    "threads": threads,
                    "objects_per_second": ops,
                    "mb_per_second": ops * OBJECT_BYTES / 1e6,
                    "ratio_to_1_thread": ops / base,
                    "put_p50_ms": statistics.median(r.put_p50_ms for r in mine),
                    "put_p95_ms": statistics.median(r.put_p95_ms for r in mine),
                    "rounds": [r.objects_per_second for r in mine],
                }
            )
    return rows


# --- part 2: a whole run, S3 against a folder -----------------------------------------------------------------

_NAMES = ["Margaret", "Tobias", "Eleanor", "Samuel", "Clara", "Jonah", "Beatrice", "Owen", "Harriet", "Felix"]
_ROLES = ["keeper", "ferryman", "harbour master", "schoolteacher", "fisherman", "baker", "radio operator", "doctor"]
_VERBS = ["watched", "mended", "carried", "counted", "painted", "followed", "remembered", "described", "found"]
_THINGS = [
    "a brass lantern",
    "the old rowing boat",
    "a bundle of letters",
    "the broken barometer",
    "a basket of apples",
    "the harbour chain",
    "a map of the reefs",
    "the church bell",
    "a jar of tar",
    "the lighthouse log",
    "a coil of rope",
    "the winter nets",
]
_PLACES = [
    "the northern cliffs",
    "the harbour wall",
    "the village square",
    "the lighthouse gallery",
    "the shingle beach",
    "the chapel on the hill",
    "the boathouse",
    "the salt marsh",
    "the ferry landing",
    "the lane behind the inn",
]
_TIMES = ["at dawn", "before noon", "after supper", "at dusk", "in the small hours", "on market day", "at low tide"]
_WEATHER = ["a grey drizzle", "a bright wind", "thick fog", "a hard frost", "warm sunshine", "a rising gale"]
_FEELINGS = ["quietly pleased", "uneasy", "tired but hopeful", "curious", "surprisingly calm", "a little lonely"]
_MONTHS = ["January", "March", "April", "June", "August", "September", "October", "December"]
_SHIPS = ["Morning Star", "Grey Heron", "Saint Brendan", "Calypso", "North Wind", "Marigold", "Kittiwake", "Osprey"]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _sentence(rng: random.Random) -> str:
    name, role, verb = rng.choice(_NAMES), rng.choice(_ROLES), rng.choice(_VERBS)
    thing, place, when = rng.choice(_THINGS), rng.choice(_PLACES), rng.choice(_TIMES)
    n = rng.randint(2, 97)
    templates: list[Callable[[], str]] = [
        lambda: f"{name}, the {role}, {verb} {thing} near {place} {when}.",
        lambda: (
            f"{when.capitalize()}, {rng.choice(_WEATHER)} settled over {place}, and {name} felt "
            f"{rng.choice(_FEELINGS)}."
        ),
        lambda: f"Nobody in the village could say why {name} had {verb} {thing} for {n} years.",
        lambda: f'"Keep an eye on {thing}," said {name}, "and tell me if the {rng.choice(_SHIPS)} comes home."',
        lambda: (
            f"On the {_ordinal(n % 28 + 1)} of {rng.choice(_MONTHS)}, the {rng.choice(_SHIPS)} passed {place} "
            f"with {n} gulls following her stern."
        ),
        lambda: (
            f"The {role} walked slowly from {place} to {rng.choice(_PLACES)}, counting {n} steps between the lamps."
        ),
        lambda: f"Was it {rng.choice(_WEATHER)} or only the smoke from {place} that hid {thing} {when}?",
        lambda: f"{name} wrote in the notebook that {thing} had been {verb} by the {role} {when}.",
    ]
    return rng.choice(templates)()


def english_text(size: int = TEXT_BYTES, seed: int = 7) -> str:
    """A deterministic English story of about `size` bytes in which no sentence repeats (so no chunk does)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    paragraphs = ["The Harbour Notebooks"]
    length = len(paragraphs[0])
    while length < size:
        sentences: list[str] = []
        wanted = rng.randint(3, 7)
        while len(sentences) < wanted:
            s = _sentence(rng)
            if s not in seen:
                seen.add(s)
                sentences.append(s)
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        length += len(paragraph) + 2
    return "\n\n".join(paragraphs) + "\n"


@dataclass
class RunResult:
    round: int
    target: str  # "s3" or "local"
    location: str
    run_id: str
    elapsed_seconds: float  # the subprocess, start to exit: includes Prefect's start and the interpreter's
    wall_seconds: float  # summary.json: the flow, plan to summary
    audio_seconds: float
    storage_wait_seconds: float
    chunks: int
    synthesized: int
    reused: int
    cpu_seconds: float  # voxbatch and the children it waited for (Prefect's API server), user + system
    weed_cpu_seconds: float | None  # the S3 server meanwhile (it idles through the local runs)
    audio_bytes: int  # stored under audio/
    shards: list[dict[str, Any]] = field(default_factory=list)

    @property
    def compute_seconds(self) -> float:
        return sum(float(s.get("compute_seconds") or 0.0) for s in self.shards)

    @property
    def shard_wall_seconds(self) -> float:
        return sum(float(s.get("wall_seconds") or 0.0) for s in self.shards)

    @property
    def not_synthesis_seconds(self) -> float:
        """Wall time not spent synthesizing: what storage, Prefect, planning and post-processing cost."""
        return self.wall_seconds - self.compute_seconds

    @property
    def checkpoints(self) -> int:
        return sum(int(s.get("checkpoints") or 0) for s in self.shards)


Outputs = tuple[dict[str, Any], list[dict[str, Any]], int]  # summary.json, shards/*.json, bytes under audio/


def _read_outputs_local(folder: Path) -> Outputs:
    (summary_path,) = folder.glob("runs/*/summary.json")
    shards = [json.loads(p.read_text()) for p in sorted(summary_path.parent.glob("shards/*.json"))]
    audio_bytes = sum(p.stat().st_size for p in (folder / "audio").rglob("*") if p.is_file())
    return json.loads(summary_path.read_text()), shards, audio_bytes


def _read_outputs_s3(client: Any, prefix: str) -> Outputs:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/")
    objects = [o for page in pages for o in page.get("Contents", [])]
    keys = sorted(o["Key"] for o in objects if o["Key"].startswith(f"{prefix}/runs/"))
    audio_bytes = sum(int(o["Size"]) for o in objects if o["Key"].startswith(f"{prefix}/audio/"))

    def get(key: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        return data

    (summary_key,) = [k for k in keys if k.endswith("/summary.json")]
    return get(summary_key), [get(k) for k in keys if "/shards/" in k and k.endswith(".json")], audio_bytes


def process_group_cpu_seconds(pgid: int) -> float | None:
    """User + system CPU seconds of every live process in a process group (Linux /proc); None elsewhere."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        if int(fields[2]) == pgid:  # fields from the state on: state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_voxbatch(text: Path, out: str, env: dict[str, str], extra: list[str]) -> tuple[float, float]:
    """Run `voxbatch run`; (elapsed seconds, CPU seconds of it and the children it waited for)."""
    cpu0 = _children_cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(VOXBATCH), "run", str(text), "--out", out, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    cpu = _children_cpu_seconds() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"voxbatch run --out {out} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr}")
    return elapsed, cpu


def bench_end_to_end(
    rounds: int, shard_size: int | None, text_bytes: int, tmp: Path, server: WeedServer
) -> list[RunResult]:
    import boto3

    client = boto3.client("s3", endpoint_url=server.endpoint)
    text = tmp / "text" / "harbour-notebooks.txt"
    text.parent.mkdir()
    text.write_text(english_text(text_bytes), encoding="utf-8")
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp / "prefect-home"),  # one home for every run: migrated once, by the warm-up
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    extra = ["--shard-size", str(shard_size)] if shard_size else []
    print(f"  text: {text.stat().st_size} bytes, {len(text.read_text().split())} words", flush=True)

    warm_text = tmp / "text-warm" / "warm.txt"
    warm_text.parent.mkdir()
    warm_text.write_text("The bench warms up Prefect's database and the voice, and this is not timed.\n")
    warmup, _ = run_voxbatch(warm_text, str(tmp / "out-warmup"), env, extra)
    print(f"  warm-up run (Prefect home migration, page cache): {warmup:.1f} s, not counted", flush=True)

    results: list[RunResult] = []
    for r in range(rounds):
        for target in ("s3", "local") if r % 2 == 0 else ("local", "s3"):  # ABBA
            name = f"e2e-{secrets.token_hex(4)}-r{r + 1}"
            location = f"s3://{BUCKET}/{name}" if target == "s3" else str(tmp / name)
            weed0 = process_group_cpu_seconds(server.process.pid)
            elapsed, cpu = run_voxbatch(text, location, env, extra)
            weed1 = process_group_cpu_seconds(server.process.pid)
            summary, shards, audio_bytes = (
                _read_outputs_s3(client, name) if target == "s3" else _read_outputs_local(tmp / name)
            )
            res = RunResult(
                r + 1,
                target,
                location,
                str(summary["run_id"]),
                elapsed,
                float(summary["wall_seconds"]),
                float(summary["audio_seconds"]),
                float(summary["storage_wait_seconds"]),
                int(summary["chunks"]),
                int(summary["synthesized"]),
                int(summary["reused"]),
                cpu,
                weed1 - weed0 if weed0 is not None and weed1 is not None else None,
                audio_bytes,
                shards,
            )
            if res.reused or res.synthesized != res.chunks - int(summary["skipped"]):
                raise RuntimeError(f"{location}: {res.reused} chunks reused: the rounds are not independent")
            results.append(res)
            print(
                f"  round {r + 1} {target:5s}: wall {res.wall_seconds:6.1f} s (process {elapsed:6.1f} s), "
                f"audio {res.audio_seconds:6.0f} s, storage wait {res.storage_wait_seconds:.2f} s, "
                f"synthesis {res.compute_seconds:.1f} s, {res.checkpoints} checkpoints, CPU voxbatch {cpu:.1f} s "
                f"weed {res.weed_cpu_seconds or 0:.1f} s",
                flush=True,
            )
    client.close()
    return results


def summarize_end_to_end(results: list[RunResult]) -> dict[str, Any]:
    def med(target: str, get: Callable[[RunResult], float]) -> float:
        return statistics.median(get(r) for r in results if r.target == target)

    out: dict[str, Any] = {}
    for target in ("s3", "local"):
        out[target] = {
            "wall_seconds": med(target, lambda r: r.wall_seconds),
            "elapsed_seconds": med(target, lambda r: r.elapsed_seconds),
            "audio_seconds": med(target, lambda r: r.audio_seconds),
            "storage_wait_seconds": med(target, lambda r: r.storage_wait_seconds),
            "synthesis_seconds": med(target, lambda r: r.compute_seconds),
            "not_synthesis_seconds": med(target, lambda r: r.not_synthesis_seconds),
            "shard_wall_seconds": med(target, lambda r: r.shard_wall_seconds),
            "outside_shards_seconds": med(target, lambda r: r.wall_seconds - r.shard_wall_seconds),
            "in_shards_not_synthesis_seconds": med(target, lambda r: r.shard_wall_seconds - r.compute_seconds),
            "checkpoints": med(target, lambda r: r.checkpoints),
            "chunks": med(target, lambda r: r.chunks),
            "cpu_seconds": med(target, lambda r: r.cpu_seconds),
            "weed_cpu_seconds": med(target, lambda r: r.weed_cpu_seconds or 0.0),
            "audio_bytes": med(target, lambda r: r.audio_bytes),
        }
    out["wall_ratio_s3_to_local"] = out["s3"]["wall_seconds"] / out["local"]["wall_seconds"]
    # The same chunks are synthesized either way, so synthesis time differs by machine noise only: the storage
    # backend's own cost is the difference in the time spent on everything else.
    extra = out["s3"]["not_synthesis_seconds"] - out["local"]["not_synthesis_seconds"]
    out["s3_extra_not_synthesis_seconds"] = extra
    out["wall_ratio_synthesis_equalized"] = (out["local"]["wall_seconds"] + extra) / out["local"]["wall_seconds"]
    out["runs"] = [
        {
            "round": r.round,
            "target": r.target,
            "elapsed_seconds": r.elapsed_seconds,
            "wall_seconds": r.wall_seconds,
            "synthesis_seconds": r.compute_seconds,
            "realtime_x": r.audio_seconds / r.compute_seconds if r.compute_seconds else None,
            "not_synthesis_seconds": r.not_synthesis_seconds,
            "storage_wait_seconds": r.storage_wait_seconds,
            "checkpoints": r.checkpoints,
            "cpu_seconds": r.cpu_seconds,
            "weed_cpu_seconds": r.weed_cpu_seconds,
        }
        for r in results
    ]
    out["elapsed_ratio_s3_to_local"] = out["s3"]["elapsed_seconds"] / out["local"]["elapsed_seconds"]
    out["s3_storage_wait_share"] = statistics.median(
        r.storage_wait_seconds / r.wall_seconds for r in results if r.target == "s3"
    )
    return out


# --- part 3: the storage calls a run makes besides audio, one at a time -----------------------------------------


def bench_metadata(runs: list[RunResult], tmp: Path, repeats: int = 5) -> list[dict[str, Any]]:
    """Median milliseconds of each plan/checkpoint/manifest call on S3 and on a folder, with a real run's rows.

    These calls block the caller (the flow, or the synthesis loop for checkpoints) and are not part of
    storage_wait_seconds, which counts only waits on the audio upload pool.
    """
    from tasks.plan.store import read_plan, write_plan
    from tasks.shard.manifest import read_checkpoint, read_manifest, write_checkpoint, write_manifest
    from tasks.storage import ObjectStore, open_store

    source = next(r for r in runs if r.target == "local")
    source_store = open_store(source.location)
    plan = read_plan(source_store, source.run_id)
    rows = read_manifest(source_store, source.run_id, 0) or []
    locations = {"s3": f"s3://{BUCKET}/meta-{secrets.token_hex(4)}", "local": str(tmp / "meta")}
    stores = {target: open_store(loc) for target, loc in locations.items()}

    def ops(target: str, store: ObjectStore) -> dict[str, Callable[[], object]]:
        return {
            "open_store + check": lambda: open_store(locations[target]),
            "write_plan": lambda: write_plan(store, plan),
            "read_plan (cached in-process)": lambda: read_plan(store, plan.run_id),
            f"write_checkpoint ({len(rows)} rows)": lambda: write_checkpoint(store, plan.run_id, 0, rows),
            "read_checkpoint": lambda: read_checkpoint(store, plan.run_id, 0),
            f"write_manifest ({len(rows)} rows)": lambda: write_manifest(store, plan.run_id, 0, rows),
            "read_manifest": lambda: read_manifest(store, plan.run_id, 0),
        }

    times: dict[tuple[str, str], list[float]] = {}
    for i in range(repeats + 1):  # the first pass is a warm-up
        for target in ("s3", "local") if i % 2 == 0 else ("local", "s3"):
            for name, fn in ops(target, stores[target]).items():
                t0 = time.perf_counter()
                fn()
                if i:
                    times.setdefault((name, target), []).append(1000 * (time.perf_counter() - t0))
    names = list(ops("local", stores["local"]))
    return [
        {
            "operation": name,
            "s3_ms": statistics.median(times[(name, "s3")]),
            "local_ms": statistics.median(times[(name, "local")]),
        }
        for name in names
    ]


# --- report ---------------------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def markdown(
    uploads: list[dict[str, Any]] | None,
    e2e: dict[str, Any] | None,
    metadata: list[dict[str, Any]] | None,
    args: argparse.Namespace,
) -> str:
    lines: list[str] = []
    if uploads is not None:
        lines += [
            f"Uploads: {args.objects} objects of {OBJECT_BYTES // 1000} KB per round, Uploader.submit + finish, "
            f"median of {args.upload_rounds} rounds",
            "",
            "| store | threads | objects/s | MB/s | vs 1 thread | PUT p50 ms | PUT p95 ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in uploads:
            lines.append(
                f"| {row['store']} | {row['threads']} | {row['objects_per_second']:.1f} | {row['mb_per_second']:.1f} "
                f"| {row['ratio_to_1_thread']:.2f}x | {row['put_p50_ms']:.1f} | {row['put_p95_ms']:.1f} |"
            )
        s3_default = max(r["objects_per_second"] for r in uploads if r["store"] == "s3" and r["threads"] > 1)
        lines += [
            "",
            f"S3 with the default pool: {s3_default:.0f} objects/s (goal >= {S3_GOAL_OBJECTS_PER_SECOND:.0f}: "
            f"{_verdict(s3_default >= S3_GOAL_OBJECTS_PER_SECOND)})",
            "",
        ]
    if e2e is not None:
        s3, local = e2e["s3"], e2e["local"]
        lines += [
            f"End to end: {args.text_bytes / 1000:.0f} KB English text, {int(local['chunks'])} chunks, "
            f"median of {args.rounds} run(s) each, alternating",
            "",
            "| output | wall s (summary) | process s | audio s | synthesis s | not synthesis s "
            "| of it in shards s | outside shards s | storage wait s | checkpoints |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in (("s3", s3), ("local", local)):
            lines.append(
                f"| {name} | {row['wall_seconds']:.1f} | {row['elapsed_seconds']:.1f} | {row['audio_seconds']:.0f} "
                f"| {row['synthesis_seconds']:.1f} | {row['not_synthesis_seconds']:.1f} "
                f"| {row['in_shards_not_synthesis_seconds']:.1f} | {row['outside_shards_seconds']:.1f} "
                f"| {row['storage_wait_seconds']:.2f} | {row['checkpoints']:.0f} |"
            )
        lines += [
            "",
            "| round | output | process s | wall s | synthesis s | synthesis x real time | not synthesis s "
            "| storage wait s | checkpoints | voxbatch CPU s | weed CPU s |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in e2e["runs"]:
            lines.append(
                f"| {run['round']} | {run['target']} | {run['elapsed_seconds']:.1f} | {run['wall_seconds']:.1f} "
                f"| {run['synthesis_seconds']:.1f} | {run['realtime_x'] or 0:.1f} | {run['not_synthesis_seconds']:.1f} "
                f"| {run['storage_wait_seconds']:.2f} | {run['checkpoints']} | {run['cpu_seconds']:.1f} "
                f"| {run['weed_cpu_seconds'] or 0:.1f} |"
            )
        ratio, share = e2e["wall_ratio_s3_to_local"], e2e["s3_storage_wait_share"]
        lines += [
            "",
            f"S3/local wall time: {ratio:.3f} (goal <= {WALL_RATIO_GOAL:.2f}: {_verdict(ratio <= WALL_RATIO_GOAL)}); "
            f"process time ratio {e2e['elapsed_ratio_s3_to_local']:.3f}",
            f"S3 time beyond synthesis: {e2e['s3_extra_not_synthesis_seconds']:+.2f} s against local, so with "
            f"synthesis equalized S3/local is {e2e['wall_ratio_synthesis_equalized']:.3f} "
            f"(goal <= {WALL_RATIO_GOAL:.2f}: {_verdict(e2e['wall_ratio_synthesis_equalized'] <= WALL_RATIO_GOAL)})",
            f"S3 storage wait / wall: {100 * share:.2f}% (goal < {100 * WAIT_SHARE_GOAL:.0f}%: "
            f"{_verdict(share < WAIT_SHARE_GOAL)})",
            f"CPU (median): voxbatch {s3['cpu_seconds']:.1f} s to S3, {local['cpu_seconds']:.1f} s local; "
            f"the S3 server {s3['weed_cpu_seconds']:.1f} s during S3 runs, {local['weed_cpu_seconds']:.1f} s "
            f"idling through local ones; audio stored {s3['audio_bytes'] / 1e6:.1f} MB",
        ]
    if metadata is not None:
        lines += [
            "",
            "Storage calls besides audio (median ms of 5, blocking their caller, not in storage_wait_seconds)",
            "",
            "| call | S3 ms | local ms |",
            "|---|---:|---:|",
        ]
        lines += [f"| {m['operation']} | {m['s3_ms']:.1f} | {m['local_ms']:.1f} |" for m in metadata]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=1000, help="objects per upload round (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="end-to-end runs of each kind (default 2)")
    parser.add_argument("--upload-rounds", type=int, default=3, help="upload rounds of each setting (default 3)")
    parser.add_argument("--text-bytes", type=int, default=TEXT_BYTES, help="size of the English text (default 60000)")
    parser.add_argument("--shard-size", type=int, help="passed to voxbatch run (default: its own)")
    parser.add_argument("--skip-uploads", action="store_true", help="only the end-to-end part")
    parser.add_argument("--skip-e2e", action="store_true", help="only the upload part")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="voxbatch-bench-storage-"))
    server: WeedServer | None = None
    try:
        server = start_weed(tmp / "weed", free_port())
        # Before tasks.storage.s3_client is imported: the process's S3 client reads the standard AWS settings.
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": server.endpoint,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench-secret",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        import boto3

        boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=BUCKET)
        print(f"SeaweedFS S3 at {server.endpoint}, bucket {BUCKET!r}; temporary files in {tmp}", flush=True)

        upload_rows = None
        if not args.skip_uploads:
            print("uploads:", flush=True)
            upload_rows = summarize_uploads(bench_uploads(args.objects, args.upload_rounds, tmp))
        e2e = None
        e2e_runs: list[RunResult] = []
        metadata = None
        if not args.skip_e2e:
            print("end to end:", flush=True)
            e2e_runs = bench_end_to_end(args.rounds, args.shard_size, args.text_bytes, tmp, server)
            e2e = summarize_end_to_end(e2e_runs)
            print("storage calls besides audio:", flush=True)
            metadata = bench_metadata(e2e_runs, tmp)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(markdown(upload_rows, e2e, metadata, args))
    if args.json:
        payload = {
            "objects": args.objects,
            "object_bytes": OBJECT_BYTES,
            "upload_rounds": args.upload_rounds,
            "uploads": upload_rows,
            "text_bytes": args.text_bytes,
            "end_to_end_rounds": args.rounds,
            "end_to_end": e2e,
            "end_to_end_runs": [{**asdict(r), "shards": r.shards} for r in e2e_runs],
            "storage_calls_ms": metadata,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")


if __name__ == "__main__":
    main()
