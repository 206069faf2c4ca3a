"""A database written at version 4 migrates through 0005 with its rows intact, and its parked
messages leave the claim index yet are claimed when due (issue 11, points 9, 13, 19)."""

from __future__ import annotations

import sqlite3

import pytest

from durableflow.clock import iso
from durableflow.storage import Store, queue, runs
from durableflow.storage import migrate as migrator
from durableflow.storage.connection import connect


@pytest.fixture
def backend():
    """SQLite's own file, PRAGMAs, planner or migration series: these tests stay SQLite's (the
    PostgreSQL schema and its migrations are checked by tests/postgres)."""
    return "sqlite"


TABLES = ("workflows", "runs", "node_instances", "messages", "leases", "dead_letters", "events",
          "workers", "signals")


def _v4_database(path, clock) -> dict:
    """Version 4 with what an engine of then left: a running run with a Wait parked an hour
    ahead and a retry due already, a paused run with a parked message, a throttled message, one
    in flight, history (acked, dead), a child run, a run with a deadline, workers."""
    conn = connect(path)
    migrator.migrate(conn, clock.now_iso(), migrator.available()[:4])
    now = clock.now()
    t = iso(now - 600)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO workflows VALUES ('wf', 1, 'c', '{}', NULL, ?)", (t,))
    for run_id, status, parent, deadline, until in (
            ("run", "running", None, iso(now + 3600), None),
            ("paused", "paused", None, None, iso(now + 7200)),
            ("child", "running", "run", None, None),
            ("old", "completed", None, None, None)):
        conn.execute("INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, "
                     "status, deadline_at, paused_until, created_at, finished_at) VALUES (?, 'wf', 1, ?, ?, ?, ?, ?, ?, ?)",
                     (run_id, parent, "sub" if parent else None, status, deadline, until, t,
                      t if status == "completed" else None))
    messages = {   # name: (run, node, status, visible_at, held, priority)
        "wait": ("run", "w", "ready", iso(now + 3600), 0, 4),
        "retry_due": ("run", "r", "ready", iso(now - 5), 0, 4),
        "ready": ("child", "a", "ready", t, 0, 4),
        "paused_wait": ("paused", "w", "ready", iso(now + 60), 1, 4),
        "throttled": ("run", "t", "ready", t, 2, 4),
        "leased": ("run", "l", "leased", t, 0, 4),
        "acked": ("old", "a", "acked", t, 0, 4),
        "dead": ("old", "d", "dead", t, 0, 4),
    }
    ids = {}
    for name, (run_id, node, status, visible, held, prio) in messages.items():
        ids[name] = conn.execute(
            "INSERT INTO messages (run_id, kind, target_node_id, payload, status, priority, visible_at, held, "
            "created_at, finished_at) VALUES (?, 'node', ?, '{}', ?, ?, ?, ?, ?, ?)",
            (run_id, node, status, prio, visible, held, t, t if status in ("acked", "dead") else None)).lastrowid
        conn.execute("INSERT INTO node_instances (run_id, node_id, status, message_id, created_at, waiting_reason) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (run_id, node, {"ready": "pending", "leased": "running", "acked": "completed",
                                     "dead": "failed"}[status] if name not in ("wait", "paused_wait") else "waiting",
                      ids[name], t, "timer" if name in ("wait", "paused_wait") else None))
    conn.execute("INSERT INTO leases VALUES (?, 'w1', 'tok', ?, ?)", (ids["leased"], t, iso(now + 30)))
    conn.execute("INSERT INTO dead_letters (message_id, run_id, kind, attempts, created_at) VALUES (?, 'old', 'node', 5, ?)",
                 (ids["dead"], t))
    conn.execute("INSERT INTO events (run_id, type, data, at) VALUES ('run', 'run.running', '{}', ?)", (t,))
    conn.execute("INSERT INTO signals (run_id, name, payload, created_at) VALUES ('run', 'go', '1', ?)", (t,))
    conn.execute("INSERT INTO workers (worker_id, host, pid, concurrency, started_at, heartbeat_at) "
                 "VALUES ('w1', 'h', 1, 1, ?, ?)", (t, t))
    conn.execute("COMMIT")
    conn.close()
    return ids


def rows(path, table: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        return [dict(zip(cols, r)) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    finally:
        conn.close()


def test_a_version_4_database_migrates_with_its_rows_and_claims_its_parked_messages_when_due(db_path, clock):
    ids = _v4_database(db_path, clock)
    before = {t: rows(db_path, t) for t in TABLES}
    with Store(db_path, clock=clock) as store:
        assert store.schema_version() == migrator.available()[-1].version
        after = {t: rows(db_path, t) for t in TABLES}
        # Every row is there, every value as it was, but for where a parked message waits.
        for table in TABLES:
            old_cols = set(before[table][0]) if before[table] else set()
            kept = [{k: r[k] for k in old_cols} for r in after[table]]
            if table == "messages":
                kept = [dict(r, held=None) for r in kept]
                expected = [dict(r, held=None) for r in before[table]]
            else:
                expected = before[table]
            assert kept == expected, table
        held = {name: store.message(mid)["held"] for name, mid in ids.items()}
        assert held == {"wait": queue.LATER, "retry_due": 0, "ready": 0, "paused_wait": queue.PAUSED,
                        "throttled": queue.THROTTLED, "leased": 0, "acked": 0, "dead": 0}

        # Claimable now: the due retry and the ready message; not the parked timer, nor the
        # paused run's, nor the throttled one.
        assert sorted(c.id for c in store.claim("w2", 10)) == sorted([ids["retry_due"], ids["ready"]])
        assert store.next_visible_at() == iso(clock.now() + 3600)
        clock.advance(3600)
        assert [c.id for c in store.claim("w2", 10)] == [ids["wait"]]
        # The paused run's message is due too, but stays held until its run resumes.
        assert store.claim("w2", 10) == []
        store.write(queue.hold_run_messages_txn, "paused", False, clock.now_iso())
        assert [c.id for c in store.claim("w2", 10)] == [ids["paused_wait"]]

        # Upkeep and the listings read the new indexes and find the old rows.
        assert store.read(runs.past_deadline, iso(clock.now() + 1)) == ["run"]
        assert store.read(runs.due_resumes, iso(clock.now() + 7200)) == ["paused"]
        # All made at one instant: the later insert first.
        assert [r["run_id"] for r in store.list_runs(limit=10)] == ["old", "paused", "run"]
        assert {r["run_id"] for r in store.list_runs(limit=10, top_level=False)} == {"run", "paused", "child", "old"}
        conn = store._writer
        assert conn.execute("SELECT run_id, parent_run_id FROM run_summary WHERE run_id = 'child'").fetchall() == [
            ("child", "run")]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
