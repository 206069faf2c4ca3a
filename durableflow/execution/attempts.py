"""A node attempt's lifecycle inside the engine's transactions: claimed (started), then
completed, failed (with the one retry decision: a retry is the same message visible later),
parked (a timer, a signal, child runs), given back unstarted, or lost with its worker.
"""

from __future__ import annotations

import functools
import json
import secrets
from typing import Callable

from durableflow import retry as retry_policy
from durableflow.clock import iso
from durableflow.errors import DefinitionError, ExpressionError
from durableflow.plan import Plan, Plans
from durableflow.records import Claimed, Reclaimed, RunState
from durableflow.storage import handoff, limits as limit_rows, nodes, queue, runs, signals
from durableflow.storage.events import dumps, loads, loads_at
from durableflow.execution.limits import FAIL, FALLBACK, WAIT, Admission, Batch, LimitGate
from durableflow.execution.routing import Routing
from durableflow.execution.runs import RunLifecycle
from durableflow.execution.variables import event_delta, merge_variables, vars_delta
from durableflow.tasks import ACTIVE, SIGNAL_RECHECK, EnqueueAs, Outcome, Task


# A node whose fallback runs waits for it; its own message is parked this long, i.e. for good:
# the fallback's end takes it away.
FALLBACK_PARK = 10 * 365 * 86400.0


_INPUT = '{"input":'


def _read_payload(text: str | None) -> tuple[dict, str | None]:
    """A node message's payload, and its input's JSON text (Routing.enqueue_node writes the input
    first): a node that passes its input on (Noop) need not encode it again."""
    if not text:
        return {}, None
    if text.startswith(_INPUT):
        try:
            value, end = loads_at(text, len(_INPUT))
        except ValueError:   # not as the engine writes it (spaced, say): read it the long way
            return loads(text), None
        rest = text[end:]
        payload = {} if rest == "}" else loads("{" + rest[1:]) if rest.startswith(",") else None
        if payload is not None and "input" not in payload:
            payload["input"] = value
            return payload, text[len(_INPUT):end]
    return loads(text), None


def _variables(state: RunState) -> dict:
    """The run's variables as a node gets them."""
    return {} if state.variables in (None, "{}") else loads(state.variables)


def _start_written(conn, task: Task) -> None:
    """The start put off (Task.deferred_start) is written now (until ROLLBACK TO undoes it)."""
    started, task.deferred_start = task.deferred_start, None
    if started is not None:
        conn.on_rollback(functools.partial(setattr, task, "deferred_start", started))


def _written(conn, task: Task, message: Claimed, instance_id: int) -> None:
    """A node taken from this transaction's offers has its rows now (until ROLLBACK TO undoes it)."""
    before = task.message, task.instance_id, task.offer, task.deferred_start
    task.message, task.instance_id, task.offer, task.deferred_start = message, instance_id, None, None

    def undo():
        task.message, task.instance_id, task.offer, task.deferred_start = before
    conn.on_rollback(undo)


def _compensation(c: Claimed) -> bool:
    """Whether a claimed message runs a compensation (the only work of a compensating run)."""
    return bool(c.payload) and '"compensates"' in c.payload


class AttemptLifecycle:
    def __init__(self, routing: Routing, runs_: RunLifecycle, plans: Plans):
        self.routing = routing
        self.runs = runs_
        self.plans = plans
        self.gate = LimitGate()

    # --- claiming --------------------------------------------------------------------------

    def claim(self, conn, worker_id: str, limit: int, lease_seconds: float, now: float,
              free: tuple[float, float] | Callable[[], tuple[float, float]] | None = None,
              inline: Callable[[Plan, str], bool] | None = None) -> list[Task]:
        """Lease up to `limit` ready messages and start their nodes. `free`: the cpu and memory
        (MB) the worker has free, for nodes with `resources`. `inline(plan, node_id)`: whether the
        caller runs and records that node in this same transaction; if so (and no limit applies
        to it), its row is written once, when it finishes (Task.deferred_start)."""
        if conn.handoff is not None and conn.handoff.offers:
            taken = queue.take_offers_txn(conn, limit, iso(now))
            if taken:
                return self._take_offers(conn, taken, worker_id, lease_seconds, now)
        claimed = queue.claim_txn(conn, worker_id, limit, lease_seconds, now)
        if not claimed:
            return []
        now_s = iso(now)
        read = None
        if len(claimed) > 1:   # a batch: its runs and attempts read in one statement each
            runs.read_run_states(conn, dict.fromkeys(c.run_id for c in claimed))
            if inline is not None:
                read = nodes.rows_to_start(conn, [c.id for c in claimed])
        tasks: list[Task] = []
        states: dict[str, RunState] = {}
        started: dict[str, int] = {}
        batch: Batch | None = None
        for c in claimed:
            state = states.get(c.run_id)
            if state is None:
                state = states[c.run_id] = runs.run_state(conn, c.run_id)
            if state.status != "running" and not (state.status == "compensating" and _compensation(c)):
                self._drop_claimed(conn, c, state.status, now)
                continue
            try:
                plan = self.plans.get(state.workflow_id, state.version, conn)
            except DefinitionError as exc:
                # One unloadable stored definition must not stall the queue for every run.
                queue.ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
                self.runs.stop_run(conn, c.run_id, "fail", state.status, now, error=str(exc))
                states[c.run_id] = state._replace(status="failed")
                continue
            limit_run = plan.definition.max_concurrency
            if limit_run:
                running = nodes.running_count(conn, c.run_id) if c.run_id not in started else started[c.run_id]
                if running >= limit_run:
                    self._throttle(conn, c, limit_run, now_s)
                    continue
                started[c.run_id] = running + 1
            admission = None
            limits = plan.limits.get(c.target_node_id)
            if limits:
                if batch is None:
                    # Asked now, inside the transaction: a body that ended since the worker
                    # last looked has given its resources back.
                    batch = Batch(free() if callable(free) else free)
                try:
                    admission = self.gate.admit(conn, c, plan, limits, json.loads(c.payload) if c.payload else {},
                                                now, batch)
                except ExpressionError as exc:
                    admission = Admission(FAIL, error=f"node '{c.target_node_id}': {exc}", error_type="ExpressionError")
                if admission.verdict == WAIT:
                    continue
                if admission.payload is not None:
                    c = c._replace(payload=admission.payload)
            slot = admission.limit_key if admission is not None else None
            deferred = got = None
            if inline is not None and admission is None and not limit_run and inline(plan, c.target_node_id):
                row = nodes.defer_start_txn(conn, c.id, c.run_id, c.target_node_id, now_s, read)
                if row is not None:
                    got, deferred = row[:2], (row[2], now_s, worker_id)
            if got is None:
                got = nodes.start_node_txn(conn, c.id, c.run_id, c.target_node_id, worker_id, now_s, slot)
            if got is None:
                # No pending row (an imported run, or a requeued dead letter): make one, start it.
                attempt = nodes.last_attempt(conn, c.run_id, c.target_node_id, c.iteration) + 1
                nodes.insert_node_txn(conn, c.run_id, c.target_node_id, c.iteration, attempt, "pending",
                                      c.id, None, now_s)
                got = nodes.start_node_txn(conn, c.id, c.run_id, c.target_node_id, worker_id, now_s, slot)
            instance_id, attempt = got
            payload, input_json = _read_payload(c.payload)
            task = Task(c, plan, instance_id, attempt, payload.get("input"), payload.get("inputs") or {},
                        _variables(state),
                        state.retries_used, payload=payload, scheduled_at=state.scheduled_at,
                        deferred_start=deferred, input_json=input_json)
            if deferred is not None:
                conn.put_off(functools.partial(self.start_deferred, conn, task))
            if admission is not None:
                if admission.verdict == FAIL:    # fast: the body does not run, nor retries
                    self.fail(conn, task, Outcome(False, error=admission.error, error_type=admission.error_type),
                              now, may_retry=False)
                    continue
                if admission.verdict == FALLBACK:
                    self._to_fallback(conn, task, admission.error, now)
                    continue
                self.gate.started(conn, c, instance_id, admission)
                task.limit_key, task.breaker_key = admission.limit_key, admission.breaker_key
                task.breaker_closed = admission.breaker_closed
            tasks.append(task)
        return tasks

    def _take_offers(self, conn, offers: list[handoff.Offer], worker_id: str, lease_seconds: float,
                     now: float) -> list[Task]:
        """Claim nodes queued in this transaction (storage.handoff): their rows are written once,
        when they finish. The caller runs them all here: no limit applies to them."""
        now_s = iso(now)
        token = secrets.token_hex(8)
        expires = now + lease_seconds
        tasks = []
        for o in offers:
            state = runs.run_state(conn, o.run_id)   # running: a run that stops writes its offers first
            if o.one is None:
                payload = loads(o.payload)
                value, inputs = payload.get("input"), payload.get("inputs") or {}
            else:
                value, key = o.one
                inputs = {key: value}
                payload = {"input": value, "inputs": inputs}
            task = Task(Claimed(None, o.run_id, "node", o.node_id, o.iteration, o.payload, o.priority, 0,
                                o.max_attempts, token, worker_id, expires),
                        o.plan, None, 1, value, inputs,
                        _variables(state),
                        state.retries_used, payload=payload, scheduled_at=state.scheduled_at,
                        deferred_start=("pending", now_s, worker_id), offer=o, input_json=o.input_json)
            conn.put_off(functools.partial(self.start_deferred, conn, task))
            tasks.append(task)
        return tasks

    @staticmethod
    def start_deferred(conn, task: Task) -> None:
        """Write the start of a node claimed to finish at once that does not (see claim)."""
        if task.offer is not None:
            c = task.message
            mid, iid = handoff.write_taken_txn(conn, task.offer, c.worker_id, c.token, iso(c.expires_at),
                                               task.deferred_start[1])
            _written(conn, task, c._replace(id=mid), iid)
            return
        if task.deferred_start is not None:
            nodes.start_deferred_txn(conn, task.instance_id, task.node_id, task.deferred_start)
            _start_written(conn, task)

    def _drop_claimed(self, conn, c: Claimed, run_status: str, now: float) -> None:
        """A message of a run that is no longer running: consume it, cancel its pending node."""
        queue.ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
        row = nodes.open_node_of_message(conn, c.id)
        if row is not None:
            nodes.finish_node_txn(conn, row[0], c.run_id, c.target_node_id, "cancel", row[1], iso(now),
                                  data={"reason": f"run is {run_status}"})

    def _throttle(self, conn, c: Claimed, limit_run: int, now_s: str) -> None:
        queue.throttle_message_txn(conn, c.id, c.token, c.run_id, c.target_node_id, now_s)
        row = nodes.open_node_of_message(conn, c.id)
        if row is not None and row[1] == "pending":
            nodes.wait_node_txn(conn, row[0], c.run_id, c.target_node_id, "pending",
                                f"run maxConcurrency {limit_run} reached", now_s)

    # --- results ---------------------------------------------------------------------------

    def complete(self, conn, task: Task, outcome: Outcome, now: float) -> None:
        """Record a successful attempt and route its Complete message, guarded by the lease token."""
        c = task.message
        now_s = iso(now)
        delta = vars_delta(task.variables, outcome.variables)
        # The change to the variables goes in the node's event too: `rerun --from` replays those
        # of the nodes it keeps, to start from the variables as they stood then.
        shown = event_delta(delta)
        data = {"vars": shown} if shown else None
        if task.offer is not None:   # queued in this transaction: its rows are written now, once
            mid, iid = handoff.write_done_txn(
                conn, task.offer, c.worker_id, task.deferred_start[1], now_s, outcome.output_json, outcome.port,
                lambda iid: nodes.finish_event_text(iid, "running", None, None, outcome.port, data))
            _written(conn, task, c._replace(id=mid), iid)
        else:
            queue.ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
            if task.limit_key is not None or task.breaker_key is not None:
                self.gate.leave(conn, task)
                self.gate.call(conn, task, True, now)
            nodes.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "complete", "running",
                                  now_s, output=outcome.output_json, port=outcome.port, data=data,
                                  started=task.deferred_start)
            # Written: a run stopped later in this transaction must not start it.
            _start_written(conn, task)
        state = runs.run_state(conn, c.run_id)
        status = state.status
        variables = merge_variables(conn, task.run_id, delta, state.variables)
        if task.plan.definition.max_concurrency:
            queue.release_throttled_txn(conn, c.run_id)
        if status not in ACTIVE:
            if status == "compensating":   # a compensation ended, or a node told to stop did not
                self.runs.compensation.advance(conn, c.run_id, now)
            return
        try:
            deliveries = self.routing.deliveries(task.plan, c.target_node_id, "Complete", outcome.port,
                                                 {"output": outcome.output, "inputs": task.inputs,
                                                  "vars": variables})
        except ExpressionError as exc:
            self.runs.fail_run(conn, c.run_id, status, f"node '{c.target_node_id}': {exc}", now)
            return
        more = self.routing.route(conn, task.plan, c.run_id, c.target_node_id, c.iteration, deliveries,
                                  outcome.output, EnqueueAs.of(state), now, outcome.output_json)
        if "fallbackFor" in task.payload:
            more = self._fallback_done(conn, task, outcome, None, state, now) or more
        if not more:
            # Had a node been queued, or a join been left waiting, the run would not be done.
            self.runs.settle(conn, task.plan, c.run_id, status, now)

    def retry_decision(self, task: Task, outcome: Outcome, state: RunState) -> retry_policy.Decision:
        """The one place a failed attempt is judged: its node's retry policy, the failure, and
        what is left of the run's retryBudget (read in this transaction: parallel failures share it)."""
        budget = task.plan.definition.retry_budget
        return retry_policy.decide(
            task.node.retry, task.attempt, error_type=outcome.error_type,
            error_types=outcome.error_types, exit_code=outcome.exit_code,
            budget_left=None if budget is None else budget - state.retries_used)

    def fail(self, conn, task: Task, outcome: Outcome, now: float, *, may_retry: bool = True,
             forget: tuple[str, ...] = ()) -> bool:
        """Record a failed attempt: store a retry (its message visible later) or route Fail.
        Returns whether a retry was stored. `forget`: keys of the message's payload that belong
        to this attempt (a deadline, its child runs), dropped when a retry is stored."""
        c = task.message
        now_s = iso(now)
        error = outcome.error or "node failed"
        if task.plan.definition.max_concurrency:
            queue.release_throttled_txn(conn, c.run_id)   # a node in backoff holds no slot
        if task.limit_key is not None or task.breaker_key is not None:
            self.gate.leave(conn, task)
            if not outcome.cancelled:
                self.gate.call(conn, task, False, now)
        state = runs.run_state(conn, c.run_id)
        status = state.status
        # A compensation goes on (and is retried) while its run compensates.
        live = status in ACTIVE or (status == "compensating" and "compensates" in task.payload)
        decision = self.retry_decision(task, outcome, state) if may_retry else None
        data = {"attempt": task.attempt, "decision": decision.reason} if decision else None
        if outcome.cancelled:
            if live:
                # The run goes on: the worker let go of the node (shutting down); deliver again.
                self._redeliver(conn, task, "cancel", error, outcome.error_type, 0.0, now, data)
                return True
            queue.ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
            nodes.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "cancel", "running",
                                  now_s, error=error, error_type=outcome.error_type, data=data)
            if status == "compensating":
                self.runs.compensation.advance(conn, c.run_id, now)
            return False
        if decision is not None and decision.retry and live:
            self._redeliver(conn, task, "fail", error, outcome.error_type, decision.delay, now, data)
            runs.count_retry_txn(conn, c.run_id)
            if forget:
                fresh = {k: v for k, v in task.payload.items() if k not in forget}
                queue.set_message_payload_txn(conn, c.id, dumps(fresh))
            return True
        queue.ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
        nodes.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "fail", "running",
                              now_s, error=error, error_type=outcome.error_type, data=data)
        if status == "compensating":   # recorded; the next compensation runs all the same
            self.runs.compensation.advance(conn, c.run_id, now)
        elif status in ACTIVE:
            if "fallbackFor" in task.payload:   # the node it stood in for fails instead
                self._fallback_done(conn, task, outcome, error, state, now)
            else:
                self.node_failed(conn, task.plan, c.run_id, c.target_node_id, c.iteration, error,
                                 outcome.error_type, task.attempt, state, task.inputs, now)
        return False

    def _redeliver(self, conn, task: Task, trigger: str, error: str, error_type: str | None,
                   delay: float, now: float, data: dict | None) -> None:
        """End this attempt and give its message back, visible after `delay`: the next attempt."""
        c = task.message
        now_s = iso(now)
        queue.nack_txn(conn, c.id, c.token, now, delay=delay, error=error,
                       run_id=c.run_id, node_id=c.target_node_id)
        nodes.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, trigger, "running",
                              now_s, error=error, error_type=error_type, data=data)
        again = nodes.insert_node_txn(conn, c.run_id, c.target_node_id, c.iteration, task.attempt + 1,
                                      "pending", c.id, dumps(task.input), now_s,
                                      data={"retryAt": iso(now + delay)} if delay else None)
        if "compensates" in task.payload:
            nodes.mark_compensation_txn(conn, again, task.payload["compensates"])

    def node_failed(self, conn, plan: Plan, run_id: str, node_id: str, iteration: int, error: str,
                    error_type: str | None, attempt: int, state: RunState, inputs: dict,
                    now: float) -> None:
        """A node is finally failed: route its Fail message, or fail the run if nothing handles it."""
        value = {"error": error, "errorType": error_type, "nodeId": node_id, "attempt": attempt}
        status = state.status
        try:
            deliveries = self.routing.deliveries(plan, node_id, "Fail", None, {
                "output": value, "inputs": inputs, "vars": json.loads(state.variables or "{}")})
        except ExpressionError as exc:
            deliveries, error = [], f"{error}; and {exc}"
        if not any(ok for _e, ok in deliveries):
            # Runtime errors already start "node 'x': ..."; say the node's name once.
            own = f"node '{node_id}': "
            why = error[len(own):] if error and error.startswith(own) else error
            self.runs.fail_run(conn, run_id, status, f"node '{node_id}' failed: {why}", now,
                               failure={"nodeId": node_id, "errorType": error_type, "message": why})
            return
        self.routing.route(conn, plan, run_id, node_id, iteration, deliveries, value, EnqueueAs.of(state), now)
        self.runs.settle(conn, plan, run_id, status, now)

    def give_up_waiting(self, conn, now: float) -> int:
        """Nodes that waited for a concurrency slot longer than their maxWait fail, with why."""
        now_s = iso(now)
        gave_up = 0
        for message_id, key, since in limit_rows.waiters_given_up(conn, now_s):
            limit_rows.drop_waiter_txn(conn, message_id)
            found = queue.discard_message_txn(conn, message_id, now_s)
            row = nodes.open_node_of_message(conn, message_id)
            if found is None or row is None:
                continue
            run_id, node_id = found
            instance_id, node_status, attempt, _nid, iteration, _key, _comp = row
            why = (f"node '{node_id}' waited longer than its maxWait for a slot of concurrencyKey "
                   f"{key!r} (since {since})")
            nodes.finish_node_txn(conn, instance_id, run_id, node_id, "fail", node_status, now_s,
                                  error=why, error_type="LimitTimeout")
            state = runs.run_state(conn, run_id)
            if state.status in ACTIVE:
                plan = self.plans.get(state.workflow_id, state.version, conn)
                self.node_failed(conn, plan, run_id, node_id, iteration, why, "LimitTimeout", attempt,
                                 state, {}, now)
            gave_up += 1
        return gave_up

    # --- fallbacks ---------------------------------------------------------------------------

    def _to_fallback(self, conn, task: Task, why: str, now: float) -> None:
        """The node's circuit is open: its fallback node runs instead, on the same input, and its
        outcome stands for the node's. The node waits for it (its message parked until then)."""
        c = task.message
        fallback = task.node.fallback_node_id
        state = runs.run_state(conn, c.run_id)
        queue.nack_txn(conn, c.id, c.token, now, delay=FALLBACK_PARK, run_id=c.run_id, node_id=c.target_node_id)
        nodes.wait_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "running",
                            f"{why}; its fallback {fallback!r} runs instead", iso(now))
        self.routing.enqueue_node(conn, task.plan, c.run_id, fallback, c.iteration, dumps(task.input),
                                  dumps(task.inputs), EnqueueAs.of(state), now,
                                  extra={"fallbackFor": [c.target_node_id, task.instance_id, c.id]})

    def _fallback_done(self, conn, fallback: Task, outcome: Outcome, error: str | None,
                       state: RunState, now: float) -> bool:
        """A fallback ended (completed, or failed for good): the node it stood in for ends so
        too, and routes as if it had. Returns whether the run has more to come (Routing.route)."""
        node_id, instance_id, message_id = fallback.payload["fallbackFor"]
        run_id, plan, now_s = fallback.run_id, fallback.plan, iso(now)
        queue.discard_message_txn(conn, message_id, now_s)
        if error is None:
            nodes.finish_node_txn(conn, instance_id, run_id, node_id, "complete", "waiting", now_s,
                                  output=outcome.output_json, port=outcome.port,
                                  data={"fallback": fallback.node_id})
            deliveries = self.routing.deliveries(plan, node_id, "Complete", outcome.port, {
                "output": outcome.output, "inputs": fallback.inputs,
                "vars": json.loads(state.variables or "{}")})
            return self.routing.route(conn, plan, run_id, node_id, fallback.message.iteration, deliveries,
                                      outcome.output, EnqueueAs.of(state), now, outcome.output_json)
        why = f"its fallback {fallback.node_id!r} failed: {error}"
        nodes.finish_node_txn(conn, instance_id, run_id, node_id, "fail", "waiting", now_s,
                              error=why, error_type=outcome.error_type)
        self.node_failed(conn, plan, run_id, node_id, fallback.message.iteration, why, outcome.error_type,
                         1, state, fallback.inputs, now)
        return False

    # --- waiting ---------------------------------------------------------------------------

    def park(self, conn, task: Task, until: float, now: float, *, reason: str | None = None,
             keep: dict | None = None) -> None:
        """A timer: the node waits, its message visible again at `until` with the moment kept
        in its payload. No thread sleeps; a restart or a pause does not move it."""
        c = task.message
        if task.limit_key is not None:
            self.gate.leave(conn, task)   # a waiting node holds no slot of its concurrency key
        payload = dict(task.payload, **(keep or {"wakeAt": until}))
        queue.nack_txn(conn, c.id, c.token, now, delay=max(0.0, until - now),
                       run_id=c.run_id, node_id=c.target_node_id)
        queue.set_message_payload_txn(conn, c.id, dumps(payload))
        nodes.wait_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "running",
                            reason or f"timer until {iso(until)}", iso(now))
        if task.plan.definition.max_concurrency:
            queue.release_throttled_txn(conn, c.run_id)   # a waiting node holds no slot

    def await_signal(self, conn, task: Task, name: str, deadline: float | None, now: float) -> None:
        """Take a signal sent to the run (before or after the node began to wait) and complete
        with its payload; or fail once the deadline has passed; or wait for either."""
        got = signals.take_signal_txn(conn, task.run_id, name, task.instance_id)
        if got is not None:
            value = json.loads(got)
            self.complete(conn, task, Outcome(True, value, dumps(value)), now)
        elif deadline is not None and now >= deadline:
            # Retried like any failure; the next attempt waits its own timeout from its start.
            self.fail(conn, task, Outcome(False, error=f"node '{task.node_id}': no signal {name!r} "
                                          f"came before {iso(deadline)}", error_type="SignalTimeout"),
                      now, forget=("deadline",))
        else:
            # engine.signal() makes the message visible at once; the deadline is the fallback.
            until = deadline if deadline is not None else now + SIGNAL_RECHECK
            self.park(conn, task, until, now, keep={"deadline": deadline},
                      reason=f"signal {name!r}" + (f" until {iso(deadline)}" if deadline else ""))

    def run_has_ended(self, conn, task: Task, now: float) -> bool:
        """A node that would go on waiting (timer, signal, child run, loop) in a run that ended
        meanwhile, e.g. failed by another node recorded in this same batch: cancel it instead."""
        status = runs.run_state(conn, task.run_id).status
        if status in ACTIVE or (status == "compensating" and "compensates" in task.payload):
            return False
        c = task.message
        queue.ack_txn(conn, c.id, c.token, now, c.run_id, c.target_node_id)
        nodes.finish_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, "cancel", "running",
                              iso(now), data={"reason": f"run {status}"})
        self.gate.leave(conn, task)
        if status == "compensating":
            self.runs.compensation.advance(conn, c.run_id, now)
        return True

    # --- giving back and losing ------------------------------------------------------------

    def give_back(self, conn, task: Task, why: str, now: float) -> None:
        """The worker gives back a claimed node whose body it never started: deliverable again
        at once, as the same attempt."""
        c = task.message
        queue.nack_txn(conn, c.id, c.token, now, error=why, run_id=c.run_id, node_id=c.target_node_id)
        nodes.release_node_txn(conn, task.instance_id, c.run_id, c.target_node_id, iso(now))
        self.gate.leave(conn, task)

    def after_reclaim(self, conn, lost: list[Reclaimed], now: float) -> None:
        """Deliveries whose worker died or overran: fail that attempt, and retry or fail the node."""
        now_s = iso(now)
        for r in lost:
            if r.run_id is None:
                continue
            row = nodes.open_node_of_message(conn, r.message_id)
            why = f"worker {r.worker_id} lost the lease (process died or overran)"
            attempt, compensates = 1, None
            if row is not None:
                instance_id, node_status, attempt, _nid, _it, limit_key, compensates = row
                nodes.finish_node_txn(conn, instance_id, r.run_id, r.target_node_id, "fail", node_status,
                                      now_s, error=why, error_type="WorkerLost")
                if limit_key is not None:
                    limit_rows.free_slots_txn(conn, limit_key, instance_id)
            state = runs.run_state(conn, r.run_id)
            queue.release_throttled_txn(conn, r.run_id)  # the lost attempt held a maxConcurrency slot
            if state.status == "compensating":
                if compensates is not None and not r.dead:   # the compensation is delivered again
                    again = nodes.insert_node_txn(conn, r.run_id, r.target_node_id, r.iteration, attempt + 1,
                                                  "pending", r.message_id, None, now_s, data={"redelivery": True})
                    nodes.mark_compensation_txn(conn, again, compensates)
                    continue
                if not r.dead:
                    queue.discard_message_txn(conn, r.message_id, now_s)
                self.runs.compensation.advance(conn, r.run_id, now)
                continue
            if state.status not in ACTIVE:
                if not r.dead:
                    queue.discard_run_messages_txn(conn, r.run_id, now_s)
                continue
            if not r.dead:
                nodes.insert_node_txn(conn, r.run_id, r.target_node_id, r.iteration, attempt + 1,
                                      "pending", r.message_id, None, now_s, data={"redelivery": True})
                continue
            plan = self.plans.get(state.workflow_id, state.version, conn)
            self.node_failed(conn, plan, r.run_id, r.target_node_id, r.iteration,
                             f"{why}; dead-lettered after {r.deliveries} lost "
                             f"deliver{'y' if r.deliveries == 1 else 'ies'}",
                             "DeadLettered", attempt, state, {}, now)
