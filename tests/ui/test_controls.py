"""The controls: pause, resume, cancel, rerun (from a node), signal; each asks first and carries
the browser's CSRF token. A worker carries the runs out; the dashboard writes through an Engine."""

from __future__ import annotations

import re

import pytest

from tests.ui.support import edge, noop, py, signal_flow, wait_for, workflow


def gate_waiting(engine, run_id: str) -> bool:
    node = engine.get_run(run_id).node("gate")
    return node is not None and node.status == "waiting"


@pytest.fixture
def waiting_run(engine):
    """A running run whose node `gate` waits for the signal 'go', with a worker on it."""
    run_id = engine.start(signal_flow())
    worker = engine.worker(concurrency=2).start()
    try:
        wait_for(lambda: gate_waiting(engine, run_id), what="gate waiting")
        yield run_id
    finally:
        worker.stop(timeout=30)


def visible_controls(text: str) -> set[str]:
    return set(re.findall(r'<form class="control c-(\w+)"[^>]*data-when="[^"]*">', text))


def test_a_control_asks_first_and_does_nothing_until_confirmed(engine, db, serve, waiting_run):
    _, client = serve(db)
    token = client.csrf(f"/runs/{waiting_run}")
    ask = client.post(f"/runs/{waiting_run}/pause", {"csrf": token})
    assert ask.status == 200 and "Pause run" in ask.text and 'name="confirm" value="yes"' in ask.text
    assert engine.get_run(waiting_run).status == "running"
    # The page that asks carries everything needed to go on.
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', ask.text))
    done = client.post(f"/runs/{waiting_run}/pause", fields)
    assert done.status == 303
    assert engine.get_run(waiting_run).status == "paused"


def test_pause_then_resume(engine, db, serve, waiting_run):
    _, client = serve(db)
    assert visible_controls(client.get(f"/runs/{waiting_run}").text) == {"pause", "cancel", "signal"}
    paused = client.control(waiting_run, "pause")
    assert paused.status == 303 and paused.header("Location") == f"/runs/{waiting_run}?notice=paused"
    assert engine.get_run(waiting_run).status == "paused"
    page = client.get(paused.header("Location")).text
    assert "Run paused." in page and visible_controls(page) == {"resume", "cancel", "signal"}
    assert client.control(waiting_run, "resume").status == 303
    assert engine.get_run(waiting_run).status == "running"


def test_a_signal_with_its_data_completes_the_waiting_node(engine, db, serve, waiting_run):
    _, client = serve(db)
    sent = client.control(waiting_run, "signal", name="go", data='{"by": "ops", "n": 2}')
    assert sent.status == 303
    run = engine.wait(waiting_run, timeout=30)
    assert run.status == "completed"
    assert run.node("gate").output == {"by": "ops", "n": 2}


def test_cancel_keeps_who_stopped_it(engine, db, serve, waiting_run):
    _, client = serve(db)
    assert client.control(waiting_run, "cancel").status == 303
    run = engine.get_run(waiting_run)
    assert run.status == "cancelled" and "dashboard" in run.error


def test_rerun_from_a_node_starts_a_new_run_and_goes_to_it(engine, db, serve):
    first = engine.execute(workflow("short", noop("a"), py("b", "output = 1"), connections=[edge("a", "b")]),
                           timeout=60)
    assert first.status == "completed"
    _, client = serve(db)
    assert visible_controls(client.get(f"/runs/{first.run_id}").text) == {"rerun"}
    again = client.control(first.run_id, "rerun", **{"from": "b"})
    assert again.status == 303
    new_id = re.fullmatch(r"/runs/([0-9a-f]{32})\?notice=rerun", again.header("Location")).group(1)
    assert engine.get_run(new_id).rerun_of == {"run_id": first.run_id, "from": "b", "fresh": False}
    fresh = client.control(first.run_id, "rerun", **{"from": "*fresh"})
    fresh_id = fresh.header("Location").split("/")[2].split("?")[0]
    assert engine.get_run(fresh_id).rerun_of["fresh"] is True
    page = client.get(again.header("Location")).text
    assert "Rerun started" in page and first.run_id in page


@pytest.mark.parametrize("action, fields, status, says", [
    ("signal", {"name": "go", "data": "{not json"}, 400, "data is not JSON"),
    ("signal", {"name": " "}, 400, "give the signal"),
    ("rerun", {"from": "b"}, 400, "wait for it to finish"),
    ("rerun", {"from": "nope"}, 400, "no node"),
])
def test_a_control_that_cannot_be_done_says_why(engine, db, serve, waiting_run, action, fields, status, says):
    _, client = serve(db)
    reply = client.control(waiting_run, action, **fields)
    assert reply.status == status, reply.text
    assert says in reply.text
    assert engine.get_run(waiting_run).status == "running"


def test_pausing_a_finished_run_is_a_conflict(engine, db, serve):
    done = engine.execute(workflow("short", noop("a")), timeout=60)
    _, client = serve(db)
    token = client.csrf(f"/runs/{engine.start(signal_flow())}")    # any page with controls has it
    reply = client.post(f"/runs/{done.run_id}/pause", {"csrf": token, "confirm": "yes"})
    assert reply.status == 409 and "cannot pause a run that is completed" in reply.text
    assert engine.get_run(done.run_id).status == "completed"


def test_the_writer_is_opened_only_by_the_first_control(engine, db, serve, waiting_run):
    server, client = serve(db)
    client.get(f"/runs/{waiting_run}")
    assert server.dash._writer is None
    client.control(waiting_run, "pause")
    assert server.dash._writer is not None
