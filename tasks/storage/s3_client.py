"""One S3 client per process (output store, inputs and model files share it) and S3 errors in voxbatch's words.

Endpoint, region and credentials come from the standard AWS configuration chain (AWS_ENDPOINT_URL, profiles,
instance roles), so AWS, MinIO, SeaweedFS and R2 need no voxbatch-specific setting. Messages name the
endpoint, bucket and key, never a credential: botocore's own messages are not passed through.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlparse

# Uploads run on a thread pool; botocore's connection pool must be at least that wide or threads queue for it.
UPLOAD_THREADS = 8
_POOL_CONNECTIONS = 32

_lock = threading.Lock()
_clients: dict[tuple[object, ...], Any] = {}
# A process normally has one configuration; keying on it keeps a client from outliving a change (tests do that).
_CONFIG_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_MAX_ATTEMPTS",
)
_CONNECT_ERRORS = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ProxyConnectionError",
    "ConnectionError",
}
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def client(probe: bool = False) -> Any:
    """The process's S3 client (thread-safe; made once, before any upload thread uses it).

    `probe=True`: a client that gives up after two attempts, for the checks made before any work starts, so an
    unreachable endpoint or a missing bucket is reported in seconds rather than after a minute of backoff.
    """
    key = (probe, *(os.environ.get(v) for v in _CONFIG_VARS))
    with _lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            # Standard retry mode: 503 SlowDown, throttling and dropped connections are retried with backoff.
            attempts = 2 if probe else int(os.environ.get("AWS_MAX_ATTEMPTS") or 8)
            _clients[key] = boto3.session.Session().client(
                "s3",
                config=Config(
                    connect_timeout=3 if probe else 5,
                    read_timeout=60,
                    retries={"mode": "standard", "max_attempts": attempts},
                    max_pool_connections=_POOL_CONNECTIONS,
                ),
            )
        return _clients[key]


def reset_client() -> None:
    """Forget the clients (tests change AWS_* variables between cases)."""
    with _lock:
        _clients.clear()


def endpoint() -> str:
    """The endpoint requests go to, for messages (a URL: no credential is part of it)."""
    try:
        url = client(probe=True).meta.endpoint_url
    except Exception:  # no region configured, for example: the message still names something useful
        url = os.environ.get("AWS_ENDPOINT_URL") or "(AWS default endpoint)"
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.hostname}{f':{parsed.port}' if parsed.port else ''}" if parsed.hostname else url


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix")."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: the endpoint was unreachable, slow or overloaded (not: denied, missing, malformed)."""
    code = error_code(exc) or ""
    if type(exc).__name__ in _CONNECT_ERRORS or isinstance(exc, ConnectionError):
        return True
    return code.startswith("5") or code in {"SlowDown", "Throttling", "RequestTimeout", "InternalError"}


def describe(exc: BaseException, bucket: str) -> str:
    """What went wrong, in words that name the endpoint and bucket and nothing secret."""
    name = type(exc).__name__
    code = error_code(exc)
    if name in _CONNECT_ERRORS or isinstance(exc, ConnectionError):
        return f"cannot reach the S3 endpoint {endpoint()} ({name})"
    if code in _AUTH_CODES:
        return f"access denied by {endpoint()} for bucket {bucket!r} ({code}): check the credentials and their rights"
    if code == "NoSuchBucket" or (code == "404" and name == "ClientError"):
        return f"bucket {bucket!r} does not exist at {endpoint()}"
    if name == "NoCredentialsError":
        return "no AWS credentials found (environment, profile or instance role)"
    if name == "NoRegionError":
        return "no AWS region configured: set AWS_DEFAULT_REGION (or AWS_REGION)"
    return f"{name}" + (f" ({code})" if code else "") + f" from {endpoint()}, bucket {bucket!r}"
