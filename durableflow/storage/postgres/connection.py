"""A psycopg 3 connection that gives the engine what it uses of a sqlite3 one, and the
translation of PostgreSQL's errors into durableflow's tree.

The engine's transaction code says `conn.execute(conn.sql.queue.claim_one, params)`, reads
`cursor.rowcount` and `cursor.lastrowid`, iterates rows as tuples, and asks `conn.in_transaction`.
`PgConnection` answers all of that over a psycopg connection in autocommit mode (so, as with
SQLite's `isolation_level=None`, a transaction is exactly what BEGIN ... COMMIT says).
Values come back as SQLite gives them: JSON as text, whole numbers as int, and booleans go in as
0/1, so the code above the store never learns which database it talks to.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import psycopg
from psycopg import errors as pgerrors
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus

from durableflow.errors import (
    DatabaseBusy,
    DatabaseReadOnly,
    DatabaseUnavailable,
    DiskFull,
    ForkedConnection,
    StorageError,
)
from durableflow.storage.buffers import TxnBuffers
from durableflow.storage.postgres.dsn import Dsn, mask
from durableflow.storage.statements import Dialect

# One constant for every write transaction (phase 1 of issue 18): PostgreSQL writers take turns
# as SQLite's do, so every rule that relies on one writer at a time (joins, limits, a schedule
# firing once, reclaim) holds unchanged. "df" in ASCII, then 18.
WRITE_LOCK = 0x6466_0012

# --- `?` and `:name` to psycopg's `%s` and `%(name)s` ----------------------------------------------

_TOKENS = re.compile(
    r"""('(?:[^']|'')*')            # a string literal
      | ("(?:[^"]|"")*")            # a quoted identifier
      | (--[^\n]*)                  # a comment
      | (::)                        # a cast, not a parameter
      | (\?)                        # a positional parameter
      | :([A-Za-z_][A-Za-z0-9_]*)   # a named parameter
      | (%%|%s|%\([A-Za-z_][A-Za-z0-9_]*\)s)  # already psycopg's (text built from a statement)
      | (%)                         # a literal percent sign
    """, re.VERBOSE)


def convert(sql: str) -> tuple[str, bool]:
    """SQLite's parameter syntax in `sql` as psycopg's, and whether it takes parameters at all.

    Text in quotes and comments is kept. A statement without parameters is sent as it is, with
    no parameters (psycopg then uses the simple query protocol, which also runs a script such as
    `BEGIN ...; SELECT pg_advisory_xact_lock(...)` in one round trip); only one with parameters
    has its literal `%` doubled."""
    found = False

    def one(m: re.Match) -> str:
        nonlocal found
        if m.group(5):
            found = True
            return "%s"
        if m.group(6):
            found = True
            return f"%({m.group(6)})s"
        if m.group(7):
            # storage.buffers builds a multi-row INSERT from a statement already rewritten.
            found = found or m.group(7) != "%%"
            return m.group(7)
        if m.group(8):
            return "%%"
        # psycopg reads `%` inside quotes too: a literal's percent signs are doubled as well.
        return m.group(0).replace("%", "%%") if m.group(1) else m.group(0)

    text = _TOKENS.sub(one, sql)
    return (text, True) if found else (sql, False)


def to_psycopg(sql: str) -> str:
    return convert(sql)[0]


# Statement text as the connection sends it (and whether it takes parameters), by the text the
# code gave: the dialect's statements map to themselves (rewritten once at load), ad-hoc ones
# ("COMMIT", a savepoint, an import's INSERT) are rewritten once and remembered.
_sent: dict[str, tuple[str, bool]] = {}


def _load_dialect() -> Dialect:
    originals: dict[str, tuple[str, bool]] = {}

    def rewrite(sql: str) -> str:
        text, has_params = convert(sql)
        originals[text] = (text, has_params)
        return text

    dialect = Dialect("postgres", Path(__file__).parent, rewrite=rewrite)
    _sent.update(originals)
    return dialect


POSTGRES = _load_dialect()


# --- values as SQLite gives them -----------------------------------------------------------------

class _BoolAsInt(Dumper):
    """True/False go in as 1/0, as into SQLite's integer flags."""
    oid = psycopg.adapters.types["int2"].oid

    def dump(self, obj):
        return b"1" if obj else b"0"


class _TextLoader(Loader):
    """JSON comes back as its text, as SQLite stores it (the engine parses it where it needs)."""

    def load(self, data):
        return bytes(data).decode("utf-8")


class _NumberLoader(Loader):
    """numeric (sum() of integers, avg()) comes back as int when whole, else float, as in SQLite."""

    def load(self, data):
        text = bytes(data).decode("ascii")
        if text.lstrip("-").isdigit():
            return int(text)
        return float(text)


def _adapt(conn: psycopg.Connection) -> None:
    conn.adapters.register_dumper(bool, _BoolAsInt)
    conn.adapters.register_loader("json", _TextLoader)
    conn.adapters.register_loader("jsonb", _TextLoader)
    conn.adapters.register_loader("numeric", _NumberLoader)


class PgCursor(psycopg.Cursor):
    """`lastrowid` is the `RETURNING id` of the insert just run (PostgreSQL has no rowid)."""

    _rowid = None

    @property
    def lastrowid(self):
        if self._rowid is None:
            row = self.fetchone()
            self._rowid = None if row is None else row[0]
        return self._rowid


def configure(raw: psycopg.Connection, schema: str) -> None:
    """Settings every connection of a store gets: values as SQLite's, the store's schema first
    on the search path, and times in UTC."""
    _adapt(raw)
    raw.cursor_factory = PgCursor
    raw.execute("SELECT set_config('search_path', %s, false), set_config('TimeZone', 'UTC', false)",
                (f'"{schema}"',))


class PgConnection(TxnBuffers):
    """A write or read connection of a PostgreSQL store, with what its transaction writes at
    commit (storage.buffers). Like sqlite3's, it names its errors (`conn.Error`,
    `conn.IntegrityError`) for the engine's except clauses."""

    sql = POSTGRES
    Error = psycopg.Error
    IntegrityError = psycopg.IntegrityError
    claims = 0   # claim transactions so far: queue.claim_txn serves the oldest every FAIR_EVERY
    _trace = None

    def __init__(self, raw: psycopg.Connection, label: str):
        self.raw = raw
        self.label = label
        self.owner_pid = os.getpid()

    def set_trace_callback(self, fn) -> None:
        """As sqlite3's: fn(statement text) before each statement (tests count transactions)."""
        self._trace = fn

    def execute(self, sql: str, params=()) -> PgCursor:
        if self._trace is not None:
            self._trace(sql)
        sent = _sent.get(sql)
        if sent is None:
            sent = _sent[sql] = convert(sql)
        return self.raw.execute(sent[0], params if sent[1] else None)

    def executemany(self, sql: str, rows) -> PgCursor:
        sent = _sent.get(sql)
        if sent is None:
            sent = _sent[sql] = convert(sql)
        text = sent[0]
        cur = self.raw.cursor()
        cur.executemany(text, rows)
        return cur

    def check_owner(self) -> None:
        if self.owner_pid != os.getpid():
            raise ForkedConnection(
                f"{self.label}: connection opened in process {self.owner_pid} used in forked child "
                f"{os.getpid()}; open a new Engine/Store in the child")

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def close(self) -> None:
        self.raw.close()


def connect(dsn: Dsn, *, connect_timeout: float = 10.0) -> PgConnection:
    """A new connection with the store's settings, in autocommit mode."""
    try:
        raw = psycopg.connect(dsn.conninfo, autocommit=True,
                              connect_timeout=max(1, int(connect_timeout)))
    except psycopg.Error as exc:
        raise translate(exc, dsn.label) from None
    try:
        configure(raw, dsn.schema)
    except psycopg.Error as exc:
        raw.close()
        raise translate(exc, dsn.label) from None
    return PgConnection(raw, dsn.label)


# --- errors --------------------------------------------------------------------------------------

_RETRYABLE = (pgerrors.SerializationFailure, pgerrors.DeadlockDetected, pgerrors.LockNotAvailable)


def is_busy(exc: BaseException) -> bool:
    """A conflict with another transaction that the same transaction, run again, gets past."""
    return isinstance(exc, DatabaseBusy) or isinstance(exc, _RETRYABLE)


def is_io_error(exc: BaseException) -> bool:
    """The server could not write (a full disk, out of resources): rolled back, may pass."""
    return isinstance(exc, (pgerrors.DiskFull, pgerrors.InsufficientResources, pgerrors.IoError))


def is_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled) \
        and (exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P")))


def translate(exc: BaseException, where: str) -> StorageError:
    """Map a psycopg error to the durableflow tree in one line, keeping what the server said
    (with any DSN password in it masked)."""
    said = mask(" ".join(str(exc).split()))
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, (pgerrors.DiskFull, pgerrors.IoError)) or state == "53100":
        return DiskFull(f"{where}: disk full on the database server, transaction rolled back ({said})")
    if isinstance(exc, pgerrors.InsufficientResources):
        return DiskFull(f"{where}: the database server is out of resources, transaction rolled "
                        f"back ({said})")
    if isinstance(exc, pgerrors.ReadOnlySqlTransaction):
        return DatabaseReadOnly(f"{where}: database is read-only ({said})")
    if isinstance(exc, _RETRYABLE):
        return DatabaseBusy(f"{where}: database stayed locked by another transaction ({said})")
    low = said.lower()
    if "password authentication failed" in low or state in ("28P01", "28000"):
        return DatabaseUnavailable(f"{where}: the server refused the login: wrong password or "
                                   f"user ({said})")
    if "does not exist" in low and "database" in low and state in ("", "3D000"):
        return DatabaseUnavailable(f"{where}: no such database on the server ({said})")
    if isinstance(exc, psycopg.OperationalError) and (
            "connection refused" in low or "could not connect" in low or "connection failed" in low
            or "timeout expired" in low or "could not translate host name" in low):
        return DatabaseUnavailable(f"{where}: cannot reach the PostgreSQL server; is it running? ({said})")
    if is_disconnect(exc) or (isinstance(exc, psycopg.OperationalError) and "closed" in low):
        return DatabaseUnavailable(f"{where}: lost the connection to the PostgreSQL server ({said})")
    return StorageError(f"{where}: {said}")
