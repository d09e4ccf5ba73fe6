"""What a learned batch budget depends on besides the weights: the CUDA device torch sees, library versions."""

from __future__ import annotations


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
