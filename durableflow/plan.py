"""A workflow definition prepared for execution: graph indexes and compiled expressions.

Built once per (workflow, version) and kept in `Plans`, so routing a completion is a few
dictionary lookups and already-compiled expression evaluations. No I/O: `Plans` is handed the
function that reads a stored definition.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from durableflow.definitions.topology import entry_points, handler_nodes
from durableflow.expressions import Expression, compile_expression
from durableflow.limits import Limits, limits_of
from durableflow.model import PRIORITIES, TRIGGER_RUNTIMES, Connection, NodeDef, WorkflowDef


@dataclass(frozen=True)
class Edge:
    index: int                 # position in definition.connections: the join slot it fills
    conn: Connection
    condition: Expression | None

    def matches(self, outcome: str, port: str | None) -> bool:
        """Does a node that ended with `outcome` ('Complete'/'Fail') on `port` trigger this edge?"""
        trigger = self.conn.trigger
        if trigger != "Any" and trigger != outcome:
            return False
        return self.conn.source_port is None or self.conn.source_port == port


@dataclass
class Plan:
    definition: WorkflowDef
    version: int
    nodes: dict[str, NodeDef]
    outgoing: dict[str, list[Edge]]
    incoming: dict[str, list[Edge]]
    entries: list[str]
    terminals: frozenset
    priorities: dict[str, int]
    helpers: frozenset
    compiled: dict[str, Expression] = field(default_factory=dict)   # node-level expressions
    # The entry nodes a run started by hand (start, run, execute) starts from: all but Timer and
    # Event nodes, which fire and emit start; a workflow with no other entry starts from them all.
    started_by_hand: tuple = ()
    limits: dict[str, Limits] = field(default_factory=dict)   # nodes with limits or a breaker
    # Compensation: the nodes with a compensationNodeId (as a JSON list, for SQL), and whether
    # a run of it can have anything to undo (those, or child runs that may have some).
    compensated_json: str = "[]"
    may_compensate: bool = False
    # Whether any node joins inputs (more than one incoming connection, or joinMode each): only
    # then can a run hold `joins` rows.
    has_joins: bool = True

    @property
    def workflow_id(self) -> str:
        return self.definition.workflow_id

    def downstream(self, node_id: str) -> set[str]:
        """`node_id` and every node reachable from it."""
        seen, todo = {node_id}, [node_id]
        while todo:
            for edge in self.outgoing[todo.pop()]:
                if edge.conn.target_node_id not in seen:
                    seen.add(edge.conn.target_node_id)
                    todo.append(edge.conn.target_node_id)
        return seen

    def input_key(self, edge: Edge) -> str:
        """The key under which a delivery over `edge` appears in the target's ctx.inputs."""
        return edge.conn.target_port or edge.conn.source_node_id


def _compile(text) -> Expression | None:
    return compile_expression(text) if isinstance(text, str) and text.strip() else None


def build_plan(definition: WorkflowDef, version: int) -> Plan:
    nodes = {n.node_id: n for n in definition.nodes}
    outgoing: dict[str, list[Edge]] = {nid: [] for nid in nodes}
    incoming: dict[str, list[Edge]] = {nid: [] for nid in nodes}
    for i, c in enumerate(definition.connections):
        edge = Edge(i, c, _compile(c.condition))
        outgoing[c.source_node_id].append(edge)
        incoming[c.target_node_id].append(edge)
    # Compensation and fallback nodes only run when called on; they are not entry points.
    helpers = handler_nodes(definition)
    entries = list(entry_points(definition))
    terminals = frozenset(nid for nid in nodes if not outgoing[nid] and nid not in helpers)
    compiled = {}
    for n in definition.nodes:
        for key in ("condition", "expression", "items"):
            expr = _compile(n.config.get(key)) if n.runtime_type in ("IfElse", "Switch", "ForEach", "While") else None
            if expr is not None:
                compiled[f"{n.node_id}.{key}"] = expr
    priorities = {nid: PRIORITIES.get(n.priority, 1) for nid, n in nodes.items()}
    by_hand = tuple(e for e in entries if nodes[e].runtime_type not in ("Timer", "Event")) or tuple(entries)
    limits = {n.node_id: found for n in definition.nodes if (found := limits_of(n, definition.workflow_id))}
    compensated = [n.node_id for n in definition.nodes if n.compensation_node_id]
    calls_children = any(n.runtime_type in CHILD_RUNTIMES for n in definition.nodes)
    has_joins = any(len(incoming[nid]) > 1 or n.join_mode == "each" for nid, n in nodes.items())
    return Plan(definition, version, nodes, outgoing, incoming, entries, terminals, priorities,
                helpers, compiled, by_hand, limits, json.dumps(compensated),
                bool(compensated) or calls_children, has_joins)


CHILD_RUNTIMES = ("Subflow", "ForEach", "While")   # nodes whose work is child runs


def is_trigger(node: NodeDef) -> bool:
    return node.runtime_type in TRIGGER_RUNTIMES


class Plans:
    """Plans by (workflow_id, version), each built once per process.

    `load(workflow_id, version, conn)` reads a stored definition, through `conn` when a
    transaction asks (it sees a version that transaction registered, e.g. an inline loop body
    whose first runs the same transaction claims) or through a reader when conn is None. Only
    committed versions are kept: a version registered by a transaction that rolls back must not
    stay here, where a different definition that later takes the same number would find it.
    """

    def __init__(self, load: Callable[[str, int, Any], WorkflowDef]):
        self._load = load
        self._plans: dict[tuple[str, int], Plan] = {}
        self._lock = threading.Lock()

    def get(self, workflow_id: str, version: int, conn=None) -> Plan:
        plan = self._plans.get((workflow_id, version))
        if plan is not None:
            return plan
        definition = self._load(workflow_id, version, conn)
        if conn is None:
            return self.add(definition, version)
        plan = build_plan(definition, version)
        conn.on_commit(functools.partial(self._keep, plan))
        return plan

    def add(self, definition: WorkflowDef, version: int) -> Plan:
        """Keep the plan of a version that is committed."""
        plan = self._plans.get((definition.workflow_id, version))
        return plan if plan is not None else self._keep(build_plan(definition, version))

    def _keep(self, plan: Plan) -> Plan:
        with self._lock:
            return self._plans.setdefault((plan.workflow_id, plan.version), plan)
