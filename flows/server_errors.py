"""Which exceptions mean "the Prefect server is away for now" (restarting, overloaded), as opposed to a bad request.

The parent of a dispatched run and the workers wait those out (with a deadline) instead of failing; the CLI
maps one that outlived the deadline to exit 5 (the run is incomplete; the same command resumes it).
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable
from typing import Any


def _first_answer_or_transport_error(exc: BaseException) -> BaseException | None:
    """The HTTP error answer or transport failure in `exc` or its causes (the first met), else None."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            httpx.TransportError | ConnectionError | TimeoutError | PrefectHTTPStatusError | httpx.HTTPStatusError,
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def _status(exc: BaseException | None) -> int | None:
    """The HTTP status of an error answer; None for a transport failure (or nothing)."""
    return getattr(getattr(exc, "response", None), "status_code", None)


def server_unavailable(exc: BaseException) -> bool:
    """A refused connection, a timeout, a dropped connection, or a 5xx/429 answer, here or in its causes."""
    found = _first_answer_or_transport_error(exc)
    if found is None:
        return False
    status = _status(found)
    return status is None or status >= 500 or status == 429


def busy_answer(exc: BaseException) -> bool:
    """The server answered, but busy (503 or 429): on SQLite, a write that found the database locked."""
    return _status(_first_answer_or_transport_error(exc)) in (429, 503)


class Backoff:
    """How long to wait before asking a server that is away again: from 0.2 s after a busy answer (the server is
    up, its database was locked for a moment: a second later would waste a second), from 1 s after no answer (a
    restart); doubling up to 30 s, jittered so that waiting processes do not come back in step."""

    def __init__(self) -> None:
        self._delay: float | None = None

    def next(self, exc: BaseException) -> float:
        first = 0.2 if busy_answer(exc) else 1.0
        self._delay = first if self._delay is None else min(30.0, max(first, self._delay * 2))
        return self._delay * random.uniform(0.75, 1.25)

    def wait(self, exc: BaseException, say: Callable[[str], None]) -> None:
        """Sleep the next delay after `exc`; `say` what is happening, unless it is a short wait after a busy
        answer (a busy answer or two is routine on SQLite)."""
        delay = self.next(exc)
        if not busy_answer(exc) or delay >= 1.0:
            why = "busy, 503" if busy_answer(exc) else type(exc).__name__
            say(f"Prefect API unavailable ({why}); asking again in {delay:.1f} s")
        time.sleep(delay)


class BusyWatch:
    """Counts the server's busy answers and says once, plainly, when they are so many that its database is what
    limits the run (Prefect's default SQLite database behind many small shards)."""

    def __init__(self, logger: Any, per_minute: int = 30) -> None:
        self.logger, self.per_minute = logger, per_minute
        self._times: collections.deque[float] = collections.deque()
        self.said = False

    def saw(self, exc: BaseException) -> None:
        if not busy_answer(exc):
            return
        now = time.monotonic()
        self._times.append(now)
        while self._times and self._times[0] < now - 60:
            self._times.popleft()
        if len(self._times) >= self.per_minute and not self.said:
            self.said = True
            self.logger.warning(FAN_OUT_ADVICE, len(self._times))


FAN_OUT_ADVICE = (
    "the Prefect server answered 'busy' (503) %d times in the last minute: its database cannot keep up with "
    "this fan-out. A server on Prefect's default SQLite database moves under 2 shards a second (one warm slot "
    "per worker; more slots make it slower); for thousands of small shards run it on PostgreSQL "
    "(PREFECT_API_DATABASE_CONNECTION_URL, see docs/deployment.md), or make shards larger (--shard-minutes, "
    "--shard-size)"
)
