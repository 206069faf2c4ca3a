"""Every in-process wake-up, through one object.

Two things are waited for: new work (a write that may have made a message claimable; idle
workers and event followers wait for it) and the end of a run (what `Engine.wait` waits for).
Each is a counter under a condition of its own (a run's end does not wake idle workers, nor new
work the waiters of a run): a waiter reads the counter, looks at the database, and waits only if
the counter has not moved since, so a wake-up between its look and its wait is never lost. A wake-up from another process (a cross-process watcher, LISTEN/NOTIFY) plugs in by
calling `notify`.
"""

from __future__ import annotations

import threading

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
