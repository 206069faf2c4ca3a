"""The store's plumbing: opening, migrating, and running read and write transactions.

Writers in one process share one connection behind a lock, so threads of one process never make
each other wait on SQLite's busy handler (which sleeps in whole milliseconds). Between processes,
`BEGIN IMMEDIATE` fails fast on a locked database and tenacity retries it with short random
waits, bounded by `busy_timeout`; `database is locked` never reaches a caller before that.
Readers get a connection per thread; WAL lets them read while a writer writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, Callable, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from durableflow.clock import Clock
from durableflow.errors import DatabaseCorrupt, DurableflowError, StorageError
from durableflow.notify import ChangeWatcher, Notifier
from durableflow.storage import migrate as migrator
from durableflow.storage.connection import (Connection, connect, database_file, enable_wal, is_busy,
                                             is_io_error, translate)

T = TypeVar("T")

# Files this process has read through with quick_check and found sound, by (device, inode): a
# whole-file read (about a second per GB) is paid once per process and file, not per worker or
# per Engine.execute(). A file replaced at the same path (restored from a backup) is a new inode.
_checked: set[tuple[int, int]] = set()
_checked_lock = threading.Lock()

# A write whose transaction failed on a full disk or an I/O error (and so rolled back) is tried
# again after each of these waits before the error is raised: a write that fails once (an
# ENOSPC while a file was being rotated away) never reaches the caller. Failures that last are
# raised (DiskFull); a worker keeps a node's result and tries longer (worker.STORAGE_PATIENCE).
IO_RETRY_WAITS = (0.01, 0.05)


class StoreBase:
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        clock: Clock | None = None,
        synchronous: str = "NORMAL",
        busy_timeout: float = 30.0,
        readonly: bool = False,
        migrate: bool = True,
        check: bool = False,
    ):
        """With check=True the file is read through (quick_check, once per process and file)
        before anything is written to it, migrations included; a damaged file is refused
        untouched (DatabaseCorrupt)."""
        self.path = os.fspath(path)
        self.clock = clock or Clock()
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.readonly = readonly or "mode=ro" in self.path
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        file = database_file(self.path)
        new_file = file is not None and not file.exists()
        # The writer fails fast on a lock (timeout 0); _retry_busy does the waiting.
        # Opening races other processes that create, switch to WAL or migrate the same file: every
        # step that touches it retries a locked database.
        self._writer = self._retry_busy(
            lambda: connect(self.path, synchronous=synchronous, busy_timeout=0, readonly=self.readonly))
        try:
            migrations = migrator.available()
            self._retry_busy(migrator.check_not_newer, self._writer, migrations)
            if check:
                self.check_once()
            if not self.readonly:
                self._retry_busy(enable_wal, self._writer)
                if migrate:
                    migrator.migrate(self._writer, self.clock.now_iso(), migrations, retry=self._retry_busy)
        except BaseException:
            self._writer.close()
            raise
        if new_file and not self.readonly:
            # Made here, from nothing: there is nothing in it to check.
            key = self._file_key()
            if key is not None:
                with _checked_lock:
                    _checked.add(key)

    # --- transactions --------------------------------------------------------------------------

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, *args, **kwargs) in one BEGIN IMMEDIATE transaction; commit or roll back."""
        conn = self._writer
        # Before the lock: in a forked child, a lock some parent thread held at the fork is
        # held for ever, and waiting on it would hang instead of saying what is wrong.
        conn.check_owner()
        with self._write_lock:
            try:
                return self._txn(conn, fn, args, kwargs)
            except sqlite3.Error as exc:
                if is_io_error(exc):
                    return self._retry_io(conn, fn, args, kwargs, exc)
                if not is_busy(exc):
                    raise translate(exc, self.path) from exc
            return self._retry_busy(self._txn, conn, fn, args, kwargs)

    def _retry_io(self, conn: Connection, fn, args, kwargs, exc: sqlite3.Error):
        """The transaction rolled back on a full disk or an I/O error: run it again (the same
        function: transactions may run more than once, as busy retries already do)."""
        for wait in IO_RETRY_WAITS:
            self.clock.sleep(wait)
            try:
                return self._txn(conn, fn, args, kwargs)
            except sqlite3.Error as again:
                if is_busy(again):
                    return self._retry_busy(self._txn, conn, fn, args, kwargs)
                if not is_io_error(again):
                    raise translate(again, self.path) from again
                exc = again
        raise translate(exc, self.path) from exc

    def _txn(self, conn: Connection, fn, args, kwargs):
        conn.reset_buffers()
        conn.execute(conn.sql.database.begin_write)
        try:
            result = fn(conn, *args, **kwargs)
            conn.flush()
            conn.execute("COMMIT")
        except BaseException:
            conn.reset_buffers()
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite may already have rolled back (e.g. SQLITE_FULL)
            raise
        conn.committed()
        return result

    def _retry_busy(self, fn, *args):
        retrying = Retrying(
            retry=retry_if_exception(is_busy),
            # Up to 2 ms at first (1 ms on average, SQLite's own first step), then up to 4 and 5
            # ms. Shorter waits were tried: they hand the lock back and forth more often, and
            # two to four worker processes lost ~20% of their throughput to the hand-overs.
            wait=wait_random_exponential(multiplier=0.001, max=0.005),
            stop=stop_after_delay(self.busy_timeout),
            reraise=True,
        )
        try:
            return retrying(fn, *args)
        except DurableflowError:
            raise
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(conn, ...) in one read transaction, a consistent snapshot across its statements."""
        conn = self._reader()
        conn.run_states = None
        try:
            conn.execute(conn.sql.database.begin_read)
            try:
                return fn(conn, *args, **kwargs)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def _reader(self) -> Connection:
        if self._closed:
            raise StorageError(f"{self.path}: store is closed")
        self._writer.check_owner()  # a forked child (readers are opened by the writer's process)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, synchronous=self.synchronous,
                           busy_timeout=self.busy_timeout, readonly=self.readonly, create=False)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def now_iso(self) -> str:
        return self.clock.now_iso()

    # --- upkeep --------------------------------------------------------------------------------

    def data_version(self) -> int:
        """A number that moves whenever another connection (another process, or this
        process's writer) commits to the file: no transaction, no lock, a few microseconds."""
        conn = self._reader()
        try:
            return conn.execute(conn.sql.database.data_version).fetchone()[0]
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def change_watcher(self, notifier: Notifier) -> ChangeWatcher:
        """What wakes this process's idle workers when another process commits: a look at
        data_version every few milliseconds."""
        return ChangeWatcher(self.data_version, notifier)

    def quick_check(self) -> list[str]:
        return self.read(lambda c: [r[0] for r in c.execute(c.sql.database.quick_check).fetchall()])

    def check_once(self) -> None:
        """Read the whole file through (quick_check) unless this process already found it sound;
        raise DatabaseCorrupt, naming the first problem, if it is not. Only a sound verdict is
        kept: a damaged file is checked (and refused) again each time."""
        key = self._file_key()
        if key is not None:
            with _checked_lock:
                if key in _checked:
                    return
        problems = [p for p in self.quick_check() if p != "ok"]
        if problems:
            first = " ".join(problems[0].split())  # SQLite's report spans lines
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DatabaseCorrupt(f"{self.path}: database is corrupt (quick_check: {first}{more}); "
                                  f"run `durableflow doctor`")
        if key is not None:
            with _checked_lock:
                _checked.add(key)

    def _file_key(self) -> tuple[int, int] | None:
        """(device, inode) of the database file (None if it cannot be told)."""
        name = database_file(self.path)
        try:
            st = os.stat(name) if name is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_dev, st.st_ino)

    def integrity_check(self) -> list[str]:
        return self.read(lambda c: [r[0] for r in c.execute(c.sql.database.integrity_check).fetchall()])

    def schema_version(self) -> int:
        return self.read(migrator.current_version)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer.owner_pid != os.getpid():
            # A forked child: these connections and locks are the parent's. Closing them here
            # could wait on a lock no thread of ours holds; they go when the child exits.
            return
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._write_lock:
            self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
