"""A real PostgreSQL server on 127.0.0.1 for benchmarks (Debian's `postgresql` package: initdb and postgres).

The database cluster lives in a temporary folder; as root the server runs as the `postgres` user (PostgreSQL
refuses to run as root). Trust authentication on 127.0.0.1 only: a throwaway server for one benchmark.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.prefect_servers import Proc, spawn
from tests.s3_servers import free_port

_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


def postgres_bin(name: str) -> str | None:
    """The path of a PostgreSQL program (Debian keeps them out of PATH, under /usr/lib/postgresql/N/bin)."""
    for folder in _DIRS:
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


def _as_postgres(args: list[str]) -> list[str]:
    if os.getuid() != 0:
        return args
    return ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--clear-groups", "--", *args]


@dataclass
class PostgresServer:
    proc: Proc
    port: int
    data: Path

    def url(self, database: str = "prefect") -> str:
        """The SQLAlchemy URL Prefect's server takes (PREFECT_API_DATABASE_CONNECTION_URL)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start_postgres(timeout: float = 60) -> PostgresServer:
    """initdb a fresh cluster, start `postgres` on a free port of 127.0.0.1, create the database `prefect`."""
    initdb, postgres = postgres_bin("initdb"), postgres_bin("postgres")
    if not initdb or not postgres:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="voxbatch-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.getuid() == 0:
        os.chmod(root, 0o755)
        shutil.chown(sockets, "postgres", "postgres")
        root.joinpath("data").mkdir(mode=0o700)
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    log = root / "postgres.log"
    log.touch()
    if os.getuid() == 0:
        shutil.chown(log, "postgres", "postgres")
    args = [postgres, "-D", str(data), "-p", str(port), "-k", str(sockets), "-c", "listen_addresses=127.0.0.1"]
    proc = spawn(_as_postgres(args), dict(os.environ), log)
    server = PostgresServer(proc, port, data)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"postgres exited {proc.process.returncode}:\n{proc.log()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        time.sleep(0.2)
    else:
        server.stop()
        raise RuntimeError(f"postgres did not listen within {timeout} s:\n{proc.log()}")
    createdb = postgres_bin("createdb") or "createdb"
    for _ in range(50):  # it listens a moment before it accepts connections
        done = subprocess.run(
            [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "prefect"], capture_output=True, text=True
        )
        if done.returncode == 0:
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"createdb failed: {done.stderr}")
