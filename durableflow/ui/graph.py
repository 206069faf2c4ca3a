"""A workflow's graph as inline SVG, laid out here (no JavaScript library, no Graphviz).

Layers top to bottom by longest path from the entry nodes; within a layer, nodes ordered by the
mean position of their neighbours (a few sweeps of the barycentre heuristic, as Graphviz's dot
starts). Each node is `<g class="node s-STATUS" data-node="ID">`: the page's script recolours it
from the run's events, and the colours come from definitions.draw, as `durableflow graph`'s do.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping

from durableflow.definitions.draw import STATUS_COLOURS, edge_text
from durableflow.model import WorkflowDef
from durableflow.ui.html import Markup, clip, html, join

NODE_W, NODE_H = 176, 50
GAP_X, GAP_Y = 36, 64
MARGIN = 16
SWEEPS = 4


def layers(defn: WorkflowDef) -> list[list[str]]:
    """Node ids by layer (longest path from a node with no incoming connection), each layer in
    an order that keeps connections short."""
    ids = [n.node_id for n in defn.nodes]
    known = set(ids)
    edges = [(c.source_node_id, c.target_node_id) for c in defn.connections
             if c.source_node_id in known and c.target_node_id in known
             and c.source_node_id != c.target_node_id]
    succ: dict[str, list[str]] = defaultdict(list)
    pred: dict[str, list[str]] = defaultdict(list)
    for s, t in edges:
        succ[s].append(t)
        pred[t].append(s)
    indegree = {i: len(pred[i]) for i in ids}
    depth = {i: 0 for i in ids}
    ready = [i for i in ids if indegree[i] == 0]
    placed = set()
    while ready:
        node = ready.pop(0)
        placed.add(node)
        for t in succ[node]:
            depth[t] = max(depth[t], depth[node] + 1)
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    # A cycle (a definition stored by hand: the loader refuses them) goes below the rest.
    bottom = max(depth.values(), default=0) + 1
    for i in ids:
        if i not in placed:
            depth[i] = bottom
    rows: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for i in ids:
        rows[depth[i]].append(i)
    rows = [r for r in rows if r]
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        order = range(1, len(rows)) if down else range(len(rows) - 2, -1, -1)
        for k in order:
            ref = rows[k - 1] if down else rows[k + 1]
            pos = {n: p for p, n in enumerate(ref)}
            near = pred if down else succ
            here = {n: p for p, n in enumerate(rows[k])}
            rows[k] = sorted(rows[k], key=lambda n: _barycentre(n, near, pos, here[n]))
    return rows


def _barycentre(node: str, near: Mapping[str, list[str]], pos: Mapping[str, int], current: int) -> float:
    mine = [pos[n] for n in near.get(node, ()) if n in pos]
    return sum(mine) / len(mine) if mine else float(current)


def positions(rows: list[list[str]]) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Top-left corner of each node, and the drawing's width and height; layers centred."""
    widest = max((len(r) for r in rows), default=0)
    width = 2 * MARGIN + widest * NODE_W + max(0, widest - 1) * GAP_X
    height = 2 * MARGIN + len(rows) * NODE_H + max(0, len(rows) - 1) * GAP_Y
    at = {}
    for k, row in enumerate(rows):
        row_w = len(row) * NODE_W + max(0, len(row) - 1) * GAP_X
        x0 = (width - row_w) / 2
        for p, node in enumerate(row):
            at[node] = (x0 + p * (NODE_W + GAP_X), MARGIN + k * (NODE_H + GAP_Y))
    return at, width, height


def svg(defn: WorkflowDef, statuses: Mapping[str, str] | None = None) -> Markup:
    """The graph, each node coloured by `statuses` (node id -> status word) where given."""
    statuses = statuses or {}
    at, width, height = positions(layers(defn))
    edges = []
    for c in defn.connections:
        if c.source_node_id not in at or c.target_node_id not in at:
            continue
        sx, sy = at[c.source_node_id]
        tx, ty = at[c.target_node_id]
        x1, y1, x2, y2 = sx + NODE_W / 2, sy + NODE_H, tx + NODE_W / 2, ty
        bend = max(GAP_Y / 2, (y2 - y1) / 2)
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
        kind = "fail" if c.trigger == "Fail" else ("any" if c.trigger == "Any" else "ok")
        label = edge_text(c)
        text = Markup("")
        if label != "Complete":   # the usual case says nothing
            text = html('<text class="edge-label" x="{}" y="{}">{}</text>',
                        f"{(x1 + x2) / 2 + 4:.1f}", f"{(y1 + y2) / 2:.1f}", clip(label, 40))
        edges.append(html('<g class="edge e-{}"><title>{}</title><path d="{}" marker-end="url(#arrow)"/>{}</g>',
                          kind, f"{c.source_node_id} -> {c.target_node_id}: {label}", path, text))
    nodes = []
    for n in defn.nodes:
        x, y = at[n.node_id]
        status = statuses.get(n.node_id) or "none"
        title = n.node_id + (f" ({n.name})" if n.name and n.name != n.node_id else "") + f": {n.runtime_type}"
        nodes.append(html(
            '<g class="node s-{}" data-node="{}" tabindex="0"><title>{}</title>'
            '<rect x="{}" y="{}" width="{}" height="{}" rx="8"/>'
            '<text class="node-id" x="{}" y="{}">{}</text>'
            '<text class="node-type" x="{}" y="{}">{}</text></g>',
            status, n.node_id, title, f"{x:.1f}", f"{y:.1f}", NODE_W, NODE_H,
            f"{x + NODE_W / 2:.1f}", f"{y + 21:.1f}", clip(n.node_id, 24),
            f"{x + NODE_W / 2:.1f}", f"{y + 38:.1f}", clip(n.runtime_type, 24)))
    return html(
        '<svg class="graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="{}" height="{}" '
        'role="img" aria-label="{}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/>'
        '</marker></defs>{}{}</svg>',
        f"{width:.0f}", f"{height:.0f}", f"{width:.0f}", f"{height:.0f}",
        f"graph of workflow {defn.workflow_id}", join(edges), join(nodes))


def status_css() -> str:
    """The node colours by status, from definitions.draw (served as /static/status.css)."""
    rules = [f"svg.graph .node.s-{status} rect {{ fill: {fill}; stroke: {stroke}; }}"
             for status, (fill, stroke) in STATUS_COLOURS.items()]
    return "\n".join(rules) + "\n"
