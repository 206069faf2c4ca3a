"""Storage-layer helpers: look at rows directly, make runs for messages to belong to."""

from __future__ import annotations

import json
import os

import pytest

QUEUE_TABLES = ("messages", "leases", "dead_letters", "events")


def snapshot(conn, tables=QUEUE_TABLES) -> dict[str, list[tuple]]:
    """Every row of the queue's tables, to prove an operation changed nothing."""
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}


def events_of(conn, message_id: int) -> list[tuple[str, dict]]:
    rows = conn.execute(
        "SELECT type, data, run_id, node_id FROM events WHERE type LIKE 'message.%' ORDER BY seq",
    ).fetchall()
    # Filtered here, not with SQLite's json_extract: the same helper reads PostgreSQL.
    return [(t, {**data, "_run": r, "_node": n}) for t, data, r, n in
            ((t, json.loads(d), r, n) for t, d, r, n in rows) if data.get("id") == message_id]


def make_run(store, run_id: str, status: str = "running", workflow_id: str = "wf") -> str:
    """A minimal workflow + run row so messages can reference a run (foreign keys are on)."""
    now = store.now_iso()

    def txn(conn):
        conn.execute(
            "INSERT INTO workflows (workflow_id, version, checksum, definition, created_at) "
            "VALUES (?, 1, 'x', '{}', ?) ON CONFLICT DO NOTHING", (workflow_id, now))
        conn.execute(
            "INSERT INTO runs (run_id, workflow_id, workflow_version, status, created_at) "
            "VALUES (?, ?, 1, ?, ?)", (run_id, workflow_id, status, now))

    store.write(txn)
    return run_id


def _helper_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


@pytest.fixture
def helper_env():
    """Environment for helper subprocesses: no inherited PYTHONPATH, plus what the test adds."""
    return _helper_env


@pytest.fixture
def snap(raw):
    return lambda tables=QUEUE_TABLES: snapshot(raw, tables)


@pytest.fixture
def msg_events(raw):
    return lambda message_id: events_of(raw, message_id)


@pytest.fixture
def run_factory(store):
    return lambda run_id, status="running": make_run(store, run_id, status)
