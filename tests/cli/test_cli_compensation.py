"""cancel --compensate from the command line: the run undoes what it completed, then is
cancelled; a plain cancel undoes nothing."""

from __future__ import annotations

from durableflow import Engine
from tests.cli.cli_helpers import edge, noop, py, workflow

UNDO = "output = 'undid ' + ctx.input['nodeId']"


def flow() -> dict:
    return workflow("booking", py("book", "output = {'seat': '12A'}", compensationNodeId="unbook"),
                    {"nodeId": "confirm", "runtimeType": "WaitForSignal", "signal": "paid"},
                    py("unbook", UNDO), noop("done"),
                    connections=[edge("book", "confirm"), edge("confirm", "done")])


def test_cancel_compensate_undoes_what_the_run_did(invoke, write, db):
    path = write(flow(), "booking.yaml")
    undone, plain = invoke("start", path).stdout.strip(), invoke("start", path).stdout.strip()
    assert invoke("worker", "--until-idle", "--max-wait", "1s").exit_code == 0   # both wait for "paid"
    result = invoke("cancel", undone, "--compensate")
    assert (result.exit_code, result.stdout.strip()) == (
        0, f"run {undone} compensating: it is cancelled once its compensations have run")
    assert invoke("cancel", plain).stdout.strip() == f"run {plain} cancelled"
    assert invoke("worker", "--until-idle", "--max-wait", "1s").exit_code == 0
    with Engine(db) as engine:
        run, other = engine.get_run(undone), engine.get_run(plain)
    assert run.status == "cancelled"
    assert [(n.node_id, n.status, n.output, n.compensates) for n in run.nodes if n.node_id == "unbook"] == [
        ("unbook", "completed", "undid book", "book")]
    assert other.status == "cancelled" and other.node("unbook") is None
    assert "unbook (undoes book)" in invoke("status", undone).stdout
    shown = invoke("history", undone).stdout
    assert "run.compensating" in shown and "run.cancelled" in shown
