"""Resources: a node's `resources: {cpu, memoryMb}` against what each worker offers. A worker
claims only what fits in what it has free; a node asking more than every live worker has fails
at once, naming both; a run started before any worker is up waits for one."""

from __future__ import annotations

import os

import pytest
from df_it_support import py, wait_until, wf

from durableflow.errors import ValidationError
from tests.limits.conftest import HOLD


def test_a_node_asking_more_than_any_live_worker_fails_fast(engine, hooks, sql):
    defn = wf("huge", py("crunch", "output = 1", resources={"cpu": 64, "memoryMb": 512},
                         retry={"strategy": "fixed", "maxAttempts": 3, "initialDelay": 0}))
    run_id = engine.start(defn)
    with engine.worker(concurrency=2, resources={"cpu": 2, "memoryMb": 4096}):
        run = engine.wait(run_id, timeout=15)
    assert run.status == "failed"
    node = run.node("crunch")
    assert node.error_type == "ResourcesUnavailable"
    assert node.error == ("node 'crunch' needs cpu 64, memory 512 MB, more than any live worker offers "
                          "(the most: cpu 2, memory 4096 MB); give a worker more (worker --cpu N --memory SIZE)")
    # Not retried: no attempt could ever fit.
    assert sql.one("SELECT count(*) FROM node_instances WHERE run_id = ?", run_id) == 1


def test_a_worker_runs_only_what_fits_in_what_it_has_free(engine, hooks, sql, clock):
    defn = wf("fits", py("call", HOLD, resources={"cpu": 1}))
    ids = [engine.start(defn) for _ in range(3)]
    with engine.worker(concurrency=4, resources={"cpu": 2, "memoryMb": 1024}) as worker:
        wait_until(lambda: len(hooks.calls["started"]) == 2, what="two bodies to start")
        reason = wait_until(lambda: sql.one("SELECT waiting_reason FROM node_instances WHERE run_id = ? "
                                            "AND status = 'waiting'", ids[2]), what="the third to wait")
        assert reason == "needs cpu 1; this worker has cpu 0 and 1024 MB free"
        hooks.event("release:" + ids[0]).set()
        assert engine.wait(ids[0], timeout=15).status == "completed"
        # The run is recorded a moment before its body's thread hands its cpu back: a claim in
        # between would find the third due and still no room, and park it again on this frozen
        # clock.
        wait_until(lambda: worker.busy == 1, what="the first body's cpu to come back")
        clock.advance(1)               # it is offered again a second after it was turned away
        wait_until(lambda: len(hooks.calls["started"]) == 3, what="the third to start")
        for run_id in ids[1:]:
            hooks.event("release:" + run_id).set()
        assert all(engine.wait(r, timeout=15).status == "completed" for r in ids)
    assert hooks.peaks["inside"] == 2


def test_a_run_started_before_any_worker_waits_for_one(engine, sql):
    defn = wf("early", py("crunch", "output = 'done'", resources={"cpu": 4, "memoryMb": 2048}))
    run_id = engine.start(defn)
    assert engine.get_run(run_id).status in ("pending", "running")
    assert sql.one("SELECT count(*) FROM workers") == 0
    with engine.worker(concurrency=1, resources={"cpu": 4, "memoryMb": 8192}):
        run = engine.wait(run_id, timeout=15)
    assert run.status == "completed" and run.outputs == {"crunch": "done"}


def test_a_worker_that_declares_nothing_offers_the_machine(engine, sql):
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    with engine.worker(concurrency=1) as w:
        assert w.capacity == (float(os.cpu_count()), memory)
        row = sql.one("SELECT cpu, memory_mb FROM workers WHERE worker_id = ?", w.worker_id)
    assert row == (float(os.cpu_count()), memory)
    with engine.worker(concurrency=1, resources={"cpu": 0.5}) as w:
        assert w.capacity == (0.5, memory)


@pytest.mark.parametrize("resources, message", [
    ({"cpu": 0}, "worker resources: cpu must be a number above 0, not 0"),
    ({"memoryMb": "8G"}, "worker resources: memoryMb must be a number above 0, not '8G'"),
    ({"gpu": 1}, "worker resources: unknown key 'gpu' (keys: cpu, memoryMb)"),
])
def test_a_worker_refuses_resources_it_cannot_offer(engine, resources, message):
    with pytest.raises(ValidationError) as caught:
        engine.worker(concurrency=1, resources=resources)
    assert str(caught.value) == message
