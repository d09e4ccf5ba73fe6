"""The devices torch sees: where a PyTorch voice runs, and what a learned batch budget depends on besides the
weights (the CUDA device, library versions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.config import SynthesisSettings


def torch_device(settings: SynthesisSettings) -> str:
    """Where a PyTorch voice runs: CUDA where torch sees it (unless `device` says cpu); on the CPU fp32 only."""
    import torch

    from tasks.errors import ConfigError

    cuda = bool(torch.cuda.is_available())
    if settings.device == "cuda" and not cuda:
        raise ConfigError("synthesis.device = 'cuda', but torch sees no CUDA device", hint="use device 'auto'")
    device = "cuda" if cuda and settings.device != "cpu" else "cpu"
    if device == "cpu" and settings.dtype != "fp32":
        raise ConfigError(
            f"synthesis.dtype = {settings.dtype!r} on the CPU: half precision breaks layer-norm and STFT kernels "
            "there; use dtype 'fp32' (or run on a CUDA device)"
        )
    return device


def cuda_device() -> tuple[str, int]:
    """(name, total bytes) of CUDA device 0 as torch sees it, or ("cpu", 0) without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return "cpu", 0
    if not torch.cuda.is_available():
        return "cpu", 0
    props = torch.cuda.get_device_properties(0)
    return props.name, int(props.total_memory)


def library_versions(*dists: str) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out
