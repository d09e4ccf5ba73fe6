"""Objects as files under a local folder (a path or a file:// URI); keys use '/' on every platform.

Every write goes to a temporary file in the target folder, is fsynced, then linked into place (write-once:
`os.link` fails if the key exists) or renamed over it (overwrite). A temporary file's name carries the host
and process id of its writer, so the next run can tell stale ones (their process is gone) from live ones.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from tasks.errors import StorageError
from tasks.storage.object_store import ObjectMissing, check_key

_UMASK = os.umask(0)
os.umask(_UMASK)  # reading the umask sets it: set it back at once
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file
_TMP = ".tmp-"
_FOREIGN_STALE_SECONDS = 3600.0  # another host's temporary file this old is a leftover too


def _host() -> str:
    return socket.gethostname().replace("-", "_")[:40] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalStore:
    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_location(cls, location: str) -> LocalStore:
        parsed = urlparse(location)
        return cls(Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(location).expanduser())

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.root}: cannot create output folder: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root}: output folder is not writable")

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def existing(self, keys: list[str]) -> set[str]:
        return {k for k in keys if self._path(k).is_file()}

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"{self.uri(key)}: no such object") from exc
        except OSError as exc:
            raise StorageError(f"{self.uri(key)}: cannot read: {exc.strerror}") from exc

    def put(self, key: str, data: bytes, *, overwrite: bool = False, content_type: str | None = None) -> bool:
        return self._write(key, lambda f: f.write(data), overwrite)

    def put_file(self, key: str, path: Path, *, overwrite: bool = False, content_type: str | None = None) -> bool:
        def copy(f: BinaryIO) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        return self._write(key, copy, overwrite)

    def get_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError as exc:
            raise ObjectMissing(f"{self.uri(key)}: no such object") from exc
        except OSError as exc:
            raise StorageError(f"{self.uri(key)}: cannot read: {exc.strerror}") from exc

    def _write(self, key: str, fill: Callable[[BinaryIO], object], overwrite: bool) -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TMP}{_host()}-{os.getpid()}-", suffix=path.suffix)
            try:
                os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; outputs are read by others (players, web servers)
                with os.fdopen(fd, "wb") as f:
                    fill(f)
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
            if exc.errno == errno.ENOSPC:
                raise StorageError(f"{self.uri(key)}: cannot write: the disk is full", hint="free space") from exc
            raise StorageError(f"{self.uri(key)}: cannot write: {exc.strerror}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.uri(key)}: cannot delete: {exc.strerror}") from exc

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(_TMP)
        )

    def uri(self, key: str) -> str:
        # Not percent-encoded: fsspec, pyarrow and pandas take file:// paths verbatim (spaces, '=', CJK).
        path = self._path(key) if key else self.root
        return "file://" + path.resolve().as_posix()

    def free_bytes(self) -> int | None:
        return shutil.disk_usage(self.root).free

    def cleanup(self) -> int:
        """Delete temporary files whose writer is gone: a dead process on this host, or an hour old elsewhere."""
        removed = 0
        host = _host()
        now = time.time()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(_TMP):
                    continue
                path = os.path.join(dirpath, name)
                parts = name[len(_TMP) :].split("-")
                try:
                    if len(parts) >= 3 and parts[0] == host and parts[1].isdigit():
                        stale = not _pid_alive(int(parts[1]))
                    else:  # another host's, or an older voxbatch's unnamed temporary file
                        stale = now - os.stat(path).st_mtime > _FOREIGN_STALE_SECONDS
                    if stale:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue  # its writer finished with it meanwhile
        return removed
