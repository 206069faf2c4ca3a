"""Upkeep: recovery and timed work that every worker does now and then (about every second),
and that `Engine.recover()` and `durableflow recover` do on demand.

Recovery gives back the leases of workers that are gone: at once for workers of this host whose
process is gone (after stopping the node processes they left running, so the same node never
runs twice side by side), and for everyone else's when their leases expire. Timed work: pauses
that end by themselves, and whole-run timeouts.
"""

from __future__ import annotations

import contextlib
from typing import Callable

from durableflow.clock import Clock, iso
from durableflow.execution import Execution
from durableflow.procs import host_identity, kill_left_behind, process_alive
from durableflow.storage import Store, limits, queue, runs, workers


class Upkeep:
    """`write(fn, ...)` is the engine's write that wakes idle workers; `local_workers()` the ids
    of the workers running in this process (alive, whatever the table says)."""

    def __init__(self, store: Store, execution: Execution, clock: Clock, write: Callable,
                 local_workers: Callable[[], set[str]]):
        self.store = store
        self.execution = execution
        self.clock = clock
        self._write = write
        self._local_workers = local_workers

    def run(self) -> None:
        """One pass: recovery, then ended pauses and run timeouts."""
        now = self.clock.now()
        now_s = iso(now)
        self.recover()
        for run_id in self.store.read(runs.due_resumes, now_s):
            with contextlib.suppress(Exception):
                self._write(self.execution.runs.resume, run_id, self.clock.now())
        for run_id in self.store.read(runs.past_deadline, now_s):
            self._write(self.execution.runs.time_out, run_id, now)
        if self.store.read(limits.waiters_given_up, now_s, 1):
            self._write(self.execution.attempts.give_up_waiting, now)

    def recover(self) -> dict:
        """Reclaim leases of dead workers on this host at once and of others when expired."""
        gone, left_behind = [], 0
        for worker_id, pid, started in self.dead_workers_on_host():
            gone.append(worker_id)
            # The processes of the nodes it held run on after it; stop them before those nodes
            # are given to someone else, or the same node would run twice side by side.
            left_behind += kill_left_behind(pid, started, self.store.deliveries_of_worker(worker_id))
        lost = self.reclaim(gone)
        return {"dead_workers": gone, "reclaimed": len(lost),
                "dead_lettered": sum(1 for r in lost if r.dead), "processes_killed": left_behind}

    def reclaim(self, dead_workers=()) -> list:
        """Take back expired leases, and those of `dead_workers` at once, marking those workers
        gone in the same commit; each lost delivery fails its attempt, then retries or fails its
        node."""
        def txn(conn, now):
            for worker_id in dead_workers:
                workers.mark_worker_gone_txn(conn, worker_id, iso(now))
            lost = queue.reclaim_txn(conn, now, dead_workers=dead_workers)
            self.execution.attempts.after_reclaim(conn, lost, now)
            return lost
        return self._write(txn, self.clock.now())

    def dead_workers_on_host(self) -> list[tuple[str, int, str | None]]:
        """Workers on this host recorded as running whose process is gone (killed, say) and
        not yet recovered: (worker_id, pid, process start time)."""
        mine = self._local_workers()
        return [(worker_id, pid, started)
                for worker_id, pid, started in self.store.read(workers.live_workers_on_host, host_identity())
                if worker_id not in mine and not process_alive(pid, started)]
