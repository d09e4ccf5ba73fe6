"""Checksums of voice files and the digests that identify voices, chunks and plans."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tasks.errors import ModelError


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(chunk_size):
                h.update(block)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model file: {exc.strerror}") from exc
    return h.hexdigest()


def verify_sha256(path: Path, expected: str | None, fix: str) -> str:
    """Hash `path`; if an expected digest is known and differs, raise ModelError naming both digests."""
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        size = path.stat().st_size
        raise ModelError(
            f"{path}: checksum mismatch, the file is corrupt or truncated ({size} bytes)\n"
            f"  expected sha256 {expected.lower()}\n  actual   sha256 {actual}",
            hint=fix,
        )
    return actual


def digest_of(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
