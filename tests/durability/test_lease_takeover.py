"""A worker that loses a lease while the body runs (issue 11, point 3): it notices at its next
heartbeat, stops the body (a Shell or process-isolated body's process group is killed) and does
not record its result; and heartbeats keep coming while a slow upkeep pass runs."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from durableflow import Engine
from durableflow.clock import ManualClock
from durableflow.tasks import Outcome

T0 = 1_800_000_000.0


def wait_until(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """A zombie (killed, not yet reaped) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def rows(db: Path, sql: str, *args):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def long_body(kind: str, pidfile: Path) -> dict:
    """A node that would run for 999 s, writing the pid of its process (group leader) first."""
    if kind == "shell":
        return {"nodeId": "slow", "runtimeType": "Shell", "shell": True,
                "command": f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; sleep 999"}
    body = ("import os, pathlib, time\n"
            f"pathlib.Path({str(pidfile)!r} + '.tmp').write_text(str(os.getpid()))\n"
            f"os.replace({str(pidfile)!r} + '.tmp', {str(pidfile)!r})\n"
            "time.sleep(999)\noutput = 'late'")
    return {"nodeId": "slow", "runtimeType": "Python", "script": body, "isolation": "process"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["shell", "python-process"])
def test_a_body_whose_lease_was_taken_over_is_stopped_and_not_recorded(tmp_path, kind, caplog):
    db = tmp_path / "takeover.db"
    pidfile = tmp_path / "slow.pid"
    # Worker A: 3 s leases, so it renews (and learns what it lost) every second of real time.
    mine = Engine(db, clock=ManualClock(T0), lease_seconds=3)
    run_id = mine.start({"workflowId": "takeover", "nodes": [long_body(kind, pidfile)]})
    worker = mine.worker(concurrency=1).start()
    other = None
    pid = None
    try:
        pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(),
                             what="the body to start"))
        # Another process, whose clock says A's lease ran out long ago, takes the node back
        # (attempt 1 fails as lost) and delivers it again to a worker of its own.
        other = Engine(db, clock=ManualClock(T0 + 3600), lease_seconds=3)
        other.maintain()
        (taken,) = other.service.claim("the-other-worker", 1, 300)
        assert taken.attempt == 2
        # A's next heartbeat finds its lease gone: the body is stopped at once, not at its end.
        wait_until(lambda: not pid_alive(pid), timeout=15, what="the lost body's process to be stopped")
        wait_until(lambda: worker.busy == 0, timeout=15, what="worker A to let go of the node")
        other.service.record(taken, Outcome(True, "from the new delivery", '"from the new delivery"'))
        attempts = rows(db, "SELECT attempt, status, error_type, worker_id FROM node_instances "
                            "WHERE run_id = ? ORDER BY attempt", run_id)
        assert attempts == [(1, "failed", "WorkerLost", worker.worker_id),
                            (2, "completed", None, "the-other-worker")]
        run = other.get_run(run_id)
        assert run.status == "completed" and run.outputs == {"slow": "from the new delivery"}
        assert worker.errors == []
        assert any("lease was taken over" in r.getMessage() and "not recorded" in r.getMessage()
                   for r in caplog.records)
        # Nothing from A was written after the takeover: no 'cancelled' attempt, no event of it.
        assert rows(db, "SELECT count(*) FROM events WHERE run_id = ? AND type = 'node.cancelled'",
                    run_id) == [(0,)]
    finally:
        worker.stop(timeout=10)
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        mine.close()
        if other is not None:
            other.close()


def test_heartbeats_go_on_while_an_upkeep_pass_is_slow(tmp_path):
    """Upkeep (recovery: stopping a dead worker's processes, reclaiming thousands of leases)
    may take long; the leases of the nodes in hand must be renewed meanwhile."""
    db = tmp_path / "beat.db"
    engine = Engine(db, lease_seconds=1.5)   # renewed every half second
    release = threading.Event()
    upkeep_began = threading.Event()

    def slow_upkeep():
        upkeep_began.set()
        release.wait(30)

    engine.service.maintain = slow_upkeep
    body = "while not ctx.cancelled:\n    ctx.cancel_event.wait(0.05)\nctx.check_cancelled()"
    run_id = engine.start({"workflowId": "beat", "nodes": [
        {"nodeId": "hold", "runtimeType": "Python", "script": body}]})
    worker = engine.worker(concurrency=1).start()
    try:
        assert upkeep_began.wait(20), "upkeep never ran"
        expiries = {e for (e,) in rows(db, "SELECT expires_at FROM leases")}

        def renewed_three_times():
            expiries.update(e for (e,) in rows(db, "SELECT expires_at FROM leases"))
            return len(expiries) >= 4

        wait_until(renewed_three_times, timeout=10,
                   what="the lease to be renewed three times while an upkeep pass is stuck")
        assert rows(db, "SELECT status FROM node_instances WHERE run_id = ?", run_id) == [("running",)]
    finally:
        release.set()
        engine.cancel(run_id)
        worker.stop(timeout=10)
        engine.close()
