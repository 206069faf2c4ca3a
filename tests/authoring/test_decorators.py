"""@node makes a function a callable node; @workflow traces a function once into a Workflow,
where calling @node functions with each other's NodeRefs draws the connections."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from durableflow import Engine, NodeContext, NodeFunction, Retry, Workflow, node, workflow
from durableflow.errors import ValidationError
from tests.authoring import flows


def connections(wf: Workflow) -> list[tuple]:
    return [(c["sourceNodeId"], c["targetNodeId"], c["triggerMessageType"], c.get("condition"),
             c.get("sourcePort"), c.get("targetPort")) for c in wf.to_dict().get("connections", [])]


def test_a_node_function_is_the_plain_function_when_called_with_a_context():
    ctx = NodeContext(run_id="r", node_id="clean", attempt=1, input={"rows": 5})
    assert flows.clean(ctx) == {"rows": 4}
    assert isinstance(flows.clean, NodeFunction) and flows.clean.__wrapped__.__name__ == "clean"
    assert flows.clean.__doc__ == flows.clean.fn.__doc__
    assert flows.load.node_options == {"retry": Retry.fixed(2, delay="10ms", jitter=0,
                                                            retry_on=[flows.Transient]),
                                       "timeout": "30s"}


def test_its_options_become_the_node_s_and_the_builder_s_own_win():
    wf = Workflow("options")
    wf.python("load", flows.load)
    wf.python("faster", flows.load, timeout=timedelta(seconds=5), priority="low")
    load, faster = wf.to_definition().nodes
    assert (load.callable, load.timeout, load.retry.max_attempts) == (
        "tests.authoring.flows:load", 30.0, 2)
    assert (faster.callable, faster.timeout, faster.retry.max_attempts, faster.priority) == (
        "tests.authoring.flows:load", 5.0, 2, "low")


def test_named_and_with_options_make_another_node_of_the_same_function():
    again = flows.clean.named("clean_again").with_options(timeout="1s", retry=Retry.none())
    assert again.node_id == "clean_again" and again.fn is flows.clean.fn

    @workflow
    def twice(wf: Workflow) -> None:
        again(flows.clean())

    first, second = twice.to_definition().nodes
    assert (first.node_id, second.node_id) == ("clean", "clean_again")
    assert first.callable == second.callable == "tests.authoring.flows:clean"
    assert (second.timeout, second.retry.strategy) == (1.0, "none")


def test_the_body_runs_once_and_records_what_its_calls_say():
    traced = []

    @workflow(workflow_id="shapes", timeout="1m", retry_budget=2)
    def shapes(wf: Workflow) -> None:
        traced.append(wf)
        raw = flows.load()                                   # an entry node
        cleaned = flows.clean(raw.when("output.rows > 0"))   # a connection with a condition
        flows.summarize(raw=raw, cleaned=cleaned)            # a join under two names
        big = cleaned >> wf.if_else("big", "input.rows > 1")
        shouted = flows.shout(big.on("true"))                # a port
        flows.handle(shouted.on_fail, big.on("false"))       # a Fail path, and a second input

    assert traced == [shapes] and isinstance(shapes, Workflow)
    defn = shapes.to_definition()
    assert (defn.workflow_id, defn.timeout, defn.retry_budget) == ("shapes", 60.0, 2)
    assert [n.node_id for n in defn.nodes] == ["load", "clean", "summarize", "big", "shout",
                                               "handle"]
    assert connections(shapes) == [
        ("load", "clean", "Complete", "output.rows > 0", None, None),
        ("load", "summarize", "Complete", None, None, "raw"),
        ("clean", "summarize", "Complete", None, None, "cleaned"),
        ("clean", "big", "Complete", None, None, None),
        ("big", "shout", "Complete", None, "true", None),
        ("shout", "handle", "Fail", None, None, None),
        ("big", "handle", "Complete", None, "false", None)]


def test_a_body_without_an_argument_and_a_loop_body_function_work_too():
    @workflow
    def bare() -> None:
        flows.score(flows.load())

    assert connections(bare) == [("load", "score", "Complete", None, None, None)]

    def per_item() -> None:       # a loop body: its @node calls land in the body
        flows.score()

    @workflow
    def looping(wf: Workflow) -> None:
        flows.load() >> wf.for_each("scores", "input.items", per_item)

    assert [n["nodeId"] for n in looping.to_dict()["nodes"]] == ["load", "scores"]
    assert looping.to_dict()["nodes"][1]["body"] == {"nodes": [{
        "nodeId": "score", "runtimeType": "Python", "callable": "tests.authoring.flows:score"}]}


def test_calling_a_node_function_with_a_builder_s_nodes_adds_it_there():
    wf = Workflow("mixed")
    raw = wf.python("raw", flows.load)
    cleaned = flows.clean(raw)
    assert cleaned.node_id == "clean" and wf["clean"] is cleaned
    assert connections(wf) == [("raw", "clean", "Complete", None, None, None)]


def test_the_same_function_twice_needs_another_id():
    with pytest.raises(ValidationError) as caught:
        @workflow
        def doubled(wf: Workflow) -> None:
            flows.clean(flows.clean())
    assert re.search(r"workflow 'doubled': node 'clean': field 'nodeId': duplicate node id "
                     r"\(also declared at .*test_decorators\.py:\d+\); to run the function "
                     r"again, give it another id: clean\.named\('clean_2'\)\(\.\.\.\)",
                     str(caught.value))


@node(retry=Retry.fixed(3, delay="10ms", jitter=0))
def flaky(ctx: NodeContext) -> int:
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt}")
    return ctx.attempt


@workflow
def retried(wf: Workflow) -> None:
    flaky()


def test_a_decorated_function_of_a_test_module_runs_with_its_retry(tmp_path):
    assert retried.to_dict()["nodes"][0]["callable"] == "tests.authoring.test_decorators:flaky"
    with Engine(tmp_path / "r.db") as engine:
        run = engine.execute(retried, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"flaky": 3}
    assert [(n.attempt, n.status) for n in run.nodes] == [(1, "failed"), (2, "failed"),
                                                          (3, "completed")]


def test_a_node_function_runs_in_a_child_process_too(tmp_path):
    wf = Workflow("isolated")
    wf.python("clean", flows.clean, isolation="process")   # the child imports the NodeFunction
    with Engine(tmp_path / "i.db") as engine:
        run = engine.execute(wf, {"rows": 5}, timeout=60)
    assert run.status == "completed", run.error
    assert run.outputs == {"clean": {"rows": 4}}
