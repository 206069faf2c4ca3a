"""A definition as a Mermaid flowchart or a Graphviz digraph, optionally coloured by node status.

Edges are labelled with the trigger type, the ports (`true`, `a->b` for source->target port) and
the condition. Fail edges are dashed. Node ids are replaced by n0, n1, ... in Mermaid because its
grammar reserves words (`end`) and characters that workflow ids may contain.
"""

from __future__ import annotations

from typing import Mapping

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


def node_text(node: NodeDef) -> list[str]:
    lines = [node.node_id]
    if node.name and node.name != node.node_id:
        lines.append(node.name)
    lines.append(node.runtime_type)
    return lines


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


def to_mermaid(defn: WorkflowDef, statuses: Mapping[str, str] | None = None) -> str:
    ids = {}
    for node in defn.nodes:
        ids.setdefault(node.node_id, f"n{len(ids)}")
    out = ["flowchart TD"]
    for node in defn.nodes:
        label = "<br/>".join(_mermaid_escape(part) for part in node_text(node))
        if node.runtime_type in ("IfElse", "Switch"):
            shape = f'{{"{label}"}}'
        elif node.runtime_type in ("Timer", "Manual", "Event"):
            shape = f'(["{label}"])'
        else:
            shape = f'["{label}"]'
        out.append(f"    {ids[node.node_id]}{shape}")
    for conn in defn.connections:
        source, target = ids.get(conn.source_node_id), ids.get(conn.target_node_id)
        if source is None or target is None:
            continue
        arrow = "-.->" if conn.trigger == "Fail" else "-->"
        out.append(f'    {source} {arrow}|"{_mermaid_escape(edge_text(conn))}"| {target}')
    classes: dict[str, list[str]] = {}
    for node_id, mermaid_id in ids.items():
        status = _status(statuses, node_id)
        if status:
            classes.setdefault(status, []).append(mermaid_id)
    for status, members in classes.items():
        fill, stroke = STATUS_COLOURS[status]
        out.append(f"    classDef {status} fill:{fill},stroke:{stroke},color:#000")
        out.append(f"    class {','.join(members)} {status}")
    return "\n".join(out) + "\n"


# --- Graphviz -------------------------------------------------------------------------------------

def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(defn: WorkflowDef, statuses: Mapping[str, str] | None = None) -> str:
    out = [f"digraph {_dot_quote(defn.workflow_id)} {{",
           "    rankdir=TB;",
           '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
           '    edge [fontname="Helvetica", fontsize=10];']
    for node in defn.nodes:
        attrs = [f"label={_dot_quote(chr(10).join(node_text(node)))}"]
        if node.runtime_type in ("IfElse", "Switch"):
            attrs.append("shape=diamond")
        status = _status(statuses, node.node_id)
        if status:
            fill, stroke = STATUS_COLOURS[status]
            attrs += [f'fillcolor="{fill}"', f'color="{stroke}"']
        out.append(f"    {_dot_quote(node.node_id)} [{', '.join(attrs)}];")
    for conn in defn.connections:
        attrs = [f"label={_dot_quote(edge_text(conn))}"]
        if conn.trigger == "Fail":
            attrs += ["style=dashed", 'color="#c62828"']
        out.append(f"    {_dot_quote(conn.source_node_id)} -> {_dot_quote(conn.target_node_id)} "
                   f"[{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"
