"""Compensation inside Subflows and loop bodies: a failed child compensates itself; when a
parent compensates, each completed child run is compensated too, in its place in the order."""

from __future__ import annotations

from df_it_support import conn, node, py, wf

from tests.compensation.conftest import UNDO

BOOM = "raise RuntimeError('no stock')"


def child(workflow_id: str, fails: bool) -> dict:
    return wf(workflow_id, py("c1", "output = 'c1 done'", compensationNodeId="undo_c1"),
              py("c2", BOOM if fails else "output = 'c2 done'"), py("undo_c1", UNDO),
              connections=[conn("c1", "c2")])


def parent(workflow_id: str, sub: str, fails_after: bool) -> dict:
    nodes = [py("p1", "output = 'p1 done'", compensationNodeId="undo_p1"), node("sub", "Subflow", workflowId=sub),
             py("undo_p1", UNDO)]
    connections = [conn("p1", "sub")]
    if fails_after:
        nodes.append(py("p2", "raise RuntimeError('parent step failed')"))
        connections.append(conn("sub", "p2"))
    return wf(workflow_id, *nodes, connections=connections)



def test_a_failed_child_compensates_itself_then_its_parent_does(engine, hooks, sql):
    engine.register(child("card", fails=True))
    run = engine.execute(parent("checkout", "card", fails_after=False), timeout=30)
    assert run.status == "failed"
    assert [u[0] for u in hooks.calls["undone"]] == ["c1", "p1"]
    kid = sql.one("SELECT run_id FROM runs WHERE parent_run_id = ?", run.run_id)
    assert engine.get_run(kid).status == "failed"
    # Each compensation is recorded in the run it belongs to.
    assert sql.rows("SELECT run_id, node_id, compensates FROM node_instances WHERE compensates IS NOT NULL "
                    "ORDER BY id") == [(kid, "undo_c1", "c1"), (run.run_id, "undo_p1", "p1")]


def test_a_completed_child_is_compensated_in_its_place_when_its_parent_compensates(engine, hooks, sql):
    engine.register(child("card-ok", fails=False))
    run = engine.execute(parent("checkout-2", "card-ok", fails_after=True), timeout=30)
    assert run.status == "failed"
    # The child completed after p1: undone first.
    assert [u[0] for u in hooks.calls["undone"]] == ["c1", "p1"]
    kid = engine.get_run(sql.one("SELECT run_id FROM runs WHERE parent_run_id = ?", run.run_id))
    assert kid.status == "cancelled"
    assert kid.error == f"compensated: its parent run {run.run_id} is compensating"
    moves = [f"{e['data']['from']}->{e['type'][4:]}" for e in engine.events(kid.run_id)
             if e["type"].startswith("run.") and "from" in (e["data"] or {})]
    assert moves == ["pending->running", "running->completed", "completed->compensating",
                     "compensating->cancelled"]


def test_completed_loop_bodies_are_compensated_newest_first(engine, hooks, sql):
    body = {"nodes": [{"nodeId": "b", "runtimeType": "Python", "script": "output = ctx.input['item']",
                       "compensationNodeId": "undo_b"},
                      {"nodeId": "undo_b", "runtimeType": "Python", "script": UNDO}]}
    defn = wf("loop-saga", node("loop", "ForEach", items="[1, 2, 3]", maxParallelism=1, body=body),
              py("after", "raise RuntimeError('after the loop')"), connections=[conn("loop", "after")])
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    assert [(u[0], u[1]) for u in hooks.calls["undone"]] == [("b", 3), ("b", 2), ("b", 1)]
    statuses = sql.rows("SELECT status FROM runs WHERE parent_run_id = ?", run.run_id)
    assert statuses == [("cancelled",)] * 3


def test_a_child_without_anything_to_undo_is_left_as_it_ended(engine, hooks, sql):
    engine.register(wf("plain-child", py("x")))
    run = engine.execute(parent("checkout-3", "plain-child", fails_after=True), timeout=30)
    assert run.status == "failed"
    assert [u[0] for u in hooks.calls["undone"]] == ["p1"]
    assert sql.one("SELECT status FROM runs WHERE parent_run_id = ?", run.run_id) == "completed"
