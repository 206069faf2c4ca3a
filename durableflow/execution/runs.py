"""A run's lifecycle inside the engine's transactions: start (and start again with `rerun`),
settle (complete once nothing is left), fail, cancel, pause, resume, time out, and signals.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from durableflow.clock import iso
from durableflow.errors import InvalidTransition
from durableflow.expressions import IN_TRANSACTION_CPU_BUDGET
from durableflow.model import TERMINAL_RUN_STATUSES
from durableflow.plan import Plan, Plans
from durableflow.storage import events, joins, nodes, queue, runs, signals
from durableflow.storage.events import dumps, loads
from durableflow.errors import DurableflowError
from durableflow.execution.compensation import CANCELLED, FAILED, Compensation
from durableflow.execution.routing import Routing
from durableflow.execution.variables import variables_kept
from durableflow.tasks import EnqueueAs


class RunLifecycle:
    """`run_finished` is called after the commit of a transaction that finished a run."""

    def __init__(self, routing: Routing, plans: Plans, run_finished: Callable[[], None]):
        self.routing = routing
        self.plans = plans
        self.run_finished = run_finished
        self.compensation = Compensation(routing, plans, self.finished, self.stop_run)

    def start_run(self, conn, plan: Plan, run_id: str, inputs: Any, now: float, *,
                  idempotency_key: str | None = None, priority: int = 1,
                  parent_run_id: str | None = None, parent_node_id: str | None = None,
                  rerun_of: str | None = None, entries: tuple[str, ...] | None = None,
                  scheduled_at: float | None = None) -> tuple[str, bool]:
        """Insert the run and queue its entry nodes: `entries` (a Timer's fire, an emitted
        event's listeners), by default those a run started by hand starts from; the workflow's
        other entry nodes are skipped, with what only they feed."""
        if idempotency_key is not None:
            existing = runs.run_id_for_key(conn, idempotency_key)
            if existing is not None:
                return existing, False
        now_s = iso(now)
        d = plan.definition
        deadline = iso(now + d.timeout) if d.timeout else None
        inputs_json = dumps(inputs)
        runs.insert_run_txn(conn, run_id=run_id, workflow_id=plan.workflow_id,
                            workflow_version=plan.version, inputs=inputs_json,
                            variables=dumps(dict(d.variables)), priority=priority,
                            idempotency_key=idempotency_key, deadline_at=deadline,
                            parent_run_id=parent_run_id, parent_node_id=parent_node_id, now=now_s,
                            scheduled_at=iso(scheduled_at) if scheduled_at is not None else None)
        runs.run_transition_txn(conn, run_id, "start", "pending", now_s,
                                data={"rerunOf": rerun_of, "from": None} if rerun_of else None)
        if rerun_of:
            runs.record_rerun_txn(conn, run_id, rerun_of, None, fresh=True)
        start_from = plan.started_by_hand if entries is None else entries
        how = EnqueueAs(False, priority)
        for node_id in plan.entries:
            if node_id in start_from:
                self.routing.enqueue_node(conn, plan, run_id, node_id, 0, inputs_json, "{}", how, now)
            else:
                self.routing.skip(conn, plan, run_id, node_id, 0, how, now)
        return run_id, True

    def rerun(self, conn, plan: Plan, old_run_id: str, run_id: str, from_node: str | None,
              now: float) -> None:
        """A new run that keeps what the old one recorded and runs the rest again.

        Kept, with its recorded final state: every completed or skipped node, and every failed
        node whose Fail a connection handled (the handler is kept too), unless `from_node` is
        given and the node is `from_node` or downstream of it. Run again: from_node and its
        downstream, and every node that failed unhandled or never finished, with theirs.
        """
        old = runs.get_run_row(conn, old_run_id)
        rows = nodes.node_rows_txn(conn, old_run_id)
        # Compensations are not kept, and what they undid is not settled: it runs again.
        undone = {n["compensates"] for n in rows if n["compensates"] and n["status"] == "completed"}
        latest = {n["node_id"]: n for n in rows if n["iteration"] == 0 and not n["compensates"]}
        if from_node is not None and latest.get(from_node, {}).get("status") == "skipped":
            # A branch the old run did not take: its inputs were ruled out, and running it now
            # would give it an input no run of this workflow could have given it.
            raise InvalidTransition(f"rerun --from {from_node}: it was skipped in run {old_run_id} "
                                    f"(a branch not taken); rerun from a node upstream of the "
                                    f"branch, or the whole run")
        redo = plan.downstream(from_node) if from_node is not None else set()
        for node_id in plan.nodes:
            if node_id not in plan.helpers and (node_id in undone or not _settled(plan, latest, node_id)):
                redo |= plan.downstream(node_id)
        if not redo:
            raise InvalidTransition(f"rerun: run {old_run_id} {old['status']} with every node settled; "
                                    f"nothing to run again (use --fresh to start it over, or --from NODE)")
        now_s = iso(now)
        kept_ids = {node_id for node_id in latest if node_id not in redo}
        variables, deltas, order = variables_kept(conn, plan, old, kept_ids)
        runs.insert_run_txn(conn, run_id=run_id, workflow_id=plan.workflow_id,
                            workflow_version=plan.version, inputs=old["inputs"],
                            variables=variables,
                            priority=old["priority"], idempotency_key=None,
                            deadline_at=iso(now + plan.definition.timeout) if plan.definition.timeout else None,
                            parent_run_id=old["parent_run_id"], parent_node_id=old["parent_node_id"], now=now_s)
        runs.run_transition_txn(conn, run_id, "start", "pending", now_s,
                                data={"rerunOf": old_run_id, "from": from_node})
        runs.record_rerun_txn(conn, run_id, old_run_id, from_node, fresh=False)
        kept = {}
        # Copied in the order they completed, each with its change to the variables, so that a
        # rerun of this run can replay them as this one replayed the old run's.
        for node_id, row in sorted(latest.items(), key=lambda item: order.get(item[0], len(order))):
            if node_id not in redo:
                nodes.copy_node_txn(conn, run_id, row, now_s, old_run_id, vars_delta=deltas.get(node_id))
                kept[node_id] = row
        how = EnqueueAs(False, old["priority"])
        # Started directly: entry points of the part that runs again, and from_node itself
        # unless something that runs again feeds it (then it waits for that, as usual). The
        # rest is fed below by the kept nodes' connections, conditions and joins as they were.
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
            self.routing.enqueue_node(conn, plan, run_id, node_id, 0, input_json, dumps(inputs), how, now)
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
                    ok = bool(edge.condition.evaluate({"output": value, "inputs": {}, "vars": variables},
                                                      IN_TRANSACTION_CPU_BUDGET))
                self.routing.resolve(conn, plan, run_id, edge, 0, ok, value, dumps(value) if ok else None,
                                     how, now)

    def settle(self, conn, plan: Plan, run_id: str, status: str, now: float) -> bool:
        """Complete the run if nothing is pending or running. A paused run settles on resume."""
        if status != "running" or queue.has_open_messages(conn, run_id):
            return False
        stranded = joins.unfired_join(conn, run_id) if plan.has_joins else None
        if stranded is not None:
            # Defence in depth (validation refuses the shapes that lead here): never complete
            # a run while a join still holds deliveries it has not acted on.
            node_id, iteration, resolved = stranded
            self.stop_run(conn, run_id, "fail", status, now, error=(
                f"node '{node_id}' iteration {iteration} got {resolved} of its inputs and "
                f"waits for the rest, which will not come"))
            return False
        outputs = {}
        for node_id, output in nodes.completed_outputs(conn, run_id):
            if node_id in plan.terminals:
                outputs[node_id] = loads(output) if output is not None else None
        runs.run_transition_txn(conn, run_id, "complete", "running", iso(now), outputs=dumps(outputs))
        self.finished(conn, run_id, now)
        return True

    def fail_run(self, conn, run_id: str, status: str, error: str, now: float,
                 failure: dict | None = None) -> None:
        self.stop_run(conn, run_id, "fail", status, now, error=error, failure=failure)

    def stop_run(self, conn, run_id: str, trigger: str, status: str, now: float,
                 error: str | None = None, failure: dict | None = None) -> None:
        """Fail or cancel a run: no new node starts; running ones are told through the run status.
        A failing run with something to undo compensates first (and fails once it has)."""
        conn.write_put_off()   # a node started in this transaction is running, not pending
        if trigger == "fail" and status != "compensating" and self._compensate(
                conn, run_id, status, now, FAILED, error,
                failure or {"nodeId": None, "errorType": None, "message": error}):
            return
        now_s = iso(now)
        # A run ends with its subruns, however deep: walked with a stack, not recursion, so a
        # workflow that calls itself thousands deep still cancels.
        todo = [(run_id, trigger, status, error)]
        while todo:
            rid, trig, st, err = todo.pop()
            runs.run_transition_txn(conn, rid, trig, st, now_s, error=err)
            todo.extend((child, "cancel", child_status, None)
                        for child, child_status in runs.active_children(conn, rid))
            self.finished(conn, rid, now)
            queue.discard_run_messages_txn(conn, rid, now_s)
            for instance_id, node_id, node_status, _mid in nodes.open_nodes(conn, rid):
                if node_status in ("pending", "waiting"):
                    nodes.finish_node_txn(conn, instance_id, rid, node_id, "cancel", node_status, now_s,
                                          data={"reason": f"run {trig}ed" if trig == "cancel" else "run failed"})

    def finished(self, conn, run_id: str, now: float) -> None:
        """A run ended: wake the Subflow node of its parent, which looks at how it ended, and,
        once this commits, whoever waits for a run of this process to end."""
        conn.on_commit(self.run_finished)
        parent = runs.parent_of(conn, run_id)
        if parent is not None:
            queue.wake_waiting_txn(conn, parent, iso(now))

    def cancel(self, conn, run_id: str, now: float, reason: str | None = None,
               compensate: bool = False) -> str:
        """Cancel a run. With `compensate`, what it completed is undone first (the run is
        `compensating` meanwhile, then `cancelled`); without, nothing is undone."""
        status = runs.run_state(conn, run_id).status
        if status == "cancelled":
            return status  # cancelling twice is not an error
        if status in TERMINAL_RUN_STATUSES:
            raise InvalidTransition(f"run {run_id} is already {status}; nothing to cancel")
        if compensate and status == "compensating":
            return status  # already undoing what it did
        if compensate and self._compensate(conn, run_id, status, now, CANCELLED, reason, {
                "nodeId": None, "errorType": "Cancelled", "message": reason or "run cancelled"}):
            return "compensating"
        self.stop_run(conn, run_id, "cancel", status, now, error=reason)
        return "cancelled"

    def _compensate(self, conn, run_id: str, status: str, now: float, reason: str,
                    error: str | None, failure: dict) -> bool:
        """Begin compensating the run if it has anything to undo; False if it has not."""
        state = runs.run_state(conn, run_id)
        try:
            plan = self.plans.get(state.workflow_id, state.version, conn)
        except DurableflowError:
            return False   # its definition cannot be loaded: nothing can be run, nor undone
        if not self.compensation.wanted(conn, run_id, plan):
            return False
        self.compensation.begin(conn, run_id, plan, status, now, reason=reason, error=error, failure=failure)
        return True

    def pause(self, conn, run_id: str, now: float, until: float | None = None) -> str:
        """Pause a run and, with it, its child runs (Subflow, loop bodies), however deep. A child
        already paused on its own stays as it is, and so does its pause."""
        status = runs.run_state(conn, run_id).status
        if status == "paused" and until is None:
            # Pausing twice is not an error, as cancelling twice is not; a run paused for a
            # while now waits for resume().
            runs.pause_until_resumed_txn(conn, run_id, iso(now))
            return status
        now_s = iso(now)
        runs.run_transition_txn(conn, run_id, "pause", status, now_s,
                                paused_until=iso(until) if until else None)
        queue.hold_run_messages_txn(conn, run_id, True)
        todo = [run_id]
        while todo:
            for child, child_status in runs.active_children(conn, todo.pop()):
                if child_status in ("pending", "running"):
                    runs.run_transition_txn(conn, child, "pause", child_status, now_s,
                                            data={"with": run_id})
                    queue.hold_run_messages_txn(conn, child, True)
                todo.append(child)
        return "paused"

    def resume(self, conn, run_id: str, now: float) -> str:
        """Resume a run and the child runs its pause paused (not those paused on their own)."""
        state = runs.run_state(conn, run_id)
        if state.status == "running":
            return state.status  # resuming a run that is not paused (any more) is not an error
        self._resume_one(conn, run_id, state, now)
        todo = [run_id]
        while todo:
            for child, child_status in runs.active_children(conn, todo.pop()):
                if child_status == "paused":
                    why = events.last_event_data(conn, child, "run.paused") or {}
                    if why.get("with") != run_id:
                        continue   # paused on its own (or with another run): left as it is
                    self._resume_one(conn, child, runs.run_state(conn, child), now)
                todo.append(child)
        return "running"

    def _resume_one(self, conn, run_id: str, state, now: float) -> None:
        runs.run_transition_txn(conn, run_id, "resume", state.status, iso(now))
        queue.hold_run_messages_txn(conn, run_id, False, iso(now))
        self.settle(conn, self.plans.get(state.workflow_id, state.version, conn), run_id, "running", now)

    def time_out(self, conn, run_id: str, now: float) -> None:
        status = runs.run_state(conn, run_id).status
        if status in ("running", "paused"):
            self.fail_run(conn, run_id, status, "run timed out (workflow timeout)", now)

    def signal(self, conn, run_id: str, name: str, payload: Any, now: float) -> None:
        state = runs.run_state(conn, run_id)
        if state.status in TERMINAL_RUN_STATUSES:
            raise InvalidTransition(f"run {run_id} is {state.status}; a signal to it would never be taken")
        plan = self.plans.get(state.workflow_id, state.version, conn)
        waits = sorted({str(n.config.get("signal")) for n in plan.nodes.values()
                        if n.runtime_type == "WaitForSignal"})
        if name not in waits:
            # Stored, it would wait forever: no node of this run's workflow can take it.
            have = f"it waits for: {', '.join(waits)}" if waits else "it has no WaitForSignal node"
            raise InvalidTransition(f"run {run_id}: workflow '{state.workflow_id}' v{state.version} "
                                    f"has no WaitForSignal for {name!r} ({have})")
        signals.insert_signal_txn(conn, run_id, name, dumps(payload), iso(now))
        queue.wake_waiting_txn(conn, run_id, iso(now))


def _settled(plan: Plan, latest: dict, node_id: str) -> bool:
    """Whether a node's recorded final state stands in a rerun: completed, skipped, or failed
    with its Fail handled by a connection (a declined card that was refunded stays so)."""
    row = latest.get(node_id)
    if row is None:
        return False
    if row["status"] in ("completed", "skipped"):
        return True
    if row["status"] != "failed":
        return False
    return any(edge.conn.trigger in ("Fail", "Any")
               and latest.get(edge.conn.target_node_id, {}).get("status") not in (None, "skipped")
               for edge in plan.outgoing[node_id])
