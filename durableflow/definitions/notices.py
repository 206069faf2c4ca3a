"""Warnings about a valid definition: what this version does not act on yet, what this machine
lacks (a program, a module) that the node will need where it runs, and a timeout of 0 (which
means none: kept so, since stored definitions use it).

Warnings, not errors: a definition may be validated on one machine and run by workers on
another that has the program. Printed by `validate`, `run`, `start`; logged by register().
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import sys
from typing import Any

from durableflow.definitions.unenforced import unenforced
from durableflow.model import NodeDef, WorkflowDef
from durableflow.secrets import is_ref


def notices(defn: WorkflowDef, where: str) -> list[str]:
    zero = "field 'timeout': 0 means no timeout; leave the field out to say so"
    return (unenforced(defn, where)
            + ([f"{where}: {zero}"] if defn.timeout == 0 else [])
            + [f"{where}: node '{node.node_id}': {problem}" for node in defn.nodes
               for problem in ([zero] if node.timeout == 0 else []) + _missing_here(node)])


def _missing_here(node: NodeDef) -> list[str]:
    if node.runtime_type == "Shell" and node.command is not None and not node.shell:
        cmd = node.command
        try:
            argv = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
        except ValueError:
            return []  # the runtime reports a malformed command itself
        program = argv[0] if argv else ""
        path = (node.env or {}).get("PATH") or os.environ.get("PATH", "")
        if (not isinstance(cmd, str) and cmd and is_ref(cmd[0])) or is_ref(path):
            return []   # known only where the node runs
        if program and os.sep not in program:
            if shutil.which(program, path=str(path)) is None:
                return [f"field 'command': program {program!r} is not on PATH here; the node "
                        f"fails where it runs unless that machine has it"]
    if node.runtime_type == "Python" and node.callable:
        problem = _callable_problem(str(node.callable), node.isolation)
        if problem:
            return [f"field 'callable': {problem}"]
    return []


def _callable_problem(target: str, isolation: str) -> str | None:
    """Why `pkg.mod:func` cannot be called where the node will run, judged without importing
    anything new: a module this process already imported is looked into, any other is only
    looked up (find_spec of its top-level package). None when nothing is known to be wrong."""
    module_name, _, attr = target.partition(":")
    if module_name == "__main__":
        # A script that defines f and runs the engine itself: there, and only there, it exists.
        elsewhere = ("workers in other processes cannot import __main__ callables (their "
                     "__main__ is another program); put it in a module to run it there")
        if _lookup(sys.modules.get("__main__"), attr) is None:
            return f"{attr!r} is not defined in __main__ here, and {elsewhere}"
        if isolation == "process":
            return f"isolation: process runs the body in a child process, and {elsewhere}"
        return None
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        if _lookup(loaded, attr) is None:
            return f"module {module_name!r} has no {attr!r} here"
        return None
    top = module_name.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None if top else True
    except (ImportError, ValueError):
        found = False
    if not found:
        return (f"module {top!r} is not importable here; the node fails where it runs unless "
                "it is installed there")
    return None


_MISSING = object()


def _lookup(obj: Any, dotted: str) -> Any:
    """obj.a.b for "a.b" without running anything but attribute access; None when absent."""
    if obj is None:
        return None
    for part in dotted.split("."):
        value = getattr(obj, part, _MISSING) if part else _MISSING
        if value is _MISSING:
            return None
        obj = value
    return obj
