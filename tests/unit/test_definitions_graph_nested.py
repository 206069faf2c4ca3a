"""Loop bodies and Subflow workflows drawn as nested clusters, and their nodes coloured by the
child runs (issue 15, point 4). Pure: stored workflows come through a lookup function."""

from __future__ import annotations

import re

import pytest

from durableflow.definitions import load_definition, to_dot, to_mermaid
from durableflow.definitions.draw import STATUS_COLOURS
from durableflow.definitions.nesting import RunNodes, merge, nest, run_tree, stored_references, worst

# A ForEach whose inline body holds a While (its own inline body) and a Subflow; node ids that
# Mermaid reserves (`end`) or dot must quote (`a.b-c`), and a name with quotes and brackets.
OUTER = {
    "workflowId": "orders",
    "nodes": [
        {"nodeId": "load", "runtimeType": "Python", "script": "output = [1]"},
        {"nodeId": "each", "runtimeType": "ForEach", "items": "input", "body": {
            "nodes": [
                {"nodeId": "a.b-c", "runtimeType": "Python", "script": "output = 1",
                 "name": 'Score "<it>"'},
                {"nodeId": "end", "runtimeType": "While", "condition": "iteration < 2",
                 "body": {"nodes": [{"nodeId": "page", "runtimeType": "Noop"}]}},
                {"nodeId": "sub", "runtimeType": "Subflow", "workflowId": "child"}],
            "connections": [{"sourceNodeId": "a.b-c", "targetNodeId": "end"},
                            {"sourceNodeId": "end", "targetNodeId": "sub"}]}},
        {"nodeId": "report", "runtimeType": "Noop"}],
    "connections": [{"sourceNodeId": "load", "targetNodeId": "each"},
                    {"sourceNodeId": "each", "targetNodeId": "report"}],
}
CHILD = {"workflowId": "child", "nodes": [
    {"nodeId": "double", "runtimeType": "Python", "script": "output = 2"},
    {"nodeId": "again", "runtimeType": "Subflow", "workflowId": "orders"}],   # back to the top
    "connections": [{"sourceNodeId": "double", "targetNodeId": "again"}]}


@pytest.fixture
def outer():
    return load_definition(OUTER)


def lookup(workflow_id, version):
    return {"child": load_definition(CHILD), "orders": load_definition(OUTER)}.get(workflow_id)


def mermaid_blocks(text: str) -> dict[str, list[str]]:
    """subgraph title -> the lines inside it (nested blocks included)."""
    blocks, stack = {}, []
    for line in text.splitlines():
        line = line.strip()
        match = re.match(r'subgraph (c\d+)\["(.*)"\]$', line)
        if match:
            stack.append(match.group(2))
            blocks[match.group(2)] = []
        elif line == "end":
            stack.pop()
        else:
            for title in stack:
                blocks[title].append(line)
    assert not stack, "a subgraph is not closed"
    return blocks


def mermaid_ids(text: str) -> dict[str, str]:
    """node label's first line (its id) -> its Mermaid id, for every node drawn."""
    return {label.split("<br/>")[0]: mid for mid, label in re.findall(r'^\s*(n\d+)[\[{(]+"([^"]*)"', text, re.M)}


def test_mermaid_draws_inline_bodies_as_nested_subgraphs(outer):
    text = to_mermaid(nest(outer))
    blocks = mermaid_blocks(text)
    assert set(blocks) == {"body of each: orders.each", "body of end: orders.each.end"}
    ids = mermaid_ids(text)
    body, inner = blocks["body of each: orders.each"], blocks["body of end: orders.each.end"]
    assert f'{ids["a.b-c"]}["a.b-c<br/>Score #quot;#lt;it#gt;#quot;<br/>Python"]' in body
    assert f'{ids["page"]}["page<br/>Noop"]' in inner and f'{ids["page"]}["page<br/>Noop"]' in body
    assert not any(line.startswith(ids["load"]) for line in body)
    # The loop node stays a node of its own workflow, joined to its body's entry by a dotted line.
    top_level = [line[4:] for line in text.splitlines() if re.match(r"    \S", line)]
    assert f'{ids["each"]} -.-|"per item"| {ids["a.b-c"]}' in top_level
    assert f'{ids["end"]} -.-|"per turn"| {ids["page"]}' in body
    assert f'{ids["a.b-c"]} -->|"Complete"| {ids["end"]}' in body
    # Without a lookup the Subflow is one box, naming its workflow.
    assert f'{ids["sub"]}["sub<br/>Subflow child"]' in body
    assert "double" not in text
    # Reserved words never reach Mermaid as ids; every label is escaped.
    assert ids["end"] != "end" and all(re.fullmatch(r"n\d+", i) for i in ids.values())


def test_dot_draws_inline_bodies_as_nested_clusters_with_path_names(outer):
    text = to_dot(outer)
    lines = [line.strip() for line in text.splitlines()]
    each = lines.index('subgraph "cluster_each" {')
    inner = lines.index('subgraph "cluster_each/end" {')
    close = [i for i, line in enumerate(lines) if line == "}"]
    assert each < inner < close[0] < close[1] < close[-1]
    assert lines[each + 1] == 'label="body of each: orders.each";'
    body = lines[each:close[1]]
    assert '"each/a.b-c" [label="a.b-c\\nScore \\"<it>\\"\\nPython"];' in body
    assert '"each/end/page" [label="page\\nNoop"];' in lines[inner:close[0]]
    assert '"each/a.b-c" -> "each/end" [label="Complete"];' in body
    assert '"each/end" -> "each/end/page" [label="per turn", style=dotted, color="#757575"];' in body
    assert '"each" -> "each/a.b-c" [label="per item", style=dotted, color="#757575"];' in lines[close[1]:]
    assert '"load" -> "each" [label="Complete"];' in lines


def test_a_subflows_workflow_is_drawn_when_the_lookup_knows_it_and_recursion_stops(outer):
    text = to_mermaid(nest(outer, lookup))
    blocks = mermaid_blocks(text)
    assert "subflow of sub: child" in blocks
    ids = mermaid_ids(text)
    assert f'{ids["sub"]} -.-|"child run"| {ids["double"]}' in blocks["body of each: orders.each"]
    # child's own Subflow starts "orders", already being drawn: one box, not another level.
    assert f'{ids["again"]}["again<br/>Subflow orders"]' in blocks["subflow of sub: child"]
    assert len(blocks) == 3
    dot = to_dot(nest(outer, lookup))
    assert 'subgraph "cluster_each/sub" {' in dot and '"each/sub/double" [label="double\\nPython"];' in dot
    assert stored_references(outer) == [("child", None)]


def test_a_body_given_by_workflow_id_is_drawn_from_the_lookup():
    defn = load_definition({"workflowId": "top", "nodes": [
        {"nodeId": "loop", "runtimeType": "While", "condition": "iteration < 1",
         "body": {"workflowId": "child", "version": 3}}]})
    seen = []

    def versions(workflow_id, version):
        seen.append((workflow_id, version))
        return lookup(workflow_id, version)
    text = to_mermaid(nest(defn, versions))
    # child's Subflow draws orders (latest); orders' Subflow names child, already drawn above.
    assert seen == [("child", 3), ("orders", None)]
    assert "body of loop: child v3" in mermaid_blocks(text)
    assert '["loop<br/>While child v3"]' in text


# --- a run's colours ---------------------------------------------------------------------------

def test_worst_status_across_iterations():
    assert worst(["completed", "failed", "running"]) == "failed"
    assert worst(["completed", "running", "pending"]) == "running"
    assert worst(["skipped", "completed"]) == "completed"
    assert worst(["completed", "cancelled"]) == "cancelled"
    assert worst(["skipped"]) == "skipped" and worst([]) is None


def test_merged_child_runs_pool_their_children_and_count():
    leaf = [RunNodes("leaf", 1, {"x": s}) for s in ("completed", "failed")]
    runs = [RunNodes("orders.each", 1, {"a.b-c": "completed", "sub": "completed"}, {"sub": [leaf[0]]}),
            RunNodes("orders.each", 2, {"a.b-c": "failed", "sub": "completed"}, {"sub": [leaf[1]]}),
            RunNodes("orders.each", 2, {"a.b-c": "completed"})]
    merged = merge(runs)
    assert (merged.version, merged.count) == (2, 3)
    assert merged.statuses == {"a.b-c": "failed", "sub": "completed"}
    assert merge(merged.children["sub"]).statuses == {"x": "failed"}


def test_a_runs_graph_colours_body_nodes_by_their_child_runs(outer):
    tree = [("r", None, None, "orders", 1),
            ("i0", "r", "each", "orders.each", 1), ("i1", "r", "each", "orders.each", 1),
            ("t0", "i0", "end", "orders.each.end", 1), ("t1", "i1", "end", "orders.each.end", 1),
            ("s0", "i0", "sub", "child", 4)]
    nodes = [("r", "load", "completed"), ("r", "each", "running"),
             ("i0", "a.b-c", "failed"), ("i0", "a.b-c", "completed"),     # a retry: the last wins
             ("i1", "a.b-c", "completed"), ("i0", "end", "completed"), ("i1", "end", "running"),
             ("t0", "page", "completed"), ("t1", "page", "failed"),
             ("i0", "sub", "completed"), ("s0", "double", "completed")]
    drawing = nest(outer, lookup, run_tree(tree, nodes))
    text = to_mermaid(drawing)
    ids = mermaid_ids(text)
    classes = dict(re.findall(r"^\s*class (\S+) (\w+)$", text, re.M))
    status_of = {mid: status for members, status in classes.items() for mid in members.split(",")}
    assert {node: status_of.get(ids[node]) for node in ids} == {
        "load": "completed", "each": "running", "report": None, "a.b-c": "completed", "end": "running",
        "page": "failed", "sub": "completed", "double": "completed", "again": None}
    blocks = mermaid_blocks(text)
    assert {"body of each: orders.each v1 (2 runs)", "body of end: orders.each.end v1 (2 runs)",
            "subflow of sub: child v4 (1 run)"} == set(blocks)
    dot = to_dot(drawing)
    fill, stroke = STATUS_COLOURS["failed"]
    assert f'"each/end/page" [label="page\\nNoop", fillcolor="{fill}", color="{stroke}"];' in dot


def test_a_loop_that_has_not_started_shows_no_runs(outer):
    drawing = nest(outer, None, run_tree([("r", None, None, "orders", 1)], [("r", "load", "running")]))
    assert "body of each: orders.each (0 runs)" in to_mermaid(drawing)
