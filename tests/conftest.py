"""Fixtures shared by every test layer: a manual clock and a Store on a real file under tmp_path."""

from __future__ import annotations

import sqlite3

import pytest

from durableflow.clock import ManualClock
from durableflow.storage import Store
from tests import pg_cluster
from tests.backends import BACKENDS, PgRaw, drop_created_databases, postgres_dsn, target

# 2027-01-15T08:00:00Z: a fixed, readable instant far from any DST or leap-second edge.
T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every test that opens a store runs once per storage backend."""
    return request.param


@pytest.fixture(autouse=True)
def _drop_test_databases():
    """PostgreSQL databases a test made (tests/backends.py) are dropped when it ends."""
    yield
    drop_created_databases()


@pytest.fixture(scope="session")
def pg_cluster_session():
    """The session's throwaway PostgreSQL cluster (tests/pg_cluster.py); skips without binaries."""
    reason = pg_cluster.skip_reason()
    if reason:
        pytest.skip(reason)
    return pg_cluster.shared_cluster()


@pytest.fixture
def pg_dsn(pg_cluster_session) -> str:
    """A DSN to a fresh, empty PostgreSQL database of this test's own (dropped afterwards)."""
    return postgres_dsn()


def pytest_sessionfinish(session, exitstatus):
    pg_cluster.stop_shared_cluster()


@pytest.fixture
def db_path(tmp_path, backend):
    return target(backend, tmp_path)


@pytest.fixture
def store(db_path, clock):
    s = Store(db_path, clock=clock)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def raw(store, backend):
    """A plain connection to the store's database, to look at rows behind the store's back:
    sqlite3 on the file, or psycopg (answering like sqlite3: `?` parameters, tuples) on PostgreSQL."""
    conn = sqlite3.connect(store.path, isolation_level=None) if backend == "sqlite" else PgRaw(store.path)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def sqlite_only(backend):
    """For a test that checks what only SQLite has (its file, its query plans, its PRAGMAs)."""
    if backend != "sqlite":
        pytest.skip("checks SQLite's own file or planner")
