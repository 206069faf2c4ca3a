"""Shared helpers for the runtime tests, loaded by path (tests/unit has no conftest of ours)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from durableflow.runtimes import NodeContext

FIXTURES = Path(__file__).resolve().parent


def make_ctx(**overrides) -> NodeContext:
    fields = dict(run_id="run-1", node_id="n1", attempt=1, input={"value": 21},
                  inputs={"up": {"x": 1}}, vars={"count": 1}, cancel_event=threading.Event())
    fields.update(overrides)
    return NodeContext(**fields)


def wait_until(predicate, timeout: float = 5.0, what: str = "condition") -> None:
    """Wait for predicate() with a deadline, checking often (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.01)


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie is dead, just not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def set_when(event_to_wait: threading.Event, event_to_set: threading.Event, timeout: float = 5.0):
    """Start a thread that sets `event_to_set` once `event_to_wait` is set."""
    def run():
        if event_to_wait.wait(timeout):
            event_to_set.set()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
