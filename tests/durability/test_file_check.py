"""The whole-file check (quick_check): once per process and file, and before anything is written
(issue 11, points 11 and 15).

What checks: the commands that carry out work (`worker`, `run`), `engine.worker()`,
`Engine.execute()` and `Engine(path, check=True)` read the whole file through before their first
write, and refuse a damaged file untouched. `doctor` runs the full integrity_check. The other
commands do not scan; SQLite checks each page they read."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durableflow import DatabaseCorrupt, Engine
from durableflow.storage.base import StoreBase

REPO = Path(__file__).resolve().parents[2]
CHAIN = {"workflowId": "chk", "nodes": [{"nodeId": "a", "runtimeType": "Noop"},
                                        {"nodeId": "b", "runtimeType": "Noop"}],
         "connections": [{"sourceNodeId": "a", "targetNodeId": "b"}]}


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """The paths quick_check read, in order."""
    seen: list[str] = []
    real = StoreBase.quick_check

    def counting(self):
        seen.append(self.path)
        return real(self)

    monkeypatch.setattr(StoreBase, "quick_check", counting)
    return seen


def made_elsewhere(db: Path) -> Path:
    """A database file made by another process: this one knows nothing of its pages."""
    subprocess.run([sys.executable, "-c", "import sys; from durableflow import Engine; "
                    "Engine(sys.argv[1]).close()", str(db)], check=True, timeout=120, cwd=REPO)
    return db


def test_execute_reads_the_file_through_once_per_process_and_file(tmp_path, checks):
    db = made_elsewhere(tmp_path / "once.db")
    with Engine(db) as engine:
        for _ in range(3):
            assert engine.execute(CHAIN, timeout=30).status == "completed"
    with Engine(db) as again:              # another Engine on the same file, same process
        assert again.execute(CHAIN, timeout=30).status == "completed"
        with again.worker(concurrency=1):   # a worker of this process: checked already
            pass
    assert checks == [str(db)]
    other = made_elsewhere(tmp_path / "other.db")   # another file is checked on its own
    with Engine(other) as engine:
        assert engine.execute(CHAIN, timeout=30).status == "completed"
    assert checks == [str(db), str(other)]


def test_a_file_this_process_made_is_not_read_through(tmp_path, checks):
    with Engine(tmp_path / "new.db") as engine:   # made here from nothing: nothing to check
        assert engine.execute(CHAIN, timeout=30).status == "completed"
    assert checks == []


def test_a_file_replaced_at_the_same_path_is_checked_again(tmp_path, checks):
    db = made_elsewhere(tmp_path / "swap.db")
    with Engine(db) as engine:
        engine.execute(CHAIN, timeout=30)
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    copy.replace(db)                        # a restore from a backup: a new file, a new check
    with Engine(db) as engine:
        engine.execute(CHAIN, timeout=30)
    assert checks == [str(db), str(db)]


def _damaged(tmp_path: Path, name: str = "damaged.db") -> Path:
    """A file with a few finished runs whose dead_letters table (which a run that goes well
    never reads) has a page of garbage: it opens and runs, and only reading the whole file
    finds the damage. Made in a child process, so that this process has no sound verdict on it."""
    db = tmp_path / name
    code = ("import sys; from durableflow import Engine\n"
            f"e = Engine(sys.argv[1])\n"
            f"for _ in range(3): e.execute({CHAIN!r}, timeout=30)\n"
            "e.close()")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=120, cwd=REPO)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'dead_letters'").fetchone()
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xee" * (page_size // 2))
    return db


def _state(db: Path) -> tuple[str, int]:
    """The database file's bytes, and how many bytes its WAL holds (none: nothing written)."""
    wal = Path(f"{db}-wal")
    return hashlib.sha256(db.read_bytes()).hexdigest(), wal.stat().st_size if wal.exists() else 0


def _cli(db: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=db.parent)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["worker", "--until-idle", "--max-wait", "1s"], ["run", "wf.json"]],
                         ids=["worker", "run"])
def test_worker_and_run_refuse_a_damaged_file_before_writing_anything(tmp_path, command):
    db = _damaged(tmp_path)
    (tmp_path / "wf.json").write_text(json.dumps({**CHAIN, "workflowId": "chk-new"}))
    before = _state(db)
    result = _cli(db, *command)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("durableflow: error: ") and "database is corrupt (" in lines[0]
    assert str(db) in lines[0] and "durableflow doctor" in lines[0]
    assert _state(db) == before            # no workers row, no run, no migration, nothing


def test_engine_execute_and_a_checked_open_refuse_a_damaged_file_untouched(tmp_path):
    db = _damaged(tmp_path)
    before = _state(db)
    with pytest.raises(DatabaseCorrupt, match=r"database is corrupt \("):
        Engine(db, check=True)
    assert _state(db) == before
    engine = Engine(db)                     # opening without the check reads the schema only
    try:
        with pytest.raises(DatabaseCorrupt, match=r"database is corrupt"):
            engine.execute(CHAIN, timeout=30)
        with pytest.raises(DatabaseCorrupt, match=r"database is corrupt"):
            engine.worker(concurrency=1).start()
        with pytest.raises(DatabaseCorrupt):   # a damaged file is refused every time, not once
            engine.execute(CHAIN, timeout=30)
    finally:
        engine.close()
    assert _state(db) == before


def test_a_loop_of_execute_calls_costs_little_per_call(tmp_path):
    """Neither a whole-file read nor a worker's stop holds each call: a worker's keeper leaves
    as soon as it is told, not at its next tenth-of-a-second tick."""
    db = made_elsewhere(tmp_path / "loop.db")
    one = {"workflowId": "one", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]}
    with Engine(db) as engine:
        engine.execute(one, timeout=30)              # the one whole-file read
        started = time.monotonic()
        for _ in range(10):
            assert engine.execute(one, timeout=30).status == "completed"
        took = time.monotonic() - started
    assert took < 0.5, f"10 execute() calls took {took:.2f}s"
