from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import StorageError
from tasks.storage import LocalStore, open_store


def test_put_is_write_once_unless_overwrite(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    assert store.put("audio/ab/x.flac", b"one")
    assert not store.put("audio/ab/x.flac", b"two")
    assert store.get("audio/ab/x.flac") == b"one"
    assert store.put("audio/ab/x.flac", b"three", overwrite=True)
    assert store.get("audio/ab/x.flac") == b"three"
    assert store.list("audio") == ["audio/ab/x.flac"]
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "out").rglob("*"))


def test_file_uri_with_spaces_and_chinese(tmp_path: Path) -> None:
    store = open_store((tmp_path / "my out 输出").as_uri())
    assert isinstance(store, LocalStore)
    store.put("manifests/run_id=r1/shard=0/part-0.parquet", b"x")
    uri = store.uri("manifests/run_id=r1/shard=0/part-0.parquet")
    assert uri.startswith("file://") and "run_id=r1/shard=0" in uri


def test_bad_locations_and_keys(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported output location"):
        open_store("ftp://example/x")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot create output folder"):
        open_store(str(blocker / "sub"))
    store = open_store(str(tmp_path / "o"))
    with pytest.raises(StorageError, match="invalid object key"):
        store.put("../escape", b"x")
