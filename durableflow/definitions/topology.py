"""The shape of a workflow graph: entry points, handler nodes, output ports, cycles. Pure.

The validator, the planner and the node runtimes all ask these questions; they live here so that
none of them imports another for it.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Mapping

from durableflow.model import TRIGGER_RUNTIMES, NodeDef, WorkflowDef


def output_ports(node: NodeDef) -> tuple[str, ...]:
    """Named output ports: IfElse true/false; Switch its case ports plus `default` (whose value
    names the port for no match, "default" when absent); other nodes what `ports:` declares."""
    if node.runtime_type == "IfElse":
        return ("true", "false")
    if node.runtime_type == "Switch":
        cases = node.config.get("cases") or {}
        ports = [str(port) for port in cases.values()] + [str(node.config.get("default", "default"))]
        return tuple(dict.fromkeys(ports))
    return tuple(node.config.get("ports") or ())


def switch_port(node: NodeDef, value: Any) -> str:
    """The port a Switch routes `value` to. Case keys are strings: a string value matches its
    text, anything else its JSON spelling (1 -> "1", True -> "true", None -> "null")."""
    key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    cases = node.config.get("cases") or {}
    return str(cases[key]) if key in cases else str(node.config.get("default", "default"))


def child_reference(node: NodeDef) -> tuple[str, int | None] | None:
    """(workflow_id, version or None for the latest) of the registered workflow a node runs as
    child runs: a Subflow's, or a ForEach/While body's `{workflowId}`. None for other nodes and
    for an inline body (registered as `<workflowId>.<nodeId>` when the loop first runs)."""
    config = node.config
    if node.runtime_type == "Subflow":
        ref: Any = config
    elif node.runtime_type in ("ForEach", "While"):
        ref = config.get("body")
    else:
        return None
    if not isinstance(ref, Mapping) or not isinstance(ref.get("workflowId"), str):
        return None
    version = ref.get("version")
    return ref["workflowId"], version if isinstance(version, int) and not isinstance(version, bool) else None


def handler_nodes(defn: WorkflowDef) -> frozenset:
    """Compensation and fallback nodes: run on demand, never as entry points."""
    return frozenset(ref for node in defn.nodes
                     for ref in (node.compensation_node_id, node.fallback_node_id) if ref)


def entry_points(defn: WorkflowDef) -> tuple[str, ...]:
    """Trigger nodes, and nodes with no incoming connection that are not compensation/fallback."""
    targets = {c.target_node_id for c in defn.connections}
    handlers = handler_nodes(defn)
    return tuple(dict.fromkeys(
        n.node_id for n in defn.nodes
        if n.runtime_type in TRIGGER_RUNTIMES
        or (n.node_id not in targets and n.node_id not in handlers)))


def find_cycles(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component (iterative Tarjan), starting at its first node
    in definition order and following the shortest way back."""
    order = {node: i for i, node in enumerate(edges)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    components.append(component)
    cycles = [_cycle_in(sorted(c, key=order.__getitem__), edges) for c in components]
    return sorted(cycles, key=lambda cycle: order[cycle[0]])


def _cycle_in(component: list[str], edges: Mapping[str, list[str]]) -> list[str]:
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in edges[node]:
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return path[::-1]
            if child in members and child not in previous:
                previous[child] = node
                queue.append(child)
    return [start]
