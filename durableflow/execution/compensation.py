"""Compensation (sagas): when a run fails, or is cancelled with `compensate`, the
`compensationNodeId` of each node it completed runs, in reverse order of completion, one at a
time; a completed child run (Subflow, loop body) is compensated in its place in that order.

Nothing is remembered outside the rows: each step asks the database what is left (the newest
completed instance no compensation has taken up, the newest completed child run), so a crash at
any point resumes where it stopped and a finished compensation is never run again. A
compensation's attempts are node instances marked `compensates` (the node they undo), with that
node's iteration; it follows its own retry policy, and one that still fails is recorded and the
rest still run: undoing what can be undone beats stopping at the first refusal, and the run's
error names every compensation that failed.
"""

from __future__ import annotations

from typing import Callable

from durableflow.clock import iso
from durableflow.plan import Plan, Plans
from durableflow.storage import events, nodes, queue, runs
from durableflow.storage.events import dumps
from durableflow.execution.routing import Routing
from durableflow.tasks import EnqueueAs

# Why a run compensates; and how it ends once it has.
FAILED, CANCELLED, PARENT = "failed", "cancelled", "parent"
_END = {FAILED: "compensated", CANCELLED: "cancel", PARENT: "cancel"}


class Compensation:
    def __init__(self, routing: Routing, plans: Plans, finished: Callable, stop: Callable):
        self.routing = routing
        self.plans = plans
        self.finished = finished     # a run ended: wake whoever waits for it
        self.stop = stop             # end a run without compensating (RunLifecycle.stop_run)
        self._advancing: set[str] = set()

    # --- starting --------------------------------------------------------------------------

    def wanted(self, conn, run_id: str, plan: Plan) -> bool:
        """Whether the run has anything to undo: a completed node with a compensationNodeId,
        or a child run (completed, or still going) that has."""
        if not plan.may_compensate:
            return False
        if plan.compensated_json != "[]" and nodes.next_to_compensate(conn, run_id, plan.compensated_json):
            return True
        children = [(c, wf, v) for c, wf, v, _at in runs.completed_children(conn, run_id)]
        for child, _status in runs.active_children(conn, run_id):
            state = runs.run_state(conn, child)
            children.append((child, state.workflow_id, state.version))
        return any(self.wanted(conn, c, self.plans.get(wf, v, conn)) for c, wf, v in children)

    def begin(self, conn, run_id: str, plan: Plan, status: str, now: float, *, reason: str,
              error: str | None, failure: dict | None) -> None:
        """Stop the run's own work and start undoing it. Child runs still going are compensated
        too (or cancelled, when they have nothing to undo)."""
        now_s = iso(now)
        queue.discard_run_messages_txn(conn, run_id, now_s)
        for instance_id, node_id, node_status, _mid in nodes.open_nodes(conn, run_id):
            if node_status in ("pending", "waiting"):
                nodes.finish_node_txn(conn, instance_id, run_id, node_id, "cancel", node_status, now_s,
                                      data={"reason": "run compensating"})
        # Children first, while this run is not yet compensating: a child that has nothing to
        # undo ends at once and would otherwise step this run before all of them are handled.
        for child, child_status in runs.active_children(conn, run_id):
            state = runs.run_state(conn, child)
            child_plan = self.plans.get(state.workflow_id, state.version, conn)
            if self.wanted(conn, child, child_plan):
                self.begin(conn, child, child_plan, child_status, now, reason=PARENT,
                           error=f"compensated: its parent run {run_id} is compensating", failure=failure)
            else:
                self.stop(conn, child, "cancel", child_status, now)
        runs.run_transition_txn(conn, run_id, "compensate", status, now_s, error=error,
                                data={"reason": reason, "failure": failure})
        self.advance(conn, run_id, now)

    # --- stepping --------------------------------------------------------------------------

    def advance(self, conn, run_id: str, now: float) -> None:
        """Start the next compensation, or end the run when nothing is left to undo and none of
        its own nodes still runs. Called whenever something of a compensating run ends."""
        if run_id in self._advancing:
            return   # a child ended at once inside this run's own step: its loop goes on
        self._advancing.add(run_id)
        try:
            while self._step(conn, run_id, now):
                pass
        finally:
            self._advancing.discard(run_id)

    def _step(self, conn, run_id: str, now: float) -> bool:
        """One step; True when another should follow at once."""
        state = runs.run_state(conn, run_id)
        if state.status != "compensating":
            return False
        if nodes.compensation_open(conn, run_id) or runs.children_compensating(conn, run_id):
            return False
        plan = self.plans.get(state.workflow_id, state.version, conn)
        begun = events.last_event_data(conn, run_id, "run.compensating") or {}
        pick = self._newest(conn, run_id, plan)
        if pick is not None and pick[0] == "node":
            self._enqueue(conn, plan, state, run_id, pick[1], begun.get("failure"), now)
            return False
        if pick is not None:
            child_id, wf, version, _at = pick[1]
            self.begin(conn, child_id, self.plans.get(wf, version, conn), "completed", now, reason=PARENT,
                       error=f"compensated: its parent run {run_id} is compensating",
                       failure=begun.get("failure"))
            return True
        if nodes.plain_running(conn, run_id):
            return False     # a node told to stop has not yet: its end steps this run again
        self._end(conn, run_id, begun, now)
        return False

    def _newest(self, conn, run_id: str, plan: Plan):
        """("node", row) or ("child", row): what completed last among what is left to undo.
        Ties in the millisecond are settled by the order their completions were recorded."""
        found = [("node", row[5], row) for row in
                 (nodes.next_to_compensate(conn, run_id, plan.compensated_json)
                  if plan.compensated_json != "[]" else ())]
        if plan.may_compensate:
            for row in runs.completed_children(conn, run_id):
                if self.wanted(conn, row[0], self.plans.get(row[1], row[2], conn)):
                    found.append(("child", row[3], row))
        if not found:
            return None
        last = max(at for _kind, at, _row in found)
        tied = [(kind, row) for kind, at, row in found if at == last]
        if len(tied) == 1:
            return tied[0]

        def recorded(item) -> int:
            kind, row = item
            if kind == "node":
                return events.last_seq(conn, run_id, "node.completed", row[1])
            return events.last_seq(conn, row[0], "run.completed")
        return max(tied, key=recorded)

    def _enqueue(self, conn, plan: Plan, state, run_id: str, row: tuple, failure: dict | None,
                 now: float) -> None:
        _id, node_id, iteration, input_json, output_json, _at = row
        by = plan.nodes[node_id].compensation_node_id
        given = ('{"nodeId":' + dumps(node_id) + ',"iteration":' + str(iteration)
                 + ',"input":' + (input_json or "null") + ',"output":' + (output_json or "null")
                 + ',"failure":' + dumps(failure) + "}")
        instance_id = self.routing.enqueue_node(
            conn, plan, run_id, by, iteration, given, "{}", EnqueueAs(False, state.priority), now,
            extra={"compensates": node_id, "failure": failure})
        nodes.mark_compensation_txn(conn, instance_id, node_id)

    def _end(self, conn, run_id: str, begun: dict, now: float) -> None:
        """Every compensation ran: the run ends, its error naming those that failed for good."""
        last: dict[tuple[str, int], tuple] = {}
        for row in nodes.compensations(conn, run_id):
            last[(row[1], row[2])] = row
        failed = [f"compensation '{node_id}' of node '{undone}' failed: {error}"
                  for node_id, undone, _it, status, error in last.values() if status == "failed"]
        error = None
        if failed:
            first = runs.get_run_row(conn, run_id)["error"]
            error = "; ".join(([first] if first else []) + failed)
        reason = begun.get("reason", FAILED)
        runs.run_transition_txn(conn, run_id, _END[reason], "compensating", iso(now), error=error,
                                data={"compensations": len(last), "failed": len(failed)})
        self.finished(conn, run_id, now)
        if reason == PARENT:
            parent = runs.parent_of(conn, run_id)
            if parent is not None:
                self.advance(conn, parent, now)
