"""Every object key under an output root, in one place. Keys are built from ids only, never from file names.

    audio/<chunk_id[:2]>/<chunk_id>.<format>   write-once audio, content-addressed: the same chunk id (same text,
                                               voice and settings) is the same object in every run
    review/<chunk_id[:2]>/<chunk_id>.<format>  write-once audio of a flagged chunk (it failed the listening check):
                                               the best attempt, for a person to review (voxbatch review, accept)
    manifests/<run_id>/shard-<n>.parquet       a shard's manifest, written last: the shard's commit record
    runs/<run_id>/plan.parquet                 the self-describing plan (chunks + run header in its metadata)
    runs/<run_id>/settings/<time>.json         settings a rerun replaced (run.changed_qa = "apply"), kept
    runs/<run_id>/progress/shard-<n>.parquet   checkpoint of an unfinished shard (rows whose audio is stored)
    runs/<run_id>/shards/shard-<n>.json        per-shard stats: counts, OOM backoffs, budget, storage waits
    runs/<run_id>/leases/shard-<n>.json        heartbeat of the worker process on a dispatched shard
    runs/<run_id>/leases/shard-<n>.fence       the dispatched attempt allowed to commit the shard
    runs/<run_id>/manifest.parquet             one consolidated manifest, once every shard is committed
    runs/<run_id>/summary.json                 the run summary
    runs/<run_id>/report.html                  the run report (voxbatch report), self-contained
    exports/<run_id>/{hf,nemo}/...             dataset exports

Why the audio keys start with two hex characters of a hash: S3 scales request rates per key prefix (about
3,500 PUT/s each, with 503 SlowDown while it repartitions), so a run's writes spread evenly over 256 prefixes
instead of piling onto one. Manifests sit in plain folders, not `run_id=…` hive folders: the files carry
`run_id` and `shard` as columns, and pandas/pyarrow fail to merge a folder-derived column with a file column.
"""

from __future__ import annotations

from tasks.formats import FORMATS


def audio_key(chunk_id: str, fmt: str) -> str:
    return f"audio/{chunk_id[:2]}/{chunk_id}.{fmt}"


def review_key(chunk_id: str, fmt: str) -> str:
    return f"review/{chunk_id[:2]}/{chunk_id}.{fmt}"


def manifests_prefix(run_id: str) -> str:
    return f"manifests/{run_id}/"


def manifest_key(run_id: str, shard: int) -> str:
    return f"{manifests_prefix(run_id)}shard-{shard:05d}.parquet"


def shard_of_manifest_key(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    if name.startswith("shard-") and name.endswith(".parquet") and name[6:-8].isdigit():
        return int(name[6:-8])
    return None


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def plan_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}plan.parquet"


def replaced_settings_key(run_id: str, when: str) -> str:
    return f"{run_prefix(run_id)}settings/{when}.json"


def checkpoint_key(run_id: str, shard: int) -> str:
    return f"{run_prefix(run_id)}progress/shard-{shard:05d}.parquet"


def shard_stats_key(run_id: str, shard: int) -> str:
    return f"{run_prefix(run_id)}shards/shard-{shard:05d}.json"


def lease_key(run_id: str, shard: int) -> str:
    return f"{run_prefix(run_id)}leases/shard-{shard:05d}.json"


def fence_key(run_id: str, shard: int) -> str:
    return f"{run_prefix(run_id)}leases/shard-{shard:05d}.fence"


def run_manifest_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}manifest.parquet"


def summary_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}summary.json"


def report_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}report.html"


EXPORT_FORMATS = ("hf", "nemo")


def export_prefix(run_id: str, fmt: str) -> str:
    return f"exports/{run_id}/{fmt}/"


CONTENT_TYPES = {
    **{name: f.content_type for name, f in FORMATS.items()},
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
    "jsonl": "application/jsonl",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "html": "text/html; charset=utf-8",
}


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
