"""The scheduler every running worker runs: it fires the schedules that are due, each in a
transaction of its own, and starts buffered fires whose turn came. Any number of workers in any
number of processes may run it at once: the database settles who deals with a fire time.

It looks at the database only when something is due (the soonest fire time is cached, and read
again every second, for schedules other processes register) or when a buffered fire waits.
"""

from __future__ import annotations

import logging
from typing import Callable

from durableflow.clock import Clock, iso, parse_iso
from durableflow.errors import DurableflowError
from durableflow.storage import Store, schedules
from durableflow.triggers.schedules import Firing

log = logging.getLogger("durableflow.scheduler")

REFRESH = 1.0        # seconds between two reads of the soonest fire time


class Scheduler:
    def __init__(self, store: Store, firing: Firing, clock: Clock, write: Callable):
        self.store = store
        self.firing = firing
        self.clock = clock
        self._write = write
        self._next_due: float | None = None
        self._read_at: float | None = None

    def refresh(self) -> None:
        """Read the soonest fire time again at the next tick (a schedule changed here)."""
        self._read_at = None

    def tick(self) -> list[str]:
        """Fire what is due now; returns the runs started."""
        now = self.clock.now()
        mono = self.clock.monotonic()
        stale = self._read_at is None or mono - self._read_at >= REFRESH
        if not stale and (self._next_due is None or now < self._next_due):
            return []
        started: list[str] = []
        for schedule_id in self.store.read(schedules.due, iso(now)):
            try:
                started += self._write(self.firing.fire_due_txn, schedule_id, now)
            except DurableflowError as exc:
                log.error("schedule %s: could not fire: %s", schedule_id, exc)
        if stale:
            for schedule_id in self.store.read(schedules.with_buffered_fires):
                try:
                    started += self._write(self.firing.start_buffered_txn, schedule_id, now)
                except DurableflowError as exc:
                    log.error("schedule %s: could not start a buffered fire: %s", schedule_id, exc)
        soonest = self.store.read(schedules.next_due)
        self._next_due = None if soonest is None else parse_iso(soonest)
        self._read_at = mono
        return started
