"""Each validation rule: the error names the node or connection and the field at fault."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from durableflow.definitions import (
    body_workflow, entry_points, load_definition, output_ports, switch_port, validate_definition)
from durableflow.definitions.schema import schema_runtime_types
from durableflow.errors import DefinitionError, ValidationError
from durableflow.model import RUNTIME_TYPES, NodeDef, WorkflowDef

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_schema_knows_exactly_the_model_runtime_types():
    assert schema_runtime_types() == RUNTIME_TYPES


def test_a_minimal_definition_loads(kit):
    defn = kit.load(kit.workflow(kit.py("a")))
    assert defn.workflow_id == "wf"
    assert defn.node("a").script == "output = 1"
    assert entry_points(defn) == ("a",)


# --- the original design's sample --------------------------------------------------------------

@pytest.mark.parametrize("name", ["original-sample.yaml", "original-sample.json"])
def test_original_sample_parses_unchanged_and_names_missing_programs_and_scripts(
        kit, empty_path, name):
    kit.write((FIXTURES / name).read_text(), name)
    with pytest.raises(ValidationError) as info:
        load_definition(name)
    assert sorted(info.value.errors) == sorted([
        f"{name}: node 'fetch': field 'scriptPath': script file not found: scripts/fetch.ps1",
        f"{name}: node 'process': field 'scriptPath': script file not found: scripts/process.csx",
        f"{name}: node 'save': field 'scriptPath': script file not found: scripts/save.csx",
        f"{name}: node 'fetch': runtime PowerShell needs 'pwsh' on PATH, not found",
        f"{name}: node 'process': runtime CSharpScript needs 'dotnet' on PATH, not found",
        f"{name}: node 'save': runtime CSharpScript needs 'dotnet' on PATH, not found",
    ])


def test_original_sample_passes_with_its_scripts_and_programs(kit, fake_programs):
    (kit.folder / "scripts").mkdir()
    for script in ("fetch.ps1", "process.csx", "save.csx"):
        (kit.folder / "scripts" / script).write_text("# stand-in\n")
    kit.write((FIXTURES / "original-sample.yaml").read_text(), "pipeline.yaml")
    defn = load_definition("pipeline.yaml")
    assert [n.node_id for n in defn.nodes] == ["fetch", "process", "save"]
    assert defn.name == "Data Processing Pipeline"
    assert defn.node("fetch").script_path == kit.folder / "scripts" / "fetch.ps1"
    assert defn.connections[0].trigger == "Complete"


def test_check_programs_false_skips_only_the_program_lookup(kit, empty_path):
    kit.write((FIXTURES / "original-sample.yaml").read_text(), "p.yaml")
    with pytest.raises(ValidationError) as info:
        load_definition("p.yaml", check_programs=False)
    assert len(info.value.errors) == 3
    assert all("script file not found" in line for line in info.value.errors)


@pytest.mark.parametrize("source, needle", [
    ("def run(ctx:\n    return 1\n", "s.py, line 1: Python syntax error: '(' was never closed"),
    ("def main(ctx):\n    return 1\n", "s.py defines no run(ctx) function"),
    ("def main(ctx):\n    run = 1\n    return run\n", "s.py defines no run(ctx) function"),
    ("X = " + "1+" * 200_000 + "1\n", "s.py: too deeply nested to parse"),
])
def test_a_script_file_that_cannot_run_fails_validation_not_its_first_run(kit, source, needle):
    (kit.folder / "s.py").write_text(source)
    line = kit.error(kit.workflow({"nodeId": "a", "runtimeType": "Python", "scriptPath": "s.py"}), needle)
    assert line == f"wf.yaml: node 'a': field 'scriptPath': {needle}"


@pytest.mark.parametrize("source", [
    "def run(ctx):\n    return 1\n",
    "from helpers import run\n",
    "from helpers import *\n",
    "import json\nrun = json.dumps\n",
    "try:\n    from fast import run\nexcept ImportError:\n    def run(ctx):\n        return 0\n",
    "if True:\n    def run(ctx):\n        return 0\n",
    "try:\n    import fast\nexcept ImportError as run:\n    pass\n",
    "for run in [print]:\n    pass\n",
    "(run := print)\n",
    "match 1:\n    case _ as run:\n        pass\n",
    "with open(__file__) as run:\n    pass\n",
])
def test_a_script_file_that_may_define_run_passes_without_being_run(kit, source):
    (kit.folder / "s.py").write_text(source + "raise SystemExit('validation must not run the file')\n")
    defn = kit.load(kit.workflow({"nodeId": "a", "runtimeType": "Python", "scriptPath": "s.py"}))
    assert defn.node("a").script_path == kit.folder / "s.py"


# --- identity and references -------------------------------------------------------------------

def test_duplicate_node_id(kit):
    line = kit.error(kit.workflow(kit.py("a"), kit.py("b"), kit.py("a")), "duplicate")
    assert line == "wf.yaml: node 'a': field 'nodeId': duplicate node id (also nodes[0])"


def test_connection_to_unknown_target(kit):
    data = kit.workflow(kit.py("fetch"), kit.py("process"),
                        connections=[kit.conn("fetch", "process"), kit.conn("process", "sve")])
    assert kit.error(data, "sve") == ("wf.yaml: connections[1] process->sve: field 'targetNodeId': "
                                      "unknown node 'sve'")


def test_connection_from_unknown_source_suggests_the_near_miss(kit):
    data = kit.workflow(kit.py("fetch"), kit.py("process"),
                        connections=[kit.conn("fecth", "process")])
    assert kit.error(data, "fecth") == ("wf.yaml: connections[0] fecth->process: field "
                                        "'sourceNodeId': unknown node 'fecth' (did you mean 'fetch'?)")


def test_connection_id_names_the_connection(kit):
    data = kit.workflow(kit.py("a"), connections=[kit.conn("a", "b", id="a-to-b")])
    assert kit.error(data, "unknown node").startswith("wf.yaml: connections[0] a-to-b: ")


def test_unknown_runtime_type_lists_the_valid_ones(kit):
    line = kit.error(kit.workflow(kit.node("fetch", "Bash", command=["ls"])), "runtimeType")
    assert line.startswith("wf.yaml: node 'fetch': field 'runtimeType': unknown runtime type "
                           "'Bash' (valid: Python, Shell, PowerShell,")


def test_unknown_runtime_type_in_a_hand_built_definition():
    defn = WorkflowDef("wf", nodes=(NodeDef("a", "Bash"),))
    errors = validate_definition(defn, check_files=False, check_programs=False)
    assert errors[0].startswith("node 'a': field 'runtimeType': unknown runtime type 'Bash'")


@pytest.mark.parametrize("key", ["fallbackNodeId", "compensationNodeId"])
def test_unknown_fallback_or_compensation_node(kit, key):
    data = kit.workflow(kit.py("a", **{key: "undo"}), kit.py("und"))
    assert kit.error(data, key) == (f"wf.yaml: node 'a': field '{key}': unknown node 'undo' "
                                    "(did you mean 'und'?)")


def test_compensation_and_fallback_nodes_are_reachable_and_not_entry_points(kit):
    data = kit.workflow(kit.py("a", compensationNodeId="undo", fallbackNodeId="plan-b"),
                        kit.py("undo"), kit.py("plan-b"), kit.py("after-undo"),
                        connections=[kit.conn("undo", "after-undo")])
    defn = kit.load(data)
    assert entry_points(defn) == ("a",)


# --- ports ---------------------------------------------------------------------------------------

def _ifelse(**keys):
    return {"nodeId": "check", "runtimeType": "IfElse", "condition": "input.rows > 0", **keys}


def test_unknown_ifelse_port(kit):
    data = kit.workflow(_ifelse(), kit.py("a"),
                        connections=[kit.conn("check", "a", sourcePort="maybe")])
    assert kit.error(data, "sourcePort") == ("wf.yaml: connections[0] check->a: field 'sourcePort': "
                                             "unknown port 'maybe' on node 'check' (ports: true, false)")


def test_ifelse_connection_without_a_port(kit):
    data = kit.workflow(_ifelse(), kit.py("a"), connections=[kit.conn("check", "a")])
    assert "field 'sourcePort': required on a Complete connection from IfElse" in kit.error(data, "check->a")


def test_switch_ports_are_case_values_plus_default(kit):
    switch = kit.node("route", "Switch", expression="input.kind",
                      cases={"csv": "tabular", "json": "doc"}, default="other")
    ok = kit.workflow(switch, kit.py("a"), kit.py("b"), kit.py("c"), connections=[
        kit.conn("route", "a", sourcePort="tabular"), kit.conn("route", "b", sourcePort="doc"),
        kit.conn("route", "c", sourcePort="other")])
    defn = kit.load(ok)
    assert output_ports(defn.node("route")) == ("tabular", "doc", "other")
    assert switch_port(defn.node("route"), "csv") == "tabular"
    assert switch_port(defn.node("route"), 42) == "other"
    bad = kit.workflow(switch, kit.py("a"), connections=[kit.conn("route", "a", sourcePort="csv")])
    assert "unknown port 'csv' on node 'route' (ports: tabular, doc, other)" in kit.error(bad, "route->a")


def test_port_on_a_node_without_declared_ports(kit):
    data = kit.workflow(kit.py("a"), kit.py("b"), connections=[kit.conn("a", "b", sourcePort="x")])
    assert kit.error(data, "sourcePort") == (
        "wf.yaml: connections[0] a->b: field 'sourcePort': unknown port 'x': node 'a' has no named "
        "output ports (declare them with 'ports')")


def test_declared_ports_are_accepted(kit):
    data = kit.workflow(kit.py("a", ports=["good", "bad"]), kit.py("b"),
                        connections=[kit.conn("a", "b", sourcePort="good")])
    assert output_ports(kit.load(data).node("a")) == ("good", "bad")


def test_fail_connection_has_no_port(kit):
    data = kit.workflow(kit.py("a", ports=["x"]), kit.py("b"),
                        connections=[kit.conn("a", "b", sourcePort="x", triggerMessageType="Fail")])
    assert "field 'sourcePort': a Fail message has no port" in kit.error(data, "a->b")


# --- expressions -----------------------------------------------------------------------------------

def test_connection_condition_syntax_error(kit):
    data = kit.workflow(kit.py("a"), kit.py("b"),
                        connections=[kit.conn("a", "b", condition="output.rows >")])
    assert kit.error(data, "condition").startswith(
        "wf.yaml: connections[0] a->b: field 'condition': invalid expression 'output.rows >'")


def test_connection_condition_unknown_name(kit):
    data = kit.workflow(kit.py("a"), kit.py("b"),
                        connections=[kit.conn("a", "b", condition="outptu.rows > 0")])
    assert kit.error(data, "condition") == (
        "wf.yaml: connections[0] a->b: field 'condition': expression 'outptu.rows > 0': unknown name "
        "'outptu' (did you mean 'output'? known: inputs, output, vars)")


@pytest.mark.parametrize("node, name, field", [
    (_ifelse(condition="output.ok"), "output", "condition"),
    ({"nodeId": "check", "runtimeType": "Switch", "expression": "output.kind", "cases": {"a": "x"}},
     "output", "expression"),
    ({"nodeId": "check", "runtimeType": "ForEach", "items": "output.rows",
      "body": {"workflowId": "per-row"}}, "output", "items"),
    ({"nodeId": "check", "runtimeType": "While", "condition": "input.more",
      "body": {"workflowId": "page"}}, "input", "condition"),
])
def test_node_expressions_see_their_own_names(kit, node, name, field):
    line = kit.error(kit.workflow(node), f"unknown name '{name}'")
    assert line.startswith(f"wf.yaml: node 'check': field '{field}': expression ")


def test_inputs_templates_are_compiled_at_load(kit):
    data = kit.workflow(kit.py("a", inputs={"day": "${ vars.day }", "rows": ["${ input.rows +}"],
                                            "literal": "not ${ an expression"}))
    assert kit.errors(data) == ["wf.yaml: node 'a': field 'inputs.rows[0]': invalid expression "
                                "'input.rows +': invalid syntax"]


# --- node bodies -----------------------------------------------------------------------------------

@pytest.mark.parametrize("keys, given", [({}, "none"),
                                         ({"callable": "pkg.mod:run"}, "'script', 'callable'")])
def test_python_needs_exactly_one_body(kit, keys, given):
    node = {"nodeId": "p", "runtimeType": "Python", **keys}
    if given != "none":
        node["script"] = "output = 1"
    assert kit.error(kit.workflow(node), "Python node") == (
        f"wf.yaml: node 'p': Python node needs exactly one of 'script', 'scriptPath', 'callable' "
        f"(given: {given})")


def test_shell_needs_a_command_or_script(kit):
    assert kit.error(kit.workflow(kit.node("sh", "Shell")), "Shell") == (
        "wf.yaml: node 'sh': Shell node needs exactly one of 'command', 'scriptPath' (given: none)")


def test_shell_command_string_needs_shell_true(kit):
    line = kit.error(kit.workflow(kit.node("sh", "Shell", command="ls -l")), "command")
    assert line.startswith("wf.yaml: node 'sh': field 'command': a command string needs 'shell: true'")
    assert kit.load(kit.workflow(kit.node("sh", "Shell", command="ls -l", shell=True))) \
        .node("sh").command == ("ls -l",)


def test_missing_script_file_is_named_as_written(kit):
    data = kit.workflow(kit.node("p", "Python", scriptPath="scripts/missing.py"))
    assert kit.errors(data) == [
        "wf.yaml: node 'p': field 'scriptPath': script file not found: scripts/missing.py"]


def test_script_path_resolves_against_the_definition_folder(kit, tmp_path, monkeypatch):
    (kit.folder / "scripts").mkdir()
    (kit.folder / "scripts" / "run.py").write_text("def run(ctx):\n    return 1\n")
    kit.write(kit.workflow(kit.node("p", "Python", scriptPath="scripts/run.py")), "wf.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    defn = load_definition(kit.folder / "wf.yaml")
    assert defn.node("p").script_path == kit.folder / "scripts" / "run.py"
    assert defn.node("p").script_path.is_absolute()


def test_key_of_another_runtime_type(kit):
    assert kit.error(kit.workflow(kit.py("a", cron="* * * * *")), "cron") == (
        "wf.yaml: node 'a': field 'cron': does not apply to runtime type Python (used by Timer)")


def test_required_type_key(kit):
    assert kit.error(kit.workflow(kit.node("i", "IfElse")), "condition") == (
        "wf.yaml: node 'i': field 'condition': required for runtime type IfElse")


def test_wait_needs_duration_or_valid_until(kit):
    assert "Wait node needs exactly one of 'duration', 'until'" in kit.error(
        kit.workflow(kit.node("w", "Wait")), "node 'w'")
    line = kit.error(kit.workflow(kit.node("w", "Wait", until="tomorrow")), "until")
    assert line.startswith("wf.yaml: node 'w': field 'until': 'tomorrow' is not an ISO-8601 time")
    kit.load(kit.workflow(kit.node("w", "Wait", until="2026-11-27T09:00:00Z")))
    kit.load(kit.workflow(kit.node("w", "Wait", until="${ input.at }")))


def test_timer_cron_is_checked(kit):
    line = kit.error(kit.workflow(kit.node("t", "Timer", cron="every day")), "cron")
    assert line.startswith("wf.yaml: node 't': field 'cron': 'every day' is not a cron expression")
    kit.load(kit.workflow(kit.node("t", "Timer", cron="*/5 * * * *", catchUp="one")))


def test_trigger_node_cannot_have_incoming_connections(kit):
    data = kit.workflow(kit.py("a"), kit.node("t", "Manual"), connections=[kit.conn("a", "t")])
    assert kit.error(data, "trigger") == ("wf.yaml: connections[0] a->t: field 'targetNodeId': "
                                          "Manual node 't' is a trigger and cannot have incoming connections")


# --- durations and policies ------------------------------------------------------------------------

@pytest.mark.parametrize("where, node_keys, top_keys, expected", [
    ("node timeout", {"timeout": "5 minutes"}, {}, "node 'a': field 'timeout': not a duration"),
    ("retry delay", {"retry": {"strategy": "fixed", "maxAttempts": 2, "initialDelay": "soon"}}, {},
     "node 'a': field 'retry.initialDelay': not a duration"),
    ("rate limit", {"rateLimit": {"rate": 5, "per": "1 fortnight"}}, {},
     "node 'a': field 'rateLimit.per': not a duration"),
    ("breaker", {"circuitBreaker": {"openDuration": "1x"}}, {},
     "node 'a': field 'circuitBreaker.openDuration': not a duration"),
    ("workflow", {}, {"timeout": "forever"}, "field 'timeout': not a duration"),
    ("defaults", {}, {"defaults": {"timeout": "inf"}}, "field 'defaults.timeout': not a duration"),
])
def test_bad_duration_names_node_and_field(kit, where, node_keys, top_keys, expected):
    line = kit.error(kit.workflow(kit.py("a", **node_keys), **top_keys), "not a duration")
    assert line.startswith(f"wf.yaml: {expected}")


def test_wait_duration_is_checked(kit):
    line = kit.error(kit.workflow(kit.node("w", "Wait", duration="3 days")), "duration")
    assert line.startswith("wf.yaml: node 'w': field 'duration': not a duration: '3 days'")


@pytest.mark.parametrize("node_keys, top_keys, expected", [
    ({"timeout": "99999999999d"}, {}, "node 'w': field 'timeout': duration '99999999999d' is too long"),
    ({"duration": "3000000d"}, {}, "node 'w': field 'duration': duration '3000000d' is too long"),
    ({}, {"timeout": 10**12}, "field 'timeout': duration 1000000000000 is too long"),
])
def test_durations_past_a_century_are_refused_where_they_are_written(kit, node_keys, top_keys, expected):
    # A deadline of now + 99999999999d is past the year 9999: refused at load, not in a worker.
    node = {"duration": "1s", **node_keys}
    line = kit.error(kit.workflow(kit.node("w", "Wait", **node), **top_keys), "too long")
    assert line.startswith(f"wf.yaml: {expected}") and "\n" not in line


def test_retry_attempts_without_a_strategy(kit):
    line = kit.error(kit.workflow(kit.py("a", retry={"maxAttempts": 3})), "retry")
    assert line.startswith("wf.yaml: node 'a': field 'retry.maxAttempts': 3 attempts need a strategy")


def test_defaults_apply_to_nodes_that_do_not_set_the_key(kit):
    data = kit.workflow(kit.py("a"), kit.py("b", timeout="5s", priority="low"),
                        defaults={"timeout": "10m", "priority": "high",
                                  "retry": {"strategy": "exponential", "maxAttempts": 4}})
    defn = kit.load(data)
    assert (defn.node("a").timeout, defn.node("a").priority) == (600.0, "high")
    assert (defn.node("b").timeout, defn.node("b").priority) == (5.0, "low")
    assert defn.node("b").retry.max_attempts == 4


def test_invalid_inputs_schema(kit):
    line = kit.error(kit.workflow(kit.py("a"), inputsSchema={"type": "nope"}), "inputsSchema")
    assert line.startswith("wf.yaml: field 'inputsSchema': not a valid JSON Schema")


# --- the graph -------------------------------------------------------------------------------------

def test_cycle_names_its_nodes_in_order(kit):
    data = kit.workflow(kit.py("start"), kit.py("a"), kit.py("b"), kit.py("c"), connections=[
        kit.conn("start", "a"), kit.conn("a", "b"), kit.conn("b", "c"), kit.conn("c", "a")])
    assert kit.errors(data) == [
        "wf.yaml: cycle: a -> b -> c -> a (loops must be While or ForEach nodes)"]


def test_self_loop_is_a_cycle(kit):
    data = kit.workflow(kit.py("s"), kit.py("a"), connections=[kit.conn("s", "a"), kit.conn("a", "a")])
    assert "cycle: a -> a" in kit.error(data, "cycle")


def test_unreachable_node(kit):
    data = kit.workflow(kit.py("start"), kit.py("x"), kit.py("y"),
                        connections=[kit.conn("x", "y"), kit.conn("y", "x")])
    lines = kit.errors(data)
    assert "wf.yaml: node 'x': unreachable from any entry point (entry points: start)" in lines
    assert "wf.yaml: node 'y': unreachable from any entry point (entry points: start)" in lines


def test_no_entry_point(kit):
    data = kit.workflow(kit.py("a"), kit.py("b"), connections=[kit.conn("a", "b"), kit.conn("b", "a")])
    assert kit.error(data, "entry").startswith(
        "wf.yaml: no entry point: every node has an incoming connection")


def test_inline_body_is_validated_as_a_sub_workflow(kit):
    body = {"nodes": [kit.py("x"), kit.node("y", "Shell")],
            "connections": [kit.conn("x", "q"), kit.conn("x", "y")]}
    data = kit.workflow(kit.node("loop", "ForEach", items="input.rows", body=body))
    assert sorted(kit.errors(data)) == [
        "wf.yaml: node 'loop': body: connections[0] x->q: field 'targetNodeId': unknown node 'q'",
        "wf.yaml: node 'loop': body: node 'y': Shell node needs exactly one of 'command', "
        "'scriptPath' (given: none)",
    ]


def test_inline_body_as_a_workflow_of_its_own(kit):
    body = {"nodes": [kit.py("x"), kit.py("y", timeout="5s")], "connections": [kit.conn("x", "y")]}
    defn = kit.load(kit.workflow(
        kit.node("loop", "ForEach", items="input.rows", body=body, maxParallelism=4),
        kit.node("sub", "While", condition="iteration < 3", body={"workflowId": "page"}),
        defaults={"timeout": "1m"}))
    sub = body_workflow(defn.node("loop"), defn)
    assert sub.workflow_id == "wf.loop"
    assert [n.node_id for n in sub.nodes] == ["x", "y"]
    assert (sub.node("x").timeout, sub.node("y").timeout) == (60.0, 5.0)  # parent's defaults
    assert entry_points(sub) == ("x",)
    assert body_workflow(defn.node("sub"), defn) is None
    assert defn.node("loop").config["maxParallelism"] == 4


def test_body_schema_errors_carry_the_parent_path(kit):
    body = {"nodes": [kit.node("x", "Pyhton")]}
    line = kit.error(kit.workflow(kit.node("loop", "While", condition="iteration < 3", body=body)),
                     "runtimeType")
    assert line.startswith("wf.yaml: node 'loop': body: node 'x': field 'runtimeType': unknown "
                           "runtime type 'Pyhton'")


# --- the schema ------------------------------------------------------------------------------------

def test_unknown_key_is_caught_with_a_suggestion(kit):
    data = kit.workflow(kit.py("a", runtimetype="Python", timout="5s"))
    lines = kit.errors(data)
    assert "wf.yaml: node 'a': field 'runtimetype': unknown key (did you mean 'runtimeType'?)" in lines
    assert "wf.yaml: node 'a': field 'timout': unknown key (did you mean 'timeout'?)" in lines


def test_missing_required_keys(kit):
    lines = kit.errors({"nodes": [{"runtimeType": "Noop"}]})
    assert "wf.yaml: field 'workflowId': required key is missing" in lines
    assert "wf.yaml: nodes[0]: field 'nodeId': required key is missing" in lines


def test_wrong_type_and_enum(kit):
    lines = kit.errors(kit.workflow(kit.py("a", priority="urgent", shell="yes please")))
    assert "wf.yaml: node 'a': field 'priority': 'urgent' is not one of: high, normal, low" in lines
    assert "wf.yaml: node 'a': field 'shell': expected boolean, got string" in lines


def test_extension_keys_are_kept(kit):
    defn = kit.load(kit.workflow(kit.py("a", **{"x-owner": "ops"}), **{"x-team": {"on": "call"}}))
    assert defn.extra == {"x-team": {"on": "call"}}
    assert defn.node("a").config["x-owner"] == "ops"


def test_all_problems_are_reported_together(kit):
    data = kit.workflow(kit.py("a", timeout="soon"), kit.node("b", "Shell"), kit.py("a"),
                        connections=[kit.conn("a", "zz")])
    with pytest.raises(ValidationError) as info:
        kit.load(data)
    assert len(info.value.errors) == 4
    assert str(info.value).endswith("(and 3 more)")


def test_top_level_must_be_a_mapping(kit):
    with pytest.raises(DefinitionError, match=r"^wf.yaml: the top level must be a mapping, not a list$"):
        kit.load("- a\n- b\n")


def test_a_dict_is_named_by_its_workflow_id(tmp_path):
    with pytest.raises(ValidationError) as info:
        load_definition({"workflowId": "wf", "nodes": [{"nodeId": "a", "runtimeType": "Noop"}],
                         "connections": [{"sourceNodeId": "a", "targetNodeId": "b"}]})
    assert info.value.errors == ["workflow 'wf': connections[0] a->b: field 'targetNodeId': "
                                 "unknown node 'b'"]


def test_programs_are_looked_up_on_path(kit, fake_programs):
    (kit.folder / "s.ps1").write_text("")
    kit.load(kit.workflow(kit.node("ps", "PowerShell", scriptPath="s.ps1")), check_programs=True)
    assert shutil.which("pwsh") == str(fake_programs / "pwsh")
