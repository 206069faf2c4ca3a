"""The connection factory and how SQLite's failures reach a user: settings, files, errors."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from durableflow.errors import (
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseReadOnly,
    DiskFull,
    DurableflowError,
    ForkedConnection,
    StorageError,
)
from durableflow.storage import NewMessage, Store
from durableflow.storage import migrate as migrator
from durableflow.storage.connection import connect


@pytest.fixture
def backend():
    """SQLite's own file, PRAGMAs, planner or migration series: these tests stay SQLite's (the
    PostgreSQL schema and its migrations are checked by tests/postgres)."""
    return "sqlite"


HELPERS = Path(__file__).parent / "helpers"


def pragma(conn, name):
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def file_state(path: Path) -> tuple:
    return (hashlib.sha256(path.read_bytes()).hexdigest(),
            sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)))


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, DurableflowError)
    assert text and "\n" not in text
    return text


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.001)


def filled(path: Path, clock, n=300, size=300) -> Path:
    with Store(path, clock=clock) as s:
        s.enqueue(*[NewMessage("task", payload="x" * size) for _ in range(n)])
    return path


# --- settings ------------------------------------------------------------------------------------

def test_defaults_wal_normal_busy_timeout_foreign_keys(store):
    for conn in (store._writer, store._reader()):
        assert pragma(conn, "journal_mode") == "wal"
        assert pragma(conn, "synchronous") == 1  # NORMAL
        assert pragma(conn, "foreign_keys") == 1
        assert pragma(conn, "journal_size_limit") == 64 * 1024 * 1024   # the WAL is cut back
    assert pragma(store._reader(), "busy_timeout") == 30_000
    # The writer fails fast on a lock and retries in Python; see test_a_locked_database_is_waited_for.
    assert pragma(store._writer, "busy_timeout") == 0
    assert store.read(lambda c: pragma(c, "synchronous")) == 1


def test_synchronous_full_is_selectable(db_path, clock):
    with Store(db_path, clock=clock, synchronous="full") as s:
        assert pragma(s._writer, "synchronous") == 2
        assert s.read(lambda c: pragma(c, "synchronous")) == 2


def test_connect_sets_busy_timeout_and_rejects_unknown_synchronous(db_path):
    conn = connect(db_path, busy_timeout=2.5)
    try:
        assert pragma(conn, "busy_timeout") == 2500
        assert pragma(conn, "foreign_keys") == 1
    finally:
        conn.close()
    with pytest.raises(StorageError, match="synchronous must be one of"):
        connect(db_path, synchronous="sometimes")


def test_new_files_get_the_chosen_page_size_and_old_files_keep_theirs(tmp_path, clock):
    from durableflow.storage.connection import PAGE_SIZE
    with Store(tmp_path / "new.db", clock=clock) as s:
        assert pragma(s._writer, "page_size") == PAGE_SIZE
    old = tmp_path / "old.db"   # a durableflow file made before PAGE_SIZE was chosen
    conn = connect(old)
    conn.execute("PRAGMA page_size = 8192")
    migrator.migrate(conn, clock.now_iso())
    conn.close()
    with Store(old, clock=clock) as s:
        assert pragma(s._writer, "page_size") == 8192
        s.enqueue(NewMessage("task"))
        assert s.queue_counts()["ready"] == 1


@pytest.mark.parametrize("readonly", [False, True])
def test_a_sqlite_file_holding_other_tables_is_refused_untouched(tmp_path, clock, readonly):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = file_state(path)
    with pytest.raises(StorageError) as exc:
        Store(path, clock=clock, readonly=readonly)
    text = one_line(exc.value)
    assert "not a durableflow database" in text and "users" in text and str(path) in text
    assert file_state(path) == before


def test_foreign_keys_are_enforced(store):
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        store.enqueue(NewMessage("task", run_id="missing"))


def test_a_missing_folder_is_a_clear_error(tmp_path, clock):
    with pytest.raises(StorageError) as exc:
        Store(tmp_path / "nope" / "df.db", clock=clock)
    assert "does not exist" in one_line(exc.value)


# --- files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("as_uri", [False, True])
def test_new_database_files_are_private(tmp_path, clock, as_uri):
    old = os.umask(0)  # the mode must not depend on a lucky umask
    try:
        path = tmp_path / "private.db"
        with Store(f"file:{path}" if as_uri else path, clock=clock) as s:
            s.enqueue(NewMessage("task"))
            for name in ("private.db", "private.db-wal", "private.db-shm"):
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old)


def test_an_existing_files_mode_is_left_alone(db_path, clock):
    db_path.touch(mode=0o640)
    os.chmod(db_path, 0o640)
    Store(db_path, clock=clock).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o640


# --- fork -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["write", "read"])
def test_a_connection_used_in_a_forked_child_raises(store, op):
    store.enqueue(NewMessage("task"))
    store.queue_counts()  # this thread now has a reader connection too
    pid = os.fork()
    if pid == 0:  # child: report by exit code, never return into pytest
        code = 1
        try:
            try:
                store.enqueue(NewMessage("task")) if op == "write" else store.queue_counts()
                code = 2
            except ForkedConnection as exc:
                code = 0 if "fork" in str(exc) and "\n" not in str(exc) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.queue_counts()["ready"] == 1  # the parent's connections are unharmed


@pytest.mark.parametrize("op", ["write", "read", "close"])
def test_a_forked_child_is_told_even_while_a_parent_thread_holds_the_write_lock(store, op):
    # The lock is held by a thread that does not exist in the child: waiting on it would hang.
    held, release = threading.Event(), threading.Event()

    def hold():
        with store._write_lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(10)          # a hang ends the child with SIGALRM, a failure below
            try:
                if op == "write":
                    store.enqueue(NewMessage("task"))
                elif op == "read":
                    store._local.__dict__.clear()   # as a thread that never read in the parent
                    store.queue_counts()
                else:
                    store.close()
                    code = 0
                    raise SystemExit
                code = 2
            except ForkedConnection:
                code = 0
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join()
    assert os.waitstatus_to_exitcode(status) == 0
    store.enqueue(NewMessage("task"))   # the parent is unharmed
    assert store.queue_counts()["ready"] == 1


# --- not a database, corrupt, read-only -------------------------------------------------------------

@pytest.mark.parametrize("content", [b"this is not a database\n" * 400, b"SQLite format 3\x00" + b"\xee" * 8000])
def test_not_a_database_is_refused_untouched(tmp_path, clock, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    before = file_state(path)
    with pytest.raises(DatabaseCorrupt) as exc:
        Store(path, clock=clock)
    text = one_line(exc.value)
    assert str(path) in text
    assert file_state(path) == before


def test_a_healthy_database_passes_the_checks(store):
    store.enqueue(NewMessage("task"))
    assert store.quick_check() == ["ok"]
    assert store.integrity_check() == ["ok"]


def _problems(check) -> list[str]:
    try:
        return check()
    except DatabaseCorrupt as exc:
        return [one_line(exc)]


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_corrupt_pages_are_found_by_quick_check(tmp_path, clock, where):
    path = filled(tmp_path / "c.db", clock)
    page = 4096
    pages = path.stat().st_size // page
    first = {"start": 1, "middle": pages // 2, "end": pages - 4}[where]
    noise = random.Random(7).randbytes(page * 3)
    with open(path, "r+b") as f:
        f.seek(first * page)
        f.write(noise)
    damaged = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        store = Store(path, clock=clock)
    except DatabaseCorrupt as exc:  # damage SQLite trips over while opening is reported the same way
        assert "corrupt" in one_line(exc)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == damaged  # and the file is left as it was
        return
    with store:
        problems = _problems(store.quick_check)
        assert problems and problems != ["ok"]
        assert any("corrupt" in p or "malformed" in p or "page" in p for p in problems)


def test_read_only_uri_reads_and_refuses_writes(db_path, clock):
    filled(db_path, clock, n=3)
    before = file_state(db_path)[0]
    for path in (f"file:{db_path}?mode=ro", db_path):
        with Store(path, clock=clock, readonly=(path == db_path)) as s:
            assert s.queue_counts()["ready"] == 3
            assert s.message(1)["status"] == "ready"
            with pytest.raises(DatabaseReadOnly) as exc:
                s.enqueue(NewMessage("task"))
            assert "read-only" in one_line(exc.value)
            with pytest.raises(DatabaseReadOnly):
                s.claim("w")
            assert s.queue_counts()["ready"] == 3
    assert file_state(db_path)[0] == before


def test_read_only_open_of_a_path_that_looks_like_a_uri(tmp_path, clock):
    folder = tmp_path / "odd?name#x %41"
    folder.mkdir()
    path = filled(folder / "d.db", clock, n=2)
    with Store(path, clock=clock, readonly=True) as s:
        assert s.queue_counts()["ready"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd?name#x %41"]  # nothing opened elsewhere


@pytest.mark.skipif(sys.platform != "linux", reason="drops Linux capabilities when run as root")
def test_a_read_only_file_reads_and_refuses_writes(db_path, clock, helper_env, tmp_path):
    filled(db_path, clock, n=3)
    os.chmod(db_path, 0o444)
    try:
        before = file_state(db_path)[0]
        run = subprocess.run([sys.executable, str(HELPERS / "readonly_probe.py"), str(db_path)],
                             capture_output=True, text=True, timeout=30, env=helper_env(), cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        out = json.loads(run.stdout)
        assert out["counts"]["ready"] == 3
        assert out["write_error"] == "DatabaseReadOnly" and out["is_durableflow_error"]
        assert "\n" not in out["write_message"]
        assert file_state(db_path)[0] == before
    finally:
        os.chmod(db_path, 0o600)


# --- a full disk ----------------------------------------------------------------------------------

def test_disk_full_rolls_back_and_work_resumes_when_space_is_back(store, raw):
    store.enqueue(NewMessage("task"))
    conn = store._writer
    pages = pragma(conn, "page_count")
    assert conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages
    before = {t: raw.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("messages", "events")}
    with pytest.raises(DiskFull) as exc:
        store.enqueue(*[NewMessage("task", payload="x" * 2000) for _ in range(100)])
    text = one_line(exc.value)
    assert "rolled back" in text and "full" in text
    assert isinstance(exc.value.__cause__, sqlite3.Error)
    assert not conn.in_transaction
    assert {t: raw.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("messages", "events")} == before
    assert store.queue_counts() == {"ready": 1, "leased": 0, "acked": 0, "dead": 0}

    conn.execute("PRAGMA max_page_count = 1073741823")
    ids = store.enqueue(*[NewMessage("task", payload="x" * 2000) for _ in range(100)])
    assert len(ids) == 100
    claimed = store.claim("w", limit=101)
    store.ack_many(claimed)
    assert store.queue_counts()["acked"] == 101
    assert store.quick_check() == ["ok"]


# --- a locked database ----------------------------------------------------------------------------

def test_a_locked_database_is_waited_for(store, raw):
    attempts = []
    store._writer.set_trace_callback(lambda s: attempts.append(s) if s == "BEGIN IMMEDIATE" else None)
    raw.execute("BEGIN IMMEDIATE")
    result, error = [], []

    def enqueue():
        try:
            result.extend(store.enqueue(NewMessage("task")))
        except Exception as exc:  # reported to the test thread
            error.append(exc)

    t = threading.Thread(target=enqueue)
    t.start()
    try:
        wait_for(lambda: len(attempts) >= 3)  # it met the lock and is retrying
    finally:
        raw.execute("COMMIT")
    t.join(timeout=30)
    store._writer.set_trace_callback(None)
    assert not error and len(result) == 1


def test_a_lock_held_past_busy_timeout_is_database_busy(db_path, clock, raw):
    with Store(db_path, clock=clock, busy_timeout=0.2) as s:
        raw.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseBusy) as exc:
                s.enqueue(NewMessage("task"))
        finally:
            raw.execute("ROLLBACK")
        assert "locked" in one_line(exc.value)
        s.enqueue(NewMessage("task"))
