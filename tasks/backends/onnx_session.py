"""ONNX Runtime sessions for the voices that run on it (piper, twostage, kokoro): providers, threads, memory options,
and lanes (several sessions side by side on a CPU)."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tasks.config import SynthesisSettings

_Item = TypeVar("_Item")
_Out = TypeVar("_Out")
MAX_AUTO_LANES = 4  # measured on 2 cores only: more sessions cost memory for a gain not measured


def onnx_cuda(settings: SynthesisSettings) -> bool:
    """Whether an ONNX Runtime voice runs on CUDA: the provider is there and the settings allow it; asking for
    CUDA without the provider is a ConfigError that says what to install."""
    import onnxruntime as ort

    from tasks.errors import ConfigError

    available = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if settings.device == "cuda" and not cuda:
        raise ConfigError(
            "synthesis.device = 'cuda', but ONNX Runtime has no CUDA provider here "
            f"(providers: {', '.join(available)})",
            hint="install onnxruntime-gpu matching your CUDA, or use device 'auto'/'cpu'",
        )
    return cuda and settings.device in ("auto", "cuda")


def onnx_session_setup(threads: int, use_cuda: bool) -> tuple[Any, list[Any]]:
    """ONNX Runtime session options and providers for a voice: intra-op threads, CUDA first where used.

    kSameAsRequested (with arena shrinkage on the next run, where the backend asks for it) lets the CUDA arena give
    memory back after an out-of-memory error; by default it only grows (onnxruntime issue 11740)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not use_cuda:
        # Idle intra-op threads wait without spinning: beside other work on the same cores (lanes, uploads, another
        # process) spinning took 30% more CPU and 20% more wall time on two threads; alone, the same wall time
        # (measured: the sample twice, lanes 1, threads 2, with and without a busy loop on one of two cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Memory patterns are planned per input shape, and every sentence has its own: off, a Piper session's peak
        # on 20 KB of text falls from 435 to 333 MB at the same speed (measured, issue 12).
        options.enable_mem_pattern = False
    providers: list[Any] = ["CPUExecutionProvider"]
    if use_cuda:
        cuda = {"device_id": 0, "arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"}
        providers.insert(0, ("CUDAExecutionProvider", cuda))
    return options, providers


def cpu_lanes(lanes: int, threads: int) -> tuple[int, int]:
    """(sessions side by side, intra-op threads each) for `synthesis.lanes` and `synthesis.threads` (0: auto)."""
    cores = threads or len(os.sched_getaffinity(0))
    # Each session keeps its own memory arena (about 350 MB on long sentences): auto only where memory is spare.
    lanes = lanes or max(1, min(cores, MAX_AUTO_LANES, _available_gib() // 2))
    if lanes == 1:
        return 1, threads
    return lanes, max(1, cores // lanes)


def _available_gib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) >> 20
    except OSError:
        pass
    return 2  # not Linux: room for one more lane


def in_lanes(
    sessions: Sequence[Any], items: Sequence[_Item], run: Callable[[Any, _Item], _Out], name: str
) -> list[_Out]:
    """`run(session, item)` for every item, in order, over the sessions side by side: each lane takes the next item
    when it is free (ONNX Runtime releases the GIL while it runs). What is not thread-safe (espeak-ng) must be done
    before. An error is raised here, and the items not started are not run."""
    free: queue.SimpleQueue[Any] = queue.SimpleQueue()  # the sessions not running an item right now
    for session in sessions:
        free.put(session)

    def one(item: _Item) -> _Out:
        session = free.get()
        try:
            return run(session, item)
        finally:
            free.put(session)

    pool = ThreadPoolExecutor(len(sessions), thread_name_prefix=name)
    try:
        return list(pool.map(one, items))
    finally:
        pool.shutdown(cancel_futures=True)
