"""Helpers shared by the CLI tests: definition builders, polling with a deadline, subprocess argv."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]


def noop(node_id: str) -> dict:
    return {"nodeId": node_id, "runtimeType": "Noop"}


def py(node_id: str, script: str, **keys) -> dict:
    return {"nodeId": node_id, "runtimeType": "Python", "script": script, **keys}


def edge(source: str, target: str, **keys) -> dict:
    return {"sourceNodeId": source, "targetNodeId": target, **keys}


def workflow(workflow_id: str, *nodes: dict, connections=(), **top) -> dict:
    data = {"workflowId": workflow_id, "nodes": list(nodes), **top}
    if connections:
        data["connections"] = list(connections)
    return data


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition"):
    """Poll `condition` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.pop("DURABLEFLOW_DB", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli_argv(db: Path, *args) -> list[str]:
    return [sys.executable, "-m", "durableflow", "--db", str(db), *map(str, args)]
