"""A workflow written in Python and the same workflow written in YAML are one definition, and
run the same: equal definitions, and equal histories (node statuses and outputs in node_history
order) when the engine runs each."""

from __future__ import annotations

import importlib

import pytest

from durableflow.definitions import definition_checksum, load_definition, to_dict
from tests.authoring import flows
from tests.authoring.conftest import FIXTURES, history


def etl_workflow():
    return importlib.import_module("etl").build()


@pytest.mark.parametrize("build, yaml_name", [
    (lambda: flows.pipeline, "pipeline.yaml"),
    (etl_workflow, "orders-etl.yaml"),
], ids=["decorators", "builder"])
def test_python_and_yaml_compile_to_one_definition(build, yaml_name, example_path):
    built = build().to_definition()
    written = load_definition(FIXTURES / yaml_name)
    assert built == written
    assert definition_checksum(built) == definition_checksum(written)
    assert to_dict(built) == to_dict(written)


def test_the_decorated_workflow_runs_as_its_yaml_twin(engines):
    python_engine, yaml_engine = engines("python"), engines("yaml")
    from_python = python_engine.execute(flows.pipeline, {"rows": 3}, concurrency=1, timeout=60)
    from_yaml = yaml_engine.execute(FIXTURES / "pipeline.yaml", {"rows": 3}, concurrency=1,
                                    timeout=60)
    python_history = history(python_engine, from_python)
    assert python_history == history(yaml_engine, from_yaml)
    # ... and that history is what the workflow says: a retry, a join by name, a handled
    # failure, a loop over items
    assert from_python.status == "completed", from_python.error
    attempts = [row[:4] for row in python_history["node_history"]]
    assert ("load", 0, 1, "failed") in attempts and ("load", 0, 2, "completed") in attempts
    assert from_python.outputs["summarize"] == {"raw": 3, "cleaned": 2}
    assert from_python.outputs["handle"] == {"handled": "shout", "type": "ValueError"}
    assert from_python.outputs["scores"] == [{"score": {"score": 10}}, {"score": {"score": 20}},
                                             {"score": {"score": 30}}]


def test_a_condition_not_met_skips_the_same_nodes_in_both(engines):
    python_engine, yaml_engine = engines("python"), engines("yaml")
    # rows 0: `clean` is ruled out by its condition, and what only it feeds is skipped
    from_python = python_engine.execute(flows.pipeline, {"rows": 0}, concurrency=1, timeout=60)
    from_yaml = yaml_engine.execute(FIXTURES / "pipeline.yaml", {"rows": 0}, concurrency=1,
                                    timeout=60)
    python_history = history(python_engine, from_python)
    assert python_history == history(yaml_engine, from_yaml)
    statuses = {row[0]: row[3] for row in python_history["node_history"]}
    assert statuses["clean"] == statuses["big"] == statuses["shout"] == "skipped"


def test_the_builder_example_runs_as_its_yaml_twin(engines, example_path):
    python_engine, yaml_engine = engines("python"), engines("yaml")
    from_python = python_engine.execute(etl_workflow(), {"day": "2026-11-27"}, concurrency=1,
                                        timeout=60)
    from_yaml = yaml_engine.execute(FIXTURES / "orders-etl.yaml", {"day": "2026-11-27"},
                                    concurrency=1, timeout=60)
    python_history = history(python_engine, from_python)
    assert python_history == history(yaml_engine, from_yaml)
    assert from_python.status == "completed", from_python.error
    assert from_python.outputs["report"] == {"day": "2026-11-27", "orders": 3,
                                             "scores": {"acme": 16, "initech": 2}}
    statuses = {row[0]: row[3] for row in python_history["node_history"]}
    assert statuses == {"fetch": "completed", "parse": "completed", "any_orders": "completed",
                        "score_each": "completed", "report": "completed",
                        "nothing_to_do": "skipped", "alert": "skipped"}


def test_register_start_and_execute_take_a_workflow_built_in_python(engines):
    engine = engines("api")
    assert engine.register(flows.pipeline) == ("pipeline", 1)
    assert engine.register(flows.pipeline) == ("pipeline", 1)     # same content, same version
    assert engine.definition("pipeline") == load_definition(FIXTURES / "pipeline.yaml")
    run_id = engine.start(flows.pipeline, {"rows": 2}, idempotency_key="once")
    assert engine.start(flows.pipeline, {"rows": 2}, idempotency_key="once") == run_id
    with engine.worker(concurrency=2):
        run = engine.wait(run_id, timeout=60)
    assert run.status == "completed", run.error
    assert (run.workflow_id, run.workflow_version) == ("pipeline", 1)
    assert engine.execute(flows.pipeline, {"rows": 2}, timeout=60).workflow_version == 1


def test_a_yaml_file_and_the_builder_share_one_stored_version(engines):
    engine = engines("shared")
    assert engine.register(FIXTURES / "pipeline.yaml") == ("pipeline", 1)
    assert engine.register(flows.pipeline) == ("pipeline", 1)
