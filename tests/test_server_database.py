"""Telling a Prefect server's database from the deployment it returns (flows/server_database.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.server_database import database_of, sqlite_advice
from tests.postgres_servers import start_postgres
from tests.prefect_servers import BIN, PrefectServer, spawn, start_prefect_server


def _jsonb(value: Any) -> Any:
    """`value` as PostgreSQL's JSONB stores it: every object's keys sorted by length, then bytewise."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb(value[k]) for k in keys}
    if isinstance(value, list):
        return [_jsonb(v) for v in value]
    return value


def _shard_schema() -> dict[str, Any]:
    """The parameter schema a worker registers for the shard flow, as Prefect writes it."""
    from prefect.utilities.callables import parameter_schema

    from flows.shard_flow import shard_flow

    return parameter_schema(shard_flow).model_dump(exclude_unset=True)


def test_the_shard_flows_schema_as_written_reads_as_sqlite_and_reordered_by_jsonb_as_postgresql() -> None:
    schema = _shard_schema()
    assert database_of(schema) == "sqlite"
    assert database_of(_jsonb(schema)) == "postgresql"


def test_a_schema_that_says_nothing_is_unknown() -> None:
    assert database_of(None) == "unknown"
    assert database_of({}) == "unknown"
    assert database_of({"type": "object"}) == "unknown"
    assert database_of({"a": 1, "bb": {"c": 1}}) == "unknown"  # in JSONB order, but not known to be written otherwise


def test_the_advice_names_the_fix_and_the_cost() -> None:
    advice = sqlite_advice(1000)
    assert "PostgreSQL" in advice and "about 10 min" in advice
    assert "about 4 s" in sqlite_advice(6)


@pytest.fixture
def postgres_prefect(tmp_path: Path) -> Iterator[PrefectServer]:
    database = start_postgres()
    try:
        server = start_prefect_server(tmp_path / "prefect-home", database_url=database.url(), timeout=240)
        try:
            yield server
        finally:
            server.stop()
    finally:
        database.stop()


def _worker_says_database(server: PrefectServer, log: Path) -> str:
    server.prefect("gcl", "create", "voxbatch-cpu", "--limit", "1")
    worker = spawn([str(BIN / "voxbatch"), "worker"], server.env(), log)
    try:
        deadline = time.monotonic() + 120
        while "warm slot" not in worker.log():
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.log()
            time.sleep(0.3)
        return worker.log(chars=10**6)
    finally:
        worker.stop()


@pytest.mark.slow
@pytest.mark.needs("initdb")
def test_a_worker_tells_a_postgresql_server_from_a_sqlite_one(postgres_prefect: PrefectServer, tmp_path: Path) -> None:
    said = _worker_says_database(postgres_prefect, tmp_path / "worker-pg.log")
    assert "the Prefect server's database is postgresql" in said, said
    assert "SQLite" not in said
    sqlite_server = start_prefect_server(tmp_path / "sqlite-home")
    try:
        said = _worker_says_database(sqlite_server, tmp_path / "worker-sqlite.log")
    finally:
        sqlite_server.stop()
    assert "the Prefect server's database is sqlite" in said and "PostgreSQL" in said, said
