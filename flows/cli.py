"""The `voxbatch` command line: run, plan, config, doctor and worker (the others in flows/*_cmd.py)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flows import assemble_cmd, bench_cmd, report_cmd, results_cmd, review_cmd, voices_cmd
from flows.flags import settings_flags, settings_from_args
from tasks.config import Settings
from tasks.config_files import dump_toml
from tasks.errors import (
    EXIT_CHUNKS_FAILED,
    EXIT_ENVIRONMENT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PENDING,
    VoxbatchError,
)

if TYPE_CHECKING:
    from rich.progress import Progress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxbatch", description="Batch text-to-speech: text files in, audio and a Parquet manifest out."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="synthesize text files (a Prefect flow; resumes when rerun)")
    run.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help=".txt/.md/.epub books and .jsonl/.csv/.tsv/.parquet prompt tables: files, folders, globs or "
        "s3://bucket/prefix/ (such files under it)",
    )
    run.add_argument("--out", required=True, help="output folder, file:// or s3://bucket/prefix URI")
    run.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    run.add_argument(
        "--assemble", action="store_true", help="then join the chunks into books (as `voxbatch assemble`, FLAC)"
    )
    run.add_argument("--report", action="store_true", help="then write the run's HTML report (as `voxbatch report`)")
    settings_flags(run)
    plan = sub.add_parser("plan", help="dry run: chunk the input, print counts and an estimate")
    plan.add_argument("inputs", nargs="+", metavar="INPUT")
    plan.add_argument("--out", help="also write the plan as Parquet under this folder")
    settings_flags(plan)
    config = sub.add_parser("config", help="print the effective settings as TOML")
    settings_flags(config)
    results_cmd.add_parsers(sub)
    worker = sub.add_parser("worker", help="serve the voxbatch-shard deployment on this host (needs PREFECT_API_URL)")
    worker.add_argument(
        "--limit",
        type=int,
        help="shards at once (default: the number of visible GPUs, 1 without a GPU); a Prefect server on SQLite "
        "gets slower with more slots: fan-out of many small shards needs PostgreSQL (docs/deployment.md)",
    )
    worker.add_argument("--name", default="voxbatch-shard", help="deployment name to serve (default: %(default)s)")
    worker.add_argument("--lanes", type=int, help="synthesis.lanes for the shards this worker runs (CPU Piper)")
    worker.add_argument("--threads", type=int, help="synthesis.threads for the shards this worker runs")
    worker.add_argument(
        "--preload", action="store_true", help="load the default voice in each slot before the first shard"
    )
    worker.add_argument("-v", "--verbose", action="store_true", help="show Prefect's logs")
    doctor = sub.add_parser("doctor", help="check versions, devices, voice files and output space")
    doctor.add_argument("--out", default=".", help="output location to check (default: .)")
    settings_flags(doctor)
    voices_cmd.add_parser(sub)
    assemble_cmd.add_parser(sub)
    report_cmd.add_parser(sub)
    review_cmd.add_parser(sub)
    bench_cmd.add_parser(sub)
    return parser


def cmd_config(args: argparse.Namespace) -> int:
    sys.stdout.write(dump_toml(settings_from_args(args)))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from tasks.plan.planner import prepare
    from tasks.plan.store import write_plan
    from tasks.storage import open_store

    prep = prepare(args.inputs, settings_from_args(args))
    plan = prep.plan
    stats = plan.stats
    per_doc, langs = stats["chunks_by_source"], stats["chunks_by_lang"]
    print(f"run id     {plan.run_id}")
    for n, (key, v) in enumerate(plan.voices.items()):
        used = stats["chunks_by_voice"].get(key, 0)
        label = "voice     " if n == 0 else "          "
        print(f"{label} {v.backend}:{v.name} ({v.sample_rate} Hz -> {plan.sample_rate} Hz), {used} chunks")
    print(f"documents  {prep.documents}")
    for doc in plan.inputs:
        chapters = f", {doc['chapters']} chapters" if doc["chapters"] > 1 else ""
        print(f"  {per_doc.get(doc['source'], 0):6d} chunks  {doc['source']} ({doc['encoding']}{chapters})")
    print(f"chunks     {plan.num_chunks} ({', '.join(f'{k} {v}' for k, v in sorted(langs.items()))})")
    print(f"characters {stats['characters']}")
    run = prep.settings.run
    minutes = f" or {run.shard_audio_minutes:g} minutes of audio" if run.shard_audio_minutes else ""
    print(f"shards     {plan.num_shards} of up to {run.shard_size} chunks{minutes}")
    est = plan.estimated_seconds()
    print(f"estimated audio {est / 60:.1f} min ({est:.0f} s)")
    if args.out:
        store = open_store(args.out)
        print(f"plan written to {store.uri(write_plan(store, plan))}")
    _report_inputs(plan)
    return EXIT_CHUNKS_FAILED if plan.rejected else EXIT_OK


def _report_inputs(plan: Any) -> None:
    """Warnings about inputs (stray bytes removed) and the inputs set aside, on stderr."""
    for doc in plan.inputs:
        for warning in doc["warnings"]:
            print(f"voxbatch: warning: {warning}", file=sys.stderr)
    if plan.rejected:
        print(f"voxbatch: {len(plan.rejected)} input file(s) set aside (exit 3):", file=sys.stderr)
        for r in plan.rejected:
            print(f"  {r['reason']}", file=sys.stderr)


def cmd_doctor(args: argparse.Namespace) -> int:
    from tasks.doctor import run_checks

    checks = run_checks(settings_from_args(args), args.out)
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for c in checks:
        print(f"[{mark[c.status]}] {c.name:22s} {c.detail}")
        if c.hint:
            print(f"       {'':22s} -> {c.hint}")
    failed = [c for c in checks if c.status == "fail"]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed")
    return EXIT_ENVIRONMENT if failed else EXIT_OK


def _progress_bar(total: int) -> tuple[Progress, Callable[[int, float], None]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks, {task.fields[audio]:.0f} s audio"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    task_id = bar.add_task("starting Prefect", total=total, audio=0.0)

    def advance(chunks: int, seconds: float) -> None:
        audio = bar.tasks[0].fields["audio"] + seconds
        bar.update(task_id, advance=chunks, audio=audio, description="synthesizing")

    return bar, advance


def cmd_run(args: argparse.Namespace) -> int:
    from flows.local_api import configured_api_url, start_local_api

    settings = settings_from_args(args)
    api_url = configured_api_url()
    if settings.run.dispatch and not api_url:
        from tasks.errors import ConfigError

        raise ConfigError(
            f"--dispatch {settings.run.dispatch}: workers need a Prefect server to take shards from",
            hint="start one (`prefect server start`) and set PREFECT_API_URL, e.g. http://127.0.0.1:4200/api",
        )
    local_api = None if api_url else start_local_api()  # boots while the input is read and chunked
    try:
        return _run(args, settings, local_api)
    finally:
        if local_api is not None:
            local_api.stop()


def _run(args: argparse.Namespace, settings: Settings, local_api: Any) -> int:
    from tasks.plan.planner import prepare
    from tasks.plan.store import write_plan
    from tasks.shard import faults
    from tasks.storage import open_store

    faults.from_env()  # a malformed VOXBATCH_FAULTS is an error now, not after Prefect starts
    plan = prepare(args.inputs, settings).plan  # fail fast on bad input, before Prefect starts
    _report_inputs(plan)
    store = open_store(args.out)  # a bad output location fails here, before Prefect starts
    bar, advance = _progress_bar(plan.num_chunks)
    try:
        with bar:
            write_plan(store, plan)  # the one plan of this run: the flow and any worker read it from storage
            early = _shards_while_prefect_starts(plan, store, local_api, advance) if local_api is not None else {}
            if local_api is not None:
                local_api.use(local_api.wait(float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])))
            from flows.corpus import corpus_flow

            summary = corpus_flow(args.inputs, args.out, run_id=plan.run_id, done_early=early, on_progress=advance)
    finally:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # the run's logs reach the API before a temporary one stops
    from tasks.results.summary import RunSummary

    print(RunSummary.from_dict(summary).text())
    if summary["pending"]:
        print(f"  finish it: `voxbatch status {args.out}` shows what is left; rerun the same command", file=sys.stderr)
        return EXIT_PENDING
    if getattr(args, "report", False):
        report_cmd.report_and_print(store, summary["run_id"])
    if getattr(args, "assemble", False) and not summary["failed"]:  # flagged chunks in, marked (it says so)
        assemble_cmd.assemble_and_print(store, summary["run_id"], include_flagged=True)
    return EXIT_CHUNKS_FAILED if summary["failed"] or summary["rejected"] else EXIT_OK


def _shards_while_prefect_starts(plan: Any, store: Any, local_api: Any, advance: Any) -> dict[int, Any]:
    """The temporary API takes seconds of CPU to boot: do shards meanwhile, until it answers, through the same
    shard lifecycle (audio, stats and manifest committed as the flow would), so the first audio lands within
    seconds and the boot costs the run little. Returns their stats by shard, for the flow to count as its own."""
    from tasks.shard.lifecycle import run_shard, worker_settings

    # Prefect's own import (about 1.5 s of CPU) on a thread meanwhile: synthesis mostly runs outside the GIL.
    threading.Thread(target=importlib.import_module, args=("flows.corpus",), daemon=True).start()
    done: dict[int, Any] = {}
    for shard in range(plan.num_shards):
        try:
            outcome = run_shard(store, plan, shard, worker_settings(plan, None), on_progress=advance)
        except VoxbatchError as exc:
            if exc.transient:
                break  # storage unreachable, a busy device: the flow's task retries it with backoff
            raise
        if outcome.fatal is not None:
            break  # the flow meets the same device error and reports it
        done[shard] = outcome.stats
        if local_api.ready():
            break
    return done


def cmd_worker(args: argparse.Namespace) -> int:
    from flows.serve import serve_shards

    synthesis = {k: v for k, v in {"lanes": args.lanes, "threads": args.threads}.items() if v is not None}
    return serve_shards(args.name, args.limit, {"synthesis": synthesis} if synthesis else {}, preload=args.preload)


def _quiet_prefect(verbose: bool) -> None:
    # Set before Prefect is imported: it reads its settings once. No telemetry: nothing leaves the machine.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The embedded API's first start migrates a new database: over Prefect's 20 s default on 2 cores.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if not verbose:
        # Quiet terminal, full logs on the server: the run's INFO lines (shard progress) and WARNING/ERROR lines
        # (failed chunks, their reasons) still go to the API; only the console handler is turned down.
        # voxbatch reports errors in its own one-line form; Prefect would add tracebacks.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        # When the server goes away mid-run, Prefect's background services (events, logs to the API) print each
        # failed send on stderr: a repr of the whole event per call, before voxbatch's own one-line error. Its
        # internal logger is turned down, and so is the logging module's "--- Error logging to API ---".
        os.environ.setdefault("PREFECT_LOGGING_INTERNAL_LEVEL", "CRITICAL")
        logging.raiseExceptions = False  # what the logging docs advise for production


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_prefect(getattr(args, "verbose", False) or args.command == "worker")  # a worker is a service: it logs
    if args.command == "run" and os.environ.get("PREFECT_API_URL"):
        # Against a real server, a call it does not answer gives up after 2 + 4 s, not Prefect's minute (5
        # retries): dispatch waits outages out itself (run.server_outage_seconds), and a run that gives up must
        # not spend minutes telling a server that is gone.
        os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "2")
    commands = {
        "run": cmd_run,
        "plan": cmd_plan,
        "config": cmd_config,
        "doctor": cmd_doctor,
        "status": results_cmd.cmd_status,
        "export": results_cmd.cmd_export,
        "worker": cmd_worker,
        "voices": voices_cmd.cmd_voices,
        "assemble": assemble_cmd.cmd_assemble,
        "report": report_cmd.cmd_report,
        "review": review_cmd.cmd_review,
        "accept": review_cmd.cmd_accept,
        "bench": bench_cmd.cmd_bench,
    }
    try:
        return commands[args.command](args)
    except VoxbatchError as exc:
        print(f"voxbatch: error: {exc.user_message()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "voxbatch: interrupted; finished chunks are kept, run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:  # `voxbatch plan … | head`: the reader left; not an error of ours
        _quiet_broken_pipe()
        return 141  # 128 + SIGPIPE, what a shell reports for a pipe's writer
    except Exception as exc:  # a bug or an environment problem voxbatch does not know yet
        from flows.server_errors import server_unavailable

        if server_unavailable(exc):  # the Prefect server went away past what the run waits out: resumable
            print(
                f"voxbatch: error: the Prefect server stopped answering ({type(exc).__name__}: {exc})\n"
                "  hint: what is committed is in storage: run the same command again once the server is back",
                file=sys.stderr,
            )
            return EXIT_PENDING
        if getattr(args, "verbose", False):
            traceback.print_exc()
        print(
            f"voxbatch: unexpected error: {type(exc).__name__}: {exc}\n"
            "  finished chunks are kept; `voxbatch doctor` checks the environment"
            + ("" if getattr(args, "verbose", False) else "; -v shows the traceback"),
            file=sys.stderr,
        )
        return EXIT_INTERNAL


# Commands that never start Prefect. They end with os._exit: pyarrow's native thread pools sometimes abort the
# interpreter's shutdown after they were used ("terminate called without an active exception", exit 134, seen
# in about 1 of 10 `voxbatch status` runs), turning a finished command into a crash. Nothing of theirs is left
# to clean up once the output is flushed.
_NO_PREFECT = {"plan", "config", "status", "export", "doctor", "voices", "assemble", "report", "review", "accept"}


def entry() -> None:
    """The `voxbatch` console script."""
    argv = sys.argv[1:]
    code = main(argv)
    try:  # what main printed may still be buffered: the reader can leave before this last write, too
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
        code = 141
    if argv and argv[0] in _NO_PREFECT:
        os._exit(code)
    sys.exit(code)


def _quiet_broken_pipe() -> None:
    """The reader of our output left (`voxbatch plan … | head`): stdout goes to /dev/null, so the interpreter's
    own last flush prints no BrokenPipeError (as Python's docs on SIGPIPE advise); the exit code says it (141 =
    128 + SIGPIPE, what a shell reports for a pipe's writer it killed)."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    entry()
