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

from durableflow.definitions.unenforced import unenforced
from durableflow.model import NodeDef, WorkflowDef


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
        if program and os.sep not in program:
            path = (node.env or {}).get("PATH") or os.environ.get("PATH", "")
            if shutil.which(program, path=str(path)) is None:
                return [f"field 'command': program {program!r} is not on PATH here; the node "
                        f"fails where it runs unless that machine has it"]
    if node.runtime_type == "Python" and node.callable:
        top = str(node.callable).partition(":")[0].split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None if top else True
        except (ImportError, ValueError):
            found = False
        if not found:
            return [f"field 'callable': module {top!r} is not importable here; the node fails "
                    f"where it runs unless it is installed there"]
    return []
