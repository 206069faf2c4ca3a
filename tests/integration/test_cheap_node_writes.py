"""What a cheap node (claimed, run and recorded in one transaction) writes: its rows once, no lease
row, and the same history as any other node. And when it does not finish at once after all, its
start is written as any other node's (issue 12)."""

from __future__ import annotations

import re
import sqlite3

from durableflow import Engine
from durableflow.tasks import Outcome


def chain(workflow_id: str, n: int) -> dict:
    return {"workflowId": workflow_id,
            "nodes": [{"nodeId": f"n{i}", "runtimeType": "Noop"} for i in range(n)],
            "connections": [{"sourceNodeId": f"n{i}", "targetNodeId": f"n{i + 1}"} for i in range(n - 1)]}


def rows(path, sql, *args):
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def node_events(path, run_id, node_id):
    return [t for (t,) in rows(path, "SELECT type FROM events WHERE run_id = ? AND node_id = ? ORDER BY seq",
                               run_id, node_id)]


N = 200


def test_a_chain_of_cheap_nodes_writes_each_row_once_and_no_lease(tmp_path):
    path = tmp_path / "x.db"
    statements: list[str] = []
    with Engine(path) as engine:
        run_id = engine.start(chain("c", N))
        engine.store._writer.set_trace_callback(statements.append)
        worker = engine.worker(concurrency=1).start()
        try:
            assert engine.wait(run_id, timeout=30).status == "completed"
        finally:
            worker.stop()
            engine.store._writer.set_trace_callback(None)
    def writes(verb, table):
        return [s for s in statements if re.match(rf"\s*{verb} (INTO )?{table}\b", s)]
    transactions = sum(1 for s in statements if s.startswith("BEGIN"))
    assert transactions < N / 10, transactions
    # Each node's message and attempt are inserted once. The node a transaction claims from the
    # database first is then updated (leased, acked; started and finished at once); the ones it
    # queues and takes itself are inserted as they end (storage.handoff) and never updated.
    # (n0's by engine.start, before the trace began)
    assert len(writes("INSERT", "messages")) == N - 1
    assert len(writes("INSERT", "node_instances")) == N - 1
    node_updates = writes("UPDATE", "node_instances")
    assert len(node_updates) <= transactions, node_updates[:5]
    assert not [s for s in node_updates if "SET status = 'running'" in s], node_updates[:5]
    assert len(writes("UPDATE", "messages")) <= 2 * transactions
    assert not writes("INSERT", "leases")
    for node_id in ("n0", "n17", f"n{N - 1}"):
        assert node_events(path, run_id, node_id) == [
            "node.pending", "message.leased", "node.running", "message.acked", "node.completed"]
    started, finished = rows(path, "SELECT started_at, finished_at FROM node_instances WHERE node_id = 'n17'")[0]
    assert started is not None and finished is not None and started <= finished
    assert rows(path, "SELECT count(*) FROM node_instances WHERE worker_id IS NULL")[0][0] == 0
    assert rows(path, "SELECT count(*) FROM leases")[0][0] == 0


def test_nodes_claimed_to_run_at_once_but_handed_out_are_started_and_leased(tmp_path):
    """The claim expected to run them in its transaction (inline says so), then did not: they
    leave it started (running, with their worker and start time) and leased, as any claim's."""
    path = tmp_path / "x.db"
    with Engine(path) as engine:
        runs = [engine.start(chain("two", 2)) for _ in range(3)]
        _, tasks = engine.service.record_many(
            [], claim=("w1", 10, 30.0, None), cheap=lambda got: ([], got), inline=lambda plan, node_id: True)
        assert len(tasks) == 3 and all(t.deferred_start is None for t in tasks)
        got = rows(path, "SELECT run_id, status, worker_id, started_at IS NOT NULL FROM node_instances "
                         "WHERE node_id = 'n0' ORDER BY run_id")
        assert got == [(r, "running", "w1", 1) for r in sorted(runs)]
        leased = rows(path, "SELECT m.run_id, l.token FROM leases l JOIN messages m ON m.id = l.message_id "
                            "ORDER BY m.run_id")
        assert [r for r, _ in leased] == sorted(runs)
        assert {t.message.token for t in tasks} == {token for _, token in leased}
        # ... and their results are recorded as any other's.
        results, _ = engine.service.record_many([(t, Outcome(True, 1, "1")) for t in tasks])
        assert results == [None, None, None]


def test_a_cheap_node_that_fails_is_started_then_failed(tmp_path):
    """Only a completion writes the start and the end at once; a failure goes through running."""
    path = tmp_path / "x.db"
    with Engine(path) as engine:
        run_id = engine.start(chain("one", 1))
        # A first claim outside any record transaction starts nodes as always: record one
        # result to get a record transaction that claims with `inline`.
        other = engine.start(chain("other", 1))
        first = engine.service.claim("w1", 1, 30.0)
        assert len(first) == 1
        fail = lambda got: ([(t, Outcome(False, error="boom", error_type="Boom", retryable=False))
                             for t in got], [])
        results, left = engine.service.record_many(
            [(first[0], Outcome(True, 1, "1"))], claim=("w1", 10, 30.0, None), cheap=fail,
            inline=lambda plan, node_id: True)
        assert results == [None] and left == []
        assert {engine.get_run(r).status for r in (run_id, other)} == {"completed", "failed"}
        failed = run_id if engine.get_run(run_id).status == "failed" else other
        assert node_events(path, failed, "n0") == [
            "node.pending", "message.leased", "node.running", "message.acked", "node.failed"]
        status, worker, started = rows(path, "SELECT status, worker_id, started_at FROM node_instances "
                                             "WHERE run_id = ?", failed)[0]
        assert (status, worker) == ("failed", "w1") and started is not None
        assert rows(path, "SELECT count(*) FROM leases")[0][0] == 0


def test_a_run_failed_by_one_cheap_node_keeps_its_siblings_started_in_the_same_transaction(tmp_path):
    """a, b and c are claimed together, their rows' starts put off; a fails the run before b and
    c are recorded. b and c were running (the history says so): the failure does not cancel them
    as if pending, and their results are recorded as a running node's."""
    path = tmp_path / "x.db"
    defn = {"workflowId": "fan", "nodes": [{"nodeId": n, "runtimeType": "Noop"} for n in "sabc"],
            "connections": [{"sourceNodeId": "s", "targetNodeId": n} for n in "abc"]}
    with Engine(path) as engine:
        run_id = engine.start(defn)
        first = engine.service.claim("w1", 1, 30.0)
        assert [t.node_id for t in first] == ["s"]

        def outcomes(got):
            order = sorted(got, key=lambda t: t.node_id)   # a first: it fails the run
            return [(t, Outcome(False, error="boom", error_type="Boom", retryable=False) if t.node_id == "a"
                     else Outcome(True, 1, "1")) for t in order], []

        results, left = engine.service.record_many(
            [(first[0], Outcome(True, {}, "{}"))], claim=("w1", 10, 30.0, None), cheap=outcomes,
            inline=lambda plan, node_id: True)
        assert results == [None] and left == []
        assert engine.get_run(run_id).status == "failed"
        got = dict(rows(path, "SELECT node_id, status FROM node_instances WHERE run_id = ?", run_id))
        assert got == {"s": "completed", "a": "failed", "b": "completed", "c": "completed"}
        for node_id in "bc":
            assert node_events(path, run_id, node_id) == [
                "node.pending", "message.leased", "node.running", "message.acked", "node.completed"]
        assert rows(path, "SELECT count(*) FROM leases")[0][0] == 0
        assert rows(path, "SELECT count(*) FROM messages WHERE finished_at IS NULL")[0][0] == 0
