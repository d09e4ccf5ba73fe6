"""Objects in S3 (or any S3-compatible server) under s3://bucket/prefix.

Audio is written once with `IfNoneMatch="*"`: a 412 means the object exists already and it is never
overwritten. Every write is one PUT, never a multipart upload, so nothing of voxbatch's is ever left
half-uploaded. One client per process (tasks.storage.s3_client), shared by the upload threads. No request is
made per key to find what exists: resume reads the shard's manifest or checkpoint (see tasks.shard.lifecycle).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tasks.errors import StorageError
from tasks.storage import s3_client
from tasks.storage.object_store import ObjectMissing, check_key


class ObjectChanged(StorageError):
    """An object read twice (two passes over an input) was replaced between the reads."""


_HINT = "check AWS_ENDPOINT_URL, the credentials (environment, profile or role), the region and the bucket name"


class S3Store:
    scheme = "s3"

    def __init__(self, location: str) -> None:
        self.bucket, prefix = s3_client.split_uri(location)
        if not self.bucket:
            raise StorageError(f"{location}: no bucket in the S3 URI", hint="write it as s3://bucket/prefix")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _error(self, key: str, exc: BaseException, doing: str) -> StorageError:
        return StorageError(
            f"{self.uri(key)}: cannot {doing}: {s3_client.describe(exc, self.bucket)}",
            hint=_HINT,
            transient=s3_client.is_transient(exc),
        )

    def _client(self) -> Any:
        try:
            return s3_client.client()
        except Exception as exc:  # no region, a broken profile: botocore raises before any request
            raise self._error("", exc, "connect") from exc

    def check(self) -> None:
        """The bucket exists and these credentials can list it (one request, two attempts at most)."""
        try:
            s3_client.client(probe=True).list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as exc:
            raise self._error("", exc, "open the output location") from exc

    def exists(self, key: str) -> bool:
        try:
            self._client().head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            return True
        except Exception as exc:
            if s3_client.is_not_found(exc):
                return False
            raise self._error(key, exc, "read") from exc

    def existing(self, keys: list[str]) -> set[str]:
        return set()  # a HEAD per key is what resume must not cost: the manifest and checkpoint say what is done

    def get(self, key: str) -> bytes:
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))["Body"]
            return bytes(body.read())
        except StorageError:
            raise
        except Exception as exc:
            if s3_client.is_not_found(exc):
                raise ObjectMissing(f"{self.uri(key)}: no such object") from exc
            raise self._error(key, exc, "read") from exc

    def stream(self, key: str, block: int, if_match: str = "") -> tuple[str, Iterator[bytes]]:
        """The object's ETag and its bytes in blocks of up to `block`, from one GET (never held whole).
        `if_match`: an ETag the object must still have (a second pass over it); ObjectChanged if not."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + check_key(key)}
        if if_match:
            args["IfMatch"] = if_match
        try:
            response = self._client().get_object(**args)
        except Exception as exc:
            if s3_client.is_not_found(exc):
                raise ObjectMissing(f"{self.uri(key)}: no such object") from exc
            if s3_client.error_code(exc) in ("PreconditionFailed", "412"):
                raise ObjectChanged(f"{self.uri(key)}: changed since it was first read") from exc
            raise self._error(key, exc, "read") from exc
        return str(response.get("ETag", "")), self._blocks(key, response["Body"], block)

    def _blocks(self, key: str, body: Any, block: int) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(block)
        except Exception as exc:  # the connection dropped mid-object
            raise self._error(key, exc, "read") from exc
        finally:
            body.close()

    def put(self, key: str, data: bytes, *, overwrite: bool = False, content_type: str | None = None) -> bool:
        return self._put(key, lambda: data, overwrite, content_type)

    def put_file(self, key: str, path: Path, *, overwrite: bool = False, content_type: str | None = None) -> bool:
        """One PUT streamed from the file (never held in memory); S3 takes up to 5 GB this way."""
        with open(path, "rb") as f:

            def body() -> BinaryIO:
                f.seek(0)  # each attempt sends the file from its start
                return f

            return self._put(key, body, overwrite, content_type)

    def get_file(self, key: str, path: Path) -> None:
        try:
            body = self._client().get_object(Bucket=self.bucket, Key=self.prefix + check_key(key))["Body"]
            with open(path, "wb") as f:
                for block in body.iter_chunks(1 << 20):
                    f.write(block)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"{path}: cannot write the copy of {self.uri(key)}: {exc.strerror}") from exc
        except Exception as exc:
            if s3_client.is_not_found(exc):
                raise ObjectMissing(f"{self.uri(key)}: no such object") from exc
            raise self._error(key, exc, "read") from exc

    def _put(self, key: str, body: Callable[[], Any], overwrite: bool, content_type: str | None) -> bool:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + check_key(key)}
        if content_type:
            args["ContentType"] = content_type
        if not overwrite:
            args["IfNoneMatch"] = "*"
        for attempt in range(5):
            try:
                self._client().put_object(Body=body(), **args)
                return True
            except Exception as exc:
                code = s3_client.error_code(exc)
                status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "PreconditionFailed" or status == 412:
                    return False  # it exists: write-once
                if code == "ConditionalRequestConflict" and attempt < 4:
                    time.sleep(0.2 * (attempt + 1))  # a concurrent write of the same key is in flight
                    continue
                raise self._error(key, exc, "write") from exc
        return False

    def delete(self, key: str) -> None:
        try:
            self._client().delete_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
        except Exception as exc:
            if not s3_client.is_not_found(exc):
                raise self._error(key, exc, "delete") from exc

    def list(self, prefix: str) -> list[str]:
        full = self.prefix + prefix
        try:
            pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            keys = [o["Key"][len(self.prefix) :] for page in pages for o in page.get("Contents", [])]
        except Exception as exc:
            raise self._error(prefix, exc, "list") from exc
        return sorted(keys)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def free_bytes(self) -> int | None:
        return None

    def cleanup(self) -> int:
        """Nothing to remove: every object is written with one PUT (`put`, `put_file`: never boto3's managed
        transfers, which go multipart past 8 MB), and a PUT cut short leaves nothing. So an incomplete multipart
        upload under the prefix is never voxbatch's: it is another tool's, maybe in progress, and is left alone.
        (Aborting them all, as before, destroyed such uploads; with `--out s3://bucket`, in the whole bucket.)"""
        return 0
