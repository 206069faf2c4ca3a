"""Fields the definition format accepts (SPEC section 3) that this version does not act on yet.

A definition that uses them loads, so it keeps working when they arrive; until then a user is
told, once, when it is validated or registered, instead of finding out that a limit never held.
"""

from __future__ import annotations

from durableflow.model import WorkflowDef

# config keys of a node -> what is not done
_CONFIG = {
    "rateLimit": "the rate limit is not enforced",
    "circuitBreaker": "the circuit breaker is not enforced",
    "maxConcurrentExecutions": "the cross-run concurrency limit is not enforced",
    "concurrencyKey": "the cross-run concurrency limit is not enforced",
    "resources": "resource limits are not enforced",
}


def unenforced(defn: WorkflowDef, where: str) -> list[str]:
    """One line per field this version accepts but ignores, naming where it is."""
    out = []
    for node in defn.nodes:
        for key, what in _CONFIG.items():
            if key in node.config:
                out.append(f"{where}: node '{node.node_id}': field '{key}': {what} by this version")
        if node.compensation_node_id:
            out.append(f"{where}: node '{node.node_id}': field 'compensationNodeId': compensation is "
                       f"not run by this version")
        if node.fallback_node_id:
            out.append(f"{where}: node '{node.node_id}': field 'fallbackNodeId': the fallback is not "
                       f"run by this version (a Fail connection does the same today)")
    return out
