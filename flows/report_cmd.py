"""`voxbatch report OUT`: a run's self-contained HTML report (totals, failures, histograms, worst chunks)."""

from __future__ import annotations

import argparse
from typing import Any

from flows import run_choice


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write a run's HTML report (totals, failures, histograms, worst chunks)")
    run_choice.add_arguments(p)


def cmd_report(args: argparse.Namespace) -> int:
    from tasks.storage import open_store

    store = open_store(args.out)
    report_and_print(store, run_choice.pick_run(store, args.run_id))
    return 0


def report_and_print(store: Any, run_id: str) -> None:
    from tasks.results.report import write_report

    print(f"  report {store.uri(write_report(store, run_id))}")
