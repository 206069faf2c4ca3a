"""`{"$secret": NAME}` in definitions and run inputs: where it may stand, and a malformed one
refused with the node and field named, before anything is stored."""

from __future__ import annotations

import pytest

from durableflow import ValidationError, secret
from durableflow.definitions import dump_json, dump_yaml, load_definition, load_definition_text

from df_it_support import conn, node, py, wf

SHELL = {"nodeId": "call", "runtimeType": "Shell", "command": ["curl", "-H", {"$secret": "AUTH"}],
         "env": {"TOKEN": {"$secret": "API_TOKEN"}, "LEVEL": 3}}


def errors_of(data) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        load_definition(data)
    return caught.value.errors


def test_references_load_in_env_command_inputs_variables_and_round_trip():
    data = wf("refs", node("m", "Manual"), SHELL,
              node("child", "Subflow", workflowId="other", inputs={"key": {"$secret": "API_TOKEN"}}),
              connections=[conn("m", "call"), conn("call", "child")],
              variables={"password": secret("DB_PASSWORD")})
    defn = load_definition(data)
    assert defn.node("call").command[2] == {"$secret": "AUTH"}
    assert defn.node("call").env["TOKEN"] == {"$secret": "API_TOKEN"}
    assert load_definition_text(dump_yaml(defn)) == defn
    assert load_definition_text(dump_json(defn), format="json") == defn


@pytest.mark.parametrize("where, value, expected", [
    ("env", {"TOKEN": {"$secret": "api-token"}},
     "node 'call': field 'env.TOKEN': secret name 'api-token' is not a name"),
    ("env", {"TOKEN": {"$secret": "API_TOKEN", "default": "x"}},
     """node 'call': field 'env.TOKEN': {"$secret": NAME} takes no other key (found 'default')"""),
    ("env", {"TOKEN": {"value": "x"}},
     """node 'call': field 'env.TOKEN': expected text, a number, a boolean or {"$secret": NAME}"""),
    ("command", ["curl", {"$secret": ""}],
     "node 'call': field 'command[1]': secret name '' is not a name"),
    ("command", ["curl", {"token": "x"}],
     """node 'call': field 'command[1]': expected text or {"$secret": NAME}"""),
    ("inputs", {"deep": [{"$secret": 12}]},
     "node 'call': field 'inputs.deep[0]': secret name int is not a name"),
    ("x-meta", {"owner": {"$secret": "A B"}},
     "node 'call': field 'x-meta.owner': secret name 'A B' is not a name"),
])
def test_a_malformed_reference_in_a_node_is_refused_naming_node_and_field(where, value, expected):
    problems = errors_of(wf("bad", dict(SHELL, **{where: value})))
    assert any(p.startswith(f"workflow 'bad': {expected}") for p in problems), problems


def test_a_malformed_reference_in_variables_or_an_inline_body_is_named_there():
    body = {"nodes": [py("inner", "output = 1", env={"K": {"$secret": "9"}})]}
    problems = errors_of(wf("bad", node("loop", "ForEach", items="${ input.xs }", body=body),
                            variables={"db": {"pw": {"$secret": "pw", "x": 1}}}))
    assert "workflow 'bad': field 'variables.db.pw': {\"$secret\": NAME} takes no other key (found 'x')" in problems
    assert any(p.startswith("workflow 'bad': node 'loop': body: node 'inner': field 'env.K': secret "
                            "name '9' is not a name") for p in problems), problems


def test_run_inputs_with_a_malformed_reference_are_refused_and_nothing_is_stored(engine_with):
    engine = engine_with()
    with pytest.raises(ValidationError) as caught:
        engine.start(wf("w", py("a")), inputs={"auth": {"token": {"$secret": "bad name"}},
                                               "more": [{"$secret": "OK", "extra": 1}]})
    assert caught.value.errors == [
        "inputs.auth.token: secret name 'bad name' is not a name (letters, digits and '_', not "
        "starting with a digit)",
        "inputs.more[0]: {\"$secret\": NAME} takes no other key (found 'extra')"]
    assert engine.runs() == [] and engine.workflows() == []


def test_a_reference_in_the_inputs_is_not_judged_by_the_inputs_schema(engine_with):
    engine = engine_with()
    schema = {"type": "object", "required": ["token", "day"],
              "properties": {"token": {"type": "string", "minLength": 20}, "day": {"type": "string"}}}
    flow = wf("schema", py("a"), inputsSchema=schema)
    run_id = engine.start(flow, inputs={"token": {"$secret": "API_TOKEN"}, "day": "2027-01-15"})
    assert engine.get_run(run_id).inputs == {"token": {"$secret": "API_TOKEN"}, "day": "2027-01-15"}
    with pytest.raises(ValidationError, match=r"inputs.day: 5 is not of type 'string'"):
        engine.start(flow, inputs={"token": {"$secret": "API_TOKEN"}, "day": 5})
