"""Node types the engine runs itself, without a runtime: routing and trigger nodes.

They are pure decisions over the node's input (no I/O), so the worker runs them on the claiming
thread. A Wait parks its node until its timer rings, a WaitForSignal until its signal comes, a
Subflow until its child run finishes, a ForEach or While until its body runs have (the message
comes back then; no thread waits).
"""

from __future__ import annotations

from typing import Any

from datetime import datetime

from durableflow.definitions.topology import switch_port
from durableflow.durations import parse_duration
from durableflow.errors import ExpressionError, NodeError
from durableflow.expressions import compile_expression, resolve_inputs, template_expression

BUILTIN_TYPES = frozenset({"IfElse", "Switch", "Manual", "Event", "Timer", "Wait", "WaitForSignal",
                           "Subflow", "ForEach", "While"})
NOT_YET: frozenset = frozenset()


class Park(Exception):
    """A node that waits for a moment: its message comes back at `until` (epoch seconds)."""

    def __init__(self, until: float):
        super().__init__(until)
        self.until = until


class Subflow(Exception):
    """A Subflow node: start a child run (`start`), or look at the one it started (`child`)."""

    def __init__(self, *, start: tuple | None = None, child: str | None = None):
        super().__init__(start or child)
        self.start = start        # (workflow_id, version or None, inputs)
        self.child = child


class Loop(Exception):
    """A ForEach or While node: run its body as child runs. `items` is set on a ForEach's first
    delivery (the list to go over); later deliveries carry their state in the message."""

    def __init__(self, items: list | None = None):
        super().__init__(items)
        self.items = items


class AwaitSignal(Exception):
    """A node that waits for a signal to its run; `deadline` (epoch seconds) or None."""

    def __init__(self, name: str, deadline: float | None):
        super().__init__(name, deadline)
        self.name = name
        self.deadline = deadline


def run_builtin(task, now: float) -> tuple[Any, str | None]:
    """Returns (output, port) for a builtin node; raises NodeError, or Park for a Wait."""
    node = task.node
    kind = node.runtime_type
    if kind in ("Manual", "Event", "Timer"):
        return task.input, None
    names = {"input": task.input, "inputs": task.inputs, "vars": task.variables}
    if kind == "Wait":
        wake = _wake_at(task, now)
        if wake > now:
            raise Park(wake)
        return task.input, None
    if kind == "Subflow":
        child = task.payload.get("childRunId")
        if child is not None:
            raise Subflow(child=child)
        node = task.node
        try:
            inputs = task.input if node.inputs is None else resolve_inputs(node.inputs, names)
        except ExpressionError as exc:
            raise NodeError(f"node '{task.node_id}': inputs failed: {exc}", error_type="ExpressionError") from exc
        raise Subflow(start=(str(node.config["workflowId"]), node.config.get("version"), inputs))
    if kind == "ForEach":
        if "loop" in task.payload:
            raise Loop()
        items = _evaluate(task, "items", names)
        if not isinstance(items, (list, tuple)):
            raise NodeError(f"node '{task.node_id}': items must be a list, got {type(items).__name__}",
                            error_type="InvalidItems")
        raise Loop(list(items))
    if kind == "While":
        raise Loop()
    if kind == "WaitForSignal":
        # Whether the signal is there is read in the recording transaction, not here.
        deadline = task.payload.get("deadline")
        if deadline is None and task.node.timeout:
            deadline = now + task.node.timeout
        raise AwaitSignal(str(task.node.config["signal"]), deadline)
    if kind == "IfElse":
        value = _evaluate(task, "condition", names)
        return task.input, "true" if value else "false"
    if kind == "Switch":
        return task.input, switch_port(node, _evaluate(task, "expression", names))
    raise NodeError(f"node '{node.node_id}': runtime type {kind} is not supported by this version "
                    f"of durableflow yet", error_type="NotSupported")


def _wake_at(task, now: float) -> float:
    """When a Wait node's timer rings. Fixed at its first delivery and stored in its message,
    so a restart, a pause or a redelivery never moves it."""
    stored = task.payload.get("wakeAt")
    if stored is not None:
        return float(stored)
    config = task.node.config
    if "duration" in config:
        return now + parse_duration(config["duration"])
    until = config.get("until")
    text = template_expression(until)
    if text is not None:
        try:
            until = compile_expression(text).evaluate(
                {"input": task.input, "inputs": task.inputs, "vars": task.variables})
        except ExpressionError as exc:
            raise NodeError(f"node '{task.node_id}': until failed: {exc}", error_type="ExpressionError") from exc
    if isinstance(until, (int, float)) and not isinstance(until, bool):
        return float(until)
    try:
        moment = datetime.fromisoformat(str(until).replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise NodeError(f"node '{task.node_id}': until {until!r} is not an ISO-8601 time with a "
                        f"timezone, nor epoch seconds", error_type="InvalidWait")
    return moment.timestamp()


def _evaluate(task, key: str, names: dict) -> Any:
    expr = task.plan.compiled.get(f"{task.node_id}.{key}")
    if expr is None:
        raise NodeError(f"node '{task.node_id}': no {key} expression", error_type="ExpressionError")
    try:
        return expr.evaluate(names)
    except ExpressionError as exc:
        raise NodeError(f"node '{task.node_id}': {key} failed: {exc}", error_type="ExpressionError") from exc
