"""Review reproductions: routing bugs (rerun --from, dead-letter requeue, maxConcurrency after a
dead letter). Each was a bug found in review; the fix keeps it passing."""

from __future__ import annotations


from durableflow import Engine, ManualClock, WaitTimeout


def py(node_id, script="output = 1", **keys):
    return {"nodeId": node_id, "runtimeType": "Python", "script": script, **keys}


def conn(source, target, on="Complete", **keys):
    return {"sourceNodeId": source, "targetNodeId": target, "triggerMessageType": on, **keys}


def wf(workflow_id, *nodes, connections=(), **top):
    return {"workflowId": workflow_id, "nodes": list(nodes), "connections": list(connections), **top}


def test_rerun_from_runs_a_sibling_branch_the_old_run_never_finished(tmp_path):
    flag = tmp_path / "fixed"
    defn = wf("rerun-sibling",
              py("a"),
              py("b", f"import os\nif not os.path.exists({str(flag)!r}): raise RuntimeError('boom')\noutput = 'b'"),
              py("c", "import time; time.sleep(0.5); output = 'c'"),
              py("d", "output = sorted(ctx.inputs)"),
              connections=[conn("a", "b"), conn("a", "c"), conn("b", "d"), conn("c", "d")])
    with Engine(tmp_path / "x.db") as engine:
        first = engine.execute(defn, timeout=30, concurrency=1)
        assert first.status == "failed"
        assert first.node("c").status == "cancelled"   # b failed the run before c finished
        flag.touch()
        new = engine.rerun(first.run_id, from_node="b")
        with engine.worker(concurrency=2):
            run = engine.wait(new, timeout=15)
        # What the old run would have done without b's failure: c and d run, d is the output.
        assert run.status == "completed"
        assert run.node("c") is not None and run.node("c").status == "completed"
        assert run.node("d") is not None and run.node("d").status == "completed"
        assert run.outputs == {"d": ["b", "c"]}


def test_requeued_dead_letter_does_not_route_a_node_twice(tmp_path):
    clock = ManualClock()
    defn = wf("dl-requeue", py("a", "output = 'a'"), py("b", "output = 'b'"), py("h", "output = 'h'"),
              connections=[conn("a", "b"), conn("a", "h", on="Fail")])
    with Engine(tmp_path / "x.db", clock=clock, max_deliveries=1, lease_seconds=5) as engine:
        run_id = engine.start(defn)
        assert [t.node_id for t in engine.service.claim("ghost-worker", 1, 5)] == ["a"]
        clock.advance(10)                       # the ghost worker died: its lease expires
        (lost,) = engine.service.upkeep.reclaim()
        assert lost.dead                        # max_deliveries=1: dead-lettered at once
        run = engine.get_run(run_id)
        assert run.status == "running"          # a's Fail is handled by h
        assert (run.node("a").status, run.node("b").status) == ("failed", "skipped")
        try:
            engine.requeue_dead_letter(lost.message_id)
        except Exception:
            return                              # refusing is a correct answer too
        with engine.worker(concurrency=2):
            run = engine.wait(run_id, timeout=10)
        per_node = {}
        for n in run.nodes:
            per_node.setdefault(n.node_id, set()).add(n.status)
        # Each node has exactly one final outcome, not both routes.
        assert per_node["b"] in ({"skipped"}, {"completed"}), per_node
        assert per_node["h"] in ({"skipped"}, {"completed"}), per_node


def test_max_concurrency_slot_freed_by_a_dead_lettered_node(tmp_path):
    clock = ManualClock()
    defn = wf("throttle-dead", py("a", "output = 'a'"), py("x", "output = 'x'"),
              py("h", "output = sorted(ctx.inputs)"),
              connections=[conn("a", "h", on="Fail"), conn("x", "h")], maxConcurrency=1)
    with Engine(tmp_path / "x.db", clock=clock, max_deliveries=1, lease_seconds=5) as engine:
        run_id = engine.start(defn)
        # A worker claims both entries: a starts, x is parked by maxConcurrency 1; then it dies.
        assert [t.node_id for t in engine.service.claim("ghost-worker", 2, 5)] == ["a"]
        clock.advance(10)
        (lost,) = engine.service.upkeep.reclaim()
        assert lost.dead
        with engine.worker(concurrency=2):
            try:
                run = engine.wait(run_id, timeout=5)
            except WaitTimeout:
                run = engine.get_run(run_id)
        assert run.status == "completed", [(n.node_id, n.status, n.waiting_reason) for n in run.nodes]
        assert run.outputs == {"h": ["a", "x"]}
