"""validate, graph and workflows."""

from __future__ import annotations

import json

import pytest

from tests.cli.cli_helpers import edge, noop, py, workflow


@pytest.fixture
def broken(write):
    return write(workflow("broken", noop("a"), noop("a"),
                          connections=[edge("a", "ghost")]), "broken.yaml")


# --- validate ------------------------------------------------------------------------------------

def test_validate_valid_files_exit_0(invoke, chain, write, db):
    other = write(workflow("other", noop("x")), "other.json")
    result = invoke("validate", chain, other)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{chain}: ok", f"{other}: ok"]
    assert result.stderr == ""
    assert not db.exists()  # validation never needs (or creates) the database


def test_validate_invalid_file_exit_2_one_line_per_problem(invoke, chain, broken, db):
    result = invoke("validate", chain, broken)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) >= 2
    assert all(line.startswith(f"{broken}: ") for line in lines)
    assert any("'a'" in line and "duplicate" in line.lower() for line in lines)
    assert any("ghost" in line for line in lines)
    assert f"{chain}: ok" in result.stdout
    assert "Traceback" not in result.output
    assert not db.exists()


def test_validate_json_lists_every_file(invoke, chain, broken):
    result = invoke("validate", "--json", chain, broken)
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == [str(chain), str(broken)]
    assert report[0] == {"file": str(chain), "valid": True, "errors": [], "warnings": []}
    assert report[1]["valid"] is False and report[1]["errors"]


@pytest.mark.parametrize("content, expected", [
    ("workflowId: [unclosed\n", "wf.yaml"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("", "empty"),
])
def test_validate_malformed_files(invoke, write, content, expected):
    path = write(content, "wf.yaml")
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_validate_missing_file(invoke, tmp_path):
    result = invoke("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{tmp_path / 'nope.yaml'}: file not found"


def test_validate_needs_a_file(invoke):
    result = invoke("validate")
    assert result.exit_code == 2
    assert "Usage:" in result.stderr


@pytest.mark.slow
def test_validate_exit_codes_in_a_real_process(durableflow, chain, broken, db):
    ok = durableflow("validate", chain)
    assert ok.returncode == 0, ok.stderr
    bad = durableflow("validate", chain, broken)
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0].startswith(f"{broken}: ")
    assert "Traceback" not in bad.stderr
    assert not db.exists()


# --- graph ---------------------------------------------------------------------------------------

def test_graph_of_a_file_in_mermaid_and_dot(invoke, chain, db):
    mermaid = invoke("graph", chain)
    assert mermaid.exit_code == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD")
    assert "classDef" not in mermaid.stdout
    dot = invoke("graph", chain, "--format", "dot")
    assert dot.exit_code == 0
    assert dot.stdout.startswith('digraph "chain"')
    assert '"a" -> "b"' in dot.stdout
    assert not db.exists()


def test_graph_of_a_run_is_coloured_by_status(invoke, failing):
    run = json.loads(invoke("run", failing, "--json").stdout)
    result = invoke("graph", run["run_id"])
    assert result.exit_code == 0, result.stderr
    assert "classDef failed" in result.stdout
    dot = invoke("graph", run["run_id"], "--format", "dot")
    assert "#ffcdd2" in dot.stdout  # failed fill


def test_graph_of_a_workflow_id(invoke, chain):
    invoke("start", chain)
    result = invoke("graph", "chain")
    assert result.exit_code == 0
    assert result.stdout.startswith("flowchart TD")


def test_graph_of_an_unknown_run(invoke, chain):
    invoke("start", chain)
    result = invoke("graph", "feedface")
    assert result.exit_code == 1
    assert result.stderr.startswith("durableflow: error: run feedface not found")


def test_graph_of_a_run_without_a_database(invoke, db):
    result = invoke("graph", "feedface")
    assert result.exit_code == 1
    assert "no such database" in result.stderr
    assert not db.exists()


def test_graph_of_an_invalid_file_exit_2(invoke, broken):
    result = invoke("graph", broken)
    assert result.exit_code == 2
    assert result.stderr.startswith("durableflow: error: ")


def test_graph_bad_format(invoke, chain):
    assert invoke("graph", chain, "--format", "png").exit_code == 2


# --- workflows -----------------------------------------------------------------------------------

def test_workflows_table_and_json(invoke, chain, write):
    invoke("start", chain)
    invoke("start", chain)  # same content: same version
    write(workflow("chain", noop("a"), py("b", "output = 2"), connections=[edge("a", "b")]),
          "chain.yaml")
    invoke("start", chain)  # changed content: version 2
    table = invoke("workflows")
    assert table.exit_code == 0
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith("chain")]
    assert sorted((r[1], r[2]) for r in rows) == [("1", "2"), ("2", "1")]
    data = json.loads(invoke("workflows", "--json").stdout)
    assert sorted((w["workflow_id"], w["version"], w["runs"]) for w in data) == \
        [("chain", 1, 2), ("chain", 2, 1)]


def test_workflows_on_an_empty_database(invoke, db):
    from durableflow import Engine
    Engine(db).close()
    assert invoke("workflows").stdout.strip() == "no workflows registered"
    assert invoke("workflows", "--json").stdout.strip() == "[]"


def test_limits_validate_without_a_not_enforced_warning(invoke, write):
    path = write({"workflowId": "mce", "nodes": [
        {"nodeId": "a", "runtimeType": "Noop", "maxConcurrentExecutions": 1, "concurrencyKey": "k",
         "rateLimit": {"rate": 1, "per": "10s"}, "resources": {"cpu": 1, "memoryMb": 64},
         "circuitBreaker": {"failureThreshold": 0.5}, "fallbackNodeId": "b", "maxWait": "1m"},
        {"nodeId": "b", "runtimeType": "Noop"}]}, "mce.yaml")
    result = invoke("validate", str(path))
    assert result.exit_code == 0 and result.stdout.strip() == f"{path}: ok"
    assert result.stderr.strip() == ""


def test_a_fallback_without_a_breaker_is_warned_about(invoke, write):
    path = write({"workflowId": "fb", "nodes": [
        {"nodeId": "a", "runtimeType": "Noop", "fallbackNodeId": "b", "compensationNodeId": "undo"},
        {"nodeId": "b", "runtimeType": "Noop"}, {"nodeId": "undo", "runtimeType": "Noop"}]}, "fb.yaml")
    result = invoke("validate", str(path))
    assert result.exit_code == 0 and result.stdout.strip() == f"{path}: ok"
    assert result.stderr.strip().splitlines() == [
        f"warning: {path}: node 'a': field 'fallbackNodeId': runs only while the node's circuit breaker "
        f"is open, and the node has no circuitBreaker"]


def test_a_program_or_module_missing_on_this_machine_is_warned_about_not_refused(invoke, write):
    path = write({"workflowId": "missing-here", "nodes": [
        {"nodeId": "sh", "runtimeType": "Shell", "command": ["no-such-binary-xyz", "--flag"]},
        {"nodeId": "fn", "runtimeType": "Python", "callable": "no_such_module_xyz.sub:func"},
        {"nodeId": "ok", "runtimeType": "Shell", "command": ["echo", "hi"]},
        {"nodeId": "str", "runtimeType": "Python", "callable": "json:dumps"}]}, "mh.yaml")
    result = invoke("validate", str(path))
    assert result.exit_code == 0 and result.stdout.strip() == f"{path}: ok"
    assert result.stderr.strip().splitlines() == [
        f"warning: {path}: node 'sh': field 'command': program 'no-such-binary-xyz' is not on PATH "
        f"here; the node fails where it runs unless that machine has it",
        f"warning: {path}: node 'fn': field 'callable': module 'no_such_module_xyz' is not importable "
        f"here; the node fails where it runs unless it is installed there"]


def test_a_zero_timeout_means_none_and_is_warned_about(invoke, write):
    path = write({"workflowId": "zero", "timeout": "0s", "nodes": [
        {"nodeId": "a", "runtimeType": "Noop", "timeout": 0}, {"nodeId": "b", "runtimeType": "Noop"}]},
        "zero.yaml")
    result = invoke("validate", str(path))
    assert result.exit_code == 0 and result.stdout.strip() == f"{path}: ok"
    assert result.stderr.strip().splitlines() == [
        f"warning: {path}: field 'timeout': 0 means no timeout; leave the field out to say so",
        f"warning: {path}: node 'a': field 'timeout': 0 means no timeout; leave the field out to say so"]
    run = json.loads(invoke("run", str(path), "--json").stdout)
    assert run["status"] == "completed"


# --- register --------------------------------------------------------------------------------------

def test_register_stores_each_file_so_a_subflow_can_start_it(invoke, chain, write, db):
    """Issue 11, point 20: a Subflow's target registered without starting a run of it."""
    child = write(workflow("child", noop("x")), "child.yaml")
    parent = write({"workflowId": "parent", "nodes": [
        {"nodeId": "sub", "runtimeType": "Subflow", "workflowId": "child"}]}, "parent.yaml")
    result = invoke("register", child, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"file": str(child), "workflow_id": "child", "version": 1}]
    again = invoke("register", child)
    assert again.exit_code == 0 and again.stdout.strip() == f"{child}: workflow 'child' version 1"
    run = invoke("run", parent)
    assert run.exit_code == 0, run.stderr
    listed = json.loads(invoke("workflows", "--json").stdout)
    assert [(w["workflow_id"], w["version"], w["runs"]) for w in listed] == [
        ("child", 1, 1), ("parent", 1, 1)]


def test_register_stores_nothing_when_one_file_is_invalid(invoke, chain, broken, db):
    result = invoke("register", chain, broken)
    assert result.exit_code == 2
    assert any("ghost" in line for line in result.stderr.splitlines())
    assert result.stderr.splitlines()[-1] == "nothing was registered"
    listed = invoke("workflows", "--json")
    assert json.loads(listed.stdout) == []
