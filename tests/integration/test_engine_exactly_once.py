"""Results are recorded exactly once: one completed row per (run, node, iteration), downstream
deliveries committed with the completion, stale leases refused, and two worker processes
sharing one file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from df_it_support import Sql, conn, py, wait_until, wf
from durableflow import Engine, ManualClock
from tests.backends import target as backend_target

FIXTURES = Path(__file__).parent / "fixtures"

DUPLICATE_COMPLETIONS = """
    SELECT run_id, node_id, iteration, count(*) FROM node_instances WHERE status = 'completed'
    GROUP BY run_id, node_id, iteration HAVING count(*) > 1
"""


def fan_defn(workflow_id: str = "fan") -> dict:
    return wf(
        workflow_id,
        py("split", "output = list(range(ctx.input['n']))"),
        py("left", "output = sum(ctx.input)"),
        py("right", "output = len(ctx.input)"),
        {"nodeId": "gate", "runtimeType": "IfElse", "condition": "len(input) > 2"},
        py("big", "output = 'big'"),
        py("small", "output = 'small'"),
        py("join", "output = ctx.inputs"),
        connections=[conn("split", "left"), conn("split", "right"), conn("split", "gate"),
                     conn("gate", "big", sourcePort="true"), conn("gate", "small", sourcePort="false"),
                     conn("left", "join"), conn("right", "join"), conn("big", "join"), conn("small", "join")],
    )


def assert_recorded_once(sql: Sql, plan_edges: dict[str, list[str]]) -> None:
    assert sql.rows(DUPLICATE_COMPLETIONS) == []
    # Every completed node's targets exist (delivered or ruled out) in the same run: the
    # completion and its downstream rows were committed together.
    for run_id, node_id in sql.rows("SELECT run_id, node_id FROM node_instances WHERE status = 'completed'"):
        for target in plan_edges.get(node_id, []):
            assert sql.one("SELECT count(*) FROM node_instances WHERE run_id = ? AND node_id = ?",
                           run_id, target) >= 1, (run_id, node_id, target)
    # Every acked node message belongs to exactly one finished attempt.
    orphans = sql.rows("""
        SELECT m.id FROM messages m WHERE m.kind = 'node' AND m.status = 'acked'
        AND NOT EXISTS (SELECT 1 FROM node_instances n WHERE n.message_id = m.id
                        AND n.status IN ('completed', 'failed', 'cancelled'))
    """)
    assert orphans == []


def edges_of(defn: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in defn.get("connections", []):
        out.setdefault(c["sourceNodeId"], []).append(c["targetNodeId"])
    return out


def test_many_concurrent_runs_record_each_node_once(engine, sql):
    defn = fan_defn()
    run_ids = [engine.start(defn, inputs={"n": i % 5}) for i in range(40)]
    with engine.worker(concurrency=4):
        runs = [engine.wait(r, timeout=60) for r in run_ids]
    assert {r.status for r in runs} == {"completed"}
    for r, i in zip(runs, range(40)):
        n = i % 5
        expected = {"left": sum(range(n)), "right": n, ("big" if n > 2 else "small"): "big" if n > 2 else "small"}
        assert r.outputs == {"join": expected}
    assert_recorded_once(sql, edges_of(defn))
    assert sql.one("SELECT count(*) FROM node_instances WHERE status = 'completed'") == 40 * 6
    assert sql.one("SELECT count(*) FROM node_instances WHERE status = 'skipped'") == 40
    assert sql.one("SELECT count(*) FROM messages WHERE status IN ('ready', 'leased')") == 0


def test_a_stale_lease_cannot_record_a_second_completion(tmp_path, hooks):
    """The first attempt overruns its lease; the redelivery completes; the first attempt's late
    result is refused, so the node and its downstream are recorded once."""
    clock = ManualClock(1_800_000_000.0)
    engine = Engine(tmp_path / "stale.db", clock=clock, lease_seconds=300)
    body = ("import df_it_hooks as h\nh.record('slow', ctx.attempt)\n"
            "if ctx.attempt == 1:\n    h.wait('first-go')\noutput = {'attempt': ctx.attempt}")
    defn = wf("stale", py("slow", body), py("after", "output = ctx.input"), connections=[conn("slow", "after")])
    sql = None
    try:
        run_id = engine.start(defn)
        with engine.worker(concurrency=2):
            wait_until(lambda: hooks.calls["slow"] == [1], what="attempt 1 running")
            clock.advance(301)              # the lease of attempt 1 expires
            engine.maintain()
            run = engine.wait(run_id, timeout=20)
            assert run.status == "completed", run.error
            hooks.event("first-go").set()   # the overrunning attempt now reports, too late
            wait_until(lambda: not any(t.name == "durableflow-node-slow" for t in threading.enumerate()),
                       what="attempt 1's thread to end")
        sql = Sql(engine.path)
        run = engine.get_run(run_id)
        assert hooks.calls["slow"] == [1, 2]
        slow_rows = [(n.attempt, n.status, n.error_type) for n in run.nodes if n.node_id == "slow"]
        assert slow_rows == [(1, "failed", "WorkerLost"), (2, "completed", None)]
        assert run.outputs == {"after": {"attempt": 2}}
        assert [n.status for n in run.nodes if n.node_id == "after"] == ["completed"]
        assert sql.rows(DUPLICATE_COMPLETIONS) == []
        completed_events = sql.rows("SELECT node_id FROM events WHERE run_id = ? AND type = 'node.completed'", run_id)
        assert sorted(completed_events) == [("after",), ("slow",)]
    finally:
        if sql is not None:
            sql.close()
        hooks.reset()
        engine.close()


def worker_argv(kind: str, db, tmp_path: Path, k: int) -> list[str]:
    if kind == "cli":
        return [sys.executable, "-m", "durableflow", "--db", str(db), "worker", "--until-idle",
                "--max-wait", "1s", "--concurrency", "2"]
    return [sys.executable, str(FIXTURES / "df_it_worker.py"), str(db), str(tmp_path / f"ready-{k}"),
            str(tmp_path / "go")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["helper", "cli"])
def test_two_worker_processes_share_the_work_of_200_runs(tmp_path, kind, backend):
    db = backend_target(backend, tmp_path, "shared.db")
    defn = fan_defn("shared")
    engine = Engine(db)
    try:
        run_ids = [engine.start(defn, inputs={"n": i % 6}) for i in range(200)]
    finally:
        engine.close()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")]))}
    procs = []
    try:
        for k in range(2):
            procs.append(subprocess.Popen(worker_argv(kind, db, tmp_path, k), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, env=env))
        if kind == "helper":
            # Both open the engine first, then start working together.
            wait_until(lambda: all((tmp_path / f"ready-{k}").exists() for k in range(2))
                       or any(p.poll() is not None for p in procs),
                       timeout=30, what="both worker processes to be ready")
            (tmp_path / "go").write_text("go")
        deadline = time.monotonic() + 55
        for p in procs:
            _out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, f"{kind} worker exited {p.returncode}: {err[-2000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    sql = Sql(db)
    try:
        statuses = dict(sql.rows("SELECT status, count(*) FROM runs GROUP BY status"))
        assert statuses == {"completed": 200}
        assert sql.rows(DUPLICATE_COMPLETIONS) == []
        per_node = dict(sql.rows(
            "SELECT node_id, count(*) FROM node_instances WHERE status = 'completed' GROUP BY node_id"))
        big = sum(1 for i in range(200) if i % 6 > 2)
        assert per_node == {"split": 200, "left": 200, "right": 200, "gate": 200, "join": 200,
                            "big": big, "small": 200 - big}
        assert sql.one("SELECT count(*) FROM node_instances WHERE status NOT IN ('completed', 'skipped')") == 0
        assert sql.one("SELECT count(*) FROM node_instances WHERE status = 'skipped'") == 200
        pids = {int(w.split(":")[1]) for (w,) in sql.rows(
            "SELECT DISTINCT worker_id FROM node_instances WHERE worker_id IS NOT NULL")}
        assert pids == {p.pid for p in procs}, "both worker processes must have run nodes"
        outputs = dict(sql.rows("SELECT run_id, outputs FROM runs"))
        for i, run_id in enumerate(run_ids):
            n = i % 6
            branch = "big" if n > 2 else "small"
            assert json.loads(outputs[run_id]) == {"join": {"left": sum(range(n)), "right": n, branch: branch}}
        assert_recorded_once(sql, edges_of(defn))
    finally:
        sql.close()
