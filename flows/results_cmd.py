"""`voxbatch status` and `voxbatch export`: a run's results read from storage alone."""

from __future__ import annotations

import argparse

from flows import run_choice
from tasks.errors import EXIT_CHUNKS_FAILED, EXIT_OK
from tasks.storage.layout import EXPORT_FORMATS


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="a run's progress from storage alone: shards, chunks, failures")
    run_choice.add_arguments(status)
    export = sub.add_parser("export", help="export a finished run as a Hugging Face or NeMo dataset")
    run_choice.add_arguments(export)
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="export_format")
    export.add_argument("--to", metavar="DEST", help="where to write it (default: OUT/exports/<run_id>/<format>/)")


def cmd_status(args: argparse.Namespace) -> int:
    from tasks.errors import EXIT_PENDING
    from tasks.results.run_state import load_run_state
    from tasks.results.summary import hms, shard_list
    from tasks.storage import open_store

    store = open_store(args.out)
    state = load_run_state(store, run_choice.pick_run(store, args.run_id))
    plan, stats = state.plan, state.stats()
    done = len(state.committed)
    print(f"run {plan.run_id}: {plan.num_chunks} chunks in {plan.num_shards} shard(s) at {store.uri('')}")
    print(f"  shards committed {done}, pending {len(state.pending)}")
    if state.pending:
        print(f"  pending shards: {shard_list(state.pending)}")
    flagged = f"flagged {stats.flagged}, " if stats.flagged else ""
    print(f"  chunks ok {stats.ok}, {flagged}failed {stats.failed}, skipped {stats.skipped}")
    hours = stats.audio_seconds / 3600
    print(f"  audio {hms(stats.audio_seconds)} ({hours:.3f} h), voice {plan.voice.backend}:{plan.voice.name}")
    if stats.flagged:
        print(f"  flagged for review: listen with `voxbatch review {args.out}`, then accept with `voxbatch accept`")
    for reason, n, rows in state.failures():
        print(f"  failed x{n}: {reason}")
        for r in rows:
            print(f"    {r.source}:{r.line} chunk {r.chunk_index} ({r.chunk_id}): {(r.error or '')[:160]}")
    if state.pending:
        print("  incomplete: run the same `voxbatch run` command again to finish it")
        return EXIT_PENDING
    return EXIT_CHUNKS_FAILED if stats.failed else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from tasks.results.export import export_run
    from tasks.storage import open_store

    store = open_store(args.out)
    written = export_run(store, run_choice.pick_run(store, args.run_id), args.export_format, args.to)
    print(f"exported {written.rows} chunk(s) as {args.export_format} to {written.location}")
    return EXIT_OK
