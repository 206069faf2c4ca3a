"""emit(): one run per listening workflow, the payload as inputs, all or none, deduplicated."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from durableflow import Engine, ValidationError


def listener(workflow_id: str, event: str = "order.created", schema: dict | None = None) -> dict:
    wf = {"workflowId": workflow_id, "nodes": [
        {"nodeId": "on_order", "runtimeType": "Event", "event": event},
        {"nodeId": "handle", "runtimeType": "Python", "script": "output = ctx.input['id']"}],
        "connections": [{"sourceNodeId": "on_order", "targetNodeId": "handle"}]}
    if schema:
        wf["inputsSchema"] = schema
    return wf


ID_SCHEMA = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}


def test_emit_starts_a_run_of_each_listening_workflow(tmp_path):
    with Engine(tmp_path / "e.db") as engine:
        engine.register(listener("billing"))
        engine.register(listener("shipping"))
        engine.register(listener("audit", event="order.cancelled"))
        started = engine.emit("order.created", {"id": 7})
        assert len(started) == 2
        with engine.worker(concurrency=2):
            runs = [engine.wait(r, timeout=30) for r in started]
        assert sorted(r.workflow_id for r in runs) == ["billing", "shipping"]
        assert all(r.status == "completed" and r.outputs == {"handle": 7} for r in runs)
        assert engine.emit("nobody.cares", {}) == [] and engine.listeners("nobody.cares") == []


def test_a_payload_one_workflow_refuses_starts_no_run_at_all(tmp_path):
    with Engine(tmp_path / "e.db") as engine:
        engine.register(listener("loose"))
        engine.register(listener("strict", schema=ID_SCHEMA))
        with pytest.raises(ValidationError) as err:
            engine.emit("order.created", {"id": "seven"})
        assert err.value.errors == ["workflow 'strict': inputs.id: 'seven' is not of type 'integer'"]
        assert engine.runs() == []


def test_a_dedupe_key_starts_one_run_per_workflow_and_key(tmp_path):
    with Engine(tmp_path / "e.db") as engine:
        engine.register(listener("billing"))
        first = engine.emit("order.created", {"id": 1}, dedupe_key="order-1")
        assert engine.emit("order.created", {"id": 1}, dedupe_key="order-1") == []
        engine.register(listener("shipping"))        # a new listener: its first run for the key
        second = engine.emit("order.created", {"id": 1}, dedupe_key="order-1")
        assert len(first) == len(second) == 1 and first != second
        assert engine.prune("1s") == 0


def test_a_manual_start_checks_the_inputs_and_names_the_field(tmp_path):
    with Engine(tmp_path / "m.db") as engine:
        wf = {"workflowId": "daily", "inputsSchema": {
            "type": "object", "properties": {"day": {"type": "string", "pattern": "^[0-9-]+$"}}},
            "nodes": [{"nodeId": "go", "runtimeType": "Manual"}]}
        with pytest.raises(ValidationError) as err:
            engine.start(wf, {"day": "tomorrow"})
        assert err.value.errors == ["inputs.day: 'tomorrow' does not match '^[0-9-]+$'"]


def test_emit_from_the_command_line(tmp_path):
    db = tmp_path / "cli.db"
    with Engine(db) as engine:
        engine.register(listener("billing", schema=ID_SCHEMA))

    def emit(*args):
        return subprocess.run([sys.executable, "-m", "durableflow", "--db", str(db), "emit", *args],
                              capture_output=True, text=True, timeout=60)

    ok = emit("order.created", "--data", '{"id": 3}', "--json")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)) == 1
    bad = emit("order.created", "--data", '{"id": "x"}')
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "durableflow: error: workflow 'billing': inputs.id: 'x' is not of type 'integer'")
    nobody = emit("nothing.happened")
    assert nobody.returncode == 0 and "no workflow listens for event 'nothing.happened'" in nobody.stderr
