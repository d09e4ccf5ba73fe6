"""The object-store interface every output backend implements, and the key rules they share.

Keys are relative, '/'-separated and built by voxbatch from ids only (see tasks/storage/layout.py), never from a
user's file name, so a document named `../../etc/passwd` or `我的 书.txt` cannot steer a write.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from tasks.errors import StorageError

Keys = list[str]  # (the method `list` hides the builtin inside the class)

_BAD_KEY = re.compile(r"[\x00-\x1f\x7f\\]")


class ObjectMissing(StorageError):
    """The key does not exist."""


class ObjectStore(Protocol):
    """Where a run's outputs live. Audio objects are write-once; every write is atomic (all or nothing)."""

    scheme: str

    def check(self) -> None:
        """Fail now, with a StorageError naming the location, if it cannot be reached or written."""
        ...

    def exists(self, key: str) -> bool: ...

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectMissing if there is none."""
        ...

    def put(self, key: str, data: bytes, *, overwrite: bool = False, content_type: str | None = None) -> bool:
        """Store `data`; returns False (and writes nothing) if the key exists and overwrite is False."""
        ...

    def put_file(self, key: str, path: Path, *, overwrite: bool = False, content_type: str | None = None) -> bool:
        """`put` of a local file's contents, streamed (a large plan is never held in memory)."""
        ...

    def get_file(self, key: str, path: Path) -> None:
        """Copy the object into the local file `path`, streamed; ObjectMissing if there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object if it is there (an export's stale file); audio and manifests are never deleted."""
        ...

    def list(self, prefix: str) -> Keys:
        """Every key under `prefix`, sorted (one listing; no request per key)."""
        ...

    def existing(self, keys: Keys) -> set[str]:
        """Those of `keys` the store can confirm cheaply (a local stat); a remote store confirms none."""
        ...

    def uri(self, key: str) -> str: ...

    def free_bytes(self) -> int | None: ...

    def cleanup(self) -> int:
        """Remove what a killed writer left behind (temporary files, incomplete uploads); returns how many."""
        ...


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts[:-1]) or _BAD_KEY.search(key):
        raise StorageError(f"invalid object key {key!r}")
    if parts[-1] in (".", ".."):
        raise StorageError(f"invalid object key {key!r}")
    return key
