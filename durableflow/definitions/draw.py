"""A definition as a Mermaid flowchart or a Graphviz digraph, optionally coloured by node status.

Edges are labelled with the trigger type, the ports (`true`, `a->b` for source->target port) and
the condition. Fail edges are dashed. Node ids are replaced by n0, n1, ... in Mermaid because its
grammar reserves words (`end`) and characters that workflow ids may contain.

The body of a ForEach/While node and the workflow of a Subflow are drawn as a cluster of their
own (a Mermaid `subgraph`, a dot `subgraph cluster_...`), nested as deep as they go, with a
dotted edge from the node to the entry nodes of what it runs (see nesting.py for what is known).
In dot, a node inside a cluster is named by its path: `each/score`.
"""

from __future__ import annotations

from typing import Mapping

from durableflow.definitions.nesting import Drawing, Inner, nest
from durableflow.definitions.topology import child_reference, entry_points
from durableflow.model import Connection, NodeDef, WorkflowDef

# status -> (fill, stroke)
STATUS_COLOURS = {
    "completed": ("#c8e6c9", "#2e7d32"),
    "failed": ("#ffcdd2", "#c62828"),
    "running": ("#bbdefb", "#1565c0"),
    "skipped": ("#e0e0e0", "#757575"),
    "pending": ("#fafafa", "#9e9e9e"),
    "waiting": ("#fafafa", "#9e9e9e"),
    "cancelled": ("#ffe0b2", "#ef6c00"),
}


# the dotted edge from a node to the entry nodes of what it runs
INNER_EDGE = {"ForEach": "per item", "While": "per turn", "Subflow": "child run"}


def node_text(node: NodeDef) -> list[str]:
    lines = [node.node_id]
    if node.name and node.name != node.node_id:
        lines.append(node.name)
    ref = child_reference(node)
    if ref is None:
        lines.append(node.runtime_type)
    else:
        version = f" v{ref[1]}" if ref[1] is not None else ""
        lines.append(f"{node.runtime_type} {ref[0]}{version}")
    return lines


def cluster_text(node: NodeDef, inner: Inner) -> str:
    """The title of the cluster drawn for a node's body or Subflow workflow."""
    what = "subflow" if node.runtime_type == "Subflow" else "body"
    version = f" v{inner.version}" if inner.version is not None else ""
    runs = "" if inner.runs is None else f" ({inner.runs} run{'' if inner.runs == 1 else 's'})"
    return f"{what} of {node.node_id}: {inner.workflow_id}{version}{runs}"


def edge_text(conn: Connection) -> str:
    parts = [conn.trigger]
    if conn.source_port or conn.target_port:
        ports = conn.source_port or ""
        if conn.target_port:
            ports += f"->{conn.target_port}"
        parts.append(f"[{ports}]")
    if conn.condition:
        parts.append(f"if {conn.condition}")
    return " ".join(parts)


def _drawing(source: WorkflowDef | Drawing, statuses: Mapping[str, str] | None) -> Drawing:
    """A bare definition is drawn with its inline loop bodies (no stored workflow to look up)."""
    return source if isinstance(source, Drawing) else nest(source, statuses=statuses)


def _status(statuses: Mapping[str, str] | None, node_id: str) -> str | None:
    if not statuses or node_id not in statuses:
        return None
    value = statuses[node_id]
    value = getattr(value, "value", value)  # a NodeStatus enum or its word
    return value if value in STATUS_COLOURS else None


# --- Mermaid --------------------------------------------------------------------------------------

def _mermaid_escape(text: str) -> str:
    # Mermaid's entity codes; '#' first so the codes themselves survive
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"),
                       ("|", "#124;"), ("\n", " "), ("\r", " ")):
        text = text.replace(char, code)
    return text


def to_mermaid(source: WorkflowDef | Drawing, statuses: Mapping[str, str] | None = None) -> str:
    drawing = _drawing(source, statuses)
    ids: dict[tuple[str, ...], str] = {}
    classes: dict[str, list[str]] = {}
    out = ["flowchart TD"]
    _mermaid_into(out, drawing, (), ids, classes, [0])
    for status, members in classes.items():
        fill, stroke = STATUS_COLOURS[status]
        out.append(f"    classDef {status} fill:{fill},stroke:{stroke},color:#000")
        out.append(f"    class {','.join(members)} {status}")
    return "\n".join(out) + "\n"


def _mermaid_into(out: list[str], drawing: Drawing, path: tuple[str, ...], ids: dict, classes: dict,
                  clusters: list[int]) -> None:
    indent = "    " * (len(path) + 1)
    nodes = drawing.defn.nodes
    for node in nodes:
        ids.setdefault((*path, node.node_id), f"n{len(ids)}")
    for node in nodes:
        mermaid_id = ids[(*path, node.node_id)]
        label = "<br/>".join(_mermaid_escape(part) for part in node_text(node))
        if node.runtime_type in ("IfElse", "Switch"):
            shape = f'{{"{label}"}}'
        elif node.runtime_type in ("Timer", "Manual", "Event"):
            shape = f'(["{label}"])'
        else:
            shape = f'["{label}"]'
        out.append(f"{indent}{mermaid_id}{shape}")
        status = _status(drawing.statuses, node.node_id)
        if status:
            classes.setdefault(status, []).append(mermaid_id)
    for node in nodes:
        inner = drawing.inner.get(node.node_id)
        if inner is None:
            continue
        cluster = f"c{clusters[0]}"
        clusters[0] += 1
        out.append(f'{indent}subgraph {cluster}["{_mermaid_escape(cluster_text(node, inner))}"]')
        _mermaid_into(out, inner.drawing, (*path, node.node_id), ids, classes, clusters)
        out.append(f"{indent}end")
        label = _mermaid_escape(INNER_EDGE[node.runtime_type])
        for entry in entry_points(inner.drawing.defn):
            out.append(f'{indent}{ids[(*path, node.node_id)]} -.-|"{label}"| {ids[(*path, node.node_id, entry)]}')
    for conn in drawing.defn.connections:
        source, target = ids.get((*path, conn.source_node_id)), ids.get((*path, conn.target_node_id))
        if source is None or target is None:
            continue
        arrow = "-.->" if conn.trigger == "Fail" else "-->"
        out.append(f'{indent}{source} {arrow}|"{_mermaid_escape(edge_text(conn))}"| {target}')


# --- Graphviz -------------------------------------------------------------------------------------

def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(source: WorkflowDef | Drawing, statuses: Mapping[str, str] | None = None) -> str:
    drawing = _drawing(source, statuses)
    out = [f"digraph {_dot_quote(drawing.defn.workflow_id)} {{",
           "    rankdir=TB;",
           '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
           '    edge [fontname="Helvetica", fontsize=10];']
    _dot_into(out, drawing, ())
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_name(path: tuple[str, ...], node_id: str) -> str:
    return _dot_quote("/".join((*path, node_id)))


def _dot_into(out: list[str], drawing: Drawing, path: tuple[str, ...]) -> None:
    indent = "    " * (len(path) + 1)
    for node in drawing.defn.nodes:
        attrs = [f"label={_dot_quote(chr(10).join(node_text(node)))}"]
        if node.runtime_type in ("IfElse", "Switch"):
            attrs.append("shape=diamond")
        status = _status(drawing.statuses, node.node_id)
        if status:
            fill, stroke = STATUS_COLOURS[status]
            attrs += [f'fillcolor="{fill}"', f'color="{stroke}"']
        out.append(f"{indent}{_dot_name(path, node.node_id)} [{', '.join(attrs)}];")
    for node in drawing.defn.nodes:
        inner = drawing.inner.get(node.node_id)
        if inner is None:
            continue
        here = (*path, node.node_id)
        out.append(f"{indent}subgraph {_dot_quote('cluster_' + '/'.join(here))} {{")
        out.append(f"{indent}    label={_dot_quote(cluster_text(node, inner))};")
        out.append(f'{indent}    style="rounded,dashed"; color="#9e9e9e"; fontname="Helvetica";')
        _dot_into(out, inner.drawing, here)
        out.append(f"{indent}}}")
        label = _dot_quote(INNER_EDGE[node.runtime_type])
        for entry in entry_points(inner.drawing.defn):
            out.append(f"{indent}{_dot_name(path, node.node_id)} -> {_dot_name(here, entry)} "
                       f'[label={label}, style=dotted, color="#757575"];')
    for conn in drawing.defn.connections:
        attrs = [f"label={_dot_quote(edge_text(conn))}"]
        if conn.trigger == "Fail":
            attrs += ["style=dashed", 'color="#c62828"']
        out.append(f"{indent}{_dot_name(path, conn.source_node_id)} -> {_dot_name(path, conn.target_node_id)} "
                   f"[{', '.join(attrs)}];")
