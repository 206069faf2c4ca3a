"""What every runtime shares: the context a node body sees, the Runtime protocol, output checks.

Runtimes run a node body and hand back its output. They never touch the database: the engine
records what they return (or raise).
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import threading
import traceback
from pathlib import Path
from typing import Any, Callable, Protocol

from ..clock import Clock
from ..errors import NodeCancelled, NodeError
from ..model import NodeDef

__all__ = ["DEFAULT_MAX_OUTPUT", "NodeContext", "Runtime", "check_output", "error_from_exception",
           "escape_controls", "one_line"]

# Bytes of stdout and of stderr kept from a node's process (head + tail), unless the node sets
# `maxStreamBytes` or the engine sets NodeContext.max_stream_bytes.
DEFAULT_MAX_OUTPUT = 1024 * 1024

ProgressCallback = Callable[[float, "str | None"], None]


class NodeContext:
    """What a Python node body sees as `ctx`.

    `vars` is the run's variables as a plain dict: the body may change it in place and the engine
    reads it back (from this object) and commits it with the node's result.

    Set by the engine, read by the runtimes: `clock` (the engine's clock; timeouts are measured
    on its monotonic()) and `max_stream_bytes` (stdout/stderr bytes kept from a process when
    the node sets no `maxStreamBytes`).
    """

    def __init__(self, *, run_id: str, node_id: str, attempt: int, input: Any = None,
                 inputs: dict | None = None, vars: dict | None = None,
                 cancel_event: threading.Event | None = None,
                 progress_cb: ProgressCallback | None = None,
                 logger: logging.Logger | None = None, iteration: int = 0,
                 clock: Clock | None = None, max_stream_bytes: int = DEFAULT_MAX_OUTPUT,
                 scheduled_at: str | None = None, failure: dict | None = None,
                 idempotency_key: str | None = None):
        if isinstance(max_stream_bytes, bool) or not isinstance(max_stream_bytes, int) \
                or max_stream_bytes < 1:
            raise ValueError(f"max_stream_bytes must be a whole number of bytes > 0, "
                             f"not {max_stream_bytes!r}")
        self.clock = clock if clock is not None else Clock()
        self.max_stream_bytes = max_stream_bytes
        self.run_id = run_id
        self.node_id = node_id
        self.attempt = attempt
        self.iteration = iteration
        # The fire time a scheduled run stands for (ISO-8601 UTC), so a catch-up or backfill
        # run processes its own day, not today; None for a run not started by a schedule.
        self.scheduled_at = scheduled_at
        # A compensation's: why its run is undoing what it did ({nodeId, errorType, message}).
        self.failure = failure
        # Stable for a (run, node, iteration) across attempts and redeliveries: a body runs at
        # least once, and an external API given this key does its side effect once.
        self.idempotency_key = idempotency_key or f"{run_id}:{node_id}:{iteration}"
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


def check_output(value: Any, what: str = "output", *, ascii: bool = False) -> str:
    """The JSON text of `value` as it is stored (NaN refused), or NodeError(OutputNotSerializable)
    naming type and place.

    UTF-8 text, not \\u00e9 escapes, so that `sqlite3` shows accents and emoji; a string with a
    lone surrogate (not encodable as UTF-8, so not storable) makes the whole text fall back to
    escapes, which are valid JSON for the same value. `ascii=True` always escapes: for what goes
    to a child process, whatever its locale.
    """
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=ascii)
        if not ascii and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = json.dumps(value, allow_nan=False)
        return text
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

# C0 and C1 control characters (tab, newline and CR included: callers turn those into spaces or
# line breaks first), DEL, and the Unicode line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Control characters shown as escapes (`\\x1b`, `\\x00`), so that text from a process or an
    exception reads as one line in a table, a log or `sqlite3`, and cannot drive a terminal."""
    if text.isascii() and text.isprintable():
        return text
    return _CONTROLS.sub(_escape_one, text)


def _escape_one(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str, limit: int = 300) -> str:
    """Errors are stored and shown on one line, control characters escaped; long ones are cut."""
    text = escape_controls(" ".join(str(text).split()))
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
