"""Issue 5 from the stored rows: retries that wait in the database, pause/resume/cancel that
survive a restart, idempotent starts, leases taken over, export/import and prune."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from durableflow import Engine, InvalidTransition, StaleLease, ValidationError
from durableflow.clock import ManualClock
from durableflow.tasks import Outcome

T0 = 1_800_000_000.0


def chain(workflow_id: str, *nodes: dict) -> dict:
    return {"workflowId": workflow_id, "nodes": list(nodes),
            "connections": [{"sourceNodeId": a["nodeId"], "targetNodeId": b["nodeId"]}
                            for a, b in zip(nodes, nodes[1:])]}


def py(node_id: str, script: str, **extra) -> dict:
    return {"nodeId": node_id, "runtimeType": "Python", "script": script, **extra}


def drain(engine: Engine, limit: int = 100) -> int:
    """Claim and run what is claimable now, on this thread. Returns how many nodes ran."""
    from durableflow.worker import Worker
    w = Worker(engine.service, concurrency=1)
    ran = 0
    for _ in range(limit):
        tasks = engine.service.claim(w.worker_id, 16, 30.0)
        if not tasks:
            return ran
        for t in tasks:
            t.cancel_event = threading.Event()
            w._execute(t)
            ran += 1
    return ran


def rows(db: Path, sql: str, *args):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# --- stored retries -------------------------------------------------------------------------------

FAIL_TWICE = """
if ctx.attempt < 3:
    raise ValueError(f"attempt {ctx.attempt} fails")
output = {"attempt": ctx.attempt}
"""


def test_retry_waits_in_the_database_and_survives_a_restart(tmp_path):
    db = tmp_path / "r.db"
    clock = ManualClock(T0)
    engine = Engine(db, clock=clock)
    retry = {"strategy": "exponential", "maxAttempts": 3, "initialDelay": "10m", "maxDelay": "1h", "multiplier": 2, "jitter": 0}
    run_id = engine.start(chain("retry", py("flaky", FAIL_TWICE, retry=retry)))
    assert drain(engine) == 1
    engine.close()

    # A new process: the retry is a row visible in 10 minutes, nobody sleeps through it.
    clock = ManualClock(T0)
    engine = Engine(db, clock=clock)
    (visible,) = rows(db, "SELECT visible_at FROM messages WHERE status = 'ready'")
    assert visible[0] == "2027-01-15T08:10:00.000Z"
    assert drain(engine) == 0
    clock.advance(600)
    assert drain(engine) == 1           # attempt 2 fails, next in 20 minutes
    clock.advance(1199)
    assert drain(engine) == 0
    clock.advance(1)
    assert drain(engine) == 1
    run = engine.get_run(run_id)
    assert run.status == "completed"
    attempts = [(n.attempt, n.status, n.error_type) for n in run.nodes]
    assert attempts == [(1, "failed", "ValueError"), (2, "failed", "ValueError"), (3, "completed", None)]
    assert run.nodes[0].error.startswith("ValueError: attempt 1 fails")
    assert run.outputs == {"flaky": {"attempt": 3}}
    engine.close()


def test_retry_on_filters_by_error_type_and_budget_caps_retries(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "b.db", clock=clock)
    retry = {"strategy": "fixed", "maxAttempts": 5, "initialDelay": "1s", "jitter": 0, "retryOn": ["KeyError"]}
    run_id = engine.start(chain("only-keyerror", py("n", "raise ValueError('no')", retry=retry)))
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "failed" and [n.attempt for n in run.nodes] == [1]

    wf = chain("budget", py("a", "raise KeyError('x')", retry={"strategy": "fixed", "maxAttempts": 5,
                                                                "initialDelay": "1s", "jitter": 0}))
    wf["retryBudget"] = 2
    run_id = engine.start(wf)
    for _ in range(6):
        drain(engine)
        clock.advance(1)
    run = engine.get_run(run_id)
    assert run.status == "failed"
    assert [n.attempt for n in run.nodes] == [1, 2, 3]   # two retries, then the budget is spent
    engine.close()


# --- pause, resume, cancel -------------------------------------------------------------------------

def test_pause_holds_new_nodes_and_survives_a_restart(tmp_path):
    db = tmp_path / "p.db"
    engine = Engine(db, clock=ManualClock(T0))
    run_id = engine.start(chain("p", py("a", "output = 1"), py("b", "output = 2"), py("c", "output = 3")))
    assert drain(engine, limit=1) >= 1
    engine.pause(run_id)
    engine.close()

    engine = Engine(db, clock=ManualClock(T0))
    assert engine.get_run(run_id).status == "paused"
    assert drain(engine) == 0                      # nothing starts while paused
    engine.resume(run_id)
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"c": 3}
    engine.close()


def test_a_node_running_when_paused_finishes_and_is_kept(tmp_path):
    engine = Engine(tmp_path / "p.db", clock=ManualClock(T0))
    run_id = engine.start(chain("p2", py("a", "output = 'a'"), py("b", "output = 'b'")))
    w_tasks = engine.service.claim("w", 1, 30.0)
    engine.pause(run_id)
    engine.service.record(w_tasks[0], Outcome(True, "a", '"a"'))
    run = engine.get_run(run_id)
    assert run.status == "paused" and run.node("a").status == "completed"
    assert run.node("b").status == "pending" and drain(engine) == 0
    engine.resume(run_id)
    drain(engine)
    assert engine.get_run(run_id).status == "completed"
    engine.close()


def test_pause_for_resumes_by_itself(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "pf.db", clock=clock)
    run_id = engine.start(chain("pf", py("a", "output = 1")))
    engine.pause(run_id, for_seconds=600)
    engine.maintain()
    assert engine.get_run(run_id).status == "paused"
    clock.advance(600)
    engine.maintain()
    assert engine.get_run(run_id).status == "running"
    drain(engine)
    assert engine.get_run(run_id).status == "completed"
    engine.close()


def test_cancel_kills_external_processes_and_their_children(tmp_path):
    engine = Engine(tmp_path / "c.db")
    pidfile = tmp_path / "grandchild.pid"
    wf = chain("cancel", {"nodeId": "sh", "runtimeType": "Shell", "shell": True,
                          "command": f"sleep 999 & echo $! > {pidfile}; wait"})
    run_id = engine.start(wf)
    with engine.worker(concurrency=1):
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, "shell node never started"
            time.sleep(0.01)
        grandchild = int(pidfile.read_text())
        engine.cancel(run_id)
        run = engine.wait(run_id, timeout=20)
        deadline = time.monotonic() + 20
        while engine.get_run(run_id).node("sh").status == "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert run.status == "cancelled"
    assert engine.get_run(run_id).node("sh").status == "cancelled"
    assert not pid_alive(grandchild)
    engine.close()


def pid_alive(pid: int) -> bool:
    """A zombie (killed, reparented, not yet reaped) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_cancel_is_seen_by_a_python_node_and_nothing_new_starts(tmp_path):
    engine = Engine(tmp_path / "c2.db")
    body = "import time\nwhile not ctx.cancelled:\n    time.sleep(0.01)\nctx.check_cancelled()"
    run_id = engine.start(chain("cancel-py", py("loop", body), py("after", "output = 1")))
    with engine.worker(concurrency=1):
        deadline = time.monotonic() + 20
        while engine.get_run(run_id).node("loop") is None or engine.get_run(run_id).node("loop").status != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        engine.cancel(run_id)
        engine.wait(run_id, timeout=20)
        while engine.get_run(run_id).node("loop").status == "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    run = engine.get_run(run_id)
    assert run.status == "cancelled"
    assert run.node("loop").status == "cancelled"
    assert run.node("after") is None or run.node("after").status == "cancelled"
    engine.close()


# --- leases and recovery ---------------------------------------------------------------------------

def test_a_lease_taken_over_after_expiry_rejects_the_old_holder(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "l.db", clock=clock, lease_seconds=5)
    run_id = engine.start(chain("lease", py("a", "output = 1")))
    (old,) = engine.service.claim("old-worker", 1, 5.0)
    clock.advance(6)
    engine.maintain()                                  # reclaims the expired lease
    (new,) = engine.service.claim("new-worker", 1, 5.0)
    with pytest.raises(StaleLease):
        engine.service.record(old, Outcome(True, "late", '"late"'))
    engine.service.record(new, Outcome(True, "on time", '"on time"'))
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"a": "on time"}
    assert [(n.attempt, n.status, n.error_type) for n in run.nodes] == [(1, "failed", "WorkerLost"), (2, "completed", None)]
    engine.close()


KILLER = """
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
"""


def _worker_proc(db: Path, *extra: str) -> subprocess.Popen:
    code = ("import sys; from durableflow import Engine; e = Engine(sys.argv[1], lease_seconds=300);"
            "w = e.worker(concurrency=1); w.start(); "
            "import time\nwhile True: time.sleep(1)")
    return subprocess.Popen([sys.executable, "-c", code, str(db), *extra])


@pytest.mark.slow
def test_a_node_that_kills_its_worker_every_time_ends_dead_lettered(tmp_path):
    db = tmp_path / "k.db"
    engine = Engine(db, max_deliveries=3)
    wf = chain("killer", py("boom", KILLER))
    wf["connections"] = []
    run_id = engine.start(wf)
    for _ in range(10):
        proc = _worker_proc(db)
        proc.wait(timeout=60)                     # the node kills it
        engine.recover()                          # its pid is gone: leases back at once
        if engine.get_run(run_id).finished:
            break
    run = engine.get_run(run_id)
    assert run.status == "failed" and "dead-lettered" in run.error
    (dead,) = engine.dead_letters()
    assert dead["attempts"] == 3 and dead["run_id"] == run_id
    assert [n.status for n in run.nodes] == ["failed", "failed", "failed"]
    engine.close()


def _a_worker_killed_mid_node(tmp_path, db) -> tuple[Engine, str]:
    """A run whose node a `durableflow worker` process had begun (300 s lease) when SIGKILLed."""
    engine = Engine(db)
    started = tmp_path / "started"
    body = f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('x')\ntime.sleep(600)"
    run_id = engine.start(chain("slow", py("slow", body)))
    proc = _worker_proc(db)
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return engine, run_id


@pytest.mark.slow
def test_restarted_worker_reclaims_a_dead_workers_leases_at_once(tmp_path):
    engine, run_id = _a_worker_killed_mid_node(tmp_path, tmp_path / "d.db")
    report = engine.recover()                      # the 300 s lease has not expired
    assert report["reclaimed"] == 1 and len(report["dead_workers"]) == 1
    run = engine.get_run(run_id)
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "pending")]
    engine.close()


@pytest.mark.slow
def test_a_failed_recovery_leaves_the_dead_worker_to_the_next_one(tmp_path, monkeypatch):
    """Marking a dead worker gone and taking its leases back commit together (issue 11, point 4):
    a recovery that fails half-way must not leave the worker marked gone with its leases still
    out, where only their expiry (300 s here) would free them."""
    from durableflow.errors import DiskFull
    from durableflow.storage import queue

    engine, run_id = _a_worker_killed_mid_node(tmp_path, tmp_path / "half.db")
    real = queue.reclaim_txn

    def full(*args, **kwargs):
        raise DiskFull("injected: disk full while reclaiming")

    monkeypatch.setattr(queue, "reclaim_txn", full)
    with pytest.raises(DiskFull):
        engine.recover()
    monkeypatch.setattr(queue, "reclaim_txn", real)
    report = engine.recover()
    assert report["reclaimed"] == 1 and len(report["dead_workers"]) == 1
    run = engine.get_run(run_id)
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "pending")]
    engine.close()


@pytest.mark.slow
def test_a_running_workers_upkeep_takes_a_dead_siblings_leases_at_once(tmp_path):
    # Upkeep runs every second in every worker: a sibling killed on this host loses its work to
    # the survivors at once, not when its 300 s lease expires.
    engine, run_id = _a_worker_killed_mid_node(tmp_path, tmp_path / "sib.db")
    engine.maintain()
    run = engine.get_run(run_id)
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "pending")]
    assert run.nodes[0].error_type == "WorkerLost"
    engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("isolated_python", [False, True], ids=["shell", "python-process"])
def test_recovery_stops_the_node_processes_a_killed_worker_left_running(tmp_path, isolated_python):
    """A SIGKILLed worker cannot take its node processes along. Whoever recovers its leases
    must stop them (and what they started) first: the redelivered node must not run beside
    its first delivery."""
    db = tmp_path / "orphans.db"
    engine = Engine(db)
    pids = tmp_path / "pids"
    if isolated_python:
        body = ("import os, pathlib, subprocess\n"
                "child = subprocess.Popen(['sleep', '999'])\n"
                f"pathlib.Path({str(pids)!r}).write_text(f'{{os.getpid()}} {{child.pid}}')\n"
                "child.wait()")
        node = py("work", body, isolation="process")
    else:
        node = {"nodeId": "work", "runtimeType": "Shell", "shell": True,
                "command": f"sleep 999 & echo $$ $! > {pids}; wait"}
    run_id = engine.start(chain("orphans", node))
    proc = _worker_proc(db)
    deadline = time.monotonic() + 30
    while not (pids.exists() and len(pids.read_text().split()) == 2):
        assert time.monotonic() < deadline, "node never started"
        time.sleep(0.01)
    leader, grandchild = map(int, pids.read_text().split())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert pid_alive(leader) and pid_alive(grandchild)      # left running by the dead worker
    report = engine.recover()
    assert report["reclaimed"] == 1 and report["processes_killed"] >= 2
    deadline = time.monotonic() + 10
    while pid_alive(leader) or pid_alive(grandchild):
        assert time.monotonic() < deadline, "the dead worker's node processes are still running"
        time.sleep(0.01)
    run = engine.get_run(run_id)
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "pending")]
    # Nobody else's processes were touched: a recovery with no dead worker kills nothing.
    assert engine.recover()["processes_killed"] == 0
    engine.close()


@pytest.mark.slow
def test_recovery_leaves_alone_a_daemon_a_finished_node_detached(tmp_path):
    """Only the processes of the deliveries being taken back are stopped: a node that finished
    may have started a service on purpose (setsid), and that is not ours to kill."""
    db = tmp_path / "daemon.db"
    engine = Engine(db)
    daemon_pid, busy_pid = tmp_path / "daemon.pid", tmp_path / "busy.pid"
    starter = {"nodeId": "starter", "runtimeType": "Shell", "shell": True,
               # The node waits for the daemon to be in its own session: when a node's leader
               # exits, what is left in its group is killed.
               "command": f"setsid sh -c 'echo $$ > {daemon_pid}; exec sleep 999' "
                          f"< /dev/null > /dev/null 2>&1 & "
                          f"while [ ! -s {daemon_pid} ]; do sleep 0.01; done"}
    busy = {"nodeId": "busy", "runtimeType": "Shell", "shell": True,
            "command": f"echo $$ > {busy_pid}; sleep 999"}
    run_id = engine.start(chain("daemon", starter, busy))
    proc = _worker_proc(db)
    try:
        deadline = time.monotonic() + 30
        while not all(p.exists() and p.read_text().strip() for p in (busy_pid, daemon_pid)):
            assert time.monotonic() < deadline, "busy or the daemon never started"
            time.sleep(0.01)
        daemon, leader = int(daemon_pid.read_text()), int(busy_pid.read_text())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        report = engine.recover()
        assert report["reclaimed"] == 1 and report["processes_killed"] >= 1
        deadline = time.monotonic() + 10
        while pid_alive(leader):
            assert time.monotonic() < deadline, "the lost delivery's process is still running"
            time.sleep(0.01)
        assert pid_alive(daemon), "recovery killed a daemon a finished node had detached"
        assert engine.get_run(run_id).node("starter").status == "completed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pidfile, kill in ((daemon_pid, os.kill), (busy_pid, os.killpg)):
            if pidfile.exists() and pidfile.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    kill(int(pidfile.read_text()), signal.SIGKILL)
        engine.close()


# --- idempotency -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_four_processes_starting_with_one_key_create_one_run(tmp_path):
    db = tmp_path / "i.db"
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(chain("idem", py("a", "output = 1"))))
    Engine(db).register(wf)
    go = tmp_path / "go"
    code = ("import sys, time, pathlib; from durableflow import Engine; e = Engine(sys.argv[1]);"
            "go = pathlib.Path(sys.argv[2])\n"
            "while not go.exists(): time.sleep(0.001)\n"
            "print(e.start('idem', idempotency_key='order-7'))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), str(go)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    go.write_text("go")
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(ids) == 1
    assert rows(db, "SELECT count(*) FROM runs") == [(1,)]


# --- export, import, prune -------------------------------------------------------------------------

def test_export_import_resume_in_another_database(tmp_path):
    a = Engine(tmp_path / "a.db", clock=ManualClock(T0))
    run_id = a.start(chain("move", py("one", "output = 1"), py("two", "output = ctx.input + 1")))
    drain(a, limit=1)
    a.pause(run_id)
    doc = json.loads(json.dumps(a.export_run(run_id)))
    assert doc["runId"] == run_id and doc["runs"][0]["status"] == "paused"

    b = Engine(tmp_path / "b.db", clock=ManualClock(T0))
    assert b.import_run(doc) == run_id
    b.resume(run_id)
    drain(b)
    run = b.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"two": 2}
    with pytest.raises(Exception, match="already exists"):
        b.import_run(doc)
    a.close()
    b.close()


def test_prune_deletes_old_finished_runs_and_everything_theirs(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "pr.db", clock=clock)
    old = engine.start(chain("old", py("a", "output = 1")))
    drain(engine)
    clock.advance(31 * 86400)
    recent = engine.start(chain("old", py("a", "output = 1")))
    drain(engine)
    unfinished = engine.start(chain("old", py("a", "output = 1")))
    assert engine.prune(30 * 86400) == 1
    db = tmp_path / "pr.db"
    left = {r[0] for r in rows(db, "SELECT run_id FROM runs")}
    assert left == {recent, unfinished}
    for table in ("node_instances", "messages", "events", "joins"):
        assert rows(db, f"SELECT count(*) FROM {table} WHERE run_id = ?", old) == [(0,)], table
    engine.close()


def test_pruning_the_newest_events_never_lets_sequence_numbers_go_back(tmp_path):
    # events.seq has no AUTOINCREMENT: prune must leave a number above everything it deleted.
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "seq.db", clock=clock)
    engine.start(chain("s", py("a", "output = 1")))
    drain(engine)
    db = tmp_path / "seq.db"
    newest = rows(db, "SELECT max(seq) FROM events")[0][0]
    assert rows(db, "SELECT run_id FROM events WHERE seq = ?", newest)[0][0] is not None
    clock.advance(2 * 86400)
    assert engine.prune(86400) == 1
    marker = rows(db, "SELECT seq, type, run_id FROM events ORDER BY seq DESC LIMIT 1")[0]
    assert marker == (newest + 1, "history.pruned", None)
    later = engine.start(chain("s", py("a", "output = 1")))
    assert min(r[0] for r in rows(db, "SELECT seq FROM events WHERE run_id = ?", later)) > newest + 1
    engine.close()


def test_a_cancel_made_while_no_worker_runs_holds_after_restart(tmp_path):
    db = tmp_path / "cr.db"
    engine = Engine(db, clock=ManualClock(T0))
    run_id = engine.start(chain("cr", py("a", "output = 1"), py("b", "output = 2")))
    assert drain(engine, limit=1) >= 1
    engine.cancel(run_id)
    engine.close()

    engine = Engine(db, clock=ManualClock(T0))
    assert drain(engine) == 0
    run = engine.get_run(run_id)
    assert run.status == "cancelled"
    assert [(n.node_id, n.status) for n in run.nodes] == [("a", "completed"), ("b", "cancelled")]
    assert rows(db, "SELECT count(*) FROM messages WHERE status IN ('ready', 'leased')") == [(0,)]
    engine.close()


def test_a_stored_definition_that_no_longer_loads_fails_its_runs_not_the_queue(tmp_path):
    db = tmp_path / "bd.db"
    engine = Engine(db)
    good = engine.start({"workflowId": "good", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]})
    bad = engine.start({"workflowId": "bad", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]})
    engine.close()
    conn = sqlite3.connect(db)
    conn.execute("""UPDATE workflows SET definition = '{"workflowId": "bad", "nodes": []}'
                    WHERE workflow_id = 'bad'""")
    conn.commit()
    conn.close()

    engine = Engine(db)
    with engine.worker(concurrency=1):
        assert engine.wait(good, timeout=20).status == "completed"
        run = engine.wait(bad, timeout=20)
    assert run.status == "failed" and "no longer loads" in run.error
    engine.close()


COUNT_BODY = """
import json, pathlib
ledger = pathlib.Path(ctx.vars["ledger"]) / ctx.node_id
ledger.write_text(str(int(ledger.read_text()) + 1 if ledger.exists() else 1))
output = (ctx.input if isinstance(ctx.input, int) else 0) + 1
"""


def _diamond(tmp_path) -> dict:
    nodes = [py(n, COUNT_BODY) for n in ("a", "b", "c", "d")]
    wf = {"workflowId": "rerun", "variables": {"ledger": str(tmp_path)}, "nodes": nodes,
          "connections": [{"sourceNodeId": s, "targetNodeId": t}
                          for s, t in (("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"))]}
    return wf


def test_rerun_from_a_node_keeps_upstream_results_and_runs_the_rest_again(tmp_path):
    engine = Engine(tmp_path / "rr.db")
    first = engine.execute(_diamond(tmp_path), timeout=30)
    assert first.status == "completed"
    again = engine.rerun(first.run_id, from_node="b")
    with engine.worker(concurrency=2):
        run = engine.wait(again, timeout=30)
    assert run.status == "completed" and run.outputs == first.outputs
    counts = {n: int((tmp_path / n).read_text()) for n in ("a", "b", "c", "d")}
    assert counts == {"a": 1, "b": 2, "c": 1, "d": 2}       # a and c were carried over
    events = [e for e in engine.events(again) if e["type"] == "run.running"]
    assert events[0]["data"]["rerunOf"] == first.run_id
    whole = engine.rerun(first.run_id, fresh=True)
    with engine.worker(concurrency=2):
        assert engine.wait(whole, timeout=30).status == "completed"
    assert int((tmp_path / "a").read_text()) == 2
    with pytest.raises(Exception, match="no node 'zz'"):
        engine.rerun(first.run_id, from_node="zz")
    engine.close()


def test_rerun_keeps_a_handled_failure_and_its_handler(tmp_path):
    """Issue 11, point 5: a card declined and refunded is not charged and refunded again when
    the run is rerun from a node downstream of both; a plain rerun keeps every settled node and
    runs only what failed or never finished; --fresh runs everything again."""
    ledger = tmp_path / "ledger"
    def note(word):
        return f"with open({str(ledger)!r}, 'a') as f:\n    f.write({word!r} + '\\n')\n"
    defn = {"workflowId": "shop", "nodes": [
        py("charge", note("charge") + "raise RuntimeError('card declined')"),
        py("refund", note("refund") + "output = 'refunded'"),
        py("notify", note("notify") + "output = 'told'"),
        py("report", note("report") + "raise RuntimeError('report service down')")],
        "connections": [{"sourceNodeId": "charge", "targetNodeId": "refund", "triggerMessageType": "Fail"},
                        {"sourceNodeId": "refund", "targetNodeId": "notify"},
                        {"sourceNodeId": "notify", "targetNodeId": "report"}]}
    engine = Engine(tmp_path / "shop.db", clock=ManualClock(T0))
    first = engine.start(defn)
    drain(engine)
    assert engine.get_run(first).status == "failed"
    assert ledger.read_text().split() == ["charge", "refund", "notify", "report"]
    ledger.write_text("")
    from_notify = engine.rerun(first, from_node="notify")
    drain(engine)
    assert ledger.read_text().split() == ["notify", "report"]
    run = engine.get_run(from_notify)
    assert {n.node_id: n.status for n in run.nodes if n.node_id in ("charge", "refund")} == {
        "charge": "failed", "refund": "completed"}
    ledger.write_text("")
    plain = engine.rerun(first)
    drain(engine)
    assert ledger.read_text().split() == ["report"]
    assert engine.get_run(plain).status == "failed"
    ledger.write_text("")
    fresh = engine.rerun(first, fresh=True)
    drain(engine)
    assert ledger.read_text().split() == ["charge", "refund", "notify", "report"]
    events = [e for e in engine.events(fresh) if e["type"] == "run.running"]
    assert events[0]["data"]["rerunOf"] == first
    engine.close()


def test_a_plain_rerun_of_a_completed_run_is_refused_and_says_fresh(tmp_path):
    engine = Engine(tmp_path / "done.db", clock=ManualClock(T0))
    first = engine.start(chain("done", py("a", "output = 1")))
    drain(engine)
    with pytest.raises(InvalidTransition, match="--fresh"):
        engine.rerun(first)
    with pytest.raises(ValidationError, match="not both"):
        engine.rerun(first, from_node="a", fresh=True)
    engine.close()


BUMP = ("ctx.vars['count'] = ctx.vars.get('count', 0) + 1\n"
        "ctx.vars['seen'] = list(ctx.vars.get('seen', [])) + [ctx.node_id]\n"
        "ctx.vars.pop('scratch', None)\n"
        "output = ctx.vars['count']")


def test_rerun_from_a_node_starts_from_the_variables_as_the_kept_nodes_left_them(tmp_path):
    """Not the old run's final variables: the nodes that run again must not see their own
    earlier writes (count would go 2 -> 3, and 'seen' would list b twice)."""
    engine = Engine(tmp_path / "vars.db", clock=ManualClock(T0))
    defn = chain("vars", py("a", BUMP), py("b", BUMP), py("c", "output = dict(ctx.vars)"))
    defn["variables"] = {"count": 0, "scratch": [1, 2], "keep": {"x": [1]}}
    first = engine.start(defn)
    drain(engine)
    run = engine.get_run(first)
    assert run.outputs == {"c": {"count": 2, "seen": ["a", "b"], "keep": {"x": [1]}}}
    again = engine.rerun(first, from_node="b")
    assert engine.get_run(again).variables == {"count": 1, "seen": ["a"], "keep": {"x": [1]}}
    drain(engine)
    assert engine.get_run(again).outputs == run.outputs
    whole = engine.rerun(first, fresh=True)   # a fresh rerun starts from the definition's variables
    drain(engine)
    assert engine.get_run(whole).outputs == run.outputs
    engine.close()


def test_a_rerun_of_a_rerun_still_starts_from_what_the_kept_nodes_left(tmp_path):
    engine = Engine(tmp_path / "chainvars.db", clock=ManualClock(T0))
    defn = chain("chainvars", py("a", "ctx.vars['x'] += 1\noutput = 1"),
                 py("b", "ctx.vars['x'] *= 10\noutput = 1"), py("c", "output = ctx.vars['x']"))
    defn["variables"] = {"x": 0}
    first = engine.start(defn)
    drain(engine)
    assert engine.get_run(first).outputs == {"c": 10}
    runs = [first]
    for _ in range(3):                 # each rerun of the last one: a copied, b and c run again
        runs.append(engine.rerun(runs[-1], from_node="b"))
        assert engine.get_run(runs[-1]).variables == {"x": 1}
        drain(engine)
        assert engine.get_run(runs[-1]).outputs == {"c": 10}
    again = engine.rerun(runs[-1], from_node="c")      # a and b both copied now
    assert engine.get_run(again).variables == {"x": 10}
    engine.close()


def test_a_big_change_to_the_variables_is_left_out_of_the_event_and_rerun_falls_back(tmp_path):
    engine = Engine(tmp_path / "bigvars.db", clock=ManualClock(T0))
    defn = chain("bigvars", py("a", "ctx.vars['blob'] = 'x' * 100_000\noutput = 1"),
                 py("b", "ctx.vars['n'] = 1\noutput = 1"))
    first = engine.start(defn)
    drain(engine)
    (a_done,) = [e for e in engine.events(first) if e["type"] == "node.completed" and e["node_id"] == "a"]
    assert a_done["data"]["vars"] == {"omitted": "over 65,536 bytes"}
    again = engine.rerun(first, from_node="b")
    assert engine.get_run(again).variables == engine.get_run(first).variables   # the old way
    engine.close()


def test_rerun_from_a_run_recorded_without_variable_changes_keeps_its_final_variables(tmp_path):
    """A run completed by an older version has no "vars" in its completion events: replaying
    them cannot rebuild its variables, so the old behaviour stands."""
    db = tmp_path / "oldvars.db"
    engine = Engine(db, clock=ManualClock(T0))
    defn = chain("oldvars", py("a", BUMP), py("b", BUMP))
    defn["variables"] = {"count": 0}
    first = engine.start(defn)
    drain(engine)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE events SET data = json_remove(data, '$.vars') WHERE run_id = ?", (first,))
    conn.commit()
    conn.close()
    again = engine.rerun(first, from_node="b")
    assert engine.get_run(again).variables == engine.get_run(first).variables
    engine.close()


# --- Wait: a durable timer ------------------------------------------------------------------------

def _waits(**wait) -> dict:
    return chain("timer", py("before", "output = {'n': 1}"),
                 {"nodeId": "pause", "runtimeType": "Wait", **wait},
                 py("after", "output = ctx.input['n'] + 1"))


def test_a_wait_parks_its_node_in_the_database_and_survives_a_restart(tmp_path):
    db = tmp_path / "w.db"
    clock = ManualClock(T0)
    engine = Engine(db, clock=clock)
    run_id = engine.start(_waits(duration="10m"))
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "running"
    assert run.node("pause").status == "waiting"
    assert run.node("pause").waiting_reason == "timer until 2027-01-15T08:10:00.000Z"
    assert rows(db, "SELECT visible_at FROM messages WHERE status = 'ready'") == [("2027-01-15T08:10:00.000Z",)]
    engine.close()

    clock = ManualClock(T0 + 300)               # a new process, five minutes later
    engine = Engine(db, clock=clock)
    assert drain(engine) == 0                   # nothing due: no thread sleeps through it
    clock.advance(299)
    assert drain(engine) == 0
    clock.advance(1)
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"after": 2}
    assert [n.status for n in run.nodes if n.node_id == "pause"] == ["completed"]
    engine.close()


def test_a_wait_until_a_moment_gone_by_does_not_wait(tmp_path):
    engine = Engine(tmp_path / "u.db", clock=ManualClock(T0))
    run_id = engine.start(_waits(until="2020-01-01T00:00:00Z"))
    drain(engine)
    assert engine.get_run(run_id).status == "completed"
    later = engine.start(_waits(until="${ '2027-01-15T09:00:00+00:00' }"))
    drain(engine)
    assert engine.get_run(later).node("pause").waiting_reason == "timer until 2027-01-15T09:00:00.000Z"
    engine.close()


def test_pausing_and_cancelling_a_waiting_run(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "pc.db", clock=clock)
    paused = engine.start(_waits(duration="1m"))
    cancelled = engine.start(_waits(duration="1m"))
    drain(engine)
    engine.pause(paused)
    engine.cancel(cancelled)
    clock.advance(120)
    assert drain(engine) == 0                   # the paused run's timer rang, but it is paused
    assert engine.get_run(cancelled).node("pause").status == "cancelled"
    engine.resume(paused)
    drain(engine)
    assert engine.get_run(paused).status == "completed"
    engine.close()


@pytest.mark.slow
def test_worker_until_idle_waits_for_a_short_timer_not_for_a_long_one(tmp_path):
    db = tmp_path / "idle.db"
    for name, duration in (("short", "1s"), ("long", "3d")):
        wf = tmp_path / f"{name}.json"
        wf.write_text(json.dumps(dict(_waits(duration=duration), workflowId=name)))
        started = subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), "start", str(wf)],
                                 capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
    done = subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), "worker",
                           "--until-idle", "--max-wait", "10s"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status = dict(rows(db, "SELECT workflow_id, status FROM runs"))
    assert status == {"short": "completed", "long": "running"}


# --- WaitForSignal ---------------------------------------------------------------------------------

def _approval(**extra) -> dict:
    wf = chain("approve", py("ask", "output = 'please'"),
               {"nodeId": "approval", "runtimeType": "WaitForSignal", "signal": "approved", **extra},
               py("ship", "output = {'by': ctx.input['by']}"))
    wf["nodes"].append(py("escalate", "output = ctx.input['errorType']"))
    wf["connections"].append({"sourceNodeId": "approval", "targetNodeId": "escalate",
                              "triggerMessageType": "Fail"})
    return wf


def test_a_signal_sent_while_the_node_waits_completes_it_even_across_a_restart(tmp_path):
    db = tmp_path / "s.db"
    engine = Engine(db, clock=ManualClock(T0))
    run_id = engine.start(_approval())
    drain(engine)
    assert engine.get_run(run_id).node("approval").waiting_reason == "signal 'approved'"
    engine.close()

    engine = Engine(db, clock=ManualClock(T0 + 60))
    engine.signal(run_id, "approved", {"by": "ops"})
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"ship": {"by": "ops"}}
    assert run.node("approval").output == {"by": "ops"} and run.node("escalate").status == "skipped"
    assert [e["type"] for e in engine.events(run_id) if e["type"].startswith("signal")] == ["signal.received"]
    engine.close()


def test_a_signal_sent_before_the_node_waits_is_kept_for_it(tmp_path):
    engine = Engine(tmp_path / "early.db", clock=ManualClock(T0))
    run_id = engine.start(_approval())
    engine.signal(run_id, "approved", {"by": "early"})
    drain(engine)
    assert engine.get_run(run_id).outputs == {"ship": {"by": "early"}}
    with pytest.raises(InvalidTransition, match="would never be taken"):
        engine.signal(run_id, "approved", {"by": "late"})
    engine.close()


def test_a_signal_no_node_of_the_run_can_take_is_refused(tmp_path):
    engine = Engine(tmp_path / "wrong.db", clock=ManualClock(T0))
    run_id = engine.start(_approval())
    with pytest.raises(InvalidTransition, match=r"has no WaitForSignal for 'aproved' \(it waits for: approved\)"):
        engine.signal(run_id, "aproved", {"by": "typo"})
    assert rows(tmp_path / "wrong.db", "SELECT count(*) FROM signals") == [(0,)]
    plain = engine.start({"workflowId": "plain", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]})
    with pytest.raises(InvalidTransition, match="it has no WaitForSignal node"):
        engine.signal(plain, "approved")
    engine.close()


def test_no_signal_before_the_timeout_fails_the_node(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "to.db", clock=clock)
    run_id = engine.start(_approval(timeout="1h"))
    drain(engine)
    assert "until 2027-01-15T09:00:00.000Z" in engine.get_run(run_id).node("approval").waiting_reason
    clock.advance(3600)
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"escalate": "SignalTimeout"}
    engine.close()


def test_a_signal_timeout_is_retried_with_a_fresh_deadline_per_attempt(tmp_path):
    """Issue 11, point 6: the node's retry policy applies to a signal that did not come in time,
    and the next attempt waits its whole timeout again, from its own start."""
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "again.db", clock=clock)
    run_id = engine.start(_approval(timeout="1h", retry={
        "strategy": "fixed", "maxAttempts": 2, "initialDelay": "1m", "jitter": 0}))
    drain(engine)
    clock.advance(3600)
    drain(engine)                                      # attempt 1 times out; a retry in 1 minute
    run = engine.get_run(run_id)
    assert [(n.attempt, n.status) for n in run.nodes if n.node_id == "approval"] == [
        (1, "failed"), (2, "pending")]
    assert run.node("approval", 0).error_type is None
    clock.advance(60)
    drain(engine)                                      # attempt 2 waits until 10:01 + 1h
    assert "until 2027-01-15T10:01:00.000Z" in engine.get_run(run_id).node("approval").waiting_reason
    clock.advance(1800)
    engine.signal(run_id, "approved", {"by": "ops"})
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"ship": {"by": "ops"}}
    failed = [n for n in run.nodes if n.node_id == "approval" and n.status == "failed"]
    assert [n.error_type for n in failed] == ["SignalTimeout"]
    engine.close()


@pytest.mark.slow
def test_signal_from_the_command_line(tmp_path):
    db = tmp_path / "cli.db"
    wf = tmp_path / "approve.json"
    wf.write_text(json.dumps(_approval()))
    cli = [sys.executable, "-m", "durableflow", "--db", str(db)]
    run_id = subprocess.run([*cli, "start", str(wf)], capture_output=True, text=True, timeout=60).stdout.strip()
    subprocess.run([*cli, "worker", "--until-idle", "--max-wait", "1s"], capture_output=True, timeout=60, check=True)
    sent = subprocess.run([*cli, "signal", run_id, "approved", "--data", '{"by": "cli"}'],
                          capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    subprocess.run([*cli, "worker", "--until-idle", "--max-wait", "1s"], capture_output=True, timeout=60, check=True)
    assert rows(db, "SELECT status, outputs FROM runs") == [("completed", '{"ship":{"by":"cli"}}')]
    bad = subprocess.run([*cli, "signal", run_id, "approved", "--data", "{nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--data" in bad.stderr


# --- Subflow ---------------------------------------------------------------------------------------

CHILD = {"workflowId": "child", "nodes": [py("double", "output = ctx.input['n'] * 2")]}


def _parent(**sub) -> dict:
    wf = chain("parent", py("make", "output = {'n': 21}"),
               {"nodeId": "sub", "runtimeType": "Subflow", "workflowId": "child", **sub},
               py("use", "output = ctx.input['double']"))
    wf["nodes"].append(py("handle", "output = ctx.input['errorType']"))
    wf["connections"].append({"sourceNodeId": "sub", "targetNodeId": "handle", "triggerMessageType": "Fail"})
    return wf


def test_a_subflow_runs_a_child_run_and_takes_its_outputs(tmp_path):
    db = tmp_path / "sf.db"
    engine = Engine(db, clock=ManualClock(T0))
    engine.register(CHILD)
    run_id = engine.start(_parent())
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"use": 42}
    assert run.node("sub").output == {"double": 42}
    (child,) = rows(db, "SELECT run_id, status, parent_run_id, parent_node_id, inputs FROM runs "
                        "WHERE parent_run_id IS NOT NULL")
    assert child[1:] == ("completed", run_id, "sub", '{"n":21}')
    engine.close()


def test_subflow_inputs_are_literals_or_expressions_and_a_child_failure_fails_the_node(tmp_path):
    engine = Engine(tmp_path / "sf2.db", clock=ManualClock(T0))
    engine.register(CHILD)
    ok = engine.start(_parent(inputs={"n": "${ input.n + 1 }"}))
    bad = engine.start(_parent(inputs={"m": 1}))             # the child's node raises KeyError
    missing = engine.start(_parent(workflowId="nowhere"))
    drain(engine)
    assert engine.get_run(ok).outputs == {"use": 44}
    assert engine.get_run(bad).outputs == {"handle": "SubflowFailed"}
    run = engine.get_run(missing)
    assert run.outputs == {"handle": "SubflowFailed"} and "nowhere" in run.node("sub").error
    engine.close()


def test_cancelling_a_parent_cancels_its_child_run(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "sf3.db", clock=clock)
    engine.register({"workflowId": "child", "nodes": [
        {"nodeId": "nap", "runtimeType": "Wait", "duration": "1h"}]})
    run_id = engine.start(_parent())
    drain(engine)
    assert engine.get_run(run_id).node("sub").status == "waiting"
    engine.cancel(run_id)
    statuses = dict(rows(tmp_path / "sf3.db", "SELECT parent_run_id IS NULL, status FROM runs"))
    assert statuses == {1: "cancelled", 0: "cancelled"}
    engine.close()


def test_pausing_a_parent_pauses_its_child_runs_and_resuming_resumes_them(tmp_path):
    """Issue 11, point 8: a pause reaches child runs (and theirs), as a cancel does; a resume
    undoes only what the pause did, so a child paused on its own stays paused."""
    clock = ManualClock(T0)
    db = tmp_path / "pc.db"
    engine = Engine(db, clock=clock)
    engine.register({"workflowId": "child", "nodes": [
        {"nodeId": "nap", "runtimeType": "Wait", "duration": "1h"},
        py("double", "output = 42")],
        "connections": [{"sourceNodeId": "nap", "targetNodeId": "double"}]})
    run_id = engine.start(_parent())
    other = engine.start(_parent())
    drain(engine)
    child, other_child = (rows(db, "SELECT run_id FROM runs WHERE parent_run_id = ?", r)[0][0]
                          for r in (run_id, other))
    engine.pause(other_child)                          # paused on its own
    engine.pause(run_id)
    engine.pause(other)
    assert engine.get_run(child).status == "paused"
    clock.advance(3600)
    assert drain(engine) == 0                          # the children's timers rang: held
    assert engine.get_run(child).node("double") is None
    engine.resume(run_id)
    engine.resume(other)
    assert engine.get_run(child).status == "running"
    assert engine.get_run(other_child).status == "paused"
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"use": 42}
    engine.close()


def test_a_subflow_timeout_cancels_the_child_and_fails_the_node(tmp_path):
    clock = ManualClock(T0)
    db = tmp_path / "sft.db"
    engine = Engine(db, clock=clock)
    engine.register({"workflowId": "child", "nodes": [
        {"nodeId": "nap", "runtimeType": "Wait", "duration": "1h"}]})
    run_id = engine.start(_parent(timeout="10s"))
    drain(engine)
    assert engine.get_run(run_id).node("sub").status == "waiting"
    clock.advance(9)
    drain(engine)
    assert engine.get_run(run_id).status == "running"
    clock.advance(2)
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"handle": "TimeoutError"}
    assert "timed out after 10s" in run.node("sub").error
    assert rows(db, "SELECT status FROM runs WHERE parent_run_id IS NOT NULL") == [("cancelled",)]
    engine.close()


def test_a_subflow_retry_starts_a_fresh_child_run_per_attempt(tmp_path):
    clock = ManualClock(T0)
    db = tmp_path / "sfr.db"
    engine = Engine(db, clock=clock)
    engine.register(CHILD)
    run_id = engine.start(_parent(inputs={"m": 1},    # the child raises KeyError every time
                                  retry={"strategy": "fixed", "maxAttempts": 3, "initialDelay": "1s"}))
    for _ in range(8):      # the delays carry jitter: step past them generously
        drain(engine)
        clock.advance(2)
    run = engine.get_run(run_id)
    assert run.outputs == {"handle": "SubflowFailed"}
    attempts = [(n.attempt, n.status) for n in run.nodes if n.node_id == "sub"]
    assert attempts == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert rows(db, "SELECT count(*), min(status), max(status) FROM runs WHERE parent_run_id = ?",
                run_id) == [(3, "failed", "failed")]
    engine.close()


# --- ForEach and While -----------------------------------------------------------------------------

def test_for_each_runs_its_inline_body_per_item_and_returns_outputs_in_item_order(tmp_path):
    db = tmp_path / "fe.db"
    engine = Engine(db, clock=ManualClock(T0))
    wf = chain("fe", py("list", "output = {'words': ['ant', 'bee', 'cat', 'dog', 'eel']}"),
               {"nodeId": "each", "runtimeType": "ForEach", "items": "input.words", "maxParallelism": 2,
                "body": {"nodes": [py("shout", "output = ctx.input['item'].upper() + str(ctx.input['index'])")]}},
               py("join", "output = [o['shout'] for o in ctx.input]"))
    run_id = engine.start(wf)
    drain(engine, limit=500)
    run = engine.get_run(run_id)
    assert run.status == "completed", run.error
    assert run.outputs == {"join": ["ANT0", "BEE1", "CAT2", "DOG3", "EEL4"]}
    children = rows(db, "SELECT workflow_id, status FROM runs WHERE parent_run_id = ?", run_id)
    assert children == [("fe.each", "completed")] * 5
    engine.close()


def test_a_for_each_timeout_cancels_its_body_runs_and_a_retry_starts_over(tmp_path):
    clock = ManualClock(T0)
    db = tmp_path / "fet.db"
    engine = Engine(db, clock=clock)
    each = {"nodeId": "each", "runtimeType": "ForEach", "items": "[1, 2]", "timeout": "30s",
            "retry": {"strategy": "fixed", "maxAttempts": 2, "initialDelay": "1s"},
            "body": {"nodes": [{"nodeId": "nap", "runtimeType": "Wait", "duration": "1h"}]}}
    wf = chain("fet", each)
    wf["nodes"].append(py("handle", "output = ctx.input['errorType']"))
    wf["connections"].append({"sourceNodeId": "each", "targetNodeId": "handle", "triggerMessageType": "Fail"})
    run_id = engine.start(wf)
    for step in (0, 31, 2, 31, 2):   # the retry delay carries jitter: step past it generously
        clock.advance(step)
        drain(engine, limit=200)
    run = engine.get_run(run_id)
    assert run.outputs == {"handle": "TimeoutError"}, run.error
    assert [(n.attempt, n.status) for n in run.nodes if n.node_id == "each"] == [(1, "failed"), (2, "failed")]
    assert rows(db, "SELECT status, count(*) FROM runs WHERE parent_run_id = ? GROUP BY status",
                run_id) == [("cancelled", 4)]
    engine.close()


def test_for_each_fails_when_a_body_run_fails_and_on_items_that_are_not_a_list(tmp_path):
    engine = Engine(tmp_path / "fe2.db", clock=ManualClock(T0))
    body = {"nodes": [py("check", "assert ctx.input['item'] != 2, 'two!'\noutput = 1")]}
    bad_item = engine.start(chain("fe2", {"nodeId": "each", "runtimeType": "ForEach",
                                          "items": "[1, 2, 3]", "body": body}))
    not_list = engine.start(chain("fe3", {"nodeId": "each", "runtimeType": "ForEach",
                                          "items": "'abc'", "body": body}))
    drain(engine, limit=500)
    run = engine.get_run(bad_item)
    assert run.status == "failed" and "item 1" in run.error and "two!" in run.error
    assert "must be a list" in engine.get_run(not_list).error
    engine.close()


def test_while_repeats_its_body_until_the_condition_is_false(tmp_path):
    engine = Engine(tmp_path / "wh.db", clock=ManualClock(T0))
    wf = chain("wh", {"nodeId": "loop", "runtimeType": "While",
                      "condition": "output is None or output['step']['n'] < 5",
                      "body": {"nodes": [py("step", "output = {'n': (ctx.input['iteration'] + 1) * 2}")]}})
    run_id = engine.start(wf)
    drain(engine, limit=500)
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"loop": {"step": {"n": 6}}}
    endless = chain("wh2", {"nodeId": "loop", "runtimeType": "While", "condition": "True", "maxIterations": 3,
                            "body": {"nodes": [py("step", "output = 1")]}})
    stuck = engine.start(endless)
    drain(engine, limit=500)
    assert "maxIterations 3" in engine.get_run(stuck).error
    engine.close()


# --- runs nested without end, and nodes that would wait in an ended run --------------------------

def test_a_workflow_that_starts_itself_stops_at_the_nesting_limit_and_cancels(tmp_path):
    from durableflow.execution.children import DEFAULT_MAX_NESTING as MAX_NESTING
    db = tmp_path / "rec.db"
    engine = Engine(db, clock=ManualClock(T0))
    recursive = {"workflowId": "rec", "nodes": [
        {"nodeId": "me", "runtimeType": "Subflow", "workflowId": "rec"}]}
    engine.register(recursive)
    root = engine.start("rec")
    drain(engine, limit=5 * MAX_NESTING)
    assert rows(db, "SELECT count(*) FROM runs") == [(MAX_NESTING + 1,)]
    failed = rows(db, "SELECT error_type, count(*) FROM node_instances WHERE status = 'failed' "
                      "GROUP BY error_type ORDER BY error_type")
    # The deepest Subflow refuses to start another; the failure travels up level by level.
    assert failed == [("NestingTooDeep", 1), ("SubflowFailed", MAX_NESTING)]
    error = rows(db, "SELECT error FROM node_instances WHERE error_type = 'NestingTooDeep'")[0][0]
    assert f"nested {MAX_NESTING} deep here (limit {MAX_NESTING}): rec -> rec -> rec -> ... (" in error
    assert "start itself" in error
    assert engine.get_run(root).status == "failed"
    assert rows(db, "SELECT count(*) FROM messages WHERE status IN ('ready', 'leased')") == [(0,)]
    engine.close()


def test_cancelling_a_run_with_thousands_of_nested_children_does_not_recurse(tmp_path):
    db = tmp_path / "deep.db"
    engine = Engine(db, clock=ManualClock(T0))
    root = engine.start({"workflowId": "hold", "nodes": [
        {"nodeId": "w", "runtimeType": "Wait", "duration": "1d"}]})
    # Children written straight into the table (the engine would refuse to nest this deep).
    conn = sqlite3.connect(db)
    parent = root
    for i in range(3000):
        child = f"child-{i:05d}"
        conn.execute("INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, status, "
                     "created_at) VALUES (?, 'hold', 1, ?, 'running', '2027-01-01T00:00:00.000Z')",
                     (child, parent))
        parent = child
    conn.commit()
    conn.close()
    assert engine.cancel(root) == "cancelled"
    assert rows(db, "SELECT status, count(*) FROM runs GROUP BY status") == [("cancelled", 3001)]
    engine.close()


def test_a_timer_claimed_beside_a_node_that_fails_the_run_is_cancelled_not_left_waiting(tmp_path):
    db = tmp_path / "ord.db"
    engine = Engine(db, clock=ManualClock(T0))
    run_id = engine.start({"workflowId": "ord", "nodes": [
        {"nodeId": "s", "runtimeType": "Noop"},
        {"nodeId": "bad", "runtimeType": "Switch", "expression": "input.nokey", "cases": {"a": "a"}},
        {"nodeId": "nap", "runtimeType": "Wait", "duration": "2d"},
        {"nodeId": "sig", "runtimeType": "WaitForSignal", "signal": "go"},
        {"nodeId": "a", "runtimeType": "Noop"}],
        "connections": [{"sourceNodeId": "s", "targetNodeId": t} for t in ("bad", "nap", "sig")]
        + [{"sourceNodeId": "bad", "targetNodeId": "a", "sourcePort": "a"}]})
    drain(engine)
    run = engine.get_run(run_id)
    assert run.status == "failed"
    assert {n.node_id: n.status for n in run.nodes if n.node_id in ("nap", "sig")} == {
        "nap": "cancelled", "sig": "cancelled"}
    assert rows(db, "SELECT count(*) FROM messages WHERE status IN ('ready', 'leased')") == [(0,)]
    engine.close()


def test_rerun_from_a_node_the_old_run_skipped_is_refused(tmp_path):
    engine = Engine(tmp_path / "rs.db", clock=ManualClock(T0))
    run_id = engine.start({"workflowId": "branch", "nodes": [
        {"nodeId": "check", "runtimeType": "IfElse", "condition": "1 == 1"},
        {"nodeId": "big", "runtimeType": "Noop"}, {"nodeId": "small", "runtimeType": "Noop"}],
        "connections": [{"sourceNodeId": "check", "targetNodeId": "big", "sourcePort": "true"},
                        {"sourceNodeId": "check", "targetNodeId": "small", "sourcePort": "false"}]})
    drain(engine)
    assert engine.get_run(run_id).node("small").status == "skipped"
    with pytest.raises(InvalidTransition, match="rerun --from small: it was skipped"):
        engine.rerun(run_id, from_node="small")
    again = engine.rerun(run_id, from_node="check")     # upstream of the branch is fine
    drain(engine)
    assert engine.get_run(again).status == "completed"
    engine.close()


def test_a_waiting_node_keeps_its_first_start_so_its_duration_is_the_whole_wait(tmp_path):
    clock = ManualClock(T0)
    engine = Engine(tmp_path / "dur.db", clock=clock)
    run_id = engine.start({"workflowId": "nap", "nodes": [
        {"nodeId": "w", "runtimeType": "Wait", "duration": "1h"}]})
    drain(engine)
    clock.advance(3600)
    drain(engine)
    node = engine.get_run(run_id).node("w")
    assert node.status == "completed" and node.duration == pytest.approx(3600, abs=0.01)
    engine.close()


def test_rerun_from_a_node_of_a_run_still_going_is_refused(tmp_path):
    """Its upstream results may not be recorded yet: the new run would quietly start over."""
    engine = Engine(tmp_path / "rg.db", clock=ManualClock(T0))
    run_id = engine.start(chain("going", py("a", "output = 1"), py("b", "output = ctx.input + 1")))
    with pytest.raises(ValidationError, match=r"rerun --from: run .* is (pending|running); wait for it "
                                              r"to finish, or cancel it, then rerun from 'b'"):
        engine.rerun(run_id, from_node="b")
    assert len(engine.runs()) == 1                       # nothing was started
    again = engine.rerun(run_id, fresh=True)             # a fresh rerun of a run still going is fine
    drain(engine)
    assert engine.get_run(again).status == "completed"
    assert engine.rerun(run_id, from_node="b") != run_id    # finished now: --from is allowed
    engine.close()


def test_status_shows_the_run_a_rerun_repeats(tmp_path):
    """Issue 11, point 5: `status` (and the Run) name the run a rerun came from, and how."""
    db = tmp_path / "which.db"
    engine = Engine(db, clock=ManualClock(T0))
    first = engine.start(chain("which", py("a", "output = 1"), py("b", "output = 2")))
    drain(engine)
    again = engine.rerun(first, from_node="b")
    fresh = engine.rerun(first, fresh=True)
    assert engine.get_run(again).rerun_of == {"run_id": first, "from": "b", "fresh": False}
    assert engine.get_run(fresh).rerun_of == {"run_id": first, "from": None, "fresh": True}
    assert engine.get_run(first).rerun_of is None
    engine.close()
    shown = subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), "status", again],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"rerun of: {first} from b" in shown.stdout


def test_a_worker_in_another_pid_namespace_is_not_taken_for_dead(tmp_path):
    """Issue 11, point 2: containers sharing the host name and the database volume have PID
    namespaces of their own: a pid recorded there says nothing here. Such a worker's leases are
    recovered when they expire, not at once (and none of its processes is killed)."""
    import socket
    clock = ManualClock(T0)
    db = tmp_path / "ns.db"
    engine = Engine(db, clock=clock)
    engine.start(chain("ns", py("a", "output = 1")))
    free_pid = 2 ** 22 - 7          # above any pid this machine has handed out: no process here
    (task,) = engine.service.claim("container-2:1:abc", 1, 300.0)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO workers (worker_id, host, pid, concurrency, started_at, heartbeat_at) "
                     "VALUES (?, ?, ?, 1, '2027-01-15T08:00:00.000Z', '2027-01-15T08:00:00.000Z')",
                     ("container-2:1:abc", socket.gethostname(), free_pid))
        with contextlib.suppress(sqlite3.OperationalError):       # no host_id column before the fix
            conn.execute("UPDATE workers SET host_id = ? WHERE worker_id = 'container-2:1:abc'",
                         (f"{socket.gethostname()}/other-boot/pid:[1]",))
    conn.close()
    assert engine.recover()["reclaimed"] == 0
    clock.advance(301)
    assert engine.recover()["reclaimed"] == 1
    engine.close()
