"""Moving a SQLite store to PostgreSQL: every table copied row by row with its ids, then checked.

The source is read in one read transaction (a consistent snapshot) through a read-only
connection; the target is written in one transaction that holds the writers' advisory lock, so
a worker that starts on the target meanwhile waits, and a copy that fails leaves no row behind.
The table and column lists come from the two schemas (SQLite's `sqlite_master`, PostgreSQL's
catalog), not from a list here, so a table added by a later migration is copied too.

Refused before anything is written: a target table that holds a row, a source that is not a
durableflow database or is of another schema version than this durableflow's, and a source
with a live worker or a lease in force (its work would be done twice, or lost).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from durableflow import procs
from durableflow.clock import iso
from durableflow.errors import StorageError
from durableflow.storage import migrate as sqlite_migrate

# A worker elsewhere whose heartbeat is newer than this may still be working: refuse. Workers
# heartbeat every few seconds; the default lease is 30 s.
LIVE_HEARTBEAT_SECONDS = 60.0
# PostgreSQL's tables that are not the store's data: its own migration series fills it.
NOT_COPIED = {"schema_version"}
# Columns PostgreSQL has that SQLite keeps hidden: runs.rowid is SQLite's rowid of the run.
HIDDEN = {"runs": "rowid"}


@dataclass
class TableReport:
    table: str
    rows: int
    digest: str = ""


@dataclass
class Report:
    source: str
    target: str
    schema_version: int
    tables: list[TableReport] = field(default_factory=list)
    checked: bool = False

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def migrate_store(source: str | os.PathLike, target: str, *, now: datetime | None = None) -> Report:
    """Copy the SQLite store at `source` into the empty PostgreSQL database `target` (a DSN),
    then compare every row of every table on both sides. Raises StorageError (one line, the
    DSN's password masked) when it refuses or the check fails."""
    from durableflow.storage.postgres.dsn import is_dsn, parse

    if not is_dsn(target):
        raise StorageError(f"{target}: the target must be a postgresql:// DSN")
    dsn = parse(target)
    src = _open_source(source)
    try:
        version = _check_source(src, os.fspath(source), now or datetime.now(timezone.utc))
        tables = _source_tables(src)
        _refuse_non_empty(dsn, tables)
        _create_schema(target)
        report = Report(os.fspath(source), dsn.label, version)
        _copy(src, dsn, tables, report)
        _check(src, dsn, report)
        return report
    finally:
        src.close()


# --- the source --------------------------------------------------------------------------------

def _open_source(source) -> sqlite3.Connection:
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise StorageError(f"{path}: no such SQLite file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        # One snapshot for the checks, the copy and the check of the copy.
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path}: not a SQLite database ({exc})") from None
    return conn


def _check_source(conn: sqlite3.Connection, path: str, now: datetime) -> int:
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                       ).fetchone()
    if not has:
        raise StorageError(f"{path}: not a durableflow database (no schema_version table); nothing was copied")
    version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    latest = sqlite_migrate.available()[-1].version
    if version > latest:
        raise StorageError(f"{path}: schema version {version} is newer than this durableflow "
                           f"understands ({latest}); upgrade durableflow. Nothing was copied")
    if version < latest:
        raise StorageError(f"{path}: schema version {version} is older than this durableflow's "
                           f"({latest}); open it once to upgrade it (`durableflow --db {path} doctor`), "
                           f"then migrate it. Nothing was copied")
    # Stored times are durableflow.clock.iso text: compare in the same format.
    stamp = iso(now.timestamp())
    leases = conn.execute("SELECT count(*), min(worker_id) FROM leases WHERE expires_at > ?",
                          (stamp,)).fetchone()
    if leases[0]:
        raise StorageError(f"{path}: {leases[0]} lease(s) in force (worker {leases[1]}); stop the "
                           f"workers (or wait for their leases to expire) first. Nothing was copied")
    live = _live_workers(conn, now)
    if live:
        raise StorageError(f"{path}: worker {live[0]} is still running"
                           + (f" (and {len(live) - 1} more)" if len(live) > 1 else "")
                           + "; stop the workers first. Nothing was copied")
    return version


def _live_workers(conn: sqlite3.Connection, now: datetime) -> list[str]:
    """Workers not stopped that may still be working: on this host, those whose process is
    alive; elsewhere (their pid means nothing here), those whose heartbeat is recent."""
    here = procs.host_identity()
    recent = iso((now - timedelta(seconds=LIVE_HEARTBEAT_SECONDS)).timestamp())
    live = []
    for worker_id, host_id, pid, started, heartbeat in conn.execute(
            "SELECT worker_id, host_id, pid, pid_started, heartbeat_at FROM workers "
            "WHERE stopped_at IS NULL ORDER BY worker_id"):
        if host_id == here:
            if procs.process_alive(pid, started):
                live.append(worker_id)
        elif heartbeat > recent:
            live.append(worker_id)
    return live


def _source_tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Table -> its columns, in schema order, for every table of the source but schema_version."""
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {name: [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (name,))]
            for name in names if name not in NOT_COPIED}


# --- the target --------------------------------------------------------------------------------

def _connect(dsn):
    from durableflow.storage.postgres.connection import connect
    return connect(dsn).raw


def _target_tables(raw) -> dict[str, list[str]]:
    rows = raw.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
        "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
        "ORDER BY c.table_name, c.ordinal_position").fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def _refuse_non_empty(dsn, source_tables: dict[str, list[str]]) -> None:
    raw = _connect(dsn)
    try:
        present = _target_tables(raw)
        for table in sorted(set(present) & (set(source_tables) | {"schema_version"})):
            if table == "schema_version":
                continue
            n = raw.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if n:
                raise StorageError(f"{dsn.label}: the target is not empty (table {table} has {n} "
                                   f"row(s)); migrate-store copies only into an empty database. "
                                   f"Nothing was copied")
    finally:
        raw.close()


def _create_schema(target: str) -> None:
    """Open the target as a store once: that creates (or checks) its schema by PostgreSQL's own
    migration series, and refuses a target of a newer version."""
    from durableflow.storage.store import Store
    Store(target).close()


def _copy_order(raw, tables: list[str]) -> list[str]:
    """Tables ordered so that every table comes after those its foreign keys point to."""
    deps: dict[str, set[str]] = {t: set() for t in tables}
    for child, parent in raw.execute(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c "
            "JOIN pg_class k ON k.oid = c.conrelid JOIN pg_namespace n ON n.oid = k.relnamespace "
            "WHERE c.contype = 'f' AND n.nspname = current_schema()"):
        child, parent = child.strip('"'), parent.strip('"')
        if child in deps and parent in deps and child != parent:
            deps[child].add(parent)
    order: list[str] = []
    while deps:
        ready = sorted(t for t, d in deps.items() if not d - set(order))
        if not ready:
            raise StorageError(f"foreign keys form a cycle among {sorted(deps)}")
        for t in ready:
            order.append(t)
            del deps[t]
    return order


def _columns(table: str, source_columns: list[str], target_columns: list[str], label: str) -> list[str]:
    """The columns copied: the source's, which the target must have exactly (plus a hidden one)."""
    hidden = HIDDEN.get(table)
    expected = [c for c in target_columns if c != hidden]
    if sorted(expected) != sorted(source_columns):
        missing = sorted(set(source_columns) - set(expected)) or sorted(set(expected) - set(source_columns))
        raise StorageError(f"{label}: table {table} has other columns than the source's "
                           f"({', '.join(missing)}); nothing was copied")
    return source_columns


def _select(table: str, columns: list[str], *, sqlite: bool) -> str:
    hidden = HIDDEN.get(table)
    cols = ", ".join(f'"{c}"' for c in columns)
    if hidden:
        cols = f"{'rowid' if sqlite else hidden} AS {hidden}, " + cols
    return f'SELECT {cols} FROM "{table}"'


def _order(raw, table: str) -> str:
    """ORDER BY the target table's primary key (both sides sort text in byte order: SQLite's
    BINARY collation and the target's COLLATE "C")."""
    cols = [r[0] for r in raw.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)", (f'"{table}"',)).fetchall()]
    return " ORDER BY " + ", ".join(f'"{c}"' for c in cols) if cols else ""


def _copy(src: sqlite3.Connection, dsn, source_tables: dict[str, list[str]], report: Report) -> None:
    from durableflow.storage.postgres.connection import translate
    raw = _connect(dsn)
    try:
        target_tables = _target_tables(raw)
        missing = sorted(set(source_tables) - set(target_tables))
        if missing:
            raise StorageError(f"{dsn.label}: the target has no table {', '.join(missing)}; nothing was copied")
        plan = {t: _columns(t, source_tables[t], target_tables[t], dsn.label) for t in source_tables}
        order = _copy_order(raw, list(plan))
        import psycopg
        try:
            with raw.transaction():
                # Writers of the target wait for the copy (database.begin_write takes this lock).
                raw.execute(_lock_statement())
                for table in order:
                    # Checked again under the lock: a worker may have started on the target.
                    if raw.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():
                        raise StorageError(f"{dsn.label}: the target is not empty (table {table} "
                                           f"has rows); nothing was copied")
                    columns = plan[table]
                    hidden = HIDDEN.get(table)
                    names = ([hidden] if hidden else []) + columns
                    n = 0
                    with raw.cursor().copy(
                            f'COPY "{table}" ({", ".join(chr(34) + c + chr(34) for c in names)}) FROM STDIN'
                    ) as copy:
                        for row in src.execute(_select(table, columns, sqlite=True)
                                               + (" ORDER BY rowid" if _has_rowid(src, table) else "")):
                            copy.write_row(row)
                            n += 1
                    report.tables.append(TableReport(table, n))
                    _move_sequences(raw, table)
        except psycopg.Error as exc:
            raise translate(exc, dsn.label) from None
    finally:
        raw.close()


def _has_rowid(src: sqlite3.Connection, table: str) -> bool:
    sql = src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
    return "WITHOUT ROWID" not in sql.upper()


def _lock_statement() -> str:
    from durableflow.storage.postgres.connection import POSTGRES
    # begin_write is "BEGIN ...; SELECT pg_advisory_xact_lock(N)": take its lock part only.
    text = POSTGRES.database.begin_write
    parts = [p.strip() for p in text.split(";") if "advisory" in p]
    return parts[0] if parts else "SELECT 1"


def _move_sequences(raw, table: str) -> None:
    """Identity columns given explicit ids: the next default id must come after them."""
    for (column,) in raw.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s AND is_identity = 'YES'", (table,)).fetchall():
        raw.execute(f'SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max("{column}"), 0) + 1, false) '
                    f'FROM "{table}"', (f'"{table}"', column))


# --- the check ---------------------------------------------------------------------------------

def _normal(value):
    # A whole-number REAL reads back as float on both sides; an INTEGER column as int. Equal
    # values compare equal as Python values; the digest needs one text for both.
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


def _check(src: sqlite3.Connection, dsn, report: Report) -> None:
    """Read every table back from the target in primary-key order beside the source in the same
    order, and compare every column of every row; a digest per table is kept for the report."""
    raw = _connect(dsn)
    try:
        raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for entry in report.tables:
            table = entry.table
            columns = [c for c in _source_tables_columns(src, table)]
            order = _order(raw, table)
            left = src.execute(_select(table, columns, sqlite=True) + order)
            right = raw.execute(_select(table, columns, sqlite=False) + order)
            digest = hashlib.sha256()
            n = 0
            while True:
                a, b = left.fetchone(), right.fetchone()
                if a is None and b is None:
                    break
                if a is None or b is None or tuple(a) != tuple(b):
                    where = a if a is not None else b
                    raise StorageError(
                        f"{dsn.label}: check failed: table {table} differs from the source at row "
                        f"{n + 1} ({', '.join(str(v) for v in (where or ())[:2])}); the copy is "
                        f"committed: drop the target's tables before trying again")
                digest.update("\x1f".join(_normal(v) for v in a).encode() + b"\x1e")
                n += 1
            if n != entry.rows:
                raise StorageError(f"{dsn.label}: check failed: table {table} has {n} rows, {entry.rows} copied")
            entry.digest = digest.hexdigest()[:16]
        raw.execute("COMMIT")
        report.checked = True
    finally:
        raw.close()


def _source_tables_columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in src.execute("SELECT * FROM pragma_table_info(?)", (table,))]
