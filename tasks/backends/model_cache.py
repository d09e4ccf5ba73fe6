"""Model files referenced by URI (s3://, file://), cached locally under content-addressed names.

    <cache>/objects/<sha256>          the bytes, verified once when they arrive
    <cache>/index/<hash of uri>.json  uri, remote version (S3 ETag, or size and mtime), sha256
    <cache>/views/<name>-<digest>/    the files under the names a backend expects, hard-linked to objects

A cached object whose remote version is unchanged is never downloaded again. Concurrent workers on one
host never corrupt the cache: a download holds a per-URI lock and lands by atomic rename. No model hub is
ever contacted: S3 endpoints come from the standard AWS settings (AWS_ENDPOINT_URL, credentials, region).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from filelock import FileLock

from tasks.backends.checksums import is_sha256
from tasks.environment import cache_home
from tasks.errors import ModelError
from tasks.storage import s3_client

REMOTE_SCHEMES = ("s3", "file")


def is_remote(location: str) -> bool:
    return urlparse(location).scheme in REMOTE_SCHEMES


def default_dir() -> Path:
    return cache_home() / "models"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Source:
    """Reads one URI: its version (cheap, no download) and its bytes."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        parsed = urlparse(uri)
        self.scheme = parsed.scheme
        if self.scheme == "s3":
            self.bucket, self.key = parsed.netloc, parsed.path.lstrip("/")
        else:
            self.path = Path(unquote(parsed.path))

    def version(self) -> str | None:
        """A string that changes when the object changes; None if it does not exist."""
        if self.scheme == "file":
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return None
            return f"{st.st_size}:{st.st_mtime_ns}"
        client = s3_client.client(probe=True)  # two attempts: an unreachable endpoint fails in seconds
        try:
            head = client.head_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if s3_client.is_not_found(exc):
                return None
            raise _s3_error(self.uri, exc) from exc
        return f"{head['ContentLength']}:{head['ETag']}"

    def download(self, dst: Path) -> str:
        """Write the object to dst; return its sha256."""
        h = hashlib.sha256()
        with dst.open("wb") as out:
            if self.scheme == "file":
                with self.path.open("rb") as src:
                    while block := src.read(1 << 20):
                        h.update(block)
                        out.write(block)
            else:
                try:
                    body = s3_client.client().get_object(Bucket=self.bucket, Key=self.key)["Body"]
                    for block in body.iter_chunks(1 << 20):
                        h.update(block)
                        out.write(block)
                except Exception as exc:
                    raise _s3_error(self.uri, exc) from exc
            out.flush()
            os.fsync(out.fileno())
        return h.hexdigest()


def _s3_error(uri: str, exc: Exception) -> ModelError:
    bucket, _ = s3_client.split_uri(uri)
    return ModelError(
        f"{uri}: cannot read model file: {s3_client.describe(exc, bucket)}",
        hint="check AWS_ENDPOINT_URL, credentials and the URI",
    )


class ModelCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_dir()
        for sub in ("objects", "index", "views", "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.downloads = 0  # how many files this instance fetched (tests and logs)

    def fetch(self, uri: str, expected_sha256: str | None = None) -> Path:
        """A local, verified path for `uri`, downloading only if no valid cached copy exists."""
        if expected_sha256 and not is_sha256(expected_sha256):  # it names a file under objects/: hex digits only
            raise ModelError(f"{uri}: expected digest {expected_sha256[:80]!r} is not 64 hex digits")
        if expected_sha256 and self._valid(expected_sha256):
            return self.root / "objects" / expected_sha256  # known content: no remote call at all
        source = _Source(uri)
        index = self.root / "index" / f"{_key(uri)}.json"
        with FileLock(str(self.root / "locks" / f"{_key(uri)}.lock"), timeout=3600):
            version = source.version()
            if version is None:
                raise ModelError(f"{uri}: model file not found")
            cached = self._read_index(index)
            if (
                cached
                and cached["version"] == version
                and self._valid(cached["sha256"])
                and (not expected_sha256 or cached["sha256"] == expected_sha256)
            ):
                return self.root / "objects" / cached["sha256"]
            fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp", prefix="download-")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                digest = source.download(tmp)
                self.downloads += 1
                if expected_sha256 and digest != expected_sha256:
                    raise ModelError(
                        f"{uri}: checksum mismatch, the remote file is corrupt or truncated\n"
                        f"  expected sha256 {expected_sha256}\n  actual   sha256 {digest}",
                        hint="upload the model again, or fix the expected digest",
                    )
                os.replace(tmp, self.root / "objects" / digest)
            finally:
                tmp.unlink(missing_ok=True)
            record = {"uri": uri, "version": version, "sha256": digest}
            fd, tmp_index = tempfile.mkstemp(dir=self.root / "tmp", prefix="index-")
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp_index, index)
            return self.root / "objects" / digest

    def view(self, files: dict[str, Path]) -> Path:
        """A directory holding `files` (name -> cached object) under their names, for backends that need them."""
        digest = _key(json.dumps({n: p.name for n, p in sorted(files.items())}))
        target = self.root / "views" / digest
        if not target.exists():
            staging = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix="view-"))
            for name, path in files.items():
                try:
                    os.link(path, staging / name)
                except OSError:
                    shutil.copyfile(path, staging / name)
            try:
                os.rename(staging, target)
            except OSError:  # another worker made the same view first
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def _valid(self, sha256: str) -> bool:
        return (self.root / "objects" / sha256).is_file()

    @staticmethod
    def _read_index(path: Path) -> dict[str, str] | None:
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return index if isinstance(index, dict) else None


def list_prefix(uri: str) -> list[str]:
    """URIs of the files directly under a folder URI (s3:// prefix or file:// directory)."""
    parsed = urlparse(uri.rstrip("/") + "/")
    if parsed.scheme == "file":
        directory = Path(unquote(parsed.path))
        if not directory.is_dir():
            raise ModelError(f"{uri}: not a directory")
        return [p.resolve().as_uri() for p in sorted(directory.iterdir()) if p.is_file()]
    prefix = parsed.path.lstrip("/")
    try:
        pages = s3_client.client().get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", []) if "/" not in o["Key"][len(prefix) :]]
    except Exception as exc:
        raise _s3_error(uri, exc) from exc
    if not keys:
        raise ModelError(f"{uri}: no files under this prefix")
    return [f"s3://{parsed.netloc}/{k}" for k in sorted(keys)]


def fetch_files(uris: list[str], cache: ModelCache | None = None, expected: dict[str, str] | None = None) -> Path:
    """Fetch several files into one local directory view, keeping their base names."""
    cache = cache or ModelCache()
    expected = expected or {}
    files = {}
    for uri in uris:
        name = Path(urlparse(uri).path).name
        files[name] = cache.fetch(uri, expected.get(name))
    return cache.view(files)


def fetch_folder(uri: str, *, checksums: str = "SHA256SUMS", required: bool = False) -> Path:
    """An s3:// or file:// folder through the cache, its files checked against its `checksums` file (sha256sum
    format) where it has one; `required`: a folder without one is a ModelError."""
    cache = ModelCache()
    uris = list_prefix(uri)
    sums = next((u for u in uris if u.endswith("/" + checksums)), None)
    if sums is None and required:
        raise ModelError(f"{uri}: no {checksums} in the folder")
    expected = parse_sha256sums(cache.fetch(sums).read_text()) if sums else {}
    return fetch_files(uris, cache, expected)


def parse_sha256sums(text: str) -> dict[str, str]:
    """sha256sum output ("<digest>  <name>" per line) to {name: digest}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and is_sha256(parts[0].lower()):  # anything else could name another cached file
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def fetch_optional(uri: str, cache: ModelCache) -> Path | None:
    try:
        return cache.fetch(uri)
    except ModelError as exc:
        if "model file not found" in str(exc):
            return None
        raise
