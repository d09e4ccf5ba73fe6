"""One contract for every output store (local folder, S3 on a real server), then what is particular to each."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import boto3
import pytest

from tasks.errors import StorageError
from tasks.storage import ObjectMissing, ObjectStore, open_store, schemes
from tasks.storage.local_store import LocalStore


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return open_store(str(tmp_path / "out dir 输出"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/some/prefix/")


def test_every_registered_scheme_is_under_contract() -> None:
    assert schemes() == ["file", "s3"]


def test_put_is_write_once_unless_overwrite(store: ObjectStore) -> None:
    assert store.put("audio/ab/x.flac", b"one", content_type="audio/flac")
    assert not store.put("audio/ab/x.flac", b"two")
    assert store.get("audio/ab/x.flac") == b"one"
    assert store.put("audio/ab/x.flac", b"three", overwrite=True)
    assert store.get("audio/ab/x.flac") == b"three"
    assert store.exists("audio/ab/x.flac") and not store.exists("audio/ab/y.flac")


def test_files_go_in_and_out_streamed(store: ObjectStore, tmp_path: Path) -> None:
    big = tmp_path / "plan.parquet"
    big.write_bytes(os.urandom(3 << 20) + b"end")  # over the 1 MiB copy block, so it is copied in pieces
    small = tmp_path / "small"
    small.write_bytes(b"two")
    assert store.put_file("runs/r/plan.parquet", big)
    assert not store.put_file("runs/r/plan.parquet", small)  # write-once unless overwrite, as put
    back = tmp_path / "back.parquet"
    store.get_file("runs/r/plan.parquet", back)
    assert back.read_bytes() == big.read_bytes()
    assert store.put_file("runs/r/plan.parquet", small, overwrite=True)
    assert store.get("runs/r/plan.parquet") == b"two"
    with pytest.raises(ObjectMissing, match="no such object"):
        store.get_file("runs/none/plan.parquet", tmp_path / "none")


def test_missing_objects_and_listing(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing, match="no such object"):
        store.get("manifests/r/shard-00000.parquet")
    for key in ("manifests/r1/shard-00001.parquet", "manifests/r1/shard-00000.parquet", "manifests/r10/x", "runs/r1/p"):
        store.put(key, b"x")
    assert store.list("manifests/r1/") == ["manifests/r1/shard-00000.parquet", "manifests/r1/shard-00001.parquet"]
    assert store.list("nothing/") == []
    assert store.existing(["runs/r1/p", "runs/r1/q"]) <= {"runs/r1/p"}  # never claims what is not there


def test_keys_are_checked_before_any_request(store: ObjectStore) -> None:
    for bad in ("../escape", "/abs", "a//b", "a/../b", "a\x00b", "a\\b", ""):
        with pytest.raises(StorageError, match="invalid object key"):
            store.put(bad, b"x")


def test_uri_names_the_store_and_cleanup_keeps_objects(store: ObjectStore) -> None:
    store.put("runs/r/summary.json", b"{}")
    assert store.uri("runs/r/summary.json").startswith(f"{store.scheme}://")
    assert store.uri("runs/r/summary.json").endswith("/runs/r/summary.json")
    assert store.cleanup() >= 0
    assert store.get("runs/r/summary.json") == b"{}"


# -- local folder -------------------------------------------------------------------------------------------


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    store.put("audio/ab/x.flac", b"one")
    store.put("audio/ab/x.flac", b"two")
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "out").rglob("*"))


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    assert isinstance(store, LocalStore)
    folder = tmp_path / "out" / "audio" / "ab"
    folder.mkdir(parents=True)
    host = socket.gethostname().replace("-", "_")[:40]
    dead = folder / f".tmp-{host}-{2**22 + 12345}-abc.flac"  # no such pid (above pid_max's default)
    live = folder / f".tmp-{host}-{os.getpid()}-def.flac"  # this process: a write in progress
    foreign_old = folder / ".tmp-otherhost-1-ghi.flac"
    foreign_new = folder / ".tmp-otherhost-2-jkl.flac"
    for p in (dead, live, foreign_old, foreign_new):
        p.write_bytes(b"partial")
    os.utime(foreign_old, (1, 1))
    assert store.cleanup() == 2
    assert not dead.exists() and not foreign_old.exists()
    assert live.exists() and foreign_new.exists()
    assert store.list("audio/") == []  # temporary files are never listed as objects


def test_local_location_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported output location"):
        open_store("ftp://example/x")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot create output folder"):
        open_store(str(blocker / "sub"))


def test_file_uri_with_spaces_and_chinese(tmp_path: Path) -> None:
    store = open_store((tmp_path / "my out 输出").as_uri())
    assert isinstance(store, LocalStore)
    store.put("manifests/r1/shard-00000.parquet", b"x")
    assert store.uri("manifests/r1/shard-00000.parquet") == "file://" + str(
        (tmp_path / "my out 输出" / "manifests" / "r1" / "shard-00000.parquet").resolve()
    )


# -- S3 ------------------------------------------------------------------------------------------------------


def test_s3_objects_carry_their_content_type(s3_bucket: str) -> None:
    store = open_store(f"s3://{s3_bucket}/p")
    store.put("audio/ab/x.flac", b"fLaC", content_type="audio/flac")
    head = boto3.client("s3").head_object(Bucket=s3_bucket, Key="p/audio/ab/x.flac")
    assert head["ContentType"] == "audio/flac"


@pytest.mark.parametrize("out", ["p/", ""])  # an output prefix, and a whole bucket (`--out s3://bucket`)
def test_another_tools_multipart_upload_under_the_output_survives_cleanup(s3_bucket: str, out: str) -> None:
    """voxbatch never starts a multipart upload, so none under its output is its own to abort: another tool's,
    even one at a key in voxbatch's own layout, stays and can be completed after voxbatch cleaned up."""
    client = boto3.client("s3")
    keys = [f"{out}audio/ab/big.flac", f"{out}backups/db.tar"]
    uploads = {k: client.create_multipart_upload(Bucket=s3_bucket, Key=k)["UploadId"] for k in keys}
    etags = {
        k: client.upload_part(Bucket=s3_bucket, Key=k, UploadId=u, PartNumber=1, Body=b"part one")["ETag"]
        for k, u in uploads.items()
    }
    store = open_store(f"s3://{s3_bucket}/{out}")
    store.put("audio/cd/y.flac", b"voxbatch's own")
    assert store.cleanup() == 0  # before: 2 aborted (every upload under the prefix)
    left = client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert sorted(u["Key"] for u in left) == sorted(keys)
    for k, u in uploads.items():  # the other tool finishes its uploads
        parts = {"Parts": [{"ETag": etags[k], "PartNumber": 1}]}
        client.complete_multipart_upload(Bucket=s3_bucket, Key=k, UploadId=u, MultipartUpload=parts)
        assert client.get_object(Bucket=s3_bucket, Key=k)["Body"].read() == b"part one"


def test_voxbatch_writes_with_single_puts_only() -> None:
    """What the cleanup above relies on: no voxbatch code uses an S3 call that uploads in parts (boto3's managed
    transfers go multipart past 8 MB) or starts a multipart upload."""
    repo = Path(__file__).resolve().parent.parent
    multipart = ("upload_file", "upload_fileobj", "create_multipart_upload", "TransferConfig", "s3transfer")
    sources = [p for d in ("tasks", "flows", "bench") for p in (repo / d).rglob("*.py")]
    assert sources
    found = [f"{p.relative_to(repo)}: {name}" for p in sources for name in multipart if name in p.read_text()]
    assert found == []


def test_s3_missing_bucket_and_unreachable_endpoint_name_them_not_the_secret(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.storage import s3_client

    with pytest.raises(StorageError) as err:
        open_store("s3://no-such-bucket-here/out")
    text = err.value.user_message()
    assert "no-such-bucket-here" in text and "does not exist" in text and s3_env in text
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    s3_client.reset_client()
    with pytest.raises(StorageError) as err:
        open_store("s3://bucket/out")
    text = err.value.user_message()
    assert "cannot reach the S3 endpoint http://127.0.0.1:9" in text and "s3://bucket/out" in text
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in text
    assert err.value.exit_code == 4
