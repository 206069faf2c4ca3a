"""Nodes that wait for child runs: Subflow (one child), ForEach (a body run per item, some at
once) and While (a body run per turn). Mixed into Execution: each method runs inside the
transaction that records the node, like the rest of Execution.

Such a node parks while its children run; a child's end wakes it, and it looks at them again.
Its timeout cancels the children; its retry policy starts over with fresh ones.
"""

from __future__ import annotations

import json

from durableflow import retry as retry_policy
from durableflow.clock import iso
from durableflow.definitions import body_workflow, storable
from durableflow.errors import DurableflowError, ExpressionError
from durableflow.model import TERMINAL_RUN_STATUSES
from durableflow.plan import Plan, build_plan
from durableflow.storage import runs as R
from durableflow.tasks import SIGNAL_RECHECK, Outcome, Task

dumps = R.dumps
DEFAULT_PARALLELISM = 4        # ForEach body runs at once when maxParallelism is not given
DEFAULT_MAX_ITERATIONS = 1000  # While turns when maxIterations is not given
# Runs started by Subflow, ForEach and While nodes nest at most this deep.
MAX_NESTING = 100


class ChildRuns:
    """Mixed into Execution, whose fail, complete, park, start_run, _stop_run and plan_of these
    methods use."""

    def subflow(self, conn, task: Task, step, now: float) -> None:
        """Start the child run and wait for it; when it has finished, end as it ended."""
        loop = task.node.runtime_type in ("ForEach", "While")
        starting = task.payload.get("loop") is None if loop else step.child is None
        if starting and self._nested_too_deep(conn, task.run_id):
            self._child_node_failed(conn, task, f"runs are already nested {MAX_NESTING} deep here; "
                                    f"refused to start another (does a workflow start itself?)",
                                    "NestingTooDeep", now)
            return
        if loop:
            self._loop(conn, task, step, now)
            return
        if step.child is None:
            workflow_id, version, inputs = step.start
            try:
                if version is None:
                    version = R.get_workflow(conn, workflow_id)["version"]
                plan = self.plan_of(workflow_id, int(version))
            except DurableflowError as exc:
                self._child_node_failed(conn, task, f"subflow '{workflow_id}' could not start: {exc}",
                                        "SubflowFailed", now)
                return
            child = self.new_run_id()
            self.start_run(conn, plan, child, inputs, now, priority=R.run_state(conn, task.run_id).priority,
                           parent_run_id=task.run_id, parent_node_id=task.node_id)
            deadline = now + task.node.timeout if task.node.timeout else None
            self.park(conn, task, _recheck(now, deadline), now,
                      keep={"childRunId": child, "deadline": deadline}, reason=f"subflow run {child}")
            return
        row = R.get_run_row(conn, step.child)
        deadline = task.payload.get("deadline")
        if row["status"] == "completed":
            outputs = json.loads(row["outputs"] or "null")
            self.complete(conn, task, Outcome(True, outputs, dumps(outputs)), now)
        elif row["status"] in TERMINAL_RUN_STATUSES:
            self._child_node_failed(conn, task, f"subflow run {step.child} {row['status']}: "
                                    f"{row['error'] or 'cancelled'}", "SubflowFailed", now)
        elif deadline is not None and now >= deadline:
            self._stop_run(conn, step.child, "cancel", row["status"], now)
            self._child_node_failed(conn, task, f"timed out after {task.node.timeout:g}s waiting for "
                                    f"subflow run {step.child} (cancelled)", "TimeoutError", now)
        else:
            self.park(conn, task, _recheck(now, deadline), now,
                      keep={"childRunId": step.child, "deadline": deadline},
                      reason=f"subflow run {step.child}")

    # --- loops: a body run per item (ForEach) or per turn (While) ----------------------------

    def _loop(self, conn, task: Task, step, now: float) -> None:
        node = task.node
        state = task.payload.get("loop")
        if state is None:
            try:
                workflow = self._body(conn, task, now)
            except DurableflowError as exc:
                self._loop_failed(conn, task, f"its body cannot run: {exc}", now)
                return
            state = {"workflow": workflow, "open": [], "next": 0, "outputs": [], "last": None,
                     "deadline": now + node.timeout if node.timeout else None}
            if node.runtime_type == "ForEach":
                state["items"] = step.items
                state["outputs"] = [None] * len(step.items)
        plan = self.plan_of(*state["workflow"])
        deadline = state.get("deadline")
        if deadline is not None and now >= deadline:
            self._cancel_children(conn, [child for _i, child in state["open"]], now)
            self._loop_failed(conn, task, f"timed out after {node.timeout:g}s "
                              f"({len(state['open'])} body run(s) cancelled)", now, "TimeoutError")
            return
        still_open = []
        for index, child in state["open"]:
            row = R.get_run_row(conn, child)
            if row["status"] == "completed":
                outputs = json.loads(row["outputs"] or "null")
                if node.runtime_type == "ForEach":
                    state["outputs"][index] = outputs
                else:
                    state["last"], state["next"] = outputs, index + 1
            elif row["status"] in TERMINAL_RUN_STATUSES:
                self._cancel_children(conn, [other for _i, other in state["open"]], now)
                what = "item" if node.runtime_type == "ForEach" else "iteration"
                self._loop_failed(conn, task, f"{what} {index}: body run {child} {row['status']}: "
                                  f"{row['error'] or 'cancelled'}", now)
                return
            else:
                still_open.append([index, child])
        priority = R.run_state(conn, task.run_id).priority
        if node.runtime_type == "ForEach":
            items = state["items"]
            width = int(node.config.get("maxParallelism") or DEFAULT_PARALLELISM)
            while state["next"] < len(items) and len(still_open) < width:
                index = state["next"]
                child = self._start_body(conn, task, plan, {"item": items[index], "index": index},
                                         priority, now)
                still_open.append([index, child])
                state["next"] += 1
            done = state["next"] == len(items) and not still_open
            result, progress = state["outputs"], f"{state['next'] - len(still_open)}/{len(items)} items done"
        else:
            done = False
            if not still_open:
                turn = state["next"]
                names = {"output": state["last"], "iteration": turn, "vars": task.variables}
                try:
                    go_on = bool(task.plan.compiled[f"{task.node_id}.condition"].evaluate(names))
                except ExpressionError as exc:
                    self._loop_failed(conn, task, f"condition failed: {exc}", now)
                    return
                limit = int(node.config.get("maxIterations") or DEFAULT_MAX_ITERATIONS)
                if go_on and turn >= limit:
                    self._loop_failed(conn, task, f"condition still true after maxIterations {limit}", now)
                    return
                if go_on:
                    child = self._start_body(conn, task, plan, {"input": task.input, "iteration": turn},
                                             priority, now)
                    still_open.append([turn, child])
                else:
                    done = True
            result, progress = state["last"], f"iteration {state['next']}"
        if done:
            self.complete(conn, task, Outcome(True, result, dumps(result)), now)
            return
        state["open"] = still_open
        self.park(conn, task, _recheck(now, deadline), now, keep={"loop": state},
                  reason=f"{node.runtime_type} {progress}")

    def _body(self, conn, task: Task, now: float) -> list:
        """[workflow_id, version] of the loop's body; an inline body is registered as
        '<workflow>.<node>' (same content, same version)."""
        body = task.node.config["body"]
        if "workflowId" in body:
            version = body.get("version") or R.get_workflow(conn, body["workflowId"])["version"]
            return [body["workflowId"], int(version)]
        defn = body_workflow(task.node, task.plan.definition)
        checksum, text = storable(defn)
        version, _ = R.register_workflow_txn(conn, defn.workflow_id, checksum, text, None, None, iso(now))
        # Registered in this very transaction: a fresh read of it would not see it yet.
        self._body_plans.setdefault((defn.workflow_id, version), build_plan(defn, version))
        return [defn.workflow_id, version]

    @staticmethod
    def _nested_too_deep(conn, run_id: str) -> bool:
        """Whether `run_id` already has MAX_NESTING ancestors: a Subflow or loop body that
        (directly or not) starts its own workflow would otherwise nest runs without end."""
        depth, current = 0, run_id
        while current is not None:
            if depth >= MAX_NESTING:
                return True
            current = R.parent_of(conn, current)
            depth += 1
        return False

    def _start_body(self, conn, task: Task, plan: Plan, inputs: dict, priority: int, now: float) -> str:
        child = self.new_run_id()
        self.start_run(conn, plan, child, inputs, now, priority=priority,
                       parent_run_id=task.run_id, parent_node_id=task.node_id)
        return child

    def _loop_failed(self, conn, task: Task, why: str, now: float, error_type: str = "LoopFailed") -> None:
        self._child_node_failed(conn, task, why, error_type, now)

    def _cancel_children(self, conn, children: list[str], now: float) -> None:
        for child in children:
            status = R.run_state(conn, child).status
            if status not in TERMINAL_RUN_STATUSES:
                self._stop_run(conn, child, "cancel", status, now)

    def _child_node_failed(self, conn, task: Task, why: str, error_type: str, now: float) -> None:
        """A Subflow, ForEach or While attempt failed (its child run failed, or it timed out).
        Its retry policy applies as to any node: a retry starts over with new child runs."""
        state = R.run_state(conn, task.run_id)
        budget = task.plan.definition.retry_budget
        decision = retry_policy.decide(task.node.retry, task.attempt, error_type=error_type,
                                       budget_left=None if budget is None else budget - state.retries_used)
        if decision.retry:
            # The next attempt must not look at this attempt's children.
            fresh = {k: v for k, v in task.payload.items() if k not in ("childRunId", "loop", "deadline")}
            R.set_message_payload_txn(conn, task.message.id, dumps(fresh))
        self.fail(conn, task, Outcome(False, error=f"node '{task.node_id}': {why}", error_type=error_type),
                  now, retry_delay=decision.delay if decision.retry else None, reason=decision.reason)


def _recheck(now: float, deadline: float | None) -> float:
    """When a node waiting on child runs looks again by itself: at its deadline, if it has one
    sooner than the daily re-look (a child's end wakes it at once anyway)."""
    later = now + SIGNAL_RECHECK
    return later if deadline is None else min(later, deadline)
