"""Every in-process wake-up, through one object.

Two things are waited for: new work (a write that may have made a message claimable; idle
workers and event followers wait for it) and the end of a run (what `Engine.wait` waits for).
Each is a counter under a condition of its own (a run's end does not wake idle workers, nor new
work the waiters of a run): a waiter reads the counter, looks at the database, and waits only if
the counter has not moved since, so a wake-up between its look and its wait is never lost. A wake-up from another process (a cross-process watcher, LISTEN/NOTIFY) plugs in by
calling `notify`.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("durableflow.notify")

WORK = "work"
FINISHED = "finished"


class Notifier:
    def __init__(self) -> None:
        self._conds = {WORK: threading.Condition(), FINISHED: threading.Condition()}
        self._counts = {WORK: 0, FINISHED: 0}

    def generation(self, topic: str = WORK) -> int:
        return self._counts[topic]

    def notify(self, topic: str = WORK) -> None:
        cond = self._conds[topic]
        with cond:
            self._counts[topic] += 1
            cond.notify_all()

    def work(self) -> None:
        self.notify(WORK)

    def run_finished(self) -> None:
        self.notify(FINISHED)

    def wait(self, generation: int, timeout: float, topic: str = WORK) -> bool:
        """Wait up to `timeout` seconds unless `topic` moved past `generation`; True if it did."""
        cond = self._conds[topic]
        with cond:
            if self._counts[topic] == generation:
                cond.wait(timeout)
            return self._counts[topic] != generation


class Watcher:
    """A thread that runs `_watch(stop)` while at least one caller has started it and not stopped
    it (each worker starts it, and stops it when it stops)."""

    thread_name = "durableflow-watcher"
    join_seconds = 1.0

    def __init__(self) -> None:
        self._users = 0
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._stop is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._watch, args=(self._stop,),
                                                name=self.thread_name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self._stop is None:
                return
            self._stop.set()
            thread, self._stop, self._thread = self._thread, None, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.join_seconds)

    def _watch(self, stop: threading.Event) -> None:
        raise NotImplementedError


class ChangeWatcher(Watcher):
    """Wakes this process's idle workers when another process commits: it looks at a number
    the database moves on every commit (SQLite's data_version) every `interval` seconds, on a
    thread of its own, and notifies WORK when it moved. A worker in another process picks new
    work up within a few milliseconds, without a loop of claim transactions."""

    def __init__(self, version: Callable[[], int], notifier: Notifier, interval: float = 0.002):
        super().__init__()
        self._version = version
        self._notifier = notifier
        self._interval = interval

    def _watch(self, stop: threading.Event) -> None:
        seen = None
        while not stop.wait(self._interval):
            try:
                version = self._version()
            except Exception:   # a closed or broken store: the workers' own polls go on
                log.debug("change watcher: cannot read the data version", exc_info=True)
                continue
            if version != seen:
                if seen is not None:
                    self._notifier.work()
                seen = version
