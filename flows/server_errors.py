"""Which exceptions mean "the Prefect server is away for now" (restarting, overloaded), as opposed to a bad request.

The parent of a dispatched run and the workers wait those out (with a deadline) instead of failing; the CLI
maps one that outlived the deadline to exit 5 (the run is incomplete; the same command resumes it).
"""

from __future__ import annotations

import collections
import random
import time
from typing import Any


def server_unavailable(exc: BaseException) -> bool:
    """A refused connection, a timeout, a dropped connection, or a 5xx/429 answer, here or in its causes."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.TransportError | ConnectionError | TimeoutError):
            return True
        if isinstance(current, PrefectHTTPStatusError | httpx.HTTPStatusError):
            status = current.response.status_code
            return status >= 500 or status == 429
        current = current.__cause__ or current.__context__
    return False


def busy_answer(exc: BaseException) -> bool:
    """The server answered, but busy (503 or 429): on SQLite, a write that found the database locked."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PrefectHTTPStatusError | httpx.HTTPStatusError):
            return current.response.status_code in (429, 503)
        current = current.__cause__ or current.__context__
    return False


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

    def reset(self) -> None:
        self._delay = None


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
