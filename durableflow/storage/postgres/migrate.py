"""PostgreSQL's forward migrations (postgres/migrations/, a series of its own).

Each migration file runs whole, in one transaction with its `schema_version` row, while the
store's write lock (the advisory lock every write transaction takes) is held: processes opening
a new database together apply each migration once, the others find it done.
"""

from __future__ import annotations

import psycopg

from durableflow.errors import SchemaVersionError, StorageError
from durableflow.storage import migrate as sqlite_migrate
from durableflow.storage.migrate import Migration
from durableflow.storage.postgres.connection import WRITE_LOCK, PgConnection, translate


def available() -> list[Migration]:
    return sqlite_migrate.available(sqlite_migrate.sql_root() / "postgres")


def current_version(conn: PgConnection) -> int:
    try:
        if conn.raw.execute("SELECT to_regclass('schema_version') IS NULL").fetchone()[0]:
            return 0
        return conn.raw.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    except psycopg.Error as exc:
        raise translate(exc, conn.label) from None


def check_not_newer(conn: PgConnection, migrations: list[Migration]) -> int:
    """The database's schema version, refusing a newer one and a schema that holds someone
    else's tables (durableflow would otherwise add its own beside them)."""
    version = current_version(conn)
    if version == 0:
        try:
            others = [r[0] for r in conn.raw.execute(
                "SELECT table_name::text FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY 1 LIMIT 4")]
        except psycopg.Error as exc:
            raise translate(exc, conn.label) from None
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise StorageError(f"{conn.label}: not a durableflow database (its schema holds other "
                               f"tables: {shown}); give durableflow a database or a schema "
                               f"(?schema=NAME) of its own. Nothing was changed.")
    latest = migrations[-1].version if migrations else 0
    if version > latest:
        raise SchemaVersionError(
            f"{conn.label}: database schema is version {version}, newer than this durableflow "
            f"understands ({latest}); upgrade durableflow. The database was not changed.")
    return version


def migrate(conn: PgConnection, schema: str, now_iso: str,
            migrations: list[Migration] | None = None) -> list[int]:
    """Create the schema if missing and apply every pending migration; returns those applied."""
    migrations = available() if migrations is None else migrations
    if check_not_newer(conn, migrations) >= (migrations[-1].version if migrations else 0):
        return []
    applied = []
    raw = conn.raw
    for mig in migrations:
        try:
            raw.execute("BEGIN")
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            # Only when missing: CREATE SCHEMA asks for a privilege an existing schema does not need.
            if raw.execute("SELECT to_regnamespace(%s) IS NULL", (f'"{schema}"',)).fetchone()[0]:
                raw.execute(f'CREATE SCHEMA "{schema}"')
            # Another process may have migrated while we waited for the lock.
            if check_not_newer(conn, migrations) >= mig.version:
                raw.execute("ROLLBACK")
                continue
            raw.execute(mig.path.read_text(encoding="utf-8"))
            raw.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, now_iso))
            raw.execute("COMMIT")
        except BaseException as exc:
            if not raw.closed and conn.in_transaction:
                try:
                    raw.execute("ROLLBACK")
                except psycopg.Error:
                    pass
            if not isinstance(exc, psycopg.Error):
                raise
            err = translate(exc, conn.label)
            try:
                at = current_version(conn)
            except StorageError:
                at = "unknown"
            raise type(err)(f"migration postgres/migrations/{mig.path.name} failed, database left at "
                            f"version {at}: {err}") from None
        applied.append(mig.version)
    return applied
