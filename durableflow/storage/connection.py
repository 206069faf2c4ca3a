"""The one connection factory, and the translation of SQLite's errors into durableflow's tree.

Connections run in autocommit mode (`isolation_level=None`) so that Python never opens a
transaction behind our back; writers say `BEGIN IMMEDIATE` themselves, which takes the write lock
up front and so never fails half-way with SQLITE_BUSY_SNAPSHOT.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from durableflow.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseReadOnly,
    DiskFull,
    ForkedConnection,
    StorageError,
)
from durableflow.storage.buffers import TxnBuffers
from durableflow.storage.statements import SQLITE

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


class Connection(sqlite3.Connection, TxnBuffers):
    """A sqlite3 connection that remembers the process that opened it, carries the SQL of its
    engine (`conn.sql.<family>.<statement>`) and what its transaction writes at commit
    (storage.buffers)."""

    owner_pid: int = 0
    label: str = ""
    sql = SQLITE
    claims = 0   # claim transactions so far: queue.claim_txn serves the oldest every FAIR_EVERY

    def check_owner(self) -> None:
        if self.owner_pid != os.getpid():
            raise ForkedConnection(
                f"{self.label}: connection opened in process {self.owner_pid} used in forked child "
                f"{os.getpid()}; open a new Engine/Store in the child"
            )


# Set in a child forked while durableflow workers ran in its parent: the parent's pid.
_forked_with_workers: int | None = None


def forked_with_workers(parent_pid: int) -> None:
    global _forked_with_workers
    _forked_with_workers = parent_pid


WAL_SIZE_LIMIT = 64 * 1024 * 1024

# Every commit writes each page it touched to the WAL in full, so the page size is paid per page
# per transaction; see PAGE_SIZE's note in the README's storage section.
PAGE_SIZE = 2048


def _create_private(path: Path) -> None:
    """Create a new database file readable by its owner only (the WAL and SHM files inherit it)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _uri_file(uri: str) -> tuple[Path | None, str]:
    """The file a `file:` URI names (None for an in-memory database) and its open mode."""
    parts = urlsplit(uri)
    mode = parse_qs(parts.query).get("mode", ["rwc"])[-1]
    name = unquote(parts.path)
    return (Path(name) if name and name != ":memory:" and mode != "memory" else None), mode


def database_file(path: str | os.PathLike) -> Path | None:
    """The file a path or `file:` URI names (None for an in-memory database)."""
    text = os.fspath(path)
    if text.startswith("file:"):
        return _uri_file(text)[0]
    return Path(text)


def connect(
    path: str | os.PathLike,
    *,
    synchronous: str = "NORMAL",
    busy_timeout: float = 5.0,
    readonly: bool = False,
    create: bool = True,
) -> Connection:
    """Open a connection with the project's settings. `path` may be a `file:` URI (e.g. `?mode=ro`)."""
    synchronous = synchronous.upper()
    if synchronous not in SYNCHRONOUS_MODES:
        raise StorageError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, not {synchronous!r}")
    text = os.fspath(path)
    if not text.strip():
        raise StorageError("the database path is empty; give durableflow a file path")
    if text == ":memory:" or "mode=memory" in text:
        raise StorageError("an in-memory database cannot be shared by workers and survives nothing; "
                           "give durableflow a file path")
    if _forked_with_workers is not None:
        raise ForkedConnection(
            f"{text}: this process ({os.getpid()}) was forked from {_forked_with_workers} while "
            f"durableflow workers ran there; the threads that held SQLite's locks did not come "
            f"along, so a database opened here could hang. Start child processes with "
            f"multiprocessing's 'spawn' or 'forkserver' method, or fork before starting workers")
    uri = text.startswith("file:")
    label = text
    if readonly and not uri:
        text, uri = f"file:{quote(str(Path(text).absolute()))}?mode=ro", True
    p, mode = _uri_file(text) if uri else (Path(text), "rwc")
    if p is not None and p.is_dir():
        raise StorageError(f"{label}: is a directory, not a database file")
    if p is not None and mode == "rwc":
        if not p.exists():
            if not create:
                raise StorageError(f"{label}: no such database")
            if not p.parent.is_dir():
                raise StorageError(f"{label}: folder {p.parent} does not exist")
            try:
                _create_private(p)
            except OSError as exc:
                raise StorageError(f"{label}: cannot create database: {exc.strerror}") from exc
    try:
        conn = sqlite3.connect(
            text, uri=uri, timeout=busy_timeout, isolation_level=None,
            check_same_thread=False, factory=Connection,
        )
    except sqlite3.Error as exc:
        raise translate(exc, label) from exc
    conn.owner_pid = os.getpid()
    conn.label = label
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Reading the schema first surfaces "file is not a database" before anything else runs.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, label) from exc
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # After a checkpoint, cut the WAL back to this size: a burst of work must not leave a
    # hundred-megabyte -wal file behind while the workers idle.
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
    return conn


def enable_wal(conn: Connection, page_size: int = PAGE_SIZE) -> None:
    """Switch to WAL (a write to the file header, so done only after the version check).

    A new, empty file gets `page_size` first: it can only be chosen before the first write.
    """
    try:
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.Error as exc:
        raise translate(exc, conn.label) from exc
    if str(mode).lower() != "wal":
        raise StorageError(f"{conn.label}: could not switch to WAL journal mode (got {mode})")


def is_busy(exc: BaseException) -> bool:
    """A lock held by another connection: worth retrying. An already translated DatabaseBusy counts,
    so helpers that translate their own errors (enable_wal, the migrator) are retried too."""
    if isinstance(exc, DatabaseBusy):
        return True
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
        or "database is locked" in str(exc)
    )


_IO_DOING = {"SQLITE_IOERR_WRITE": " writing", "SQLITE_IOERR_READ": " reading",
             "SQLITE_IOERR_SHORT_READ": " reading", "SQLITE_IOERR_FSYNC": " syncing to disk",
             "SQLITE_IOERR_TRUNCATE": " truncating", "SQLITE_IOERR_FSTAT": " reading the file's size"}


def is_io_error(exc: BaseException) -> bool:
    """A write that failed on a full disk, a file size limit or an I/O error: the transaction
    rolled back, and the same write may succeed once the cause has passed."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return isinstance(exc, sqlite3.OperationalError) and (
        name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk is full" in str(exc)
        or "disk I/O error" in str(exc))


def translate(exc: sqlite3.Error, where: str) -> StorageError:
    """Map a sqlite3 error to the durableflow tree, keeping what SQLite said."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    said = str(exc)
    if name.startswith("SQLITE_NOTADB") or "file is not a database" in said:
        return DatabaseCorrupt(f"{where}: not a durableflow database ({said})")
    if name.startswith("SQLITE_CORRUPT") or "malformed" in said:
        return DatabaseCorrupt(f"{where}: database is corrupt ({said}); run `durableflow doctor`")
    if name.startswith("SQLITE_READONLY") or "readonly database" in said:
        return DatabaseReadOnly(f"{where}: database is read-only ({said})")
    if name.startswith("SQLITE_FULL") or "disk is full" in said:
        return DiskFull(f"{where}: disk full, transaction rolled back ({said})")
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in said:
        # SQLite reports only ENOSPC as "full"; a file size limit (EFBIG) or a failing disk
        # (EIO) is an I/O error of the same write.
        doing = _IO_DOING.get(name, "")
        why = ("a failing disk" if doing == " reading"
               else "a full disk, a file size limit (ulimit -f) or a failing disk")
        return DiskFull(f"{where}: I/O error{doing}, transaction rolled back ({said}, "
                        f"{name or 'SQLITE_IOERR'}: {why})")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in said:
        return StorageError(f"{where}: cannot open database ({said})")
    if is_busy(exc):
        return DatabaseBusy(f"{where}: database stayed locked by another process ({said})")
    return StorageError(f"{where}: {said}")
