"""Which database a Prefect server keeps its state in, told from a deployment it returns, and what fan-out that holds.

Prefect's API does not say (its settings endpoint hides the connection URL), but its JSON columns do: on
PostgreSQL they are JSONB, which stores an object's keys sorted by length and then bytewise, while SQLite
returns them in the order they were written. A deployment's parameter schema is written in Pydantic's order
("title" before "type"), so the order it comes back in tells the two apart, at no extra request.

Measured (docs/deployment.md, "How far one server goes"): on SQLite a server starts under 2 shard runs a
second however many workers ask, so thousands of small shards take far longer there than on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Database = Literal["postgresql", "sqlite", "unknown"]

SQLITE_SHARDS_A_SECOND = 1.6  # measured: tests/benchmarks/bench_scale.py, 1,000 tone shards, one slot per worker


def _jsonb_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: (len(k.encode()), k.encode()))


def _objects(value: Any) -> list[list[str]]:
    """The key order of every JSON object with two keys or more in `value`."""
    found: list[list[str]] = []
    if isinstance(value, Mapping):
        if len(value) > 1:
            found.append([str(k) for k in value])
        for item in value.values():
            found += _objects(item)
    elif isinstance(value, list):
        for item in value:
            found += _objects(item)
    return found


def database_of(parameter_schema: Mapping[str, Any] | None) -> Database:
    """The server's database, told from a deployment's `parameter_openapi_schema` as the server returned it."""
    objects = _objects(parameter_schema or {})
    if not objects:
        return "unknown"
    if any(keys != _jsonb_order(keys) for keys in objects):
        return "sqlite"  # an order JSONB never returns: the server kept the written one
    if "title" in (parameter_schema or {}) and "type" in (parameter_schema or {}):
        return "postgresql"  # written title-first, returned type-first: reordered by JSONB
    return "unknown"


def sqlite_advice(shards: int) -> str:
    seconds = shards / SQLITE_SHARDS_A_SECOND
    took = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
    return (
        f"a Prefect server on SQLite starts under {SQLITE_SHARDS_A_SECOND:g} shard runs a second "
        f"(orchestration alone for {shards} shards: about {took}, and more workers make it slower). "
        "Fan-out of many shards needs the server on PostgreSQL (PREFECT_API_DATABASE_CONNECTION_URL; "
        "docker/compose.yaml does this; docs/deployment.md)"
    )
