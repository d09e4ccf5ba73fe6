"""A temporary Prefect API for one `voxbatch run` without PREFECT_API_URL: a child process that dies with it.

Prefect's own temporary server outlives a SIGKILLed parent (it is a plain subprocess); this one asks the kernel
to end it when its parent ends (`tasks.lifetime`). Same app, same database ($PREFECT_HOME), so runs made here
show up later in `prefect server start`'s UI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from tasks.errors import VoxbatchError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalApi:
    """Start with `start()` (returns at once), `wait()` until healthy (returns the API URL), `stop()`."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._settings: Any = None
        # A file, not a pipe: a pipe nobody reads fills up and blocks the server.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",  # what Prefect's own temporary server sets: no background services
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flows.local_api", str(self.port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait(self, timeout: float) -> str:
        if self.process is None:
            raise RuntimeError("LocalApi.wait() before start()")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")
                raise VoxbatchError(
                    f"the temporary Prefect API exited with code {self.process.returncode}: {err.strip()[-800:]}",
                    hint="`voxbatch doctor` checks the installation; or point PREFECT_API_URL at a running server",
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise VoxbatchError(
            f"the temporary Prefect API did not answer within {timeout:.0f} s",
            hint="raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or point PREFECT_API_URL at a server",
        )

    def ready(self) -> bool:
        """Whether the API answers now (no waiting)."""
        if self.process is None or self.process.poll() is not None:
            return self.process is not None  # exited: let wait() report why
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def use(self, url: str) -> None:
        """Point this process's Prefect at `url` (before Prefect is imported; in its settings if it already is)."""
        os.environ["PREFECT_API_URL"] = url
        if "prefect" in sys.modules:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            self._settings = temporary_settings(updates={PREFECT_API_URL: url})
            self._settings.__enter__()

    def stop(self) -> None:
        if self._settings is not None:
            self._settings.__exit__(None, None, None)
            self._settings = None
        os.environ.pop("PREFECT_API_URL", None)
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        self.log.close()


def configured_api_url() -> str | None:
    """The Prefect API this process talks to: PREFECT_API_URL (or Prefect's settings, once it is imported)."""
    if "prefect" in sys.modules:
        from prefect.settings import get_current_settings

        return get_current_settings().api.url or None
    return os.environ.get("PREFECT_API_URL") or None


def start_local_api() -> LocalApi:
    api = LocalApi()
    api.start()
    return api


def _serve(port: int) -> None:
    from tasks.lifetime import die_with_parent

    die_with_parent()
    # Below synthesis in the CPU's eyes: the run does its first shards while this boots (flows.cli), and a
    # booting API that takes cores from them costs more than one that waits for idle ones.
    os.nice(10)
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
