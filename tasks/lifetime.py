"""Process lifetime: a child that must not outlive the process that started it (a temporary API, a shard run).

Linux delivers a signal to a process when its parent dies if the process asks for it (PR_SET_PDEATHSIG); a
SIGKILLed parent cannot clean up after itself, so the child has to ask. Elsewhere a watchdog thread polls the
parent id and exits when it changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(*, prctl: bool = True, sig: int = signal.SIGKILL) -> str:
    """Make this process end when its parent ends; returns how ("prctl" or "watchdog").

    prctl=False where the parent may have started us from a thread that ends before it does (Linux signals on
    the death of the creating thread, not the process): a Prefect runner starts flow runs from its event loop.
    """
    parent = os.getppid()
    how = "watchdog"
    if prctl and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0:
                how = "prctl"
        except (OSError, AttributeError):
            pass
    if how == "watchdog":
        threading.Thread(target=_watch, args=(parent,), name="voxbatch-parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before we asked: nobody will signal us now
        os._exit(1)
    return how


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)
