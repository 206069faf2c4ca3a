"""`durableflow migrate-store SQLITE_FILE postgresql://...` through the real CLI (a subprocess):
a history made by the engine on SQLite is copied, every row of every table compared with the
source here (independently of the command's own check), then a worker on PostgreSQL finishes
the run that was waiting, exactly once. And each refusal: one line, exit 1, nothing written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durableflow import Engine, procs
from durableflow.clock import iso
from tests.integration.fixtures.df_it_support import conn, node, py, wait_until, wf

psycopg = pytest.importorskip("psycopg")

UNDO = "output = 'undid ' + ctx.input['nodeId']"


def approval() -> dict:
    return wf("approve", py("ask", "output = 'please'"),
              node("approval", "WaitForSignal", signal="approved"),
              py("ship", "output = {'by': ctx.input['by']}"),
              connections=[conn("ask", "approval"), conn("approval", "ship")])


def timed() -> dict:
    return wf("nightly", node("tick", "Timer", cron="0 2 * * *"), py("work", "output = ctx.scheduled_at"),
              connections=[conn("tick", "work")])


def make_history(path: Path) -> dict:
    """Runs of every kind, made by the engine: completed, failed (compensated), a ForEach with its
    child runs, a signal delivered, one run waiting for its signal, a schedule with a fire."""
    engine = Engine(path)
    try:
        ids = {}
        # A diamond: `d` joins the outputs of `b` and `c` (joins, join_inputs).
        ids["completed"] = engine.execute(wf("diamond", node("a", "Noop"), py("b", "output = {'got': ctx.input}"),
                                             py("c", "output = 2"), py("d", "output = ctx.input"),
                                             connections=[conn("a", "b"), conn("a", "c"), conn("b", "d"),
                                                          conn("c", "d")]), {"x": 1}, timeout=60).run_id
        saga = wf("saga", py("reserve", "output = 1", compensationNodeId="release"),
                  py("charge", "raise RuntimeError('card declined')"), py("release", UNDO),
                  connections=[conn("reserve", "charge")])
        failed = engine.execute(saga, timeout=60)
        assert failed.status == "failed"
        ids["failed"] = failed.run_id
        each = wf("each", node("each", "ForEach", items="input.numbers", maxParallelism=2,
                               body={"nodes": [py("tenfold", "output = ctx.input['item'] * 10")]}))
        ids["foreach"] = engine.execute(each, {"numbers": [1, 2, 3]}, timeout=60).run_id
        signalled = engine.start(approval())
        engine.signal(signalled, "approved", {"by": "early"})
        ids["waiting"] = engine.start(approval())
        engine.register(timed())
        engine.trigger_schedule("nightly:tick")
        with engine.worker(concurrency=2):
            wait_until(lambda: engine.get_run(signalled).status == "completed"
                       and engine.get_run(ids["waiting"]).node("approval").status == "waiting"
                       and all(r["status"] == "completed" for r in engine.runs(workflow_id="nightly")),
                       timeout=60, what="the signalled and scheduled runs to finish, the other to wait")
        ids["signalled"] = signalled
        return ids
    finally:
        engine.close()


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("DURABLEFLOW_DB", None)
    return subprocess.run([sys.executable, "-m", "durableflow", *args], capture_output=True, text=True,
                          timeout=180, env=env)


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' AND name != 'schema_version' ORDER BY name")]


def pg_rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as db:
        return [tuple(r) for r in db.execute(sql).fetchall()]


def pg_count_all(dsn: str) -> int:
    with psycopg.connect(dsn) as db:
        names = [r[0] for r in db.execute("SELECT table_name FROM information_schema.tables WHERE "
                                          "table_schema = 'public' AND table_type = 'BASE TABLE' "
                                          "AND table_name != 'schema_version'")]
        return sum(db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names)


@pytest.fixture
def history(tmp_path):
    path = tmp_path / "old.db"
    return path, make_history(path)


def test_a_sqlite_history_moves_with_every_row_and_a_postgres_worker_finishes_the_waiting_run(history, pg_dsn):
    path, ids = history
    done = cli("migrate-store", str(path), pg_dsn)
    assert done.returncode == 0, done.stderr
    assert "check: passed" in done.stdout
    names = tables(path)
    assert {"runs", "events", "messages", "node_instances", "signals", "schedules", "schedule_fires",
            "workflows", "workers", "loop_items", "joins", "join_inputs", "leases", "dead_letters", "reruns",
            "rate_limits", "circuit_breakers", "limit_waiters"} <= set(names)

    # Every column of every row, compared here, not only by the command.
    src = sqlite3.connect(path)
    with psycopg.connect(pg_dsn) as pg:
        for table in names:
            cols = [r[1] for r in src.execute(f"SELECT * FROM pragma_table_info('{table}')")]
            keys = [r[1] for r in sorted(src.execute(f"SELECT * FROM pragma_table_info('{table}')"),
                                         key=lambda r: r[5]) if r[5]] or cols
            select = ", ".join(f'"{c}"' for c in cols)
            order = " ORDER BY " + ", ".join(f'"{c}"' for c in keys)
            want = [tuple(r) for r in src.execute(f'SELECT {select} FROM "{table}"{order}')]
            got = [tuple(r) for r in pg.execute(f'SELECT {select} FROM "{table}"{order}')]
            assert got == want, table
            assert f"{table} " in done.stdout or table in done.stdout
        # runs.rowid keeps SQLite's rowid (the UI's cursors and runs_latest read it).
        assert [tuple(r) for r in pg.execute("SELECT rowid, run_id FROM runs ORDER BY rowid")] == \
            [tuple(r) for r in src.execute("SELECT rowid, run_id FROM runs ORDER BY rowid")]
        newest_seq = src.execute("SELECT max(seq) FROM events").fetchone()[0]
        assert pg.execute("SELECT count(*) FROM joins").fetchone()[0] >= 1
    src.close()
    kinds = pg_rows(pg_dsn, "SELECT run_id, status FROM runs WHERE parent_run_id IS NULL")
    status = dict(kinds)
    assert status[ids["completed"]] == "completed" and status[ids["failed"]] == "failed"
    assert status[ids["foreach"]] == "completed" and status[ids["waiting"]] == "running"
    assert pg_rows(pg_dsn, f"SELECT count(*) FROM node_instances WHERE run_id = '{ids['failed']}' "
                           "AND compensates = 'reserve' AND status = 'completed'") == [(1,)]

    # The waiting run goes on on PostgreSQL: a signal, then a worker process finishes it, once.
    engine = Engine(pg_dsn)
    try:
        engine.signal(ids["waiting"], "approved", {"by": "pg"})
        finished = cli("--db", pg_dsn, "worker", "--until-idle", "--max-wait", "30s")
        assert finished.returncode == 0, finished.stderr
        run = engine.get_run(ids["waiting"])
        assert run.status == "completed" and run.outputs == {"ship": {"by": "pg"}}
    finally:
        engine.close()
    assert pg_rows(pg_dsn, f"SELECT count(*) FROM node_instances WHERE run_id = '{ids['waiting']}' "
                           "AND node_id = 'ship'") == [(1,)]
    assert pg_rows(pg_dsn, f"SELECT count(*) FROM events WHERE run_id = '{ids['waiting']}' "
                           "AND type = 'node.completed'") == [(3,)]
    # New events are numbered after the copied ones (the identity sequences moved past them).
    assert pg_rows(pg_dsn, f"SELECT min(seq) > {newest_seq} FROM events WHERE run_id = '{ids['waiting']}' "
                           f"AND seq > {newest_seq}")[0][0] is True


def test_a_target_with_rows_is_refused_and_left_as_it_was(history, pg_dsn):
    path, _ = history
    engine = Engine(pg_dsn)
    engine.execute(wf("there", node("a", "Noop")), timeout=60)
    engine.close()
    before = pg_count_all(pg_dsn)
    done = cli("migrate-store", str(path), pg_dsn)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "the target is not empty (table " in done.stderr
    assert pg_count_all(pg_dsn) == before


def test_a_source_with_a_live_worker_or_a_lease_in_force_is_refused(history, pg_dsn):
    path, ids = history
    engine = Engine(path)
    # A worker process that is alive: this test's own process, registered as a worker here.
    engine.store.write(lambda c: c.execute(
        "UPDATE workers SET stopped_at = NULL, pid = ?, pid_started = NULL, host_id = ? WHERE worker_id = "
        "(SELECT min(worker_id) FROM workers)", (os.getpid(), procs.host_identity())))
    engine.close()
    done = cli("migrate-store", str(path), pg_dsn)
    assert done.returncode == 1 and "is still running; stop the workers first" in done.stderr
    assert pg_count_all(pg_dsn) == 0

    # A worker of another host (its pid means nothing here) whose heartbeat is recent.
    engine = Engine(path)
    engine.store.write(lambda c: c.execute(
        "UPDATE workers SET host_id = 'another-host', pid = 1, heartbeat_at = ? WHERE stopped_at IS NULL",
        (iso(time.time()),)))
    engine.close()
    done = cli("migrate-store", str(path), pg_dsn)
    assert done.returncode == 1 and "is still running; stop the workers first" in done.stderr
    assert pg_count_all(pg_dsn) == 0

    engine = Engine(path)
    engine.store.write(lambda c: c.execute("UPDATE workers SET stopped_at = started_at"))
    engine.start(wf("later", node("a", "Noop")))
    claimed = engine.store.claim("someone", 1, lease_seconds=600)
    assert claimed, "the new run has a message to lease"
    engine.close()
    done = cli("migrate-store", str(path), pg_dsn)
    assert done.returncode == 1 and "lease(s) in force (worker someone)" in done.stderr
    assert done.stderr.count("\n") == 1
    assert pg_count_all(pg_dsn) == 0


def test_not_a_durableflow_database_a_newer_one_and_a_bad_target_are_refused(tmp_path, history, pg_dsn):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    done = cli("migrate-store", str(other), pg_dsn)
    assert done.returncode == 1 and "not a durableflow database" in done.stderr

    text = tmp_path / "text.db"
    text.write_text("hello, not sqlite " * 100)
    done = cli("migrate-store", str(text), pg_dsn)
    assert done.returncode == 1 and "not a SQLite database" in done.stderr

    path, _ = history
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 'x')")
    done = cli("migrate-store", str(path), pg_dsn)
    assert done.returncode == 1 and "schema version 99 is newer" in done.stderr
    assert pg_count_all(pg_dsn) == 0

    done = cli("migrate-store", str(path), str(tmp_path / "new.db"))
    assert done.returncode == 1 and "the target must be a postgresql:// DSN" in done.stderr


def test_the_password_of_the_dsn_is_never_printed(history, pg_cluster_session):
    path, _ = history
    from tests.pg_cluster import PASSWORD, PASSWORD_ROLE
    dsn = pg_cluster_session.dsn("postgres", user=PASSWORD_ROLE, password="wrong-" + PASSWORD)
    done = cli("migrate-store", str(path), dsn)
    assert done.returncode == 1
    assert "wrong-" + PASSWORD not in done.stderr + done.stdout and ":***@" in done.stderr
    done = cli("migrate-store", str(path), "mysql://app:" + PASSWORD + "@db/flows")
    assert done.returncode == 1 and "mysql://app:***@db/flows: the target must be a postgresql:// DSN" in done.stderr
    assert PASSWORD not in done.stderr
