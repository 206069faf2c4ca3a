"""Fields the definition format accepts (SPEC section 3) that this version does not act on yet:
compensation (limits, rate limits, resources, circuit breakers and fallbacks are enforced),
and fields that can never take effect as written (a fallbackNodeId on a node without a breaker).

A definition that uses them loads, so it keeps working when they arrive; until then a user is
told, once, when it is validated or registered, instead of finding out that a limit never held.
"""

from __future__ import annotations

from durableflow.model import WorkflowDef



def unenforced(defn: WorkflowDef, where: str) -> list[str]:
    """One line per field this version accepts but ignores, naming where it is."""
    out = []
    for node in defn.nodes:
        if node.compensation_node_id:
            out.append(f"{where}: node '{node.node_id}': field 'compensationNodeId': compensation is "
                       f"not run by this version")
        if node.fallback_node_id and "circuitBreaker" not in node.config:
            # Loads (a breaker may be added later) but would never run: say so.
            out.append(f"{where}: node '{node.node_id}': field 'fallbackNodeId': runs only while the "
                       f"node's circuit breaker is open, and the node has no circuitBreaker")
    return out
