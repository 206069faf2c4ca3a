"""Several real processes share one database file: every message acked exactly once, no lock errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from durableflow.clock import Clock
from durableflow.storage import NewMessage, Store
from tests.backends import raw_connection, target

HELPERS = Path(__file__).parent / "helpers"
# The helpers import durableflow from this checkout (the one under test).
REPO = str(Path(__file__).resolve().parents[2])
pytestmark = pytest.mark.slow


def start(script: str, *args, env, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HELPERS / script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def report(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"helper did not finish in {timeout} s: {err[-2000:]}")
    assert out.strip(), f"helper printed nothing (exit {proc.returncode}): {err[-2000:]}"
    data = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0 and not data.get("errors"), (data.get("errors"), err[-2000:])
    assert "locked" not in err and "Busy" not in err, err[-2000:]
    return data


def acked_once_each(path: Path, ids: list[int], reports: list[dict]) -> None:
    per_process = [r["acked"] for r in reports]
    union = [i for acked in per_process for i in acked]
    assert len(union) == len(set(union)), "a message was acked by two processes"
    assert sorted(union) == sorted(ids)
    conn = raw_connection(path)
    try:
        # Counted here, not with SQLite's json_extract: the same check reads PostgreSQL.
        counts = Counter(json.loads(data)["id"] for (data,) in conn.execute(
            "SELECT data FROM events WHERE type = 'message.acked'").fetchall())
        statuses = dict(conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())
        leases = conn.execute("SELECT count(*) FROM leases").fetchone()[0]
    finally:
        conn.close()
    assert all(counts[i] == 1 for i in ids), "a message has no or several message.acked events"
    assert set(counts) == set(ids) | (set(counts) - set(ids))
    assert statuses.get("ready", 0) == 0 and statuses.get("leased", 0) == 0 and leases == 0


def test_four_processes_drain_ten_thousand_messages(tmp_path, helper_env, backend):
    path = target(backend, tmp_path, "shared.db")
    with Store(path, clock=Clock()) as store:
        ids = store.enqueue(*[NewMessage("task", payload=str(i)) for i in range(10_000)])
    batches = ["1,3,7", "16", "50,5", "100,1,25"]
    start_at = time.time() + 1.0  # every interpreter up and its Store open: they really contend
    procs = [start("consumer.py", path, f"w{i}", sizes, "drain", start_at, env=helper_env(PYTHONPATH=REPO), cwd=tmp_path)
             for i, sizes in enumerate(batches)]
    reports = [report(p, timeout=60) for p in procs]
    acked_once_each(path, ids, reports)
    # They really ran side by side (a writer waiting on the lock polls often enough to get a turn).
    assert sum(1 for r in reports if r["acked"]) >= 2, [len(r["acked"]) for r in reports]


def test_a_producer_and_two_consumers_run_at_once(tmp_path, helper_env, backend):
    path = target(backend, tmp_path, "shared.db")
    Store(path, clock=Clock()).close()  # created and migrated before anyone races for it
    consumers = [start("consumer.py", path, f"c{i}", sizes, "until-stop", env=helper_env(PYTHONPATH=REPO), cwd=tmp_path)
                 for i, sizes in enumerate(["1,4", "10,2"])]
    producer = start("producer.py", path, 3000, 7, 2, env=helper_env(PYTHONPATH=REPO), cwd=tmp_path)
    produced = report(producer, timeout=60)
    reports = [report(c, timeout=60) for c in consumers]
    assert len(produced["ids"]) == 3000
    acked_once_each(path, produced["ids"], reports)
