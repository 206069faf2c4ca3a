"""Runtimes run one node body and return its output; they never touch the database.

    runtime = get_runtime(node.runtime_type)
    output = runtime.execute(node, ctx, timeout=node.timeout)   # or NodeError / NodeTimeout / NodeCancelled

Only the body-running types live here (Noop, Python, Shell, PowerShell, CSharpScript); control
flow (IfElse, ForEach, Wait, ...) and triggers belong to the engine.
"""

from __future__ import annotations

import os
import shutil
import threading

from ..errors import NodeError
from .base import NodeContext, Runtime, check_output
from .noop import Noop
from .python import Python
from .shell import CSharpScript, PowerShell, Shell

__all__ = [
    "NodeContext", "Runtime", "check_output", "get_runtime", "missing_program", "UnknownRuntime",
    "INLINE_RUNTIMES", "PROGRAMS", "RUNTIME_CLASSES",
    "Noop", "Python", "Shell", "PowerShell", "CSharpScript",
]

RUNTIME_CLASSES = {cls.runtime_type: cls for cls in (Noop, Python, Shell, PowerShell, CSharpScript)}

# Cheap enough for the engine to run on the calling thread, without a timeout.
INLINE_RUNTIMES = frozenset({"Noop"})

# The interpreter a runtime type needs on PATH (validation reports it when missing).
PROGRAMS = {"PowerShell": "pwsh", "CSharpScript": "dotnet"}


class UnknownRuntime(NodeError, KeyError):
    """No runtime runs this type here. Both a NodeError and a KeyError, as callers may expect."""

    __str__ = Exception.__str__   # KeyError would quote the message


_instances: dict[str, Runtime] = {}
_lock = threading.Lock()


def get_runtime(runtime_type: str) -> Runtime:
    """The shared instance for a runtime type (runtimes keep no per-run state)."""
    runtime = _instances.get(runtime_type)
    if runtime is not None:
        return runtime
    cls = RUNTIME_CLASSES.get(runtime_type)
    if cls is None:
        raise UnknownRuntime(f"no runtime for runtimeType {runtime_type!r} "
                             f"(runtimes: {', '.join(sorted(RUNTIME_CLASSES))})",
                             error_type="UnknownRuntime")
    with _lock:
        return _instances.setdefault(runtime_type, cls())


def missing_program(runtime_type: str, path: str | None = None) -> str | None:
    """The program `runtime_type` needs that is not on PATH (or `path`), else None."""
    program = PROGRAMS.get(runtime_type)
    if program is None:
        return None
    found = shutil.which(program, path=path if path is not None else os.environ.get("PATH", os.defpath))
    return None if found else program
