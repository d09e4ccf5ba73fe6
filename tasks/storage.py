"""Object storage for outputs: a small interface and its local-folder implementation (file:// or a path).

Audio objects are write-once (an existing key is never overwritten); every write is atomic, so a crash
leaves either the whole object or nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from tasks.errors import StorageError


class ObjectStore(Protocol):
    def exists(self, key: str) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        """Store `data`; returns False (and writes nothing) if the key exists and overwrite is False."""
        ...

    def list(self, prefix: str) -> list[str]: ...

    def uri(self, key: str) -> str: ...

    def free_bytes(self) -> int | None: ...


class LocalStore:
    """Objects as files under a root folder; keys use '/' on every platform."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{root}: cannot create output folder: {exc.strerror}") from None
        if not os.access(root, os.W_OK):
            raise StorageError(f"{root}: output folder is not writable")

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"invalid object key {key!r}")
        return self.root.joinpath(*key.split("/"))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"{self.uri(key)}: cannot read: {exc.strerror}") from None

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                if overwrite:
                    os.replace(tmp, path)
                    return True
                try:
                    os.link(tmp, path)  # atomic and never clobbers: fails if the key exists
                except FileExistsError:
                    return False
                return True
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            raise StorageError(f"{self.uri(key)}: cannot write: {exc.strerror}") from None

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )

    def uri(self, key: str) -> str:
        # Not percent-encoded: fsspec, pyarrow and pandas take file:// paths verbatim (spaces, '=', CJK).
        return "file://" + self._path(key).resolve().as_posix()

    def free_bytes(self) -> int | None:
        return shutil.disk_usage(self.root).free


def open_store(location: str) -> ObjectStore:
    """A store for an output location: a local path or file:// URI (s3:// comes with the S3 backend)."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme in ("",) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return LocalStore(Path(location).expanduser())
    raise StorageError(
        f"{location}: unsupported output location scheme {parsed.scheme!r}",
        hint="give a local folder or a file:// URI",
    )
