"""`voxbatch review OUT` lists a run's flagged chunks to listen to; `voxbatch accept OUT CHUNK_ID... | --all`."""

from __future__ import annotations

import argparse

from flows import run_choice


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    review = sub.add_parser("review", help="list a run's chunks flagged for review: text, what was heard, audio")
    run_choice.add_arguments(review)
    accept = sub.add_parser("accept", help="accept flagged chunks as they are: their audio becomes ok")
    run_choice.add_arguments(accept)
    accept.add_argument("chunk_ids", nargs="*", metavar="CHUNK_ID", help="flagged chunks (ids or unique prefixes)")
    accept.add_argument("--all", action="store_true", dest="accept_all", help="every flagged chunk of the run")


def cmd_review(args: argparse.Namespace) -> int:
    from tasks.results.review import flagged_rows, heard_line, playable
    from tasks.results.run_state import load_run_state
    from tasks.storage import open_store

    store = open_store(args.out)
    state = load_run_state(store, run_choice.pick_run(store, args.run_id))
    count = 0
    for _, r in flagged_rows(state):
        count += 1
        print(f"{r.chunk_id}  {r.source}:{r.line} chunk {r.chunk_index}: {heard_line(r)}")
        print(f"  text:  {r.spoken_text or r.text}")
        print(f"  heard: {r.asr_transcript or ''}")
        print(f"  audio: {playable(store, r.audio_key or '')}")
    partial = f" ({len(state.pending)} shard(s) not committed yet: more may come)" if state.pending else ""
    if not count:
        print(f"run {state.run_id}: no chunk is flagged for review{partial}")
        return 0
    print(f"run {state.run_id}: {count} chunk(s) flagged for review{partial}")
    print(f"  accept those that sound right: voxbatch accept {args.out} CHUNK_ID... (or --all)")
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    from tasks.errors import ConfigError
    from tasks.results.review import accept
    from tasks.storage import open_store

    if bool(args.chunk_ids) == args.accept_all:
        raise ConfigError("accept: give the chunk ids to accept, or --all (not both)")
    store = open_store(args.out)
    done = accept(store, run_choice.pick_run(store, args.run_id), None if args.accept_all else args.chunk_ids)
    for chunk_id in done.chunk_ids:
        print(f"  accepted {chunk_id}")
    for chunk_id in done.before:
        print(f"  {chunk_id} was accepted before")
    print(f"accepted {len(done.chunk_ids)} chunk(s) ({done.rows} row(s) now ok)")
    if done.run_manifest:
        print(f"  run manifest {done.run_manifest}")
    return 0
