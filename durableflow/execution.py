"""What happens inside the engine's transactions: start a run, claim nodes, record a result and
route it, fail, retry, skip, settle, pause, resume, cancel and reclaim.

Every function here takes an open write connection and is called inside one `Store.write`, so a
node's result, the messages it sends and the run's new state commit together or not at all.
SQL stays in durableflow.storage; this module decides what to write.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from typing import Any, Callable, Mapping

from durableflow.child_runs import ChildRuns
from durableflow.clock import iso
from durableflow.errors import DefinitionError, DurableflowError, ExpressionError, InvalidTransition
from durableflow.model import TERMINAL_RUN_STATUSES
from durableflow.plan import Edge, Plan
from durableflow.storage import runs as R
from durableflow.storage.queue import (
    Claimed, NewMessage, Reclaimed, ack_txn, claim_txn, enqueue_txn, nack_txn,
)
from durableflow.tasks import ACTIVE, SIGNAL_RECHECK, Flow, Outcome, Task

dumps = R.dumps

log = logging.getLogger("durableflow.execution")


class Execution(ChildRuns):
    """The engine's transaction logic. `plans(workflow_id, version)` returns a cached Plan."""

    def __init__(self, plans: Callable[[str, int], Plan], *, max_deliveries: int = 5,
                 new_run_id: Callable[[], str] | None = None):
        self.plans = plans
        self.new_run_id = new_run_id
        self._body_plans: dict[tuple[str, int], Plan] = {}   # inline loop bodies
        self.max_deliveries = max_deliveries
        # Runs finished by the calling thread's transactions, for the engine to wake waiters
        # after that thread's commit (per thread: another thread's commit is not ours to tell).
        self._local = threading.local()

    @property
    def finished(self) -> list[str]:
        got = getattr(self._local, "finished", None)
        if got is None:
            got = self._local.finished = []
        return got

    def take_finished(self) -> list[str]:
        got, self._local.finished = self.finished, []
        return got

    # --- starting --------------------------------------------------------------------------

    def plan_of(self, workflow_id: str, version: int) -> Plan:
        """The plan of a workflow version, including a loop body registered by a transaction
        that has not committed yet (a fresh read would not find it)."""
        plan = self._body_plans.get((workflow_id, version))
        return plan if plan is not None else self.plans(workflow_id, version)

    def start_run(self, conn, plan: Plan, run_id: str, inputs: Any, now: float, *,
                  idempotency_key: str | None = None, priority: int = 1,
                  parent_run_id: str | None = None, parent_node_id: str | None = None) -> tuple[str, bool]:
        if idempotency_key is not None:
            existing = R.run_id_for_key(conn, idempotency_key)
            if existing is not None:
                return existing, False
        now_s = iso(now)
        d = plan.definition
        deadline = iso(now + d.timeout) if d.timeout else None
        inputs_json = dumps(inputs)
        R.insert_run_txn(conn, run_id=run_id, workflow_id=plan.workflow_id,
                         workflow_version=plan.version, inputs=inputs_json,
                         variables=dumps(dict(d.variables)), priority=priority,
                         idempotency_key=idempotency_key, deadline_at=deadline,
                         parent_run_id=parent_run_id, parent_node_id=parent_node_id, now=now_s)
        R.run_transition_txn(conn, run_id, "start", "pending", now_s)
        for node_id in plan.entries:
            self._enqueue_node(conn, plan, run_id, node_id, 0, inputs_json, "{}", Flow(False, priority), now)
        return run_id, True

    def rerun_from(self, conn, plan: Plan, old_run_id: str, run_id: str, from_node: str,
                   now: float) -> None:
        """A new run that keeps what the old one recorded upstream of `from_node` and runs
        `from_node` and everything downstream of it again."""
        old = R.get_run_row(conn, old_run_id)
        latest = {n["node_id"]: n for n in R.node_rows_txn(conn, old_run_id) if n["iteration"] == 0}
        if latest.get(from_node, {}).get("status") == "skipped":
            # A branch the old run did not take: its inputs were ruled out, and running it now
            # would give it an input no run of this workflow could have given it.
            raise InvalidTransition(f"rerun --from {from_node}: it was skipped in run {old_run_id} "
                                    f"(a branch not taken); rerun from a node upstream of the "
                                    f"branch, or the whole run")
        # Run again: from_node and what follows it, and whatever the old run did not finish
        # (a failed node, a branch cancelled with the run) and what follows that.
        redo = plan.downstream(from_node)
        for node_id in plan.nodes:
            row = latest.get(node_id)
            if node_id not in plan.helpers and (row is None or row["status"] not in ("completed", "skipped")):
                redo |= plan.downstream(node_id)
        now_s = iso(now)
        kept_ids = {node_id for node_id in latest if node_id not in redo}
        variables, deltas, order = self._variables_kept(conn, plan, old, kept_ids)
        R.insert_run_txn(conn, run_id=run_id, workflow_id=plan.workflow_id,
                         workflow_version=plan.version, inputs=old["inputs"],
                         variables=variables,
                         priority=old["priority"], idempotency_key=None,
                         deadline_at=iso(now + plan.definition.timeout) if plan.definition.timeout else None,
                         parent_run_id=old["parent_run_id"], parent_node_id=old["parent_node_id"], now=now_s)
        R.run_transition_txn(conn, run_id, "start", "pending", now_s,
                             data={"rerunOf": old_run_id, "from": from_node})
        kept = {}
        # Copied in the order they completed, each with its change to the variables, so that a
        # rerun of this run can replay them as this one replayed the old run's.
        for node_id, row in sorted(latest.items(), key=lambda item: order.get(item[0], len(order))):
            if node_id not in redo:
                R.copy_node_txn(conn, run_id, row, now_s, old_run_id, vars_delta=deltas.get(node_id))
                kept[node_id] = row
        flow = Flow(False, old["priority"])
        # Started directly: entry points of the part that runs again, and from_node itself
        # unless something that runs again feeds it (then it waits for that, as usual).
        direct = {nid for nid in redo if nid not in plan.helpers and (
            not plan.incoming[nid] or (nid == from_node and not any(
                e.conn.source_node_id in redo for e in plan.incoming[nid])))}
        for node_id in sorted(direct):
            inputs = {plan.input_key(e): json.loads(kept[e.conn.source_node_id]["output"] or "null")
                      for e in plan.incoming[node_id]
                      if kept.get(e.conn.source_node_id, {}).get("status") == "completed"}
            first = latest.get(node_id)
            input_json = first["input"] if first and first["input"] is not None else (
                old["inputs"] if not plan.incoming[node_id] else dumps(inputs))
            self._enqueue_node(conn, plan, run_id, node_id, 0, input_json, dumps(inputs), flow, now)
        variables = json.loads(old["variables"] or "{}")
        for node_id, row in kept.items():
            for edge in plan.outgoing[node_id]:
                target = edge.conn.target_node_id
                if target in direct or target not in redo:
                    continue
                value = json.loads(row["output"] or "null") if row["status"] == "completed" else {
                    "error": row["error"], "errorType": row["error_type"], "nodeId": node_id}
                outcome = {"completed": "Complete", "failed": "Fail"}.get(row["status"])
                ok = outcome is not None and edge.matches(outcome, row["port"])
                if ok and edge.condition is not None:
                    ok = bool(edge.condition.evaluate({"output": value, "inputs": {}, "vars": variables}))
                self._resolve(conn, plan, run_id, edge, 0, ok, value, dumps(value) if ok else None, flow, now)

    def _enqueue_node(self, conn, plan: Plan, run_id: str, node_id: str, iteration: int,
                      input_json: str, inputs_json: str, flow: "Flow", now: float,
                      attempt: int = 1) -> None:
        payload = '{"input":' + input_json + ',"inputs":' + inputs_json + "}"
        (mid,) = enqueue_txn(conn, [NewMessage(
            # Node priority first; the run's priority orders messages of equal node priority.
            "node", payload, run_id, node_id, iteration, plan.priorities[node_id] * 3 + flow.priority,
            None, flow.held,
            self.max_deliveries)], now)
        R.insert_node_txn(conn, run_id, node_id, iteration, attempt, "pending", mid, input_json, iso(now))

    # --- claiming --------------------------------------------------------------------------

    def claim(self, conn, worker_id: str, limit: int, lease_seconds: float, now: float) -> list[Task]:
        claimed = claim_txn(conn, worker_id, limit, lease_seconds, now)
        if not claimed:
            return []
        now_s = iso(now)
        tasks: list[Task] = []
        states: dict[str, tuple] = {}
        started: dict[str, int] = {}
        for c in claimed:
            state = states.get(c.run_id)
            if state is None:
                state = states[c.run_id] = R.run_state(conn, c.run_id)
            status, workflow_id, version, variables_json, retries_used, _p = state
            if status != "running":
                self._drop_claimed(conn, c, status, now)
                continue
            try:
                plan = self.plan_of(workflow_id, version)
            except DefinitionError as exc:
                # One unloadable stored definition must not stall the queue for every run.
                ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
                self._stop_run(conn, c.run_id, "fail", status, now, error=str(exc))
                states[c.run_id] = state._replace(status="failed")
                continue
            limit_run = plan.definition.max_concurrency
            if limit_run:
                running = R.running_count(conn, c.run_id) if c.run_id not in started else started[c.run_id]
                if running >= limit_run:
                    self._throttle(conn, c, limit_run, now_s)
                    continue
                started[c.run_id] = running + 1
            got = R.start_node_txn(conn, c.id, c.run_id, c.target_node_id, worker_id, now_s)
            if got is None:
                # No pending row (an imported run, or a requeued dead letter): make one, start it.
                attempt = R.last_attempt(conn, c.run_id, c.target_node_id, c.iteration) + 1
                R.insert_node_txn(conn, c.run_id, c.target_node_id, c.iteration, attempt, "pending",
                                  c.id, None, now_s)
                got = R.start_node_txn(conn, c.id, c.run_id, c.target_node_id, worker_id, now_s)
            instance_id, attempt = got
            payload = json.loads(c.payload) if c.payload else {}
            tasks.append(Task(c, plan, instance_id, attempt, payload.get("input"),
                              payload.get("inputs") or {}, json.loads(variables_json or "{}"),
                              retries_used, payload=payload))
        return tasks

    def _drop_claimed(self, conn, c: Claimed, run_status: str, now: float) -> None:
        """A message of a run that is no longer running: consume it, cancel its pending node."""
        now_s = iso(now)
        ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
        row = R.open_node_of_message(conn, c.id)
        if row is not None:
            R.finish_node_txn(conn, row[0], c.run_id, c.target_node_id, "cancel", row[1], now_s,
                              data={"reason": f"run is {run_status}"})

    def _throttle(self, conn, c: Claimed, limit_run: int, now_s: str) -> None:
        R.throttle_message_txn(conn, c.id, c.token, c.run_id, c.target_node_id, now_s)
        row = R.open_node_of_message(conn, c.id)
        if row is not None and row[1] == "pending":
            R.wait_node_txn(conn, row[0], c.run_id, c.target_node_id, "pending",
                            f"run maxConcurrency {limit_run} reached", now_s)

    # --- recording results -----------------------------------------------------------------

    def complete(self, conn, task: Task, outcome: Outcome, now: float) -> None:
        """Record a successful attempt and route its Complete message, guarded by the lease token."""
        c = task.message
        now_s = iso(now)
        ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
        delta = vars_delta(task.variables, outcome.variables)
        # The change to the variables goes in the node's event too: `rerun --from` replays
        # those of the nodes it keeps, to start from the variables as they stood then. A big
        # one is left out (a rerun then starts from the final variables, as before).
        shown = delta
        if delta and len(dumps(delta)) > MAX_EVENT_VARS_BYTES:
            shown = {"omitted": f"over {MAX_EVENT_VARS_BYTES:,} bytes"}
        R.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "complete", "running",
                          now_s, output=outcome.output_json, port=outcome.port,
                          data={"vars": shown} if shown else None)
        state = R.run_state(conn, c.run_id)
        status = state.status
        variables = self._merge_variables(conn, task.run_id, delta, state.variables)
        if task.plan.definition.max_concurrency:
            R.release_throttled_txn(conn, c.run_id)
        if status not in ACTIVE:
            return
        try:
            deliveries = self._deliveries(task.plan, c.target_node_id, "Complete", outcome.port,
                                          {"output": outcome.output, "inputs": task.inputs,
                                           "vars": variables})
        except ExpressionError as exc:
            self._fail_run(conn, task.plan, c.run_id, status,
                           f"node '{c.target_node_id}': {exc}", now)
            return
        self._route(conn, task.plan, c.run_id, c.target_node_id, c.iteration, deliveries,
                    outcome.output, Flow.of(state), now)
        self.settle(conn, task.plan, c.run_id, status, now)

    def record_many(self, conn, prepared: list, now: float) -> list[Exception | None]:
        """Record several results in this transaction, each behind its own savepoint."""
        results: list[Exception | None] = []
        for task, outcome, retry_delay, reason in prepared:
            conn.execute("SAVEPOINT record")
            try:
                waits = (outcome.park_until is not None or outcome.await_signal is not None
                         or outcome.subflow is not None)
                if waits and self._run_has_ended(conn, task, now):
                    pass  # recorded as cancelled: nothing waits, nothing starts in an ended run
                elif outcome.park_until is not None:
                    self.park(conn, task, outcome.park_until, now)
                elif outcome.await_signal is not None:
                    self.await_signal(conn, task, *outcome.await_signal, now)
                elif outcome.subflow is not None:
                    self.subflow(conn, task, outcome.subflow, now)
                elif outcome.ok:
                    self.complete(conn, task, outcome, now)
                else:
                    self.fail(conn, task, outcome, now, retry_delay=retry_delay, reason=reason)
            except DurableflowError as exc:
                conn.execute("ROLLBACK TO record")
                results.append(exc)
            except sqlite3.IntegrityError as exc:
                # e.g. a second 'completed' row for one (run, node, iteration): refuse this one
                conn.execute("ROLLBACK TO record")
                results.append(InvalidTransition(f"node {task.node_id} of run {task.run_id}: "
                                                 f"result refused by the database ({exc})"))
            except sqlite3.Error:
                raise  # busy, disk full, corrupt: the whole transaction's business
            except Exception as exc:
                # A fault of ours in recording this one result (a bug, a value out of range):
                # it fails this node, not the worker that also serves every other run.
                conn.execute("ROLLBACK TO record")
                log.exception("recording node %s of run %s failed", task.node_id, task.run_id)
                results.append(self._fail_unrecordable(conn, task, exc, now))
            else:
                results.append(None)
            conn.execute("RELEASE record")
        return results

    def _run_has_ended(self, conn, task: Task, now: float) -> bool:
        """A node that would go on waiting (timer, signal, child run, loop) in a run that ended
        meanwhile, e.g. failed by another node recorded in this same batch: cancel it instead."""
        status = R.run_state(conn, task.run_id).status
        if status in ACTIVE:
            return False
        c = task.message
        ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
        R.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "cancel", "running",
                          iso(now), data={"reason": f"run {status}"})
        return True

    def _fail_unrecordable(self, conn, task: Task, exc: Exception, now: float) -> Exception | None:
        conn.execute("SAVEPOINT unrecordable")
        try:
            self.fail(conn, task, Outcome(False, error=f"durableflow could not record this node's "
                                                       f"result: {type(exc).__name__}: {exc}",
                                          error_type="InternalError"), now, retry_delay=None)
        except Exception as again:  # noqa: BLE001 - the lease expires and redelivery counts it
            conn.execute("ROLLBACK TO unrecordable")
            conn.execute("RELEASE unrecordable")
            return again if isinstance(again, DurableflowError) else InvalidTransition(str(again))
        conn.execute("RELEASE unrecordable")
        return None

    @staticmethod
    def _variables_kept(conn, plan: Plan, old: Mapping, kept: set[str]
                        ) -> tuple[str | None, dict[str, dict], dict[str, int]]:
        """The variables as the kept nodes left them: the definition's, with the changes of
        the kept nodes' completions replayed in commit order; with each kept node's change and
        the order the nodes completed in. When replaying every completion does not give the old
        run's final variables (recorded before completions kept their changes, or a node
        completed in several iterations), the old run's final variables it is, as before."""
        started_with = dumps(dict(plan.definition.variables))   # as start() stores them
        replay_all, replay_kept = json.loads(started_with), json.loads(started_with)
        deltas: dict[str, dict] = {}
        order: dict[str, int] = {}
        for node_id, data in R.node_completion_events(conn, old["run_id"]):
            order.setdefault(node_id, len(order))
            delta = json.loads(data).get("vars") if data else None
            if isinstance(delta, dict) and delta:
                apply_vars_delta(replay_all, delta)
                if node_id in kept:
                    apply_vars_delta(replay_kept, delta)
                    if node_id in deltas:
                        replay_all = None   # several iterations: one copy cannot carry them
                        break
                    deltas[node_id] = delta
        if replay_all != json.loads(old["variables"] or "{}"):
            return old["variables"], {}, order
        return dumps(replay_kept), deltas, order

    def _merge_variables(self, conn, run_id: str, delta: dict | None, current_json: str | None) -> dict:
        """Apply the keys a node changed to the run's current variables (others may have moved on)."""
        current = json.loads(current_json or "{}")
        if not delta:
            return current
        apply_vars_delta(current, delta)
        R.set_variables_txn(conn, run_id, dumps(current))
        return current

    def fail(self, conn, task: Task, outcome: Outcome, now: float, *, retry_delay: float | None,
             reason: str = "") -> None:
        """Record a failed attempt: store a retry (a message visible later) or route Fail."""
        c = task.message
        now_s = iso(now)
        error = outcome.error or "node failed"
        data = {"attempt": task.attempt, "decision": reason} if reason else None
        if task.plan.definition.max_concurrency:
            R.release_throttled_txn(conn, c.run_id)   # a node in backoff holds no slot
        state = R.run_state(conn, c.run_id)
        status = state.status
        if outcome.cancelled:
            if status in ACTIVE:
                # The run goes on: the worker let go of the node (shutting down); deliver again.
                self._redeliver(conn, task, "cancel", error, outcome.error_type, 0.0, now, data)
                return
            ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
            R.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "cancel", "running",
                              now_s, error=error, error_type=outcome.error_type, data=data)
            return
        budget = task.plan.definition.retry_budget
        if retry_delay is not None and budget is not None and state.retries_used >= budget:
            # Checked here, not only at decision time: parallel failures must share one budget.
            retry_delay, reason = None, "the run's retryBudget is spent"
            data = {"attempt": task.attempt, "decision": reason}
        if retry_delay is not None and status in ACTIVE:
            self._redeliver(conn, task, "fail", error, outcome.error_type, retry_delay, now, data)
            R.count_retry_txn(conn, c.run_id)
            return
        ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
        R.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "fail", "running",
                          now_s, error=error, error_type=outcome.error_type, data=data)
        if status in ACTIVE:
            self.node_failed(conn, task.plan, c.run_id, c.target_node_id, c.iteration, error,
                             outcome.error_type, task.attempt, state, task.inputs, now)

    def park(self, conn, task: Task, until: float, now: float, *, reason: str | None = None,
             keep: dict | None = None) -> None:
        """A timer: the node waits, its message visible again at `until` with the moment kept
        in its payload. No thread sleeps; a restart or a pause does not move it."""
        c = task.message
        payload = dict(task.payload, **(keep or {"wakeAt": until}))
        nack_txn(conn, c.id, c.token, now, delay=max(0.0, until - now),
                 run_id=c.run_id, node_id=c.target_node_id)
        R.set_message_payload_txn(conn, c.id, dumps(payload))
        R.wait_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "running",
                        reason or f"timer until {iso(until)}", iso(now))
        if task.plan.definition.max_concurrency:
            R.release_throttled_txn(conn, c.run_id)   # a waiting node holds no slot

    def await_signal(self, conn, task: Task, name: str, deadline: float | None, now: float) -> None:
        """Take a signal sent to the run (before or after the node began to wait) and complete
        with its payload; or fail once the deadline has passed; or wait for either."""
        got = R.take_signal_txn(conn, task.run_id, name, task.instance_id)
        if got is not None:
            value = json.loads(got) if got is not None else None
            self.complete(conn, task, Outcome(True, value, dumps(value)), now)
        elif deadline is not None and now >= deadline:
            self.fail(conn, task, Outcome(False, error=f"node '{task.node_id}': no signal {name!r} "
                                          f"came before {iso(deadline)}", error_type="SignalTimeout"),
                      now, retry_delay=None)
        else:
            # engine.signal() makes the message visible at once; the deadline is the fallback.
            until = deadline if deadline is not None else now + SIGNAL_RECHECK
            self.park(conn, task, until, now, keep={"deadline": deadline},
                      reason=f"signal {name!r}" + (f" until {iso(deadline)}" if deadline else ""))

    def _finished(self, conn, run_id: str, now: float) -> None:
        """A run ended: wake the Subflow node of its parent, which looks at how it ended."""
        self.finished.append(run_id)
        parent = R.parent_of(conn, run_id)
        if parent is not None:
            R.wake_waiting_txn(conn, parent, iso(now))

    def signal(self, conn, run_id: str, name: str, payload: Any, now: float) -> None:
        state = R.run_state(conn, run_id)
        if state.status in TERMINAL_RUN_STATUSES:
            raise InvalidTransition(f"run {run_id} is {state.status}; a signal to it would never be taken")
        plan = self.plan_of(state.workflow_id, state.version)
        waits = sorted({str(n.config.get("signal")) for n in plan.nodes.values()
                        if n.runtime_type == "WaitForSignal"})
        if name not in waits:
            # Stored, it would wait forever: no node of this run's workflow can take it.
            have = f"it waits for: {', '.join(waits)}" if waits else "it has no WaitForSignal node"
            raise InvalidTransition(f"run {run_id}: workflow '{state.workflow_id}' v{state.version} "
                                    f"has no WaitForSignal for {name!r} ({have})")
        R.insert_signal_txn(conn, run_id, name, dumps(payload), iso(now))
        R.wake_waiting_txn(conn, run_id, iso(now))

    def let_go(self, conn, task: Task, why: str, now: float) -> None:
        """The worker gives back a claimed node whose body it never started: deliverable again
        at once, as the same attempt."""
        c = task.message
        nack_txn(conn, c.id, c.token, now, error=why, run_id=c.run_id, node_id=c.target_node_id)
        R.release_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, iso(now))

    def _redeliver(self, conn, task: Task, trigger: str, error: str, error_type: str | None,
                   delay: float, now: float, data: dict | None) -> None:
        """End this attempt and give its message back, visible after `delay`: the next attempt."""
        c = task.message
        now_s = iso(now)
        nack_txn(conn, c.id, c.token, now, delay=delay, error=error,
                 run_id=c.run_id, node_id=c.target_node_id)
        R.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, trigger, "running",
                          now_s, error=error, error_type=error_type, data=data)
        R.insert_node_txn(conn, c.run_id, c.target_node_id, c.iteration, task.attempt + 1,
                          "pending", c.id, dumps(task.input), now_s,
                          data={"retryAt": iso(now + delay)} if delay else None)

    def node_failed(self, conn, plan: Plan, run_id: str, node_id: str, iteration: int, error: str,
                    error_type: str | None, attempt: int, state: R.RunState, inputs: dict,
                    now: float) -> None:
        """A node is finally failed: route its Fail message, or fail the run if nothing handles it."""
        value = {"error": error, "errorType": error_type, "nodeId": node_id, "attempt": attempt}
        status = state.status
        try:
            deliveries = self._deliveries(plan, node_id, "Fail", None, {
                "output": value, "inputs": inputs, "vars": json.loads(state.variables or "{}")})
        except ExpressionError as exc:
            deliveries, error = [], f"{error}; and {exc}"
        handled = any(ok for _e, ok in deliveries)
        if not handled:
            # Runtime errors already start "node 'x': ..."; say the node's name once.
            own = f"node '{node_id}': "
            why = error[len(own):] if error and error.startswith(own) else error
            self._fail_run(conn, plan, run_id, status, f"node '{node_id}' failed: {why}", now)
            return
        self._route(conn, plan, run_id, node_id, iteration, deliveries, value, Flow.of(state), now)
        self.settle(conn, plan, run_id, status, now)

    # --- routing ---------------------------------------------------------------------------

    def _deliveries(self, plan: Plan, node_id: str, outcome: str, port: str | None,
                    names: dict) -> list[tuple[Edge, bool]]:
        out = []
        for edge in plan.outgoing[node_id]:
            ok = edge.matches(outcome, port)
            if ok and edge.condition is not None:
                try:
                    ok = bool(edge.condition.evaluate(names))
                except ExpressionError as exc:
                    raise ExpressionError(f"connection {edge.conn.label}: condition "
                                          f"{edge.conn.condition!r} failed: {exc}") from exc
            out.append((edge, ok))
        return out

    def _route(self, conn, plan: Plan, run_id: str, source: str, iteration: int,
               deliveries: list[tuple[Edge, bool]], value: Any, flow: "Flow", now: float) -> None:
        value_json = None
        for edge, ok in deliveries:
            if ok and value_json is None:
                value_json = dumps(value)
            self._resolve(conn, plan, run_id, edge, iteration, ok, value, value_json, flow, now)

    def _resolve(self, conn, plan: Plan, run_id: str, edge: Edge, iteration: int, delivered: bool,
                 value: Any, value_json: str | None, flow: "Flow", now: float) -> None:
        """One incoming connection of a node delivered or was ruled out: run, wait, or skip it."""
        target = edge.conn.target_node_id
        incoming = plan.incoming[target]
        key = plan.input_key(edge)
        mode = plan.nodes[target].join_mode
        if len(incoming) == 1 and mode != "each":
            if delivered:
                inputs_json = "{" + json.dumps(key) + ":" + value_json + "}"
                self._enqueue_node(conn, plan, run_id, target, iteration, value_json, inputs_json, flow, now)
            else:
                self._skip(conn, plan, run_id, target, iteration, flow, now)
            return
        join_iteration = 0 if mode == "each" else iteration
        resolved, count, fired = R.join_get(conn, run_id, target, join_iteration)
        resolved += 1
        if delivered:
            count += 1
        done = resolved >= len(incoming)
        one_input = "{" + json.dumps(key) + ":" + value_json + "}" if delivered else None
        if mode == "each":
            if delivered:  # fires on every delivery
                fired = True
                self._enqueue_node(conn, plan, run_id, target, count - 1, value_json, one_input, flow, now)
            elif done and count == 0:
                self._skip(conn, plan, run_id, target, 0, flow, now)
        elif mode == "any":
            if delivered and not fired:
                fired = True
                self._enqueue_node(conn, plan, run_id, target, iteration, value_json, one_input, flow, now)
            elif done and not fired:
                fired = True
                self._skip(conn, plan, run_id, target, iteration, flow, now)
        else:
            if delivered:
                R.join_input_put(conn, run_id, target, join_iteration, key, value_json)
            if done and not fired:
                fired = True
                if count:
                    got = R.join_inputs_get(conn, run_id, target, join_iteration)
                    inputs_json = "{" + ",".join(json.dumps(k) + ":" + v for k, v in got) + "}"
                    self._enqueue_node(conn, plan, run_id, target, iteration,
                                       got[0][1] if len(got) == 1 else inputs_json, inputs_json, flow, now)
                else:
                    self._skip(conn, plan, run_id, target, iteration, flow, now)
        R.join_put(conn, run_id, target, join_iteration, resolved, count, fired)

    def _skip(self, conn, plan: Plan, run_id: str, node_id: str, iteration: int, flow: "Flow",
              now: float) -> None:
        """Dead-path elimination: a node none of whose inputs will come is skipped, and so on down."""
        R.insert_node_txn(conn, run_id, node_id, iteration, 1, "skipped", None, None, iso(now))
        for edge in plan.outgoing[node_id]:
            self._resolve(conn, plan, run_id, edge, iteration, False, None, None, flow, now)

    # --- run state -------------------------------------------------------------------------

    def settle(self, conn, plan: Plan, run_id: str, status: str, now: float) -> bool:
        """Complete the run if nothing is pending or running. A paused run settles on resume."""
        if status != "running" or R.open_message_count(conn, run_id):
            return False
        stranded = R.unfired_join(conn, run_id)
        if stranded is not None:
            # Defence in depth (validation refuses the shapes that lead here): never complete
            # a run while a join still holds deliveries it has not acted on.
            node_id, iteration, resolved = stranded
            self._stop_run(conn, run_id, "fail", status, now, error=(
                f"node '{node_id}' iteration {iteration} got {resolved} of its inputs and "
                f"waits for the rest, which will not come"))
            return False
        outputs = {}
        for node_id, output in R.completed_outputs(conn, run_id):
            if node_id in plan.terminals:
                outputs[node_id] = json.loads(output) if output is not None else None
        R.run_transition_txn(conn, run_id, "complete", "running", iso(now), outputs=dumps(outputs))
        self._finished(conn, run_id, now)
        return True

    def _fail_run(self, conn, plan: Plan, run_id: str, status: str, error: str, now: float) -> None:
        self._stop_run(conn, run_id, "fail", status, now, error=error)

    def _stop_run(self, conn, run_id: str, trigger: str, status: str, now: float,
                  error: str | None = None) -> None:
        """Fail or cancel a run: no new node starts; running ones are told through the run status."""
        now_s = iso(now)
        # A run ends with its subruns, however deep: walked with a stack, not recursion, so a
        # workflow that calls itself thousands deep still cancels.
        todo = [(run_id, trigger, status, error)]
        while todo:
            rid, trig, st, err = todo.pop()
            R.run_transition_txn(conn, rid, trig, st, now_s, error=err)
            todo.extend((child, "cancel", child_status, None)
                        for child, child_status in R.active_children(conn, rid))
            self._finished(conn, rid, now)
            R.discard_run_messages_txn(conn, rid, now_s)
            for instance_id, node_id, node_status, _mid in R.open_nodes(conn, rid):
                if node_status in ("pending", "waiting"):
                    R.finish_node_txn(conn, instance_id, rid, node_id, "cancel", node_status, now_s,
                                      data={"reason": f"run {trig}ed" if trig == "cancel" else "run failed"})

    def cancel(self, conn, run_id: str, now: float, reason: str | None = None) -> str:
        status = R.run_state(conn, run_id)[0]
        if status == "cancelled":
            return status  # cancelling twice is not an error
        if status in TERMINAL_RUN_STATUSES:
            raise InvalidTransition(f"run {run_id} is already {status}; nothing to cancel")
        self._stop_run(conn, run_id, "cancel", status, now, error=reason)
        return "cancelled"

    def pause(self, conn, run_id: str, now: float, until: float | None = None) -> str:
        status = R.run_state(conn, run_id)[0]
        if status == "paused" and until is None:
            # Pausing twice is not an error, as cancelling twice is not; a run paused for a
            # while now waits for resume().
            R.pause_until_resumed_txn(conn, run_id, iso(now))
            return status
        R.run_transition_txn(conn, run_id, "pause", status, iso(now),
                             paused_until=iso(until) if until else None)
        R.hold_run_messages_txn(conn, run_id, True)
        return "paused"

    def resume(self, conn, run_id: str, now: float) -> str:
        status, workflow_id, version = R.run_state(conn, run_id)[:3]
        if status == "running":
            return status  # resuming a run that is not paused (any more) is not an error
        R.run_transition_txn(conn, run_id, "resume", status, iso(now))
        R.hold_run_messages_txn(conn, run_id, False)
        self.settle(conn, self.plan_of(workflow_id, version), run_id, "running", now)
        return "running"

    def time_out(self, conn, run_id: str, now: float) -> None:
        status = R.run_state(conn, run_id)[0]
        if status in ACTIVE:
            self._fail_run(conn, None, run_id, status, "run timed out (workflow timeout)", now)

    # --- recovery --------------------------------------------------------------------------

    def after_reclaim(self, conn, lost: list[Reclaimed], now: float) -> None:
        """Deliveries whose worker died or overran: fail that attempt, and retry or fail the node."""
        now_s = iso(now)
        for r in lost:
            if r.run_id is None:
                continue
            row = R.open_node_of_message(conn, r.message_id)
            why = f"worker {r.worker_id} lost the lease (process died or overran)"
            attempt = 1
            if row is not None:
                instance_id, node_status, attempt, _nid, _it = row
                R.finish_node_txn(conn, instance_id, r.run_id, r.target_node_id, "fail", node_status,
                                  now_s, error=why, error_type="WorkerLost")
            state = R.run_state(conn, r.run_id)
            status = state.status
            R.release_throttled_txn(conn, r.run_id)  # the lost attempt held a maxConcurrency slot
            if status not in ACTIVE:
                if not r.dead:
                    R.discard_run_messages_txn(conn, r.run_id, now_s)
                continue
            if not r.dead:
                R.insert_node_txn(conn, r.run_id, r.target_node_id, r.iteration, attempt + 1,
                                  "pending", r.message_id, None, now_s, data={"redelivery": True})
                continue
            plan = self.plan_of(state.workflow_id, state.version)
            self.node_failed(conn, plan, r.run_id, r.target_node_id, r.iteration,
                             f"{why}; dead-lettered after {r.deliveries} lost "
                             f"deliver{'y' if r.deliveries == 1 else 'ies'}",
                             "DeadLettered", attempt, state, {}, now)


_MISSING = object()


MAX_EVENT_VARS_BYTES = 64 * 1024


def vars_delta(before: Mapping | None, after: Mapping | None) -> dict | None:
    """What a node did to the variables it was given: {"set": {key: value}, "unset": [keys]}.
    Per key, so that parallel branches writing different keys do not undo each other."""
    if after is None or before is None or after == before:
        return None
    delta: dict = {}
    unset = sorted(before.keys() - after.keys())
    changed = {k: v for k, v in after.items() if before.get(k, _MISSING) != v}
    if changed:
        delta["set"] = changed
    if unset:
        delta["unset"] = unset
    return delta or None


def apply_vars_delta(variables: dict, delta: Mapping) -> None:
    for key in delta.get("unset", ()):
        variables.pop(key, None)
    variables.update(delta.get("set", {}))
