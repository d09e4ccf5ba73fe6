"""Which exceptions mean "the Prefect server is away for now" (restarting, overloaded), as opposed to a bad request.

The parent of a dispatched run and the workers wait those out (with a deadline) instead of failing; the CLI
maps one that outlived the deadline to exit 5 (the run is incomplete; the same command resumes it).
"""

from __future__ import annotations


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
