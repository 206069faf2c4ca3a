"""Node types the engine runs itself, without a runtime: routing and trigger nodes.

They are pure decisions over the node's input (no I/O), so the worker runs them on the claiming
thread. ForEach, While, Subflow, Wait and WaitForSignal need engine support that is not built yet
and fail with a clear error.
"""

from __future__ import annotations

from typing import Any

from durableflow.definitions import switch_port
from durableflow.errors import ExpressionError, NodeError

BUILTIN_TYPES = frozenset({"IfElse", "Switch", "Manual", "Event", "Timer"})
NOT_YET = frozenset({"ForEach", "While", "Subflow", "Wait", "WaitForSignal"})


def run_builtin(task) -> tuple[Any, str | None]:
    """Returns (output, port) for a builtin node; raises NodeError."""
    node = task.node
    kind = node.runtime_type
    if kind in ("Manual", "Event", "Timer"):
        return task.input, None
    names = {"input": task.input, "inputs": task.inputs, "vars": task.variables}
    if kind == "IfElse":
        value = _evaluate(task, "condition", names)
        return task.input, "true" if value else "false"
    if kind == "Switch":
        return task.input, switch_port(node, _evaluate(task, "expression", names))
    raise NodeError(f"node '{node.node_id}': runtime type {kind} is not supported by this version "
                    f"of durableflow yet", error_type="NotSupported")


def _evaluate(task, key: str, names: dict) -> Any:
    expr = task.plan.compiled.get(f"{task.node_id}.{key}")
    if expr is None:
        raise NodeError(f"node '{task.node_id}': no {key} expression", error_type="ExpressionError")
    try:
        return expr.evaluate(names)
    except ExpressionError as exc:
        raise NodeError(f"node '{task.node_id}': {key} failed: {exc}", error_type="ExpressionError") from exc
