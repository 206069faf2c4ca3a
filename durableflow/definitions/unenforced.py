"""Fields that load but can never take effect as written: a fallbackNodeId on a node without a
circuit breaker (the fallback runs only while the breaker is open).

A definition that has them loads (a breaker may be added in a later version); a user is told,
once, when it is validated or registered, instead of finding out that a fallback never ran.
"""

from __future__ import annotations

from durableflow.model import WorkflowDef


def unenforced(defn: WorkflowDef, where: str) -> list[str]:
    """One line per field that cannot act as written, naming where it is."""
    out = []
    for node in defn.nodes:
        if node.fallback_node_id and "circuitBreaker" not in node.config:
            out.append(f"{where}: node '{node.node_id}': field 'fallbackNodeId': runs only while the "
                       f"node's circuit breaker is open, and the node has no circuitBreaker")
    return out
