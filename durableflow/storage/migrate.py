"""Forward migrations. Each one commits together with its `schema_version` row, or not at all."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from durableflow.errors import SchemaVersionError, StorageError
from durableflow.storage.connection import Connection, is_busy, translate

_NAME = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
# A migration whose first line is this rebuilds tables the way SQLite's documentation says to
# (https://sqlite.org/lang_altertable.html#otheralter): with foreign keys off, so dropping the old
# copy of a table does not cascade, and legacy ALTER TABLE, so renaming it aside does not rewrite
# what other tables and views say. Foreign keys are checked before COMMIT.
REBUILDS_TABLES = "-- durableflow: rebuilds tables"


def sql_root() -> Path:
    """Where schema.sql and migrations/ are: inside the wheel, or at the top of a source checkout."""
    packaged = resources.files("durableflow") / "_sql"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text(encoding="utf-8"))

    @property
    def rebuilds_tables(self) -> bool:
        with self.path.open(encoding="utf-8") as f:
            return f.readline().strip() == REBUILDS_TABLES


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements, so each runs inside our transaction.

    `executescript()` would COMMIT whatever is open first, which breaks a migration's atomicity.
    """
    out, buf = [], []
    for line in script.splitlines(keepends=True):
        buf.append(line)
        chunk = "".join(buf)
        if sqlite3.complete_statement(chunk):
            stmt = chunk.strip()
            if stmt and not all(l.strip().startswith("--") or not l.strip() for l in stmt.splitlines()):
                out.append(stmt)
            buf = []
    rest = "".join(buf).strip()
    if rest and not all(l.strip().startswith("--") or not l.strip() for l in rest.splitlines()):
        raise StorageError(f"unterminated SQL statement: {rest[:60]!r}")
    return out


def available(root: Path | None = None) -> list[Migration]:
    folder = (root or sql_root()) / "migrations"
    found = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if versions != list(range(1, len(versions) + 1)):
        raise StorageError(f"{folder}: migrations must be numbered 0001, 0002, ... without gaps")
    return found


def current_version(conn: Connection) -> int:
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if not has:
            return 0
        return conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise translate(exc, conn.label) from exc


def check_not_newer(conn: Connection, migrations: list[Migration]) -> int:
    """The file's schema version, refusing a newer schema and a file that holds someone else's
    tables: durableflow would otherwise add its own tables to it (and switch it to WAL)."""
    # One read transaction: read apart, another process's first migration could commit between
    # "no schema_version yet" and "there are tables", and its tables would look like a stranger's.
    own = not conn.in_transaction
    try:
        if own:
            conn.execute("BEGIN")
        version = current_version(conn)
        others = [] if version else [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 4")]
    except sqlite3.Error as exc:
        raise translate(exc, conn.label) from exc
    finally:
        if own and conn.in_transaction:
            conn.execute("COMMIT")
    if version == 0:
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise StorageError(f"{conn.label}: not a durableflow database (it holds other tables: "
                               f"{shown}); give durableflow a file of its own. The file was not changed.")
    latest = migrations[-1].version if migrations else 0
    if version > latest:
        raise SchemaVersionError(
            f"{conn.label}: database schema is version {version}, newer than this durableflow "
            f"understands ({latest}); upgrade durableflow. The database was not changed."
        )
    return version


def migrate(conn: Connection, now_iso: str, migrations: list[Migration] | None = None,
            retry: Callable[..., bool] | None = None) -> list[int]:
    """Apply every pending migration, each in its own BEGIN IMMEDIATE transaction.

    `retry(fn, *args)` wraps each migration (the Store passes its busy retry), so a lock met at
    the second migration retries that one and the list returned still names the first.
    """
    migrations = available() if migrations is None else migrations
    run = retry or (lambda fn, *args: fn(*args))
    return [mig.version for mig in migrations if run(_apply, conn, mig, now_iso, migrations)]


def _apply(conn: Connection, mig: Migration, now_iso: str, migrations: list[Migration]) -> bool:
    """Apply one migration if it is still pending. True if this call applied it."""
    if mig.version <= check_not_newer(conn, migrations):
        return False
    rebuild = mig.rebuilds_tables
    if rebuild:  # both are no-ops inside a transaction: set before BEGIN, restored below
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("PRAGMA legacy_alter_table = ON")
    try:
        conn.execute("BEGIN IMMEDIATE")
        # Another process may have migrated while we waited for the write lock.
        if current_version(conn) >= mig.version:
            conn.execute("ROLLBACK")
            return False
        for stmt in mig.statements():
            # `:now` in a migration is the engine's clock (the one time it may read).
            conn.execute(stmt, {"now": now_iso} if ":now" in stmt else ())
        if rebuild:
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                table, rowid, parent, _ = broken[0]
                raise StorageError(f"migration {mig.path.name} failed, database left at version "
                                   f"{current_version(conn)}: {len(broken)} rows break a foreign "
                                   f"key (first: {table} row {rowid} -> {parent})")
        conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (mig.version, mig.name, now_iso),
        )
        conn.execute("COMMIT")
    except BaseException as exc:
        # Whatever failed (SQL, reading the file, an interrupt), never leave the transaction open.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if not isinstance(exc, sqlite3.Error) or is_busy(exc):
            raise  # busy: another process holds the lock, the caller retries; nothing applied
        err = translate(exc, conn.label)
        raise type(err)(f"migration {mig.path.name} failed, database left at version "
                        f"{current_version(conn)}: {err}") from exc
    finally:
        if rebuild:
            conn.execute("PRAGMA legacy_alter_table = OFF")
            conn.execute("PRAGMA foreign_keys = ON")
    return True
