"""Node and workflow timeouts, maxConcurrency, retries (fixed backoff, retryOn, retryBudget)."""

from __future__ import annotations

import sys
import time

import pytest

from df_it_support import call, conn, node_status, py, wait_until, wf
from durableflow import Engine, ManualClock

BLOCK = "import df_it_hooks as h\nh.record('started', ctx.node_id)\nh.wait('never')\noutput = 'late'"


# --- timeouts -------------------------------------------------------------------------------------

def test_node_timeout_fails_the_node_and_the_run(engine):
    defn = wf("node-timeout", py("hang", BLOCK, timeout="500ms"))
    t0 = time.monotonic()
    run = engine.execute(defn, timeout=30)
    elapsed = time.monotonic() - t0
    assert run.status == "failed"
    hang = run.node("hang")
    assert hang.status == "failed" and hang.error_type == "TimeoutError"
    assert "timed out" in hang.error
    assert "hang" in run.error
    assert elapsed < 5, f"a 500ms node timeout took {elapsed:.1f}s to fail the run"


def test_node_timeout_routes_to_the_fail_edge(engine):
    defn = wf(
        "node-timeout-handled",
        py("hang", BLOCK, timeout="500ms"),
        py("fallback", "output = ctx.input['errorType']"),
        connections=[conn("hang", "fallback", on="Fail")],
    )
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"fallback": "TimeoutError"}


def test_workflow_timeout_with_a_manual_clock_fails_the_run_in_maintain(tmp_path, hooks):
    clock = ManualClock(1_800_000_000.0)
    engine = Engine(tmp_path / "clocked.db", clock=clock)
    try:
        defn = wf("wf-timeout", call("hold", "block_until_released"), py("after"),
                  connections=[conn("hold", "after")], timeout="10s")
        run_id = engine.start(defn)
        with engine.worker(concurrency=1):
            wait_until(lambda: node_status(engine, run_id, "hold") == "running", what="node to run")
            engine.maintain()
            assert engine.get_run(run_id).status == "running"       # deadline not reached
            clock.advance(11)                                          # past 10s, well inside the lease
            engine.maintain()
            run = engine.wait(run_id, timeout=15)
            assert run.status == "failed"
            assert "timed out" in run.error
            # The running body is told (ctx.cancelled) and its node ends cancelled, not completed.
            wait_until(lambda: node_status(engine, run_id, "hold") in ("cancelled", "failed", "completed"),
                       what="hold to finish")
        run = engine.get_run(run_id)
        assert run.node("hold").status == "cancelled"
        assert run.node("after") is None
        wait_until(lambda: hooks.calls["saw_cancel"] == ["hold"], what="the body to see ctx.cancelled")
    finally:
        hooks.reset()
        engine.close()


def test_workflow_timeout_on_the_real_clock_is_enforced_by_the_worker(engine):
    defn = wf("wf-timeout-real", call("hold", "block_until_released"), timeout="500ms")
    t0 = time.monotonic()
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed" and "timed out" in run.error
    assert time.monotonic() - t0 < 6


# --- maxConcurrency -------------------------------------------------------------------------------

def test_max_concurrency_caps_nodes_running_at_once(engine, hooks, sql):
    # The first two in wait for each other (so two really overlap); a third one in at the same
    # time would show in the peak.
    body = ("import df_it_hooks as h\nif h.enter('mc') >= 2:\n    h.event('two-in').set()\n"
            "try:\n    h.wait('two-in', 2)\nfinally:\n    h.leave('mc')\noutput = ctx.node_id")
    workers = [py(f"w{i}", body) for i in range(6)]
    defn = wf("max-conc", py("start"), *workers, py("end", "output = sorted(ctx.inputs)"),
              connections=[conn("start", f"w{i}") for i in range(6)] + [conn(f"w{i}", "end") for i in range(6)],
              maxConcurrency=2)
    run = engine.execute(defn, concurrency=6, timeout=30)
    assert run.status == "completed", run.error
    assert hooks.peaks["mc"] == 2
    assert run.outputs == {"end": [f"w{i}" for i in range(6)]}
    # Throttled nodes were visibly waiting, with a reason.
    reasons = sql.rows("SELECT data FROM events WHERE run_id = ? AND type = 'node.waiting'", run.run_id)
    assert reasons and all("maxConcurrency 2" in r[0] for r in reasons)


def test_max_concurrency_waiting_reason_is_on_the_node_row(engine, hooks):
    defn = wf("max-conc-1", py("start"), call("a", "block_until_released"), call("b", "block_until_released"),
              connections=[conn("start", "a"), conn("start", "b")], maxConcurrency=1)
    run_id = engine.start(defn)
    with engine.worker(concurrency=2):
        def one_waiting():
            run = engine.get_run(run_id)
            st = sorted(str(run.node(n) and run.node(n).status) for n in ("a", "b"))
            return st == ["running", "waiting"] and run
        run = wait_until(one_waiting, what="one node running and one waiting")
        waiting = next(run.node(n) for n in ("a", "b") if run.node(n).status == "waiting")
        running = next(run.node(n) for n in ("a", "b") if run.node(n).status == "running")
        assert "maxConcurrency 1" in waiting.waiting_reason
        assert run.progress["running"] == 1 and run.progress["waiting"] == 1
        hooks.event(f"release:{running.node_id}").set()
        wait_until(lambda: node_status(engine, run_id, waiting.node_id) == "running", what="the other to start")
        assert engine.get_run(run_id).node(waiting.node_id).waiting_reason is None
        hooks.event(f"release:{waiting.node_id}").set()
        assert engine.wait(run_id, timeout=30).status == "completed"


def test_max_concurrency_slot_freed_by_a_node_in_retry_backoff(engine, hooks):
    """A node that failed and waits out a backoff holds no slot: the throttled sibling must run
    during the backoff, not after the retry."""
    defn = wf(
        "max-conc-retry",
        py("start"),
        py("flaky", "import df_it_hooks as h\nh.record('order', ('flaky', ctx.attempt))\n"
                    "if ctx.attempt == 1:\n    raise ConnectionError('try again')\noutput = 'ok'",
           retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": "1s", "jitter": 0}),
        py("other", "import df_it_hooks as h\nh.record('order', ('other', 1))\noutput = 'ok'"),
        connections=[conn("start", "flaky"), conn("start", "other")],
        maxConcurrency=1,
    )
    run = engine.execute(defn, concurrency=2, timeout=30)
    assert run.status == "completed", run.error
    order = hooks.calls["order"]
    assert order.index(("other", 1)) < order.index(("flaky", 2)), order


# --- retries --------------------------------------------------------------------------------------

FIXED_3 = {"strategy": "fixed", "maxAttempts": 3, "initialDelay": "10ms", "jitter": 0}


def test_retry_until_success_records_each_attempt(engine, sql):
    defn = wf("retry-ok", call("f", "flaky", retry=FIXED_3))
    run = engine.execute(defn, inputs={"succeedOn": 3}, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"f": {"attempt": 3}}
    rows = sql.rows("SELECT attempt, status, error, error_type FROM node_instances "
                    "WHERE run_id = ? AND node_id = 'f' ORDER BY attempt", run.run_id)
    assert [(a, s) for a, s, _e, _t in rows] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert all("flaky attempt" in e and t == "ConnectionError" for _a, s, e, t in rows if s == "failed")
    assert [n.attempt for n in run.nodes] == [1, 2, 3]
    assert run.node("f").attempt == 3


def test_retry_exhausted_fails_the_node_and_the_run(engine, hooks):
    run = engine.execute(wf("retry-out", call("f", "flaky", retry=FIXED_3)), timeout=30)
    assert run.status == "failed"
    assert [n.status for n in run.nodes] == ["failed", "failed", "failed"]
    assert hooks.calls["flaky:f"] == [1, 2, 3]
    assert "f" in run.error and "flaky attempt 3" in run.error


def test_retry_on_filters_by_error_type(engine, hooks):
    only_timeouts = {**FIXED_3, "retryOn": ["TimeoutError"]}
    connection_errors = {**FIXED_3, "retryOn": ["ConnectionError"]}
    run = engine.execute(wf("retry-on-miss", call("f", "flaky", retry=only_timeouts)),
                         inputs={"succeedOn": 2}, timeout=30)
    assert run.status == "failed"
    assert hooks.calls["flaky:f"] == [1]            # ConnectionError is not retried
    run = engine.execute(wf("retry-on-hit", call("g", "flaky", retry=connection_errors)),
                         inputs={"succeedOn": 2}, timeout=30)
    assert run.status == "completed", run.error
    assert hooks.calls["flaky:g"] == [1, 2]


class _Custom:   # a module of the test's own: its exceptions, subclassed
    SOURCE = ("class TransientError(Exception):\n    pass\n\n"
              "class Throttled(TransientError):\n    pass\n")


@pytest.mark.parametrize("isolation", ["thread", "process"])
@pytest.mark.parametrize("raised, retry_on, retried", [
    ("FileNotFoundError('gone')", ["OSError"], True),                # a base class, as `except`
    ("FileNotFoundError('gone')", ["FileNotFoundError"], True),
    ("FileNotFoundError('gone')", ["ValueError"], False),
    ("df_custom_errors.Throttled('slow down')", ["TransientError"], True),
    ("df_custom_errors.Throttled('slow down')", ["df_custom_errors.TransientError"], True),
    ("df_custom_errors.TransientError('x')", ["Throttled"], False),  # not the other way round
    ("SystemExit(75)", [75], True),                                  # sys.exit(75) is exit code 75
    ("SystemExit(75)", [3], False),
])
def test_retry_on_matches_base_classes_and_qualified_names(engine, tmp_path, monkeypatch,
                                                            isolation, raised, retry_on, retried):
    (tmp_path / "df_custom_errors.py").write_text(_Custom.SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    body = f"import df_custom_errors\nif ctx.attempt == 1:\n    raise {raised}\noutput = ctx.attempt"
    defn = wf(f"retry-on-{isolation}", py("f", body, isolation=isolation,
                                          retry={**FIXED_3, "retryOn": retry_on}))
    run = engine.execute(defn, timeout=30)
    assert [(n.attempt, n.status) for n in run.nodes] == (
        [(1, "failed"), (2, "completed")] if retried else [(1, "failed")]), run.error


def test_retry_budget_caps_retries_across_the_run(engine, hooks, sql):
    many = {"strategy": "fixed", "maxAttempts": 5, "initialDelay": "10ms", "jitter": 0}
    defn = wf("budget", call("a", "flaky", retry=many), call("b", "flaky", retry=many),
              connections=[conn("a", "b", on="Any")], retryBudget=3)
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    attempts = len(hooks.calls["flaky:a"]) + len(hooks.calls["flaky:b"])
    assert attempts == 2 + 3                       # one first attempt each, plus the budget of 3
    assert hooks.calls["flaky:a"] == [1, 2, 3, 4]
    assert hooks.calls["flaky:b"] == [1]
    assert sql.one("SELECT retries_used FROM runs WHERE run_id = ?", run.run_id) == 3


def test_retry_budget_holds_when_parallel_nodes_fail_together(engine, hooks, sql):
    """Two nodes fail at the same moment; the run may retry only once in total."""
    body = ("import df_it_hooks as h\nh.record('attempts', (ctx.node_id, ctx.attempt))\n"
            "if ctx.attempt == 1:\n    h.barrier('together', 2).wait()\n"
            "raise ConnectionError('down')")
    many = {"strategy": "fixed", "maxAttempts": 5, "initialDelay": "10ms", "jitter": 0}
    defn = wf("budget-parallel", py("start"), py("a", body, retry=many), py("b", body, retry=many),
              connections=[conn("start", "a"), conn("start", "b")], retryBudget=1)
    run = engine.execute(defn, concurrency=2, timeout=30)
    assert run.status == "failed"
    retries = [a for a in hooks.calls["attempts"] if a[1] > 1]
    assert len(retries) <= 1, f"retryBudget 1 but retried {retries}"
    assert sql.one("SELECT retries_used FROM runs WHERE run_id = ?", run.run_id) <= 1


def test_defaults_retry_applies_to_nodes_without_their_own(engine, hooks):
    defn = wf("defaults", call("f", "flaky"), call("g", "flaky", retry={"strategy": "none"}),
              connections=[conn("f", "g")], defaults={"retry": FIXED_3})
    run = engine.execute(defn, inputs={"succeedOn": 2}, timeout=30)
    assert hooks.calls["flaky:f"] == [1, 2]
    assert hooks.calls["flaky:g"] == [1]
    assert run.status == "failed" and "g" in run.error


def test_retry_on_exit_code_for_a_shell_node(engine, tmp_path):
    counter = tmp_path / "count"
    program = (f"import pathlib, sys\np = pathlib.Path({str(counter)!r})\n"
               "n = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(n))\n"
               "sys.exit(0 if n >= 3 else (75 if n == 1 else 3))")
    defn = wf("exit-codes", {"nodeId": "sh", "runtimeType": "Shell", "command": [sys.executable, "-c", program],
                             "retry": {**FIXED_3, "retryOn": [75, 3]}})
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "failed"), (3, "completed")]
    counter.unlink()
    defn = wf("exit-codes-miss", {"nodeId": "sh", "runtimeType": "Shell", "command": [sys.executable, "-c", program],
                                  "retry": {**FIXED_3, "retryOn": [3]}})
    run = engine.execute(defn, timeout=30)
    assert run.status == "failed"
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed")]    # 75 is not retried


def test_cancel_during_a_retry_backoff(engine, hooks, sql):
    slow_retry = {"strategy": "fixed", "maxAttempts": 3, "initialDelay": "30s", "jitter": 0}
    run_id = engine.start(wf("cancel-backoff", call("f", "flaky", retry=slow_retry)))
    with engine.worker(concurrency=1):
        wait_until(lambda: [n.status for n in engine.get_run(run_id).nodes] == ["failed", "pending"],
                   what="attempt 1 failed and attempt 2 scheduled")
        engine.cancel(run_id)
        run = engine.wait(run_id, timeout=10)
    assert run.status == "cancelled"
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "cancelled")]
    assert sql.one("SELECT count(*) FROM messages WHERE run_id = ? AND status IN ('ready', 'leased')", run_id) == 0
    assert hooks.calls["flaky:f"] == [1]


def test_pause_during_a_retry_backoff_then_resume(engine, hooks, sql):
    retry = {"strategy": "fixed", "maxAttempts": 3, "initialDelay": "300ms", "jitter": 0}
    run_id = engine.start(wf("pause-backoff", call("f", "flaky", retry=retry)), inputs={"succeedOn": 2})
    with engine.worker(concurrency=1) as w:
        wait_until(lambda: [n.status for n in engine.get_run(run_id).nodes] == ["failed", "pending"],
                   what="attempt 1 failed and attempt 2 scheduled")
        engine.pause(run_id)
        assert sql.one("SELECT held FROM messages WHERE run_id = ?", run_id) == 1
        # Wait past the backoff, then make sure the worker went round with nothing to claim.
        wait_until(lambda: sql.one("SELECT visible_at FROM messages WHERE run_id = ?", run_id)
                   <= engine.clock.now_iso(), what="the backoff to pass")
        w.idle.clear()
        assert w.idle.wait(10)
        assert hooks.calls["flaky:f"] == [1]
        assert engine.get_run(run_id).status == "paused"
        engine.resume(run_id)
        run = engine.wait(run_id, timeout=10)
    assert run.status == "completed", run.error
    assert hooks.calls["flaky:f"] == [1, 2]


# --- priority -------------------------------------------------------------------------------------

RECORD_ORDER = "import df_it_hooks as h\nh.record('order', ctx.node_id)\noutput = ctx.node_id"


def test_node_priority_orders_claims(engine, hooks):
    defn = wf("prio-nodes", py("start"),
              py("low", RECORD_ORDER, priority="low"), py("normal", RECORD_ORDER),
              py("high", RECORD_ORDER, priority="high"),
              connections=[conn("start", n) for n in ("low", "normal", "high")])
    run = engine.execute(defn, concurrency=1, timeout=30)
    assert run.status == "completed"
    assert hooks.calls["order"] == ["high", "normal", "low"]


def test_run_priority_orders_claims_across_runs(engine, hooks):
    def defn(name):
        return wf(f"prio-run-{name}", py(name, RECORD_ORDER))
    ids = [engine.start(defn("low"), priority="low"), engine.start(defn("normal")),
           engine.start(defn("high"), priority="high")]
    with engine.worker(concurrency=1):
        for run_id in ids:
            assert engine.wait(run_id, timeout=30).status == "completed"
    assert hooks.calls["order"] == ["high", "normal", "low"]


def test_max_concurrency_is_per_run(engine, hooks):
    body = "import df_it_hooks as h\nh.barrier('runs', 2).wait()\noutput = 'met'"
    defn = wf("per-run", py("only", body), maxConcurrency=1)
    ids = [engine.start(defn), engine.start(defn)]
    with engine.worker(concurrency=2):
        runs = [engine.wait(r, timeout=30) for r in ids]
    assert [r.status for r in runs] == ["completed", "completed"], [r.error for r in runs]


def test_heartbeat_keeps_the_lease_of_a_node_longer_than_the_lease(tmp_path, hooks):
    engine = Engine(tmp_path / "heartbeat.db", lease_seconds=0.5)
    try:
        defn = wf("heartbeat", py("slow", "import df_it_hooks as h\nh.record('slow', ctx.attempt)\n"
                                          "h.wait('never', 1.5)\noutput = ctx.attempt"))
        run = engine.execute(defn, timeout=30)
        assert run.status == "completed", run.error
        assert hooks.calls["slow"] == [1]
        assert [(n.attempt, n.status) for n in run.nodes] == [(1, "completed")]
    finally:
        engine.close()


def test_workflow_timeout_fails_a_paused_run(tmp_path, hooks):
    clock = ManualClock(1_800_000_000.0)
    engine = Engine(tmp_path / "paused-timeout.db", clock=clock)
    try:
        run_id = engine.start(wf("paused-timeout", py("a"), py("b"), connections=[conn("a", "b")], timeout="1m"))
        engine.pause(run_id)
        clock.advance(61)
        engine.maintain()
        run = engine.get_run(run_id)
        assert run.status == "failed" and "timed out" in run.error
        assert [(n.node_id, n.status) for n in run.nodes] == [("a", "cancelled")]
    finally:
        engine.close()


def test_a_timed_out_attempt_is_retried(engine, hooks):
    body = ("import df_it_hooks as h\nh.record('att', ctx.attempt)\n"
            "if ctx.attempt == 1:\n    h.wait('never', 5)\noutput = ctx.attempt")
    defn = wf("timeout-retry", py("t", body, timeout="300ms",
                                  retry={**FIXED_3, "retryOn": ["TimeoutError"]}))
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    assert [(n.attempt, n.status, n.error_type) for n in run.nodes] == [
        (1, "failed", "TimeoutError"), (2, "completed", None)]
    assert run.outputs == {"t": 2}


def test_fail_edge_after_retries_are_exhausted_gets_the_last_attempt(engine, hooks):
    defn = wf("retry-then-handler", call("f", "flaky", retry=FIXED_3),
              py("handler", "output = ctx.input"), connections=[conn("f", "handler", on="Fail")])
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed", run.error
    handled = run.outputs["handler"]
    assert (handled["nodeId"], handled["attempt"], handled["errorType"]) == ("f", 3, "ConnectionError")
    assert "flaky attempt 3" in handled["error"]
    # The handler ran once, after the last attempt only.
    assert [n.node_id for n in run.nodes] == ["f", "f", "f", "handler"]
