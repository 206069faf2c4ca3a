"""Circuit breakers: closed -> open when, over the calls of the last `window`, at least
`minimumCalls` were made and the failed fraction reaches `failureThreshold`; while open, the
node fails fast with CircuitOpen (never retried) or its fallback stands in; after
`openDuration` half-open trial calls decide. Every change is a transition on the row, recorded
in `events`. The clock is a manual one: open durations pass without waiting."""

from __future__ import annotations

import json

import pytest
from df_it_support import conn, py, wf

from durableflow.errors import NotFound

# The service the node calls is down while the hooks event "down" is set.
CALL = ("import df_it_hooks as h\n"
        "h.record('calls', ctx.run_id)\n"
        "if h.event('down').is_set():\n"
        "    raise ConnectionError('service down')\n"
        "output = 'fresh'\n")
BREAKER = {"key": "billing-api", "failureThreshold": 0.5, "minimumCalls": 2, "window": "1m",
           "openDuration": "30s"}


def flow(workflow_id="billing", breaker=None, **keys):
    return wf(workflow_id, py("charge", CALL, circuitBreaker=breaker or BREAKER, **keys))


def breaker(engine, key="billing-api") -> dict:
    [row] = [b for b in engine.breakers() if b["key"] == key]
    return row


def transitions(sql, key="billing-api") -> list[tuple]:
    rows = sql.rows("SELECT type, data FROM events WHERE type LIKE 'breaker.%' ORDER BY seq")
    return [(t, json.loads(d)["from"]) for t, d in rows if json.loads(d)["key"] == key]


def test_failures_open_the_breaker_and_an_open_breaker_fails_fast_without_retries(engine, hooks, sql):
    hooks.event("down").set()
    defn = flow(retry={"strategy": "fixed", "maxAttempts": 3, "initialDelay": 0})
    run = engine.execute(defn, timeout=15)
    # Two failed calls (>= minimumCalls, 100% >= 50%) open it; the third attempt is not a call.
    assert len(hooks.calls["calls"]) == 2
    assert run.status == "failed"
    node = run.node("charge")
    assert node.error_type == "CircuitOpen"
    assert node.error.startswith("circuit breaker 'billing-api' is open (since ")
    attempts = sql.rows("SELECT attempt, error_type FROM node_instances WHERE run_id = ? ORDER BY attempt",
                        run.run_id)
    assert attempts == [(1, "ConnectionError"), (2, "ConnectionError"), (3, "CircuitOpen")]
    assert transitions(sql) == [("breaker.open", "closed")]
    state = breaker(engine)
    assert (state["state"], state["calls"], state["failed"]) == ("open", 2, 2)
    assert state["probe_at"] is not None and state["probe_at"] > state["opened_at"]
    # While open, a new run's node fails at once: no call, no retry.
    again = engine.execute(defn, timeout=15)
    assert again.status == "failed" and again.node("charge").error_type == "CircuitOpen"
    assert len(hooks.calls["calls"]) == 2
    assert sql.one("SELECT count(*) FROM node_instances WHERE run_id = ?", again.run_id) == 1


def test_after_open_duration_a_trial_call_closes_it_or_opens_it_again(engine, hooks, sql, clock):
    hooks.event("down").set()
    for _ in range(2):
        assert engine.execute(flow(), timeout=15).status == "failed"
    assert breaker(engine)["state"] == "open"
    clock.advance(29)
    assert engine.execute(flow(), timeout=15).node("charge").error_type == "CircuitOpen"
    clock.advance(2)                                      # past openDuration: one trial goes through
    trial = engine.execute(flow(), timeout=15)
    assert trial.node("charge").error_type == "ConnectionError"   # the trial ran, and failed
    assert breaker(engine)["state"] == "open"                       # so it opens again
    clock.advance(31)
    hooks.event("down").clear()
    ok = engine.execute(flow(), timeout=15)
    assert ok.status == "completed" and ok.outputs == {"charge": "fresh"}
    assert breaker(engine)["state"] == "closed"
    assert transitions(sql) == [("breaker.open", "closed"), ("breaker.half_open", "open"),
                                ("breaker.open", "half_open"), ("breaker.half_open", "open"),
                                ("breaker.closed", "half_open")]
    # Closed afresh: the failures before it do not count towards the next trip.
    assert (breaker(engine)["calls"], breaker(engine)["failed"]) == (0, 0)


def test_half_open_needs_every_trial_call_to_succeed(engine, hooks, sql, clock):
    settings = {**BREAKER, "halfOpenSuccesses": 2}
    hooks.event("down").set()
    for _ in range(2):
        engine.execute(flow(breaker=settings), timeout=15)
    clock.advance(31)
    hooks.event("down").clear()
    assert engine.execute(flow(breaker=settings), timeout=15).status == "completed"
    assert breaker(engine)["state"] == "half_open"
    assert engine.execute(flow(breaker=settings), timeout=15).status == "completed"
    assert breaker(engine)["state"] == "closed"


def test_below_minimum_calls_or_threshold_it_stays_closed(engine, hooks, sql):
    settings = {**BREAKER, "minimumCalls": 4, "failureThreshold": 0.75}
    for down in (True, False, True, True):        # 3 of 4 failed = 0.75: opens on the fourth
        if down:
            hooks.event("down").set()
        else:
            hooks.event("down").clear()
        engine.execute(flow(breaker=settings), timeout=15)
        if len(hooks.calls["calls"]) < 4:
            assert breaker(engine)["state"] == "closed"
    assert breaker(engine)["state"] == "open"


def test_a_timeout_is_a_failed_call(engine, hooks, sql):
    slow = "import df_it_hooks as h\nh.record('calls', ctx.run_id)\nh.wait('never', 5)\noutput = 1"
    defn = wf("slow", py("charge", slow, timeout="100ms",
                         circuitBreaker={**BREAKER, "key": "slow-api", "minimumCalls": 1}))
    run = engine.execute(defn, timeout=15)
    assert run.node("charge").error_type == "TimeoutError"
    assert breaker(engine, "slow-api")["state"] == "open"


def test_an_open_breaker_routes_to_the_fallback_whose_output_stands_for_the_node(engine, hooks, sql):
    hooks.event("down").set()
    defn = wf("billing-fb",
              py("charge", CALL, circuitBreaker=BREAKER, fallbackNodeId="cached"),
              py("cached", "output = {'from': 'cache', 'got': ctx.input}"),
              py("receipt", "output = ctx.input"),
              connections=[conn("charge", "receipt")])
    failed = [engine.execute(defn, {"amount": 5}, timeout=15) for _ in range(2)]
    assert [r.status for r in failed] == ["failed", "failed"]     # closed: the calls ran and failed
    run = engine.execute(defn, {"amount": 7}, timeout=15)
    assert run.status == "completed", run.error
    assert run.outputs == {"receipt": {"from": "cache", "got": {"amount": 7}}}
    charge = run.node("charge")
    assert (charge.status, charge.output) == ("completed", {"from": "cache", "got": {"amount": 7}})
    assert len(hooks.calls["calls"]) == 2                           # the open breaker was not called


def test_a_failing_fallback_fails_the_node(engine, hooks):
    hooks.event("down").set()
    defn = wf("billing-fb-bad",
              py("charge", CALL, circuitBreaker=BREAKER, fallbackNodeId="cached"),
              py("cached", "raise LookupError('cache empty')"))
    for _ in range(2):
        engine.execute(defn, timeout=15)
    run = engine.execute(defn, timeout=15)
    assert run.status == "failed"
    node = run.node("charge")
    assert node.status == "failed" and "its fallback 'cached' failed" in node.error
    assert "cache empty" in node.error


def test_the_default_key_is_the_runtime_type_and_what_it_runs(engine, hooks):
    hooks.event("down").set()
    a = wf("a", py("one", CALL, circuitBreaker={"minimumCalls": 1}))
    b = wf("b", py("two", CALL, circuitBreaker={"minimumCalls": 1}))
    engine.execute(a, timeout=15)
    [row] = engine.breakers()
    assert row["key"].startswith("Python:script ") and row["state"] == "open"
    # Another workflow running the same script shares the breaker: it is open for it too.
    assert engine.execute(b, timeout=15).node("two").error_type == "CircuitOpen"


def test_a_breaker_is_closed_by_hand(engine, hooks, sql):
    hooks.event("down").set()
    for _ in range(2):
        engine.execute(flow(), timeout=15)
    assert engine.reset_breaker("billing-api") is True
    assert breaker(engine)["state"] == "closed" and breaker(engine)["calls"] == 0
    assert engine.reset_breaker("billing-api") is False
    assert transitions(sql)[-1] == ("breaker.closed", "open")
    with pytest.raises(NotFound, match="circuit breaker 'nope' not found \\(breakers: billing-api\\)"):
        engine.reset_breaker("nope")
