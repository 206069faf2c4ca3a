"""A paused run shows no ETA: the time it stays paused says nothing about the work left."""

from __future__ import annotations

import yaml

from durableflow import Engine
from durableflow.clock import ManualClock, iso
from durableflow.run import build_run, compute_progress

from tests.unit.runtime_fixtures import df_runtime_helpers as h

START = 1_800_000_000.0


def row(status: str) -> dict:
    return {"run_id": "r", "workflow_id": "w", "workflow_version": 1, "status": status,
            "inputs": "{}", "outputs": None, "error": None, "variables": "{}",
            "parent_run_id": None, "created_at": iso(START), "started_at": iso(START),
            "finished_at": None, "paused_until": None}


def node_row(node_id: str, status: str, n: int) -> dict:
    return {"id": n, "node_id": node_id, "iteration": 0, "attempt": 1, "status": status,
            "input": None, "output": None, "error": None, "error_type": None, "port": None,
            "waiting_reason": None, "progress": None, "progress_message": None,
            "worker_id": None, "created_at": iso(START), "started_at": iso(START),
            "finished_at": None}


def test_build_run_gives_no_eta_while_paused():
    nodes = [node_row("a", "completed", 1), node_row("b", "pending", 2)]
    running = build_run(row("running"), nodes, None, START + 10)
    assert running.progress["eta_seconds"] == 10.0
    for later in (START + 10, START + 1000):
        paused = build_run(row("paused"), nodes, None, later)
        assert paused.progress["eta_seconds"] is None, paused.progress
        assert paused.progress["completed"] == 1 and paused.progress["percent"] == 50.0


def test_compute_progress_paused_flag():
    nodes = build_run(row("running"), [node_row("a", "completed", 1),
                                        node_row("b", "running", 2)], None, START).nodes
    assert compute_progress(None, nodes, iso(START), START + 4)["eta_seconds"] == 4.0
    assert compute_progress(None, nodes, iso(START), START + 4, paused=True)["eta_seconds"] is None


def test_a_paused_run_in_the_store_shows_no_growing_eta(tmp_path):
    gate = tmp_path / "go"
    script = ("import pathlib, threading\n"
              f"gate = pathlib.Path({str(gate)!r})\n"
              "pause = threading.Event()\n"
              "for _ in range(6000):\n"
              "    if gate.exists():\n"
              "        break\n"
              "    pause.wait(0.01)\n"
              "output = 2\n")
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump({"workflowId": "paused-eta", "nodes": [
        {"nodeId": "a", "runtimeType": "Python", "script": "output = 1"},
        {"nodeId": "b", "runtimeType": "Python", "script": script}],
        "connections": [{"sourceNodeId": "a", "targetNodeId": "b"}]}), encoding="utf-8")
    clock = ManualClock(START)
    engine = Engine(tmp_path / "app.db", clock=clock)
    try:
        run_id = engine.start(path)
        with engine.worker(concurrency=2):
            try:
                h.wait_until(lambda: getattr(engine.get_run(run_id).node("b"), "status", None)
                             == "running", timeout=30, what="node b to run")
                clock.advance(10)
                assert engine.get_run(run_id).progress["eta_seconds"] is not None
                engine.pause(run_id)
                paused = engine.get_run(run_id)
                assert paused.status == "paused"
                assert paused.progress["eta_seconds"] is None, paused.progress
                clock.advance(3600)
                assert engine.get_run(run_id).progress["eta_seconds"] is None
            finally:
                gate.write_text("go")   # node b ends, so the worker stops at once either way
            engine.resume(run_id)
            run = engine.wait(run_id, timeout=60)
        assert run.status == "completed", run.error
        assert run.progress["eta_seconds"] == 0.0
    finally:
        engine.close(timeout=30)
