"""Defects found by an independent review and a new user's trial (issue 11), engine level."""

from __future__ import annotations

import sqlite3

import pytest

from durableflow import Engine, ValidationError


def big_json_shell(node_id: str = "big", **extra) -> dict:
    # 2.2 MB of valid JSON on stdout: over the 1 MiB default cap.
    script = "import json, sys; json.dump({'rows': ['x' * 100] * 21000}, sys.stdout)"
    return {"nodeId": node_id, "runtimeType": "Shell", "command": ["python3", "-c", script],
            "outputFormat": "json", **extra}


def test_engine_max_stream_bytes_reaches_shell_nodes(tmp_path):
    """Point 17: the cap is settable per engine, and the node's key still wins."""
    wf = {"workflowId": "big", "nodes": [big_json_shell()]}
    with Engine(tmp_path / "a.db") as engine:
        run = engine.execute(wf, timeout=60)
        assert run.status == "failed" and "maxStreamBytes" in run.error
    with Engine(tmp_path / "b.db", max_stream_bytes=4 * 1024 * 1024) as engine:
        run = engine.execute(wf, timeout=60)
        assert run.status == "completed", run.error
        assert len(run.outputs["big"]["rows"]) == 21000
    small = {"workflowId": "big", "nodes": [big_json_shell(maxStreamBytes=1024)]}
    with Engine(tmp_path / "c.db", max_stream_bytes=4 * 1024 * 1024) as engine:
        assert engine.execute(small, timeout=60).status == "failed"


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "1MB"])
def test_engine_refuses_a_bad_max_stream_bytes(tmp_path, value):
    with pytest.raises(ValidationError, match="max_stream_bytes"):
        Engine(tmp_path / "x.db", max_stream_bytes=value)


def test_run_inputs_and_outputs_are_stored_as_utf8(tmp_path):
    """Point 18: sqlite3 shows accents and emoji, in runs, node rows and events alike."""
    wf = {"workflowId": "utf8", "nodes": [
        {"nodeId": "echo", "runtimeType": "Python", "script": "output = {'name': ctx.input['name'] + ' 🎉'}"}]}
    with Engine(tmp_path / "u.db") as engine:
        run = engine.execute(wf, {"name": "Zoë"}, timeout=60)
        assert run.outputs == {"echo": {"name": "Zoë 🎉"}}
    conn = sqlite3.connect(tmp_path / "u.db")
    inputs, outputs = conn.execute("SELECT inputs, outputs FROM runs").fetchone()
    node_input = conn.execute("SELECT input FROM node_instances WHERE node_id = 'echo'").fetchone()[0]
    conn.close()
    assert "Zoë" in inputs and "\\u" not in inputs
    assert "Zoë 🎉" in outputs and "\\u" not in outputs
    assert "Zoë" in node_input


def test_a_lone_surrogate_in_run_inputs_is_stored_escaped(tmp_path):
    """UTF-8 cannot hold a lone surrogate: such a value keeps its JSON escapes, and the run works."""
    wf = {"workflowId": "s", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}]}
    with Engine(tmp_path / "s.db") as engine:
        run = engine.execute(wf, {"odd": "a\ud800b"}, timeout=60)
        assert run.status == "completed"
        assert run.inputs == {"odd": "a\ud800b"}


def test_a_loop_body_registered_by_a_rolled_back_transaction_is_not_cached(tmp_path):
    """Point 1: a ForEach whose recording rolls back (its lease was taken over) registered its
    inline body in that transaction; a different body that later takes the same version must run
    its own code in this process, not the rolled-back one's."""
    from durableflow.builtins import Loop
    from durableflow.clock import ManualClock
    from durableflow.errors import StaleLease
    from durableflow.tasks import Outcome

    def loop_wf(value: str) -> dict:
        return {"workflowId": "wf", "nodes": [
            {"nodeId": "loop", "runtimeType": "ForEach", "items": "[1]",
             "body": {"nodes": [{"nodeId": "b", "runtimeType": "Python", "script": f"output = {value!r}"}]}}]}

    clock = ManualClock(1_800_000_000.0)
    engine = Engine(tmp_path / "p.db", clock=clock, lease_seconds=5)
    run_id = engine.start(loop_wf("old"))
    (task,) = engine.service.claim("slow-worker", 1, 5.0)
    clock.advance(6)
    engine.service.upkeep.reclaim()                 # the lease is taken back
    with pytest.raises(StaleLease):
        engine.service.record(task, Outcome(False, subflow=Loop([1])))
    engine.cancel(run_id)
    clock.advance(1)
    run = engine.execute(loop_wf("new"), timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"loop": [{"b": "new"}]}
    engine.close()


def test_an_each_join_behind_another_is_skipped_once(tmp_path):
    """Point 7: `each` node e1 runs twice (a and b both deliver); its connection to `each` node
    e2 is ruled out both times. e2, and everything only it feeds, is skipped once, not twice."""
    wf = {"workflowId": "each2", "nodes": [
        {"nodeId": "a", "runtimeType": "Noop"}, {"nodeId": "b", "runtimeType": "Noop"},
        {"nodeId": "e1", "runtimeType": "Noop", "joinMode": "each"},
        {"nodeId": "e2", "runtimeType": "Noop", "joinMode": "each"},
        {"nodeId": "f", "runtimeType": "Noop"}],
        "connections": [
            {"sourceNodeId": "a", "targetNodeId": "e1"}, {"sourceNodeId": "b", "targetNodeId": "e1"},
            {"sourceNodeId": "e1", "targetNodeId": "e2", "condition": "output == 'never'"},
            {"sourceNodeId": "e2", "targetNodeId": "f"}]}
    with Engine(tmp_path / "e.db") as engine:
        run = engine.execute(wf, timeout=60)
        assert run.status == "completed", run.error
        assert [n.iteration for n in run.nodes if n.node_id == "e1" and n.status == "completed"] == [0, 1]
        assert [(n.node_id, n.status) for n in run.nodes if n.node_id in ("e2", "f")] == [
            ("e2", "skipped"), ("f", "skipped")]


def test_two_inputs_under_one_key_of_an_all_join_are_refused(tmp_path):
    """Point 7: an `all` join keeps one input per targetPort (or source node): two connections
    that can both deliver under one key are refused at validation, naming node and field."""
    def wf(connections, join="all"):
        return {"workflowId": "keys", "nodes": [
            {"nodeId": "a", "runtimeType": "Noop"}, {"nodeId": "b", "runtimeType": "Noop"},
            {"nodeId": "check", "runtimeType": "IfElse", "condition": "input == 1"},
            {"nodeId": "j", "runtimeType": "Noop", "joinMode": join}],
            "connections": [{"sourceNodeId": "a", "targetNodeId": "check"}, *connections]}
    shared = [{"sourceNodeId": "a", "targetNodeId": "j", "targetPort": "x"},
              {"sourceNodeId": "b", "targetNodeId": "j", "targetPort": "x"}]
    with pytest.raises(ValidationError) as err:
        Engine(tmp_path / "k.db").register(wf(shared))
    (line,) = err.value.errors
    assert "connections[2] b->j: field 'targetPort'" in line and "under 'x'" in line, line
    same_source = [{"sourceNodeId": "a", "targetNodeId": "j", "condition": "output == 1"},
                   {"sourceNodeId": "a", "targetNodeId": "j", "condition": "output == 2"},
                   {"sourceNodeId": "b", "targetNodeId": "j"}]
    with pytest.raises(ValidationError, match="two inputs under 'a'"):
        Engine(tmp_path / "k2.db").register(wf(same_source))
    # Allowed: exclusive ports of one IfElse under one key, and any/each joins.
    exclusive = [{"sourceNodeId": "check", "sourcePort": "true", "targetNodeId": "j", "targetPort": "x"},
                 {"sourceNodeId": "check", "sourcePort": "false", "targetNodeId": "j", "targetPort": "x"},
                 {"sourceNodeId": "b", "targetNodeId": "j", "targetPort": "y"}]
    with Engine(tmp_path / "ok.db") as engine:
        engine.register(wf(exclusive))
        engine.register(wf(shared, join="any"))
        run = engine.execute(wf(exclusive), timeout=60)
        assert run.status == "completed", run.error


def test_a_costly_connection_condition_fails_the_run_instead_of_holding_the_lock(tmp_path):
    """Point 10: connection conditions run inside the transaction that records their source,
    holding the write lock; one that would work for seconds gives up and fails the run."""
    wf = {"workflowId": "costly", "nodes": [
        {"nodeId": "a", "runtimeType": "Python", "script": "output = list(range(6000))"},
        {"nodeId": "b", "runtimeType": "Noop"}],
        "connections": [{"sourceNodeId": "a", "targetNodeId": "b",
                         "condition": "len(str([str(output) for x in output])) > 0"}]}
    with Engine(tmp_path / "c.db") as engine:
        run = engine.execute(wf, timeout=60)
    assert run.status == "failed"
    assert "condition" in run.error and "gave up after 0.25s of work" in run.error, run.error


def test_no_progress_is_recorded_after_the_run_ended(tmp_path):
    """Point 21: a body that reports progress after its run was cancelled writes no node.progress
    event after run.cancelled."""
    wf = {"workflowId": "p", "nodes": [{"nodeId": "a", "runtimeType": "Python", "script": "output = 1"}]}
    with Engine(tmp_path / "p.db") as engine:
        run_id = engine.start(wf)
        (task,) = engine.service.claim("w", 1, 30.0)
        engine.service.progress(task, 10.0, "working")
        engine.cancel(run_id)
        engine.service.progress(task, 100.0, "still working")
        types = [e["type"] for e in engine.events(run_id)]
    assert types.count("node.progress") == 1
    assert types.index("node.progress") < types.index("run.cancelled")


def _foreach(width: int) -> dict:
    return {"workflowId": f"each{width}", "nodes": [
        {"nodeId": "make", "runtimeType": "Python", "script": f"output = list(range({width}))"},
        {"nodeId": "loop", "runtimeType": "ForEach", "items": "input", "maxParallelism": 4,
         "body": {"nodes": [{"nodeId": "b", "runtimeType": "Noop"}]}}],
        "connections": [{"sourceNodeId": "make", "targetNodeId": "loop"}]}


def _bytes_written(engine: Engine, wf: dict) -> tuple[int, object]:
    """What the run's write statements carried (bound values included), as SQLite saw them."""
    seen = []
    engine.store._writer.set_trace_callback(
        lambda sql: seen.append(len(sql)) if sql.lstrip().upper().startswith(("INSERT", "UPDATE")) else None)
    try:
        run = engine.execute(wf, timeout=120, concurrency=4)
    finally:
        engine.store._writer.set_trace_callback(None)
    return sum(seen), run


def test_a_foreach_writes_in_proportion_to_its_items(tmp_path):
    """Point 12: a ForEach kept its items and outputs in one payload rewritten at every wake-up:
    bytes written grew with the square of the items. Four times the items must cost about four
    times the bytes, not sixteen."""
    with Engine(tmp_path / "l.db") as engine:
        small, run_small = _bytes_written(engine, _foreach(150))
        big, run_big = _bytes_written(engine, _foreach(600))
    assert run_small.status == run_big.status == "completed"
    assert run_big.outputs == {"loop": [{"b": {"item": i, "index": i}} for i in range(600)]}
    assert big / small < 6, (small, big)


def test_a_foreach_left_mid_way_by_an_older_version_finishes(tmp_path):
    """A ForEach whose state an older durableflow kept in its message (items and outputs
    included) goes on where it was after an upgrade: the items done keep their results."""
    import json
    wf = {"workflowId": "legacy", "nodes": [
        {"nodeId": "loop", "runtimeType": "ForEach", "items": "[10, 20, 30, 40]", "maxParallelism": 2,
         "body": {"nodes": [{"nodeId": "b", "runtimeType": "Python", "script": "output = ctx.input['item'] + 1"}]}}]}
    with Engine(tmp_path / "legacy.db") as engine:
        run_id = engine.start(wf)
        version = engine.register({**wf["nodes"][0]["body"], "workflowId": "legacy.loop"})[1]
        old_state = {"workflow": ["legacy.loop", version], "open": [], "next": 2, "last": None,
                     "deadline": None, "items": [10, 20, 30, 40], "outputs": [{"b": "kept"}, {"b": 21}, None, None]}
        conn = sqlite3.connect(engine.path)
        with conn:
            conn.execute("UPDATE messages SET payload = json_set(payload, '$.loop', json(?)) WHERE run_id = ?",
                         (json.dumps(old_state), run_id))
        conn.close()
        with engine.worker(concurrency=2):
            run = engine.wait(run_id, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"loop": [{"b": "kept"}, {"b": 21}, {"b": 31}, {"b": 41}]}
