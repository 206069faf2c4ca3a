"""The service workers use: claim, record (the retry decision is made where the failure is
recorded, in execution/attempts.py), give back, heartbeat, progress, worker registration, and
the upkeep each worker does. `Engine` builds one and hands it to its workers; a worker knows
this service, never the Engine.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Protocol

from durableflow.clock import Clock, iso, parse_iso
from durableflow.errors import DatabaseBusy, DiskFull, DurableflowError, StaleLease
from durableflow.execution import Execution
from durableflow.notify import WORK, Notifier
from durableflow.procs import pid_started
from durableflow.secrets import Secrets
from durableflow.storage import Store, nodes, queue, workers
from durableflow.storage.handoff import Handoff
from durableflow.tasks import Outcome, Task
from durableflow.triggers.scheduler import Scheduler
from durableflow.triggers.schedules import Firing
from durableflow.upkeep import Upkeep


class Registered(Protocol):
    """What the service needs to know of a worker it registers."""

    worker_id: str
    concurrency: int
    capacity: tuple[float, int]        # the cpu and memory (MB) it offers nodes' `resources`
    errors: list   # what stopped it, if anything did

    def stop(self, timeout: float | None = None) -> None: ...

log = logging.getLogger("durableflow.service")

MAX_PROGRESS_MESSAGE = 1000   # characters of a progress message that are stored
# Rounds of cheap nodes run and recorded within one recording transaction, and how long that
# transaction may take at most: it holds the write lock meanwhile. The time is what ends a
# chain's transaction (about 100 steps here); the count only bounds one whose clock stands
# still. 64 steps ended it at 6-7 ms: a chain paid a commit (~650 µs) per ~55 nodes, not ~90
# (chain, median of 11 interleaved rounds: 0.625 -> 0.64 of the floor; issue 12's note).
CHEAP_STEPS = 256
CHEAP_SECONDS = 0.01


class WorkerService:
    def __init__(self, store: Store, execution: Execution, notifier: Notifier, clock: Clock, *,
                 lease_seconds: float, max_output_bytes: int | None, max_stream_bytes: int,
                 firing: Firing, secrets: Secrets | None = None):
        self.store = store
        self.execution = execution
        self.notifier = notifier
        self.clock = clock
        self.lease_seconds = lease_seconds
        # An output is stored with its node and again in each message it sends downstream.
        self.max_output_bytes = max_output_bytes
        # Bytes of stdout and of stderr kept from a node's process, unless the node says.
        self.max_stream_bytes = max_stream_bytes
        # Where the values of `{"$secret": NAME}` references come from when a body runs.
        self.secrets = secrets if secrets is not None else Secrets()
        self.workers: list[Registered] = []   # started in this process and not yet stopped
        self._progress_last: dict[int, float] = {}
        self._progress_unsaved: set[int] = set()   # attempts whose progress could not be stored
        self.upkeep = Upkeep(store, execution, clock, self.write,
                             local_workers=lambda: {w.worker_id for w in self.workers})
        self.scheduler = Scheduler(store, firing, clock, self.write)
        # Commits of other processes wake this process's idle workers (while any runs).
        self.watcher = store.change_watcher(notifier)

    @property
    def path(self) -> str:
        return self.store.path

    def write(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """store.write, then wake this process's idle workers (the write may have made work
        claimable). Claims, heartbeats and progress reports use store.write: they make none."""
        try:
            return self.store.write(fn, *args, **kwargs)
        finally:
            self.notifier.work()

    # --- waiting for work ------------------------------------------------------------------

    def work_generation(self) -> int:
        return self.notifier.generation(WORK)

    def wait_for_work(self, generation: int, timeout: float) -> None:
        """Wait until something was written (here, or in another process: the change watcher),
        at most `timeout` seconds, and at most until the next parked message is due (a timer,
        a retry's backoff: nothing is written when it comes due)."""
        due = self.store.next_visible_at()
        if due is not None:
            timeout = min(timeout, max(0.0, parse_iso(due) - self.clock.now()))
        self.notifier.wait(generation, timeout, WORK)

    # --- claim, record, give back ----------------------------------------------------------

    def claim(self, worker_id: str, limit: int, lease_seconds: float,
              free: tuple[float, float] | None = None) -> list[Task]:
        """Claim up to `limit` nodes; `free`: the cpu and memory (MB) the worker has free. The
        time is read once the write lock is ours (see record_many)."""
        def txn(conn):
            return self.execution.attempts.claim(conn, worker_id, limit, lease_seconds, self.clock.now(), free)
        return self.store.write(txn)

    def record(self, task: Task, outcome: Outcome) -> None:
        (error,), _ = self.record_many([(task, outcome)])
        if error is not None:
            raise error

    def record_many(self, items: list[tuple[Task, Outcome]],
                    claim: tuple[str, int, float, tuple | None] | None = None,
                    cheap: Callable[[list[Task]], tuple[list, list[Task]]] | None = None,
                    inline: Callable | None = None) -> tuple[list, list[Task]]:
        """Record results in one transaction; each is guarded on its own (a stale lease on one
        does not undo the others). With `claim` = (worker_id, limit, lease_seconds, free), the same
        transaction also claims what is ready next. Returns (per-item None or the error that
        refused it, claimed tasks).

        With `cheap(tasks) -> (outcomes of the cheap ones, the others)`, cheap nodes the claim
        brought (Noop, routing: pure, no I/O) are run and recorded in this same transaction too,
        and what they lead to claimed, up to CHEAP_STEPS rounds and CHEAP_SECONDS: a chain of
        cheap nodes costs one commit per CHEAP_STEPS steps instead of one per step (the commit
        is most of a step's cost). The claim still takes the highest priority first, so other
        runs' work is not passed over. `inline(plan, node_id)` says beforehand which nodes
        `cheap` runs: their rows are written once, at their end (AttemptLifecycle.claim)."""
        for task, _outcome in items:
            self._progress_last.pop(task.instance_id, None)
        if self._progress_unsaved:
            self._progress_unsaved.difference_update(task.instance_id for task, _outcome in items)

        def txn(conn):
            # The time is read once the write lock is ours: what commits later never carries an
            # earlier time (a rate limit's tokens, a slot's start and end stay in commit order).
            now = self.clock.now()
            results = self.execution.record_many(conn, items, now)
            if not claim:
                return results, []
            if cheap is None:
                worker_id, limit, lease_seconds, free = claim
                return results, self.execution.attempts.claim(conn, worker_id, limit, lease_seconds, now, free)
            return results, self._claim_rounds(conn, claim, cheap, inline, now)[0]
        return self.write(txn)

    def claim_and_run(self, claim: tuple[str, int, float, tuple | None],
                      cheap: Callable[[list[Task]], tuple[list, list[Task]]],
                      inline: Callable | None = None) -> tuple[list[Task], int]:
        """Claim as record_many(claim=..., cheap=..., inline=...) does, with nothing to record
        first. Returns the tasks handed out and how many cheap nodes ran in the transaction (a
        worker that got no task may still have done work, and should claim again at once)."""
        tasks, ran = self.store.write(lambda conn: self._claim_rounds(conn, claim, cheap, inline, self.clock.now()))
        if ran:   # what they recorded may be work for this process's other workers
            self.notifier.work()
        return tasks, ran

    def _claim_rounds(self, conn, claim, cheap, inline, now: float) -> tuple[list[Task], int]:
        """Claim, run the cheap nodes claimed and record them, claim what they lead to, and so on,
        within CHEAP_STEPS rounds and CHEAP_SECONDS. Returns the tasks that are not cheap, for
        the dispatcher, and how many cheap ones ran."""
        worker_id, limit, lease_seconds, free = claim
        if inline is not None:
            # What the cheap nodes queue, the next round takes, written once (storage.handoff).
            conn.handoff = Handoff(lambda plan, node_id: inline(plan, node_id) and not plan.limits.get(node_id)
                                   and not plan.definition.max_concurrency)
        try:
            return self._rounds(conn, worker_id, limit, lease_seconds, free, cheap, inline, now)
        finally:
            conn.handoff = None

    def _rounds(self, conn, worker_id, limit, lease_seconds, free, cheap, inline, now) -> tuple[list[Task], int]:
        attempts = self.execution.attempts
        clock = self.clock
        began = clock.monotonic()
        tasks = attempts.claim(conn, worker_id, limit, lease_seconds, now, free, inline)
        ran = 0
        for step in range(CHEAP_STEPS):
            if not tasks:
                break
            done, others = cheap(tasks)
            if not done:
                break
            now = clock.now()
            for (task, _outcome), err in zip(done, self.execution.record_many(conn, done, now)):
                if err is not None:
                    log.warning("result of %s of run %s discarded: %s", task.node_id, task.run_id, err)
            ran += len(done)
            if others:
                tasks = others
                break
            # The budget is checked before claiming, not after: a node claimed past it would be
            # handed to the next transaction with its start written, and its row written twice.
            spent = clock.monotonic() - began
            if step == CHEAP_STEPS - 1 or spent >= CHEAP_SECONDS:
                tasks = []
                break
            # No more than the time left runs at the pace so far.
            fits = int((CHEAP_SECONDS - spent) * ran / spent) if spent > 0 else limit
            tasks = attempts.claim(conn, worker_id, max(1, min(limit, fits)), lease_seconds, now, free, inline)
        for task in tasks:   # leaving this transaction unfinished: started now
            attempts.start_deferred(conn, task)
        # Offers not taken are written as ready messages; a node taken whose record was refused
        # gets its rows (and its lease, which expires: it is delivered again).
        conn.write_put_off()
        return tasks, ran

    def release(self, tasks: list[Task], why: str = "the worker stopped before starting it") -> None:
        """Give back claimed nodes that were not started: deliverable again at once."""
        def txn(conn, now):
            for task in tasks:
                self.execution.attempts.give_back(conn, task, why, now)
        self.write(txn, self.clock.now())

    # --- while bodies run ------------------------------------------------------------------

    def heartbeat(self, worker_id: str, lease_seconds: float, tasks: list[Task]) -> list[Task]:
        """Renew the leases of the nodes in hand and the worker's row, in one transaction.
        Returns the tasks whose lease could not be renewed: it expired and was taken back (by
        recovery, for another delivery), so their results are no longer this worker's to record."""
        def txn(conn, now):
            lost = []
            until = now + lease_seconds
            for task in tasks:
                try:
                    queue.extend_one_txn(conn, task.message.id, task.message.token, until)
                except StaleLease:
                    lost.append(task)
            workers.worker_heartbeat_txn(conn, worker_id, iso(now))
            return lost
        return self.store.write(txn, self.clock.now())

    def progress(self, task: Task, percent: float, message: str | None) -> None:
        mono = self.clock.monotonic()
        last = self._progress_last.get(task.instance_id, 0.0)
        if percent < 100 and mono - last < 0.1:
            return  # at most ten progress rows a second per node
        self._progress_last[task.instance_id] = mono
        if message is not None and len(message) > MAX_PROGRESS_MESSAGE:
            # Kept to a status line: up to ten rows a second of a body's log would bloat events.
            cut = len(message) - MAX_PROGRESS_MESSAGE
            message = f"{message[:MAX_PROGRESS_MESSAGE]}... ({cut:,} more characters)"
        try:
            self.store.write(nodes.progress_txn, task.instance_id, task.run_id, task.node_id, percent,
                             message, self.clock.now_iso())
        except (DiskFull, DatabaseBusy) as exc:
            # A progress row is a status line, not a result: the body must not fail (and run
            # again) because one could not be stored. Said once per node attempt.
            if task.instance_id not in self._progress_unsaved:
                self._progress_unsaved.add(task.instance_id)
                log.warning("node %s of run %s: progress not stored: %s", task.node_id, task.run_id, exc)

    def run_statuses(self, run_ids) -> dict[str, str]:
        return self.store.run_statuses(run_ids)

    def check_file(self) -> None:
        """Read the whole file through once per process (quick_check); DatabaseCorrupt if damaged."""
        self.store.check_once()

    # --- workers ---------------------------------------------------------------------------

    def register_worker(self, worker: Registered) -> None:
        cpu, memory_mb = worker.capacity
        self.store.write(workers.register_worker_txn, worker.worker_id, os.getpid(), pid_started(os.getpid()),
                         worker.concurrency, self.clock.now_iso(), cpu, memory_mb)
        self.workers.append(worker)
        self.watcher.start()

    def unregister_worker(self, worker: Registered) -> None:
        if worker not in self.workers:
            return  # never registered (e.g. a read-only file refused it): nothing to record
        self.workers.remove(worker)
        self.watcher.stop()
        try:
            self.store.write(workers.worker_stopped_txn, worker.worker_id, self.clock.now_iso())
        except DurableflowError as exc:  # read-only or closed: recovery tells the pid is gone
            # A worker that stopped on a storage error has said so already.
            log.log(logging.INFO if worker.errors else logging.WARNING,
                    "worker %s: could not record its stop: %s", worker.worker_id, exc)

    def recover(self) -> dict:
        return self.upkeep.recover()

    def maintain(self) -> None:
        self.upkeep.run()

    def fire_schedules(self) -> list[str]:
        """Fire the Timer schedules that are due (cheap when none is); the runs started."""
        return self.scheduler.tick()
