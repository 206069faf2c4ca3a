"""PostgreSQL's SQL on a real server: postgres/schema.sql against postgres/migrations/, the same
tables, columns, views, indexes and status words as SQLite's schema, and every statement of
durableflow/storage/postgres/*.sql (the same names as SQLite's, family by family) prepared, run,
and, for the ones that run per claim, node or run, answered from an index.

These tests read the .sql files themselves (with their own `?`/`:name` rewrite), so they check
the SQL apart from the Python that loads it; the backend-parametrized suites run it for real.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

from durableflow.storage.statements import FAMILIES, load
from tests import pg_cluster
from tests.integration.fixtures.df_it_support import wait_until

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[test]')")
from psycopg import errors as pg_errors  # noqa: E402
from psycopg.pq import ExecStatus  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PG_SCHEMA = REPO / "postgres" / "schema.sql"
PG_MIGRATIONS = REPO / "postgres" / "migrations"
SQLITE_SCHEMA = REPO / "schema.sql"
PG_STATEMENTS = REPO / "durableflow" / "storage" / "postgres"
SQLITE_STATEMENTS = REPO / "durableflow" / "storage" / "sqlite"
NOW = "2027-01-15T08:00:00.000Z"


# --- SQLite's parameter syntax as PostgreSQL's ---------------------------------------------------

_TOKENS = re.compile(
    r"""('(?:[^']|'')*')            # a string literal
      | ("(?:[^"]|"")*")            # a quoted identifier
      | (--[^\n]*)                  # a comment
      | (::)                        # a cast
      | (\?)                        # a positional parameter
      | :([A-Za-z_][A-Za-z0-9_]*)   # a named parameter
      | (%)                         # a literal percent sign
    """, re.VERBOSE)


def numbered(sql: str) -> tuple[str, list[str | int]]:
    """`sql` with $1, $2, ... and what each number stands for (a position or a name)."""
    order: list[str | int] = []

    def one(m: re.Match) -> str:
        if m.group(5):
            order.append(len(order))
            return f"${len(order)}"
        if m.group(6):
            if m.group(6) not in order:
                order.append(m.group(6))
            return f"${order.index(m.group(6)) + 1}"
        return m.group(0)

    return _TOKENS.sub(one, sql), order


def for_psycopg(sql: str) -> str:
    def one(m: re.Match) -> str:
        if m.group(1):   # psycopg reads % inside quotes too
            return m.group(1).replace("%", "%%")
        if m.group(5):
            return "%s"
        if m.group(6):
            return f"%({m.group(6)})s"
        if m.group(7):
            return "%%"
        return m.group(0)

    return _TOKENS.sub(one, sql)


def test_the_rewrite_keeps_casts_literals_and_repeated_names():
    sql = "SELECT ':x', ?, :a::text, :a, '%' WHERE b = ?"
    assert numbered(sql) == ("SELECT ':x', $1, $2::text, $2, '%' WHERE b = $3", [0, "a", 2])
    assert for_psycopg(sql) == "SELECT ':x', %s, %(a)s::text, %(a)s, '%%' WHERE b = %s"


# --- databases -----------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(pg_cluster.skip_reason() is not None,
                                reason=pg_cluster.skip_reason() or "")


def connect(dsn: str):
    return psycopg.connect(dsn, autocommit=True)


def migration_files() -> list[Path]:
    files = sorted(p for p in PG_MIGRATIONS.glob("*.sql") if re.match(r"^\d{4}_\w+\.sql$", p.name))
    assert [int(p.name[:4]) for p in files] == list(range(1, len(files) + 1)), \
        "postgres/migrations must be numbered 0001, 0002, ... without gaps"
    return files


def apply_migrations(conn) -> None:
    """Each file as one script in its own transaction, then its schema_version row."""
    for path in migration_files():
        with conn.transaction():
            conn.execute(path.read_text(encoding="utf-8"))
            conn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                         (int(path.name[:4]), path.stem[5:], NOW))


def apply_schema(conn) -> None:
    with conn.transaction():
        conn.execute(PG_SCHEMA.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def module_db(pg_cluster_session):
    """One database built from postgres/schema.sql, shared by the statement tests (each of which
    rolls back what it did)."""
    name = pg_cluster_session.new_database("sql")
    conn = connect(pg_cluster_session.dsn(name))
    try:
        apply_schema(conn)
        yield conn
    finally:
        conn.close()
        pg_cluster_session.drop_database(name)


# --- the schema ----------------------------------------------------------------------------------

CATALOG = {
    "relations": """
        SELECT relname, relkind FROM pg_class
        WHERE relnamespace = current_schema()::regnamespace ORDER BY relname""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               coalesce(co.collname, ''), coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'v')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum""",
    "information_schema.columns": """
        SELECT table_name, column_name, data_type, is_nullable, collation_name, column_default,
               is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = current_schema()
        ORDER BY table_name, ordinal_position""",
    "constraints": """
        SELECT c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
        FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
        WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() ORDER BY 1, 2""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = current_schema() ORDER BY 1""",
}


def catalog(conn) -> dict[str, list[tuple]]:
    return {what: conn.execute(sql).fetchall() for what, sql in CATALOG.items()}


def test_migrations_build_exactly_the_schema_of_schema_sql(pg_cluster_session):
    from_schema = pg_cluster_session.new_database("schema")
    from_migrations = pg_cluster_session.new_database("migrated")
    try:
        with connect(pg_cluster_session.dsn(from_schema)) as a, \
                connect(pg_cluster_session.dsn(from_migrations)) as b:
            apply_schema(a)
            apply_migrations(b)
            expected, actual = catalog(a), catalog(b)
            assert expected["relations"], "schema.sql made nothing"
            for what in CATALOG:
                assert actual[what] == expected[what], \
                    f"{what} differ between postgres/schema.sql and postgres/migrations/"
            assert b.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(migration_files())
    finally:
        pg_cluster_session.drop_database(from_schema)
        pg_cluster_session.drop_database(from_migrations)


def sqlite_schema():
    conn = sqlite3.connect(":memory:")
    conn.executescript(SQLITE_SCHEMA.read_text(encoding="utf-8"))
    return conn


def test_the_same_tables_columns_views_and_indexes_as_sqlite(module_db):
    lite = sqlite_schema()
    lite_rel = {n: t for t, n in lite.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view')")}
    lite_cols = {n: [r[1] for r in lite.execute(f"PRAGMA table_info({n})")] for n in lite_rel}
    lite_indexes = {n for (n,) in lite.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'")}

    pg_rel = {n: {"r": "table", "v": "view"}[k] for n, k in module_db.execute(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
        "AND relkind IN ('r', 'v')")}
    pg_cols: dict[str, list[str]] = {}
    for table, column in module_db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"):
        pg_cols.setdefault(table, []).append(column)
    # Indexes of their own (not those behind a primary key or UNIQUE, which SQLite names itself).
    pg_indexes = {n for (n,) in module_db.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE i.relnamespace = current_schema()::regnamespace "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)")}

    assert pg_rel == lite_rel
    # runs.rowid is SQLite's hidden rowid made a column; every other column is SQLite's, in order.
    assert pg_cols.pop("runs") == lite_cols.pop("runs") + ["rowid"]
    assert pg_cols == lite_cols
    assert pg_indexes == lite_indexes


def test_checks_allow_the_same_status_words_as_sqlite(module_db):
    lite = sqlite_schema()
    words = re.compile(r"'([a-z_]+)'")
    lite_checks = {}
    for name, sql in lite.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"):
        found = re.search(r"CHECK \((.*?)\)", sql, re.S)
        if found:
            lite_checks[name] = sorted(words.findall(found.group(1)))
    pg_checks = {t: sorted(words.findall(d)) for t, d in module_db.execute(
        "SELECT c.relname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
        "JOIN pg_class c ON c.oid = con.conrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace AND con.contype = 'c'")}
    assert lite_checks and pg_checks == lite_checks


def test_a_status_outside_the_lifecycle_is_refused(module_db):
    with pytest.raises(pg_errors.CheckViolation):
        with module_db.transaction():
            module_db.execute("INSERT INTO messages (kind, status, visible_at, created_at) "
                              "VALUES ('task', 'lost', %s, %s)", (NOW, NOW))


def test_views_give_durations_in_seconds(module_db):
    try:
        with module_db.transaction():
            module_db.execute("INSERT INTO workflows VALUES ('wf', 1, 'c', '{}', NULL, %s)", (NOW,))
            module_db.execute(
                "INSERT INTO runs (run_id, workflow_id, workflow_version, status, created_at, started_at, "
                "finished_at) VALUES ('r', 'wf', 1, 'completed', %s, '2027-01-15T08:00:00.000Z', "
                "'2027-01-15T08:01:01.250Z')", (NOW,))
            module_db.execute(
                "INSERT INTO node_instances (run_id, node_id, status, created_at, started_at, finished_at) "
                "VALUES ('r', 'a', 'completed', %s, '2027-01-15T08:00:00.000Z', '2027-01-15T08:00:00.125Z'), "
                "('r', 'a', 'failed', %s, NULL, NULL)", (NOW, NOW))
            summary = module_db.execute(
                "SELECT duration_s, nodes_completed, attempts_failed, nodes_skipped FROM run_summary").fetchone()
            history = module_db.execute("SELECT status, duration_s FROM node_history ORDER BY status").fetchall()
            raise _Rollback
    except _Rollback:
        pass
    assert summary == (61.25, 1, 1, 0)
    assert history == [("completed", 0.125), ("failed", None)]


class _Rollback(Exception):
    """Leaves a `with conn.transaction()` block by rolling back what it wrote."""


# --- the statements ------------------------------------------------------------------------------

def statements(folder: Path) -> dict[str, dict[str, str]]:
    return {family: load(folder / f"{family}.sql") for family in FAMILIES}


PG = statements(PG_STATEMENTS)
ALL = sorted(f"{family}.{name}" for family, queries in PG.items() for name in queries)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_the_statement_names_of_sqlite(family):
    assert sorted(PG[family]) == sorted(load(SQLITE_STATEMENTS / f"{family}.sql"))


def parameters(sql: str) -> tuple[int, set[str]]:
    """How many `?` and which `:name` a statement takes (quotes and comments left out)."""
    _, order = numbered(sql)
    return sum(isinstance(o, int) for o in order), {o for o in order if isinstance(o, str)}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_statement_takes_the_parameters_of_sqlites(family):
    """The Python passes one set of arguments to whichever dialect's statement it runs."""
    sqlite = load(SQLITE_STATEMENTS / f"{family}.sql")
    for name, sql in PG[family].items():
        assert parameters(sql) == parameters(sqlite[name]), f"{family}.{name}"


def test_no_statement_uses_what_postgresql_lacks():
    sqlite_only = re.compile(r"INDEXED BY|INSERT OR|julianday|strftime|json_each|json_extract|"
                             r"last_insert_rowid|pragma|WITHOUT ROWID|sqlite_", re.I)
    for family, queries in PG.items():
        for name, sql in queries.items():
            code = _TOKENS.sub(lambda m: "" if m.group(1) or m.group(3) else m.group(0), sql)
            found = sqlite_only.search(code)
            assert found is None, f"{family}.{name}: {found.group(0)!r} is SQLite's"


def _sql(key: str) -> str:
    family, name = key.split(".")
    return PG[family][name]


TRANSACTION_STARTS = {"database.begin_write", "database.begin_read"}


@pytest.mark.parametrize("key", ALL)
def test_every_statement_prepares(module_db, key):
    """Parsed and planned by the server, parameter types inferred: what a typo, a SQLite-only
    function or an ambiguous parameter fails at."""
    if key in TRANSACTION_STARTS:
        module_db.execute(_sql(key))
        try:
            assert module_db.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        finally:
            module_db.execute("ROLLBACK")
        return
    text, _ = numbered(_sql(key))
    pgconn = module_db.pgconn
    result = pgconn.prepare(b"", text.encode())
    assert result.status == ExecStatus.COMMAND_OK, f"{key}: {result.error_message.decode()}"


VALUES_BY_TYPE = {"text": NOW, "name": NOW, "unknown": NOW, "jsonb": '["r1", "a"]', "bigint": 1, "integer": 1,
                  "smallint": 1, "double precision": 1.5, "numeric": 1}


def plausible_values(conn, key: str):
    """Arguments of the types the server inferred: ISO text for text, a JSON array for jsonb."""
    text, order = numbered(_sql(key))
    conn.pgconn.prepare(b"", text.encode())
    described = conn.pgconn.describe_prepared(b"")
    types = [conn.execute("SELECT format_type(%s, NULL)", (described.param_type(i),)).fetchone()[0]
             for i in range(described.nparams)]
    values = [VALUES_BY_TYPE[t] for t in types]
    if all(isinstance(o, int) for o in order):
        return tuple(values)
    return dict(zip(order, values))


@pytest.mark.parametrize("key", sorted(set(ALL) - TRANSACTION_STARTS))
def test_every_statement_runs(module_db, key):
    """Run once with values of its parameters' types (rolled back): casts, JSON and set-returning
    functions, RETURNING, ON CONFLICT and FOR UPDATE SKIP LOCKED execute. A row that breaks a
    constraint is the values' fault, not the statement's."""
    args = plausible_values(module_db, key)
    try:
        with module_db.transaction():
            if key == "queue.last_insert_id":   # currval: after an insert of this session
                module_db.execute("SELECT nextval(pg_get_serial_sequence('messages', 'id'))")
            cur = module_db.execute(for_psycopg(_sql(key)), args)
            if cur.description is not None:
                cur.fetchall()
            raise _Rollback
    except _Rollback:
        pass
    except pg_errors.IntegrityError:
        pass


# --- what the statements do ---------------------------------------------------------------------

def _setup_queue(conn, ready: int = 3) -> list[int]:
    conn.execute("INSERT INTO workflows VALUES ('wf', 1, 'c', '{}', NULL, %s)", (NOW,))
    conn.execute("INSERT INTO runs (run_id, workflow_id, workflow_version, status, created_at) "
                 "VALUES ('r1', 'wf', 1, 'running', %s)", (NOW,))
    enqueue = for_psycopg(PG["queue"]["enqueue"])
    return [conn.execute(enqueue, ("r1", "node", f"n{i}", 0, None, 1, NOW, 0, 5, NOW)).fetchone()[0]
            for i in range(ready)]


@pytest.fixture
def db(pg_dsn):
    conn = connect(pg_dsn)
    apply_schema(conn)
    yield conn
    conn.close()


def test_enqueue_returns_ids_and_last_insert_id_the_last(db):
    ids = _setup_queue(db, 3)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert db.execute(PG["queue"]["last_insert_id"]).fetchone()[0] == ids[-1]


def test_two_claimers_take_different_messages_without_waiting(db, pg_dsn):
    """FOR UPDATE SKIP LOCKED: a claim passes over what another open claim holds."""
    ids = _setup_queue(db, 3)
    claim_one = for_psycopg(PG["queue"]["claim_one"])
    claim = for_psycopg(PG["queue"]["claim"])
    with connect(pg_dsn) as other:
        db.execute("BEGIN")
        first = db.execute(claim_one, {"now": NOW}).fetchone()
        other.execute("SET lock_timeout = '5s'")
        other.execute("BEGIN")
        second = other.execute(claim_one, {"now": NOW}).fetchone()
        rest = other.execute(claim, {"now": NOW, "limit": 10}).fetchall()
        other.execute("COMMIT")
        db.execute("COMMIT")
    assert first[0] == ids[0] and second[0] == ids[1]
    assert [r[0] for r in rest] == [ids[2]]
    assert db.execute("SELECT count(*) FROM messages WHERE status = 'leased'").fetchone()[0] == 3


def test_a_claim_leases_at_most_its_limit_highest_priority_then_oldest(db):
    ids = _setup_queue(db, 20)
    enqueue = for_psycopg(PG["queue"]["enqueue"])
    high = db.execute(enqueue, ("r1", "node", "h", 0, None, 2, NOW, 0, 5, NOW)).fetchone()[0]
    rows = db.execute(for_psycopg(PG["queue"]["claim"]), {"now": NOW, "limit": 5}).fetchall()
    assert sorted(r[0] for r in rows) == sorted([high] + ids[:4])
    assert db.execute("SELECT count(*) FROM messages WHERE status = 'leased'").fetchone()[0] == 5


def test_claim_oldest_takes_the_oldest_whatever_its_priority(db):
    ids = _setup_queue(db, 2)
    enqueue = for_psycopg(PG["queue"]["enqueue"])
    high = db.execute(enqueue, ("r1", "node", "h", 0, None, 2, NOW, 0, 5, NOW)).fetchone()[0]
    later = db.execute(enqueue, ("r1", "node", "l", 0, None, 0, "2027-01-15T09:00:00.000Z", 0, 5, NOW)).fetchone()[0]
    claim_one, claim_oldest = for_psycopg(PG["queue"]["claim_one"]), for_psycopg(PG["queue"]["claim_oldest"])
    assert db.execute(claim_one, {"now": NOW}).fetchone()[0] == high
    assert db.execute(claim_oldest, {"now": NOW}).fetchone()[0] == ids[0]
    assert db.execute(claim_oldest, {"now": NOW}).fetchone()[0] == ids[1]
    assert db.execute(claim_oldest, {"now": NOW}).fetchone() is None   # `later` is not visible yet
    assert later not in [r[0] for r in db.execute("SELECT id FROM messages WHERE status = 'leased'")]


def test_begin_write_lets_one_writer_at_a_time(db, pg_dsn):
    begin_write = PG["database"]["begin_write"]
    db.execute(begin_write)
    with connect(pg_dsn) as other:
        other.execute("SET lock_timeout = '200ms'")
        with pytest.raises(pg_errors.LockNotAvailable):
            other.execute(begin_write)
        other.execute("ROLLBACK")
        db.execute("COMMIT")
        other.execute(begin_write)   # free again once the first writer committed
        assert other.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        other.execute("COMMIT")


def test_begin_write_waits_for_the_writer_before_it(db, pg_dsn):
    """The second writer is not refused: it waits, and goes on once the first commits."""
    begin_write = PG["database"]["begin_write"]
    db.execute(begin_write)
    started, done = threading.Event(), threading.Event()

    def second():
        with connect(pg_dsn) as other:
            started.set()
            other.execute(begin_write)
            done.set()
            other.execute("COMMIT")

    t = threading.Thread(target=second)
    t.start()
    try:
        assert started.wait(10)
        # The other session shows up as waiting for the advisory lock (a condition, not a sleep).
        wait_until(lambda: db.execute("SELECT count(*) FROM pg_locks "
                                      "WHERE locktype = 'advisory' AND NOT granted").fetchone()[0],
                   what="the second writer to wait for the lock")
        assert not done.is_set()
    finally:
        db.execute("COMMIT")
        t.join(10)
    assert done.is_set()


def test_event_insert_at_moves_the_numbering_past_it(db):
    ev = PG["events"]
    insert, insert_at = for_psycopg(ev["event_insert"]), for_psycopg(ev["event_insert_at"])
    db.execute(insert, (None, None, "a", None, NOW))
    db.execute(insert_at, (100, None, None, "history.pruned", None, NOW))
    db.execute(insert, (None, None, "b", None, NOW))
    db.execute(insert_at, (50, None, None, "old", None, NOW))   # below: the numbering stays up
    db.execute(insert, (None, None, "c", None, NOW))
    rows = db.execute("SELECT seq, type FROM events ORDER BY seq").fetchall()
    assert rows == [(1, "a"), (50, "old"), (100, "history.pruned"), (101, "b"), (102, "c")]


def test_schedule_advance_goes_forward_and_writes_a_null_next(db):
    s = PG["schedules"]
    db.execute(for_psycopg(s["schedule_insert"]), {
        "schedule_id": "wf:t", "workflow_id": "wf", "node_id": "t", "cron": None, "interval_s": 60.0,
        "timezone": "UTC", "catch_up": "none", "misfire_grace_s": 60.0, "overlap": "skip",
        "max_catch_up": 100, "next_at": "2027-01-15T08:01:00.000Z", "now": NOW})
    advance = for_psycopg(s["schedule_advance"])
    get = "SELECT last_at, next_at FROM schedules WHERE schedule_id = 'wf:t'"
    db.execute(advance, {"schedule_id": "wf:t", "last_at": "2027-01-15T08:01:00.000Z",
                         "next_at": "2027-01-15T08:02:00.000Z"})
    db.execute(advance, {"schedule_id": "wf:t", "last_at": "2027-01-15T08:00:00.000Z",
                         "next_at": "2027-01-15T08:01:00.000Z"})   # a slower worker: no step back
    assert db.execute(get).fetchone() == ("2027-01-15T08:01:00.000Z", "2027-01-15T08:02:00.000Z")
    db.execute(advance, {"schedule_id": "wf:t", "last_at": "2027-01-15T08:02:00.000Z", "next_at": None})
    assert db.execute(get).fetchone() == ("2027-01-15T08:02:00.000Z", None)   # as SQLite's max()


def test_fire_insert_leaves_a_fire_time_dealt_with(db):
    fire = for_psycopg(PG["schedules"]["fire_insert"])
    args = {"schedule_id": "wf:t", "fire_at": NOW, "status": "started", "run_id": "r1", "reason": None,
            "now": NOW}
    assert db.execute(fire, args).rowcount == 1
    assert db.execute(fire, {**args, "status": "skipped"}).rowcount == 0
    assert db.execute("SELECT status FROM schedule_fires").fetchall() == [("started",)]


def test_table_columns_lists_a_tables_columns_as_sqlite_does(db):
    cols = [r[0] for r in db.execute(for_psycopg(PG["database"]["table_columns"]), {"table": "runs"})]
    lite = [r[1] for r in sqlite_schema().execute("PRAGMA table_info(runs)")]
    assert cols == lite
    assert db.execute(for_psycopg(PG["database"]["table_columns"]), {"table": "nothing"}).fetchall() == []


def test_checks_say_ok_on_a_sound_database(db):
    for name in ("quick_check", "integrity_check"):
        assert db.execute(PG["database"][name]).fetchall() == [("ok",)]


def test_data_version_moves_when_another_session_commits(db, pg_dsn):
    version = PG["database"]["data_version"]
    before = db.execute(version).fetchone()[0]
    with connect(pg_dsn) as other:
        other.execute("INSERT INTO events (type, at) VALUES ('x', %s)", (NOW,))
    assert db.execute(version).fetchone()[0] > before


# --- plans: what runs per claim, node or run reads an index -------------------------------------

# A history the planner has statistics for: 20,500 runs over 20 versions (mostly completed, a few
# running, paused, with deadlines, 500 child runs), 80,000 messages (mostly acked; a few ready,
# parked, leased), 80,000 node attempts, 160,000 events, workers, waiters, breaker calls,
# schedules, fires and signals.
HISTORY = """
INSERT INTO workflows SELECT 'wf', v, 'c' || v, '{}', NULL, '2027-01-01T00:00:00.000Z' FROM generate_series(1, 20) v;
INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, status, created_at, started_at, finished_at, deadline_at, paused_until)
SELECT 'r' || lpad(i::text, 6, '0'), 'wf', i % 20 + 1, NULL,
       CASE WHEN i % 50 = 0 THEN 'running' WHEN i % 97 = 0 THEN 'paused' ELSE 'completed' END,
       to_char(timestamp '2027-01-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(timestamp '2027-01-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       CASE WHEN i % 50 = 0 OR i % 97 = 0 THEN NULL ELSE to_char(timestamp '2027-01-01' + (i + 5) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') END,
       CASE WHEN i % 500 = 0 THEN '2027-02-01T00:00:00.000Z' END,
       CASE WHEN i % 970 = 0 THEN '2027-02-01T00:00:00.000Z' END
FROM generate_series(1, 20000) i;
INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, status, created_at)
SELECT 'c' || lpad(i::text, 6, '0'), 'wf', 1, 'r' || lpad((i * 10)::text, 6, '0'), 'loop', 'completed', '2027-01-02T00:00:00.000Z'
FROM generate_series(1, 500) i;
INSERT INTO messages (run_id, kind, target_node_id, status, priority, visible_at, held, created_at, finished_at)
SELECT 'r' || lpad(((i - 1) / 4 + 1)::text, 6, '0'), 'node', 'n' || (i % 4),
       CASE WHEN i % 200 = 0 THEN 'ready' WHEN i % 201 = 0 THEN 'leased' ELSE 'acked' END,
       i % 3, '2027-01-01T00:00:00.000Z',
       CASE WHEN i % 200 = 0 AND i % 400 = 0 THEN 3 ELSE 0 END,
       '2027-01-01T00:00:00.000Z',
       CASE WHEN i % 200 = 0 OR i % 201 = 0 THEN NULL ELSE '2027-01-01T00:00:01.000Z' END
FROM generate_series(1, 80000) i;
INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, message_id, created_at, started_at, finished_at, limit_key, compensates)
SELECT 'r' || lpad(((i - 1) / 4 + 1)::text, 6, '0'), 'n' || (i % 4), 0, 1,
       CASE WHEN i % 200 = 0 THEN 'running' ELSE 'completed' END, i,
       to_char(timestamp '2027-01-01' + (i / 4) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(timestamp '2027-01-01' + (i / 4) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(timestamp '2027-01-01' + (i / 4 + 1) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       CASE WHEN i % 1000 = 0 THEN 'k' || (i % 7) END, NULL
FROM generate_series(1, 80000) i;
INSERT INTO events (run_id, node_id, type, data, at)
SELECT 'r' || lpad(((i - 1) / 8 + 1)::text, 6, '0'), 'n' || (i % 4), CASE WHEN i % 2 = 0 THEN 'node.completed' ELSE 'message.leased' END, '{}', '2027-01-01T00:00:00.000Z'
FROM generate_series(1, 160000) i;
INSERT INTO leases SELECT id, 'w1', 't', '2027-01-01T00:00:00.000Z', '2027-01-01T00:01:00.000Z' FROM messages WHERE status = 'leased';
INSERT INTO workers (worker_id, host, pid, concurrency, started_at, heartbeat_at, stopped_at, host_id, cpu, memory_mb)
SELECT 'w' || i, 'h' || (i % 5), i, 4, '2027-01-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z',
       CASE WHEN i % 10 <> 0 THEN '2027-01-01T00:00:00.000Z' END, 'h' || (i % 5), 2, 1024
FROM generate_series(1, 2000) i;
INSERT INTO limit_waiters SELECT id, 'k' || (id % 7), 1, '2027-01-01T00:00:00.000Z', CASE WHEN id % 3 = 0 THEN '2027-02-01T00:00:00.000Z' END FROM messages WHERE id % 4 = 0;
INSERT INTO breaker_calls SELECT 'b' || (i % 10), to_char(timestamp '2027-01-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), i % 2 FROM generate_series(1, 20000) i;
INSERT INTO schedules (schedule_id, workflow_id, node_id, interval_s, paused, next_at, created_at, updated_at)
SELECT 'wf:t' || i, 'wf', 't' || i, 60, i % 2, '2027-01-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z', '2027-01-01T00:00:00.000Z' FROM generate_series(1, 2000) i;
INSERT INTO schedule_fires SELECT 'wf:t' || (i % 100), to_char(timestamp '2027-01-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), CASE WHEN i % 100 = 0 THEN 'buffered' ELSE 'started' END, 'r' || lpad(i::text, 6, '0'), NULL, '2027-01-01T00:00:00.000Z' FROM generate_series(1, 20000) i;
INSERT INTO signals (run_id, name, payload, created_at) SELECT 'r' || lpad(i::text, 6, '0'), 's', NULL, '2027-01-01T00:00:00.000Z' FROM generate_series(1, 20000) i;
INSERT INTO workflows SELECT 'w' || lpad(i::text, 4, '0'), 1, 'c', '{}', NULL, '2027-01-01T00:00:00.000Z' FROM generate_series(1, 2000) i;
INSERT INTO joins SELECT 'r' || lpad(i::text, 6, '0'), 'j', 0, 1, 1, 1 FROM generate_series(1, 20000) i;
INSERT INTO join_inputs SELECT 'r' || lpad(i::text, 6, '0'), 'j', 0, 'a', '{}' FROM generate_series(1, 20000) i;
INSERT INTO loop_items SELECT 'r' || lpad((i / 10 + 1)::text, 6, '0'), 'loop', 0, 1, i % 10, '{}', NULL, NULL FROM generate_series(0, 19999) i;
INSERT INTO rate_limits SELECT 'k' || i, 1, 1, 1, 1, 'wf:n', 0, '2027-01-01T00:00:00.000Z' FROM generate_series(1, 2000) i;
INSERT INTO circuit_breakers SELECT 'b' || i, 'closed', 0.5, 5, 60, 30, 1, NULL, 0, 0, 'wf:n', '2027-01-01T00:00:00.000Z' FROM generate_series(1, 2000) i;
ANALYZE;
"""

PLAN_PARAMS = {"run_id": "r000050", "now": "2027-01-01T00:00:00.000Z", "held": 1, "limit": 1,
               "after": 0, "id": 1, "run_ids": '["r000001"]', "status": "failed", "workflow_id": "wf",
               "version": 1, "top_level": 1, "before": "2027-01-01T00:00:00.000Z", "nodes": '["n1"]',
               "type": "node.completed", "node_id": "n1", "since": "2027-01-01T05:00:00.000Z",
               "at": "2027-01-01T05:00:00.000Z", "rowid": 5, "cap": 100, "low": "r0001",
               "high": "r0002", "worker_id": "w1", "key": "k1", "to": "completed", "from": "running",
               "output": None, "error": None, "error_type": None, "port": None, "reason": None,
               "percent": 1.0, "message": None, "instance": 5, "name": "s", "limit_key": None,
               "started_at": None, "finished_at": None, "outputs": None, "paused_until": None,
               "counted": 1, "visible_at": "2027-01-01T00:00:00.000Z", "message_id": 5}
PLAN_POSITIONAL = {"runs_prunable": ("2027-01-01T00:00:00.000Z", 10),
                   "node_open_by_message": (5,), "running_with_key_but": ("k1", 5),
                   "waiters_first": ("k1", 10), "waiters_given_up": ("2027-01-01T00:00:00.000Z", 10),
                   "due_later_first": ("2027-01-01T00:00:00.000Z",),
                   "loop_results": ("r000050", "loop", 0, 1),
                   "runs_due_resume": ("2027-01-01T00:00:00.000Z",),
                   "runs_past_deadline": ("2027-01-01T00:00:00.000Z",),
                   "breaker_window": ("b1", "2027-01-01T05:00:00.000Z"),
                   "breaker_calls_forget": ("b1", "2027-01-01T05:00:00.000Z")}

# SQLite's tests/storage/test_query_plans.py, with PostgreSQL's names; where a statement may be
# answered from either of two indexes (the planner weighs them by the values), both are named.
PLAN_EXPECTED = {
    "queue.claim": {"messages_claimable"},
    "queue.claim_one": {"messages_claimable"},
    "queue.claim_oldest": {"messages_claimable"},
    "queue.due_later_first": {"messages_due_later"},
    "queue.promote_due": {"messages_due_later"},
    "queue.next_visible": {"messages_due_later"},
    "queue.run_open_messages": {"messages_open_by_run"},
    "queue.run_messages_discard": {"messages_open_by_run"},
    "queue.messages_hold_run": {"messages_open_by_run"},
    "queue.messages_unhold_run": {"messages_open_by_run"},
    "queue.messages_wake_waiting": {"messages_open_by_run"},
    "queue.messages_release_throttled": {"messages_open_by_run"},
    "events.events_of_run_after": {"events_by_run"},
    "events.last_seq_of": {"events_by_run"},
    "history.runs_prunable": {"runs_by_finished"},
    "history.run_tree_runs": {"runs_by_parent"},
    "history.run_tree_nodes": {"node_instances_by_run"},
    "history.events_delete_of_runs": {"events_by_run"},
    "nodes.node_open_by_message": {"node_instances_by_message"},
    "nodes.nodes_open_of_run": {"node_instances_by_run"},
    "nodes.compensation_next": {"node_instances_by_run", "node_instances_one_completed"},
    "nodes.compensation_open": {"node_instances_compensations"},
    "nodes.nodes_running_plain": {"node_instances_by_run", "node_instances_running"},
    "nodes.compensations_of_run": {"node_instances_compensations"},
    "runs.runs_active_children": {"runs_by_parent"},
    "runs.runs_have_children": {"runs_by_parent"},
    "runs.run_ancestry": {"runs_pkey"},
    "runs.runs_latest_top": {"runs_top_level"},
    "runs.runs_latest": {"runs_by_created"},
    "runs.runs_latest_in_status": {"runs_by_status"},
    "runs.runs_latest_of_version": {"runs_by_workflow", "runs_by_status"},
    "runs.runs_due_resume": {"runs_pause_ends"},
    "runs.runs_past_deadline": {"runs_deadlines"},
    "runs.runs_next_due": {"runs_deadlines"},
    "runs.runs_children_completed": {"runs_by_parent"},
    "runs.runs_children_compensating": {"runs_by_parent", "runs_by_status"},
    "loops.loop_results": {"node_instances_by_run", "node_instances_running", "loop_items_pkey"},
    "workflows.workflows_list": {"runs_by_workflow"},
    "workers.workers_live_on_host": {"workers_live"},
    "workers.workers_prune_stopped": {"workers_stopped"},
    "metrics.stats_workers": {"workers_live"},
    "metrics.run_figures": {"messages_open_by_run"},
    "metrics.throughput": {"runs_by_finished"},
    "metrics.slowest_nodes": {"runs_by_finished"},
    "limits.running_with_key": {"node_instances_by_limit"},
    "limits.running_with_key_but": {"node_instances_by_limit"},
    "limits.waiters_first": {"limit_waiters_by_key", "limit_waiters_pkey"},   # both in message order
    "limits.waiters_given_up": {"limit_waiters_give_up"},
    "limits.breaker_window": {"breaker_calls_by_key"},
    "limits.breaker_calls_forget": {"breaker_calls_by_key"},
    "schedules.schedules_due": {"schedules_due"},
    "ui.runs_page_top": {"runs_top_level"},
    "ui.runs_page_all": {"runs_by_created"},
    "ui.runs_page_in_status": {"runs_by_status"},
    "ui.runs_page_of_version": {"runs_by_workflow"},
    "ui.runs_by_id_prefix": {"runs_pkey"},
    "ui.attempts_of_run": {"node_instances_by_run"},
    "ui.child_runs": {"runs_by_parent"},
    # Per claim, node step and run step: one row by its key.
    "nodes.node_start": {"node_instances_by_message"},
    "nodes.node_finish": {"node_instances_pkey"},
    "nodes.node_to_start": {"node_instances_by_message"},
    "nodes.node_start_deferred": {"node_instances_pkey"},
    "nodes.node_start_finish": {"node_instances_pkey"},
    "nodes.node_wait": {"node_instances_pkey"},
    "nodes.node_release": {"node_instances_pkey"},
    "nodes.node_progress": {"node_instances_pkey"},
    "nodes.node_completed_count": {"node_instances_one_completed", "node_instances_by_run"},
    "nodes.node_last_attempt": {"node_instances_by_run"},
    "nodes.run_running_count": {"node_instances_running"},
    "nodes.run_completed_outputs": {"node_instances_one_completed", "node_instances_by_run"},
    "nodes.nodes_of_run": {"node_instances_by_run", "node_instances_pkey"},
    "queue.message_ack": {"messages_pkey"},
    "queue.message_ack_known": {"messages_pkey"},
    "queue.message_nack": {"messages_pkey"},
    "queue.message_bury": {"messages_pkey"},
    "queue.message_throttle": {"messages_pkey"},
    "queue.message_limit_free": {"messages_pkey"},
    "queue.lease_release": {"leases_pkey"},
    "queue.leases_expired": {"messages_pkey"},
    "runs.run_get": {"runs_pkey"},
    "runs.run_state": {"runs_pkey"},
    "runs.run_transition": {"runs_pkey"},
    "runs.run_variables_set": {"runs_pkey"},
    "runs.runs_status_of": {"runs_pkey"},
    "events.node_completion_events": {"events_by_run"},
    "events.last_event_of_type": {"events_by_run"},
    "joins.join_fire": {"joins_pkey"},
    "joins.join_inputs_get": {"join_inputs_pkey"},
    "joins.join_unfired": {"joins_pkey"},
    "signals.signal_take": {"signals_by_run"},
    "loops.loop_item_get": {"loop_items_pkey"},
    "limits.waiter_get": {"limit_waiters_pkey"},
    "limits.bucket_get": {"rate_limits_pkey"},
    "limits.breaker_get": {"circuit_breakers_pkey"},
    "schedules.schedule_get": {"schedules_pkey"},
    "schedules.fire_get": {"schedule_fires_pkey"},
    "schedules.fires_buffered": {"schedule_fires_buffered", "schedule_fires_pkey"},
    "schedules.schedule_active_runs": {"schedule_fires_pkey", "schedule_fires_buffered"},
    "workflows.workflow_latest": {"workflows_pkey"},
    "workflows.workflow_by_checksum": {"workflows_by_checksum", "workflows_pkey"},
    "history.run_delete": {"runs_pkey"},
}
BIG_TABLES = ("messages", "events", "runs", "node_instances")


@pytest.fixture(scope="module")
def history_db(pg_cluster_session):
    name = pg_cluster_session.new_database("plans")
    conn = connect(pg_cluster_session.dsn(name))
    try:
        apply_schema(conn)
        conn.execute(HISTORY)
        yield conn
    finally:
        conn.close()
        pg_cluster_session.drop_database(name)


def positional_for_plans(conn, key: str) -> tuple:
    """A run id for each text parameter, 5 for each number (a message, node or attempt id)."""
    text, _ = numbered(_sql(key))
    conn.pgconn.prepare(b"", text.encode())
    described = conn.pgconn.describe_prepared(b"")
    types = [conn.execute("SELECT format_type(%s, NULL)", (described.param_type(i),)).fetchone()[0]
             for i in range(described.nparams)]
    by_type = {"text": "r000050", "bigint": 5, "integer": 5, "smallint": 5, "double precision": 1.0,
               "jsonb": '["r000050"]'}
    return tuple(by_type[t] for t in types)


def explain(conn, key: str) -> str:
    name = key.split(".")[1]
    sql = _sql(key)
    args = PLAN_POSITIONAL.get(name) or (positional_for_plans(conn, key) if "?" in sql else PLAN_PARAMS)
    conn.execute("BEGIN")   # EXPLAIN of a write plans it only, but stay out of the data anyway
    try:
        return "\n".join(r[0] for r in conn.execute("EXPLAIN " + for_psycopg(sql), args))
    finally:
        conn.execute("ROLLBACK")


@pytest.mark.parametrize("key", sorted(PLAN_EXPECTED))
def test_statement_is_answered_from_its_index(history_db, key):
    plan = explain(history_db, key)
    used = set(re.findall(r"(?:Index|Index Only|Bitmap Index) Scan(?: Backward)? (?:using|on) (\w+)", plan))
    assert used & PLAN_EXPECTED[key], plan
    for table in BIG_TABLES:
        assert f"Seq Scan on {table} " not in plan, plan


@pytest.mark.parametrize("key", ["runs.runs_latest_top", "runs.runs_latest", "runs.runs_latest_in_status",
                                 "runs.runs_latest_of_version", "ui.runs_page_top", "ui.runs_page_all",
                                 "ui.runs_page_in_status", "ui.runs_page_of_version", "ui.child_runs",
                                 "queue.claim_one", "queue.claim"])
def test_a_listing_reads_its_index_in_order_without_sorting(history_db, key):
    """A sort would read every row the index gives before the LIMIT could stop it."""
    plan = explain(history_db, key)
    assert "Sort" not in plan.replace("Sort Key: \"ANY_subquery\"", ""), plan


def test_deleting_a_run_finds_its_rows_through_indexes(history_db):
    """prune deletes runs and lets the foreign keys cascade: each referencing column leads an
    index (one whose WHERE, if any, `column = value` implies), or every deleted run scans that
    table whole and prune grows with runs x rows."""
    refs = history_db.execute("""
        SELECT c.relname, a.attname,
               EXISTS (SELECT 1 FROM pg_index i
                       WHERE i.indrelid = con.conrelid AND i.indkey[0] = con.conkey[1]
                         AND (i.indpred IS NULL
                              OR trim(both '()' FROM pg_get_expr(i.indpred, i.indrelid))
                                 = a.attname || ' IS NOT NULL'))
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
        WHERE con.contype = 'f' AND con.confdeltype = 'c'
          AND c.relnamespace = current_schema()::regnamespace ORDER BY 1, 2""").fetchall()
    assert ("messages", "run_id", True) in refs and len(refs) >= 10
    assert [r for r in refs if not r[2]] == []


def test_the_statements_work_in_a_postgresql_schema_of_their_own(db):
    """The DSN's schema option puts the tables in their own schema (the connection's search_path
    names it): statements that find their tables or sequences by name find those."""
    db.execute("CREATE SCHEMA flows")
    db.execute("SET search_path TO flows")
    apply_schema(db)
    d, ev = PG["database"], PG["events"]
    assert [r[0] for r in db.execute(for_psycopg(d["table_columns"]), {"table": "events"})] == \
        ["seq", "run_id", "node_id", "type", "data", "at"]
    db.execute(for_psycopg(ev["event_insert_at"]), (7, None, None, "history.pruned", None, NOW))
    db.execute(for_psycopg(ev["event_insert"]), (None, None, "next", None, NOW))
    assert db.execute("SELECT seq, type FROM flows.events ORDER BY seq").fetchall() == \
        [(7, "history.pruned"), (8, "next")]
    assert db.execute(d["quick_check"]).fetchall() == [("ok",)]
    _setup_queue(db, 1)
    assert db.execute(d["begin_write"]) is not None
    assert db.execute(for_psycopg(PG["queue"]["claim_one"]), {"now": NOW}).fetchone() is not None
    db.execute("COMMIT")
    db.execute("SET search_path TO public")
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0   # public's, untouched


def test_quick_check_names_an_index_left_invalid(db):
    # What an interrupted CREATE INDEX CONCURRENTLY leaves; the catalog is the only way to make
    # one on purpose (it takes a superuser, as the cluster's owner is).
    db.execute("CREATE INDEX events_probe ON events (at)")
    admin = psycopg.connect(db.info.dsn.replace("user=durableflow", "user=postgres"), autocommit=True)
    try:
        admin.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'events_probe'::regclass")
    finally:
        admin.close()
    for name in ("quick_check", "integrity_check"):
        assert db.execute(PG["database"][name]).fetchall() == [
            ("index events_probe is not valid: REINDEX INDEX events_probe",)]


def test_join_arrive_counts_each_connection_and_returns_the_counts_after_it(db):
    _setup_queue(db, 0)
    j = PG["joins"]
    arrive = for_psycopg(j["join_arrive"])
    key = {"run_id": "r1", "node_id": "j", "iteration": 0}
    assert db.execute(arrive, {**key, "delivered": 1}).fetchone() == (1, 1, 0)
    assert db.execute(arrive, {**key, "delivered": 0}).fetchone() == (2, 1, 0)
    db.execute(for_psycopg(j["join_fire"]), ("r1", "j", 0))
    assert db.execute(arrive, {**key, "delivered": 1}).fetchone() == (3, 2, 1)
    assert db.execute(arrive, {**key, "iteration": 1, "delivered": 1}).fetchone() == (1, 1, 0)
