"""Bad input to the builder gets the loader's one-line errors, each with the user's file:line in
front; what only Python can get wrong is refused where it is written, in one line too."""

from __future__ import annotations

import re
import sys

import pytest

from durableflow import Body, Retry, Workflow, node, workflow
from durableflow.definitions import load_definition
from durableflow.errors import DefinitionError, ValidationError
from tests.authoring import flows
from tests.authoring.conftest import line_here


def at(line: int) -> str:
    """The prefix an error about something declared on `line` of this file carries."""
    return rf"(.*/)?test_errors\.py:{line}: "


def errors_of(wf: Workflow) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        wf.to_definition()
    return caught.value.errors


def test_each_problem_names_the_line_that_declared_its_node_connection_or_workflow():
    wf = Workflow("broken", timeout="soon"); workflow_line = line_here()  # noqa: E702
    slow = wf.python("slow", script="output = 1", timeout="whenever"); slow_line = line_here()  # noqa: E702
    check = wf.if_else("check", "input."); check_line = line_here()  # noqa: E702
    slow.when("output.") >> check; arrow_line = line_here()  # noqa: E702
    check.on("maybe") >> wf.noop("after"); port_line = line_here()  # noqa: E702
    found = errors_of(wf)
    expected = [
        (slow_line, "workflow 'broken': node 'slow': field 'timeout': not a duration: 'whenever'"),
        (workflow_line, "workflow 'broken': field 'timeout': not a duration: 'soon'"),
        (check_line, "workflow 'broken': node 'check': field 'condition': invalid expression"),
        (arrow_line, "workflow 'broken': connections[0] slow->check: field 'condition': invalid "
                     "expression"),
        (port_line, "workflow 'broken': connections[1] check->after: field 'sourcePort': unknown "
                    "port 'maybe' on node 'check' (ports: true, false)"),
    ]
    assert len(found) == len(expected), found
    for (line, text), error in zip(expected, found):
        assert re.match(at(line) + re.escape(text), error), error


def test_the_messages_are_the_ones_the_same_yaml_gets():
    wf = Workflow("twin")
    wf.python("a", script="output = 1", timeout="whenever",
              retry=Retry.fixed(3, delay="2s", max_delay="1s")) >> wf.if_else("b", "input.")
    yaml_twin = {"workflowId": "twin", "nodes": [
        {"nodeId": "a", "runtimeType": "Python", "script": "output = 1", "timeout": "whenever",
         "retry": {"strategy": "fixed", "maxAttempts": 3, "initialDelay": "2s", "maxDelay": "1s"}},
        {"nodeId": "b", "runtimeType": "IfElse", "condition": "input."}],
        "connections": [{"sourceNodeId": "a", "targetNodeId": "b"}]}
    with pytest.raises(ValidationError) as from_yaml:
        load_definition(yaml_twin)
    from_python = [re.sub(r"^.*?\.py:\d+: ", "", line) for line in errors_of(wf)]
    assert from_python == from_yaml.value.errors and len(from_python) == 3


def test_a_problem_inside_a_loop_body_names_the_line_in_the_body():
    def per_item(body: Body) -> None:
        body.python("inner", script="output = (")

    body_line = per_item.__code__.co_firstlineno + 1
    wf = Workflow("loops")
    explicit = Body()
    explicit.wait("nap", "forever"); nap_line = line_here()  # noqa: E702
    wf.for_each("first", "input.items", per_item) >> wf.while_loop("second", "iteration < 3",
                                                                   explicit)
    found = errors_of(wf)
    assert len(found) == 2, found
    assert re.match(at(body_line) + re.escape("workflow 'loops': node 'first': body: node "
                                              "'inner': field 'script': Python syntax error"),
                    found[0])
    assert re.match(at(nap_line) + re.escape("workflow 'loops': node 'second': body: node 'nap': "
                                             "field 'duration': not a duration: 'forever'"),
                    found[1])


def test_values_that_are_not_json_data_name_the_node_line():
    wf = Workflow("data")
    wf.noop("n", inputs={"when": object()}); n_line = line_here()  # noqa: E702
    with pytest.raises(DefinitionError) as caught:
        wf.to_definition()
    assert re.match(at(n_line) + re.escape("workflow 'data': nodes[0].inputs.when: object is "
                                           "not JSON data"), str(caught.value))


def module_level(ctx):
    return 1


def test_a_function_workers_cannot_import_is_refused_where_it_is_given():
    wf = Workflow("callables")

    def nested(ctx):
        return 1

    cases = [
        (lambda ctx: 1, "a lambda has no name workers can import it by"),
        (nested, "function 'nested' is defined inside 'test_a_function_workers_cannot_import_is_"
                 "refused_where_it_is_given'; workers import a callable by module and name"),
    ]
    for fn, why in cases:
        line = line_here() + 2
        with pytest.raises(ValidationError) as caught:
            wf.python("p", fn)
        assert re.match(at(line) + re.escape(f"workflow 'callables': node 'p': field 'callable': "
                                             f"{why}"), str(caught.value)), str(caught.value)


def rebound(ctx):
    return 1


_rebound = rebound


def test_a_module_function_is_its_module_and_name_and_a_rebound_name_is_refused(monkeypatch):
    assert Workflow("fine").python("p", module_level)._keys["callable"] == \
        "tests.authoring.test_errors:module_level"
    monkeypatch.setattr(sys.modules[__name__], "rebound", print)
    with pytest.raises(ValidationError, match=r"field 'callable': tests\.authoring\.test_errors:"
                                              r"rebound now names a builtin_function_or_method, "
                                              r"not this function"):
        Workflow("rebound").python("p", _rebound)


def test_what_only_python_can_get_wrong_is_refused_at_once():
    wf, other = Workflow("one"), Workflow("two")
    a = wf.noop("a")
    with pytest.raises(ValidationError, match=r"test_errors\.py:\d+: workflow 'one': node 'a': "
                                              r"field 'nodeId': duplicate node id \(also declared "
                                              r"at .*test_errors\.py:\d+\)"):
        wf.noop("a")
    with pytest.raises(ValidationError, match="cannot connect node 'a' to node 'b' of workflow "
                                              "'two': a connection joins nodes of one workflow"):
        a >> other.noop("b")
    with pytest.raises(ValidationError, match="field 'retry': expected Retry"):
        wf.noop("c", retry=3)  # type: ignore[typeddict-item]
    with pytest.raises(ValidationError, match="'owner': extension keys start with 'x-'"):
        wf.noop("d", extra={"owner": "me"})
    with pytest.raises(ValidationError, match="node 'z' belongs to workflow 'two'"):
        wf.noop("e", compensation=other.noop("z"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'timout'"):
        wf.noop("f", timout="1m")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="already has the condition"):
        a.when("output.x").when("output.y")
    with pytest.raises(TypeError, match="unsupported operand"):
        a >> "b"  # type: ignore[operator]
    body = Body()
    body.noop("inner")
    wf.for_each("first", "input", body)
    with pytest.raises(ValidationError, match="field 'body': this Body is already the body of "
                                              "workflow 'one': node 'first': body"):
        wf.for_each("second", "input", body)


def test_a_placeholder_used_as_a_value_says_what_to_write_instead():
    wf = Workflow("values")
    raw = wf.noop("raw")
    for use in (lambda: bool(raw), lambda: raw["rows"], lambda: list(raw)):
        with pytest.raises(TypeError, match=r"node 'raw' stands for its output at run time, not "
                                            r"for a value.*node\.when\('output\.rows > 0'\)"):
            use()


def test_a_decorated_workflow_with_a_mistake_fails_where_it_is_declared():
    start = line_here()
    with pytest.raises(ValidationError) as caught:
        @workflow
        def broken(wf: Workflow) -> None:
            flows.clean() >> wf.if_else("check", "input.rows >")
    [error] = caught.value.errors
    assert re.match(at(start + 4) + re.escape("workflow 'broken': node 'check': field "
                                              "'condition': invalid expression"), error), error


def test_a_node_function_takes_nodes_not_values():
    @workflow
    def fine(wf: Workflow) -> None:
        flows.clean()

    with pytest.raises(ValidationError, match=r"clean\(\.\.\.\) declares a node: its arguments "
                                              r"are upstream nodes"):
        flows.clean(fine["clean"], 5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"clean\(\) runs with a context, clean\(ctx\), and "
                                        r"declares its node when called inside a @workflow"):
        flows.clean()  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        node(retries=3)  # type: ignore[call-overload]
