"""Which run a results command reads: its OUT and --run-id arguments, and the run they name."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder or URI of the run")
    parser.add_argument("--run-id", help="which run (needed when OUT holds more than one)")


def pick_run(store: Any, run_id: str | None) -> str:
    """The run `--run-id` names, else the only run in OUT (several: pick one)."""
    from tasks.errors import ConfigError, StorageError
    from tasks.plan.store import list_runs

    if run_id:
        return run_id
    runs = list_runs(store)
    if not runs:
        raise StorageError(f"{store.uri('')}: no voxbatch run here (no runs/<run_id>/plan.parquet)")
    if len(runs) > 1:
        raise ConfigError(f"{store.uri('')}: {len(runs)} runs here: {', '.join(runs)}", hint="pick one with --run-id")
    return runs[0]
