"""A workflow's graph as inline SVG, laid out here (no JavaScript library, no Graphviz).

Layers top to bottom by longest path from the entry nodes; a connection that skips layers passes
through a waypoint in each; within a layer, nodes and waypoints ordered by the mean position of
their neighbours (a few sweeps of the barycentre heuristic, as Graphviz's dot starts). Each node is `<g class="node s-STATUS" data-node="ID">`: the page's script recolours it
from the run's events, and the colours come from definitions.draw, as `durableflow graph`'s do.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping

from durableflow.definitions.draw import STATUS_COLOURS, edge_text
from durableflow.model import WorkflowDef
from durableflow.ui.html import Markup, clip, html, join

NODE_W, NODE_H = 176, 50
GAP_X, GAP_Y = 36, 64
DUMMY_W = 12          # the width a long connection takes in the layers it passes through
MARGIN = 16
SWEEPS = 7           # odd: the last sweep goes down, ordering each layer by its parents


@dataclass
class Layout:
    rows: list[list[str]]                       # node ids and waypoints ("\0" + n), by layer
    at: dict[str, tuple[float, float, float]]   # left, top and width of each
    width: float
    height: float
    waypoints: dict[int, list[str]]             # connection index -> its waypoints, top down


def layout(defn: WorkflowDef) -> Layout:
    """Layers by longest path from a node with no incoming connection; a connection that skips
    layers gets a waypoint in each, so that the ordering keeps it clear of the nodes it passes;
    each layer ordered by the barycentre of its neighbours, sweeping down and up."""
    ids = [n.node_id for n in defn.nodes]
    known = set(ids)
    edges = [(i, c.source_node_id, c.target_node_id) for i, c in enumerate(defn.connections)
             if c.source_node_id in known and c.target_node_id in known
             and c.source_node_id != c.target_node_id]
    depth = _depths(ids, [(s, t) for _, s, t in edges])
    succ: dict[str, list[str]] = defaultdict(list)
    pred: dict[str, list[str]] = defaultdict(list)
    rows: list[list[str]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for i in ids:
        rows[depth[i]].append(i)
    waypoints: dict[int, list[str]] = {}
    for index, s, t in edges:
        chain = [s]
        if depth[t] > depth[s] + 1:
            waypoints[index] = [f"\0{index}:{k}" for k in range(depth[s] + 1, depth[t])]
            for k, w in zip(range(depth[s] + 1, depth[t]), waypoints[index]):
                rows[k].append(w)
            chain += waypoints[index]
        chain.append(t)
        for a, b in zip(chain, chain[1:]):
            succ[a].append(b)
            pred[b].append(a)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for k in (range(1, len(rows)) if down else range(len(rows) - 2, -1, -1)):
            pos = {n: p for p, n in enumerate(rows[k - 1] if down else rows[k + 1])}
            here = {n: p for p, n in enumerate(rows[k])}
            near = pred if down else succ
            rows[k] = sorted(rows[k], key=lambda n: _barycentre(n, near, pos, here[n]))
    return _place(rows, waypoints)


def _depths(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    succ: dict[str, list[str]] = defaultdict(list)
    indegree = {i: 0 for i in ids}
    for s, t in edges:
        succ[s].append(t)
        indegree[t] += 1
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
    return {i: depth[i] if i in placed else bottom for i in ids}


def _barycentre(node: str, near: Mapping[str, list[str]], pos: Mapping[str, int], current: int) -> float:
    mine = [pos[n] for n in near.get(node, ()) if n in pos]
    return sum(mine) / len(mine) if mine else float(current)


def _place(rows: list[list[str]], waypoints: dict[int, list[str]]) -> Layout:
    def w(n: str) -> float:
        return DUMMY_W if n.startswith("\0") else NODE_W

    spans = [sum(w(n) for n in row) + GAP_X * max(0, len(row) - 1) for row in rows]
    width = 2 * MARGIN + max(spans, default=0)
    height = 2 * MARGIN + len(rows) * NODE_H + max(0, len(rows) - 1) * GAP_Y
    at: dict[str, tuple[float, float, float]] = {}
    for k, row in enumerate(rows):
        x = (width - spans[k]) / 2
        for n in row:
            at[n] = (x, MARGIN + k * (NODE_H + GAP_Y), w(n))
            x += w(n) + GAP_X
    return Layout(rows, at, width, height, waypoints)


def _route(lay: Layout, index: int, source: str, target: str) -> tuple[str, tuple[float, float]]:
    """An SVG path from the bottom of `source` through its waypoints to the top of `target`, and
    where its label goes."""
    sx, sy, sw = lay.at[source]
    tx, ty, tw = lay.at[target]
    points = [(sx + sw / 2, sy + NODE_H)]
    for wp in lay.waypoints.get(index, ()):
        x, y, ww = lay.at[wp]
        points += [(x + ww / 2, y), (x + ww / 2, y + NODE_H)]
    points.append((tx + tw / 2, ty))
    path = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for (x1, y1), (x2, y2) in zip(points, points[1:]):
        if x1 == x2 and y2 - y1 == NODE_H:          # straight through a waypoint's layer
            path.append(f"L{x2:.1f},{y2:.1f}")
        else:
            bend = (y2 - y1) / 2
            path.append(f"C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}")
    (x1, y1), (x2, y2) = points[0], points[1]
    return " ".join(path), ((x1 + x2) / 2, (y1 + y2) / 2)


def svg(defn: WorkflowDef, statuses: Mapping[str, str] | None = None) -> Markup:
    """The graph, each node coloured by `statuses` (node id -> status word) where given."""
    statuses = statuses or {}
    lay = layout(defn)
    edges = []
    for index, c in enumerate(defn.connections):
        if c.source_node_id not in lay.at or c.target_node_id not in lay.at:
            continue
        path, (lx, ly) = _route(lay, index, c.source_node_id, c.target_node_id)
        kind = "fail" if c.trigger == "Fail" else ("any" if c.trigger == "Any" else "ok")
        label = edge_text(c)
        text = Markup("")
        if label != "Complete":   # the usual case says nothing
            text = html('<text class="edge-label" x="{}" y="{}">{}</text>', f"{lx + 4:.1f}", f"{ly:.1f}",
                        clip(label, 40))
        edges.append(html('<g class="edge e-{}"><title>{}</title><path d="{}" marker-end="url(#arrow)"/>{}</g>',
                          kind, f"{c.source_node_id} -> {c.target_node_id}: {label}", path, text))
    nodes = []
    for n in defn.nodes:
        x, y, _w = lay.at[n.node_id]
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
        f"{lay.width:.0f}", f"{lay.height:.0f}", f"{lay.width:.0f}", f"{lay.height:.0f}",
        f"graph of workflow {defn.workflow_id}", join(edges), join(nodes))


def status_css() -> str:
    """The node colours by status, from definitions.draw (served as /static/status.css)."""
    rules = [f"svg.graph .node.s-{status} rect {{ fill: {fill}; stroke: {stroke}; }}"
             for status, (fill, stroke) in STATUS_COLOURS.items()]
    return "\n".join(rules) + "\n"
