"""A worker process SIGKILLed again and again while it runs long chains of cheap nodes, nearly all
of them handed on inside its claiming transactions (storage.handoff): once a worker finishes the
job, every node completed exactly once, its input passed on intact, its history whole, and
nothing is left open (issue 12)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from durableflow import Engine

LENGTH = 1500   # nodes per chain; two chains per run


def two_chains(length: int) -> dict:
    nodes, connections = [], []
    for chain in "xy":
        for i in range(length):
            nodes.append({"nodeId": f"{chain}{i}", "runtimeType": "Noop"})
            if i:
                connections.append({"sourceNodeId": f"{chain}{i - 1}", "targetNodeId": f"{chain}{i}"})
    return {"workflowId": "two-chains", "nodes": nodes, "connections": connections}


def completed(db) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM node_instances WHERE status = 'completed'").fetchone()[0]


def worker(db) -> subprocess.Popen:
    code = ("import sys, time; from durableflow import Engine; e = Engine(sys.argv[1]);"
            "e.worker(concurrency=1).start()\nwhile True: time.sleep(1)")
    return subprocess.Popen([sys.executable, "-c", code, str(db)])


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_handed_on_chains_loses_and_repeats_nothing(tmp_path):
    db = tmp_path / "chains.db"
    with Engine(db) as engine:
        run_ids = [engine.start(two_chains(LENGTH), inputs={"run": i, "text": "é \"q\""}) for i in range(3)]
    total = 3 * 2 * LENGTH
    kills = 0
    for goal in (total // 6, total // 2, 5 * total // 6):
        proc = worker(db)
        deadline = time.monotonic() + 60
        while completed(db) < goal and proc.poll() is None:
            assert time.monotonic() < deadline, f"{completed(db)} of {total} nodes after 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills == 3 and completed(db) < total   # killed before the end

    with Engine(db) as engine:
        engine.recover()
        with engine.worker(concurrency=1):
            runs = [engine.wait(r, timeout=120) for r in run_ids]
    with sqlite3.connect(db) as conn:
        for i, run in enumerate(runs):
            assert run.status == "completed"
            assert run.outputs == {f"x{LENGTH - 1}": {"run": i, "text": "é \"q\""},
                                   f"y{LENGTH - 1}": {"run": i, "text": "é \"q\""}}
            rows = conn.execute("SELECT node_id, count(*), min(status), max(status), max(output = input) "
                                "FROM node_instances WHERE run_id = ? GROUP BY node_id", (run.run_id,)).fetchall()
            assert len(rows) == 2 * LENGTH
            assert {r[1:] for r in rows} == {(1, "completed", "completed", 1)}, \
                [r for r in rows if r[1:] != (1, "completed", "completed", 1)][:3]
        # Each node's history names its one attempt and its one message, start to end.
        events = conn.execute("SELECT e.type, count(*) FROM events e WHERE e.node_id IS NOT NULL "
                              "GROUP BY e.type").fetchall()
        assert dict(events) == {t: total for t in ("node.pending", "message.leased", "node.running",
                                                   "message.acked", "node.completed")}
        assert conn.execute("SELECT count(*) FROM messages WHERE status != 'acked' OR finished_at IS NULL"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM node_instances n JOIN messages m ON m.id = n.message_id "
                            "WHERE m.target_node_id != n.node_id OR m.run_id != n.run_id").fetchone()[0] == 0
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
