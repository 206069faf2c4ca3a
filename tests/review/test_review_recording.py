"""Review reproductions: recording and join bookkeeping. Each was a bug found in review; the fix keeps it passing."""

from __future__ import annotations

import json

import pytest

from durableflow import Engine, ValidationError, ManualClock
from durableflow.tasks import Outcome


def py(node_id, script="output = 1", **keys):
    return {"nodeId": node_id, "runtimeType": "Python", "script": script, **keys}


def noop(node_id):
    return {"nodeId": node_id, "runtimeType": "Noop"}


def conn(source, target, on="Complete", **keys):
    return {"sourceNodeId": source, "targetNodeId": target, "triggerMessageType": on, **keys}


def wf(workflow_id, *nodes, connections=(), **top):
    return {"workflowId": workflow_id, "nodes": list(nodes), "connections": list(connections), **top}


def ok(value):
    return Outcome(True, value, json.dumps(value))


def test_one_bad_item_does_not_undo_the_other_results_of_a_batch(tmp_path):
    """A result the database refuses (here a second 'completed' row for one node, planted
    behind the engine's back) is refused alone: the other results of the batch are kept."""
    bad = wf("poison", noop("b"))
    good = wf("healthy", noop("g"))
    with Engine(tmp_path / "x.db") as engine:
        run_bad = engine.start(bad)
        run_good = engine.start(good)
        tasks = engine.service.claim("w", 10, 30)
        assert sorted(t.node_id for t in tasks) == ["b", "g"]
        engine.store.write(lambda c: c.execute(
            "INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, created_at) "
            "VALUES (?, 'b', 0, 9, 'completed', '2026-01-01T00:00:00.000Z')", (run_bad,)))
        results, _ = engine.service.record_many([(t, ok(t.node_id)) for t in tasks])
        by_node = dict(zip((t.node_id for t in tasks), results))
        assert by_node["g"] is None and "refused by the database" in str(by_node["b"])
        assert engine.get_run(run_good).status == "completed"


def test_an_each_node_cannot_feed_a_join_that_also_has_other_inputs(tmp_path):
    """`c` runs once per delivery (iterations 0 and 1) while `e` delivers once: a join of the
    two would wait at iteration 1 for an `e` that never comes. Validation refuses the shape."""
    defn = wf("each-then-all", py("a", "output = 'a'"), py("b", "output = 'b'"),
              py("c", "output = ctx.input", joinMode="each"), py("e", "output = 'e'"),
              py("d", "output = sorted(ctx.inputs.items())"),
              connections=[conn("a", "c"), conn("b", "c"), conn("c", "d"), conn("e", "d")])
    with Engine(tmp_path / "x.db") as engine:
        with pytest.raises(ValidationError, match="node 'd': field 'joinMode': joins inputs from 'e'"):
            engine.execute(defn, timeout=20)
    fine = wf("each-then-each", py("a", "output = 'a'"), py("b", "output = 'b'"),
              py("c", "output = ctx.input", joinMode="each"), py("e", "output = 'e'"),
              py("d", "output = ctx.input", joinMode="each"),
              connections=[conn("a", "c"), conn("b", "c"), conn("c", "d"), conn("e", "d")])
    with Engine(tmp_path / "y.db") as engine:
        run = engine.execute(fine, timeout=20)
        assert run.status == "completed"
        assert sorted(n.output for n in run.nodes if n.node_id == "d") == ["a", "b", "e"]


def test_a_lease_the_worker_let_go_of_is_not_kept_alive_by_its_heartbeat(tmp_path):
    """The heartbeat renews the leases of the nodes the worker is running, not every lease
    its id holds: one it gave up on (its record failed) expires and is delivered again."""
    clock = ManualClock()
    with Engine(tmp_path / "x.db", clock=clock, lease_seconds=5) as engine:
        engine.start(wf("two", noop("p"), noop("q")))
        running, given_up = engine.service.claim("w", 2, 5)
        for _ in range(3):
            clock.advance(4)
            engine.service.heartbeat("w", 5, [running])
        engine.maintain()
        leased = engine.store.read(lambda c: dict(c.execute(
            "SELECT m.target_node_id, m.status FROM messages m").fetchall()))
        assert leased == {running.node_id: "leased", given_up.node_id: "ready"}
