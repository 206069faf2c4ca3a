"""What every runtime shares: the context a node body sees, the Runtime protocol, output checks.

Runtimes run a node body and hand back its output. They never touch the database: the engine
records what they return (or raise).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Protocol

from ..errors import NodeCancelled, NodeError
from ..model import NodeDef

__all__ = ["NodeContext", "Runtime", "check_output", "error_from_exception", "one_line"]

ProgressCallback = Callable[[float, "str | None"], None]


class NodeContext:
    """What a Python node body sees as `ctx`.

    `vars` is the run's variables as a plain dict: the body may change it in place and the engine
    reads it back (from this object) and commits it with the node's result.
    """

    def __init__(self, *, run_id: str, node_id: str, attempt: int, input: Any = None,
                 inputs: dict | None = None, vars: dict | None = None,
                 cancel_event: threading.Event | None = None,
                 progress_cb: ProgressCallback | None = None,
                 logger: logging.Logger | None = None, iteration: int = 0):
        self.run_id = run_id
        self.node_id = node_id
        self.attempt = attempt
        self.iteration = iteration
        self.input = input
        self.inputs = inputs if inputs is not None else {}
        # Keep the caller's dict itself (not a copy) so in-place writes reach the engine.
        self.vars = vars if type(vars) is dict else dict(vars or {})
        self.cancel_event = cancel_event if cancel_event is not None else threading.Event()
        self._progress_cb = progress_cb
        self.log = logger if logger is not None else logging.getLogger(f"durableflow.node.{node_id}")

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress: `percent` is clamped to 0..100; a non-number is a ValueError."""
        if isinstance(percent, bool) or not isinstance(percent, numbers.Real) or math.isnan(percent):
            raise ValueError(f"progress percent must be a number, got {percent!r}")
        percent = min(100.0, max(0.0, float(percent)))
        if message is not None and not isinstance(message, str):
            message = str(message)
        if self._progress_cb is not None:
            self._progress_cb(percent, message)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise NodeCancelled(f"node {self.node_id!r} cancelled")

    def __repr__(self) -> str:
        return (f"<NodeContext run={self.run_id} node={self.node_id} attempt={self.attempt} "
                f"iteration={self.iteration}>")


class Runtime(Protocol):
    def execute(self, node: NodeDef, ctx: NodeContext, *, timeout: float | None) -> Any:
        """Run the body; return its JSON-serialisable output.

        Raise NodeError (with error_type, and exit_code where it applies), NodeTimeout when
        `timeout` seconds pass, NodeCancelled when ctx.cancel_event is set while running.
        """


# --- output checks --------------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))


def check_output(value: Any, what: str = "output") -> str:
    """`json.dumps(value)` (NaN refused), or NodeError(OutputNotSerializable) naming type and place."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        where, culprit = _find_unserialisable(value, what)
        if culprit is not None:
            detail = f"{culprit} at {where}"
        else:
            detail = one_line(f"{type(exc).__name__}: {exc}")
        raise NodeError(f"{what} is not JSON-serialisable: {detail}",
                        error_type="OutputNotSerializable") from None


def _find_unserialisable(value: Any, path: str, depth: int = 0) -> tuple[str, str | None]:
    """Walk the value to name the first thing json cannot store, for a useful message."""
    if depth > 200:
        return path, "nesting deeper than 200 levels (or a reference cycle)"
    if isinstance(value, float) and not math.isfinite(value):
        return path, f"float {value!r}"
    if isinstance(value, _SCALARS):
        return path, None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _SCALARS):
                return path, f"a key of type {type(key).__name__}"
            found = _find_unserialisable(item, f"{path}[{key!r}]", depth + 1)
            if found[1] is not None:
                return found
        return path, None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _find_unserialisable(item, f"{path}[{i}]", depth + 1)
            if found[1] is not None:
                return found
        return path, None
    return path, f"a value of type {type(value).__name__}"


# --- turning a body's exception into a NodeError ---------------------------------------------

def one_line(text: str, limit: int = 300) -> str:
    """Errors are stored and shown on one line; long ones are cut."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_from_exception(exc: BaseException) -> NodeError:
    """NodeError("Type: message (at file.py:12 in func)", error_type="Type") for a body's exception."""
    if isinstance(exc, NodeError):
        return exc
    name = type(exc).__name__
    text = str(exc)
    message = f"{name}: {text}" if text else name
    types = exception_names(type(exc))
    exit_code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else None
    if isinstance(exc, SyntaxError):  # its own text already names file and line
        return NodeError(one_line(message, 500), error_type=name, error_types=types)
    # importlib's frozen frames say nothing useful about where the body failed.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    if frames:
        last = frames[-1]
        message = f"{one_line(message)} (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return NodeError(one_line(message, 500), error_type=name, error_types=types, exit_code=exit_code)


def exception_names(cls: type) -> tuple[str, ...]:
    """`TransientError`, `mynodes.TransientError`, then the same for each base class up to
    Exception (BaseException and object match everything, so they are left out)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass in (BaseException, object):
            continue
        names.append(klass.__qualname__)
        if klass.__module__ not in ("builtins", "__main__"):
            names.append(f"{klass.__module__}.{klass.__qualname__}")
    return tuple(names)
