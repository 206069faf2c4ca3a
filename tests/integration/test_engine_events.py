"""The events feed (engine.events, follow, subscribe), node progress and run.progress."""

from __future__ import annotations

import threading

import pytest

from df_it_support import call, conn, event_data, node, py, wait_until, wf
from durableflow import Engine

CHAIN = wf("chain", py("a", "output = 1"), py("b", "output = ctx.input + 1"), connections=[conn("a", "b")])


def test_events_of_a_run_in_seq_order_from_pending_to_completed(engine):
    run = engine.execute(CHAIN, timeout=30)
    events = list(engine.events(run.run_id))
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    types = [e["type"] for e in events]
    assert types[:2] == ["run.pending", "run.running"]
    assert types[-1] == "run.completed"
    assert all(e["run_id"] == run.run_id for e in events)
    for nid in ("a", "b"):
        node_types = [e["type"] for e in events if e["node_id"] == nid]
        for kind in ("node.pending", "message.leased", "node.running",
                     "message.acked", "node.completed"):
            assert kind in node_types, (nid, kind, node_types)
        assert node_types.index("node.running") < node_types.index("node.completed")
    # b's delivery is committed after a's completion, never before.
    a_done = types.index("node.completed")
    assert min(i for i, e in enumerate(events) if e["node_id"] == "b") > a_done
    # `after` resumes a tail.
    assert [e["seq"] for e in engine.events(run.run_id, after=seqs[3])] == seqs[4:]


def test_events_follow_tails_from_another_thread_until_the_run_finishes(engine, hooks):
    """engine.events(run_id, follow=True) follows the run to its end, as the README's loop does."""
    defn = wf("follow", call("hold", "block_until_released"), py("next", "output = 'n'"),
              connections=[conn("hold", "next")])
    run_id = engine.start(defn)
    seen: list[dict] = []
    done = threading.Event()

    def tail():
        for event in engine.events(run_id, follow=True, timeout=30):
            seen.append(event)
        done.set()

    t = threading.Thread(target=tail, daemon=True)
    t.start()
    with engine.worker(concurrency=1):
        wait_until(lambda: any(e["type"] == "node.running" and e["node_id"] == "hold" for e in seen),
                   what="the tail to see hold running")
        assert not done.is_set()
        # follow=False reads what is there now and returns, even while the run goes on.
        before = [e["seq"] for e in seen]
        now = list(engine.events(run_id))
        assert [e["seq"] for e in now][:len(before)] == before and now[-1]["type"] != "run.completed"
        hooks.event("release:hold").set()
        engine.wait(run_id, timeout=30)
        assert done.wait(10), "follow=True did not end after the run finished"
    t.join(5)
    assert seen[-1]["type"] == "run.completed"
    assert [e["seq"] for e in seen] == [e["seq"] for e in engine.events(run_id)]


def test_subscribe_delivers_events_and_unsubscribe_stops_it(engine):
    got: list[dict] = []
    lock = threading.Lock()

    def callback(event):
        with lock:
            got.append(event)

    unsubscribe = engine.subscribe(callback)
    first = engine.execute(CHAIN, timeout=30)
    wait_until(lambda: any(e["type"] == "run.completed" and e["run_id"] == first.run_id for e in got),
               what="the subscriber to see run.completed")
    unsubscribe()
    assert not any(t.name == "durableflow-subscriber" and t.is_alive() for t in threading.enumerate())
    with lock:
        count = len(got)
        assert [e["seq"] for e in got] == sorted(e["seq"] for e in got)
        assert {e["type"] for e in got} >= {"run.pending", "node.completed", "run.completed"}
    second = engine.execute(CHAIN, timeout=30)
    assert second.status == "completed"
    with lock:
        assert len(got) == count
        assert not any(e["run_id"] == second.run_id for e in got)


def test_subscribe_filtered_by_run(engine):
    got: list[dict] = []
    other = engine.start(CHAIN)
    mine = engine.start(CHAIN)
    unsubscribe = engine.subscribe(got.append, run_id=mine, after=0)
    try:
        with engine.worker(concurrency=2):
            engine.wait(other, timeout=30)
            engine.wait(mine, timeout=30)
        wait_until(lambda: got and got[-1]["type"] == "run.completed", what="run.completed of mine")
    finally:
        unsubscribe()
    assert {e["run_id"] for e in got} == {mine}
    assert got[0]["type"] == "run.pending"


def test_progress_is_recorded_and_run_progress_counts_while_running(engine, hooks, sql):
    body = ("import df_it_hooks as h\nctx.progress(50, 'half')\nh.event('at-half').set()\n"
            "h.wait('finish')\noutput = 'done'")
    defn = wf("progress", py("a", "output = 1"), py("work", body), py("c", "output = 3"),
              py("d", "output = 4"), connections=[conn("a", "work"), conn("work", "c"), conn("c", "d")])
    run_id = engine.start(defn)
    with engine.worker(concurrency=2):
        assert hooks.wait("at-half", 20)
        wait_until(lambda: engine.get_run(run_id).node("work").progress == 50, what="progress 50 stored")
        mid = engine.get_run(run_id)
        assert mid.status == "running"
        work = mid.node("work")
        assert (work.status, work.progress, work.progress_message) == ("running", 50, "half")
        p = mid.progress
        assert set(p) == {"total", "pending", "waiting", "running", "completed", "failed", "skipped",
                          "cancelled", "unreached", "percent", "eta_seconds", "elapsed_seconds",
                          "avg_node_seconds", "retries_used", "queue_depth", "queue_ready",
                          "queue_delayed", "queue_held", "queue_leased"}
        assert (p["total"], p["completed"], p["running"], p["pending"]) == (4, 1, 1, 2)
        assert p["percent"] == 25.0
        assert p["eta_seconds"] is None or p["eta_seconds"] >= 0
        hooks.event("finish").set()
        run = engine.wait(run_id, timeout=30)
    assert run.status == "completed"
    assert run.node("work").progress == 50 and run.node("work").progress_message == "half"
    p = run.progress
    assert (p["total"], p["completed"], p["running"], p["pending"], p["failed"], p["skipped"],
            p["cancelled"], p["waiting"], p["percent"], p["eta_seconds"]) == (4, 4, 0, 0, 0, 0, 0, 0, 100.0, 0.0)
    progress_events = [e for e in engine.events(run_id) if e["type"] == "node.progress"]
    assert len(progress_events) == 1 and progress_events[0]["node_id"] == "work"
    assert event_data(progress_events[0])["percent"] == 50 and event_data(progress_events[0])["message"] == "half"


def test_a_huge_progress_message_is_stored_cut_to_a_status_line(engine):
    """A body that passes its whole log as the message must not bloat the events table."""
    defn = wf("big-progress", py("work", "ctx.progress(100, 'x' * 200_000)\noutput = 1"))
    run = engine.execute(defn, timeout=30)
    message = run.node("work").progress_message
    assert message.startswith("x" * 1000) and message.endswith("... (199,000 more characters)")
    (event,) = [e for e in engine.events(run.run_id) if e["type"] == "node.progress"]
    assert event_data(event)["message"] == message


def test_run_progress_counts_failed_and_skipped(engine):
    defn = wf("progress-mixed", py("boom", "raise ValueError('x')"), py("next"), py("handler", "output = 'h'"),
              connections=[conn("boom", "next"), conn("boom", "handler", on="Fail")])
    run = engine.execute(defn, timeout=30)
    assert run.status == "completed"
    p = run.progress
    assert (p["total"], p["completed"], p["failed"], p["skipped"], p["percent"]) == (3, 1, 1, 1, 100.0)


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_progress_of_a_finished_run_has_nothing_pending_and_no_eta(engine, ending):
    """Nodes a failed or cancelled run never reached will not run: the finished run shows nothing
    pending and no time left, however long after it is read."""
    defn = wf("progress-" + ending, py("a", "raise ValueError('x')" if ending == "failed" else "output = 1"),
              py("b"), py("c"), connections=[conn("a", "b"), conn("b", "c")])
    if ending == "failed":
        run_id = engine.execute(defn, timeout=30).run_id
    else:
        run_id = engine.start(defn)
        engine.cancel(run_id)
    first = engine.get_run(run_id)
    assert first.status == ending
    p = first.progress
    assert (p["pending"], p["running"], p["waiting"]) == (0, 0, 0), p
    assert p["eta_seconds"] in (0.0, None), p
    # The workflow has three nodes: the ones it never reached are counted as such.
    assert p["total"] == 3 and p["unreached"] == 3 - sum(p[k] for k in ("completed", "failed", "cancelled"))
    assert p["percent"] < 100.0


def test_unsubscribe_from_inside_the_callback(engine):
    """A subscriber that stops itself when it has seen what it waited for."""
    got: list[str] = []
    errors: list[BaseException] = []
    holder = {}

    def callback(event):
        got.append(event["type"])
        if event["type"] == "run.completed":
            try:
                holder["unsubscribe"]()
            except BaseException as exc:   # noqa: BLE001 - recorded for the assertion below
                errors.append(exc)

    holder["unsubscribe"] = engine.subscribe(callback)
    engine.execute(CHAIN, timeout=30)
    wait_until(lambda: "run.completed" in got, what="the callback to see run.completed")
    wait_until(lambda: not any(t.name == "durableflow-subscriber" for t in threading.enumerate()),
               what="the subscriber thread to end")
    assert errors == []
    count = len(got)
    engine.execute(CHAIN, timeout=30)
    assert len(got) == count


def test_closing_the_engine_ends_its_subscriptions_quietly(tmp_path, monkeypatch):
    crashed: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(repr(args.exc_value)))
    engine = Engine(tmp_path / "close.db")
    engine.subscribe(lambda event: None)
    engine.execute(CHAIN, timeout=30)
    engine.close()
    wait_until(lambda: not any(t.name == "durableflow-subscriber" for t in threading.enumerate()),
               what="the subscriber thread to end")
    assert crashed == []


def test_no_eta_while_a_node_waits(engine):
    defn = wf("progress-waits", py("a", "output = 1"), node("w", "Wait", duration="1h"), py("b"),
              connections=[conn("a", "w"), conn("w", "b")])
    run_id = engine.start(defn)
    with engine.worker(concurrency=1):
        wait_until(lambda: getattr(engine.get_run(run_id).node("w"), "status", None) == "waiting",
                   what="the Wait node waiting")
    p = engine.get_run(run_id).progress
    assert (p["completed"], p["waiting"], p["pending"]) == (1, 1, 1) and p["eta_seconds"] is None
