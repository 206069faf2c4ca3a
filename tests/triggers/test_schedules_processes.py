"""Two real worker processes on one file, a 1 s interval schedule, for about ten seconds: every
fire time starts exactly one run (none twice, none missed), whichever process wins each."""

from __future__ import annotations

import calendar
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from durableflow import Engine

pytestmark = pytest.mark.slow


def _fires(db) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT fire_at, status, run_id FROM schedule_fires ORDER BY fire_at").fetchall()
    finally:
        conn.close()


def test_two_worker_processes_fire_each_second_exactly_once(tmp_path):
    db = tmp_path / "every-second.db"
    with Engine(db) as engine:
        engine.register({"workflowId": "tick", "nodes": [
            {"nodeId": "every", "runtimeType": "Timer", "interval": "1s", "overlap": "allow"},
            {"nodeId": "work", "runtimeType": "Noop"}],
            "connections": [{"sourceNodeId": "every", "targetNodeId": "work"}]})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    logs = [open(tmp_path / f"worker-{i}.log", "w") for i in range(2)]
    workers = [subprocess.Popen([sys.executable, "-m", "durableflow", "--db", str(db), "worker",
                                 "--concurrency", "2"], env=env, stderr=log)
               for log in logs]
    try:
        deadline = time.monotonic() + 60
        while len(_fires(db)) < 11:
            assert time.monotonic() < deadline, "the schedule did not fire 11 times within 60 s"
            assert all(w.poll() is None for w in workers), [
                (tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
            time.sleep(0.2)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)
        for log in logs:
            log.close()
    fires = _fires(db)
    times = [f[0] for f in fires]
    assert len(times) == len(set(times))
    seconds = [calendar.timegm(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) for t in times]
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), times   # none missed
    assert {f[1] for f in fires} == {"started"}
    conn = sqlite3.connect(db)
    try:
        runs = conn.execute("SELECT run_id, scheduled_at FROM runs ORDER BY scheduled_at").fetchall()
        owners = {r[0] for r in conn.execute(
            "SELECT DISTINCT json_extract(data, '$.worker') FROM events WHERE type = 'message.leased'")}
    finally:
        conn.close()
    assert len(runs) == len(fires) and {r[0] for r in runs} == {f[2] for f in fires}
    assert sorted(r[1] for r in runs) == times
    assert len(owners) >= 1


def test_a_future_fire_is_not_pending_work_for_until_idle(tmp_path):
    db = tmp_path / "later.db"
    with Engine(db) as engine:
        engine.register({"workflowId": "hourly", "nodes": [
            {"nodeId": "every", "runtimeType": "Timer", "interval": "1h"}]})
    # Were the fire pending work, the worker would wait for it (up to an hour, within --max-wait)
    # and the subprocess would time out.
    done = subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), "worker", "--until-idle",
                           "--max-wait", "2h"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
