"""Where the input text is: paths, folders, globs and s3:// prefixes expanded to files, and their bytes read."""

from __future__ import annotations

import glob
from pathlib import Path, PurePosixPath

from tasks.errors import InputError
from tasks.storage.s3_store import S3Store

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
BOOK_SUFFIXES = {".epub"}
TABLE_SUFFIXES = {".jsonl", ".csv", ".tsv", ".parquet"}
INPUT_SUFFIXES = TEXT_SUFFIXES | BOOK_SUFFIXES | TABLE_SUFFIXES
_KINDS = ".txt, .md, .epub, .jsonl, .csv, .tsv or .parquet"


Input = Path | str  # a local path, or an s3:// URI of one object


def _bucket(uri: str) -> tuple[S3Store, str]:
    """The S3 store at the root of the URI's bucket, and the key (or prefix) the URI names in it."""
    store = S3Store(uri)
    return S3Store(f"s3://{store.bucket}"), uri.removeprefix(f"s3://{store.bucket}/")


def _expand_s3(uri: str) -> list[str]:
    """Text objects under an s3://bucket/prefix/ (or one object), in key order."""
    store, prefix = _bucket(uri)
    keys = store.list(prefix)
    if prefix in keys:
        return [uri]
    found = [store.uri(k) for k in keys if PurePosixPath(k).suffix.lower() in TEXT_SUFFIXES]
    if not found:
        raise InputError(f"{uri}: no {_KINDS} object under this prefix")
    return found


def expand_inputs(patterns: list[str]) -> list[Input]:
    """Paths, globs and s3:// prefixes to a de-duplicated, ordered list; a directory contributes its text files."""
    found: list[Input] = []
    for pattern in patterns:
        if pattern.startswith("s3://"):
            found.extend(_expand_s3(pattern))
            continue
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise InputError(f"{pattern}: no file matches this pattern")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                inner = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in INPUT_SUFFIXES)
                if not inner:
                    raise InputError(f"{p}: directory holds no {_KINDS} file")
                found.extend(inner)
            else:
                found.append(p)
    seen: set[str] = set()
    unique: list[Input] = []
    for item in found:
        key = item if isinstance(item, str) else str(item.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def read_bytes(item: Input) -> bytes:
    if isinstance(item, str):
        store, key = _bucket(item)
        return store.get(key)
    if not item.exists():
        raise InputError(f"{item}: no such file")
    if item.is_dir():
        raise InputError(f"{item}: is a directory")
    try:
        return item.read_bytes()
    except OSError as exc:
        raise InputError(f"{item}: cannot read: {exc.strerror}") from None


def name_of(item: Input) -> PurePosixPath | Path:
    return PurePosixPath(item) if isinstance(item, str) else item
