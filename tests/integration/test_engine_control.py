"""Cancel, pause and resume through the API."""

from __future__ import annotations

import pytest

from df_it_support import call, conn, node_status, py, wait_until, wf
from durableflow import Engine, InvalidTransition, ManualClock


def test_cancel_stops_a_running_node_and_cancels_what_is_pending(engine, hooks, sql):
    defn = wf(
        "cancel",
        py("start"),
        call("hold", "block_until_released"),
        py("queued", "output = 'q'"),
        py("after", "output = 'a'"),
        connections=[conn("start", "hold"), conn("start", "queued"), conn("hold", "after")],
        maxConcurrency=1,
    )
    run_id = engine.start(defn)
    with engine.worker(concurrency=2):
        wait_until(lambda: node_status(engine, run_id, "hold") == "running", what="hold running")
        # `queued` is either still waiting for the slot or already done; both are fine below.
        assert engine.cancel(run_id) == "cancelled"
        run = engine.wait(run_id, timeout=10)
        assert run.status == "cancelled"
        wait_until(lambda: node_status(engine, run_id, "hold") == "cancelled", what="hold cancelled")
    run = engine.get_run(run_id)
    wait_until(lambda: hooks.calls["saw_cancel"] == ["hold"], what="the body to see ctx.cancelled")
    assert run.node("after") is None
    assert run.node("queued").status in ("cancelled", "completed")
    assert sql.one("SELECT count(*) FROM messages WHERE run_id = ? AND status IN ('ready', 'leased')", run_id) == 0
    assert sql.one("SELECT count(*) FROM node_instances WHERE run_id = ? AND status IN "
                   "('pending', 'waiting', 'running')", run_id) == 0
    assert run.finished_at is not None
    # Cancelling a finished run changes nothing.
    assert engine.cancel(run_id) == "cancelled"


def test_cancel_before_any_worker_runs_it(engine, sql):
    run_id = engine.start(wf("cancel-early", py("a"), py("b"), connections=[conn("a", "b")]))
    assert engine.cancel(run_id) == "cancelled"
    with engine.worker(concurrency=1):
        run = engine.wait(run_id, timeout=10)
    assert run.status == "cancelled"
    assert [(n.node_id, n.status) for n in run.nodes] == [("a", "cancelled")]


def test_cancel_a_completed_run_is_refused_and_cancelling_twice_is_not(engine):
    run = engine.execute(wf("done", py("a")), timeout=30)
    with pytest.raises(InvalidTransition, match="already completed"):
        engine.cancel(run.run_id)
    assert engine.get_run(run.run_id).status == "completed"
    other = engine.start(wf("done", py("a")))
    assert engine.cancel(other) == "cancelled"
    assert engine.cancel(other) == "cancelled"


def test_pause_keeps_the_running_node_and_starts_nothing_new_until_resume(engine, hooks, sql):
    defn = wf("pause", call("first", "block_until_released"), py("second", "output = 'two'"),
              py("third", "output = 'three'"), connections=[conn("first", "second"), conn("second", "third")])
    run_id = engine.start(defn)
    with engine.worker(concurrency=2) as w:
        wait_until(lambda: node_status(engine, run_id, "first") == "running", what="first running")
        assert engine.pause(run_id) == "paused"
        assert engine.get_run(run_id).status == "paused"
        hooks.event("release:first").set()
        wait_until(lambda: node_status(engine, run_id, "first") == "completed", what="first completed while paused")
        # Let the worker go round its claim loop at least once with nothing claimable.
        w.idle.clear()
        assert w.idle.wait(10)
        run = engine.get_run(run_id)
        assert run.status == "paused"
        assert run.node("first").status == "completed" and run.node("first").output == {"released": "first"}
        assert run.node("second").status == "pending"
        assert sql.one("SELECT held FROM messages WHERE run_id = ? AND target_node_id = 'second'", run_id) == 1
        assert engine.pause(run_id) == "paused"     # already paused: not an error, nothing changes
        assert sql.one("SELECT held FROM messages WHERE run_id = ? AND target_node_id = 'second'", run_id) == 1
        assert engine.resume(run_id) == "running"
        run = engine.wait(run_id, timeout=30)
    assert run.status == "completed", run.error
    assert run.outputs == {"third": "three"}
    assert [n.node_id for n in run.nodes if n.status == "completed"] == ["first", "second", "third"]


def test_a_run_paused_while_its_last_node_runs_completes_on_resume(engine, hooks):
    run_id = engine.start(wf("pause-last", call("only", "block_until_released")))
    with engine.worker(concurrency=1):
        wait_until(lambda: node_status(engine, run_id, "only") == "running", what="only running")
        engine.pause(run_id)
        hooks.event("release:only").set()
        wait_until(lambda: node_status(engine, run_id, "only") == "completed", what="only completed")
        assert engine.get_run(run_id).status == "paused"
        engine.resume(run_id)
        run = engine.wait(run_id, timeout=10)
    assert run.status == "completed"
    assert run.outputs == {"only": {"released": "only"}}


def test_resume_a_run_that_is_not_paused_is_refused(engine):
    run = engine.execute(wf("not-paused", py("a")), timeout=30)
    with pytest.raises(InvalidTransition):
        engine.resume(run.run_id)


def test_cancel_a_paused_run(engine, hooks, sql):
    run_id = engine.start(wf("cancel-paused", py("a"), py("b"), connections=[conn("a", "b")]))
    engine.pause(run_id)
    with engine.worker(concurrency=1) as w:
        w.idle.clear()
        assert w.idle.wait(10)
        assert engine.get_run(run_id).node("a").status == "pending"
        assert engine.cancel(run_id) == "cancelled"
        run = engine.wait(run_id, timeout=10)
    assert run.status == "cancelled"
    assert [(n.node_id, n.status) for n in run.nodes] == [("a", "cancelled")]
    assert sql.one("SELECT count(*) FROM messages WHERE run_id = ? AND status = 'ready'", run_id) == 0


def test_pause_for_a_while_resumes_by_itself_in_maintain(tmp_path, hooks):
    clock = ManualClock(1_800_000_000.0)
    engine = Engine(tmp_path / "pause-for.db", clock=clock)
    try:
        run_id = engine.start(wf("pause-for", py("a", "output = 'a'")))
        engine.pause(run_id, for_seconds=60)
        engine.maintain()
        assert engine.get_run(run_id).status == "paused"
        clock.advance(61)
        engine.maintain()
        assert engine.get_run(run_id).status == "running"
        with engine.worker(concurrency=1):
            assert engine.wait(run_id, timeout=10).status == "completed"
    finally:
        engine.close()


def test_a_plain_pause_of_a_run_paused_for_a_while_holds_it_until_resumed(tmp_path):
    clock = ManualClock(1_800_000_000.0)
    engine = Engine(tmp_path / "pause-again.db", clock=clock)
    try:
        run_id = engine.start(wf("pause-again", py("a", "output = 'a'")))
        engine.pause(run_id, for_seconds=60)
        assert engine.pause(run_id) == "paused"
        clock.advance(3600)
        engine.maintain()
        assert engine.get_run(run_id).status == "paused"          # the timer no longer holds
        assert "run.pause_extended" in [e["type"] for e in engine.events(run_id, follow=False)]
        assert engine.resume(run_id) == "running"
    finally:
        engine.close()


def test_a_body_that_raises_node_cancelled_itself_ends_its_run(engine):
    """Only the engine cancels a node; a body raising the engine's NodeCancelled while its run goes
    on must not be delivered again without end: the run finishes, with a bounded number of attempts."""
    defn = wf("self-cancel", py("a", "from durableflow.errors import NodeCancelled\n"
                                     "raise NodeCancelled('I give up')"))
    run = engine.execute(defn, timeout=5)
    assert run.status in ("failed", "cancelled")
    assert len(run.nodes) <= 5, f"{len(run.nodes)} attempts"
