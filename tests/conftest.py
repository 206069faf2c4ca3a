"""Fixtures shared by every test layer: a manual clock and a Store on a real file under tmp_path."""

from __future__ import annotations

import sqlite3

import pytest

from durableflow.clock import ManualClock
from durableflow.storage import Store
from tests.backends import BACKENDS, target

# 2027-01-15T08:00:00Z: a fixed, readable instant far from any DST or leap-second edge.
T0 = 1_800_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Every test that opens a store runs once per storage backend."""
    return request.param


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
def raw(store):
    """A plain sqlite3 connection to the store's file, to look at rows behind the store's back."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()
