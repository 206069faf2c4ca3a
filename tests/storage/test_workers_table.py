"""The workers table stays small and upkeep's look at it stays cheap (issue 11, point 13): a
worker's start drops the rows of workers stopped over a week ago, and upkeep finds the live
workers of its host through an index that holds only those."""

from __future__ import annotations

import sqlite3

from durableflow.clock import iso
from durableflow.procs import host_identity
from durableflow.storage import workers

DAY = 86400.0


def add_stopped(raw, count: int, stopped_at: str, prefix: str) -> None:
    raw.executemany("INSERT INTO workers (worker_id, host, pid, concurrency, started_at, heartbeat_at, "
                    "stopped_at, host_id) VALUES (?, 'h', ?, 1, ?, ?, ?, 'h/x')",
                    [(f"{prefix}{i}", i, stopped_at, stopped_at, stopped_at) for i in range(count)])


def test_a_workers_start_drops_workers_stopped_over_a_week_ago(store, raw, clock):
    add_stopped(raw, 50, iso(clock.now() - 8 * DAY), "old-")
    add_stopped(raw, 5, iso(clock.now() - 6 * DAY), "recent-")
    raw.execute("INSERT INTO workers (worker_id, host, pid, concurrency, started_at, heartbeat_at) "
                "VALUES ('crashed', 'h', 1, 1, ?, ?)", (iso(clock.now() - 30 * DAY),) * 2)
    store.write(workers.register_worker_txn, "me", 123, None, 4, clock.now_iso())
    kept = {r[0] for r in raw.execute("SELECT worker_id FROM workers")}
    assert kept == {"me", "crashed"} | {f"recent-{i}" for i in range(5)}


def test_upkeep_finds_live_workers_without_reading_the_stopped_ones(store, raw, clock, sqlite_only):
    def ops() -> int:
        count = [0]

        def tick() -> int:
            count[0] += 1
            return 0

        def txn(conn):
            conn.set_progress_handler(tick, 1)
            try:
                return workers.live_workers_on_host(conn, host_identity())
            finally:
                conn.set_progress_handler(None, 1)
        assert [w for w, *_ in store.read(txn)] == ["me"]
        return count[0]

    store.write(workers.register_worker_txn, "me", 123, None, 4, clock.now_iso())
    few = ops()
    add_stopped(raw, 3000, iso(clock.now() - DAY), "stopped-")
    assert ops() <= few + 20
