"""`voxbatch bench`: this machine's figures for voxbatch against the plain loop over the same voice."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="benchmark voxbatch against a plain synthesis loop on this machine")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of each (default %(default)s)")
    p.add_argument("--kb", type=int, default=20, help="size of the long text in KB (default %(default)s)")
    p.add_argument("--skip-engine", action="store_true", help="only the end-to-end comparison")


def cmd_bench(args: argparse.Namespace) -> int:
    from tasks.bench import run_bench
    from tasks.errors import ConfigError

    if args.rounds < 1 or args.kb < 1:
        raise ConfigError("--rounds and --kb must be at least 1")
    run_bench(args.rounds, args.kb, args.skip_engine)
    print(gpu_line())
    return 0


def gpu_line() -> str:
    from tasks.backends.base import cuda_device

    name, total = cuda_device()
    if name == "cpu":
        return "GPU suite: skipped (no CUDA device here)"
    return f"GPU suite: {name} ({total / 2**30:.0f} GiB) present; run `pytest -m gpu` for the GPU checks"
