"""`voxbatch bench`: this machine's figures for voxbatch against the plain loop over the same voice; the GPU suite."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmark voxbatch against a plain synthesis loop on this machine")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of each (default %(default)s)")
    p.add_argument("--kb", type=int, default=20, help="size of the long text in KB (default %(default)s)")
    p.add_argument("--skip-engine", action="store_true", help="only the end-to-end comparison")
    p.add_argument(
        "--voices-only",
        action="store_true",
        help="only each voice's speed on this CPU: Piper beside Kokoro, one session and lanes",
    )
    p.add_argument(
        "--no-server", action="store_true", help="not also against a Prefect server that is up (PREFECT_API_URL)"
    )
    gpu = p.add_argument_group(
        "GPU suite (VITS or Kokoro by batch size and precision; runs by itself where CUDA is present)"
    )
    gpu.add_argument("--gpu-only", action="store_true", help="only the GPU suite")
    gpu.add_argument(
        "--gpu-device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="where the suite runs: auto = CUDA if present, else skipped; cpu runs it on the CPU (default %(default)s)",
    )
    gpu.add_argument(
        "--gpu-model", choices=("vits", "kokoro"), default="vits", help="the model swept (default %(default)s)"
    )
    gpu.add_argument(
        "--gpu-size",
        choices=("mms", "tiny"),
        default="mms",
        help="model size, random weights: mms = the real size (MMS-TTS's VITS; Kokoro-82M), tiny = for tests "
        "(default %(default)s)",
    )
    gpu.add_argument("--batches", default="", help="batch sizes, comma-separated (default 1,2,4,...,256)")
    gpu.add_argument(
        "--gpu-seconds",
        type=float,
        default=3.0,
        help="how long each batch size is measured, at least two calls (default %(default)s)",
    )
    gpu.add_argument("--plot", type=Path, help="write a PNG of throughput against batch size here")


def cmd_bench(args: argparse.Namespace) -> int:
    from tasks.errors import ConfigError

    if args.rounds < 1 or args.kb < 1:
        raise ConfigError("--rounds and --kb must be at least 1")
    try:
        batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"--batches {args.batches!r}: give whole numbers separated by commas, e.g. 1,8,64") from None
    if any(b < 1 for b in batches):
        raise ConfigError(f"--batches {args.batches!r}: every batch size must be at least 1")
    if not args.gpu_seconds > 0:
        raise ConfigError(f"--gpu-seconds {args.gpu_seconds}: give a number of seconds above 0")
    if args.voices_only:
        from bench.voice_speed import voice_speeds

        voice_speeds(args.kb, args.rounds)
        return 0
    if not args.gpu_only:
        run_cpu_bench(args)
        print()
    device = gpu_device(args.gpu_device)
    if device is None:
        print("GPU suite: skipped (no CUDA device here; `--gpu-device cpu` runs it on the CPU)")
        return 0
    from bench.gpu_suite import run_gpu_suite

    run_gpu_suite(
        device, args.gpu_size, batches or None, min_seconds=args.gpu_seconds, plot_path=args.plot, model=args.gpu_model
    )
    return 0


def run_cpu_bench(args: argparse.Namespace) -> None:
    """The end-to-end comparison; voxbatch also against a Prefect server that is up: the configured one
    (PREFECT_API_URL), or else a local API started here first, as `prefect server start` would be."""
    from bench.end_to_end import run_bench
    from flows.local_api import configured_api_url, start_local_api

    url = "" if args.no_server else configured_api_url() or ""
    api = None
    try:
        if not url and not args.no_server:
            api = start_local_api()
            url = api.wait(180)
        run_bench(args.rounds, args.kb, args.skip_engine, url)
        if not args.skip_engine:
            from bench.voice_speed import voice_speeds

            print()
            voice_speeds(rounds=args.rounds)
    finally:
        if api is not None:
            api.stop()


def gpu_device(choice: str) -> str | None:
    """Where the GPU suite runs: "cuda", "cpu", or None (skipped)."""
    from tasks.backends.devices import cuda_device
    from tasks.errors import ConfigError

    if choice == "cpu":
        return "cpu"
    present = cuda_device()[0] != "cpu"
    if choice == "cuda" and not present:
        raise ConfigError("--gpu-device cuda: torch sees no CUDA device here", hint="use --gpu-device cpu")
    return "cuda" if present else None
