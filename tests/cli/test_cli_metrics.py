"""`status` shows a run's time, average node time, retries and queue; `stats` the runs by status,
the last hour's throughput and the slowest nodes of the last day; both as text and --json.

The history is written by an Engine on a ManualClock set in the past, whose Wait nodes take
exactly the clock time the test gives them; the CLI then reads it on the wall clock, so its
windows end now."""

from __future__ import annotations

import json
import time

import pytest

from durableflow import Engine, ManualClock
from tests.cli.cli_helpers import edge, py, wait_for, workflow

HOUR, DAY = 3600.0, 86400.0


def waits(engine: Engine, clock: ManualClock, workflow_id: str, steps) -> str:
    """A run of a chain of Wait nodes, each (node, seconds) ringing after exactly that long."""
    nodes = [{"nodeId": n, "runtimeType": "Wait", "duration": f"{s}s"} for n, s in steps]
    run_id = engine.start(workflow(workflow_id, *nodes,
                                   connections=[edge(a["nodeId"], b["nodeId"]) for a, b in zip(nodes, nodes[1:])]))
    with engine.worker(concurrency=1):
        for node_id, seconds in steps:
            wait_for(lambda: getattr(engine.get_run(run_id).node(node_id), "status", None) == "waiting",
                     what=f"{node_id} waiting")
            clock.advance(seconds)
        assert engine.wait(run_id, timeout=20).status == "completed"
    return run_id


@pytest.fixture
def history(db) -> dict:
    """Runs finished 2 days, 2 hours and 10 minutes ago, and one running, in a retry's backoff."""
    now = time.time()
    clock = ManualClock(now - 2 * DAY)
    with Engine(db, clock=clock) as engine:
        runs = {"ancient": waits(engine, clock, "ancient", [("a1", 30)])}
        clock.set(now - 2 * HOUR - 9)
        runs["earlier"] = waits(engine, clock, "earlier", [("e1", 2), ("e2", 7)])
        clock.set(now - 10 * 60 - 12)
        runs["timed"] = waits(engine, clock, "timed", [("t1", 2), ("t2", 4), ("t3", 6)])
        clock.set(now - 5 * 60)
        runs["flaky"] = engine.start(workflow("flaky", py(
            "f", "if ctx.attempt < 2:\n    raise RuntimeError('once')\noutput = 2",
            retry={"strategy": "fixed", "maxAttempts": 2, "initialDelay": "1h", "maxDelay": "1h", "jitter": 0})))
        with engine.worker(concurrency=1):
            wait_for(lambda: engine.get_run(runs["flaky"]).progress["queue_delayed"] == 1, what="the retry parked")
    return runs


def test_status_shows_a_finished_runs_time_and_average_node_time(invoke, history):
    result = invoke("status", history["timed"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "time:     12.00s, 4.00s per completed node on average" in lines
    assert "retries:  0" in lines
    assert "queue:    0 (0 ready, 0 delayed, 0 held), 0 leased" in lines
    progress = json.loads(invoke("status", history["timed"], "--json").stdout)["progress"]
    assert {k: progress[k] for k in ("elapsed_seconds", "avg_node_seconds", "retries_used", "queue_depth",
                                     "queue_ready", "queue_delayed", "queue_held", "queue_leased")} == {
        "elapsed_seconds": 12.0, "avg_node_seconds": 4.0, "retries_used": 0, "queue_depth": 0,
        "queue_ready": 0, "queue_delayed": 0, "queue_held": 0, "queue_leased": 0}
    assert progress["completed"] == 3 and progress["percent"] == 100.0     # the fields it had stay


def test_status_shows_a_running_runs_retry_and_its_delayed_message(invoke, history):
    result = invoke("status", history["flaky"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    time_line = next(line for line in lines if line.startswith("time:"))
    assert time_line.endswith(" so far") and "per completed node" not in time_line   # nothing completed
    assert "retries:  1" in lines
    assert "queue:    1 (0 ready, 1 delayed, 0 held), 0 leased" in lines
    progress = json.loads(invoke("status", history["flaky"], "--json").stdout)["progress"]
    assert (progress["retries_used"], progress["avg_node_seconds"], progress["queue_delayed"]) == (1, None, 1)
    # To now on the wall clock: the run started 5 minutes ago (by the clock that wrote it).
    assert 5 * 60 <= progress["elapsed_seconds"] < 6 * 60


def test_stats_json_counts_the_last_hour_and_the_slowest_nodes_of_the_last_day(invoke, history):
    result = invoke("stats", "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["runs"] == {"pending": 0, "running": 1, "paused": 0, "completed": 3, "failed": 0,
                             "cancelled": 0, "compensating": 0}
    hour = stats["throughput_last_hour"]
    # The run of 10 minutes ago and its three nodes; not the run of 2 hours ago.
    assert (hour["runs_finished"], hour["nodes_completed"]) == (1, 3)
    assert (hour["runs_per_minute"], hour["nodes_per_minute"]) == (0.017, 0.05)
    assert sum(m["runs_finished"] for m in hour["by_minute"]) == 1
    assert sum(m["nodes_completed"] for m in hour["by_minute"]) == 3
    assert all(hour["since"][:16] <= m["minute"] <= stats["now"][:16] for m in hour["by_minute"])
    # Every node of the last day, slowest first; not the one of 2 days ago.
    assert [(s["workflow_id"], s["node_id"], s["completed"], s["avg_s"], s["max_s"])
            for s in stats["slowest_nodes_last_day"]["nodes"]] == [
        ("earlier", "e2", 1, 7.0, 7.0), ("timed", "t3", 1, 6.0, 6.0), ("timed", "t2", 1, 4.0, 4.0),
        ("earlier", "e1", 1, 2.0, 2.0), ("timed", "t1", 1, 2.0, 2.0)]


def test_stats_text_shows_the_same(invoke, history):
    result = invoke("stats")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["runs:", "4", "completed", "3,", "running", "1"]
    assert [line.split() for line in lines if "a minute" in line] == [
        ["last", "hour:", "1", "runs", "finished,", "0.017", "a", "minute"],
        ["3", "nodes", "completed,", "0.05", "a", "minute"]]
    table = lines[lines.index("slowest nodes, last day") + 1:]
    assert table[0].split() == ["workflow", "node", "completed", "average", "max"]
    assert [row.split() for row in table[2:]] == [
        ["earlier", "e2", "1", "7.00s", "7.00s"], ["timed", "t3", "1", "6.00s", "6.00s"],
        ["timed", "t2", "1", "4.00s", "4.00s"], ["earlier", "e1", "1", "2.00s", "2.00s"],
        ["timed", "t1", "1", "2.00s", "2.00s"]]


def test_stats_of_a_quiet_database(invoke, db):
    Engine(db).close()
    result = invoke("stats")
    assert result.exit_code == 0, result.stderr
    assert "slowest nodes, last day: none completed" in result.stdout.splitlines()
    stats = json.loads(invoke("stats", "--json").stdout)
    assert stats["throughput_last_hour"]["by_minute"] == [] and stats["slowest_nodes_last_day"]["nodes"] == []
