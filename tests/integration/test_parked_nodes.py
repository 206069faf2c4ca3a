"""Nodes that wait park their message out of the claim index (issue 11, point 9), and whatever
wakes them still does: a timer at its time, a signal at once, a child run's end at once, a retry
when its backoff ends, a resume; and nothing of a paused run is claimed."""

from __future__ import annotations

import pytest
from df_it_support import conn, node, py, wait_until, wf

from durableflow import Engine, ManualClock

LATER, CLAIMABLE, PAUSED = 3, 0, 1


@pytest.fixture
def clock():
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def engine(tmp_path, clock):
    eng = Engine(tmp_path / "parked.db", clock=clock)
    try:
        yield eng
    finally:
        eng.close()


def parked(sql, run_id: str, node_id: str):
    """(held, visible_at) of the node's ready message, once it is parked (held 3) or held."""
    return sql.one("SELECT held, visible_at FROM messages WHERE run_id = ? AND target_node_id = ? "
                   "AND status = 'ready' AND held <> 0", run_id, node_id)


def claimable(sql) -> int:
    return sql.one("SELECT count(*) FROM messages INDEXED BY messages_claimable "
                   "WHERE status = 'ready' AND held = 0")


def test_a_timer_parks_and_rings_at_its_time(engine, clock, sql):
    run_id = engine.start(wf("timer", py("a"), node("w", "Wait", duration="1h"), py("b"),
                             connections=[conn("a", "w"), conn("w", "b")]))
    with engine.worker(concurrency=1):
        held, visible = wait_until(lambda: parked(sql, run_id, "w"), what="the Wait parked")
        assert held == LATER and claimable(sql) == 0
        clock.advance(3600)
        assert engine.wait(run_id, timeout=10).status == "completed"


def test_a_signal_wakes_its_node_at_once(engine, clock, sql):
    run_id = engine.start(wf("signal", node("s", "WaitForSignal", signal="go", timeout="1d"), py("b"),
                             connections=[conn("s", "b")]))
    with engine.worker(concurrency=1):
        assert wait_until(lambda: parked(sql, run_id, "s"), what="the signal wait parked")[0] == LATER
        engine.signal(run_id, "go", {"by": "ops"})          # the clock does not move
        run = engine.wait(run_id, timeout=10)
    assert run.status == "completed" and run.outputs == {"b": 1}


def test_a_child_runs_end_wakes_its_parent_at_once(engine, clock, sql):
    engine.register(wf("child", node("s", "WaitForSignal", signal="go")))
    run_id = engine.start(wf("parent", node("sub", "Subflow", workflowId="child"), py("after"),
                             connections=[conn("sub", "after")]))
    with engine.worker(concurrency=1):
        assert wait_until(lambda: parked(sql, run_id, "sub"), what="the Subflow parked")[0] == LATER
        child = wait_until(lambda: sql.one("SELECT run_id FROM runs WHERE parent_run_id = ?", run_id))
        wait_until(lambda: parked(sql, child, "s"), what="the child's signal wait parked")
        engine.signal(child, "go", 1)
        assert engine.wait(run_id, timeout=10).status == "completed"


def test_a_retry_parks_for_its_backoff(engine, clock, sql):
    run_id = engine.start(wf("retry", py("flaky", "if ctx.attempt < 2:\n    raise RuntimeError('once')\noutput = 2",
                                         retry={"strategy": "fixed", "maxAttempts": 2,
                                                "initialDelay": "10m", "maxDelay": "1h", "jitter": 0})))
    with engine.worker(concurrency=1):
        held, visible = wait_until(lambda: parked(sql, run_id, "flaky"), what="the retry parked")
        assert held == LATER and visible == "2027-01-15T08:10:00.000Z"
        clock.advance(600)
        assert engine.wait(run_id, timeout=10).outputs == {"flaky": 2}


def test_a_paused_runs_due_timer_is_not_claimed_until_resumed(engine, clock, sql):
    run_id = engine.start(wf("paused", node("w", "Wait", duration="1h"), py("b"), connections=[conn("w", "b")]))
    with engine.worker(concurrency=1):
        wait_until(lambda: parked(sql, run_id, "w"), what="the Wait parked")
    engine.pause(run_id)
    clock.advance(7200)                                      # due, but its run is paused
    assert parked(sql, run_id, "w")[0] == PAUSED
    assert engine.service.claim("probe", 10, 30) == []
    engine.resume(run_id)
    assert parked(sql, run_id, "w") is None and claimable(sql) == 1
    with engine.worker(concurrency=1):
        assert engine.wait(run_id, timeout=10).status == "completed"


def test_resuming_before_the_timer_rings_keeps_it_parked(engine, clock, sql):
    run_id = engine.start(wf("early", node("w", "Wait", duration="1h"), py("b"), connections=[conn("w", "b")]))
    with engine.worker(concurrency=1):
        wait_until(lambda: parked(sql, run_id, "w"), what="the Wait parked")
    engine.pause(run_id)
    engine.resume(run_id)
    assert parked(sql, run_id, "w")[0] == LATER and claimable(sql) == 0
    assert engine.store.next_visible_at() == "2027-01-15T09:00:00.000Z"
    clock.advance(3600)
    with engine.worker(concurrency=1):
        assert engine.wait(run_id, timeout=10).status == "completed"
