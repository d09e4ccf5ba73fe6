"""Which library exceptions mean "out of memory" and which poison the device, translated to voxbatch's own.

Recognised by type and message across PyTorch, CUDA libraries and ONNX Runtime, without importing them:
    torch.OutOfMemoryError (torch.cuda.OutOfMemoryError)            by type name
    "CUDA error: out of memory", "CUDA driver error: out of memory"  RuntimeError / torch.AcceleratorError
    CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_NOT_SUPPORTED, CUFFT_INTERNAL_ERROR
    "DefaultCPUAllocator: can't allocate memory"                     host memory, same backoff
    ONNX Runtime Fail / RuntimeException / EPFail with "Failed to allocate memory", "Available memory of",
    "CUDA failure 2: out of memory"
Fatal (the CUDA context is unusable; commit what is done and exit so the worker restarts):
    "illegal memory access", "device-side assert", "unspecified launch failure", "misaligned address"
"""

from __future__ import annotations

from enum import Enum

from tasks.errors import DeviceFatal, DeviceOutOfMemory, VoxbatchError

_OOM_MESSAGES = (
    "out of memory",
    "cublas_status_alloc_failed",
    "cudnn_status_not_supported",
    "cufft_internal_error",
    "can't allocate memory",
    "failed to allocate memory",
    "available memory of",
)
_FATAL_MESSAGES = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
)
_ORT_TYPES = {"Fail", "RuntimeException", "EPFail"}


class ErrorKind(Enum):
    OOM = "oom"
    FATAL = "fatal"
    OTHER = "other"


def classify(exc: BaseException) -> ErrorKind:
    names = {cls.__name__ for cls in type(exc).__mro__}
    message = str(exc).lower()
    from_ort = type(exc).__module__.startswith("onnxruntime") and bool(names & _ORT_TYPES)
    if not (from_ort or names & {"RuntimeError", "MemoryError", "AcceleratorError"}):
        return ErrorKind.OTHER
    if any(m in message for m in _FATAL_MESSAGES):
        return ErrorKind.FATAL
    if "OutOfMemoryError" in names or "MemoryError" in names or any(m in message for m in _OOM_MESSAGES):
        return ErrorKind.OOM
    return ErrorKind.OTHER


def translate(exc: BaseException) -> VoxbatchError | None:
    """voxbatch's own exception for an OOM or fatal device error (message only, no reference to `exc`)."""
    kind = classify(exc)
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    if kind is ErrorKind.OOM:
        return DeviceOutOfMemory(text)
    if kind is ErrorKind.FATAL:
        return DeviceFatal(text, hint="the device is unusable in this process: restart the worker; done work is kept")
    return None
