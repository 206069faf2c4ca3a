"""Nodes a claiming transaction queues and then takes itself (storage.handoff): written once, as
they stand at its end, with the history any node gets; claimed in the order any claim keeps; and
written the ordinary way whenever something needs their rows first. And arrivals at a join in
one transaction, counted in memory after the first: each counted once (issue 12).

The transaction is driven through WorkerService.claim_and_run, as the worker's dispatcher does,
with the test saying which nodes are cheap and what they return."""

from __future__ import annotations

import json

import pytest

from durableflow import service
from durableflow.execution.routing import Routing
from durableflow.tasks import Outcome

EVERY_NODE = lambda plan, node_id: True   # noqa: E731 - the transaction runs every node itself


@pytest.fixture(autouse=True)
def no_time_budget(monkeypatch):
    """What one claiming transaction does is under test: its 10 ms budget must not end it early
    on a slow machine (the next transaction would take what is left, in other batches)."""
    monkeypatch.setattr(service, "CHEAP_SECONDS", 60.0)


def noop(got):
    return [(t, Outcome(True, t.input, json.dumps(t.input))) for t in got], []


def failing(node_id: str, first: bool = False):
    """Outcomes: `node_id` fails (no retry), the others pass their input on; `node_id` recorded
    first or last of its round."""
    def outcomes(got):
        order = sorted(got, key=lambda t: (t.node_id != node_id) if first else (t.node_id == node_id))
        return [(t, Outcome(False, error="boom", error_type="Boom", retryable=False) if t.node_id == node_id
                 else Outcome(True, t.input, json.dumps(t.input))) for t in order], []
    return outcomes


def flow(workflow_id: str, edges: str) -> dict:
    """'s>a s>b b>c': Noop nodes and the connections between them."""
    pairs = [e.split(">") for e in edges.split()]
    names = list(dict.fromkeys(n for pair in pairs for n in pair))
    return {"workflowId": workflow_id, "nodes": [{"nodeId": n, "runtimeType": "Noop"} for n in names],
            "connections": [{"sourceNodeId": a, "targetNodeId": b} for a, b in pairs]}


def drain(engine, limit: int, cheap=noop) -> list[tuple[int, int]]:
    """claim_and_run until nothing is left; (tasks handed out, nodes run) per transaction."""
    rounds = []
    while True:
        tasks, ran = engine.service.claim_and_run(("w1", limit, 30.0, None), cheap, EVERY_NODE)
        assert tasks == []
        if not ran:
            return rounds
        rounds.append((len(tasks), ran))


def completions(sql, *run_ids) -> list[tuple[str, str]]:
    marks = ",".join("?" * len(run_ids))
    return sql.rows(f"SELECT run_id, node_id FROM events WHERE type = 'node.completed' "
                    f"AND run_id IN ({marks}) ORDER BY seq", *run_ids)


def history(sql, run_id: str, node_id: str) -> list[str]:
    return [t for (t,) in sql.rows("SELECT type FROM events WHERE run_id = ? AND node_id = ? ORDER BY seq",
                                   run_id, node_id)]


def nothing_open(sql) -> None:
    assert sql.one("SELECT count(*) FROM messages WHERE finished_at IS NULL") == 0
    assert sql.one("SELECT count(*) FROM leases") == 0
    assert sql.one("SELECT count(*) FROM node_instances WHERE status IN ('pending', 'running')") == 0


def test_a_chain_run_in_one_transaction_writes_each_row_once_with_the_whole_history(engine, sql):
    run_id = engine.start(flow("chain", "n0>n1 n1>n2 n2>n3"))
    assert drain(engine, 10) == [(0, 4)]
    assert engine.get_run(run_id).status == "completed"
    for node_id in ("n1", "n2", "n3"):   # n0 came from the database; the rest were handed on
        assert history(sql, run_id, node_id) == [
            "node.pending", "message.leased", "node.running", "message.acked", "node.completed"]
    rows = sql.rows("SELECT n.node_id, n.status, n.attempt, n.worker_id, n.input, n.output, "
                    "n.created_at <= n.started_at AND n.started_at <= n.finished_at, "
                    "m.status, m.kind, m.target_node_id, m.finished_at = n.finished_at "
                    "FROM node_instances n JOIN messages m ON m.id = n.message_id "
                    "WHERE n.run_id = ? ORDER BY n.id", run_id)
    assert [r[0] for r in rows] == ["n0", "n1", "n2", "n3"]
    for node_id, status, attempt, worker, input_, output, times, m_status, kind, target, same_end in rows:
        assert (status, attempt, worker, m_status, kind, target) == ("completed", 1, "w1", "acked", "node", node_id)
        assert times and same_end and input_ is not None and output == input_
    # The events name the rows they are about.
    for type_, data in sql.rows("SELECT type, data FROM events WHERE run_id = ? AND node_id = 'n2'", run_id):
        key = "SELECT count(*) FROM {} WHERE id = ? AND run_id = ?".format(
            "messages" if type_.startswith("message.") else "node_instances")
        assert sql.one(key, json.loads(data)["id"], run_id) == 1, type_
    nothing_open(sql)


def test_what_waits_in_the_database_is_claimed_before_what_the_transaction_queued(engine, sql):
    """Arrival order within a priority: b's first node waits in the database when a's first node
    queues a's second; the next claim takes b's, and so on, turn about."""
    a = engine.start(flow("a", "n0>n1 n1>n2"))
    b = engine.start(flow("b", "n0>n1 n1>n2"))
    assert sum(ran for _, ran in drain(engine, 1)) == 6
    assert completions(sql, a, b) == [(a, "n0"), (b, "n0"), (a, "n1"), (b, "n1"), (a, "n2"), (b, "n2")]
    nothing_open(sql)


def test_a_higher_priority_node_queued_in_the_transaction_goes_first(engine, sql):
    defn = flow("p", "s>low s>high")
    for node in defn["nodes"]:
        if node["nodeId"] == "high":
            node["priority"] = "high"
    run_id = engine.start(defn)
    drain(engine, 1)
    assert [n for _, n in completions(sql, run_id)] == ["s", "high", "low"]


def test_a_run_is_not_finished_while_a_node_it_queued_is_in_hand(engine, sql):
    """a ends its branch (nothing comes after it) while b, taken with it, is not written yet: the
    run waits for b, and for c after it."""
    run_id = engine.start(flow("branches", "s>a s>b b>c"))
    assert drain(engine, 10) == [(0, 4)]
    run = engine.get_run(run_id)
    assert run.status == "completed" and set(run.outputs) == {"a", "c"}
    assert sql.rows("SELECT node_id, count(*) FROM node_instances WHERE run_id = ? AND status = 'completed' "
                    "GROUP BY node_id ORDER BY node_id", run_id) == [("a", 1), ("b", 1), ("c", 1), ("s", 1)]
    nothing_open(sql)


@pytest.mark.parametrize("bad_first", [False, True], ids=["a-recorded-first", "bad-recorded-first"])
def test_a_run_failed_in_the_transaction_gets_the_rows_of_what_it_had_queued(engine, sql, bad_first):
    """s queues a and bad; bad fails the run. Recorded after a, it finds a2 (queued by a) offered:
    a2 is written, then cancelled with its run. Recorded before a, it finds a taken and not yet
    run: a is written as running, and completes as any running node does."""
    run_id = engine.start(flow("fails", "s>a s>bad a>a2"))
    drain(engine, 10, failing("bad", first=bad_first))
    run = engine.get_run(run_id)
    assert run.status == "failed" and "boom" in run.error
    statuses = dict(sql.rows("SELECT node_id, status FROM node_instances WHERE run_id = ?", run_id))
    if bad_first:
        assert statuses == {"s": "completed", "a": "completed", "bad": "failed"}
        assert history(sql, run_id, "a") == [
            "node.pending", "message.leased", "node.running", "message.acked", "node.completed"]
    else:
        assert statuses == {"s": "completed", "a": "completed", "bad": "failed", "a2": "cancelled"}
        assert history(sql, run_id, "a2") == ["node.pending", "message.acked", "node.cancelled"]
    assert history(sql, run_id, "bad") == [
        "node.pending", "message.leased", "node.running", "message.acked", "node.failed"]
    nothing_open(sql)


def test_a_record_undone_by_a_fault_leaves_the_node_failed_once_with_its_rows(engine, sql, monkeypatch):
    """b and d are taken and recorded together; b is written as completed, then routing it fails
    (a fault of ours): the batch's savepoint undoes the rows and the hand-off forgets it wrote
    them; recorded one by one, b is failed by the engine and d completes as a running node."""
    route = Routing.route

    def broken(self, conn, plan, run_id, source, *args, **kwargs):
        if source == "b":
            raise RuntimeError("routing broke")
        return route(self, conn, plan, run_id, source, *args, **kwargs)

    monkeypatch.setattr(Routing, "route", broken)
    run_id = engine.start(flow("fault", "s>b s>d b>c"))
    drain(engine, 10)
    run = engine.get_run(run_id)
    assert run.status == "failed"
    rows = {r[0]: r[1:] for r in sql.rows("SELECT node_id, status, error_type, error FROM node_instances "
                                          "WHERE run_id = ?", run_id)}
    assert {n: r[:2] for n, r in rows.items()} == {
        "s": ("completed", None), "b": ("failed", "InternalError"), "d": ("completed", None)}
    assert "RuntimeError: routing broke" in rows["b"][2]
    for node_id, last in (("b", "node.failed"), ("d", "node.completed")):
        assert history(sql, run_id, node_id) == [
            "node.pending", "message.leased", "node.running", "message.acked", last]
    nothing_open(sql)


def test_a_fan_in_recorded_in_one_transaction_counts_every_arrival_once(engine, sql):
    """a, b and c arrive at the join j in one transaction: the first is counted in the row, the
    others in memory and written before the commit; j runs once, with all three inputs."""
    run_id = engine.start(flow("fan-in", "s>a s>b s>c a>j b>j c>j"))
    assert drain(engine, 10) == [(0, 5)]
    run = engine.get_run(run_id)
    assert run.status == "completed" and set(run.outputs) == {"j"}
    assert sql.rows("SELECT resolved, delivered, fired FROM joins WHERE run_id = ?", run_id) == [(3, 3, 1)]
    assert sql.one("SELECT count(*) FROM node_instances WHERE run_id = ? AND node_id = 'j'", run_id) == 1
    j_input = json.loads(sql.one("SELECT input FROM node_instances WHERE run_id = ? AND node_id = 'j'", run_id))
    assert set(j_input) == {"a", "b", "c"}
    nothing_open(sql)


def test_an_arrival_undone_by_a_fault_is_not_counted(engine, sql, monkeypatch):
    """a arrives at j (counted in the row); c's arrival is counted in memory, then storing its
    input fails: ROLLBACK TO takes the count back, and the row says one arrival, not two."""
    from durableflow.storage import joins

    put = joins.join_input_put

    def broken(conn, run_id, node_id, iteration, key, payload_json):
        if key == "c":
            raise RuntimeError("join input lost")
        return put(conn, run_id, node_id, iteration, key, payload_json)

    monkeypatch.setattr(joins, "join_input_put", broken)
    run_id = engine.start(flow("fan-in-fault", "s>a s>c s>b a>j c>j b>j"))
    drain(engine, 1)
    assert engine.get_run(run_id).status == "failed"
    statuses = dict(sql.rows("SELECT node_id, status FROM node_instances WHERE run_id = ?", run_id))
    assert statuses == {"s": "completed", "a": "completed", "c": "failed", "b": "cancelled"}
    assert sql.rows("SELECT resolved, delivered, fired FROM joins WHERE run_id = ?", run_id) == [(1, 1, 0)]
    nothing_open(sql)


def test_arrivals_counted_in_memory_are_written_when_the_transaction_commits(engine, sql):
    """a and b arrive at j in the transaction; d is not cheap and leaves it unfinished. What
    the row says once that transaction commits is both arrivals, though nothing read it."""
    run_id = engine.start(flow("fan-in-open", "s>a s>b s>d a>j b>j d>j"))
    def all_but_d(got):
        return noop([t for t in got if t.node_id != "d"])[0], [t for t in got if t.node_id == "d"]

    tasks, ran = engine.service.claim_and_run(("w1", 10, 30.0, None), all_but_d,
                                              lambda plan, node_id: node_id != "d")
    assert [t.node_id for t in tasks] == ["d"] and ran == 3
    assert sql.rows("SELECT resolved, delivered, fired FROM joins WHERE run_id = ?", run_id) == [(2, 2, 0)]
    (result,), _ = engine.service.record_many(noop(tasks)[0])
    assert result is None
    drain(engine, 10)
    assert engine.get_run(run_id).status == "completed"
    assert sql.rows("SELECT resolved, delivered, fired FROM joins WHERE run_id = ?", run_id) == [(3, 3, 1)]
    nothing_open(sql)
