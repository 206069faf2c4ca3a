"""The Python runtime: an inline `script`, a `scriptPath` file defining run(ctx), or a `callable`.

`isolation: thread` (default) runs the body on its own daemon thread. Python cannot kill a
thread, so on timeout the node fails on time, ctx.cancel_event is set for a cooperative body, and
the thread is abandoned (whatever it returns later is dropped). `isolation: process` runs the body
in a child interpreter (python_process.py) whose process group is killed on timeout or cancel.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import importlib
import linecache
import sys
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

from ..errors import NodeCancelled, NodeError, NodeTimeout
from ..model import NodeDef
from .base import DEFAULT_MAX_OUTPUT, NodeContext, check_output, error_from_exception
from .process import ProcessRunner

__all__ = ["Python", "load_body"]

_SOURCES = ("script", "script_path", "callable")


class Python:
    runtime_type = "Python"
    tick = 0.05   # how often a waiting caller looks at the cancel event (seconds)

    def __init__(self, *, grace_period: float | None = None, max_output: int | None = None,
                 drain_timeout: float | None = None):
        # Only used by `isolation: process` (its stdout/stderr, which are logged). max_output
        # None: ctx.max_stream_bytes, the engine's setting.
        self.max_output = max_output
        self.runner = ProcessRunner(grace_period=grace_period,
                                    max_output=max_output or DEFAULT_MAX_OUTPUT,
                                    drain_timeout=drain_timeout)

    def execute(self, node: NodeDef, ctx: NodeContext, *, timeout: float | None) -> Any:
        ctx.check_cancelled()
        given = [name for name in _SOURCES if getattr(node, name) is not None]
        if len(given) != 1:
            raise NodeError(f"node {node.node_id!r}: a Python node needs exactly one of script, "
                            f"scriptPath, callable (found {', '.join(given) or 'none'})",
                            error_type="InvalidNode")
        if node.isolation == "process":
            from .python_process import run_in_process
            return run_in_process(self.runner, node, ctx, timeout,
                                  max_output=node.max_stream_bytes or self.max_output
                                  or ctx.max_stream_bytes)
        if node.isolation != "thread":
            raise NodeError(f"node {node.node_id!r}: unknown isolation {node.isolation!r} "
                            "(thread or process)", error_type="InvalidNode")
        output = self._run_on_thread(node, ctx, timeout)
        check_output(output)
        check_output(ctx.vars, "ctx.vars")
        return output

    def _run_on_thread(self, node: NodeDef, ctx: NodeContext, timeout: float | None) -> Any:
        done = threading.Event()
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                box["value"] = load_body(node)(ctx)
            except BaseException as exc:  # SystemExit in a body is its failure, not ours
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=body, name=f"durableflow-node-{node.node_id}", daemon=True)
        thread.start()
        clock = ctx.clock   # the engine's: a test's manual clock times a node out at once
        deadline = None if timeout is None else clock.monotonic() + max(0.0, timeout)
        while True:
            wait = self.tick if deadline is None else max(0.0, min(self.tick, deadline - clock.monotonic()))
            if done.wait(wait):
                break
            if ctx.cancel_event.is_set():
                raise NodeCancelled(f"node {node.node_id!r} cancelled (its thread was told via ctx.cancelled)")
            if deadline is not None and clock.monotonic() >= deadline:
                ctx.cancel_event.set()   # lets a cooperative body stop; the thread is abandoned
                raise NodeTimeout(f"node {node.node_id!r} timed out after {timeout:g}s "
                                  "(its thread was abandoned)")
        if ctx.cancel_event.is_set():
            # The body may have returned early because it saw the cancel: its output is not a result.
            raise NodeCancelled(f"node {node.node_id!r} cancelled")
        if "error" in box:
            exc = box.pop("error")
            raise error_from_exception(exc) from (None if isinstance(exc, NodeError) else exc)
        return box["value"]


def load_body(node: NodeDef):
    """A callable body(ctx) -> output for the node, from the caches below."""
    if node.script is not None:
        code = _compile(node.script)

        def run_script(ctx: NodeContext) -> Any:
            namespace = {"__name__": "__durableflow_script__", "__builtins__": builtins,
                         "ctx": ctx, "output": None}
            exec(code, namespace)   # the node's own code, written as its body (not an expression)
            return namespace.get("output")
        return run_script
    if node.script_path is not None:
        return _load_script(node.node_id, Path(node.script_path)).run
    return _resolve_callable(node.node_id, node.callable)


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> types.CodeType:
    source = textwrap.dedent(source)
    filename = f"<durableflow script {hashlib.sha1(source.encode()).hexdigest()[:8]}>"
    # Register the text so tracebacks of inline scripts show their lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")


_modules: dict[str, tuple[tuple[int, int], types.ModuleType]] = {}
_modules_lock = threading.Lock()


def _load_script(node_id: str, path: Path) -> types.ModuleType:
    """The module of a scriptPath file, loaded once per (path, mtime, size)."""
    try:
        st = path.stat()
    except OSError:
        raise NodeError(f"node {node_id!r}: script {str(path)!r} not found",
                        error_type="ScriptNotFound") from None
    key, stamp = str(path), (st.st_mtime_ns, st.st_size)
    with _modules_lock:
        hit = _modules.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    # Compile the source ourselves rather than through importlib: a .pyc validated by whole-second
    # mtimes could hide an edit made within the same second.
    name = f"durableflow_script_{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    code = compile(path.read_bytes(), key, "exec")
    module = types.ModuleType(name)
    module.__file__ = key
    previous = sys.modules.get(name)
    sys.modules[name] = module   # dataclasses and pickle look the module up by name
    try:
        exec(code, module.__dict__)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    if not callable(getattr(module, "run", None)):
        raise NodeError(f"node {node_id!r}: script {key!r} defines no run(ctx) function",
                        error_type="InvalidScript")
    with _modules_lock:
        _modules[key] = (stamp, module)
    return module


def _resolve_callable(node_id: str, target: str):
    module_name, sep, attr = str(target).partition(":")
    if not sep or not module_name or not attr:
        raise NodeError(f"node {node_id!r}: callable {target!r} is not of the form 'pkg.mod:func'",
                        error_type="InvalidCallable")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise NodeError(f"node {node_id!r}: callable {target!r}: {part!r} not found"
                            + (_main_elsewhere() if module_name == "__main__" else ""),
                            error_type="InvalidCallable") from None
    if not callable(obj):
        raise NodeError(f"node {node_id!r}: callable {target!r} is not callable",
                        error_type="InvalidCallable")
    return obj


def _main_elsewhere() -> str:
    """Why a `__main__:func` callable (a function of the script that defined the workflow in
    Python) is missing: this worker runs another program."""
    program = getattr(sys.modules.get("__main__"), "__file__", None) or sys.argv[0] or "?"
    return (f" in this worker's __main__ ({Path(program).name}): a function of a script's "
            "__main__ runs only in workers of that same program (engine.execute or "
            "engine.worker() inside it); move it into an importable module to run it anywhere")
