"""Concurrency keys: `maxConcurrentExecutions` with a `concurrencyKey` is a limit across runs and
workers, kept in rows. A node that must wait says why (`waiting_reason`), gets a freed slot
before newer arrivals, and fails with the reason when it waits past its `maxWait`."""

from __future__ import annotations

from df_it_support import py, wait_until, wf

from tests.limits.conftest import HOLD

KEY_HELD = 4   # messages.held: waiting for a concurrency key's slot


def waiting(sql, node_id: str = "call") -> list[tuple]:
    return sql.rows("SELECT run_id, waiting_reason FROM node_instances WHERE node_id = ? "
                    "AND status = 'waiting' ORDER BY run_id", node_id)


def started(hooks, n: int):
    return wait_until(lambda: len(hooks.calls["started"]) >= n and hooks.calls["started"],
                      what=f"{n} bodies to start")


def test_a_full_key_makes_the_next_node_wait_with_its_reason(engine, hooks, sql):
    defn = wf("api-calls", py("call", HOLD, maxConcurrentExecutions=2, concurrencyKey="api"))
    ids = [engine.start(defn) for _ in range(3)]
    with engine.worker(concurrency=4):
        started(hooks, 2)
        assert wait_until(lambda: waiting(sql)) == [(ids[2], "concurrencyKey 'api': 2 of 2 running")]
        assert sql.one("SELECT held FROM messages WHERE run_id = ? AND status = 'ready'", ids[2]) == KEY_HELD
        assert sorted(hooks.calls["started"]) == sorted(ids[:2])
        hooks.event("release:" + ids[0]).set()
        started(hooks, 3)
        assert hooks.calls["started"][2] == ids[2]
        for run_id in ids:
            hooks.event("release:" + run_id).set()
        assert [engine.wait(r, timeout=15).status for r in ids] == ["completed"] * 3
    assert hooks.peaks["inside"] == 2
    # The waiting spell is in the node's history: waiting with its reason, then running.
    types = [e["type"] for e in engine.events(ids[2]) if e["node_id"] == "call"]
    assert types.index("node.waiting") < types.index("node.running")


def test_a_key_expression_limits_each_customer_on_its_own(engine, hooks, sql):
    defn = wf("per-customer", py("call", HOLD, maxConcurrentExecutions=1,
                                 concurrencyKey="${ input.customer }"))
    a1 = engine.start(defn, {"customer": "acme"})
    a2 = engine.start(defn, {"customer": "acme"})
    b1 = engine.start(defn, {"customer": "globex"})
    with engine.worker(concurrency=4):
        started(hooks, 2)
        assert wait_until(lambda: waiting(sql)) == [(a2, "concurrencyKey 'acme': 1 of 1 running")]
        assert sorted(hooks.calls["started"]) == sorted([a1, b1])
        hooks.event("release:" + a1).set()
        started(hooks, 3)
        for run_id in (a2, b1):
            hooks.event("release:" + run_id).set()
        assert [engine.wait(r, timeout=15).status for r in (a1, a2, b1)] == ["completed"] * 3


def test_the_oldest_waiter_gets_a_freed_slot_first(engine, hooks, sql):
    defn = wf("one-at-a-time", py("call", HOLD, maxConcurrentExecutions=1, concurrencyKey="solo"))
    ids = [engine.start(defn) for _ in range(3)]
    with engine.worker(concurrency=4):
        started(hooks, 1)
        wait_until(lambda: len(waiting(sql)) == 2, what="two waiters")
        late = engine.start(defn)   # arrives while the others wait: it must not jump the line
        wait_until(lambda: len(waiting(sql)) == 3, what="three waiters")
        for i, run_id in enumerate(ids + [late]):
            started(hooks, i + 1)
            assert hooks.calls["started"][i] == run_id
            hooks.event("release:" + run_id).set()
        assert all(engine.wait(r, timeout=15).status == "completed" for r in ids + [late])
    assert hooks.calls["started"] == ids + [late]
    assert hooks.peaks["inside"] == 1


def test_a_slot_frees_when_its_node_fails_or_its_run_is_cancelled(engine, hooks, sql):
    body = "if (ctx.input or {}).get('fail'):\n    raise RuntimeError('boom')\n" + HOLD
    defn = wf("frees", py("call", body, maxConcurrentExecutions=1, concurrencyKey="one"))
    first = engine.start(defn, {"n": 1})
    failing = engine.start(defn, {"fail": True})
    last = engine.start(defn, {"n": 3})
    with engine.worker(concurrency=4):
        started(hooks, 1)
        wait_until(lambda: len(waiting(sql)) == 2, what="two waiters")
        engine.cancel(first)                   # the held body sees ctx.cancelled... or is released
        hooks.event("release:" + first).set()
        assert engine.wait(failing, timeout=15).status == "failed"   # ran once the slot freed
        started(hooks, 2)
        assert hooks.calls["started"][1] == last
        hooks.event("release:" + last).set()
        assert engine.wait(last, timeout=15).status == "completed"
    assert engine.get_run(first).status == "cancelled"
    assert sql.one("SELECT count(*) FROM node_instances WHERE status = 'running'") == 0


def test_a_node_that_waits_past_its_max_wait_fails_with_the_reason(engine, hooks, sql, clock):
    defn = wf("patient", py("call", HOLD, maxConcurrentExecutions=1, concurrencyKey="slow-api",
                            maxWait="5s"))
    holder, waiter = engine.start(defn), engine.start(defn)
    with engine.worker(concurrency=2):
        started(hooks, 1)
        wait_until(lambda: waiting(sql), what="the second node to wait")
        clock.advance(4)
        engine.maintain()
        assert engine.get_run(waiter).status == "running"      # 4 s < maxWait
        clock.advance(2)
        engine.maintain()
        run = engine.wait(waiter, timeout=15)
        assert run.status == "failed"
        assert "maxWait" in run.error and "'slow-api'" in run.error
        node = run.node("call")
        assert (node.status, node.error_type) == ("failed", "LimitTimeout")
        assert engine.get_run(holder).status == "running"       # the holder is not touched
        hooks.event("release:" + holder).set()
        assert engine.wait(holder, timeout=15).status == "completed"
    assert hooks.calls["started"] == [holder]
    assert sql.one("SELECT count(*) FROM limit_waiters") == 0
