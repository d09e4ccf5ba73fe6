"""Recognising out-of-memory and fatal device errors from real exception types."""

from __future__ import annotations

import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, Fail, RuntimeException

from tasks.errors import ConfigError, DeviceFatal, DeviceOutOfMemory
from tasks.shard.faults import parse
from tasks.shard.oom import ErrorKind, classify, translate

OOMS = [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    torch.cuda.OutOfMemoryError("anything"),
    RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
    RuntimeError("CUDA driver error: out of memory"),
    torch.AcceleratorError("CUDA error: out of memory"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous"),
    RuntimeError("cuFFT error: CUFFT_INTERNAL_ERROR"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"),
    Fail("[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer of size 1073741824"),
    RuntimeException("Available memory of 0 is smaller than requested bytes of 1048576"),
    EPFail("CUDA failure 2: out of memory ; GPU=0 ; hostname=x"),
    MemoryError(),
]
FATAL = [
    RuntimeError("CUDA error: an illegal memory access was encountered"),
    torch.AcceleratorError("CUDA error: device-side assert triggered"),
    RuntimeError("CUDA error: unspecified launch failure"),
]
OTHER = [
    ValueError("text ran out of memory in a story"),  # not a runtime error type: user text, not the device
    RuntimeError("shape mismatch"),
    KeyError("out of memory"),
    Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Conv node"),
]


@pytest.mark.parametrize("exc", OOMS, ids=lambda e: f"{type(e).__name__}:{str(e)[:30]}")
def test_out_of_memory_is_recognised(exc: BaseException) -> None:
    assert classify(exc) is ErrorKind.OOM
    assert isinstance(translate(exc), DeviceOutOfMemory)


@pytest.mark.parametrize("exc", FATAL, ids=lambda e: str(e)[:30])
def test_context_poisoning_errors_are_fatal(exc: BaseException) -> None:
    assert classify(exc) is ErrorKind.FATAL
    assert isinstance(translate(exc), DeviceFatal)


@pytest.mark.parametrize("exc", OTHER, ids=lambda e: f"{type(e).__name__}:{str(e)[:30]}")
def test_other_errors_are_not_memory_errors(exc: BaseException) -> None:
    assert classify(exc) is ErrorKind.OTHER
    assert translate(exc) is None


def test_fault_spec_parsing() -> None:
    f = parse("oom_rate=0.3, seed=7")
    assert (f.oom_rate, f.seed, f.memory_budget, f.active) == (0.3, 7, None, True)
    assert parse("memory_budget=4000").memory_budget == 4000
    assert not parse("").active
    assert (parse("kill_after=checkpoint,kill_count=2").kill_after, parse("kill_after=audio").kill_count) == (
        "checkpoint",
        1,
    )
    for bad in ("oom_rate=1.5", "oom_rate=x", "memory_budget=0", "speed=2", "kill_after=upload", "kill_count=0"):
        with pytest.raises(ConfigError, match="VOXBATCH_FAULTS"):
            parse(bad)


def test_injected_faults_raise_real_types() -> None:
    f = parse("memory_budget=100")
    f.check(100, 4)
    with pytest.raises(torch.OutOfMemoryError, match="injected by VOXBATCH_FAULTS"):
        f.check(101, 4)
    rate = parse("oom_rate=0.5,seed=3")
    hits = 0
    for _ in range(400):
        try:
            rate.check(1, 1)
        except torch.OutOfMemoryError:
            hits += 1
    assert 150 < hits < 250 and rate.injected == hits
