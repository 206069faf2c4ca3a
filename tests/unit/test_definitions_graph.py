"""Mermaid and Graphviz export: every node, labelled edges, colours by run status."""

from __future__ import annotations

import re

import pytest

from durableflow.definitions import load_definition, to_dot, to_mermaid
from durableflow.definitions.draw import STATUS_COLOURS
from durableflow.model import NodeStatus

DEFINITION = {
    "workflowId": "graph-demo",
    "nodes": [
        {"nodeId": "fetch", "runtimeType": "Shell", "command": ["echo", "{}"], "name": 'Fetch "all"'},
        {"nodeId": "check", "runtimeType": "IfElse", "condition": "input.rows > 0"},
        {"nodeId": "end", "runtimeType": "Noop"},
        {"nodeId": "alert", "runtimeType": "Noop"},
        {"nodeId": "cleanup", "runtimeType": "Noop"},
    ],
    "connections": [
        {"sourceNodeId": "fetch", "targetNodeId": "check", "triggerMessageType": "Complete",
         "condition": 'output.kind == "csv"'},
        {"sourceNodeId": "check", "targetNodeId": "end", "sourcePort": "true", "targetPort": "data"},
        {"sourceNodeId": "check", "targetNodeId": "alert", "sourcePort": "false"},
        {"sourceNodeId": "fetch", "targetNodeId": "cleanup", "triggerMessageType": "Fail"},
    ],
}


@pytest.fixture
def defn():
    return load_definition(DEFINITION)


def test_mermaid_has_every_node_and_labelled_edge(defn):
    text = to_mermaid(defn)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert 'n0["fetch<br/>Fetch #quot;all#quot;<br/>Shell"]' in lines[1]
    assert 'n1{"check<br/>IfElse"}' in text
    assert 'n2["end<br/>Noop"]' in text  # "end" is a Mermaid keyword: ids are n0, n1, ...
    assert 'n0 -->|"Complete if output.kind == #quot;csv#quot;"| n1' in text
    assert 'n1 -->|"Complete [true-#gt;data]"| n2' in text
    assert 'n1 -->|"Complete [false]"| n3' in text
    assert 'n0 -.->|"Fail"| n4' in text
    assert "classDef" not in text


def test_mermaid_labels_never_carry_raw_quotes_or_brackets(defn):
    for line in to_mermaid(defn).splitlines()[1:]:
        for label in re.findall(r'"([^"]*)"', line):
            assert "<" not in label.replace("<br/>", "") and ">" not in label.replace("<br/>", "")


def test_mermaid_colours_by_status(defn):
    statuses = {"fetch": "completed", "check": NodeStatus.FAILED, "end": "running",
                "alert": "skipped", "cleanup": "cancelled"}
    text = to_mermaid(defn, statuses)
    assert f"classDef completed fill:{STATUS_COLOURS['completed'][0]}" in text
    assert "class n0 completed" in text
    assert "class n1 failed" in text
    assert "class n2 running" in text
    assert "class n3 skipped" in text
    assert "class n4 cancelled" in text


def test_pending_and_waiting_share_a_pale_colour(defn):
    text = to_mermaid(defn, {"fetch": "pending", "check": "waiting", "end": "unknown-word"})
    assert "class n0 pending" in text and "class n1 waiting" in text
    assert "n2 unknown" not in text
    assert STATUS_COLOURS["pending"] == STATUS_COLOURS["waiting"]


def test_dot_has_every_node_and_labelled_edge(defn):
    text = to_dot(defn)
    assert text.startswith('digraph "graph-demo" {')
    for node_id in ("fetch", "check", "end", "alert", "cleanup"):
        assert f'"{node_id}" [label="{node_id}\\n' in text
    assert '"fetch" [label="fetch\\nFetch \\"all\\"\\nShell"]' in text
    assert '"check" -> "end" [label="Complete [true->data]"]' in text
    assert '"fetch" -> "check" [label="Complete if output.kind == \\"csv\\""]' in text
    assert '"fetch" -> "cleanup" [label="Fail", style=dashed' in text
    assert text.rstrip().endswith("}")


def test_dot_colours_by_status(defn):
    text = to_dot(defn, {"fetch": "completed", "check": "failed"})
    fill, stroke = STATUS_COLOURS["completed"]
    assert f'"fetch" [label="fetch\\nFetch \\"all\\"\\nShell", fillcolor="{fill}", color="{stroke}"]' in text
    assert f'fillcolor="{STATUS_COLOURS["failed"][0]}"' in text
