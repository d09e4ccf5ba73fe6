"""`voxbatch report OUT`: a run's self-contained HTML report (totals, failures, histograms, worst chunks)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

PickRun = Callable[[Any, str | None], str]  # (store, --run-id) -> the run id


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write a run's HTML report (totals, failures, histograms, worst chunks)")
    p.add_argument("out", metavar="OUT", help="output folder or URI of the run")
    p.add_argument("--run-id", help="which run (needed when OUT holds more than one)")


def cmd_report(args: argparse.Namespace, pick_run: PickRun) -> int:
    from tasks.storage import open_store

    store = open_store(args.out)
    report_and_print(store, pick_run(store, args.run_id))
    return 0


def report_and_print(store: Any, run_id: str) -> None:
    from tasks.results.report import write_report

    print(f"  report {store.uri(write_report(store, run_id))}")
