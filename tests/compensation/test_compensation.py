"""Compensation: when a run fails, each completed node's compensationNodeId runs, newest
completion first, seeing the failure and the node's input and output; the run is compensating
meanwhile and ends failed, the compensations recorded as node instances of their own."""

from __future__ import annotations

from df_it_support import call, conn, py, wait_until, wf

from tests.compensation.conftest import UNDO

BOOM = "raise RuntimeError('card declined')"


def saga(*extra_nodes, fail_last=True, **top):
    """reserve -> charge -> ship (-> notify, which fails): each of the first three undoable."""
    nodes = [
        py("reserve", "output = {'hold': ctx.input['item']}", compensationNodeId="release"),
        py("charge", "output = {'charge': 'ch_1'}", compensationNodeId="refund"),
        py("ship", "output = {'parcel': 'p9'}", compensationNodeId="recall"),
        py("notify", BOOM if fail_last else "output = 'sent'"),
        py("release", UNDO), py("refund", UNDO), py("recall", UNDO), *extra_nodes]
    return wf("saga", *nodes, connections=[conn("reserve", "charge"), conn("charge", "ship"),
                                           conn("ship", "notify")], **top)


def test_a_failed_run_undoes_its_completed_nodes_newest_first(engine, hooks, sql):
    run = engine.execute(saga(), {"item": "book"}, timeout=30)
    assert run.status == "failed"
    assert run.error.startswith("node 'notify' failed: RuntimeError: card declined (at ")
    failure = {"nodeId": "notify", "errorType": "RuntimeError", "message": run.error[len("node 'notify' failed: "):]}
    assert hooks.calls["undone"] == [("ship", {"parcel": "p9"}, failure),
                                     ("charge", {"charge": "ch_1"}, failure),
                                     ("reserve", {"hold": "book"}, failure)]
    # Each compensation is a node instance of its own, marked with the node it undid.
    rows = sql.rows("SELECT node_id, compensates, status, output FROM node_instances "
                    "WHERE run_id = ? AND compensates IS NOT NULL ORDER BY id", run.run_id)
    assert rows == [("recall", "ship", "completed", '"undid ship"'),
                    ("refund", "charge", "completed", '"undid charge"'),
                    ("release", "reserve", "completed", '"undid reserve"')]
    assert sorted(sql.rows("SELECT node_id, compensates FROM node_history WHERE run_id = ? "
                           "AND compensates IS NOT NULL", run.run_id)) == [
        ("recall", "ship"), ("refund", "charge"), ("release", "reserve")]
    # The compensation saw the node's input too.
    given = sql.one("SELECT input FROM node_instances WHERE run_id = ? AND node_id = 'release'", run.run_id)
    assert '"input":{"item":"book"}' in given
    statuses = [f"{e['data']['from']}->{e['type'][4:]}" for e in engine.events(run.run_id)
                if e["type"].startswith("run.") and "from" in (e["data"] or {})]
    assert statuses == ["pending->running", "running->compensating", "compensating->failed"]


def test_the_run_is_compensating_while_its_compensations_run(engine, hooks, sql):
    slow_undo = ("import df_it_hooks as h\nh.record('undone', ctx.input['nodeId'])\n"
                 "h.wait('release:' + ctx.input['nodeId'])\noutput = 1")
    defn = wf("slow-saga", py("a", compensationNodeId="undo"), py("b", BOOM), py("undo", slow_undo),
              connections=[conn("a", "b")])
    run_id = engine.start(defn)
    with engine.worker(concurrency=2):
        wait_until(lambda: hooks.calls["undone"] == ["a"], what="the compensation to start")
        assert engine.get_run(run_id).status == "compensating"
        hooks.event("release:a").set()
        assert engine.wait(run_id, timeout=15).status == "failed"


def test_nothing_to_undo_fails_the_run_as_before(engine, hooks):
    defn = wf("plain", py("a"), py("b", BOOM), py("undo", UNDO), connections=[conn("a", "b")])
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed" and hooks.calls["undone"] == []
    assert [e["type"] for e in engine.events(run.run_id) if e["type"] == "run.compensating"] == []


def test_a_handled_failure_does_not_compensate(engine, hooks):
    defn = wf("handled", py("a", compensationNodeId="undo"), py("b", BOOM), py("fix"), py("undo", UNDO),
              connections=[conn("a", "b"), conn("b", "fix", on="Fail")])
    assert engine.execute(defn, timeout=30).status == "completed"
    assert hooks.calls["undone"] == []


def test_parallel_branches_are_undone_in_reverse_order_of_completion(engine, hooks):
    # `slow` completes last (it waits for `fast` to finish), so it is undone first.
    slow = "import df_it_hooks as h\nh.wait('fast-done')\noutput = 'slow'"
    fast = "import df_it_hooks as h\noutput = 'fast'"
    defn = wf("branches", py("start"), py("slow", slow, compensationNodeId="undo"),
              py("fast", fast, compensationNodeId="undo"), py("join", BOOM), py("undo", UNDO),
              connections=[conn("start", "slow"), conn("start", "fast"), conn("slow", "join"),
                           conn("fast", "join")])
    run_id = engine.start(defn)
    with engine.worker(concurrency=3):
        wait_until(lambda: engine.get_run(run_id).node("fast") is not None
                   and engine.get_run(run_id).node("fast").status == "completed", what="fast to complete")
        # The manual clock stands still: both finish in the same millisecond, and the order in
        # which their completions were recorded decides.
        hooks.event("fast-done").set()
        run = engine.wait(run_id, timeout=15)
    assert run.status == "failed"
    assert [u[0] for u in hooks.calls["undone"]] == ["slow", "fast"]


def test_a_failing_compensation_is_retried_then_recorded_and_the_rest_still_run(engine, hooks, sql):
    defn = wf("stubborn",
              py("a", compensationNodeId="undo_a"), py("b", compensationNodeId="undo_b"), py("c", BOOM),
              py("undo_a", UNDO),
              call("undo_b", "flaky", retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": 0}),
              connections=[conn("a", "b"), conn("b", "c")])
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    assert hooks.calls["flaky:undo_b"] == [1, 2]              # its own retry policy: two attempts
    assert [u[0] for u in hooks.calls["undone"]] == ["a"]     # and the next one still ran
    first, second = run.error.split("; ")
    assert first.startswith("node 'c' failed: RuntimeError: card declined")
    assert second.startswith("compensation 'undo_b' of node 'b' failed: ConnectionError: flaky attempt 2")
    assert sql.rows("SELECT node_id, attempt, status FROM node_instances WHERE run_id = ? "
                    "AND compensates = 'b' ORDER BY id", run.run_id) == [
        ("undo_b", 1, "failed"), ("undo_b", 2, "failed")]


def test_a_compensation_retried_keeps_its_idempotency_key(engine, hooks):
    keyed = ("import df_it_hooks as h\nh.record('keys', ctx.idempotency_key)\n"
             "if ctx.attempt == 1:\n    raise ConnectionError('try again')\noutput = 1")
    defn = wf("keys", py("a", keyed, compensationNodeId="undo", retry={"strategy": "fixed", "maxAttempts": 2,
                                                                     "initialDelay": 0}),
              py("b", BOOM), py("undo", keyed, retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": 0}),
              connections=[conn("a", "b")])
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    a1, a2, u1, u2 = hooks.calls["keys"]
    assert a1 == a2 == f"{run.run_id}:a:0"
    assert u1 == u2 == f"{run.run_id}:undo:0:undo:a"


def test_a_run_timeout_compensates(engine, hooks, clock):
    defn = wf("late", py("a", compensationNodeId="undo"), call("wait", "block_until_released"),
              py("undo", UNDO), connections=[conn("a", "wait")], timeout="1m")
    run_id = engine.start(defn)
    with engine.worker(concurrency=2):
        wait_until(lambda: hooks.calls["started"] == ["wait"], what="the second node to run")
        clock.advance(61)
        engine.maintain()
        run = engine.wait(run_id, timeout=15)
    assert run.status == "failed" and "timed out" in run.error
    assert [u[0] for u in hooks.calls["undone"]] == ["a"]
    assert hooks.calls["undone"][0][2]["message"] == "run timed out (workflow timeout)"
    assert run.node("wait").status == "cancelled"      # told to stop, it did


def test_cancel_does_not_compensate_unless_asked(engine, hooks):
    defn = wf("cancel-me", py("a", compensationNodeId="undo"), call("hold", "block_until_released"),
              py("undo", UNDO), connections=[conn("a", "hold")])
    plain, undone = engine.start(defn), engine.start(defn)
    with engine.worker(concurrency=4):
        wait_until(lambda: len(hooks.calls["started"]) == 2, what="both runs to hold")
        assert engine.cancel(plain) == "cancelled"
        assert engine.cancel(undone, compensate=True) == "compensating"
        assert engine.wait(undone, timeout=15).status == "cancelled"
        assert engine.wait(plain, timeout=15).status == "cancelled"
    assert len(hooks.calls["undone"]) == 1
    assert hooks.calls["undone"][0][2] == {"nodeId": None, "errorType": "Cancelled", "message": "run cancelled"}
    assert engine.cancel(undone, compensate=True) == "cancelled"     # saying it twice is not an error


def test_a_rerun_of_a_compensated_run_does_again_what_was_undone(engine, hooks, sql):
    flaky_end = ("import df_it_hooks as h\n"
                 "if h.record('ends', 1) == 1:\n    raise RuntimeError('not yet')\noutput = 'ok'")
    defn = wf("again", py("a", "import df_it_hooks as h\nh.record('did', 'a')\noutput = 1",
                          compensationNodeId="undo"),
              py("b", flaky_end), py("undo", UNDO), connections=[conn("a", "b")])
    first = engine.execute(defn, timeout=30)
    assert first.status == "failed" and [u[0] for u in hooks.calls["undone"]] == ["a"]
    second_id = engine.rerun(first.run_id)
    with engine.worker(concurrency=2):
        second = engine.wait(second_id, timeout=15)
    assert second.status == "completed"
    assert hooks.calls["did"] == ["a", "a"]                    # undone, so done again
    assert second.node("undo") is None                          # the old compensation is not carried over
