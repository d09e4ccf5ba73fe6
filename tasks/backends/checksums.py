"""Checksums of voice files and the digests that identify voices, chunks and plans."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from tasks.errors import ModelError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(text: str) -> bool:
    """Whether `text` is a sha256 digest in hex: cached objects are named by digest, so anything else is a path."""
    return _SHA256.fullmatch(text) is not None


def sidecar_digest(text: str, source: str) -> str:
    """The digest a `.sha256` sidecar holds ("<digest>" or sha256sum's "<digest>  <name>"); ModelError naming the
    sidecar when it is not 64 hex digits, never a string that could name another file."""
    first = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    if not is_sha256(first):
        raise ModelError(
            f"{source}: not a sha256 sidecar (expected 64 hex digits, found {first[:80]!r})",
            hint="write the model's digest into it: sha256sum MODEL.onnx > MODEL.onnx.sha256",
        )
    return first


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
