"""A worker SIGKILLed in the middle of compensating: the next worker takes over, runs the
interrupted compensation again (at least once) and never a finished one twice. A ledger file
written by the bodies says what ran."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from durableflow import Engine

pytestmark = pytest.mark.slow

STEP = ("import pathlib\n"
        "pathlib.Path(ctx.input['dir'], 'ledger').open('a').write('do ' + ctx.node_id + '\\n')\n"
        "output = ctx.input\n")
UNDO = ("import pathlib, time\n"
        "d = pathlib.Path(ctx.input['input']['dir'])\n"
        "undone = ctx.input['nodeId']\n"
        "(d / 'ledger').open('a').write('start undo ' + undone + '\\n')\n"
        "while undone == 's2' and not (d / 'go').exists():\n"
        "    time.sleep(0.01)\n"
        "(d / 'ledger').open('a').write('undo ' + undone + '\\n')\n"
        "output = undone\n")


def saga() -> dict:
    steps = [{"nodeId": f"s{i}", "runtimeType": "Python", "script": STEP, "compensationNodeId": f"u{i}"}
             for i in (1, 2, 3)]
    undo = [{"nodeId": f"u{i}", "runtimeType": "Python", "script": UNDO} for i in (1, 2, 3)]
    boom = {"nodeId": "s4", "runtimeType": "Python", "script": "raise RuntimeError('out of stock')"}
    chain = ["s1", "s2", "s3", "s4"]
    return {"workflowId": "crash-saga", "nodes": steps + [boom] + undo,
            "connections": [{"sourceNodeId": a, "targetNodeId": b} for a, b in zip(chain, chain[1:])]}


def ledger(tmp_path) -> list[str]:
    path = tmp_path / "ledger"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(predicate, what: str, worker=None, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if worker is not None:
            assert worker.poll() is None, f"the worker exited ({worker.returncode}) before {what}"
        time.sleep(0.05)   # the poll interval of a deadline-bounded wait


def test_a_worker_killed_while_compensating_resumes_without_undoing_twice(tmp_path):
    db = tmp_path / "saga.db"
    with Engine(db) as engine:
        run_id = engine.start(saga(), {"dir": str(tmp_path)})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [sys.executable, "-m", "durableflow", "--db", str(db), "worker"]
    log = open(tmp_path / "worker.log", "w")
    try:
        first = subprocess.Popen(argv, env=env, stderr=log)
        wait_for(lambda: "start undo s2" in ledger(tmp_path), "the second compensation to start", first)
        with Engine(db) as engine:
            assert engine.get_run(run_id).status == "compensating"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        (tmp_path / "go").write_text("go")
        second = subprocess.run(argv + ["--until-idle", "--max-wait", "1s"], env=env, stderr=log, timeout=120)
        assert second.returncode == 0, (tmp_path / "worker.log").read_text()
    finally:
        log.close()
    assert ledger(tmp_path) == ["do s1", "do s2", "do s3", "start undo s3", "undo s3",
                                "start undo s2", "start undo s2", "undo s2", "start undo s1", "undo s1"]
    with Engine(db) as engine:
        run = engine.get_run(run_id)
    assert run.status == "failed" and run.error.startswith("node 's4' failed: RuntimeError: out of stock")
    undo = [(n.node_id, n.attempt, n.status, n.error_type) for n in run.nodes if n.node_id.startswith("u")]
    assert undo == [("u3", 1, "completed", None), ("u2", 1, "failed", "WorkerLost"),
                    ("u2", 2, "completed", None), ("u1", 1, "completed", None)]
