"""Nodes that wait for child runs: Subflow (one child), ForEach (a body run per item, some at
once) and While (a body run per turn). Each step runs inside the transaction that records the
node, like the rest of the execution package.

Such a node parks while its children run; a child's end wakes it, and it looks at them again.
Its timeout cancels the children; its retry policy starts over with fresh ones.
"""

from __future__ import annotations

import json
from typing import Callable

from durableflow.clock import iso
from durableflow.definitions import body_workflow, storable
from durableflow.errors import DurableflowError, ExpressionError
from durableflow.expressions import IN_TRANSACTION_CPU_BUDGET
from durableflow.model import TERMINAL_RUN_STATUSES
from durableflow.plan import Plan, Plans
from durableflow.storage import loops, runs, workflows
from durableflow.storage.events import dumps
from durableflow.execution.attempts import AttemptLifecycle
from durableflow.execution.runs import RunLifecycle
from durableflow.tasks import SIGNAL_RECHECK, Outcome, Task

DEFAULT_PARALLELISM = 4        # ForEach body runs at once when maxParallelism is not given
DEFAULT_MAX_ITERATIONS = 1000  # While turns when maxIterations is not given
# Runs started by Subflow, ForEach and While nodes nest at most this deep (Engine(max_nesting=)).
DEFAULT_MAX_NESTING = 100
# A nesting error names the chain of workflows; a long one keeps this many at each end.
CHAIN_ENDS = 3


class ChildRuns:
    def __init__(self, runs_: RunLifecycle, attempts: AttemptLifecycle, plans: Plans,
                 new_run_id: Callable[[], str], max_nesting: int = DEFAULT_MAX_NESTING):
        self.runs = runs_
        self.attempts = attempts
        self.plans = plans
        self.new_run_id = new_run_id
        self.max_nesting = max_nesting

    def step(self, conn, task: Task, step, now: float) -> None:
        """Start the child run(s) and wait for them; when they have finished, end as they ended."""
        loop = task.node.runtime_type in ("ForEach", "While")
        starting = task.payload.get("loop") is None if loop else step.child is None
        if starting:
            # One more than the limit allows, to tell "exactly at the limit" from "past it".
            chain = runs.ancestry(conn, task.run_id, self.max_nesting + 2)
            if len(chain) > self.max_nesting:
                self._child_node_failed(conn, task, self._too_deep(task, chain), "NestingTooDeep", now)
                return
        if loop:
            self._loop(conn, task, step, now)
        elif step.child is None:
            self._start_subflow(conn, task, step, now)
        else:
            self._look_at_subflow(conn, task, step.child, now)

    # --- Subflow: one child run ------------------------------------------------------------

    def _start_subflow(self, conn, task: Task, step, now: float) -> None:
        workflow_id, version, inputs = step.start
        try:
            if version is None:
                version = workflows.get_workflow(conn, workflow_id)["version"]
            plan = self.plans.get(workflow_id, int(version), conn)
        except DurableflowError as exc:
            self._child_node_failed(conn, task, f"subflow '{workflow_id}' could not start: {exc}",
                                    "SubflowFailed", now)
            return
        child = self.new_run_id()
        self.runs.start_run(conn, plan, child, inputs, now, priority=runs.run_state(conn, task.run_id).priority,
                            parent_run_id=task.run_id, parent_node_id=task.node_id)
        deadline = now + task.node.timeout if task.node.timeout else None
        self.attempts.park(conn, task, _recheck(now, deadline), now,
                           keep={"childRunId": child, "deadline": deadline}, reason=f"subflow run {child}")

    def _look_at_subflow(self, conn, task: Task, child: str, now: float) -> None:
        row = runs.get_run_row(conn, child)
        deadline = task.payload.get("deadline")
        if row["status"] == "completed":
            outputs = json.loads(row["outputs"] or "null")
            self.attempts.complete(conn, task, Outcome(True, outputs, dumps(outputs)), now)
        elif row["status"] in TERMINAL_RUN_STATUSES:
            self._child_node_failed(conn, task, f"subflow run {child} {row['status']}: "
                                    f"{row['error'] or 'cancelled'}", "SubflowFailed", now)
        elif deadline is not None and now >= deadline:
            self.runs.stop_run(conn, child, "cancel", row["status"], now)
            self._child_node_failed(conn, task, f"timed out after {task.node.timeout:g}s waiting for "
                                    f"subflow run {child} (cancelled)", "TimeoutError", now)
        else:
            self.attempts.park(conn, task, _recheck(now, deadline), now,
                               keep={"childRunId": child, "deadline": deadline},
                               reason=f"subflow run {child}")

    # --- loops: a body run per item (ForEach) or per turn (While) ----------------------------

    def _loop(self, conn, task: Task, step, now: float) -> None:
        """One look at a loop: collect the body runs that ended, start the next ones, and wait
        again or end. The state carried in the node's message is small (the runs in flight, a
        cursor): a ForEach's items sit in loop_items, written once; its results are read from
        its body runs when they have all ended."""
        node = task.node
        each = node.runtime_type == "ForEach"
        state = task.payload.get("loop")
        if state is None:
            try:
                workflow, plan = self._body(conn, task, now)
            except DurableflowError as exc:
                self._child_node_failed(conn, task, f"its body cannot run: {exc}", "LoopFailed", now)
                return
            state = {"workflow": workflow, "open": [], "next": 0, "last": None,
                     "deadline": now + node.timeout if node.timeout else None}
            if each:
                state["attempt"] = task.attempt
                state["count"] = loops.insert_items_txn(conn, task.run_id, task.node_id, task.message.iteration,
                                                        task.attempt, (dumps(item) for item in step.items))
        else:
            plan = self.plans.get(*state["workflow"], conn)
            if each and "items" in state:
                state = self._carry_over(conn, task, state)
        deadline = state.get("deadline")
        if deadline is not None and now >= deadline:
            self._cancel_children(conn, [child for _i, child in state["open"]], now)
            self._child_node_failed(conn, task, f"timed out after {node.timeout:g}s "
                                    f"({len(state['open'])} body run(s) cancelled)", "TimeoutError", now)
            return
        still_open = []
        for index, child in state["open"]:
            row = runs.get_run_row(conn, child)
            if row["status"] == "completed":
                if not each:
                    state["last"], state["next"] = json.loads(row["outputs"] or "null"), index + 1
            elif row["status"] in TERMINAL_RUN_STATUSES:
                if each and node.config.get("continueOnError"):
                    continue    # its error takes the item's place in the results
                self._cancel_children(conn, [other for _i, other in state["open"]], now)
                what = "item" if each else "iteration"
                self._child_node_failed(conn, task, f"{what} {index}: body run {child} {row['status']}: "
                                        f"{row['error'] or 'cancelled'}", "LoopFailed", now)
                return
            else:
                still_open.append([index, child])
        priority = runs.run_state(conn, task.run_id).priority
        if each:
            count, key = state["count"], (task.run_id, task.node_id, task.message.iteration, state["attempt"])
            width = int(node.config.get("maxParallelism") or DEFAULT_PARALLELISM)
            while state["next"] < count and len(still_open) < width:
                index = state["next"]
                item = json.loads(loops.item_json(conn, *key, index))
                child = self._start_body(conn, task, plan, {"item": item, "index": index}, priority, now)
                loops.item_started_txn(conn, *key, index, child)
                still_open.append([index, child])
                state["next"] += 1
            done = state["next"] == count and not still_open
            result = [_item_result(*row) for row in loops.results(conn, *key)] if done else None
            progress = f"{state['next'] - len(still_open)}/{count} items done"
        else:
            done = False
            if not still_open:
                turn = state["next"]
                names = {"output": state["last"], "iteration": turn, "vars": task.variables}
                try:
                    go_on = bool(task.plan.compiled[f"{task.node_id}.condition"].evaluate(
                        names, IN_TRANSACTION_CPU_BUDGET))
                except ExpressionError as exc:
                    self._child_node_failed(conn, task, f"condition failed: {exc}", "LoopFailed", now)
                    return
                limit = int(node.config.get("maxIterations") or DEFAULT_MAX_ITERATIONS)
                if go_on and turn >= limit:
                    self._child_node_failed(conn, task, f"condition still true after maxIterations {limit}",
                                            "LoopFailed", now)
                    return
                if go_on:
                    inputs = {"input": task.input, "previous": state["last"], "iteration": turn}
                    child = self._start_body(conn, task, plan, inputs, priority, now)
                    still_open.append([turn, child])
                else:
                    done = True
            result, progress = state["last"], f"iteration {state['next']}"
        if done:
            self.attempts.complete(conn, task, Outcome(True, result, dumps(result)), now)
            return
        state["open"] = still_open
        self.attempts.park(conn, task, _recheck(now, deadline), now, keep={"loop": state},
                           reason=f"{node.runtime_type} {progress}")

    @staticmethod
    def _carry_over(conn, task: Task, state: dict) -> dict:
        """A ForEach started by a durableflow that kept its items and results in the message:
        its items go to loop_items, with the results of those done, and it goes on from there."""
        open_ = {index for index, _child in state["open"]}
        done = [None if i >= state["next"] or i in open_ else dumps(out)
                for i, out in enumerate(state["outputs"])]
        count = loops.insert_items_txn(conn, task.run_id, task.node_id, task.message.iteration, task.attempt,
                                       (dumps(item) for item in state["items"]), done)
        for index, child in state["open"]:
            loops.item_started_txn(conn, task.run_id, task.node_id, task.message.iteration, task.attempt,
                                   index, child)
        kept = {k: v for k, v in state.items() if k not in ("items", "outputs")}
        return dict(kept, count=count, attempt=task.attempt)

    def _body(self, conn, task: Task, now: float) -> tuple[list, Plan]:
        """[workflow_id, version] of the loop's body and its plan; an inline body is registered
        as '<workflow>.<node>' (same content, same version)."""
        body = task.node.config["body"]
        if "workflowId" in body:
            version = body.get("version") or workflows.get_workflow(conn, body["workflowId"])["version"]
            return [body["workflowId"], int(version)], self.plans.get(body["workflowId"], int(version), conn)
        defn = body_workflow(task.node, task.plan.definition)
        checksum, text = storable(defn)
        version, _ = workflows.register_workflow_txn(conn, defn.workflow_id, checksum, text, None, None, iso(now))
        # Perhaps registered by this very transaction: read through it, kept once committed.
        return [defn.workflow_id, version], self.plans.get(defn.workflow_id, version, conn)

    def _too_deep(self, task: Task, chain: list[str]) -> str:
        """Why a run already nested max_nesting deep starts no child run: a Subflow or loop body
        that (directly or not) starts its own workflow would otherwise nest runs without end.
        `chain` holds the workflow ids of the run and its ancestors, nearest first; one more
        than the limit allows when the runs go deeper still (a limit lowered since they began)."""
        deeper = len(chain) > self.max_nesting + 1
        depth = f"more than {self.max_nesting}" if deeper else str(len(chain) - 1)
        names = chain[::-1]
        if len(names) > 2 * CHAIN_ENDS + 1:
            names = [*names[:CHAIN_ENDS], f"... ({len(names) - 2 * CHAIN_ENDS} more)", *names[-CHAIN_ENDS:]]
        if deeper:
            names[0] = "..."
        config = task.node.config
        target = config.get("workflowId") or (config.get("body") or {}).get("workflowId") or (
            f"{task.plan.workflow_id}.{task.node_id}")
        return (f"runs are nested {depth} deep here (limit {self.max_nesting}): "
                f"{' -> '.join(names)}; refused to start a run of '{target}' "
                f"(does a workflow start itself?)")

    def _start_body(self, conn, task: Task, plan: Plan, inputs: dict, priority: int, now: float) -> str:
        child = self.new_run_id()
        self.runs.start_run(conn, plan, child, inputs, now, priority=priority,
                            parent_run_id=task.run_id, parent_node_id=task.node_id)
        return child

    def _cancel_children(self, conn, children: list[str], now: float) -> None:
        for child in children:
            status = runs.run_state(conn, child).status
            if status not in TERMINAL_RUN_STATUSES:
                self.runs.stop_run(conn, child, "cancel", status, now)

    def _child_node_failed(self, conn, task: Task, why: str, error_type: str, now: float) -> None:
        """A Subflow, ForEach or While attempt failed (its child run failed, or it timed out).
        Its retry policy applies as to any node: a retry starts over with new child runs."""
        # The next attempt must not look at this attempt's children, nor keep its deadline.
        self.attempts.fail(conn, task, Outcome(False, error=f"node '{task.node_id}': {why}",
                                               error_type=error_type), now,
                           forget=("childRunId", "loop", "deadline"))


def _item_result(_index: int, status: str, outputs: str | None, error: str | None,
                 error_type: str | None, child: str | None) -> object:
    """A ForEach item's place in the node's output: its body run's outputs, or (a body run that
    failed or was cancelled, under continueOnError) what went wrong."""
    if status == "completed":
        return json.loads(outputs or "null")
    kind = error_type or ("Cancelled" if status == "cancelled" else "BodyFailed")
    why = f": {error}" if error else ""
    return {"error": {"type": kind, "message": f"body run {child} {status}{why}"}}


def _recheck(now: float, deadline: float | None) -> float:
    """When a node waiting on child runs looks again by itself: at its deadline, if it has one
    sooner than the daily re-look (a child's end wakes it at once anyway)."""
    later = now + SIGNAL_RECHECK
    return later if deadline is None else min(later, deadline)
