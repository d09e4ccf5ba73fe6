"""A real Prefect server for tests (`prefect server start`, SQLite in a temporary PREFECT_HOME), and process helpers.

Each process runs in its own process group so a test can stop it, and everything it started, by process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.s3_servers import free_port

BIN = Path(sys.executable).parent


@dataclass
class Proc:
    """A process started in its own group, with its output in a log file."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever of the group is left."""
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.process.wait()
        self.signal_group(signal.SIGKILL)


def spawn(args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> Proc:
    log = log_path.open("ab")
    process = subprocess.Popen(
        args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    return Proc(process, log_path)


def prefect_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="INFO",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


LEASES_ON_DISK = "prefect.server.concurrency.lease_storage.filesystem"


@dataclass
class PrefectServer:
    proc: Proc
    port: int
    home: Path
    database_url: str = ""  # PREFECT_API_DATABASE_CONNECTION_URL; empty: SQLite under home

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        return prefect_env(self.home, self.api_url, **extra)

    def prefect(
        self, *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run Prefect's own CLI against this server."""
        result = subprocess.run(
            [str(BIN / "prefect"), *args],
            env=self.env(PREFECT_CLI_COLORS="false", COLUMNS="250", **env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            command = " ".join(args)
            raise AssertionError(f"prefect {command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def stop(self) -> None:
        self.proc.stop()

    def restart(self) -> PrefectServer:
        """The same server started again (after `stop`): same PREFECT_HOME, database and port."""
        return start_prefect_server(self.home, port=self.port, database_url=self.database_url)

    def slots_taken(self, limit: str) -> int:
        """How many slots of the global concurrency limit `limit` the server counts as taken."""
        with urllib.request.urlopen(f"{self.api_url}/v2/concurrency_limits/{limit}", timeout=10) as response:
            return int(json.load(response)["active_slots"])


def start_prefect_server(
    home: Path, timeout: float = 120, port: int | None = None, database_url: str = ""
) -> PrefectServer:
    """`prefect server start` on 127.0.0.1 (SQLite under `home`, or the database at `database_url`); `port`: a
    given one (a restart), else a free one."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = prefect_env(home, PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_ENABLED="false")
    env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] = LEASES_ON_DISK  # as docs/deployment.md asks: see there
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = spawn(args, env, home / f"server-{int(time.time())}.log")
    server = PrefectServer(proc, port, home, database_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"prefect server exited {proc.process.returncode}:\n{proc.log()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{server.api_url}/health", timeout=2) as response:
            if response.status == 200:
                return server
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"prefect server did not answer within {timeout} s:\n{proc.log()}")


def alive(pid: int) -> bool:
    """Whether process `pid` is running (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def session_members(sid: int) -> list[int]:
    """Live processes in session `sid` (a process started with start_new_session=True and whatever it started)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # fields after the name: state ppid pgrp session ...
                members.append(int(entry.name))
    return members


def wait_until_gone(sid: int, timeout: float = 15.0) -> list[int]:
    """Wait for every process of session `sid` to end; returns those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    while (left := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
