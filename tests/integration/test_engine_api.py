"""The Engine facade: register, start, execute, wait, get_run/runs, Run fields, worker lifecycle."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from df_it_support import conn, df_threads, node, py, wait_until, wf
from durableflow import (
    DurableflowError, Engine, RunNotFound, ValidationError, WaitTimeout, WorkflowNotFound,
)

TWO_STEP = wf(
    "two-step",
    py("a", "output = {'n': ctx.input['n'] + 1}"),
    py("b", "output = ctx.input['n'] * 10"),
    connections=[conn("a", "b")],
)


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


# --- register -----------------------------------------------------------------------------------

def test_register_same_content_keeps_version_changed_content_gets_next(engine, tmp_path, sql):
    assert engine.register(TWO_STEP) == ("two-step", 1)
    assert engine.register(dict(TWO_STEP)) == ("two-step", 1)
    # The same content from a YAML file is the same definition.
    assert engine.register(write_yaml(tmp_path / "two.yaml", TWO_STEP)) == ("two-step", 1)

    changed = wf("two-step", py("a", "output = {'n': 0}"), py("b"), connections=[conn("a", "b")])
    assert engine.register(changed) == ("two-step", 2)
    assert engine.register(changed) == ("two-step", 2)
    assert sql.rows("SELECT version FROM workflows WHERE workflow_id = 'two-step' ORDER BY version") == [(1,), (2,)]
    # Starting by id takes the latest version.
    run_id = engine.start("two-step")
    assert engine.get_run(run_id).workflow_version == 2


def test_register_explicit_version_with_other_content_is_refused(engine, sql):
    first = {**TWO_STEP, "version": 3}
    assert engine.register(first) == ("two-step", 3)
    assert engine.register(first) == ("two-step", 3)
    clash = {**wf("two-step", py("a", "output = 'other'")), "version": 3}
    with pytest.raises(DurableflowError, match="version 3"):
        engine.register(clash)
    stored = sql.rows("SELECT version, definition FROM workflows WHERE workflow_id = 'two-step'")
    assert len(stored) == 1 and "other" not in stored[0][1]
    # Without an explicit version, new content goes after the highest one.
    assert engine.register(wf("two-step", py("a", "output = 'other'"))) == ("two-step", 4)


def test_register_invalid_definition_raises_and_stores_nothing(engine, sql):
    bad = wf("bad", py("a"), connections=[conn("a", "nowhere")])
    with pytest.raises(ValidationError, match="nowhere"):
        engine.register(bad)
    assert sql.one("SELECT count(*) FROM workflows") == 0


# --- start ----------------------------------------------------------------------------------------

def test_start_by_id_by_file_and_with_inputs(engine, tmp_path):
    (tmp_path / "flows").mkdir()
    path = write_yaml(tmp_path / "flows" / "two.yaml", TWO_STEP)
    by_file = engine.start(path, inputs={"n": 1})
    engine.register(TWO_STEP)
    by_id = engine.start("two-step", inputs={"n": 4})
    by_dict = engine.start(TWO_STEP, inputs={"n": 0})
    with engine.worker(concurrency=2):
        runs = {rid: engine.wait(rid, timeout=30) for rid in (by_file, by_id, by_dict)}
    assert {rid: (r.status, r.outputs) for rid, r in runs.items()} == {
        by_file: ("completed", {"b": 20}),
        by_id: ("completed", {"b": 50}),
        by_dict: ("completed", {"b": 10}),
    }
    assert runs[by_id].inputs == {"n": 4}
    assert runs[by_id].node("a").input == {"n": 4}


def test_start_unknown_workflow_id_raises(engine):
    with pytest.raises(WorkflowNotFound):
        engine.start("no-such-workflow")


def test_inputs_schema_violation_raises_validation_error_and_stores_no_run(engine, sql):
    defn = {**TWO_STEP, "inputsSchema": {
        "type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}}
    engine.register(defn)
    events_before = sql.one("SELECT count(*) FROM events")
    with pytest.raises(ValidationError, match="n"):
        engine.start("two-step", inputs={"n": "one"})
    with pytest.raises(ValidationError):
        engine.start("two-step", inputs={})
    with pytest.raises(ValidationError):
        engine.start(defn, inputs={"n": 1.5})      # by definition, too
    with pytest.raises(ValidationError):
        engine.execute(defn, inputs=None, timeout=5)
    assert sql.one("SELECT count(*) FROM runs") == 0
    assert sql.one("SELECT count(*) FROM messages") == 0
    assert sql.one("SELECT count(*) FROM node_instances") == 0
    assert sql.one("SELECT count(*) FROM events") == events_before
    run = engine.execute(defn, inputs={"n": 2}, timeout=30)
    assert run.status == "completed" and run.outputs == {"b": 30}


def test_idempotency_key_returns_the_existing_run(engine, sql):
    first = engine.start(TWO_STEP, inputs={"n": 1}, idempotency_key="order-7")
    again = engine.start(TWO_STEP, inputs={"n": 99}, idempotency_key="order-7")
    assert again == first
    assert sql.one("SELECT count(*) FROM runs") == 1


# --- execute / wait / get_run / runs --------------------------------------------------------------

def test_execute_returns_the_finished_run_with_its_fields(engine):
    run = engine.execute(TWO_STEP, inputs={"n": 1}, concurrency=2, timeout=30)
    assert run.status == "completed"
    assert run.finished
    assert run.error is None
    assert run.outputs == {"b": 20}
    assert run.workflow_id == "two-step" and run.workflow_version == 1
    assert run.started_at and run.finished_at and run.created_at <= run.started_at <= run.finished_at
    assert [(n.node_id, n.attempt, n.status) for n in run.nodes] == [("a", 1, "completed"), ("b", 1, "completed")]
    a = run.node("a")
    assert a.output == {"n": 2} and a.worker_id and a.duration is not None and a.duration >= 0
    assert run.progress["completed"] == 2 and run.progress["percent"] == 100.0


def test_wait_raises_wait_timeout_while_nobody_works(engine):
    run_id = engine.start(TWO_STEP, inputs={"n": 1})
    with pytest.raises(WaitTimeout, match=run_id):
        engine.wait(run_id, timeout=0.2)
    assert engine.get_run(run_id).status == "running"
    with engine.worker(concurrency=1):
        assert engine.wait(run_id, timeout=30).status == "completed"


def test_get_run_and_runs_list(engine):
    ok = engine.execute(TWO_STEP, inputs={"n": 1}, timeout=30).run_id
    bad = engine.execute(wf("boom", py("x", "raise RuntimeError('nope')")), timeout=30).run_id
    listed = {r["run_id"]: r for r in engine.runs()}
    assert listed[ok]["status"] == "completed" and listed[bad]["status"] == "failed"
    assert [r["run_id"] for r in engine.runs(status="failed")] == [bad]
    assert [r["run_id"] for r in engine.runs(workflow_id="two-step")] == [ok]
    assert engine.get_run(bad).error and "x" in engine.get_run(bad).error
    with pytest.raises(RunNotFound):
        engine.get_run("nope")
    with pytest.raises(RunNotFound):
        engine.wait("nope", timeout=1)


def test_a_second_engine_on_the_same_file_sees_the_runs(engine, tmp_path):
    run = engine.execute(TWO_STEP, inputs={"n": 1}, timeout=30)
    other = Engine(engine.path)
    try:
        again = other.get_run(run.run_id)
        assert (again.status, again.outputs, len(again.nodes)) == ("completed", {"b": 20}, 2)
    finally:
        other.close()


# --- worker lifecycle -----------------------------------------------------------------------------

def test_worker_context_manager_leaves_no_threads_behind(engine):
    before = df_threads()
    with engine.worker(concurrency=3) as w:
        assert len(df_threads() - before) >= 2      # dispatcher and keeper at least
        run = engine.wait(engine.start(TWO_STEP, inputs={"n": 1}), timeout=30)
        assert run.status == "completed"
        assert w.worker_id
    left = df_threads() - before
    assert not left, f"threads left after the worker stopped: {sorted(t.name for t in left)}"
    # Another worker on the same engine still works after the first one stopped.
    with engine.worker(concurrency=1):
        assert engine.wait(engine.start(TWO_STEP, inputs={"n": 2}), timeout=30).status == "completed"
    assert not (df_threads() - before)


def test_worker_stop_waits_for_the_node_in_hand(engine, hooks):
    """Leaving the `with` block lets a running node finish and be recorded."""
    defn = wf("slow", py("s", "import df_it_hooks as h\nh.record('in', 1)\nh.wait('go')\noutput = 'done'"))
    run_id = engine.start(defn)
    w = engine.worker(concurrency=1).start()
    wait_until(lambda: hooks.calls["in"], what="node to start")
    stopper = threading.Thread(target=w.stop)
    stopper.start()
    hooks.event("go").set()
    stopper.join(20)
    assert not stopper.is_alive()
    run = engine.get_run(run_id)
    assert run.status == "completed" and run.outputs == {"s": "done"}


def test_worker_stop_with_a_timeout_returns_while_a_body_still_runs(tmp_path, hooks):
    """stop(timeout) waits that long at most: the hanging body is told to cancel, its lease is
    left to expire, and a later worker finishes the run."""
    engine = Engine(tmp_path / "stop-timeout.db", lease_seconds=1)
    valve = threading.Timer(10.0, hooks.event("valve").set)   # frees the body if stop waits for it
    valve.start()
    try:
        defn = wf("stop-timeout", py("hang", "import df_it_hooks as h\nh.record('in', ctx.attempt)\n"
                                             "if ctx.attempt == 1:\n    h.wait('valve', 10)\noutput = ctx.attempt"))
        run_id = engine.start(defn)
        w = engine.worker(concurrency=1).start()
        wait_until(lambda: hooks.calls["in"], what="node to start")
        t0 = time.monotonic()
        w.stop(timeout=0.3)
        elapsed = time.monotonic() - t0
        assert elapsed < 5, f"stop(timeout=0.3) returned after {elapsed:.1f}s"
        assert engine.get_run(run_id).status == "running"
        hooks.event("valve").set()
        with engine.worker(concurrency=1):
            run = engine.wait(run_id, timeout=20)
        assert run.status == "completed" and run.outputs == {"hang": 2}
    finally:
        valve.cancel()
        hooks.event("valve").set()
        engine.close()


def test_engine_close_with_a_timeout_returns_while_a_body_still_runs(tmp_path, hooks):
    engine = Engine(tmp_path / "close-timeout.db", lease_seconds=1)
    valve = threading.Timer(10.0, hooks.event("valve").set)
    valve.start()
    try:
        with pytest.raises(ValidationError, match="timeout: not a duration"):
            engine.close(timeout="soon")
        run_id = engine.start(wf("close-timeout", py("hang", "import df_it_hooks as h\nh.record('in', 1)\n"
                                                             "h.wait('valve', 10)\noutput = 1")))
        engine.worker(concurrency=1).start()
        wait_until(lambda: hooks.calls["in"], what="node to start")
        t0 = time.monotonic()
        engine.close(timeout=0.3)
        elapsed = time.monotonic() - t0
        assert elapsed < 5, f"close(timeout=0.3) returned after {elapsed:.1f}s"
    finally:
        valve.cancel()
        hooks.event("valve").set()
    reopened = Engine(tmp_path / "close-timeout.db")
    try:
        assert reopened.get_run(run_id).status == "running"     # nothing recorded as done
    finally:
        reopened.close()


def test_execute_timeout_bounds_the_call_while_a_node_still_runs(engine, hooks):
    """execute(..., timeout=T) must give up (WaitTimeout) about T seconds in, even when a node
    body is still running; it must not sit in the worker's shutdown until the body returns."""
    defn = wf("execute-timeout", py("hang", "import df_it_hooks as h\nh.wait('valve', 5)\noutput = 1"))
    valve = threading.Timer(5.0, hooks.event("valve").set)   # frees the body if the engine waits for it
    valve.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(WaitTimeout):
            engine.execute(defn, timeout=0.5)
        elapsed = time.monotonic() - t0
    finally:
        valve.cancel()
        hooks.event("valve").set()
    assert elapsed < 3, f"execute(timeout=0.5) returned after {elapsed:.1f}s"


def test_the_same_definition_file_in_two_folders_runs_its_own_scripts(engine, tmp_path):
    """Relative paths resolve against the definition file's folder: one/flow.yaml runs one/s.py,
    two/flow.yaml runs two/s.py, whatever was registered first."""
    flow = wf("relpath", {"nodeId": "s", "runtimeType": "Python", "scriptPath": "s.py"})
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        write_yaml(tmp_path / name / "flow.yaml", flow)
        (tmp_path / name / "s.py").write_text(f"def run(ctx):\n    return '{name}'\n")
    first = engine.execute(str(tmp_path / "one" / "flow.yaml"), timeout=30)
    second = engine.execute(str(tmp_path / "two" / "flow.yaml"), timeout=30)
    assert first.outputs == {"s": "one"}
    assert second.outputs == {"s": "two"}
    # A fresh engine (another process, say) runs the stored version of the second run the same way.
    other = Engine(engine.path)
    try:
        run_id = other.start("relpath", version=second.workflow_version)
        with other.worker(concurrency=1):
            assert other.wait(run_id, timeout=30).outputs == {"s": "two"}
    finally:
        other.close()


def test_a_run_abandoned_by_execute_timeout_is_finished_by_the_next_worker(tmp_path, hooks):
    """execute() gave up on the run, not the run on its node: the node in hand must not be
    recorded as done (the run must not 'complete' without it); a later worker redelivers it
    after its lease expires and the run completes with every node."""
    engine = Engine(tmp_path / "abandon.db", lease_seconds=1)
    try:
        defn = wf("abandon", py("a", "import df_it_hooks as h\nif ctx.attempt == 1:\n    h.wait('valve', 5)\noutput = 1"),
                  py("b", "output = ctx.input + 1"), connections=[conn("a", "b")])
        with pytest.raises(WaitTimeout):
            engine.execute(defn, timeout=0.5)
        (run_row,) = engine.runs()
        assert engine.get_run(run_row["run_id"]).status == "running"
        hooks.event("valve").set()
        with engine.worker(concurrency=1):
            run = engine.wait(run_row["run_id"], timeout=20)
        assert run.status == "completed", run.error
        assert run.outputs == {"b": 2}
        assert [n.status for n in run.nodes if n.node_id == "a"][-1] == "completed"
    finally:
        hooks.reset()
        engine.close()


def test_a_workflow_whose_script_file_is_gone_fails_only_its_own_runs(tmp_path):
    """A stored version whose scriptPath file was deleted: its node fails (ScriptNotFound) and
    its run fails; other workflows' runs are not held up; its finished runs stay readable."""
    script = tmp_path / "gone.py"
    script.write_text("def run(ctx):\n    return 'S'\n")
    engine = Engine(tmp_path / "gone.db")
    try:
        with_script = wf("with-script", {"nodeId": "s", "runtimeType": "Python", "scriptPath": str(script)})
        finished = engine.execute(with_script, timeout=30).run_id
        doomed = engine.start("with-script")
        other = engine.start(TWO_STEP, inputs={"n": 1})
    finally:
        engine.close()
    script.unlink()
    engine = Engine(tmp_path / "gone.db")      # a fresh process: nothing cached
    try:
        assert engine.get_run(finished).outputs == {"s": "S"}
        with engine.worker(concurrency=2):
            assert engine.wait(other, timeout=10).status == "completed"
            run = engine.wait(doomed, timeout=10)
        assert run.status == "failed"
        assert "s" in run.error and "gone.py" in run.error
    finally:
        engine.close()


def test_a_stopped_worker_holds_no_leases_and_the_next_one_carries_on(engine, sql):
    """Stop a worker in the middle of a long chain of cheap nodes: nothing stays leased or running
    behind it, and a new worker finishes the run at once (not after a lease expiry)."""
    n = 400
    defn = wf("long-chain", *[node(f"n{i}", "Noop") for i in range(n)],
              connections=[conn(f"n{i}", f"n{i + 1}") for i in range(n - 1)])
    run_id = engine.start(defn, inputs={"x": 1})
    for _round in range(3):
        with engine.worker(concurrency=2):
            wait_until(lambda: sql.one("SELECT count(*) FROM node_instances WHERE run_id = ? "
                                       "AND status = 'completed'", run_id) >= 10 * (_round + 1),
                       what="some progress")
        assert sql.one("SELECT count(*) FROM messages WHERE status = 'leased'") == 0
        assert sql.one("SELECT count(*) FROM node_instances WHERE status = 'running'") == 0
    with engine.worker(concurrency=2):
        run = engine.wait(run_id, timeout=15)     # well inside the 30 s lease
    assert run.status == "completed"
    assert run.outputs == {f"n{n - 1}": {"x": 1}}
    assert sql.one("SELECT count(*) FROM node_instances WHERE run_id = ? AND status != 'completed'", run_id) == 0


def test_a_worker_runs_its_start_up_quick_check_unless_told_not_to(engine):
    import threading

    worker = engine.worker(concurrency=1).start()
    try:
        assert worker.checked.wait(30), "the start-up quick_check never finished"
        assert worker.errors == []
    finally:
        worker.stop()
    names_before = {t.name for t in threading.enumerate()}
    unchecked = engine.worker(concurrency=1, quick_check=False)
    assert not unchecked.checked.is_set()
    unchecked.start()
    try:
        assert unchecked.checked.is_set()  # nothing to wait for
        started = {t.name for t in threading.enumerate()} - names_before
        assert "durableflow-dispatcher" in started and "durableflow-quick-check" not in started
    finally:
        unchecked.stop()


def test_a_result_that_cannot_be_recorded_fails_its_node_not_the_worker(engine, monkeypatch):
    real = engine.execution.attempts.complete

    def complete(conn, task, outcome, now):
        if task.node_id == "bad":
            raise ValueError("year 273792727 is out of range")   # a fault of ours, not the body's
        return real(conn, task, outcome, now)

    monkeypatch.setattr(engine.execution.attempts, "complete", complete)
    bad = engine.start(wf("unrecordable", node("bad", "Noop")))
    good = engine.start(wf("fine", node("ok", "Noop")))
    worker = engine.worker(concurrency=2).start()
    try:
        wait_until(lambda: engine.get_run(bad).status == "failed" and
                   engine.get_run(good).status == "completed", timeout=30)
        assert worker.errors == [] and not worker._stopping.is_set()
    finally:
        worker.stop()
    failed = engine.get_run(bad)
    [attempt] = failed.nodes
    assert attempt.status == "failed" and attempt.error_type == "InternalError"
    assert "could not record this node's result: ValueError: year 273792727" in attempt.error


def test_api_mistakes_are_durableflow_errors_with_one_line(engine):
    with pytest.raises(ValidationError, match="worker concurrency must be a whole number"):
        engine.worker(concurrency=0)
    text = "workflowId: a\nnodes:\n  - {nodeId: a, runtimeType: Noop}\n"
    with pytest.raises(DurableflowError) as exc:
        engine.register(text)
    assert "\n" not in str(exc.value) and "parse it first" in str(exc.value)


def test_a_worker_refused_by_a_read_only_file_says_so_once(tmp_path, caplog):
    from durableflow import DatabaseReadOnly
    path = tmp_path / "ro.db"
    Engine(path).close()
    engine = Engine(f"file:{path}?mode=ro")
    worker = engine.worker(concurrency=1)
    with pytest.raises(DatabaseReadOnly):
        worker.start()
    worker.stop()
    engine.close()
    assert not [r for r in caplog.records if "could not record its stop" in r.getMessage()]


@pytest.mark.parametrize("call, message", [
    (lambda e, rid: e.wait(rid, timeout="x"), "timeout: not a duration"),
    (lambda e, rid: e.pause(rid, for_seconds=-5), "for_seconds: not a duration"),
    (lambda e, rid: e.pause(rid, for_seconds=0.0001 * 0), "for_seconds: must be more than zero"),
    (lambda e, rid: e.start(TWO_STEP, inputs=[1, 2]), "run inputs must be an object"),
    (lambda e, rid: e.start(TWO_STEP, inputs={"n": 1}, idempotency_key=5), "idempotency_key must be text"),
    (lambda e, rid: e.runs(status="bogus"), "status must be one of"),
    (lambda e, rid: list(e.events(rid, after="x")), "after must be an event sequence number"),
    (lambda e, rid: e.subscribe(5), "subscribe needs a callable"),
])
def test_api_arguments_of_the_wrong_kind_are_validation_errors(engine, call, message):
    run_id = engine.start(TWO_STEP, inputs={"n": 1})
    before = [r["run_id"] for r in engine.runs()]
    with pytest.raises(ValidationError, match=message) as exc:
        call(engine, run_id)
    assert "\n" not in str(exc.value)
    assert [r["run_id"] for r in engine.runs()] == before


@pytest.mark.parametrize("kwargs, message", [
    ({"lease_seconds": 0}, "lease_seconds: must be more than zero"),
    ({"lease_seconds": "x"}, "lease_seconds: not a duration"),
    ({"max_deliveries": 0}, "max_deliveries must be a whole number"),
    ({"max_output_bytes": -5}, "max_output_bytes must be a whole number of bytes"),
    ({"max_output_bytes": 1.5}, "max_output_bytes must be a whole number of bytes"),
    ({"max_nesting": 0}, "max_nesting must be a whole number of at least 1, not 0"),
    ({"max_nesting": "3"}, "max_nesting must be a whole number of at least 1, not '3'"),
    ({"max_nesting": True}, "max_nesting must be a whole number of at least 1, not True"),
])
def test_engine_settings_of_the_wrong_kind_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        Engine(tmp_path / "x.db", **kwargs)
    with pytest.raises(ValidationError, match="database path must be a str"):
        Engine(5)


def test_execute_with_a_bad_concurrency_stores_no_run(engine):
    with pytest.raises(ValidationError, match="concurrency"):
        engine.execute(TWO_STEP, {"n": 1}, concurrency=0)
    assert engine.runs() == []


def test_a_worker_runs_once(engine):
    worker = engine.worker(concurrency=1)
    with worker:
        pass
    with pytest.raises(DurableflowError, match="already started; a worker runs once"):
        worker.start()
    twice = engine.worker(concurrency=1).start()
    try:
        with pytest.raises(DurableflowError, match="already started"):
            twice.start()
    finally:
        twice.stop()


EXIT_WITH_WORKER_RUNNING = """
import sys, time
from durableflow import Engine
e = Engine(sys.argv[1])
e.register({"workflowId": "one", "nodes": [{"nodeId": "a", "runtimeType": "Python",
            "script": "import time\\ntime.sleep(0.01)\\noutput = 1"}]})
first = [e.start("one") for _ in range(300)][0]
w = e.worker(concurrency=2).start()
deadline = time.monotonic() + 30
while e.get_run(first).status != "completed":   # busy, then the interpreter exits: no stop()
    assert time.monotonic() < deadline
    time.sleep(0.01)
"""


def test_an_interpreter_that_exits_with_a_worker_running_leaves_nothing_stranded(tmp_path):
    import subprocess
    import sys
    db = tmp_path / "exit.db"
    script = tmp_path / "exit_with_worker.py"
    script.write_text(EXIT_WITH_WORKER_RUNNING)
    done = subprocess.run([sys.executable, str(script), str(db)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert "crashed" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    with Engine(db) as engine:
        counts = engine.store.queue_counts()
        assert counts["leased"] == 0 and counts["ready"] + counts["acked"] == 300


def test_a_body_handed_to_the_pool_while_stop_without_wait_runs_is_given_back(engine, monkeypatch):
    """stop(wait=False) gives back bodies queued for a thread. One the dispatcher claimed as it was
    told to stop reaches the pool after that sweep; the pool's shutdown would cancel it unnoticed,
    its message leased until the lease expires."""
    engine.register(wf("queued", py("a", "output = 1")))
    run_id = engine.start("queued")
    worker = engine.worker(concurrency=1)
    service = worker.service
    real_claim = service.claim_and_run
    let_go, in_hand = threading.Event(), threading.Event()

    def claim_as_stop_begins(*args, **kwargs):
        tasks, ran = real_claim(*args, **kwargs)
        if tasks and not in_hand.is_set():
            # The pool's one thread is busy: what the dispatcher hands it now waits in its queue.
            worker._pool.submit(let_go.wait, 30)
            in_hand.set()
            wait_until(worker._stopping.is_set, what="stop() to begin")
        return tasks, ran

    monkeypatch.setattr(service, "claim_and_run", claim_as_stop_begins)
    worker.start()
    try:
        wait_until(in_hand.is_set, what="the claim of the node")
        worker.stop(wait=False)
    finally:
        let_go.set()
    counts = engine.store.queue_counts()
    assert counts["leased"] == 0 and counts["ready"] == 1, counts
    assert engine.get_run(run_id).status == "running"
