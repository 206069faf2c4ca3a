"""Graceful stop for the commands that run a worker (`worker`, `run`).

The first SIGTERM or SIGINT sets `requested`: the command stops claiming and waits for the nodes
in hand. A second SIGINT quits at once: a thread running a node body cannot be stopped and would
otherwise hold the exit until it returned. The leases it leaves are reclaimed by the next worker
or `durableflow recover` (the process is gone, so at once on the same host).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from durableflow.cli.app import error_line

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class StopOnSignal:
    def __init__(self, worker=None):
        self.worker = worker
        self.requested = threading.Event()
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():  # signals only reach it
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.requested.is_set():
            if signum == signal.SIGINT:
                self.quit_now()
            return
        self.signum = signum
        self.requested.set()

    def quit_now(self) -> None:
        from durableflow.runtimes.process import kill_running_groups
        busy = self.worker.busy if self.worker is not None else 0
        kill_running_groups()  # external bodies must not outlive us and run again beside a redelivery
        try:
            error_line(f"quit with {busy} node(s) in hand; the next `durableflow worker` or "
                       "`durableflow recover` reclaims them")
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, RuntimeError):  # a handler can interrupt a write in progress
            pass
        os._exit(EXIT_INTERRUPTED)
