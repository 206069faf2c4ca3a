"""The Engine: the object users hold. It opens the store, registers workflows, starts and
controls runs, and coordinates workers; the transaction logic lives in durableflow.execution.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import secrets
import threading
from pathlib import Path

import jsonschema
from typing import Any, Callable, Iterator, Mapping

from durableflow import retry as retry_policy
from durableflow.clock import Clock, iso
from durableflow.definitions import load_definition, storable
from durableflow.definitions.notices import notices
from durableflow.durations import parse_duration
from durableflow.errors import (
    DatabaseCorrupt, DefinitionError, DurableflowError, InvalidTransition, NodeError, ValidationError,
    WaitTimeout)
from durableflow.execution import Execution
from durableflow.tasks import Outcome, Task
from durableflow.model import PRIORITIES, TERMINAL_RUN_STATUSES, RunStatus, WorkflowDef, thaw
from durableflow.plan import Plan, build_plan
from durableflow.procs import kill_left_behind, pid_started, process_alive
from durableflow.run import Run, build_run
from durableflow.runtimes import check_output
from durableflow.storage import Store
from durableflow.storage import history
from durableflow.storage import runs as R
from durableflow.storage.queue import extend_held_txn, message_row, reclaim_txn, requeue_dead_txn

log = logging.getLogger("durableflow.engine")
RUN_STATUSES = tuple(s.value for s in RunStatus)


class Engine:
    """`Engine("app.db")` opens or creates the database and migrates it forward."""

    def __init__(self, path: str | os.PathLike = "durableflow.db", *, clock: Clock | None = None,
                 lease_seconds: float = 30.0, synchronous: str = "NORMAL",
                 max_deliveries: int = 5, busy_timeout: float = 30.0, readonly: bool = False,
                 max_output_bytes: int = 16 * 1024 * 1024):
        if not isinstance(path, (str, os.PathLike)):
            raise ValidationError(f"database path must be a str or a path, not {type(path).__name__}")
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise ValidationError(f"max_deliveries must be a whole number of at least 1, not {max_deliveries!r}")
        if max_output_bytes is not None and (isinstance(max_output_bytes, bool) or not isinstance(
                max_output_bytes, int) or max_output_bytes < 0):
            raise ValidationError(f"max_output_bytes must be a whole number of bytes (0 or None: no "
                                  f"limit), not {max_output_bytes!r}")
        self.clock = clock or Clock()
        # An output is stored with its node and again in each message it sends downstream.
        self.max_output_bytes = max_output_bytes
        self.lease_seconds = _seconds(lease_seconds, "lease_seconds", positive=True)
        self.store = Store(path, clock=self.clock, synchronous=synchronous,
                           busy_timeout=busy_timeout, readonly=readonly)
        self.path = self.store.path
        self._plans: dict[tuple[str, int], Plan] = {}
        self._plans_lock = threading.Lock()
        self.execution = Execution(self._plan, max_deliveries=max_deliveries,
                                   new_run_id=self._new_run_id)
        self._cond = threading.Condition()
        self._generation = 0
        self._done = threading.Condition()   # notified when a run of this process finishes
        self._done_generation = 0
        self._workers: list = []
        self._subscriptions: list[Callable[[], None]] = []
        self._progress_last: dict[int, float] = {}

    # --- workflows -------------------------------------------------------------------------

    def load(self, source: str | os.PathLike | Mapping | WorkflowDef) -> WorkflowDef:
        if isinstance(source, WorkflowDef):
            return source
        return load_definition(source)

    def register(self, source: str | os.PathLike | Mapping | WorkflowDef) -> tuple[str, int]:
        """Store a definition (validated); returns (workflow_id, version). Same content, same version."""
        defn = self.load(source)
        for warning in notices(defn, f"workflow '{defn.workflow_id}'"):
            log.warning(warning)
        # Absolute script paths: the same file in two folders (running different scripts) is
        # two different versions.
        checksum, body = storable(defn)
        src = str(defn.source_path) if defn.source_path else None
        version, _created = self.store.write(R.register_workflow_txn, defn.workflow_id, checksum, body,
                                             src, defn.version, self.clock.now_iso())
        with self._plans_lock:
            self._plans.setdefault((defn.workflow_id, version), build_plan(defn, version))
        return defn.workflow_id, version

    def _plan(self, workflow_id: str, version: int) -> Plan:
        plan = self._plans.get((workflow_id, version))
        if plan is not None:
            return plan
        row = self.store.get_workflow(workflow_id, version)
        try:
            # Scripts may have moved since: a missing one fails its node, not every read of the run.
            defn = load_definition(json.loads(row["definition"]), check_programs=False, check_files=False)
        except DefinitionError as exc:
            raise DefinitionError(f"stored workflow '{workflow_id}' v{version} no longer loads: {exc}") from exc
        plan = build_plan(defn, version)
        with self._plans_lock:
            return self._plans.setdefault((workflow_id, version), plan)

    def workflows(self) -> list[dict]:
        return self.store.list_workflows()

    # --- runs ------------------------------------------------------------------------------

    def start(self, workflow: str | os.PathLike | Mapping | WorkflowDef, inputs: Any = None, *,
              idempotency_key: str | None = None, version: int | None = None,
              priority: str = "normal") -> str:
        """Start a run of a registered workflow id, or of a definition (registered first)."""
        inputs = {} if inputs is None else inputs
        if not isinstance(inputs, Mapping):
            raise ValidationError(f"run inputs must be an object (a dict of names), not {type(inputs).__name__}")
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise ValidationError(f"idempotency_key must be text, not {type(idempotency_key).__name__}")
        if isinstance(workflow, str) and not _looks_like_file(workflow):
            workflow_id = workflow
            if version is None:
                version = self.store.get_workflow(workflow_id)["version"]
            plan = self._plan(workflow_id, version)
            self._check_inputs(plan.definition, inputs)
        else:
            defn = self.load(workflow)
            self._check_inputs(defn, inputs)  # before registering: bad inputs store nothing
            workflow_id, version = self.register(defn)
            plan = self._plan(workflow_id, version)
        if priority not in PRIORITIES:
            raise ValidationError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        run_id, _created = self._write(self.execution.start_run, plan, self._new_run_id(), inputs,
                                       self.clock.now(), idempotency_key=idempotency_key,
                                       priority=PRIORITIES[priority])
        return run_id

    def _new_run_id(self) -> str:
        """32 hex digits, time-ordered (48-bit milliseconds, then 80 random bits), so new runs'
        rows land at the right edge of every index instead of all over a large file."""
        return f"{int(self.clock.now() * 1000):012x}{secrets.token_hex(10)}"

    def _check_inputs(self, defn: WorkflowDef, inputs: Any) -> None:
        try:
            check_output(inputs, "inputs")
        except NodeError as exc:
            raise ValidationError(f"run inputs: {exc}") from None
        schema = defn.inputs_schema
        if schema:
            errors = sorted(jsonschema.Draft202012Validator(thaw(schema)).iter_errors(inputs),
                            key=lambda e: list(e.absolute_path))
            if errors:
                raise ValidationError([
                    f"run inputs: {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                    for e in errors])

    def execute(self, workflow, inputs: Any = None, *, concurrency: int = 4,
                timeout: float | None = None, idempotency_key: str | None = None) -> Run:
        """Register, start, and work in-process until the run is finished."""
        timeout = _seconds(timeout, "timeout")
        worker = self.worker(concurrency=concurrency)   # checked before anything is stored
        run_id = self.start(workflow, inputs, idempotency_key=idempotency_key)
        worker.start()
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        try:
            while True:
                left = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
                try:
                    self.wait(run_id, timeout=0.5 if left is None else min(0.5, left))
                    break
                except WaitTimeout:
                    if worker.errors:
                        raise worker.errors[0] from None
                    if left is not None and left <= 0.5:
                        raise WaitTimeout(f"run {run_id} did not finish within {timeout}s") from None
        except BaseException:
            # Bound the call: nodes still in hand are abandoned; their leases expire and
            # another worker delivers them again.
            worker.stop(wait=False)
            raise
        worker.stop()
        return self.get_run(run_id)  # after the nodes in hand settled

    def get_run(self, run_id: str) -> Run:
        row, nodes = self.store.run_snapshot(run_id)
        try:
            plan = self._plan(row["workflow_id"], row["workflow_version"])
        except DefinitionError:
            plan = None  # its history stays readable; progress counts only the rows there are
        return build_run(row, nodes, plan, self.clock.now())

    def runs(self, status: str | None = None, workflow_id: str | None = None, limit: int = 100) -> list[dict]:
        if status is not None and status not in RUN_STATUSES:
            raise ValidationError(f"status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
        return self.store.list_runs(status, workflow_id, limit)

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.05) -> Run:
        """Block until the run is finished (by this process or any other)."""
        timeout = _seconds(timeout, "timeout")
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            gen = self._done_generation
            status = self.store.run_statuses([run_id]).get(run_id)
            if status is None:
                self.store.get_run_row(run_id)  # raises RunNotFound
            if status in TERMINAL_RUN_STATUSES:
                return self.get_run(run_id)
            if deadline is not None and self.clock.monotonic() >= deadline:
                raise WaitTimeout(f"run {run_id} is still {status} after {timeout}s")
            with self._done:
                if self._done_generation == gen:
                    self._done.wait(poll)

    def rerun(self, run_id: str, from_node: str | None = None) -> str:
        """Start the run again as a new run: the same workflow version and inputs. With
        `from_node`, keep what was recorded upstream of it and run it and its downstream again."""
        row = self.store.get_run_row(run_id)
        plan = self._plan(row["workflow_id"], row["workflow_version"])
        if from_node is None:
            return self.start(row["workflow_id"], json.loads(row["inputs"] or "null"),
                              version=row["workflow_version"],
                              priority={v: k for k, v in PRIORITIES.items()}[row["priority"]])
        if from_node not in plan.nodes:
            raise ValidationError(f"rerun --from: workflow '{plan.workflow_id}' v{plan.version} has "
                                  f"no node '{from_node}' (nodes: {', '.join(plan.nodes)})")
        if row["status"] not in TERMINAL_RUN_STATUSES:
            # Its upstream results may not be recorded yet: the new run would quietly start over.
            raise ValidationError(f"rerun --from: run {run_id} is {row['status']}; wait for it to "
                                  f"finish, or cancel it, then rerun from {from_node!r}")
        new_id = self._new_run_id()
        self._write(self.execution.rerun_from, plan, run_id, new_id, from_node, self.clock.now())
        return new_id

    def signal(self, run_id: str, name: str, data: Any = None) -> None:
        """Send a signal to a run: a WaitForSignal node waiting for `name` (now or later) takes
        it and completes with `data` as its output."""
        try:
            check_output(data, "signal data")
        except NodeError as exc:
            raise ValidationError(f"signal {name!r}: {exc}") from None
        self._write(self.execution.signal, run_id, name, data, self.clock.now())

    # --- control ---------------------------------------------------------------------------

    def pause(self, run_id: str, for_seconds: float | str | None = None) -> str:
        """Pause a run; with `for_seconds` (seconds or a duration such as '10m') it resumes by itself."""
        for_seconds = _seconds(for_seconds, "for_seconds", positive=True)
        until = self.clock.now() + for_seconds if for_seconds else None
        return self._write(self.execution.pause, run_id, self.clock.now(), until)

    def resume(self, run_id: str) -> str:
        return self._write(self.execution.resume, run_id, self.clock.now())

    def cancel(self, run_id: str, reason: str | None = None) -> str:
        """Cancel a run; `reason` is kept as its error, so its history says who stopped it."""
        return self._write(self.execution.cancel, run_id, self.clock.now(), reason)

    def requeue_dead_letter(self, message_id: int) -> None:
        """Put a dead-lettered message back; refused when its run is finished (use rerun)."""
        def txn(conn, now):
            msg = message_row(conn, message_id)
            if msg["run_id"] is not None:
                status = R.run_state(conn, msg["run_id"])[0]
                if status in TERMINAL_RUN_STATUSES:
                    raise InvalidTransition(
                        f"message {message_id}: run {msg['run_id']} is {status}; requeueing into a "
                        f"finished run is refused (use `durableflow rerun`)")
                # Dead-lettering failed the node and routed its Fail; delivering it again
                # would route the same node a second time.
                raise InvalidTransition(
                    f"message {message_id}: node '{msg['target_node_id']}' of run {msg['run_id']} "
                    f"already failed and its Fail was routed; use `durableflow rerun "
                    f"{msg['run_id']} --from {msg['target_node_id']}`")
            requeue_dead_txn(conn, message_id, now)
        self._write(txn, self.clock.now())

    def dead_letters(self) -> list[dict]:
        return self.store.dead_letters()

    def definition(self, workflow_id: str, version: int | None = None) -> WorkflowDef:
        """The stored definition of a workflow version (latest when version is None)."""
        if version is None:
            version = self.store.get_workflow(workflow_id)["version"]
        return self._plan(workflow_id, version).definition

    def run_definition(self, run_id: str) -> WorkflowDef:
        row = self.store.get_run_row(run_id)
        return self._plan(row["workflow_id"], row["workflow_version"]).definition

    def doctor(self) -> dict:
        """Integrity check of the database file, plus what the queue holds."""
        try:
            problems = [p for p in self.store.integrity_check() if p != "ok"]
        except DatabaseCorrupt as exc:
            problems = [str(exc)]
        report = {"path": self.path, "integrity": "ok" if not problems else problems}
        if not problems:
            report.update(schema_version=self.store.schema_version(), queue=self.store.queue_counts(),
                          dead_workers=self.dead_workers())
        return report

    def dead_workers(self) -> list[dict]:
        """Workers of this host recorded as running whose process is gone (killed, say) and not
        yet recovered; their leases go back with the next worker's upkeep or recover()."""
        return [{"worker_id": w, "pid": pid} for w, pid, _started in self._dead_workers_on_host()]

    def _dead_workers_on_host(self) -> list[tuple[str, int, str | None]]:
        """Workers on this host recorded as running whose process is gone (killed, say) and
        not yet recovered: (worker_id, pid, process start time)."""
        return [(worker_id, pid, started)
                for worker_id, pid, started in self.store.read(R.live_workers_on_host, socket.gethostname())
                if not any(w.worker_id == worker_id for w in self._workers)
                and not process_alive(pid, started)]

    # --- history ---------------------------------------------------------------------------

    def export_run(self, run_id: str) -> dict:
        """A run (with its subruns, definition versions, rows and events) as one JSON document."""
        return self.store.read(history.export_txn, run_id)

    def import_run(self, doc: dict) -> str:
        """Restore an exported run here; leased work becomes deliverable again. Returns its id."""
        def loads(text: str) -> None:
            load_definition(json.loads(text), check_programs=False, check_files=False)
        return self._write(history.import_txn, doc, self.clock.now_iso(), loads)

    def prune(self, older_than: float | str) -> int:
        """Delete runs finished more than `older_than` ago (seconds, or a duration such as
        '30d'), and all that belongs to them. It cannot be undone, so nothing below a second."""
        try:
            seconds = parse_duration(older_than)
        except ValueError as exc:
            raise ValidationError(f"prune older_than: {exc}") from None
        if seconds < 1:
            raise ValidationError(f"prune older_than: {older_than!r} would delete runs that finished "
                                  f"just now; give at least 1s")
        before = iso(self.clock.now() - seconds)
        total = 0
        while True:
            n = self.store.write(history.prune_txn, before, self.clock.now_iso())
            total += n
            if n == 0:
                return total

    # --- workers and recovery --------------------------------------------------------------

    def worker(self, concurrency: int = 4, **kwargs):
        """A background worker: `with engine.worker(concurrency=8): ...` stops it cleanly."""
        from durableflow.worker import Worker
        return Worker(self, concurrency=concurrency, **kwargs)

    def recover(self) -> dict:
        """Reclaim leases of dead workers on this host at once and of others when expired."""
        now_s = self.clock.now_iso()
        gone, left_behind = [], 0
        for worker_id, pid, started in self._dead_workers_on_host():
            gone.append(worker_id)
            # The processes of the nodes it held run on after it; stop them before those nodes
            # are given to someone else, or the same node would run twice side by side.
            left_behind += kill_left_behind(pid, started, self.store.deliveries_of_worker(worker_id))
        for worker_id in gone:
            self.store.write(R.mark_worker_gone_txn, worker_id, now_s)
        lost = self._reclaim(gone)
        return {"dead_workers": gone, "reclaimed": len(lost),
                "dead_lettered": sum(1 for r in lost if r.dead), "processes_killed": left_behind}

    def _reclaim(self, dead_workers=()) -> list:
        def txn(conn, now):
            lost = reclaim_txn(conn, now, dead_workers=dead_workers)
            self.execution.after_reclaim(conn, lost, now)
            return lost
        return self._write(txn, self.clock.now())

    def maintain(self) -> None:
        """Upkeep any worker does now and then (every second): leases of workers on this host
        whose process is gone (at once, not when the lease expires) and expired leases, ended
        pauses, run timeouts."""
        now = self.clock.now()
        now_s = iso(now)
        self.recover()
        for run_id in self.store.read(R.due_resumes, now_s):
            with contextlib.suppress(Exception):
                self.resume(run_id)
        for run_id in self.store.read(R.past_deadline, now_s):
            self._write(self.execution.time_out, run_id, now)

    def _register_worker(self, worker) -> None:
        self.store.write(R.register_worker_txn, worker.worker_id, os.getpid(), pid_started(os.getpid()),
                         worker.concurrency, self.clock.now_iso())
        self._workers.append(worker)

    def _unregister_worker(self, worker) -> None:
        if worker not in self._workers:
            return  # never registered (e.g. a read-only file refused it): nothing to record
        self._workers.remove(worker)
        try:
            self.store.write(R.worker_stopped_txn, worker.worker_id, self.clock.now_iso())
        except DurableflowError as exc:  # read-only or closed: recovery tells the pid is gone
            log.warning("worker %s: could not record its stop: %s", worker.worker_id, exc)

    def _heartbeat(self, worker_id: str, lease_seconds: float, tasks: list[Task]) -> None:
        def txn(conn, now):
            if tasks:
                extend_held_txn(conn, [(t.message.id, t.message.token) for t in tasks], now + lease_seconds)
            R.worker_heartbeat_txn(conn, worker_id, iso(now))
        self.store.write(txn, self.clock.now())

    # --- what workers call -----------------------------------------------------------------

    def _claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[Task]:
        try:
            return self.store.write(self.execution.claim, worker_id, limit, lease_seconds, self.clock.now())
        finally:
            self._notify_finished()  # a claim can fail a run whose definition no longer loads

    def _record(self, task: Task, outcome: Outcome) -> None:
        (error,), _ = self._record_many([(task, outcome)])
        if error is not None:
            raise error

    def _record_many(self, items: list[tuple[Task, Outcome]],
                     claim: tuple[str, int, float] | None = None) -> tuple[list, list[Task]]:
        """Record results in one transaction; each is guarded on its own (a stale lease on one
        does not undo the others). With `claim` = (worker_id, limit, lease_seconds), the same
        transaction also claims what is ready next. Returns (per-item None or the error that
        refused it, claimed tasks)."""
        now = self.clock.now()
        prepared = []
        for task, outcome in items:
            delay, reason = None, ""
            if not outcome.ok and outcome.park_until is None and outcome.await_signal is None \
                    and outcome.subflow is None:
                budget = task.plan.definition.retry_budget
                decision = retry_policy.decide(
                    task.node.retry, task.attempt, error_type=outcome.error_type,
                    error_types=outcome.error_types, exit_code=outcome.exit_code,
                    budget_left=None if budget is None else budget - task.retries_used)
                delay, reason = (decision.delay if decision.retry else None), decision.reason
            prepared.append((task, outcome, delay, reason))
            self._progress_last.pop(task.instance_id, None)
        def txn(conn):
            results = self.execution.record_many(conn, prepared, now)
            tasks = self.execution.claim(conn, *claim[:2], claim[2], now) if claim else []
            return results, tasks
        return self._write(txn)

    def _release(self, tasks: list[Task], why: str = "the worker stopped before starting it") -> None:
        """Give back claimed nodes that were not started: deliverable again at once."""
        def txn(conn, now):
            for task in tasks:
                self.execution.let_go(conn, task, why, now)
        self._write(txn, self.clock.now())

    def _progress(self, task: Task, percent: float, message: str | None) -> None:
        mono = self.clock.monotonic()
        last = self._progress_last.get(task.instance_id, 0.0)
        if percent < 100 and mono - last < 0.1:
            return  # at most ten progress rows a second per node
        self._progress_last[task.instance_id] = mono
        if message is not None and len(message) > MAX_PROGRESS_MESSAGE:
            # Kept to a status line: up to ten rows a second of a body's log would bloat events.
            cut = len(message) - MAX_PROGRESS_MESSAGE
            message = f"{message[:MAX_PROGRESS_MESSAGE]}... ({cut:,} more characters)"
        self.store.write(R.progress_txn, task.instance_id, task.run_id, task.node_id, percent,
                         message, self.clock.now_iso())

    # --- events ----------------------------------------------------------------------------

    def events(self, run_id: str | None = None, after: int = 0, *, follow: bool = False,
               timeout: float | None = None, poll: float = 0.05) -> Iterator[dict]:
        """Events after `after`, oldest first, as they stand. With follow=True, keep tailing
        (across processes) until the run is finished (when run_id is given) or `timeout` passes.

        Not following by default: a paused run, or one waiting for a signal, would keep
        `list(engine.events(run_id))` waiting for ever."""
        if isinstance(after, bool) or not isinstance(after, int):
            raise ValidationError(f"after must be an event sequence number (int), not {after!r}")
        timeout = _seconds(timeout, "timeout")
        if run_id is not None:
            self.store.get_run_row(run_id)  # RunNotFound for an unknown run, not silence
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            batch = self.store.events_after(after, run_id)
            for event in batch:
                after = event["seq"]
                yield event
            if batch:
                continue
            if not follow:
                return
            if run_id is not None and self.store.run_statuses([run_id]).get(run_id) in TERMINAL_RUN_STATUSES:
                if not self.store.events_after(after, run_id):
                    return
                continue
            if deadline is not None and self.clock.monotonic() >= deadline:
                return
            gen = self._generation
            self._wait_signal(gen, poll)

    def subscribe(self, callback: Callable[[dict], Any], run_id: str | None = None,
                  after: int | None = None, poll: float = 0.05) -> Callable[[], None]:
        """Call `callback(event)` for each new event on a background thread; returns unsubscribe
        (callable from inside the callback too). Closing the engine ends every subscription."""
        if not callable(callback):
            raise ValidationError(f"subscribe needs a callable, not {type(callback).__name__}")
        stop = threading.Event()
        start = self.store.last_event_seq() if after is None else after

        def pump():
            seq = start
            while not stop.is_set():
                try:
                    batch = self.store.events_after(seq, run_id)
                except DurableflowError:
                    if stop.is_set():
                        return  # the engine closed under us
                    raise
                for event in batch:
                    if stop.is_set():
                        return
                    seq = event["seq"]
                    try:
                        callback(event)
                    except Exception:
                        log.exception("event subscriber raised")
                gen = self._generation
                if not stop.is_set():
                    self._wait_signal(gen, poll)

        thread = threading.Thread(target=pump, name="durableflow-subscriber", daemon=True)

        def unsubscribe():
            stop.set()
            self._signal()
            with contextlib.suppress(ValueError):
                self._subscriptions.remove(unsubscribe)
            if threading.current_thread() is not thread:
                thread.join(5)

        self._subscriptions.append(unsubscribe)
        thread.start()
        return unsubscribe

    # --- in-process wake-ups ---------------------------------------------------------------

    def _signal(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _wait_signal(self, generation: int, timeout: float) -> None:
        with self._cond:
            if self._generation == generation:
                self._cond.wait(timeout)

    def _write(self, fn, *args, **kwargs):
        """store.write, then wake waiters of runs the transaction finished and idle workers."""
        try:
            return self.store.write(fn, *args, **kwargs)
        finally:
            self._notify_finished()
            self._signal()

    def _notify_finished(self) -> None:
        if self.execution.take_finished():
            with self._done:
                self._done_generation += 1
                self._done.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Stop this engine's workers (letting the nodes in hand finish; with a timeout, waiting
        at most that long, after which running nodes are told to cancel and their leases left to
        expire), then close the database."""
        timeout = _seconds(timeout, "timeout")
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        for unsubscribe in list(self._subscriptions):
            unsubscribe()
        for w in list(self._workers):
            w.stop(None if deadline is None else max(0.0, deadline - self.clock.monotonic()))
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


MAX_PROGRESS_MESSAGE = 1000   # characters of a progress message that are stored


def _looks_like_file(text: str) -> bool:
    return text.endswith((".yaml", ".yml", ".json")) or os.sep in text or Path(text).is_file()


def _seconds(value: Any, what: str, *, positive: bool = False) -> float | None:
    """A time argument of the API: seconds or a duration string; None stays None."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValidationError(f"{what}: {exc}") from None
    if positive and seconds <= 0:
        raise ValidationError(f"{what}: must be more than zero, not {value!r}")
    return seconds
