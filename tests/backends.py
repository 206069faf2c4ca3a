"""The storage backends the storage contract suite and the engine integration tests run against.

Each backend here opens a fresh, empty database for one test: SQLite a file under tmp_path,
PostgreSQL a new database in the session's throwaway cluster (tests/pg_cluster.py), dropped when
the test ends. Without PostgreSQL's server binaries or psycopg the "postgres" cases skip with the
reason. Tests that look behind the store's back with sqlite3 (the `raw` fixture) stay SQLite's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import pg_cluster

BACKENDS = ["sqlite"]  # "postgres" joins once the Store opens postgresql:// DSNs (issue 18)

# Databases made for the running test; tests/conftest.py drops them when it ends.
created_databases: list[str] = []


def postgres_dsn(prefix: str = "t", **query: str) -> str:
    """A fresh, empty PostgreSQL database's DSN (skips the test when PostgreSQL is missing)."""
    reason = pg_cluster.skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        cluster = pg_cluster.shared_cluster()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    name = cluster.new_database(prefix)
    created_databases.append(name)
    return cluster.dsn(name, **query)


def target(backend: str, tmp_path: Path, name: str = "durableflow.db"):
    """What `Store(...)` and `Engine(...)` are given to open a fresh database of `backend`."""
    if backend == "sqlite":
        return tmp_path / name
    if backend == "postgres":
        return postgres_dsn()
    raise ValueError(f"unknown storage backend {backend!r}")


def drop_created_databases() -> None:
    if not created_databases:
        return
    cluster = pg_cluster.shared_cluster()
    while created_databases:
        cluster.drop_database(created_databases.pop())
