"""The `voxbatch worker` process: keeps its warm slot processes (`flows.slot`) running and accounts for them.

A slot that dies mid-shard (killed, out of host memory, a crash in native code) has its flow run marked Crashed
at once, naming the slot, so the dispatching parent sends the shard elsewhere without waiting for its lease
to go quiet; the slot is then started again (after a pause if it keeps dying young). A run cancelled from the
UI or CLI is stopped by ending its slot: a shard cannot be interrupted safely inside a process that goes on.
Slots end with the worker, even when it is SIGKILLed (PR_SET_PDEATHSIG, `tasks.lifetime`); a worker asked to
stop (SIGTERM, Ctrl-C) ends its slots and marks their runs Crashed, so they are dispatched again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from flows.slot import EXIT_RESTART, read_status
from tasks.environment import variable
from tasks.errors import EXIT_OK

CANCEL_CHECK_SECONDS = 2.0


@dataclass
class Slot:
    index: int
    gpu: str | None
    status: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    not_before: float = 0.0


@dataclass
class Supervisor:
    deployment_id: UUID
    gpus: list[str | None]  # one entry per slot: the GPU it owns, None on the CPU
    limit_name: str
    worker_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    preload: bool = False
    poll_seconds: float = 0.25  # how often an idle slot asks for work: a read of the flow runs table
    slots: list[Slot] = field(default_factory=list)
    stopping: bool = False

    def __post_init__(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="voxbatch-worker-"))
        self.slots = [Slot(i, gpu, folder / f"slot-{i}.json") for i, gpu in enumerate(self.gpus)]

    def _start(self, slot: Slot) -> None:
        env = {
            **os.environ,
            variable("warm_slot"): str(slot.index),
            variable("gpu_slots"): "",  # the slot owns its device: its shards claim none
            variable("concurrency_limit"): self.limit_name,
            variable("worker_settings"): json.dumps(self.worker_settings),
        }
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        args = ["--deployment-id", str(self.deployment_id), "--status", str(slot.status)]
        args += ["--poll-seconds", str(self.poll_seconds)] + (["--preload"] if self.preload else [])
        slot.status.unlink(missing_ok=True)
        slot.proc = subprocess.Popen([sys.executable, "-m", "flows.slot", *args], env=env)
        slot.started = time.monotonic()
        where = f"GPU {slot.gpu}" if slot.gpu is not None else "the CPU"
        print(f"voxbatch worker: slot {slot.index} (pid {slot.proc.pid}) on {where}", file=sys.stderr)

    def _stop_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        for slot in self.slots:
            self._start(slot)
        next_cancel_check = 0.0
        try:
            while not self.stopping:
                for slot in self.slots:
                    self._look_after(slot)
                if time.monotonic() >= next_cancel_check:
                    next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
                    self._stop_cancelled()
                time.sleep(0.5)
        finally:
            # SIGTERM to all first (each gives its pool-wide slot back on the way out), then wait for each.
            live = [slot for slot in self.slots if slot.proc is not None and slot.proc.poll() is None]
            for slot in live:
                slot.proc.terminate()  # type: ignore[union-attr]
            deadline = time.monotonic() + 10.0
            for slot in live:
                _wait_or_kill(slot.proc, grace=max(0.1, deadline - time.monotonic()))  # type: ignore[arg-type]
                self._crash(read_status(slot.status), f"its worker on {socket.gethostname()} was stopped")
        return EXIT_OK

    def _look_after(self, slot: Slot) -> None:
        if slot.proc is None:
            if time.monotonic() >= slot.not_before:
                self._start(slot)
            return
        code = slot.proc.poll()
        if code is None:
            return
        slot.proc = None
        running = read_status(slot.status)
        if code == EXIT_RESTART:
            print(f"voxbatch worker: slot {slot.index} restarts after a fatal device error", file=sys.stderr)
        else:
            why = f"signal {-code}" if code < 0 else f"exit {code}"
            print(f"voxbatch worker: slot {slot.index} ended ({why})", file=sys.stderr)
            self._crash(running, f"its worker slot on {socket.gethostname()} ended ({why}) mid-shard")
        # A slot that keeps dying at start (a broken install, no memory) is not restarted in a tight loop.
        young = time.monotonic() - slot.started < 10.0
        slot.quick_deaths = slot.quick_deaths + 1 if young and code != EXIT_RESTART else 0
        slot.not_before = time.monotonic() + min(60.0, 2.0**slot.quick_deaths - 1)

    def _client(self) -> Any:
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def _crash(self, flow_run_id: UUID | None, message: str) -> None:
        """Mark a dead slot's run Crashed (not one that ended by itself), so its parent dispatches it again."""
        if flow_run_id is None:
            return
        from prefect.states import Crashed

        try:
            with self._client() as client:
                run = client.read_flow_run(flow_run_id)
                if run.state is None or not run.state.is_final():
                    client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
        except Exception as exc:  # the server is away: the parent's lease watch catches the run instead
            print(f"voxbatch worker: could not mark flow run {flow_run_id} Crashed ({exc})", file=sys.stderr)

    def _stop_cancelled(self) -> None:
        """End the slots whose current run is being cancelled, then mark the run Cancelled."""
        current = {rid: slot for slot in self.slots if slot.proc is not None and (rid := read_status(slot.status))}
        if not current:
            return
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.client.schemas.objects import StateType
        from prefect.states import Cancelled

        try:
            with self._client() as client:
                ids = FlowRunFilter(id=FlowRunFilterId(any_=list(current)))
                for run in client.read_flow_runs(flow_run_filter=ids):
                    slot = current[run.id]
                    if run.state_type == StateType.CANCELLING and slot.proc is not None:
                        # SIGTERM: the slot gives its pool-wide slot back on the way out. Prefect's engine reports
                        # that end as Crashed (forced); Cancelled replaces it, and the parent, which may have seen
                        # Crashed in between, finds Cancelling in the run's history and does not send it again.
                        slot.proc.terminate()
                        _wait_or_kill(slot.proc, grace=5.0)
                        slot.proc = None
                        message = "cancelled; its slot was restarted"
                        client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
                        print(f"voxbatch worker: slot {slot.index} ended: its run was cancelled", file=sys.stderr)
        except Exception as exc:
            print(f"voxbatch worker: could not check for cancelled runs ({exc})", file=sys.stderr)


def _wait_or_kill(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Wait `grace` seconds for a slot sent SIGTERM (once: a second one would cut short the clean-up in which
    it gives its pool-wide slot back, else taken until its lease expires), then SIGKILL it."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
