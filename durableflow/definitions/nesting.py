"""What runs inside a workflow's nodes, as `durableflow graph` draws it: the body of each
ForEach/While and the workflow of each Subflow, nested; for a run, the status of their nodes
across the child runs. Pure: stored workflows come through a `lookup` function.

A node that ran in several child runs (a loop's iterations) shows the status that matters
most across them, in the order of STATUS_PRECEDENCE: a failure anywhere first, then what is
still going, then what was cancelled, and completed only where every run got there (skipped
only where it was skipped in all of them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from durableflow.definitions.parse import parse_body
from durableflow.definitions.topology import child_reference
from durableflow.model import WorkflowDef

STATUS_PRECEDENCE = ("failed", "running", "waiting", "pending", "cancelled", "completed", "skipped")
_RANK = {status: rank for rank, status in enumerate(STATUS_PRECEDENCE)}

# (workflow_id, version or None for the latest) -> the stored definition, or None if unknown
Lookup = Callable[[str, "int | None"], "WorkflowDef | None"]


@dataclass(frozen=True)
class Drawing:
    """A workflow to draw: its nodes' statuses (node id -> status word, where known) and, per
    ForEach/While/Subflow node whose child workflow is known, that workflow drawn inside it."""
    defn: WorkflowDef
    statuses: Mapping[str, str] = field(default_factory=dict)
    inner: Mapping[str, "Inner"] = field(default_factory=dict)


@dataclass(frozen=True)
class Inner:
    """The child workflow of one node: its drawing, which workflow it is, and how many child
    runs its statuses sum up (None when drawing a definition rather than a run)."""
    drawing: Drawing
    workflow_id: str
    version: int | None = None
    runs: int | None = None


@dataclass
class RunNodes:
    """One run (or the child runs of one node, merged): its workflow, the latest status of each
    of its nodes, and its own child runs by the node that started them."""
    workflow_id: str
    version: int
    statuses: dict[str, str]
    children: dict[str, list["RunNodes"]] = field(default_factory=dict)
    count: int = 1


def worst(statuses: Iterable[str]) -> str | None:
    """The status that matters most among `statuses` (see STATUS_PRECEDENCE)."""
    known = [s for s in statuses if s in _RANK]
    return min(known, key=_RANK.__getitem__) if known else None


def merge(runs: list[RunNodes]) -> RunNodes:
    """The child runs of one node as one: each node's statuses across them reduced by `worst`,
    their own children pooled by node. The workflow is the latest run's (a retry may have
    started a newer version)."""
    if len(runs) == 1:
        return runs[0]
    by_node: dict[str, list[str]] = {}
    children: dict[str, list[RunNodes]] = {}
    for run in runs:
        for node_id, status in run.statuses.items():
            by_node.setdefault(node_id, []).append(status)
        for node_id, kids in run.children.items():
            children.setdefault(node_id, []).extend(kids)
    statuses = {node_id: worst(values) or values[-1] for node_id, values in by_node.items()}
    last = runs[-1]
    return RunNodes(last.workflow_id, last.version, statuses, children, sum(r.count for r in runs))


def run_tree(runs: Iterable[tuple], nodes: Iterable[tuple[str, str, str]]) -> RunNodes:
    """The tree of a run from its rows: `runs` (run_id, parent_run_id, parent_node_id,
    workflow_id, version), the run first and parents before children; `nodes` (run_id,
    node_id, status) oldest attempt first, so the latest wins."""
    by_id: dict[str, RunNodes] = {}
    root = None
    for run_id, parent, parent_node, workflow_id, version in runs:
        run = by_id[run_id] = RunNodes(workflow_id, version, {})
        if root is None:
            root = run
        elif parent in by_id:
            by_id[parent].children.setdefault(parent_node, []).append(run)
    if root is None:
        raise ValueError("run_tree needs the run's own row first")
    for run_id, node_id, status in nodes:
        if run_id in by_id:
            by_id[run_id].statuses[node_id] = status
    return root


def stored_references(defn: WorkflowDef) -> list[tuple[str, int | None]]:
    """The registered workflows that `defn` and its inline bodies name (Subflows, loop bodies
    given by workflowId): what drawing it would look up."""
    found, todo = [], [defn]
    while todo:
        current = todo.pop()
        for node in current.nodes:
            ref = child_reference(node)
            if ref is not None:
                found.append(ref)
            elif node.runtime_type in ("ForEach", "While"):
                body, errors = parse_body(node, current)
                if body is not None and not errors:
                    todo.append(body)
    return found


def nest(defn: WorkflowDef, lookup: Lookup | None = None, run: RunNodes | None = None,
         statuses: Mapping[str, str] | None = None, _above: tuple[str, ...] = ()) -> Drawing:
    """`defn` with the child workflow of each ForEach/While/Subflow node nested inside it.

    An inline body is read from `defn`; a registered one or a Subflow's workflow from `lookup`
    (for a run, the version its child runs ran), and left out (the node is one box) when
    `lookup` does not know it or the workflow is already being drawn further out (a Subflow
    that starts its own workflow). With `run`, nodes are coloured by its statuses and each
    child workflow by its child runs'."""
    above = (*_above, defn.workflow_id)
    inner: dict[str, Inner] = {}
    for node in defn.nodes:
        kids = run.children.get(node.node_id) if run is not None else None
        merged = merge(kids) if kids else None
        child = _child(node, defn, lookup, merged, above)
        if child is not None:
            body, version = child
            inner[node.node_id] = Inner(nest(body, lookup, merged, None, above), body.workflow_id,
                                        version, merged.count if merged else (0 if run is not None else None))
    own = dict(run.statuses) if run is not None else dict(statuses or {})
    return Drawing(defn, own, inner)


def _child(node, defn: WorkflowDef, lookup: Lookup | None, merged: RunNodes | None,
           above: tuple[str, ...]) -> tuple[WorkflowDef, int | None] | None:
    if node.runtime_type in ("ForEach", "While"):
        body, errors = parse_body(node, defn)
        if body is not None:
            return (None if errors else (body, merged.version if merged else None))
    ref = child_reference(node)
    if ref is None or lookup is None:
        return None
    workflow_id, version = ref
    if merged is not None and merged.workflow_id == workflow_id:
        version = merged.version
    if workflow_id in above:
        return None
    found = lookup(workflow_id, version)
    return None if found is None else (found, version)
