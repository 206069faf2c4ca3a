"""Following a run until it finishes, with a live rich progress bar when stdout is a terminal."""

from __future__ import annotations

import contextlib
import threading

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

from durableflow.cli.formatting import console
from durableflow.errors import WaitTimeout
from durableflow.run import latest_by_node

TICK = 0.1  # seconds between redraws; the engine wakes the wait early on in-process changes
_DONE = ("completed", "failed", "skipped", "cancelled")


class RunProgress:
    """A one-line bar over run.progress: done/total nodes, and the nodes running now."""

    def __init__(self, title: str):
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
            console=console(), transient=False)
        self.task = self.progress.add_task(title, total=None, detail="")

    def __enter__(self) -> "RunProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, run) -> None:
        p = run.progress
        done = sum(p.get(s, 0) for s in _DONE)
        latest = latest_by_node(run.nodes)
        running = []
        for n in latest.values():
            if n.status == "running":
                running.append(n.node_id if n.progress is None else f"{n.node_id} {n.progress:.0f}%")
        detail = f"running: {', '.join(running[:4])}" if running else run.status
        if len(running) > 4:
            detail += f" (+{len(running) - 4})"
        self.progress.update(self.task, total=p.get("total") or None, completed=done,
                             detail=detail.replace("[", r"\["))


def follow(engine, run_id: str, *, timeout: float | None, live: bool,
           stop: threading.Event | None = None, worker=None):
    """Wait for the run to finish, redrawing the bar; raises WaitTimeout after `timeout`, and
    the worker's error if it stops on one (a damaged file). Returns None if `stop` is set first."""
    clock = engine.clock
    deadline = None if timeout is None else clock.monotonic() + timeout
    display = RunProgress(f"run {run_id[:8]}") if live else None
    with display or contextlib.nullcontext():
        while stop is None or not stop.is_set():
            tick = TICK if deadline is None else max(0.0, min(TICK, deadline - clock.monotonic()))
            try:
                run = engine.wait(run_id, timeout=tick)
            except WaitTimeout:
                if worker is not None and worker.errors:
                    raise worker.errors[0] from None
                if display is not None:
                    display.update(engine.get_run(run_id))
                if deadline is not None and clock.monotonic() >= deadline:
                    raise
                continue
            if display is not None:
                display.update(run)
            return run
    return None
