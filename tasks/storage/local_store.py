"""Objects as files under a local folder (a path or a file:// URI); keys use '/' on every platform.

Every write goes to a temporary file in one folder, `.voxbatch-tmp/` under the root (the same file system, so a
link or rename moves it), is fsynced, then linked into place (write-once: `os.link` fails if the key exists) or
renamed over it (overwrite), and the key's folder is fsynced: a power cut after the write returns cannot lose it.

The writer holds an exclusive `flock` on its temporary file until it is done with it. A temporary file nobody
holds locked is a dead writer's leftover, whatever host or PID namespace it ran in (the kernel drops the lock
with the process), so `cleanup` removes only those, and lists only `.voxbatch-tmp/`, never the output tree.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
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
TMP_DIR = ".voxbatch-tmp"  # every temporary file of this store, and the only folder `cleanup` lists
_UNLOCKABLE_STALE_SECONDS = 3600.0  # where the file system has no locks: a temporary file this old is a leftover


def _host() -> str:
    return socket.gethostname().replace("-", "_")[:40] or "host"


def _fsync_dir(path: Path) -> None:
    """Make a folder's entries durable (a new link, a rename, a new subfolder): fsync of the file alone is not."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> None:
    """mkdir -p, fsyncing the parent of each folder it creates (else a power cut can drop the new folder, and
    everything linked into it)."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it meanwhile
            folder.mkdir()
        _fsync_dir(folder.parent)


def _lock(fd: int) -> bool:
    """An exclusive lock on an open temporary file (blocking); False where the file system has none."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return False
        raise
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

    def _temporary(self, folder: Path, suffix: str) -> tuple[int, str]:
        """A new temporary file for a key in `folder`, open and locked by this process (its name only helps a
        human): in TMP_DIR, or in `folder` itself where that is another file system (a link cannot cross one:
        a folder of the output mounted or linked elsewhere; `cleanup` does not look there)."""
        tmp_dir = self.root / TMP_DIR
        _make_dirs(tmp_dir)
        if os.stat(folder).st_dev != os.stat(tmp_dir).st_dev:
            tmp_dir = folder
        while True:
            fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=f"{_TMP}{_host()}-{os.getpid()}-", suffix=suffix)
            try:
                # `cleanup` may have locked and removed it between mkstemp and our lock: then make another.
                if not _lock(fd) or os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    return fd, tmp
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _write(self, key: str, fill: Callable[[BinaryIO], object], overwrite: bool) -> bool:
        path = self._path(key)
        try:
            _make_dirs(path.parent)
            fd, tmp = self._temporary(path.parent, path.suffix)
            with os.fdopen(fd, "wb") as f:  # closing it drops the lock: after the temporary file is gone
                try:
                    os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; outputs are read by others (players, servers)
                    fill(f)
                    f.flush()
                    os.fsync(f.fileno())
                    if overwrite:
                        os.replace(tmp, path)
                    else:
                        try:
                            os.link(tmp, path)  # atomic and never clobbers: fails if the key exists
                        except FileExistsError:
                            return False
                    _fsync_dir(path.parent)  # the new name is durable before the caller builds on it
                    return True
                finally:
                    with contextlib.suppress(FileNotFoundError):
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
        """Delete the temporary files no writer holds locked (their writer died), in TMP_DIR only: the cost is
        that folder's size, not the output's (millions of audio files)."""
        tmp_dir = self.root / TMP_DIR
        try:
            names = os.listdir(tmp_dir)
        except FileNotFoundError:
            return 0
        return sum(_remove_if_abandoned(os.path.join(tmp_dir, n)) for n in names if n.startswith(_TMP))


def _remove_if_abandoned(path: str) -> bool:
    """Remove a temporary file unless its writer holds it locked; True if removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False  # its writer finished with it meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer, in this process, another one, another container or host
        except OSError as exc:  # no locks on this file system: only an old file is surely a leftover
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            if time.time() - os.fstat(fd).st_mtime <= _UNLOCKABLE_STALE_SECONDS:
                return False
        try:
            os.unlink(path)  # while holding its lock: a writer that locks it next sees it gone and makes another
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)
