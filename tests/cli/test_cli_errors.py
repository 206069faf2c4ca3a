"""Errors: one line on stderr, the right exit code, never a traceback, the database untouched."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from durableflow import Engine

READ_COMMANDS = [["runs"], ["status", "r1"], ["history", "r1"], ["workflows"], ["doctor"],
                 ["recover"], ["dead-letters"], ["graph", "r1"], ["pause", "r1"]]
WRITE_COMMANDS = [["start", "{chain}"], ["run", "{chain}"], ["worker", "--until-idle"]]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def argv(args, chain):
    return [a.replace("{chain}", str(chain)) for a in args]


def assert_one_error_line(result, code=1):
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("durableflow: error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("args", READ_COMMANDS + WRITE_COMMANDS, ids=lambda a: a[0])
def test_a_file_that_is_not_a_database(invoke, db, chain, args):
    db.write_bytes(b"definitely not an sqlite file\n" * 200)
    before = digest(db)
    line = assert_one_error_line(invoke(*argv(args, chain)))
    assert f"{db}: not a durableflow database" in line
    assert digest(db) == before


def newer_database(db):
    Engine(db).close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', 'later')")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize("args", READ_COMMANDS + WRITE_COMMANDS, ids=lambda a: a[0])
def test_a_database_from_a_newer_durableflow(invoke, db, chain, args):
    newer_database(db)
    before = digest(db)
    line = assert_one_error_line(invoke(*argv(args, chain)))
    assert "newer than this durableflow understands" in line
    assert digest(db) == before


def test_a_read_only_database(invoke, db, chain, tmp_path):
    run_id = invoke("start", chain).stdout.strip()
    with Engine(db):
        pass
    uri = f"file:{db}?mode=ro"
    before = digest(db)
    line = assert_one_error_line(invoke("start", chain, db_path=uri))
    assert "read-only" in line
    line = assert_one_error_line(invoke("cancel", run_id, db_path=uri))
    assert "read-only" in line
    listed = invoke("runs", "--json", db_path=uri)  # reading still works
    assert listed.exit_code == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    assert digest(db) == before


def test_a_database_in_a_missing_folder(invoke, tmp_path, chain):
    line = assert_one_error_line(invoke("start", chain, db_path=tmp_path / "no" / "x.db"))
    assert "does not exist" in line


def test_db_from_the_environment(invoke, tmp_path, chain, monkeypatch):
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("DURABLEFLOW_DB", str(env_db))
    run_id = invoke("start", chain, db_path=None).stdout.strip()
    assert env_db.exists()
    assert json.loads(invoke("runs", "--json", db_path=None).stdout)[0]["run_id"] == run_id


def test_default_db_is_durableflow_db_in_the_current_folder(invoke, tmp_path, chain, monkeypatch):
    monkeypatch.chdir(tmp_path)
    invoke("start", chain, db_path=None)
    assert (tmp_path / "durableflow.db").exists()


def test_an_unexpected_exception_is_one_line_not_a_traceback(invoke, chain, monkeypatch):
    invoke("start", chain)

    def broken(self, *args, **kwargs):
        raise RuntimeError("something odd")
    monkeypatch.setattr(Engine, "runs", broken)
    monkeypatch.delenv("DURABLEFLOW_DEBUG", raising=False)
    line = assert_one_error_line(invoke("runs"))
    assert "internal error: RuntimeError: something odd" in line


@pytest.mark.parametrize("args, message", [
    (["worker", "--concurrency", "0"], "0 is not in the range"),
    (["worker", "--lease", "3x"], "not a duration"),
    (["worker", "--lease", "0s"], "must be more than zero"),
    (["worker", "--max-wait", "forever"], "not a duration"),
    (["start", "{chain}", "--input", "novalue"], "is not key=value"),
    (["start", "{chain}", "--version", "0"], "0 is not in the range"),
    (["start", "{chain}", "--priority", "urgent"], "'urgent' is not one of"),
    (["runs", "--limit", "-1"], "is not in the range"),
    (["status"], "Missing argument 'RUN'"),
    (["graph"], "Missing argument 'FILE|RUN'"),
])
def test_bad_arguments_exit_2_with_the_usage_line(invoke, chain, db, args, message):
    result = invoke(*argv(args, chain))
    assert result.exit_code == 2
    assert "Usage: durableflow" in result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert not db.exists()


def test_errors_in_a_real_process_are_one_line(durableflow, db):
    db.write_bytes(b"garbage" * 100)
    proc = durableflow("runs")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"durableflow: error: {db}: not a durableflow database "
                                        "(file is not a database)"]
    proc = durableflow("worker", "--lease", "nope")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
