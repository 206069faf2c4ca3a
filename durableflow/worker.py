"""A worker: claims node messages, runs their bodies on a thread pool, records the results.

One dispatcher thread claims (in batches) and runs cheap nodes (Noop, routing) on the spot;
other bodies go to a pool of `concurrency` threads. A keeper thread renews the leases of the
nodes in hand and tells a body to stop when its run ended or its lease was taken over. An
upkeep thread does the engine's upkeep (expired leases, timed-out runs, pauses that end by
themselves): on a thread of its own, so a slow pass never delays a lease renewal.

A result that cannot be written (disk full, I/O error) is kept and written again, with a
backoff, for up to STORAGE_PATIENCE seconds: a body never runs again because storage failed
once. If storage keeps failing, the worker stops and says why (`worker.errors`).

A worker knows the service its engine hands it (durableflow.service), never the engine.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from durableflow.builtins import BUILTIN_TYPES, NOT_YET, AwaitSignal, Loop, Park, Subflow, run_builtin
from durableflow.errors import (
    DatabaseBusy, DatabaseUnavailable, DiskFull, DurableflowError, InvalidTransition, NodeCancelled,
    NodeError, StorageError, ValidationError,
)
from durableflow.runtimes import INLINE_RUNTIMES, NodeContext, check_output, get_runtime
from durableflow.secrets import NO_SECRETS, open_body
from durableflow.storage.connection import forked_with_workers
from durableflow.tasks import Outcome, Task

if TYPE_CHECKING:
    from durableflow.service import WorkerService

log = logging.getLogger("durableflow.worker")

_INLINE = INLINE_RUNTIMES | BUILTIN_TYPES | NOT_YET
# Run and recorded within the transaction that claimed them (see WorkerService.record_many):
# pure and quick. IfElse and Switch are, when their expression has no comprehension.
_CHEAP = INLINE_RUNTIMES | {"Manual", "Timer", "Event", "Wait"}
_CHEAP_EXPRESSION = {"IfElse": "condition", "Switch": "expression"}
# Nodes run on the dispatcher are never told to cancel: they are over before anyone could.
_NEVER_CANCELLED = threading.Event()
_STOPPED_RUN = frozenset({"cancelled", "failed", "completed"})

# Storage errors that may pass (a full disk freed, a lock let go, a database server back after a
# restart): a write that failed with one is tried again. Others (a damaged or read-only file, a
# closed store) stop the worker at once.
_MAY_PASS = (DiskFull, DatabaseBusy, DatabaseUnavailable)
# Seconds a worker keeps trying to record a result (or to claim) while storage fails, never more
# than half a lease; then it stops with the storage error. The waits between tries double from
# the first, up to the last.
STORAGE_PATIENCE = 5.0
RETRY_WAIT_FIRST, RETRY_WAIT_MAX, RETRY_TRIES_MAX = 0.05, 1.0, 12
# Marks a log record of an error the worker also puts in `worker.errors`, for whoever reports
# those itself (the CLI) to leave out.
REPORTED = {"durableflow_reported": True}


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(self, service: "WorkerService", *, concurrency: int = 4, lease_seconds: float | None = None,
                 batch: int = 64, worker_id: str | None = None, poll_max: float = 1.0,
                 quick_check: bool = True, schedules: bool = True, resources: dict | None = None):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError(f"worker concurrency must be a whole number of at least 1, "
                                  f"not {concurrency!r}")
        self.service = service
        self.clock = service.clock
        # What this worker offers nodes that declare `resources`: as given, else the machine's.
        self.capacity = _capacity(resources)
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds or service.lease_seconds
        self.batch = batch
        self.worker_id = worker_id or new_worker_id()
        self.poll_max = poll_max
        # Off only for whoever checks the file another way (`durableflow doctor`, a benchmark
        # timing the check apart): it reads the whole file, about a second per GB.
        self.quick_check = quick_check
        # Every worker also runs the scheduler, but `run`/`execute`'s, which only see one run through.
        self.schedules = schedules
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="durableflow-node")
        self._lock = threading.Condition()
        self._inflight: dict[int, Task] = {}
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._wake_keeper = threading.Event()   # look now, not at the next tick
        self._abandon = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inline_streak = False
        self.idle = threading.Event()       # set when the worker found nothing to do
        self.claim_rounds = 0               # claims begun: who saw it idle can tell it went on
        self.checked = threading.Event()    # set when the start-up quick_check has finished
        self._started = False
        self._futures: dict[int, Any] = {}   # instance id -> the pool's future of its body
        self._lost: set[int] = set()   # instance ids of bodies whose lease was taken over
        self.patience = min(STORAGE_PATIENCE, self.lease_seconds / 2)
        self.errors: list[BaseException] = []

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> "Worker":
        if self._started:
            raise InvalidTransition(f"worker {self.worker_id} was already started; a worker runs "
                                    f"once: make a new one with engine.worker()")
        self._started = True
        if self.quick_check:
            # Before anything is written (the workers row, recovery, claims): nothing may be
            # written to a damaged file. It reads the whole file, about a second per GB, once per
            # process and file (Engine.execute() in a loop pays it once).
            try:
                self.service.check_file()
            finally:
                self.checked.set()
        else:
            self.checked.set()
        self.service.register_worker(self)
        _RUNNING.add(self)
        self.recovered = self.service.recover()
        threads = [(self._dispatch, "dispatcher"), (self._keep, "keeper"), (self._upkeep, "upkeep")]
        for target, name in threads:
            t = threading.Thread(target=self._guard, args=(target,), name=f"durableflow-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Stop claiming, let the nodes in hand finish and record, then return.

        With a timeout, wait at most that many seconds for them; nodes still running then are
        treated as with wait=False. With wait=False, return at once: the nodes in hand are told
        to cancel; a body that stops in time is recorded or given back for redelivery, and the
        lease of one that does not expires (nothing renews it any more).
        """
        self._stopping.set()
        self.service.notifier.work()   # wake our dispatcher if it waits for work
        deadline = None if timeout is None else self.clock.monotonic() + max(0.0, timeout)
        if wait and deadline is not None:
            with self._lock:
                while self._inflight:
                    left = deadline - self.clock.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(min(left, 0.1))   # a body's end notifies; 0.1 s is a backstop
                wait = not self._inflight
        if not wait:
            self._abandon.set()
            with self._lock:
                for task in self._inflight.values():
                    task.cancel_event.set()
            self._give_back_unstarted()
        for t in self._threads:
            t.join(1.0 if not wait else None if deadline is None
                   else max(0.0, deadline - self.clock.monotonic()))
            # The keeper leaves once the dispatcher has and no node is in hand: tell it now
            # rather than at its next tick (a tenth of a second on every execute()).
            self._wake_keeper.set()
        if not wait:
            # Again: a claim under way when we were told to stop may have handed the pool more
            # since, and the shutdown below would cancel those without giving them back.
            self._give_back_unstarted()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._stopped.set()
        _RUNNING.discard(self)
        self.service.unregister_worker(self)

    def _give_back_unstarted(self) -> None:
        """Bodies queued for a thread but not begun are given back at once, not left to a lease
        that only expires later."""
        with self._lock:
            unstarted = [self._inflight.pop(iid) for iid, f in list(self._futures.items())
                         if f.cancel() and iid in self._inflight]
        if unstarted:
            try:
                self.service.release(unstarted)
            except DurableflowError as exc:
                log.error("worker %s: could not give back %d node(s): %s", self.worker_id,
                          len(unstarted), exc)

    def __enter__(self) -> "Worker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _guard(self, fn) -> None:
        try:
            fn()
        except DurableflowError as exc:
            self._fail(exc)
        except BaseException as exc:  # a dying thread must not take the worker down silently
            log.exception("worker %s: %s crashed", self.worker_id, fn.__name__)
            self.errors.append(exc)
            self._stopping.set()

    def _fail(self, exc: DurableflowError) -> None:
        """Stop the worker on an error it cannot work past; `errors` says which."""
        log.error("worker %s: %s", self.worker_id, exc, extra=REPORTED)
        self.errors.append(exc)
        self._stopping.set()
        self.service.notifier.work()

    # --- claiming --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        service = self.service
        wait = 0.001
        tasks: list[Task] = []
        failing = _Trouble(self, "claiming work")
        while not self._stopping.is_set():
            if not tasks:
                free = self._free_slots()
                if free <= 0:
                    continue
                limit = max(free, self.batch) if self._inline_streak else free
                gen = service.work_generation()
                # Not idle while a claim is under way: what it takes may not show in the
                # database (a lease not yet written) nor in `busy` (not yet in hand).
                self.idle.clear()
                self.claim_rounds += 1
                try:
                    # Cheap nodes claimed are run and recorded in the claiming transaction, and
                    # what they lead to claimed there too (service._claim_rounds).
                    tasks, ran = service.claim_and_run(
                        (self.worker_id, limit, self.lease_seconds, self._free_resources),
                        self._cheap_outcomes, self._runs_inline)
                except DurableflowError as exc:
                    # Nothing was claimed (the transaction rolled back): nothing is lost by
                    # trying again, after the same waits as when there is no work. A damaged
                    # or read-only file stops the worker at once, a full disk after `patience`
                    # (a lock held elsewhere never does: the busy wait has waited already).
                    seconds = failing.failed(exc)
                    if isinstance(exc, StorageError) and not isinstance(exc, DatabaseBusy) and (
                            seconds > self.patience or not isinstance(exc, (DiskFull, DatabaseUnavailable))):
                        self._fail(failing.give_up(exc))
                        break
                    service.wait_for_work(gen, wait)
                    wait = min(wait * 2, self.poll_max)
                    continue
                if failing.since is not None:
                    failing.ok()
                if not tasks:
                    if ran:
                        self._inline_streak = True
                        continue
                    self._inline_streak = False
                    self.idle.set()
                    service.wait_for_work(gen, wait)
                    wait = min(wait * 2, self.poll_max)
                    continue
            self.idle.clear()
            wait = 0.001
            inline, surplus = [], []
            slots = self._free_slots(block=False)
            for task in tasks:
                if task.node.runtime_type in _INLINE:
                    task.cancel_event = _NEVER_CANCELLED
                    inline.append((task, self._outcome(task)))
                elif slots <= 0:
                    surplus.append(task)
                else:
                    slots -= 1
                    task.cancel_event = threading.Event()
                    with self._lock:
                        self._inflight[task.instance_id] = task
                    try:
                        future = self._pool.submit(self._run_pooled, task)
                        with self._lock:
                            self._futures[task.instance_id] = future
                    except RuntimeError:
                        # The interpreter is exiting with this worker still running (never
                        # stopped): its thread pools take no more work. Give the node back.
                        with self._lock:
                            self._inflight.pop(task.instance_id, None)
                        surplus.append(task)
                        self._stopping.set()
            if surplus:
                # A batch sized for cheap nodes brought bodies beyond our free threads: give
                # them back at once, for another worker (or us, later) to take.
                try:
                    service.release(surplus, "claimed in a batch beyond the worker's free "
                                             "threads; given back unstarted")
                except DurableflowError as exc:
                    log.error("worker %s: could not give back %d node(s): %s", self.worker_id,
                              len(surplus), exc)
            self._inline_streak = len(inline) == len(tasks)
            tasks = []
            if inline:
                # Cheap nodes claimed together are recorded together, and the transaction that
                # records them claims what comes next: one commit per step of a chain.
                free = self._free_slots(block=False)
                nxt = max(free, self.batch) if self._inline_streak else free
                tasks = self._record(inline, claim_next=0 if self._stopping.is_set() else nxt)
        if tasks:
            # Claimed by the last record transaction as we were told to stop: give them back.
            try:
                service.release(tasks)
            except DurableflowError as exc:
                log.error("worker %s: could not give back %d claimed node(s), their leases will "
                          "expire: %s", self.worker_id, len(tasks), exc)

    def _free_resources(self) -> tuple[float, float]:
        """The cpu and memory (MB) the nodes in hand leave free."""
        cpu, memory = self.capacity
        with self._lock:
            for task in self._inflight.values():
                need = task.plan.limits.get(task.node_id)
                if need is not None and need.resources is not None:
                    cpu -= need.resources.cpu or 0.0
                    memory -= need.resources.memory_mb or 0
        return cpu, memory

    def _free_slots(self, block: bool = True) -> int:
        with self._lock:
            free = self.concurrency - len(self._inflight)
            if free <= 0 and block:
                self._lock.wait(0.05)
            return free

    def _run_pooled(self, task: Task) -> None:
        try:
            self._execute(task)
        except BaseException:
            log.exception("worker %s: node %s crashed the worker thread", self.worker_id, task.node_id)
        finally:
            with self._lock:
                self._inflight.pop(task.instance_id, None)
                self._futures.pop(task.instance_id, None)
                self._lost.discard(task.instance_id)
                self._lock.notify_all()
            if self._stopping.is_set():
                self._wake_keeper.set()

    # --- running a body --------------------------------------------------------------------

    def _execute(self, task: Task) -> None:
        if not self._abandon.is_set():
            outcome = self._outcome(task)
            if task.instance_id in self._lost:
                # Its lease expired and was taken back while it ran: the attempt is recorded
                # as lost, and another delivery of the node is this node's now.
                log.warning("worker %s: node %s of run %s (attempt %d): its lease was taken over "
                            "while it ran; the body was told to stop and its result is not recorded",
                            self.worker_id, task.node_id, task.run_id, task.attempt)
                return
            self._record([(task, outcome)])
            return
        # Stopped at once before this body began: give the node back now rather than leave it
        # to a lease that only expires later.
        try:
            self.service.release([task])
        except DurableflowError as exc:
            log.error("worker %s: could not give back node %s: %s", self.worker_id, task.node_id, exc)

    def _outcome(self, task: Task) -> Outcome:
        """Run the node body and say how it went. Never raises for a body's failure."""
        node = task.node
        kind = node.runtime_type
        redact = NO_SECRETS
        try:
            variables = None
            if kind == "Noop":
                output, port = task.input, None
            elif kind in BUILTIN_TYPES or kind in NOT_YET:
                try:
                    output, port = run_builtin(task, self.clock.now())
                except Park as park:
                    return Outcome(False, park_until=park.until)
                except AwaitSignal as wait:
                    return Outcome(False, await_signal=(wait.name, wait.deadline))
                except (Subflow, Loop) as step:
                    return Outcome(False, subflow=step)
            else:
                port = None
                # References to secrets resolved for the body alone; what it hands back is masked.
                body = open_body(self.service.secrets, node, task.input, task.inputs,
                                 task.variables if kind == "Python" else None,
                                 payload_text=task.message.payload)
                redact = body.redact
                ctx = NodeContext(
                    run_id=task.run_id, node_id=task.node_id, attempt=task.attempt,
                    input=body.input, inputs=body.inputs, vars=body.vars,
                    cancel_event=task.cancel_event, iteration=task.message.iteration,
                    progress_cb=lambda pct, msg, t=task: self.service.progress(t, pct, redact.text(msg)),
                    logger=body.log(task.node_id),
                    clock=self.clock, max_stream_bytes=self.service.max_stream_bytes,
                    scheduled_at=task.scheduled_at, failure=task.payload.get("failure"),
                    idempotency_key=_idempotency_key(task),
                )
                output = redact.value(get_runtime(kind).execute(body.node, ctx, timeout=node.timeout))
                if kind == "Python":
                    variables = body.stored_vars(ctx.vars)
            # Passed on unchanged (Noop, IfElse, Switch): its JSON is the input's, if known.
            output_json = task.input_json if output is task.input and task.input_json is not None \
                else check_output(output)
            limit = self.service.max_output_bytes
            size = len(output_json) if output_json.isascii() else len(output_json.encode())
            if limit and size > limit:
                raise NodeError(f"node {task.node_id!r}: output is {size:,} bytes of JSON, "
                                f"over the {limit:,}-byte limit (Engine(max_output_bytes=...)); "
                                f"write large data to a file and return its path",
                                error_type="OutputTooLarge")
            outcome = Outcome(True, output, output_json, port, variables)
            if variables is not None:
                check_output(variables, "ctx.vars")
            return outcome
        except NodeError as exc:
            # Only the engine cancels: a body raising NodeCancelled on its own has failed.
            cancelled = isinstance(exc, NodeCancelled) and task.cancel_event.is_set()
            return Outcome(False, error=redact.text(str(exc)), error_type=exc.error_type,
                           error_types=exc.error_types, exit_code=exc.exit_code, cancelled=cancelled,
                           retryable=exc.retryable)
        except Exception as exc:  # the engine's own failure around a body: still a node failure
            return Outcome(False, error=redact.text(f"{type(exc).__name__}: {exc}"),
                           error_type=type(exc).__name__)

    def _record(self, items: list[tuple[Task, Outcome]], claim_next: int = 0) -> list[Task]:
        """Record results (and, in the same transaction, claim up to `claim_next` new tasks, and
        run and record the cheap ones among them, and so on for a few rounds)."""
        claim = ((self.worker_id, claim_next, self.lease_seconds, self._free_resources)
                 if claim_next > 0 else None)
        try:
            results, tasks = self.service.record_many(items, claim=claim, cheap=self._cheap_outcomes,
                                                      inline=self._runs_inline)
        except DurableflowError as exc:
            got = self._record_again(items, claim, exc)
            if got is None:
                return []
            results, tasks = got
        for (task, _outcome), err in zip(items, results):
            if err is not None:
                log.warning("worker %s: result of %s discarded: %s", self.worker_id, task.node_id, err)
        return tasks

    def _runs_inline(self, plan, node_id: str) -> bool:
        """Whether _cheap_outcomes runs this node inside the transaction that claims it."""
        if self._stopping.is_set():
            return False
        kind = plan.nodes[node_id].runtime_type
        if kind in _CHEAP:
            return True
        key = _CHEAP_EXPRESSION.get(kind)
        return key is not None and not getattr(plan.compiled.get(f"{node_id}.{key}"), "loops", True)

    def _cheap_outcomes(self, tasks: list[Task]) -> tuple[list[tuple[Task, Outcome]], list[Task]]:
        """The outcomes of the cheap nodes among `tasks` (run here, inside the transaction that
        claimed them), and the other tasks, for the dispatcher."""
        done, others = [], []
        for task in tasks:
            if not self._runs_inline(task.plan, task.node_id):
                others.append(task)
                continue
            task.cancel_event = _NEVER_CANCELLED
            done.append((task, self._outcome(task)))
        return done, others

    def _record_again(self, items: list[tuple[Task, Outcome]], claim, exc: DurableflowError):
        """Writing results failed and its transaction rolled back. Keep the outcomes and write
        them again, waiting longer each time, for up to `patience` seconds (within the lease,
        which the keeper renews meanwhile): a body must not run again because a write failed.
        Returns what record_many returns, or None when the worker gave up and stops."""
        task = items[0][0]
        what = (f"the result of node {task.node_id!r} of run {task.run_id}" if len(items) == 1
                else f"the results of {len(items)} nodes")
        if not isinstance(exc, _MAY_PASS):
            if isinstance(exc, StorageError):   # damaged, read-only, closed: waiting cannot help
                self._fail(type(exc)(f"could not record {what}: {exc.message}"))
            else:   # a fault of ours: the leases expire and the nodes are delivered again
                log.error("worker %s: could not record %s: %s", self.worker_id, what, exc)
            return None
        clock = self.clock
        began = clock.monotonic()
        deadline = began + self.patience
        log.warning("worker %s: could not record %s, trying again for up to %gs: %s",
                    self.worker_id, what, self.patience, exc)
        wait, tries = RETRY_WAIT_FIRST, 1
        while tries < RETRY_TRIES_MAX:
            left = deadline - clock.monotonic()
            if left <= 0 or clock.sleep(min(wait, left), until=self._abandon):
                break
            wait = min(wait * 2, RETRY_WAIT_MAX)
            tries += 1
            try:
                got = self.service.record_many(items, claim=claim)
            except _MAY_PASS as again:
                exc = again
                continue
            except DurableflowError as again:
                exc = again
                break
            log.warning("worker %s: recorded %s at try %d", self.worker_id, what, tries)
            return got
        if self._abandon.is_set():
            log.error("worker %s: stopped while recording %s failed; the node is delivered again "
                      "once its lease expires: %s", self.worker_id, what, exc)
            return None
        self._fail(type(exc)(f"could not record {what} ({tries} tries in "
                             f"{clock.monotonic() - began:.1f}s): {exc.message}"))
        return None

    # --- keeping leases and doing upkeep --------------------------------------------------

    def _keep(self) -> None:
        """Renew the leases of the nodes in hand every third of a lease; tell a body to stop
        when its run has ended, or when its lease could not be renewed (taken over)."""
        service = self.service
        clock = self.clock
        beat = self.lease_seconds / 3
        next_beat = clock.monotonic() + beat
        failing = _Trouble(self, "renewing leases")
        while not self._stopped.is_set():
            self._wake_keeper.wait(0.1)
            self._wake_keeper.clear()
            if self._stopping.is_set() and not self._threads[0].is_alive() and (
                    self.busy == 0 or self._abandon.is_set()):
                return
            with self._lock:
                inflight = list(self._inflight.values())
            if clock.monotonic() >= next_beat:
                try:
                    lost = service.heartbeat(self.worker_id, self.lease_seconds, inflight)
                except DurableflowError as exc:
                    failing.failed(exc)
                    next_beat = clock.monotonic() + min(1.0, beat)   # soon, not at every tick
                else:
                    if failing.since is not None:
                        failing.ok()
                    next_beat = clock.monotonic() + beat
                    if lost:
                        self._leases_lost(lost)
            if inflight:
                try:
                    statuses = service.run_statuses({t.run_id for t in inflight})
                except DurableflowError as exc:
                    log.debug("worker %s: could not read run statuses: %s", self.worker_id, exc)
                else:
                    for t in inflight:
                        status = statuses.get(t.run_id)
                        if status in _STOPPED_RUN or (status == "compensating"
                                                      and "compensates" not in t.payload):
                            t.cancel_event.set()   # a compensating run's own nodes stop too

    def _leases_lost(self, lost: list[Task]) -> None:
        """Bodies whose lease was taken over: another delivery of their node is the one that
        counts now. Stop them (a process body's process group is killed) and do not record."""
        with self._lock:
            for task in lost:
                if task.instance_id in self._inflight:
                    self._lost.add(task.instance_id)
                    task.cancel_event.set()

    def _upkeep(self) -> None:
        """Recovery and timed work about once a second, and the scheduler ten times a second
        (it looks at the database only when a fire time is due). A pass may be slow (stopping a
        dead worker's processes, taking back thousands of leases): it has this thread to itself."""
        failing = _Trouble(self, "upkeep")
        clock = self.clock
        next_pass = clock.monotonic() + 1.0
        while not self._stopping.wait(0.1):
            try:
                if self.schedules:
                    self.service.fire_schedules()
                if clock.monotonic() >= next_pass:
                    next_pass = clock.monotonic() + 1.0
                    self.service.maintain()
            except DurableflowError as exc:
                failing.failed(exc)
            else:
                if failing.since is not None:
                    failing.ok()


class _Trouble:
    """A run of failures of one thing a worker does: said when it begins and when it ends, not
    at every try (a full disk would otherwise print a line ten times a second)."""

    __slots__ = ("worker", "what", "since", "tries")

    def __init__(self, worker: Worker, what: str):
        self.worker, self.what = worker, what
        self.since: float | None = None
        self.tries = 0

    def failed(self, exc: DurableflowError) -> float:
        """Count a failure; returns the seconds since the first of this run of failures."""
        now = self.worker.clock.monotonic()
        self.tries += 1
        if self.since is None:
            self.since = now
            log.warning("worker %s: %s failed, trying again: %s", self.worker.worker_id, self.what, exc)
        return now - self.since

    def ok(self) -> None:
        log.warning("worker %s: %s works again (after %d failed tries)", self.worker.worker_id,
                    self.what, self.tries)
        self.since, self.tries = None, 0

    def give_up(self, exc: DurableflowError) -> DurableflowError:
        seconds = 0.0 if self.since is None else self.worker.clock.monotonic() - self.since
        return type(exc)(f"{self.what} failed ({self.tries} tries in {seconds:.1f}s): {exc.message}")


# Workers started and not yet stopped. One hook, registered once, stops those still running
# when the interpreter exits (a hook per worker would keep every worker ever made alive).
_RUNNING: "weakref.WeakSet[Worker]" = weakref.WeakSet()


def _stop_running_workers() -> None:
    for worker in list(_RUNNING):
        worker.stop(wait=False)


# Registered with threading._register_atexit, as concurrent.futures registers its pool shutdown:
# those hooks run newest first and before `atexit` ones, so the workers stop while their pools
# still take work back. Where that private hook is missing, atexit is the best there is.
getattr(threading, "_register_atexit", atexit.register)(_stop_running_workers)


def _after_fork_in_child() -> None:
    # The copies of the parent's workers are not ours to stop at exit. And their threads, which
    # may have held SQLite's mutexes and file locks at the fork, did not come along: a database
    # opened here could wait for ever on them, so connect() refuses with a clear error instead.
    if _RUNNING:
        forked_with_workers(os.getppid())
    _RUNNING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _idempotency_key(task) -> str:
    """run:node:iteration, and for a compensation the node it undoes (one compensation node
    may undo several nodes at one iteration)."""
    key = f"{task.run_id}:{task.node_id}:{task.message.iteration}"
    undone = task.payload.get("compensates")
    return f"{key}:undo:{undone}" if undone else key


def _capacity(resources: dict | None) -> tuple[float, int]:
    """(cpu, memory MB) a worker offers: what it declares, else this machine's cores and memory."""
    given = dict(resources or {})
    unknown = set(given) - {"cpu", "memoryMb"}
    if unknown:
        raise ValidationError(f"worker resources: unknown key {sorted(unknown)[0]!r} (keys: cpu, memoryMb)")
    cpu, memory = given.get("cpu"), given.get("memoryMb")
    for name, value in (("cpu", cpu), ("memoryMb", memory)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ValidationError(f"worker resources: {name} must be a number above 0, not {value!r}")
    if cpu is None:
        cpu = float(os.cpu_count() or 1)
    if memory is None:
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
        except (ValueError, OSError, AttributeError):
            memory = 1024
    return float(cpu), int(memory)
