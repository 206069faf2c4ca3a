"""Point a definition's error lines at the Python lines that declared what they are about.

The loader names what is wrong as `workflow 'etl': node 'fetch': field 'timeout': ...` (see
definitions/report.py); for a workflow built in Python the same line gets the file and line of
the node, connection or workflow it names in front: `etl.py:14: workflow 'etl': node 'fetch': ...`.
"""

from __future__ import annotations

import re
from typing import Iterable

from durableflow.authoring.graph import Body, Graph
from durableflow.authoring.where import Where

_BODY = re.compile(r"node (['\"])(.+?)\1: body: (.*)")
_NODE = re.compile(r"node (['\"])(.+?)\1(?::|$)")
_NODES = re.compile(r"nodes\[(\d+)\]")
_CONNECTION = re.compile(r"connections\[(\d+)\]")


def located(graph: Graph, name: str, lines: Iterable[str]) -> list[str]:
    """Each line with the declaring `file:line` in front; `name` is the loader's prefix."""
    out = []
    for line in lines:
        rest = line[len(name) + 2:] if line.startswith(f"{name}: ") else line
        out.append(f"{where_of(graph, rest)}: {line}")
    return out


def where_of(graph: Graph, rest: str) -> Where:
    """The declaration a loader line (without its workflow prefix) is about."""
    match = _BODY.match(rest)
    if match:
        node = graph._by_id.get(match.group(2))
        if node is None:
            return graph.where
        if isinstance(node._body, Body):
            return where_of(node._body, match.group(3))
        return node.where
    match = _NODE.match(rest)
    if match and match.group(2) in graph._by_id:
        return graph._by_id[match.group(2)].where
    match = _NODES.match(rest)
    if match and int(match.group(1)) < len(graph._nodes):
        return graph._nodes[int(match.group(1))].where
    match = _CONNECTION.match(rest)
    if match and int(match.group(1)) < len(graph._edges):
        return graph._edges[int(match.group(1))].where
    return graph.where
