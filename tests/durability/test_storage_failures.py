"""Writes that fail (a full disk, a file size limit, an I/O error), issue 11, point 14: a worker
keeps a body's outcome and writes it again (bounded, with a backoff) instead of waiting out the
lease and running the body again; storage that keeps failing stops `run` within seconds with
one line naming the error. The strace sweep fails each write of a small run in turn and checks
that the file holds exactly what committed: nothing lost, nothing recorded twice, no stall."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from durableflow import DiskFull, Engine
from durableflow import worker as worker_module

REPO = Path(__file__).resolve().parents[2]

# A body appends its node id to the file named by $LEDGER (write(2), never pwrite64, so the
# sweep's injection never touches it): how often each body ran, whatever the database says.
LEDGER = "import os\nwith open(os.environ['LEDGER'], 'a') as f:\n    f.write(ctx.node_id + '\\n')\n"


def workflow(workflow_id: str = "sweep", first_extra: str = "") -> dict:
    """Python (on a pool thread, with a progress report), Noop (on the dispatcher), Python."""
    return {"workflowId": workflow_id, "nodes": [
        {"nodeId": "a", "runtimeType": "Python",
         "script": LEDGER + "ctx.progress(50, 'half way')\n" + first_extra + "output = 1"},
        {"nodeId": "b", "runtimeType": "Noop"},
        {"nodeId": "c", "runtimeType": "Python", "script": LEDGER + "output = ctx.input + 1"}],
        "connections": [{"sourceNodeId": "a", "targetNodeId": "b"},
                        {"sourceNodeId": "b", "targetNodeId": "c"}]}


def ran(ledger: Path) -> Counter:
    return Counter(ledger.read_text().split()) if ledger.exists() else Counter()


def disk_full() -> sqlite3.OperationalError:
    """What SQLite raises when a write hits ENOSPC (the transaction is rolled back)."""
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorname = "SQLITE_FULL"
    return exc


def attempts(run) -> list[tuple]:
    return sorted((n.node_id, n.attempt, n.status) for n in run.nodes)


COMPLETED = [("a", 1, "completed"), ("b", 1, "completed"), ("c", 1, "completed")]


# --- in process: the worker's handling -------------------------------------------------------------

def test_a_result_whose_write_failed_is_written_again_not_run_again(tmp_path, monkeypatch):
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("LEDGER", str(ledger))
    with Engine(tmp_path / "again.db") as engine:
        real = engine.execution.record_many
        left = [3]    # the first three writes of results fail at the end of their transaction

        def flaky(conn, items, now):
            out = real(conn, items, now)
            if left[0]:
                left[0] -= 1
                raise disk_full()
            return out

        engine.execution.record_many = flaky
        started = time.monotonic()
        run = engine.execute(workflow(), timeout=60)
        took = time.monotonic() - started
    assert run.status == "completed" and run.outputs == {"c": 2}
    assert attempts(run) == COMPLETED          # no attempt lost its lease
    assert ran(ledger) == {"a": 1, "c": 1}     # and no body ran twice
    assert left == [0]
    assert took < 10, f"took {took:.1f}s: a failed write must not cost a lease (30 s)"


def test_storage_that_keeps_failing_stops_execute_within_seconds(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGER", str(tmp_path / "ledger"))
    monkeypatch.setattr(worker_module, "STORAGE_PATIENCE", 1.0)
    with Engine(tmp_path / "full.db") as engine:
        def full(conn, items, now):
            raise disk_full()

        engine.execution.record_many = full
        started = time.monotonic()
        with pytest.raises(DiskFull) as caught:
            engine.execute(workflow(), timeout=60)
        took = time.monotonic() - started
    message = str(caught.value)
    assert "could not record the result of node 'a'" in message and "disk full" in message
    assert "\n" not in message
    assert took < 10, f"took {took:.1f}s"
    assert ran(tmp_path / "ledger") == {"a": 1}


def test_a_progress_report_that_cannot_be_stored_does_not_fail_the_body(tmp_path, monkeypatch):
    from durableflow.storage import nodes
    ledger = tmp_path / "ledger"
    monkeypatch.setenv("LEDGER", str(ledger))

    def full(*args, **kwargs):
        raise disk_full()

    monkeypatch.setattr(nodes, "progress_txn", full)
    with Engine(tmp_path / "progress.db") as engine:
        run = engine.execute(workflow(), timeout=60)
    assert run.status == "completed" and attempts(run) == COMPLETED
    assert ran(ledger) == {"a": 1, "c": 1}


# --- a real process over its file size limit ------------------------------------------------------

def _cli(db: Path, *args, env=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=db.parent,
                          env=env)


def _env(ledger: Path) -> dict:
    env = dict(os.environ, LEDGER=str(ledger))
    env.pop("DURABLEFLOW_DB", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("durableflow: error:")]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_file_size_limit_stops_run_or_worker_within_seconds_naming_the_error(tmp_path, command):
    """`ulimit -f` reached while the run goes on: every later write of the WAL fails (EFBIG).
    The first node's body sets the limit on its first attempt, as a shell's ulimit would."""
    db, ledger = tmp_path / "limit.db", tmp_path / "ledger"
    limit = ("import resource\nif ctx.attempt == 1:\n"
             "    resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))\n")
    (tmp_path / "wf.json").write_text(json.dumps(workflow("limit", limit)))
    if command == "worker":
        assert _cli(db, "start", "wf.json").returncode == 0
        argv = ["worker", "--until-idle"]
    else:
        argv = ["run", "wf.json"]
    started = time.monotonic()
    result = _cli(db, *argv, env=_env(ledger), timeout=180)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 20, f"`{command}` took {took:.1f}s to give up"
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    (line,) = _error_lines(result.stderr)
    assert "could not record the result of node 'a'" in line
    assert "I/O error writing" in line and "ulimit -f" in line
    assert ran(ledger) == {"a": 1}
    # The next worker takes the node back (its worker's process is gone) and finishes the run.
    finished = _cli(db, "worker", "--until-idle", "--max-wait", "1s", env=_env(ledger))
    assert finished.returncode == 0, finished.stderr
    (run,) = json.loads(_cli(db, "runs", "--json").stdout)
    status = json.loads(_cli(db, "status", run["run_id"], "--json").stdout)
    assert status["status"] == "completed" and status["outputs"] == {"c": 2}
    assert sorted((n["node_id"], n["attempt"], n["status"]) for n in status["nodes"]) == [
        ("a", 1, "failed"), ("a", 2, "completed"), ("b", 1, "completed"), ("c", 1, "completed")]
    assert ran(ledger) == {"a": 2, "c": 1}


# --- the strace sweep ------------------------------------------------------------------------------

STRACE = shutil.which("strace")
STALL = 20.0   # seconds; a lost lease costs 30


def _strace_usable() -> str | None:
    if STRACE is None:
        return "strace is not installed (apt-get install -y strace)"
    probe = subprocess.run([STRACE, "-f", "-qq", "-o", os.devnull, "-e", "trace=pwrite64",
                            "-e", "inject=pwrite64:error=ENOSPC:when=1", sys.executable, "-c", "pass"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"strace cannot trace here ({probe.stderr.strip()[:200]})"
    return None


def snapshot(db: Path) -> dict:
    """What the file holds, without the ids and times that differ from run to run."""
    conn = sqlite3.connect(db)
    try:
        one = lambda sql: sorted(conn.execute(sql).fetchall(), key=repr)  # noqa: E731
        return {
            "integrity": one("PRAGMA integrity_check"),
            "workflows": one("SELECT workflow_id, version FROM workflows"),
            "runs": one("SELECT workflow_id, status, outputs, error FROM runs"),
            "nodes": one("SELECT node_id, iteration, attempt, status, output, error_type "
                         "FROM node_instances"),
            "messages": one("SELECT target_node_id, kind, status, attempts FROM messages"),
            "leases": one("SELECT count(*) FROM leases"),
            "dead_letters": one("SELECT count(*) FROM dead_letters"),
            # A progress row is a status line: one that could not be written is let go.
            "events": one("SELECT node_id, type, count(*) FROM events WHERE type != 'node.progress' "
                          "GROUP BY node_id, type"),
        }
    finally:
        conn.close()


# `durableflow` with the store's own quick retry of a failed write turned off: every injected
# failure of a node's result then reaches the worker, which must keep the outcome and retry.
WITHOUT_STORE_RETRY = ("import sys, durableflow.storage.base as base\n"
                       "base.IO_RETRY_WAITS = ()\n"
                       "from durableflow.cli.app import main\n"
                       "main(sys.argv[1:])")


def _traced(db: Path, wf: Path, ledger: Path, inject: int | None, trace_to: str = os.devnull,
            store_retry: bool = True):
    argv = [STRACE, "-f", "-qq", "-o", trace_to, "-e", "trace=pwrite64"]
    if inject is not None:
        argv += ["-e", f"inject=pwrite64:error=ENOSPC:when={inject}"]
    argv += [sys.executable, *(["-m", "durableflow"] if store_retry else ["-c", WITHOUT_STORE_RETRY])]
    argv += ["--db", str(db), "run", str(wf), "--json"]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=db.parent,
                            env=_env(ledger))
    return result, time.monotonic() - started


@pytest.mark.slow
def test_each_write_of_a_small_run_failing_in_turn(tmp_path):
    """`durableflow run` of a 3-node workflow under strace, the N-th pwrite64 failing with
    ENOSPC, for every N. strace counts per thread, so the N-th write of each thread that makes
    N writes fails in the same run (the main thread's, the dispatcher's, a node thread's): every
    write of every thread fails once over the sweep, sometimes two or three at once.

    Twice: as shipped (the store tries a failed write again at once, so the main thread gets
    past its failure and the worker's threads reach theirs), and, for every third N, with that
    retry off, so that each failure of a result's write reaches the worker itself (and one in
    the run's start or the worker's registration stops `run` with one line)."""
    why_not = _strace_usable()
    if why_not:
        pytest.skip(why_not)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(workflow()))
    base = tmp_path / "base.db"
    with Engine(base) as engine:   # migrated and the workflow stored: the sweep is the run's writes
        engine.register(wf)
    conn = sqlite3.connect(base)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    empty = snapshot(base)

    def fresh(name: str) -> tuple[Path, Path]:
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(base, folder / "sweep.db")
        return folder / "sweep.db", folder / "ledger"

    # The reference: the same run with nothing injected, and how many writes each thread makes.
    db, ledger = fresh("reference")
    result, _took = _traced(db, wf, ledger, None, trace_to=str(tmp_path / "reference.trace"))
    assert result.returncode == 0, result.stderr
    done = snapshot(db)
    assert done["runs"] == [("sweep", "completed", '{"c":2}', None)] and ran(ledger) == {"a": 1, "c": 1}
    per_thread = Counter(line.split()[0] for line in (tmp_path / "reference.trace").read_text().splitlines()
                         if "pwrite64(" in line)
    writes = max(per_thread.values())
    # Every write number up to the busiest thread's, and two past it (a run that happens to
    # write more). About a second each under strace, two at a time on two cores.
    steps = [(n, True) for n in range(1, writes + 3)] + [(n, False) for n in range(1, writes + 3, 3)]

    def step(n_retry: tuple[int, bool]) -> str | None:
        n, store_retry = n_retry
        db, ledger = fresh(f"n{n:03d}{'' if store_retry else '-worker'}")
        result, took = _traced(db, wf, ledger, n, store_retry=store_retry)
        where = (f"write {n}{'' if store_retry else ' (no store retry)'}: exit {result.returncode} "
                 f"in {took:.1f}s; stderr: {result.stderr[-1500:]}")
        if "Traceback" in result.stderr or "internal error" in result.stderr:
            return where
        if took > STALL:
            return f"{where} (a stall: a lease waited out?)"
        if result.returncode == 0:
            if json.loads(result.stdout)["status"] != "completed":
                return where
        elif result.returncode == 1:
            errors = _error_lines(result.stderr)
            if len(errors) != 1 or not any(w in errors[0] for w in ("disk full", "I/O error")):
                return f"{where} (want one error line naming the storage error)"
            # Refused before any body ran (the run's start, or the worker's row): what was
            # committed is all there is, and the next worker carries a started run on.
            finish = _cli(db, "worker", "--until-idle", "--max-wait", "1s", env=_env(ledger))
            if finish.returncode != 0:
                return f"{where}; the next worker failed: {finish.stderr[-500:]}"
        else:
            return where
        state = snapshot(db)
        if state == done and ran(ledger) == {"a": 1, "c": 1}:
            return None
        if result.returncode == 1 and state == empty and not ran(ledger):
            return None    # the run's start itself failed: nothing of it was stored
        return f"{where}\nstate {state}\nwant {done}\nbodies ran {dict(ran(ledger))}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(step, steps) if p]
    assert not problems, (f"{len(problems)} of {len(steps)} failed writes went wrong:\n"
                          + "\n\n".join(problems[:5]))
