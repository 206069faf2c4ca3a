"""The store's plumbing on PostgreSQL: opening, migrating, and running read and write transactions.

`PgStore` is a `Store` whose plumbing is this class's: `Store(...)` given a `postgresql://` DSN
makes one (storage/store.py), so the choice is made once, when the store opens, and SQLite's
path gains nothing. Writers of one process share one connection behind a lock, as on SQLite;
every write transaction begins with the advisory lock all writers take (database.begin_write),
so writers of every process and host take turns exactly as SQLite's do. Readers take a
connection from a psycopg_pool pool for each read transaction (a REPEATABLE READ snapshot).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, TypeVar

import psycopg
import psycopg_pool

from durableflow.clock import Clock
from durableflow.notify import Notifier
from durableflow.errors import DatabaseCorrupt, DatabaseUnavailable, DurableflowError, StorageError
from durableflow.storage.postgres import listen
from durableflow.storage.postgres import migrate as migrator
from durableflow.storage.postgres.clock import ServerClock
from durableflow.storage.postgres.connection import (PgConnection, configure, connect, is_busy,
                                                     is_disconnect, is_io_error, translate)
from durableflow.storage.base import StoreBase
from durableflow.storage.methods import StoreMethods
from durableflow.storage.postgres.dsn import SecretDsn, full_text, parse

T = TypeVar("T")
log = logging.getLogger("durableflow.storage")

IO_RETRY_WAITS = (0.01, 0.05)
# Seconds a reader waits for a pooled connection before asking the server whether it is there.
PROBE_AFTER = 2.0
# Readers' connections per store: a worker's threads read now and then; an Engine's callers
# (status, wait) a little more. Beyond this a reader waits for one to come back.
POOL_SIZE = 8

# DSNs (their masked labels) this process has checked with quick_check and found sound.
_checked: set[str] = set()
_checked_lock = threading.Lock()


class PostgresPlumbing:
    """Placed before StoreBase in a PgStore's classes: every method here replaces SQLite's."""

    backend = "postgres"

    def __init__(self, path, *, clock: Clock | None = None, synchronous: str = "NORMAL",
                 busy_timeout: float = 30.0, readonly: bool = False, migrate: bool = True,
                 check: bool = False):
        dsn = parse(path)
        self.dsn = dsn
        # Prints without the password; Engine(store.path) still reaches the same database.
        self.path = SecretDsn(full_text(path))
        self.label = dsn.label
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.readonly = readonly
        self._write_lock = threading.RLock()
        self._closed = False
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._writer = self._connect()
        # Ends every write transaction, in one round trip: a transaction that changed a row (it
        # has a transaction id) notifies the store's listeners, delivered only if it commits. One
        # that changed nothing (a claim that found no work) wakes nobody, or idle workers would
        # wake each other for ever.
        self._commit = (f"SELECT pg_notify('{listen.channel_name(dsn.schema)}', '') "
                        f"WHERE pg_current_xact_id_if_assigned() IS NOT NULL; COMMIT")
        try:
            # Opens no connection until a reader asks for one.
            self._pool = self._new_pool()
            self.clock = clock or ServerClock(self._server_time)
            migrations = migrator.available()
            migrator.check_not_newer(self._writer, migrations)
            if check:
                self.check_once()
            if not readonly and migrate:
                migrator.migrate(self._writer, dsn.schema, self.clock.now_iso(), migrations)
        except BaseException:
            if self._pool is not None:
                self._pool.close()
            self._writer.close()
            raise

    def _new_pool(self) -> psycopg_pool.ConnectionPool:
        return psycopg_pool.ConnectionPool(
            self.dsn.conninfo, min_size=0, max_size=POOL_SIZE, open=True, num_workers=1,
            kwargs={"autocommit": True}, configure=self._configure,
            timeout=self.busy_timeout, name="durableflow-readers", max_idle=60)

    def _reader(self) -> psycopg.Connection:
        """A connection of the pool. None free within PROBE_AFTER seconds: the server may be
        gone, so ask it directly (a one-line DatabaseUnavailable if it is); if it answers, the
        pool may still be waiting out its reconnect backoff after an outage, so a new pool
        takes over, and the caller waits for it as long as busy_timeout."""
        pool = self._pool
        try:
            return pool.getconn(timeout=min(PROBE_AFTER, self.busy_timeout))
        except psycopg_pool.PoolTimeout:
            pass
        try:
            psycopg.connect(self.dsn.conninfo, autocommit=True, connect_timeout=2).close()
        except psycopg.Error as exc:
            raise translate(exc, self.label) from None
        with self._write_lock:
            if self._pool is pool and not self._closed:
                log.info("%s: reader pool replaced after getting no connection in %ss", self.label, PROBE_AFTER)
                self._pool = self._new_pool()
                pool.close(timeout=0)
        pool = self._pool
        try:
            return pool.getconn(timeout=self.busy_timeout)
        except psycopg_pool.PoolTimeout as exc:
            raise DatabaseUnavailable(f"{self.label}: no connection to the PostgreSQL server within "
                                      f"{self.busy_timeout:g}s ({exc})") from None

    def _configure(self, raw: psycopg.Connection) -> None:
        configure(raw, self.dsn.schema)
        if self.readonly:
            raw.execute("SET default_transaction_read_only = on")

    def _connect(self) -> PgConnection:
        conn = connect(self.dsn, connect_timeout=min(self.busy_timeout, 10.0))
        if self.readonly:
            conn.raw.execute("SET default_transaction_read_only = on")
        return conn

    # --- transactions --------------------------------------------------------------------------

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, *args, **kwargs) in one write transaction (the advisory lock held);
        commit or roll back. A conflict or a full disk is retried, as on SQLite."""
        conn = self._writer
        conn.check_owner()
        with self._write_lock:
            if self._closed:
                raise StorageError(f"{self.label}: store is closed")
            deadline = time.monotonic() + self.busy_timeout
            io_waits = list(IO_RETRY_WAITS)
            while True:
                conn = self._live_writer()
                try:
                    return self._txn(conn, fn, args, kwargs)
                except psycopg.Error as exc:
                    if is_disconnect(exc) or conn.broken:
                        conn.close()
                        raise translate(exc, self.label) from None
                    if is_busy(exc) and time.monotonic() < deadline:
                        continue
                    if is_io_error(exc) and io_waits:
                        self.clock.sleep(io_waits.pop(0))
                        continue
                    raise translate(exc, self.label) from None

    def _live_writer(self) -> PgConnection:
        """The writer, opened again if the server dropped it (a restart, a failover)."""
        if self._writer.broken:
            self._writer = self._connect()
        return self._writer

    def _txn(self, conn: PgConnection, fn, args, kwargs):
        conn.reset_buffers()
        conn.execute(conn.sql.database.begin_write)
        try:
            result = fn(conn, *args, **kwargs)
            conn.flush()
            conn.execute(self._commit)
        except BaseException:
            conn.reset_buffers()
            if not conn.broken and conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    pass
            raise
        conn.committed()
        return result

    def _retry_busy(self, fn, *args):
        return fn(*args)

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, ...) in one read transaction, a consistent snapshot across its
        statements. A connection the server dropped (a restart) is replaced once: a read can
        run again."""
        if self._closed or self._pool is None:
            raise StorageError(f"{self.label}: store is closed")
        self._writer.check_owner()
        for attempt in (1, 2):
            raw = self._reader()
            conn = PgConnection(raw, self.label)   # fresh: no run states cached
            try:
                conn.execute(conn.sql.database.begin_read)
                try:
                    return fn(conn, *args, **kwargs)
                finally:
                    if not conn.broken and conn.in_transaction:
                        raw.execute("COMMIT")
            except psycopg.Error as exc:
                if attempt == 1 and conn.broken:
                    continue
                raise translate(exc, self.label) from None
            finally:
                self._give_back(raw)
        raise AssertionError("unreachable")

    def _give_back(self, raw: psycopg.Connection) -> None:
        pool = self._pool
        try:
            pool.putconn(raw)
        except Exception:   # a pool replaced meanwhile: not one of its connections
            raw.close()

    def _server_time(self) -> float:
        """The server's clock (epoch seconds): one statement outside any transaction."""
        raw = self._reader()
        try:
            conn = PgConnection(raw, self.label)
            return conn.execute(conn.sql.database.server_time).fetchone()[0]
        except psycopg.Error as exc:
            raise translate(exc, self.label) from None
        finally:
            self._give_back(raw)

    def change_watcher(self, notifier: Notifier) -> listen.ListenWatcher:
        """What wakes this process's idle workers when another process commits: LISTEN."""
        def connect() -> psycopg.Connection:
            return psycopg.connect(self.dsn.conninfo, autocommit=True,
                                   connect_timeout=max(1, int(min(self.busy_timeout, 10))))
        return listen.ListenWatcher(connect, listen.channel_name(self.dsn.schema), notifier)

    # --- upkeep --------------------------------------------------------------------------------

    def data_version(self) -> int:
        return self.read(lambda c: c.execute(c.sql.database.data_version).fetchone()[0])

    def check_once(self) -> None:
        with _checked_lock:
            if self.label in _checked:
                return
        problems = [p for p in self.read(lambda c: [r[0] for r in c.execute(c.sql.database.quick_check)])
                    if p != "ok"]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DatabaseCorrupt(f"{self.label}: database check failed ({problems[0]}{more}); "
                                  f"run `durableflow doctor`")
        with _checked_lock:
            _checked.add(self.label)

    def _file_key(self):
        return None

    def schema_version(self) -> int:
        return self.read(migrator.current_version)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer.owner_pid != os.getpid():
            return   # a forked child: the parent's connections go when the child exits
        if self._pool is not None:
            self._pool.close()
        with self._write_lock:
            self._writer.close()


class PgStore(PostgresPlumbing, StoreMethods, StoreBase):
    """A Store on PostgreSQL: the Store's methods over this plumbing (StoreBase's for the rest)."""
