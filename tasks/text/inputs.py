"""Where the input text is: paths, folders, globs and s3:// prefixes expanded to files, and their bytes read.

A folder or a glob names what is under it, so a symbolic link found there that leads outside it (`x.txt` ->
`~/.aws/credentials`, in an inbox others can write to) is not read: it is set aside with its reason, like any
bad input, and the run goes on with the others. A file named on its own is read wherever it links to: the user
chose it. Local files and S3 objects are recognised by the same suffixes (`INPUT_SUFFIXES`).
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tasks.errors import InputError
from tasks.storage.s3_store import ObjectChanged, S3Store

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
BOOK_SUFFIXES = {".epub"}
TABLE_SUFFIXES = {".jsonl", ".csv", ".tsv", ".parquet"}
INPUT_SUFFIXES = TEXT_SUFFIXES | BOOK_SUFFIXES | TABLE_SUFFIXES
_KINDS = ".txt, .md, .epub, .jsonl, .csv, .tsv or .parquet"


Input = Path | str  # a local path, or an s3:// URI of one object


@dataclass
class Found:
    """The inputs to read, in order, and those refused while looking (links out of their folder)."""

    items: list[Input]
    refused: list[tuple[Path, InputError]] = field(default_factory=list)  # (the file, why)


def is_input(name: str) -> bool:
    """A file or object voxbatch reads when it is found in a folder or under a prefix (by its suffix)."""
    return PurePosixPath(name).suffix.lower() in INPUT_SUFFIXES


def _bucket(uri: str) -> tuple[S3Store, str]:
    """The S3 store at the root of the URI's bucket, and the key (or prefix) the URI names in it."""
    store = S3Store(uri)
    return S3Store(f"s3://{store.bucket}"), uri.removeprefix(f"s3://{store.bucket}/")


def _expand_s3(uri: str) -> list[str]:
    """Input objects under an s3://bucket/prefix/ (or one object), in key order. Keys ending in "/" are folder
    markers (the AWS console's "Create folder" makes an empty `inbox/`), never inputs."""
    store, prefix = _bucket(uri)
    keys = [k for k in store.list(prefix) if not k.endswith("/")]
    if prefix in keys:
        return [uri]
    found = [store.uri(k) for k in keys if is_input(k)]
    if not found:
        raise InputError(f"{uri}: no {_KINDS} object under this prefix")
    return found


def _glob_root(pattern: str) -> Path:
    """The folder a glob looks in: its leading parts without wildcards."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _leaves(path: Path, root: Path) -> InputError | None:
    """InputError if `path`, found under `root`, resolves (through a link) to a file outside it."""
    if not path.resolve().is_relative_to(root.resolve()):
        return InputError(
            f"{path}: a symbolic link that leads outside {root}; not read",
            hint="copy the file into the folder, or name it on the command line, if it is meant to be read",
        )
    return None


def expand_inputs(patterns: list[str]) -> Found:
    """Paths, globs and s3:// prefixes to a de-duplicated, ordered list; a directory contributes its input files."""
    found: list[Input] = []
    refused: list[tuple[Path, InputError]] = []
    for pattern in patterns:
        if pattern.startswith("s3://"):
            found.extend(_expand_s3(pattern))
            continue
        magic = glob.has_magic(pattern)
        matches = sorted(glob.glob(pattern, recursive=True)) if magic else [pattern]
        if not matches:
            raise InputError(f"{pattern}: no file matches this pattern")
        for m in matches:
            p = Path(m)
            pairs: list[tuple[Path, Path | None]]  # (file, the folder it must stay in; None: named on its own)
            if p.is_dir():
                inner = sorted(q for q in p.rglob("*") if q.is_file() and is_input(q.name))
                if not inner:
                    raise InputError(f"{p}: directory holds no {_KINDS} file")
                pairs = [(q, p) for q in inner]
            else:
                pairs = [(p, _glob_root(pattern))] if magic else [(p, None)]
            for q, root in pairs:
                outside = _leaves(q, root) if root is not None else None
                if outside is not None:
                    refused.append((q, outside))
                else:
                    found.append(q)
    seen: set[str] = set()
    unique: list[Input] = []
    for item in found:
        key = item if isinstance(item, str) else str(item.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return Found(unique, refused)


def read_bytes(item: Input) -> bytes:
    if isinstance(item, str):
        store, key = _bucket(item)
        return store.get(key)
    _check_file(item)
    try:
        return item.read_bytes()
    except OSError as exc:
        raise InputError(f"{item}: cannot read: {exc.strerror}") from None


def _check_file(item: Path) -> None:
    if not item.exists():
        raise InputError(f"{item}: no such file")
    if item.is_dir():
        raise InputError(f"{item}: is a directory")


def open_blocks(item: Input, block: int, version: str = "") -> tuple[str, Iterator[bytes]]:
    """The input's bytes in blocks, streamed (an S3 object is never held whole), and its version: an S3 object's
    ETag ("" for a local file). `version`: the one an earlier pass read; InputError if the object has changed."""
    if isinstance(item, Path):
        _check_file(item)
        return "", _file_blocks(item, block)
    store, key = _bucket(item)
    try:
        return store.stream(key, block, if_match=version)
    except ObjectChanged as exc:
        raise InputError(f"{item}: the object was replaced while it was being read", hint="run again") from exc


def _file_blocks(item: Path, block: int) -> Iterator[bytes]:
    try:
        with item.open("rb") as f:
            while data := f.read(block):
                yield data
    except OSError as exc:
        raise InputError(f"{item}: cannot read: {exc.strerror}") from None


def name_of(item: Input) -> PurePosixPath | Path:
    return PurePosixPath(item) if isinstance(item, str) else item
