"""`durableflow graph` draws loop bodies and Subflow workflows as nested clusters, and colours a
run's body nodes by its child runs (issue 15, point 4)."""

from __future__ import annotations

import json
import re

import pytest

from durableflow.definitions.draw import STATUS_COLOURS
from tests.cli.cli_helpers import edge, noop, py, workflow

CHILD = workflow("child", py("double", "output = ctx.input['item'] * 2"), noop("tail"),
                 connections=[edge("double", "tail")])


@pytest.fixture
def parent(write):
    """A ForEach (continueOnError) whose body checks an item, then runs `child` as a Subflow;
    then a While whose body counts to 2."""
    body = {"nodes": [py("check", "assert ctx.input['item'] != 2, 'two'\noutput = ctx.input"),
                      {"nodeId": "sub", "runtimeType": "Subflow", "workflowId": "child",
                       "inputs": {"item": "${ input.item }"}}],
            "connections": [edge("check", "sub")]}
    count = {"nodes": [py("step", "p = ctx.input['previous']\noutput = 1 if p is None else p['step'] + 1")]}
    return write(workflow("parent",
                          {"nodeId": "each", "runtimeType": "ForEach", "items": "[1, 2, 3]",
                           "maxParallelism": 2, "continueOnError": True, "body": body},
                          {"nodeId": "count", "runtimeType": "While",
                           "condition": "output == null or output.step < 2", "body": count},
                          connections=[edge("each", "count")]), "parent.yaml")


def clusters(mermaid: str) -> dict[str, str]:
    """subgraph title -> the text inside it."""
    out, stack = {}, []
    for line in mermaid.splitlines():
        match = re.match(r'\s*subgraph c\d+\["(.*)"\]$', line)
        if match:
            stack.append(match.group(1))
            out[match.group(1)] = ""
        elif line.strip() == "end":
            stack.pop()
        else:
            for title in stack:
                out[title] += line.strip() + "\n"
    return out


def node_ids(mermaid: str) -> dict[str, str]:
    return {label.split("<br/>")[0]: mid for mid, label in re.findall(r'^\s*(n\d+)[\[{(]+"([^"]*)"', mermaid, re.M)}


def test_graph_of_a_file_nests_inline_bodies_and_a_stored_subflow(invoke, write, parent, db):
    plain = invoke("graph", parent)
    assert plain.exit_code == 0, plain.stderr
    assert not db.exists()                      # nothing to look in: never created
    assert set(clusters(plain.stdout)) == {"body of each: parent.each", "body of count: parent.count"}
    assert '["sub<br/>Subflow child"]' in plain.stdout and "double" not in plain.stdout
    assert invoke("register", write(CHILD, "child.yaml")).exit_code == 0
    nested = invoke("graph", parent)
    assert nested.exit_code == 0, nested.stderr
    found = clusters(nested.stdout)
    assert set(found) == {"body of each: parent.each", "subflow of sub: child", "body of count: parent.count"}
    ids = node_ids(nested.stdout)
    assert f'{ids["double"]}["double<br/>Python"]' in found["subflow of sub: child"]
    assert f'{ids["double"]}["double<br/>Python"]' in found["body of each: parent.each"]
    assert f'{ids["sub"]} -.-|"child run"| {ids["double"]}' in found["body of each: parent.each"]
    dot = invoke("graph", parent, "--format", "dot").stdout
    assert 'subgraph "cluster_each" {' in dot and 'subgraph "cluster_each/sub" {' in dot
    assert '"each/sub/double" -> "each/sub/tail" [label="Complete"];' in dot
    assert '"count" -> "count/step" [label="per turn", style=dotted' in dot


def test_graph_of_a_run_colours_body_nodes_by_their_child_runs(invoke, write, parent):
    invoke("register", write(CHILD, "child.yaml"))
    run = json.loads(invoke("run", parent, "--json").stdout)
    assert run["status"] == "completed", run["error"]
    result = invoke("graph", run["run_id"])
    assert result.exit_code == 0, result.stderr
    found = clusters(result.stdout)
    # Three items (one failed before its Subflow started), two While turns.
    assert set(found) == {"body of each: parent.each v1 (3 runs)", "subflow of sub: child v1 (2 runs)",
                          "body of count: parent.count v1 (2 runs)"}
    ids = node_ids(result.stdout)
    status_of = {mid: status for members, status in re.findall(r"^\s*class (\S+) (\w+)$", result.stdout, re.M)
                 for mid in members.split(",")}
    assert {node: status_of.get(mid) for node, mid in ids.items()} == {
        "each": "completed", "count": "completed",
        "check": "failed",                      # failed for item 2, completed for the others
        "sub": "completed", "double": "completed", "tail": "completed", "step": "completed"}
    dot = invoke("graph", run["run_id"], "--format", "dot").stdout
    fill, stroke = STATUS_COLOURS["failed"]
    assert f'"each/check" [label="check\\nPython", fillcolor="{fill}", color="{stroke}"];' in dot
    assert 'label="subflow of sub: child v1 (2 runs)";' in dot


def test_graph_of_a_stored_workflow_nests_its_bodies(invoke, write, parent):
    invoke("register", write(CHILD, "child.yaml"), parent)
    result = invoke("graph", "parent")
    assert result.exit_code == 0, result.stderr
    assert "subflow of sub: child" in clusters(result.stdout)
    assert "classDef" not in result.stdout


def test_graph_of_a_file_with_a_database_that_is_not_one(invoke, parent, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite")
    result = invoke("graph", parent, db_path=bad)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"durableflow: error: {bad}: not a durableflow database")
    assert len(result.stderr.splitlines()) == 1 and bad.read_text() == "not sqlite"
