"""Run figures (run.progress: time, average node time, retries, queue) and Engine.stats()
(runs by status, the last hour's throughput, the slowest nodes of the last day), all on the
engine's clock: a ManualClock that only the test moves, so every figure is exact."""

from __future__ import annotations

import pytest
from df_it_support import call, conn, node, node_status, py, wait_until, wf

from durableflow import Engine, ManualClock
from durableflow.clock import iso

START = 1_800_000_000.0
HOUR, DAY = 3600.0, 86400.0
FIGURES = ("elapsed_seconds", "avg_node_seconds", "retries_used")
QUEUE = ("queue_ready", "queue_delayed", "queue_held", "queue_leased", "queue_depth")


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def engine(tmp_path, clock, hooks):
    eng = Engine(tmp_path / "metrics.db", clock=clock)
    try:
        yield eng
    finally:
        hooks.reset()   # free blocked bodies before the workers are stopped
        eng.close()


def figures(run, keys=FIGURES) -> tuple:
    return tuple(run.progress[k] for k in keys)


def blocking(*node_ids: str) -> list[dict]:
    return [call(n, "block_until_released") for n in node_ids]


def chain(*node_ids: str) -> list[dict]:
    return [conn(a, b) for a, b in zip(node_ids, node_ids[1:])]


def drive(engine, clock, hooks, run_id: str, steps) -> None:
    """Each (node, seconds) in turn: once the node runs, the clock moves that far, then the
    node is let go; the next is claimed when it is recorded, so each takes exactly its time."""
    for node_id, seconds in steps:
        wait_until(lambda: node_status(engine, run_id, node_id) == "running", what=f"{node_id} running")
        clock.advance(seconds)
        hooks.event(f"release:{node_id}").set()


def test_three_nodes_of_2_4_and_6_seconds_average_4_and_take_12(engine, clock, hooks):
    run_id = engine.start(wf("timed", *blocking("a", "b", "c"), connections=chain("a", "b", "c")))
    assert figures(engine.get_run(run_id)) == (0.0, None, 0)        # started, nothing done yet
    with engine.worker(concurrency=1):
        drive(engine, clock, hooks, run_id, [("a", 2)])
        wait_until(lambda: node_status(engine, run_id, "b") == "running", what="b running")
        clock.advance(3)
        mid = engine.get_run(run_id)                                 # to now while it runs
        assert figures(mid) == (5.0, 2.0, 0)
        assert figures(mid, QUEUE) == (0, 0, 0, 1, 0)                # b is in a worker's hands
        clock.advance(1)
        hooks.event("release:b").set()
        drive(engine, clock, hooks, run_id, [("c", 6)])
        run = engine.wait(run_id, timeout=20)
    assert run.status == "completed"
    assert [n.duration for n in run.nodes] == [2.0, 4.0, 6.0]
    assert figures(run) == (12.0, 4.0, 0) and figures(run, QUEUE) == (0, 0, 0, 0, 0)
    clock.advance(HOUR)
    assert figures(engine.get_run(run_id)) == (12.0, 4.0, 0)        # started to finished, no further


def test_a_retry_is_counted_its_backoff_is_delayed_and_only_completed_attempts_are_averaged(engine, clock, hooks):
    flaky = py("flaky", "if ctx.attempt < 2:\n    raise RuntimeError('once')\noutput = 2",
               retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": "10m", "maxDelay": "1h",
                      "jitter": 0})
    run_id = engine.start(wf("retry", *blocking("a"), flaky, connections=chain("a", "flaky")))
    with engine.worker(concurrency=1):
        drive(engine, clock, hooks, run_id, [("a", 4)])
        wait_until(lambda: engine.get_run(run_id).progress["queue_delayed"] == 1, what="the retry parked")
        backoff = engine.get_run(run_id)
        assert figures(backoff) == (4.0, 4.0, 1)
        assert figures(backoff, QUEUE) == (0, 1, 0, 0, 1)
        clock.advance(600)
        run = engine.wait(run_id, timeout=20)
    assert [(n.node_id, n.attempt, n.status) for n in run.nodes] == [
        ("a", 1, "completed"), ("flaky", 1, "failed"), ("flaky", 2, "completed")]
    # a 4 s and flaky's second attempt 0 s: 2 s. The failed attempt is not one of them.
    assert figures(run) == (604.0, 2.0, 1)


def test_the_queue_of_a_run_with_a_timer_waiting_and_a_node_ready(engine, clock):
    run_id = engine.start(wf("queue", node("timer", "Wait", duration="1h"), node("soon", "Wait", duration="1m"),
                             py("work"), connections=[conn("soon", "work")]))
    assert figures(engine.get_run(run_id), QUEUE) == (2, 0, 0, 0, 2)      # no worker yet: both ready
    with engine.worker(concurrency=1):
        wait_until(lambda: engine.get_run(run_id).progress["queue_delayed"] == 2, what="both timers parked")
    clock.advance(60)                           # `soon` rings; no worker claims it now
    assert figures(engine.get_run(run_id), QUEUE) == (1, 1, 0, 0, 2)
    engine.pause(run_id)
    assert figures(engine.get_run(run_id), QUEUE) == (0, 0, 2, 0, 2)
    engine.resume(run_id)
    with engine.worker(concurrency=1):
        wait_until(lambda: node_status(engine, run_id, "work") == "completed", what="work done")
    run = engine.get_run(run_id)
    assert figures(run, QUEUE) == (0, 1, 0, 0, 1) and run.status == "running"
    clock.advance(HOUR - 60)
    assert figures(engine.get_run(run_id), QUEUE) == (1, 0, 0, 0, 1)
    with engine.worker(concurrency=1):
        run = engine.wait(run_id, timeout=20)
    assert run.status == "completed" and figures(run, QUEUE) == (0, 0, 0, 0, 0)
    # Each Wait counts its whole wait; `work` took no time.
    assert figures(run) == (HOUR, round((HOUR + 60 + 0) / 3, 3), 0)


def test_a_reruns_kept_nodes_are_not_its_own(engine, clock, hooks):
    """A rerun copies what it keeps; the old run did that work, so the new run's average and the
    last hour's throughput count only the attempts the rerun ran."""
    failing = py("b", "raise RuntimeError('no')")
    run_id = engine.start(wf("again", *blocking("a"), failing, connections=chain("a", "b")))
    with engine.worker(concurrency=1):
        drive(engine, clock, hooks, run_id, [("a", 8)])
        assert engine.wait(run_id, timeout=20).status == "failed"
        again = engine.rerun(run_id)
        rerun = engine.wait(again, timeout=20)
    assert [(n.node_id, n.status) for n in rerun.nodes] == [("a", "completed"), ("b", "failed")]
    assert figures(rerun) == (0.0, None, 0)
    assert engine.stats()["throughput_last_hour"]["nodes_completed"] == 1


# --- Engine.stats(): the windows -----------------------------------------------------------------

def test_stats_count_the_last_hour_and_the_slowest_nodes_of_the_last_day(engine, clock, hooks):
    now = START + 2 * DAY

    def run(workflow: str, steps, *, finish: bool = True, after=()) -> str:
        nodes = [n for n, _ in steps]
        run_id = engine.start(wf(workflow, *blocking(*nodes), *after,
                                 connections=chain(*nodes, *(a["nodeId"] for a in after))))
        drive(engine, clock, hooks, run_id, steps)
        if finish:
            assert engine.wait(run_id, timeout=20).status == "completed"
        else:   # its bodies must have seen their release before it is taken back below
            wait_until(lambda: all(node_status(engine, run_id, n) == "completed" for n in nodes),
                       what=f"the nodes of {workflow} done")
        for n in nodes:
            hooks.event(f"release:{n}").clear()        # the next run of this workflow blocks again
        return run_id

    with engine.worker(concurrency=1):
        run("old", [("ancient", 30)])                  # finished 2 days ago, less 30 s
        clock.set(now - 2 * HOUR - 9)
        run("earlier", [("e1", 2), ("e2", 7)])         # finished 2 hours ago
        clock.set(now - 15 * 60 - 4)
        run("recent", [("r1", 4)])                     # 15 minutes ago
        clock.set(now - 10 * 60 - 6)
        run("recent", [("r1", 6)])                     # 10 minutes ago
        clock.set(now - 5 * 60 - 3)
        live = run("live", [("l1", 3)], finish=False, after=[node("nap", "Wait", duration="1d")])
        wait_until(lambda: node_status(engine, live, "nap") == "waiting", what="the live run waiting")
        clock.set(now)
        stats = engine.stats()

    assert stats["now"] == iso(now)
    assert stats["runs"] == {"pending": 0, "running": 1, "paused": 0, "completed": 4, "failed": 0,
                             "cancelled": 0, "compensating": 0}
    hour = stats["throughput_last_hour"]
    # Not the run of 2 hours ago; the live run's node, though its run has not finished.
    assert hour == {
        "since": iso(now - HOUR), "runs_finished": 2, "nodes_completed": 3,
        "runs_per_minute": round(2 / 60, 3), "nodes_per_minute": 0.05,
        "by_minute": [
            {"minute": iso(now - 15 * 60)[:16], "runs_finished": 1, "nodes_completed": 1},
            {"minute": iso(now - 10 * 60)[:16], "runs_finished": 1, "nodes_completed": 1},
            {"minute": iso(now - 5 * 60)[:16], "runs_finished": 0, "nodes_completed": 1}]}
    # Not the node of 2 days ago; the run of 2 hours ago is.
    assert stats["slowest_nodes_last_day"] == {"since": iso(now - DAY), "nodes": [
        {"workflow_id": "earlier", "node_id": "e2", "completed": 1, "avg_s": 7.0, "max_s": 7.0},
        {"workflow_id": "recent", "node_id": "r1", "completed": 2, "avg_s": 5.0, "max_s": 6.0},
        {"workflow_id": "live", "node_id": "l1", "completed": 1, "avg_s": 3.0, "max_s": 3.0},
        {"workflow_id": "earlier", "node_id": "e1", "completed": 1, "avg_s": 2.0, "max_s": 2.0}]}
    # A day on, only the live run's Wait is left to count: nothing completed in the last hour.
    clock.set(now + DAY + 1)
    later = engine.stats()
    assert later["throughput_last_hour"]["nodes_completed"] == 0
    assert later["slowest_nodes_last_day"]["nodes"] == []


def test_stats_keep_the_ten_slowest(engine, clock):
    nodes = [node(f"w{i:02d}", "Wait", duration=f"{i}s") for i in range(1, 13)]
    run_id = engine.start(wf("many", *nodes, connections=chain(*(n["nodeId"] for n in nodes))))
    with engine.worker(concurrency=1):
        for n in nodes:
            wait_until(lambda: node_status(engine, run_id, n["nodeId"]) == "waiting", what=n["nodeId"])
            clock.advance(int(n["nodeId"][1:]))
        engine.wait(run_id, timeout=20)
    slowest = engine.stats()["slowest_nodes_last_day"]["nodes"]
    assert [(s["node_id"], s["avg_s"]) for s in slowest] == [(f"w{i:02d}", float(i)) for i in range(12, 2, -1)]
