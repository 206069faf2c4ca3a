"""schema.sql vs migrations, atomic migrations, newer databases, concurrent openers, the wheel."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from durableflow.errors import SchemaVersionError, StorageError
from durableflow.storage import Store
from durableflow.storage import migrate as migrator
from durableflow.storage.connection import connect


@pytest.fixture
def backend():
    """SQLite's own file, PRAGMAs, planner or migration series: these tests stay SQLite's (the
    PostgreSQL schema and its migrations are checked by tests/postgres)."""
    return "sqlite"


REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).parent / "helpers"
PYTHON = sys.executable
SCHEMA_SQL = REPO / "schema.sql"
LATEST = migrator.available()[-1].version
NEXT = f"{LATEST + 1:04d}"  # the number a test's extra migration takes


def normalized(sql: str | None) -> str | None:
    if sql is None:
        return None
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\s+", " ", sql).strip()
    return re.sub(r"\s*([(),])\s*", r"\1", sql)


def schema_of(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        # sqlite_sequence stays behind once 0001's AUTOINCREMENT made it (SQLite refuses to drop
        # it); it is SQLite's bookkeeping, empty and unused after 0002, not part of our schema.
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                            "WHERE name <> 'sqlite_sequence'").fetchall()
    finally:
        conn.close()
    return sorted((t, n, tbl, normalized(sql)) for t, n, tbl, sql in rows)


def build_from_schema_sql(path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA_SQL.read_text(encoding="utf-8"))
    finally:
        conn.close()


def file_state(path) -> tuple:
    """The bytes of the database and the names of the files beside it (-wal, -shm, -journal)."""
    return (hashlib.sha256(path.read_bytes()).hexdigest(),
            sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)))


def migrations_folder(tmp_path, **extra: str):
    """A root holding a copy of the shipped migrations plus `extra` ({file name: SQL})."""
    root = tmp_path / "sqlroot"
    (root / "migrations").mkdir(parents=True)
    for m in migrator.available():
        shutil.copy(m.path, root / "migrations" / m.path.name)
    for name, sql in extra.items():
        (root / "migrations" / name).write_text(sql, encoding="utf-8")
    return migrator.available(root)


def tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}


# --- schema.sql is the truth ---------------------------------------------------------------------

def test_migrations_build_exactly_the_schema_of_schema_sql(tmp_path, clock):
    from_schema, from_migrations = tmp_path / "schema.db", tmp_path / "migrated.db"
    build_from_schema_sql(from_schema)
    Store(from_migrations, clock=clock).close()
    expected, actual = schema_of(from_schema), schema_of(from_migrations)
    assert [r[:3] for r in actual] == [r[:3] for r in expected]
    for want, got in zip(expected, actual):
        assert got == want, f"{want[0]} {want[1]} differs between schema.sql and migrations/"


def test_schema_sql_and_migrations_define_the_columns_users_rely_on(tmp_path, clock):
    path = tmp_path / "db"
    Store(path, clock=clock).close()
    conn = sqlite3.connect(path)
    try:
        cols = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
                for t in ("messages", "leases", "events", "runs", "node_instances", "workflows")}
    finally:
        conn.close()
    assert set(cols["messages"]) >= {"id", "run_id", "kind", "target_node_id", "payload", "status",
                                     "priority", "visible_at", "attempts", "created_at"}
    assert cols["leases"][:5] == ["message_id", "worker_id", "token", "acquired_at", "expires_at"]
    assert cols["events"] == ["seq", "run_id", "node_id", "type", "data", "at"]


def test_a_new_database_records_every_migration(store, clock):
    rows = store.read(lambda c: c.execute("SELECT version, name, applied_at FROM schema_version").fetchall())
    assert rows == [(m.version, m.name, clock.now_iso()) for m in migrator.available()]
    assert store.schema_version() == LATEST


def test_reopening_migrates_nothing(db_path, clock):
    Store(db_path, clock=clock).close()
    conn = connect(db_path)
    try:
        assert migrator.migrate(conn, "later", migrator.available()) == []
    finally:
        conn.close()


# --- one migration, one transaction ------------------------------------------------------------

def test_the_version_row_commits_in_the_migration_transaction(tmp_path):
    conn = connect(tmp_path / "db")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        migrator.migrate(conn, "2027-01-01T00:00:00.000Z")
    finally:
        conn.set_trace_callback(None)
        conn.close()
    begin = statements.index("BEGIN IMMEDIATE")
    commit = statements.index("COMMIT", begin)   # reads before it run in their own BEGIN ... COMMIT
    inside = statements[begin + 1:commit]
    assert any("CREATE TABLE messages" in s for s in inside)
    assert inside[-1].startswith("INSERT INTO schema_version")
    assert "COMMIT" not in inside and "BEGIN" not in " ".join(inside)


def test_0002_keeps_events_numbered_upward_and_marks_finished_messages(db_path, clock):
    # A version-1 database with history, whose newest events were deleted (as prune did then).
    conn = connect(db_path)
    migrator.migrate(conn, clock.now_iso(), migrator.available()[:1])
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO events (run_id, type, at) VALUES (?, ?, ?)",
                     [(f"r{i}", "run.running", "2026-01-01T00:00:00.000Z") for i in range(10)])
    conn.execute("DELETE FROM events WHERE seq > 7")
    conn.execute("INSERT INTO messages (kind, status, visible_at, created_at) "
                 "VALUES ('task', 'acked', 'x', '2026-01-01T00:00:00.000Z')")
    conn.execute("INSERT INTO messages (kind, status, visible_at, created_at) "
                 "VALUES ('task', 'ready', 'x', '2026-01-01T00:00:00.000Z')")
    conn.execute("COMMIT")
    conn.close()

    store = Store(db_path, clock=clock)
    store.close()
    db = sqlite3.connect(db_path)
    try:
        evs = db.execute("SELECT seq, run_id, type FROM events ORDER BY seq").fetchall()
        assert evs[:7] == [(i + 1, f"r{i}", "run.running") for i in range(7)]
        assert evs[7][:1] + evs[7][2:] == (10, "history.pruned")  # 8..10 stay used
        db.execute("INSERT INTO events (type, at) VALUES ('x', 'y')")
        assert db.execute("SELECT max(seq) FROM events").fetchone()[0] == 11
        assert db.execute("SELECT status, finished_at IS NULL FROM messages ORDER BY id").fetchall() == [
            ("acked", 0), ("ready", 1)]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def _v2_database_with_rows(db_path, clock) -> None:
    """A database at version 2 holding a parent and a child run, nodes, messages, a lease, a dead
    letter and events: everything that points at the tables 0003 rebuilds."""
    conn = connect(db_path)
    migrator.migrate(conn, clock.now_iso(), migrator.available()[:2])
    t = "2026-01-01T00:00:00.000Z"
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO workflows VALUES ('wf', 1, 'c', '{}', NULL, ?)", (t,))
    for run, parent in (("p", None), ("c", "p")):
        conn.execute("INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, status, "
                     "created_at, idempotency_key) VALUES (?, 'wf', 1, ?, 'running', ?, ?)",
                     (run, parent, t, f"key-{run}"))
    conn.execute("INSERT INTO node_instances (run_id, node_id, status, created_at) VALUES ('p', 'a', 'completed', ?)", (t,))
    for i, status in enumerate(("leased", "dead", "ready")):
        conn.execute("INSERT INTO messages (id, run_id, kind, status, visible_at, created_at) "
                     "VALUES (?, 'p', 'node', ?, ?, ?)", (i + 1, status, t, t))
    conn.execute("INSERT INTO leases VALUES (1, 'w', 'tok', ?, ?)", (t, t))
    conn.execute("INSERT INTO dead_letters (message_id, kind, attempts, created_at) VALUES (2, 'node', 5, ?)", (t,))
    conn.execute("INSERT INTO circuit_breakers (key, status, updated_at) VALUES ('k', 'open', ?)", (t,))
    conn.execute("INSERT INTO events (run_id, type, at) VALUES ('p', 'run.running', ?)", (t,))
    conn.execute("COMMIT")
    conn.close()


def test_0003_rebuilds_tables_keeping_rows_references_and_cascades(db_path, clock):
    _v2_database_with_rows(db_path, clock)
    # circuit_breakers is left out: 0003 rebuilt it with its rows, and 0008 makes it again (the
    # engine had never written it).
    tables = ("runs", "node_instances", "messages", "leases", "dead_letters")
    old = sqlite3.connect(db_path)
    # The columns each table had then: later migrations may add some, which 0003 did not touch.
    columns = {t: ", ".join(r[1] for r in old.execute(f"PRAGMA table_info({t})")) for t in tables}
    before = {t: old.execute(f"SELECT {columns[t]} FROM {t} ORDER BY 1").fetchall() for t in tables}
    old.close()
    with Store(db_path, clock=clock) as store:
        assert store.schema_version() == LATEST
        conn = store._writer
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA legacy_alter_table").fetchone()[0] == 0
        for table, rows in before.items():
            assert conn.execute(f"SELECT {columns[table]} FROM {table} ORDER BY 1").fetchall() == rows, table
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '%before_0003%'").fetchall()
        assert conn.execute("SELECT count(*) FROM run_summary").fetchone()[0] == 2
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The references still hold and still cascade.
        with pytest.raises(StorageError, match="FOREIGN KEY"):
            store.write(lambda c: c.execute("INSERT INTO leases VALUES (99, 'w', 't', 'x', 'y')"))
        with pytest.raises(StorageError, match="CHECK"):
            store.write(lambda c: c.execute("UPDATE runs SET status = 'sleeping' WHERE run_id = 'p'"))
        store.write(lambda c: c.execute("DELETE FROM runs WHERE run_id = 'p'"))
        for table in ("runs", "node_instances", "messages", "leases", "dead_letters"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
    assert schema_of(db_path) == schema_of_fresh(db_path.parent / "fresh.db", clock)


def schema_of_fresh(path, clock):
    Store(path, clock=clock).close()
    return schema_of(path)


def test_a_rebuild_that_would_break_a_foreign_key_is_refused_and_undone(db_path, clock):
    _v2_database_with_rows(db_path, clock)
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO leases VALUES (77, 'w', 'tok', 'x', 'y')")  # no message 77
    conn.close()
    before = schema_of(db_path)
    with pytest.raises(StorageError) as exc:
        Store(db_path, clock=clock)
    message = str(exc.value)
    assert "0003_" in message and "version 2" in message and "leases" in message and "\n" not in message
    assert schema_of(db_path) == before
    check = connect(db_path)
    try:
        assert migrator.current_version(check) == 2
    finally:
        check.close()


def test_a_refused_version_row_undoes_the_migration(tmp_path, db_path, clock):
    Store(db_path, clock=clock).close()
    migrations = migrations_folder(tmp_path, **{f"{NEXT}_refused.sql": """
        CREATE TABLE extra (a INTEGER);
        CREATE TRIGGER refuse BEFORE INSERT ON schema_version BEGIN SELECT RAISE(ABORT, 'no version'); END;
    """})
    conn = connect(db_path)
    try:
        with pytest.raises(StorageError, match="no version"):
            migrator.migrate(conn, clock.now_iso(), migrations)
        assert migrator.current_version(conn) == LATEST
        assert not {"extra", "refuse"} & tables(conn)
    finally:
        conn.close()


def test_a_failing_migration_leaves_the_version_and_no_partial_table(tmp_path, db_path, clock):
    Store(db_path, clock=clock).close()
    migrations = migrations_folder(tmp_path, **{f"{NEXT}_half_way.sql": """
        -- a comment; with a semicolon
        CREATE TABLE extra (a INTEGER, b TEXT DEFAULT 'x;y');
        INSERT INTO extra (a) VALUES (1);
        CREATE INDEX extra_a ON extra (a);
        ALTER TABLE messages ADD COLUMN extra_col TEXT;
        INSERT INTO no_such_table VALUES (1);
        CREATE TABLE never (x);
    """})
    before = schema_of(db_path)
    conn = connect(db_path)
    try:
        with pytest.raises(StorageError) as exc:
            migrator.migrate(conn, clock.now_iso(), migrations)
        message = str(exc.value)
        assert "\n" not in message
        assert f"{NEXT}_half_way.sql failed" in message and f"version {LATEST}" in message and "no_such_table" in message
        assert not conn.in_transaction
        assert migrator.current_version(conn) == LATEST
    finally:
        conn.close()
    assert schema_of(db_path) == before

    # Fixed, it applies, and Store-level checks still accept the database.
    (migrations[-1].path).write_text("CREATE TABLE extra (a INTEGER);\n", encoding="utf-8")
    conn = connect(db_path)
    try:
        assert migrator.migrate(conn, clock.now_iso(), migrations) == [LATEST + 1]
        assert migrator.current_version(conn) == LATEST + 1 and "extra" in tables(conn)
    finally:
        conn.close()


def test_a_migration_file_that_cannot_be_read_leaves_no_transaction_open(tmp_path, db_path, clock):
    Store(db_path, clock=clock).close()
    migrations = migrations_folder(tmp_path, **{f"{NEXT}_unterminated.sql": "CREATE TABLE extra (a INTEGER)"})
    conn = connect(db_path)
    try:
        with pytest.raises(StorageError, match="unterminated"):
            migrator.migrate(conn, clock.now_iso(), migrations)
        assert not conn.in_transaction
        assert migrator.current_version(conn) == LATEST
    finally:
        conn.close()


def test_migrations_must_be_numbered_without_gaps(tmp_path):
    root = tmp_path / "r"
    (root / "migrations").mkdir(parents=True)
    for name in ("0001_a.sql", "0003_c.sql"):
        (root / "migrations" / name).write_text("SELECT 1;\n")
    with pytest.raises(StorageError, match="without gaps"):
        migrator.available(root)


def test_split_statements_keeps_trigger_bodies_and_strings_whole():
    script = """
    -- leading comment;
    CREATE TABLE t (a TEXT DEFAULT 'a;b');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET a = 'x;' WHERE rowid = NEW.rowid;
        SELECT 1;
    END;
    -- trailing comment
    """
    stmts = migrator.split_statements(script)
    assert len(stmts) == 2 and stmts[1].startswith("CREATE TRIGGER") and stmts[1].endswith("END;")


# --- a database from a newer durableflow ----------------------------------------------------------

@pytest.mark.parametrize("readonly", [False, True])
def test_a_newer_database_is_refused_untouched(tmp_path, clock, readonly):
    path = tmp_path / "newer.db"
    build_from_schema_sql(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (1, 'initial', 'then'), (999, 'future', 'later')")
    conn.close()
    before = file_state(path)
    assert path.read_bytes()[18:20] == b"\x01\x01"  # rollback journal, not WAL
    with pytest.raises(SchemaVersionError) as exc:
        Store(path, clock=clock, readonly=readonly)
    message = str(exc.value)
    assert "\n" not in message and "999" in message and str(LATEST) in message and "not changed" in message
    assert file_state(path) == before  # same bytes, no -wal/-shm/-journal: no WAL switch either


def test_a_newer_wal_database_is_refused_with_its_bytes_unchanged(db_path, clock):
    Store(db_path, clock=clock).close()
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', 'later')")
    conn.close()
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()
    with pytest.raises(SchemaVersionError):
        Store(db_path, clock=clock)
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before


# --- several processes open a new file at once -----------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3, 4])
def test_concurrent_opening_migrates_exactly_once(tmp_path, helper_env, processes):
    for round_ in range(3):
        path = tmp_path / f"race{round_}.db"
        start_at = time.time() + 0.5  # after every interpreter has imported durableflow
        procs = [subprocess.Popen([PYTHON, str(HELPERS / "open_store.py"), str(path), str(start_at)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=helper_env(), cwd=tmp_path)
                 for _ in range(processes)]
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, (out, err)
            reports.append(json.loads(out))
        assert [r["version"] for r in reports] == [LATEST] * processes
        applied = sorted(v for r in reports for v in r["applied"])
        assert applied == list(range(1, LATEST + 1)), reports
        conn = sqlite3.connect(path)
        try:
            assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")] == applied
        finally:
            conn.close()


# --- a plain (non-editable) install can create a database ----------------------------------------

@pytest.mark.slow
def test_a_built_wheel_ships_the_sql_and_creates_a_database(tmp_path, helper_env):
    wheels = tmp_path / "wheels"
    subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                    "-q", "-w", str(wheels), str(REPO)], check=True, timeout=25, capture_output=True,
                   env=helper_env(PIP_DISABLE_PIP_VERSION_CHECK="1"), cwd=tmp_path)
    [wheel] = wheels.glob("durableflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {"durableflow/_sql/schema.sql", "durableflow/storage/sqlite/queue.sql",
               "durableflow/definitions/schema.json"}
    shipped |= {f"durableflow/_sql/migrations/{m.path.name}" for m in migrator.available()}
    assert "durableflow/_sql/migrations/0001_initial.sql" in shipped
    assert shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"

    site = tmp_path / "site"
    subprocess.run([PYTHON, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, timeout=25, capture_output=True,
                   env=helper_env(PIP_DISABLE_PIP_VERSION_CHECK="1"), cwd=tmp_path)
    probe = (
        "import json, sys, durableflow\n"
        "from durableflow.storage import Store, NewMessage\n"
        "from durableflow.storage import migrate\n"
        "with Store(sys.argv[1]) as s:\n"
        "    s.enqueue(NewMessage('task'))\n"
        "    print(json.dumps({'file': durableflow.__file__, 'root': str(migrate.sql_root()),\n"
        "                      'version': s.schema_version(), 'counts': s.queue_counts()}))\n"
    )
    run = subprocess.run([PYTHON, "-c", probe, str(tmp_path / "fresh.db")], capture_output=True, text=True,
                         timeout=25, env=helper_env(PYTHONPATH=str(site)), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["file"].startswith(str(site)) and out["root"].startswith(str(site))
    assert out["version"] == LATEST and out["counts"]["ready"] == 1
