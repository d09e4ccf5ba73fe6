"""The compose stack for tests: docker/compose.yaml with docker/compose.local.yaml, run by podman as root.

`build_images` makes the local images (docker/local-images.sh, after the image check `make test` started, whose
store and layers it shares); `start_stack` copies the two compose files into a folder of the test's with an .env
of random secrets, picks free ports on 127.0.0.1, and brings the stack up under a project name of its own, so
it runs beside a developer's stack and beside the other tests' servers. Every podman and podman-compose command
and its output go to one log; `Stack.cleanup` removes the project's containers and volumes, the anonymous ones
(the images' VOLUME folders that no named volume covers) included.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tests.s3_servers import free_port

__all__ = ["SERVICES", "Stack", "build_images", "missing", "start_stack", "wait_for_image_check", "wait_for_url"]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORK = Path(os.environ.get("VOXBATCH_BUILDAH_WORK", "/var/tmp/voxbatch-buildah"))
IMAGE_CHECK = "VOXBATCH_IMAGE_CHECK"  # set by `make test` to the folder of the image check it started
# The long-running services, each with a healthcheck (podman 4.3 runs none by itself here: no systemd).
SERVICES = ("postgres", "seaweedfs", "prefect-server", "worker")
# Variables of the test process that compose would read before the stack's .env (its secrets) or pass on.
_NOT_PASSED = ("AWS_", "PREFECT_", "POSTGRES_", "VOXBATCH_", "S3_", "CONTAINERS_")


def missing() -> str | None:
    """Why the stack cannot run here beyond missing system tools, or None."""
    if os.geteuid() != 0:
        return "needs root (podman runs the stack's containers as root; buildah builds its images)"
    # The system tools (podman, runc, buildah, debootstrap) are the test's `needs` marker: skipped and listed
    # without them, failed under CI=true.
    if not (BIN / "podman-compose").exists():
        return "needs podman-compose 1.6.0 in the venv (pip install -c constraints.txt -e '.[dev]')"
    return None


def wait_for_image_check(timeout: float = 1800) -> None:
    """Wait for the image check `make test` started in the background (it builds the voxbatch image in the same
    store; local-images.sh then finds every layer cached), when it started one."""
    started = Path(os.environ.get(IMAGE_CHECK, "/nonexistent"))
    if not (started / "output").exists():
        return
    deadline = time.monotonic() + timeout
    while not (started / "exit-code").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the image check started by make test did not end in {timeout:.0f} s")
        time.sleep(2)


def build_images(log: Path) -> tuple[int, float, str]:
    """docker/local-images.sh: (exit code, seconds, its output)."""
    env = {k: v for k, v in os.environ.items() if k != "VOXBATCH_TEST_SESSION"}  # buildah's are not leftovers
    env["WORK"] = str(WORK)
    started = time.monotonic()
    result = subprocess.run(
        [str(REPO / "docker" / "local-images.sh")], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    with log.open("a") as f:
        f.write(f"\n$ docker/local-images.sh ({seconds:.0f} s, exit {result.returncode})\n{output}")
    return result.returncode, seconds, output


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_weed_base() -> int:
    """A port b with b..b+7 and b+10000..b+10003 free: weed mini's ports but S3's (docker/local/weed-entrypoint.sh)."""
    for _ in range(500):
        base = free_port()
        if base + 10_003 > 65_535:
            continue
        wanted = [base + i for i in range(8)] + [base + 10_000 + i for i in range(4)]
        if all(_is_free(port) for port in wanted):
            return base
    raise RuntimeError("no free block of ports for weed mini on 127.0.0.1")


@dataclass
class Stack:
    project: str
    directory: Path  # the compose files, the .env, the test's config files
    env: dict[str, str]  # for podman and podman-compose
    ports: dict[str, int]
    secrets: dict[str, str]
    log_path: Path
    anonymous_volumes: set[str] = field(default_factory=set)

    # -- commands ---------------------------------------------------------------------------------------------

    def _record(self, args: list[str], result: subprocess.CompletedProcess[str] | None, note: str = "") -> None:
        with self.log_path.open("a") as f:
            f.write(f"\n$ {' '.join(args)} {note}\n")
            if result is not None:
                f.write(f"(exit {result.returncode})\n{result.stdout}{result.stderr}")

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["podman", *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        self._record(command, result)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {result.returncode}\n{result.stderr[-3000:]}")
        return result

    def _compose_args(self, *args: str) -> list[str]:
        files = ["-f", "compose.yaml", "-f", "compose.local.yaml"]
        return [str(BIN / "podman-compose"), "-p", self.project, *files, *args]

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = self._compose_args(*args)
        result = subprocess.run(
            command, env=self.env, cwd=self.directory, capture_output=True, text=True, timeout=timeout
        )
        self._record(command, result)
        if check and result.returncode != 0:
            raise RuntimeError(f"podman-compose {' '.join(args)}: exit {result.returncode}\n{result.stderr[-3000:]}")
        return result

    def _cli_args(self, args: tuple[str, ...], mounts: dict[Path, str] | None) -> list[str]:
        volumes = [f"--volume={source}:{target}:ro" for source, target in (mounts or {}).items()]
        return ["--profile", "cli", "run", "--rm", "-T", *volumes, "voxbatch", *args]

    def voxbatch(
        self, *args: str, mounts: dict[Path, str] | None = None, timeout: float = 400
    ) -> subprocess.CompletedProcess[str]:
        """`voxbatch ARGS` in a container of the CLI service (`podman-compose run --rm voxbatch ...`)."""
        return self.compose(*self._cli_args(args, mounts), timeout=timeout, check=False)

    def start_voxbatch(
        self, name: str, *args: str, mounts: dict[Path, str] | None = None
    ) -> tuple[subprocess.Popen[str], Path]:
        """The same, in the background: (process, file of its stdout and stderr)."""
        output = self.directory / f"{name}.log"
        command = self._compose_args(*self._cli_args(args, mounts))
        self._record(command, None, f"(in the background, output in {output.name})")
        with output.open("w") as out:
            process = subprocess.Popen(
                command, env=self.env, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        return process, output

    # -- the stack --------------------------------------------------------------------------------------------

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def up(self, timeout: float = 300) -> None:
        """`up -d` (images from docker/local-images.sh only), then every healthcheck passed."""
        self.compose("up", "-d", "--no-build", timeout=timeout)
        self.wait_healthy(timeout=timeout)

    def wait_healthy(self, timeout: float = 300) -> None:
        """Run each service's healthcheck (`podman healthcheck run`) until it passes, and the setup ended with 0.

        podman 4.3 schedules healthchecks with systemd timers; without systemd ("unable to get systemd connection",
        logged at each start) nothing runs them, so their status stays "starting" until someone does."""
        deadline = time.monotonic() + timeout
        pending = list(SERVICES)
        while pending:
            service = pending[0]
            check = self.podman("healthcheck", "run", self.container(service), check=False, timeout=90)
            if check.returncode == 0:
                pending.pop(0)
                continue
            state = self.podman("inspect", "--format", "{{.State.Status}}", self.container(service), check=False)
            if time.monotonic() > deadline or state.stdout.strip() in ("exited", "stopped"):
                raise RuntimeError(f"{service} is not healthy ({state.stdout.strip()}):\n{self.logs(service)}")
            time.sleep(1)
        setup = self.podman(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.container("prefect-setup")
        )
        if setup.stdout.split()[1] != "0":
            raise RuntimeError(f"prefect-setup: {setup.stdout.strip()}\n{self.logs('prefect-setup')}")

    def health(self, service: str) -> str:
        return self.podman("inspect", "--format", "{{.State.Health.Status}}", self.container(service)).stdout.strip()

    def containers(self) -> list[str]:
        listed = self.podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}", "--format", "{{.Names}}"
        )
        return listed.stdout.split()

    def _note_anonymous_volumes(self) -> None:
        """Volumes of the project's containers that compose does not name (an image's VOLUME no service mounts a
        named volume on): `down` leaves them, so the stack's cleanup removes them."""
        for name in self.containers():
            mounts = self.podman("inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", name, check=False)
            self.anonymous_volumes.update(v for v in mounts.stdout.split() if re.fullmatch(r"[0-9a-f]{64}", v))

    def down(self) -> None:
        """`down`: the containers go, the named volumes stay."""
        self._note_anonymous_volumes()
        self.compose("down", timeout=300)

    def logs(self, service: str | None = None, tail: int = 60) -> str:
        names = [self.container(service)] if service else self.containers()
        parts = []
        for name in names:
            logs = self.podman("logs", "--tail", str(tail), name, check=False)
            parts.append(f"--- {name}\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)

    def all_output(self) -> str:
        """Everything the stack said: every command's output and every container's whole log."""
        logs = [self.podman("logs", name, check=False) for name in self.containers()]
        return self.log_path.read_text(errors="replace") + "".join(r.stdout + r.stderr for r in logs)

    def cleanup(self) -> None:
        """The project's containers, named volumes and anonymous volumes removed; never raises."""
        with contextlib.suppress(Exception):
            self._note_anonymous_volumes()
        with contextlib.suppress(Exception):
            self.compose("down", "-v", "--timeout", "5", check=False, timeout=300)
        with contextlib.suppress(Exception):
            for name in self.containers():
                self.podman("rm", "-f", "-v", name, check=False)
        with contextlib.suppress(Exception):
            named = self.podman("volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={self.project}")
            for volume in [*named.stdout.split(), *sorted(self.anonymous_volumes)]:
                self.podman("volume", "rm", "-f", volume, check=False)

    # -- reaching it from the host ----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}"

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.ports['s3']}",
            aws_access_key_id=self.secrets["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.secrets["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def keys(self, prefix: str) -> list[str]:
        return list(self.etags(prefix))

    def etags(self, prefix: str) -> dict[str, str]:
        """Every object under `prefix` with its ETag (a rewritten object gets a new one)."""
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket="voxbatch", Prefix=prefix)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}

    def api(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """The Prefect server's REST API: GET, or POST with a JSON body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def flow_runs(self, **flow_run_filter: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api("/flow_runs/filter", {"flow_runs": flow_run_filter, "limit": 200})
        return found


def start_stack(directory: Path) -> Stack:
    """The compose files and a fresh .env in `directory`, free ports, the stack up and healthy."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("compose.yaml", "compose.local.yaml"):
        shutil.copy(REPO / "docker" / name, directory / name)
    values = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "AWS_ACCESS_KEY_ID": "vb" + secrets.token_hex(8),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
    }
    env_file = directory / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env_file.chmod(0o600)
    storage = directory / "storage.conf"  # docker/podman/storage.conf, for this WORK
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{WORK}/storage"\nrunroot = "{WORK}/run"\n')
    ports = {"prefect": free_port(), "s3": free_port(), "postgres": free_port(), "weed": _free_weed_base()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_PASSED)}
    env.update(
        CONTAINERS_CONF=str(REPO / "docker" / "podman" / "containers.conf"),
        CONTAINERS_STORAGE_CONF=str(storage),
        VOXBATCH_PREFECT_PORT=str(ports["prefect"]),
        VOXBATCH_S3_PORT=str(ports["s3"]),
        VOXBATCH_POSTGRES_PORT=str(ports["postgres"]),
        VOXBATCH_WEED_PORT_BASE=str(ports["weed"]),
    )
    project = f"voxbatch-test-{secrets.token_hex(4)}"
    stack = Stack(project, directory, env, ports, values, directory / "commands.log")
    try:
        stack.up()
    except BaseException:
        with contextlib.suppress(Exception):
            print(stack.logs())
        stack.cleanup()
        raise
    return stack


def wait_for_url(url: str, timeout: float = 60, accept: str = "text/html") -> tuple[int, str]:
    """(status, body) of the first answer that is not a connection error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(url, headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
