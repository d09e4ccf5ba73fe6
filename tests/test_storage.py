"""One contract for every output store (local folder, S3 on a real server), then what is particular to each."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from tasks.errors import StorageError
from tasks.storage import ObjectMissing, ObjectStore, open_store, schemes
from tasks.storage.local_store import TMP_DIR, LocalStore


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
    folder = tmp_path / "out" / TMP_DIR
    folder.mkdir(parents=True)
    host = socket.gethostname().replace("-", "_")[:40]
    dead = folder / f".tmp-{host}-{os.getpid()}-abc.flac"  # a live pid, but nobody holds it: a dead writer's
    live = folder / f".tmp-otherhost-{2**22 + 12345}-def.flac"  # a pid dead here, held locked: a live writer
    for p in (dead, live):
        p.write_bytes(b"partial")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert store.cleanup() == 1
    assert not dead.exists() and live.exists()
    assert store.list("") == []  # temporary files are never listed as objects


def test_a_committed_write_fsyncs_the_folders_that_name_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the link (write-once) or the rename (overwrite) the key's folder is fsynced, and a folder made for
    it is fsynced in its parent: else a power cut after the commit can lose a committed manifest."""
    events: list[tuple[str, int]] = []
    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            events.append(("fsync-dir", st.st_ino))
        real_fsync(fd)

    def link(src: str, dst: str, **kw: object) -> None:
        real_link(src, dst, **kw)  # type: ignore[arg-type]
        events.append(("link", os.stat(os.path.dirname(dst)).st_ino))

    def replace(src: str, dst: str, **kw: object) -> None:
        real_replace(src, dst, **kw)  # type: ignore[arg-type]
        events.append(("replace", os.stat(os.path.dirname(dst)).st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    store = open_store(str(tmp_path / "out"))
    assert store.put("manifests/r1/shard-00000.parquet", b"one")
    folder = (tmp_path / "out" / "manifests" / "r1").stat().st_ino
    parent = (tmp_path / "out" / "manifests").stat().st_ino
    linked = events.index(("link", folder))
    assert ("fsync-dir", folder) in events[linked:]  # the new name is durable
    assert ("fsync-dir", parent) in events[:linked]  # and so is the folder made for it
    events.clear()
    assert store.put("manifests/r1/shard-00000.parquet", b"two", overwrite=True)
    assert ("fsync-dir", folder) in events[events.index(("replace", folder)) :]


_LISTED: list[str] | None = None  # folders listed while a test records them (an audit hook cannot be removed)


def _record_listings(event: str, args: tuple[object, ...]) -> None:
    if _LISTED is not None and event in ("os.scandir", "os.listdir"):
        _LISTED.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes)) else str(args[0]))


sys.addaudithook(_record_listings)


def test_cleanup_lists_only_its_temporary_folder_never_the_output_tree(tmp_path: Path) -> None:
    global _LISTED
    store = open_store(str(tmp_path / "out"))
    for i in range(20):
        store.put(f"audio/{i:02x}/chunk-{i}.flac", b"fLaC")
    stray = tmp_path / "out" / "audio" / "00" / ".tmp-killed-1-x.flac"  # not where voxbatch writes them now
    stray.write_bytes(b"partial")
    _LISTED = []
    try:
        store.cleanup()
        listed = _LISTED
    finally:
        _LISTED = None
    allowed = str(tmp_path / "out" / TMP_DIR)
    assert listed and all(p == allowed for p in listed), listed  # bounded: not millions of audio folders


def test_a_live_writers_temporary_file_survives_cleanup_whatever_its_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Containers sharing a host name but not a PID namespace: the writer's pid means nothing here. Its lock
    does: a write in progress whose pid is dead on this host keeps its temporary file and completes."""
    source = tmp_path / "slow source"
    os.mkfifo(source)  # the write blocks reading it until the test feeds it
    store = open_store(str(tmp_path / "out"))
    monkeypatch.setattr(os, "getpid", lambda: 2**22 + 12345)  # no such pid here (above pid_max's default)
    result: list[object] = []
    writer = threading.Thread(target=lambda: result.append(_put_file(store, source)), daemon=True)
    writer.start()
    deadline = time.monotonic() + 10
    while not (temporary := [p for p in (tmp_path / "out").rglob(".tmp-*") if p.is_file()]):
        assert time.monotonic() < deadline and writer.is_alive(), result
        time.sleep(0.01)
    removed = store.cleanup()
    assert temporary[0].exists() and removed == 0
    with open(source, "wb") as feed:
        feed.write(b"the audio")
    writer.join(10)
    assert result == [True]
    assert store.get("audio/ab/x.flac") == b"the audio"


def _put_file(store: ObjectStore, source: Path) -> object:
    try:
        return store.put_file("audio/ab/x.flac", source)
    except StorageError as exc:
        return exc


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
