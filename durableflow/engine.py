"""The Engine: the object users hold. It opens the store, registers workflows, starts, waits
for and controls runs, and makes workers. The transaction logic lives in durableflow.execution,
the service workers use in durableflow.service, recovery and timed upkeep in durableflow.upkeep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import jsonschema

from durableflow import metrics
from durableflow.clock import Clock, iso, parse_iso
from durableflow.definitions import load_definition, storable
from durableflow.definitions.nesting import Drawing, nest, run_tree
from durableflow.definitions.notices import notices
from durableflow.durations import parse_duration
from durableflow.errors import (
    DatabaseCorrupt, DefinitionError, DurableflowError, InvalidTransition, NodeError, NotFound, ValidationError,
    WaitTimeout)
from durableflow.execution import Execution
from durableflow.execution.children import DEFAULT_MAX_NESTING
from durableflow.execution.limits import declare_txn as declare_limits_txn
from durableflow.model import PRIORITIES, TERMINAL_RUN_STATUSES, RunStatus, WorkflowDef, thaw
from durableflow.notify import FINISHED, WORK, Notifier
from durableflow.plan import Plans
from durableflow.run import Run, build_run
from durableflow.runtimes import check_output
from durableflow.runtimes.base import DEFAULT_MAX_OUTPUT
from durableflow.secrets import Secrets, is_ref, ref_problems
from durableflow.service import WorkerService
from durableflow.storage import Store, history, limits, queue, runs, schedules, workflows
from durableflow.timing import OVERLAP
from durableflow.triggers import events as trigger_events
from durableflow.triggers.schedules import Firing, sync_txn, timing_of_row

log = logging.getLogger("durableflow.engine")
RUN_STATUSES = tuple(s.value for s in RunStatus)


class Definable(Protocol):
    """A workflow built in Python (durableflow.Workflow), or anything that compiles to a
    definition: Engine.load takes it as it takes a file."""

    def to_definition(self) -> WorkflowDef: ...


class Engine:
    """`Engine("app.db")` opens or creates the database and migrates it forward."""

    def __init__(self, path: str | os.PathLike = "durableflow.db", *, clock: Clock | None = None,
                 lease_seconds: float = 30.0, synchronous: str = "NORMAL",
                 max_deliveries: int = 5, busy_timeout: float = 30.0, readonly: bool = False,
                 max_output_bytes: int = 16 * 1024 * 1024,
                 max_stream_bytes: int = DEFAULT_MAX_OUTPUT, check: bool = False,
                 max_nesting: int = DEFAULT_MAX_NESTING,
                 secrets: str | os.PathLike | Mapping[str, str] | Secrets | None = None):
        """check=True reads the whole file through (quick_check) before writing anything to it,
        migrations included, and refuses a damaged file untouched (DatabaseCorrupt). Once per
        process and file: workers and execute() check the same way, and skip a file this
        process has already found sound.

        max_nesting: how deep runs started by Subflow, ForEach and While nodes may nest (a
        top-level run is 0 deep); a node that would go deeper fails with NestingTooDeep. It
        applies where those nodes run: the workers of this engine.

        secrets: a secrets file (readable by its owner only) or a mapping of names to values,
        looked in before the environment when this engine's workers resolve `{"$secret": NAME}`.
        A file is checked here, before the database is opened (SecretsFileError)."""
        if not isinstance(path, (str, os.PathLike)):
            raise ValidationError(f"database path must be a str or a path, not {type(path).__name__}")
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise ValidationError(f"max_deliveries must be a whole number of at least 1, not {max_deliveries!r}")
        if max_output_bytes is not None and (isinstance(max_output_bytes, bool) or not isinstance(
                max_output_bytes, int) or max_output_bytes < 0):
            raise ValidationError(f"max_output_bytes must be a whole number of bytes (0 or None: no "
                                  f"limit), not {max_output_bytes!r}")
        if isinstance(max_stream_bytes, bool) or not isinstance(max_stream_bytes, int) or max_stream_bytes < 1:
            raise ValidationError(f"max_stream_bytes must be a whole number of bytes of at least 1, "
                                  f"not {max_stream_bytes!r}")
        if isinstance(max_nesting, bool) or not isinstance(max_nesting, int) or max_nesting < 1:
            raise ValidationError(f"max_nesting must be a whole number of at least 1, not {max_nesting!r}")
        # Before the database is opened: a bad file is refused with nothing touched.
        vault = secrets if isinstance(secrets, Secrets) else Secrets(secrets)
        self.lease_seconds = _seconds(lease_seconds, "lease_seconds", positive=True)
        # Without a clock given, the store picks one: the wall clock on SQLite, the database
        # server's on PostgreSQL (one clock for every host sharing it).
        self.store = Store(path, clock=clock, synchronous=synchronous,
                           busy_timeout=busy_timeout, readonly=readonly, check=check)
        self.clock = self.store.clock
        self.path = self.store.path
        self.notifier = Notifier()
        self.plans = Plans(self._stored_definition)
        self.execution = Execution(self.plans, max_deliveries=max_deliveries, max_nesting=max_nesting,
                                   new_run_id=self._new_run_id, run_finished=self.notifier.run_finished)
        self.firing = Firing(self.execution.runs, self.plans, self._new_run_id)
        # What workers use; built here, handed to each worker this engine makes.
        self.service = WorkerService(self.store, self.execution, self.notifier, self.clock,
                                     lease_seconds=self.lease_seconds, max_output_bytes=max_output_bytes,
                                     max_stream_bytes=max_stream_bytes, firing=self.firing,
                                     secrets=vault)
        self._write = self.service.write
        self._subscriptions: list[Callable[[], None]] = []

    # --- workflows -------------------------------------------------------------------------

    def load(self, source: str | os.PathLike | Mapping | WorkflowDef | Definable) -> WorkflowDef:
        if isinstance(source, WorkflowDef):
            return source
        if not isinstance(source, (str, os.PathLike, Mapping)) and hasattr(source, "to_definition"):
            defn = source.to_definition()   # checked there, exactly as a file of it would be
            if not isinstance(defn, WorkflowDef):
                raise DefinitionError(f"{type(source).__name__}.to_definition() returned "
                                      f"{type(defn).__name__}, not a WorkflowDef")
            return defn
        return load_definition(source)

    def register(self, source: str | os.PathLike | Mapping | WorkflowDef | Definable
                 ) -> tuple[str, int]:
        """Store a definition (validated); returns (workflow_id, version). Same content, same version."""
        defn = self.load(source)
        for warning in notices(defn, f"workflow '{defn.workflow_id}'"):
            log.warning(warning)
        # Absolute script paths: the same file in two folders (running different scripts) is
        # two different versions.
        checksum, body = storable(defn)
        src = str(defn.source_path) if defn.source_path else None
        def txn(conn, now):
            version, _created = workflows.register_workflow_txn(conn, defn.workflow_id, checksum, body,
                                                                src, defn.version, iso(now))
            # The latest version's Timer and Event nodes are the workflow's triggers.
            sync_txn(conn, defn, version, now)
            declare_limits_txn(conn, defn, now)
            return version
        version = self._write(txn, self.clock.now())
        self.plans.add(defn, version)
        self.service.scheduler.refresh()
        return defn.workflow_id, version

    def _stored_definition(self, workflow_id: str, version: int, conn=None) -> WorkflowDef:
        row = (self.store.get_workflow(workflow_id, version) if conn is None
               else workflows.get_workflow(conn, workflow_id, version))
        try:
            # Scripts may have moved since: a missing one fails its node, not every read of the run.
            return load_definition(json.loads(row["definition"]), check_programs=False, check_files=False)
        except DefinitionError as exc:
            raise DefinitionError(f"stored workflow '{workflow_id}' v{version} no longer loads: {exc}") from exc

    def workflows(self) -> list[dict]:
        return self.store.list_workflows()

    # --- runs ------------------------------------------------------------------------------

    def start(self, workflow: str | os.PathLike | Mapping | WorkflowDef | Definable,
              inputs: Any = None, *,
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
            plan = self.plans.get(workflow_id, version)
            self._check_inputs(plan.definition, inputs)
        else:
            defn = self.load(workflow)
            self._check_inputs(defn, inputs)  # before registering: bad inputs store nothing
            workflow_id, version = self.register(defn)
            plan = self.plans.get(workflow_id, version)
        if priority not in PRIORITIES:
            raise ValidationError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        run_id, _created = self._write(self.execution.runs.start_run, plan, self._new_run_id(), inputs,
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
            raise ValidationError(f"inputs: {exc}") from None
        problems = ref_problems(inputs)
        if problems:
            raise ValidationError([f"inputs{'.' if path else ''}{path}: {problem}"
                                   for path, problem in problems])
        schema = defn.inputs_schema
        if schema:
            # A reference stands for a value the worker finds only when a node runs: the
            # schema cannot judge it here.
            errors = sorted((e for e in jsonschema.Draft202012Validator(thaw(schema)).iter_errors(inputs)
                             if not _at_secret(inputs, e.absolute_path)),
                            key=lambda e: list(e.absolute_path))
            if errors:
                raise ValidationError([
                    f"inputs{''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in e.absolute_path)}: "
                    f"{e.message}" for e in errors])

    def execute(self, workflow, inputs: Any = None, *, concurrency: int = 4,
                timeout: float | None = None, idempotency_key: str | None = None) -> Run:
        """Register, start, and work in-process until the run is finished.

        The file is read through (quick_check) before the first write, once per process and
        file: a loop of execute() calls pays it once, and a damaged file is refused untouched."""
        timeout = _seconds(timeout, "timeout")
        worker = self.worker(concurrency=concurrency, schedules=False)   # checked before anything is stored
        self.service.check_file()
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
        now = self.clock.now()
        row, nodes, figures = self.store.run_snapshot(run_id, iso(now))
        try:
            plan = self.plans.get(row["workflow_id"], row["workflow_version"])
        except DefinitionError:
            plan = None  # its history stays readable; progress counts only the rows there are
        return build_run(row, nodes, plan, now, figures)

    def runs(self, status: str | None = None, workflow_id: str | None = None, limit: int = 100, *,
             top_level: bool = True) -> list[dict]:
        """Runs newest first, at most `limit`. top_level=False includes child runs (Subflow,
        ForEach and While bodies); each row names its parent_run_id (None at the top)."""
        if status is not None and status not in RUN_STATUSES:
            raise ValidationError(f"status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"limit must be a whole number of 1 or more, not {limit!r}")
        return self.store.list_runs(status, workflow_id, limit, top_level)

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.05) -> Run:
        """Block until the run is finished (by this process or any other)."""
        timeout = _seconds(timeout, "timeout")
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        while True:
            gen = self.notifier.generation(FINISHED)
            status = self.store.run_statuses([run_id]).get(run_id)
            if status is None:
                self.store.get_run_row(run_id)  # raises RunNotFound
            if status in TERMINAL_RUN_STATUSES:
                return self.get_run(run_id)
            if deadline is not None and self.clock.monotonic() >= deadline:
                raise WaitTimeout(f"run {run_id} is still {status} after {timeout}s")
            self.notifier.wait(gen, poll, FINISHED)

    def rerun(self, run_id: str, from_node: str | None = None, *, fresh: bool = False) -> str:
        """Start a finished run again as a new run of the same workflow version and inputs;
        returns its id.

        By default the new run keeps every node the old one settled (completed, skipped, or
        failed with its Fail handled) and runs what failed or never finished. With `from_node`,
        that node and everything downstream of it run again too. With `fresh`, everything runs
        again from the start (a completed run can be run again so)."""
        row = self.store.get_run_row(run_id)
        plan = self.plans.get(row["workflow_id"], row["workflow_version"])
        if fresh and from_node is not None:
            raise ValidationError("rerun: give --from NODE or --fresh, not both")
        if from_node is not None and from_node not in plan.nodes:
            raise ValidationError(f"rerun --from: workflow '{plan.workflow_id}' v{plan.version} has "
                                  f"no node '{from_node}' (nodes: {', '.join(plan.nodes)})")
        if row["status"] not in TERMINAL_RUN_STATUSES and not fresh:
            # Its results may not all be recorded yet: the new run would quietly redo them.
            then = f"rerun from {from_node!r}" if from_node else "rerun it"
            raise ValidationError(f"rerun{' --from' if from_node else ''}: run {run_id} is "
                                  f"{row['status']}; wait for it to finish, or cancel it, then {then}")
        new_id = self._new_run_id()
        if fresh:
            self._write(self.execution.runs.start_run, plan, new_id, json.loads(row["inputs"] or "null"),
                        self.clock.now(), priority=row["priority"], rerun_of=run_id)
        else:
            self._write(self.execution.runs.rerun, plan, run_id, new_id, from_node, self.clock.now())
        return new_id

    def signal(self, run_id: str, name: str, data: Any = None) -> None:
        """Send a signal to a run: a WaitForSignal node waiting for `name` (now or later) takes
        it and completes with `data` as its output."""
        try:
            check_output(data, "signal data")
        except NodeError as exc:
            raise ValidationError(f"signal {name!r}: {exc}") from None
        self._write(self.execution.runs.signal, run_id, name, data, self.clock.now())

    # --- control ---------------------------------------------------------------------------

    def pause(self, run_id: str, for_seconds: float | str | None = None) -> str:
        """Pause a run; with `for_seconds` (seconds or a duration such as '10m') it resumes by itself."""
        for_seconds = _seconds(for_seconds, "for_seconds", positive=True)
        until = self.clock.now() + for_seconds if for_seconds else None
        return self._write(self.execution.runs.pause, run_id, self.clock.now(), until)

    def resume(self, run_id: str) -> str:
        return self._write(self.execution.runs.resume, run_id, self.clock.now())

    def cancel(self, run_id: str, reason: str | None = None, *, compensate: bool = False) -> str:
        """Cancel a run; `reason` is kept as its error, so its history says who stopped it.
        With compensate=True what it completed is undone first: it returns "compensating" and
        the run ends `cancelled` once every compensation ran. Without, nothing is undone."""
        return self._write(self.execution.runs.cancel, run_id, self.clock.now(), reason, compensate)

    def requeue_dead_letter(self, message_id: int) -> None:
        """Put a dead-lettered message back; refused when its run is finished (use rerun)."""
        def txn(conn, now):
            msg = queue.message_row(conn, message_id)
            if msg["run_id"] is not None:
                status = runs.run_state(conn, msg["run_id"]).status
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
            queue.requeue_dead_txn(conn, message_id, now)
        self._write(txn, self.clock.now())

    def dead_letters(self) -> list[dict]:
        return self.store.dead_letters()

    def definition(self, workflow_id: str, version: int | None = None) -> WorkflowDef:
        """The stored definition of a workflow version (latest when version is None)."""
        if version is None:
            version = self.store.get_workflow(workflow_id)["version"]
        return self.plans.get(workflow_id, version).definition

    def run_definition(self, run_id: str) -> WorkflowDef:
        row = self.store.get_run_row(run_id)
        return self.plans.get(row["workflow_id"], row["workflow_version"]).definition

    def graph(self, source: str | WorkflowDef) -> Drawing:
        """What `durableflow graph` draws (definitions.to_mermaid/to_dot take it): a workflow
        (a definition, or a stored workflow id's latest version), or a run id's workflow
        coloured by node status. Loop bodies and Subflow workflows are nested in, read from
        the database where stored; a run's are coloured by its child runs."""
        if isinstance(source, WorkflowDef):
            return nest(source, self._known_definition)
        tree, nodes = self.store.read(history.run_tree_nodes, source)
        if not tree:
            return nest(self.definition(source), self._known_definition)
        run = run_tree(tree, nodes)
        return nest(self.plans.get(run.workflow_id, run.version).definition, self._known_definition, run)

    def _known_definition(self, workflow_id: str, version: int | None) -> WorkflowDef | None:
        try:
            return self.definition(workflow_id, version)
        except (NotFound, DefinitionError):
            return None

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

    def stats(self) -> dict:
        """What the file holds, and how it has been going: runs, node instances and messages by
        status, and more counts; the last hour's throughput (runs finished, node attempts
        completed, in all and per minute); the slowest nodes of the last day (the ten slowest on
        average, per workflow). The windows end at this engine's clock's now."""
        now = self.clock.now()
        raw = self.store.stats(hour_ago=iso(now - metrics.HOUR), day_ago=iso(now - metrics.DAY))
        return metrics.shape_stats(raw, now, database_bytes=_file_bytes(self.path),
                                   workers_dead=len(self.dead_workers()))   # this host's, not yet recovered

    def dead_workers(self) -> list[dict]:
        """Workers of this host recorded as running whose process is gone (killed, say) and not
        yet recovered; their leases go back with the next worker's upkeep or recover()."""
        return [{"worker_id": w, "pid": pid} for w, pid, _started in self.service.upkeep.dead_workers_on_host()]

    # --- triggers --------------------------------------------------------------------------

    def emit(self, name: str, payload: Any = None, *, dedupe_key: str | None = None) -> list[str]:
        """Start one run per workflow whose latest version has an Event entry node for `name`,
        with `payload` as its inputs, from those Event nodes. The payload is checked against
        every such workflow's inputsSchema first: all runs start, or none. With `dedupe_key`, a
        workflow that already started a run for that key starts none. Returns the run ids
        started (none when no workflow listens: `listeners(name)` tells)."""
        if not isinstance(name, str) or not name.strip():
            raise ValidationError(f"emit: the event name must be non-empty text, not {name!r}")
        if dedupe_key is not None and (not isinstance(dedupe_key, str) or not dedupe_key):
            raise ValidationError(f"emit: dedupe_key must be non-empty text, not {dedupe_key!r}")
        payload = {} if payload is None else payload
        if not isinstance(payload, Mapping):
            raise ValidationError(f"emit {name!r}: the payload becomes the runs' inputs: an object "
                                  f"(a dict of names), not {type(payload).__name__}")

        def check(defn: WorkflowDef, inputs: Any) -> None:
            try:
                self._check_inputs(defn, inputs)
            except ValidationError as exc:
                raise ValidationError([f"workflow '{defn.workflow_id}': {line}"
                                       for line in exc.errors or [exc.message]]) from None
        report = self._write(trigger_events.emit_txn, self.execution.runs, self.plans, self._new_run_id,
                             name, payload, dedupe_key, self.clock.now(), check)
        return [r["run_id"] for r in report if r["started"]]

    def listeners(self, name: str) -> list[str]:
        """The workflows whose latest version listens for the event `name`."""
        return sorted({workflow_id for workflow_id, _node in self.store.read(schedules.listeners, name)})

    def schedules(self) -> list[dict]:
        """Every Timer schedule: expression, time zone, state, last and next fire times."""
        return [_schedule_view(row) for row in self.store.read(schedules.all_schedules)]

    def schedule(self, schedule_id: str, fires: int = 20) -> dict:
        """One schedule (`workflow_id:node_id`) with its most recent fire times."""
        def txn(conn):
            return _schedule_view(schedules.get_schedule(conn, schedule_id)), \
                schedules.recent_fires(conn, schedule_id, fires)
        view, recent = self.store.read(txn)
        return dict(view, fires=recent)

    def pause_schedule(self, schedule_id: str) -> bool:
        """A paused schedule keeps its row and fires nothing. False if it was paused already."""
        def txn(conn, now):
            schedules.get_schedule(conn, schedule_id)
            return schedules.set_paused_txn(conn, schedule_id, True, None, iso(now))
        return self._write(txn, self.clock.now())

    def resume_schedule(self, schedule_id: str) -> bool:
        """Fire again; the fire times missed while paused follow the schedule's catchUp."""
        def txn(conn, now):
            schedules.get_schedule(conn, schedule_id)
            return schedules.set_paused_txn(conn, schedule_id, False, None, iso(now))
        resumed = self._write(txn, self.clock.now())
        self.service.scheduler.refresh()
        return resumed

    def trigger_schedule(self, schedule_id: str) -> str:
        """Fire once now, whatever the schedule's state; returns the run id."""
        return self._write(self.firing.trigger_txn, schedule_id, self.clock.now())

    def backfill_schedule(self, schedule_id: str, start: float | str, end: float | str,
                          overlap: str = "bufferAll") -> dict:
        """Run the schedule's workflow once per fire time in [start, end] (epoch seconds or
        ISO-8601 with a zone) that no run stands for yet; runs already done are not repeated.
        Returns {"fire_times", "started": [run ids], "buffered", "already"}."""
        if overlap not in OVERLAP:
            raise ValidationError(f"backfill --overlap must be one of {', '.join(OVERLAP)}, not {overlap!r}")
        start_s, end_s = _moment(start, "from"), _moment(end, "to")
        if end_s < start_s:
            raise ValidationError(f"backfill: --to ({iso(end_s)}) is before --from ({iso(start_s)})")
        if end_s > self.clock.now():
            raise ValidationError(f"backfill: --to ({iso(end_s)}) is in the future; the schedule "
                                  f"itself fires what is to come")
        try:
            return self._write(self.firing.backfill_txn, schedule_id, start_s, end_s, overlap, self.clock.now())
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    # --- circuit breakers --------------------------------------------------------------------

    def breakers(self) -> list[dict]:
        """Every circuit breaker: its state, the calls and failures in its window, and when an
        open one lets a trial call through."""
        now = self.clock.now()

        def txn(conn):
            out = []
            for row in limits.all_breakers(conn):
                calls, failed = limits.calls_in_window(conn, row["key"], iso(now - row["window_s"]))
                probe = (iso(parse_iso(row["opened_at"]) + row["open_duration_s"])
                         if row["status"] == "open" and row["opened_at"] else None)
                out.append({"key": row["key"], "state": row["status"], "calls": calls, "failed": failed,
                            "failure_threshold": row["failure_threshold"], "minimum_calls": row["minimum_calls"],
                            "window_s": row["window_s"], "open_duration_s": row["open_duration_s"],
                            "opened_at": row["opened_at"], "probe_at": probe, "trials": row["trials"],
                            "successes": row["successes"], "declared_by": row["declared_by"]})
            return out
        return self.store.read(txn)

    def reset_breaker(self, key: str) -> bool:
        """Close a breaker by hand (its counted calls are forgotten). False if it was closed."""
        def txn(conn, now):
            row = limits.breaker(conn, key)
            if row is None:
                known = [r["key"] for r in limits.all_breakers(conn)]
                raise NotFound(f"circuit breaker {key!r} not found"
                               + (f" (breakers: {', '.join(known[:10])})" if known else " (there are none)"))
            if row["status"] == "closed":
                return False
            limits.breaker_transition_txn(conn, key, "close", row["status"], iso(now), opened_at=None,
                                          data={"by": "hand"})
            limits.forget_calls_txn(conn, key, iso(now))
            return True
        return self._write(txn, self.clock.now())

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
        return Worker(self.service, concurrency=concurrency, **kwargs)

    def recover(self) -> dict:
        """Reclaim leases of dead workers on this host at once and of others when expired."""
        return self.service.recover()

    def maintain(self) -> None:
        """Upkeep any worker does now and then (every second): leases of workers on this host
        whose process is gone (at once, not when the lease expires) and expired leases, ended
        pauses, run timeouts."""
        self.service.maintain()

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
            gen = self.notifier.generation(WORK)
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
            self.notifier.wait(gen, poll, WORK)

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
                gen = self.notifier.generation(WORK)
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
                if not stop.is_set():
                    self.notifier.wait(gen, poll, WORK)

        thread = threading.Thread(target=pump, name="durableflow-subscriber", daemon=True)

        def unsubscribe():
            stop.set()
            self.notifier.work()
            with contextlib.suppress(ValueError):
                self._subscriptions.remove(unsubscribe)
            if threading.current_thread() is not thread:
                thread.join(5)

        self._subscriptions.append(unsubscribe)
        thread.start()
        return unsubscribe

    def close(self, timeout: float | None = None) -> None:
        """Stop this engine's workers (letting the nodes in hand finish; with a timeout, waiting
        at most that long, after which running nodes are told to cancel and their leases left to
        expire), then close the database."""
        timeout = _seconds(timeout, "timeout")
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        for unsubscribe in list(self._subscriptions):
            unsubscribe()
        for w in list(self.service.workers):
            w.stop(None if deadline is None else max(0.0, deadline - self.clock.monotonic()))
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _schedule_view(row: dict) -> dict:
    return {"schedule_id": row["schedule_id"], "workflow_id": row["workflow_id"],
            "node_id": row["node_id"], "expression": timing_of_row(row).expression,
            "cron": row["cron"], "interval_s": row["interval_s"], "timezone": row["timezone"],
            "catch_up": row["catch_up"], "overlap": row["overlap"],
            "misfire_grace_s": row["misfire_grace_s"], "max_catch_up": row["max_catch_up"],
            "state": "paused" if row["paused"] else "active",
            "last_at": row["last_at"], "next_at": row["next_at"]}


def _moment(value: Any, what: str) -> float:
    """Epoch seconds, or ISO-8601 text with a zone (a date alone is midnight UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None and len(text) > 10:
                raise ValidationError(f"--{what} {value!r}: give a time zone (e.g. {value}Z)")
            return moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp()
    raise ValidationError(f"--{what} {value!r} is not an ISO-8601 time (e.g. 2026-12-01T00:00:00Z)")


def _at_secret(value: Any, path) -> bool:
    """Whether `path` leads to, or into, a `{"$secret": NAME}` inside `value`."""
    for part in (None, *path):
        if is_ref(value):
            return True
        if part is None:
            continue
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return is_ref(value)


def _file_bytes(path: str) -> int | None:
    """The database file and its WAL, in bytes (None for a URI or a PostgreSQL database)."""
    if path.startswith(("file:", "postgresql://", "postgres://")):
        return None
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


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
