"""The test S3 helpers themselves: a second weed beside the session one, and the SlowDown proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.s3_servers import SlowDownProxy, free_port, start_weed

DEFAULT_WEED_PORTS = {8333, 9333, 19333, 9340, 19340, 8888, 18888, 23646, 33646, 7333, 8181, 9101, 6060}


def _client(endpoint: str, max_attempts: int = 1) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": max_attempts}),
    )


def test_second_weed_restarts_beside_the_session_one_and_keeps_objects(s3_server: str, tmp_path: Path) -> None:
    data = tmp_path / "weed"
    port = free_port()
    server = start_weed(data, port)
    try:
        assert server.endpoint == f"http://127.0.0.1:{port}"
        assert not DEFAULT_WEED_PORTS & set(server.ports.values())
        client = _client(server.endpoint, max_attempts=5)
        client.create_bucket(Bucket="restart")
        client.put_object(Bucket="restart", Key="clean/a.bin", Body=b"a" * 1000)
        server.stop()
        assert server.process.returncode is not None
        server = start_weed(data, port)
        client.put_object(Bucket="restart", Key="crash/b.bin", Body=b"b" * 1000)
        server.kill()
        server = start_weed(data, port)
        assert client.get_object(Bucket="restart", Key="clean/a.bin")["Body"].read() == b"a" * 1000
        assert client.get_object(Bucket="restart", Key="crash/b.bin")["Body"].read() == b"b" * 1000
        client.close()
    finally:
        server.stop()
    session = _client(s3_server)
    session.list_buckets()  # the session-wide server was left alone
    session.close()


def test_slowdown_proxy_throttles_puts_and_standard_retries_get_through(tmp_path: Path) -> None:
    with start_weed(tmp_path / "weed", free_port()) as server, SlowDownProxy(server.endpoint, every=3) as proxy:
        direct = _client(server.endpoint)
        direct.create_bucket(Bucket="throttled")
        client = _client(proxy.endpoint, max_attempts=10)
        body = bytes(range(256)) * 400  # 100 KiB
        for i in range(8):
            client.put_object(Bucket="throttled", Key=f"k{i}", Body=body, IfNoneMatch="*")
        assert proxy.slowdowns == proxy.puts // 3 > 0
        assert proxy.puts == 8 + proxy.slowdowns
        assert client.head_object(Bucket="throttled", Key="k5")["ContentLength"] == len(body)
        assert client.get_object(Bucket="throttled", Key="k5")["Body"].read() == body
        assert client.list_objects_v2(Bucket="throttled")["KeyCount"] == 8

        no_retry = _client(proxy.endpoint)
        proxy.every = 1  # every PUT
        with pytest.raises(ClientError) as slowdown:
            no_retry.put_object(Bucket="throttled", Key="never", Body=b"x")
        assert slowdown.value.response["Error"]["Code"] == "SlowDown"
        assert slowdown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503

        proxy.enabled = False
        with pytest.raises(ClientError) as exists:
            client.put_object(Bucket="throttled", Key="k0", Body=b"other", IfNoneMatch="*")
        assert exists.value.response["Error"]["Code"] == "PreconditionFailed"
        assert exists.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert direct.get_object(Bucket="throttled", Key="k0")["Body"].read() == body
        for c in (direct, client, no_retry):
            c.close()
