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

BACKENDS = ["sqlite", "postgres"]

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


class PgRaw:
    """A plain connection to a PostgreSQL store's database, answering like sqlite3 does for the
    tests that read rows behind the store's back: `?` parameters, tuples, JSON as text."""

    def __init__(self, dsn):
        import psycopg

        from durableflow.storage.postgres.connection import configure
        from durableflow.storage.postgres.dsn import parse

        parsed = parse(dsn)
        self.conn = psycopg.connect(parsed.conninfo, autocommit=True)
        configure(self.conn, parsed.schema)

    def execute(self, sql: str, params=()):
        from durableflow.storage.postgres.connection import convert

        text, has_params = convert(sql)
        return self.conn.execute(text, params if has_params else None)

    def executemany(self, sql: str, rows):
        from durableflow.storage.postgres.connection import convert

        cur = self.conn.cursor()
        cur.executemany(convert(sql)[0], rows)
        return cur

    def close(self) -> None:
        self.conn.close()


def raw_connection(db):
    """A plain connection to a test database: sqlite3 on a file, PgRaw on a DSN."""
    if str(db).startswith("postgresql://"):
        return PgRaw(db)
    import sqlite3
    return sqlite3.connect(db)
