"""What a claim checks before a node starts, in the claiming transaction, and what an attempt's
end gives back: concurrency keys shared by every run and worker, rate-limit tokens, the
resources a worker has free, circuit breakers. All of it lives in rows (storage/limits.py), so
every process sharing the file honours it and a restart forgets nothing.

A node that cannot start now waits visibly (`waiting_reason`), without a worker sleeping: for a
concurrency slot its message is held until a slot frees (oldest waiter first); for a token it is
parked until the token comes; for resources it is parked a second, for a worker with room.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from durableflow.clock import iso, parse_iso
from durableflow.errors import ExpressionError, ValidationError
from durableflow.expressions import IN_TRANSACTION_CPU_BUDGET, compile_expression, template_expression
from durableflow.limits import Limits, limits_of
from durableflow.model import WorkflowDef
from durableflow.plan import Plan
from durableflow.records import Claimed
from durableflow.storage import limits as rows, nodes, queue, workers
from durableflow.storage.events import dumps
from durableflow.tasks import Task

RESOURCE_RETRY = 1.0      # seconds before a node that did not fit this worker is offered again
FORGET_EVERY = 64         # successes through a closed breaker between two trims of its calls
GO, WAIT, FAIL, FALLBACK = "go", "wait", "fail", "fallback"
_WAIT_KEYS = ("limitSince", "tokenAt")


class Admission(NamedTuple):
    verdict: str                       # go, wait (parked or held), fail (fast), fallback
    limit_key: str | None = None       # the concurrency key whose slot it takes
    breaker_key: str | None = None     # its calls count for this breaker
    error: str | None = None           # why it fails fast
    error_type: str | None = None
    payload: str | None = None         # the message's payload without what the wait stored
    breaker_closed: bool = False       # its breaker was closed when it was let through


class Batch:
    """What the claims of one transaction took so far: slots per key, and resources."""

    def __init__(self, free: tuple[float, float] | None):
        self.slots: dict[str, int] = {}
        self.free = list(free) if free is not None else None
        self.fits: dict[tuple[float, float], bool] = {}   # does some live worker have room for it


class LimitGate:
    _successes = 0
    def admit(self, conn, c: Claimed, plan: Plan, limits: Limits, payload: dict, now: float,
              batch: Batch) -> Admission:
        node_id = c.target_node_id
        now_s = iso(now)
        if limits.resources is not None and batch.free is not None:
            need = limits.resources
            cpu, memory = need.cpu or 0.0, need.memory_mb or 0
            fits = batch.fits.get((cpu, memory))
            if fits is None:
                fits = batch.fits[cpu, memory] = workers.live_one_fits(conn, cpu, memory)
            if not fits:
                most = workers.largest_live(conn) or (0.0, 0)
                return Admission(FAIL, error=(
                    f"node '{node_id}' needs {_resources(cpu, memory)}, more than any live worker offers "
                    f"(the most: cpu {most[0]:g}, memory {most[1]:g} MB); give a worker more "
                    f"(worker --cpu N --memory SIZE)"),
                    error_type="ResourcesUnavailable")
            if cpu > batch.free[0] or memory > batch.free[1]:
                since = payload.get("limitSince", now)
                if limits.max_wait is not None and now - since > limits.max_wait:
                    return Admission(FAIL, error=(
                        f"node '{node_id}' waited longer than maxWait {limits.max_wait:g}s for a worker "
                        f"with {_resources(cpu, memory)} free"), error_type="LimitTimeout")
                self._park(conn, c, now, now + RESOURCE_RETRY,
                           f"needs {_resources(cpu, memory)}; this worker has cpu {batch.free[0]:g} and "
                           f"{batch.free[1]:g} MB free", keep={"limitSince": since})
                return Admission(WAIT)
        breaker_key, breaker_closed = None, False
        if limits.breaker is not None:
            breaker_key = limits.breaker.key
            state = rows.breaker(conn, breaker_key)
            if state is None:
                self.declare_breaker(conn, limits.breaker, f"{plan.workflow_id}:{node_id}", now_s)
                state = rows.breaker(conn, breaker_key)
            breaker_closed = state["status"] == "closed"
            verdict = self._breaker_admits(conn, state, now)
            if verdict is not None:
                fallback = plan.nodes[node_id].fallback_node_id
                return Admission(FALLBACK if fallback else FAIL, error=verdict, error_type="CircuitOpen")
        limit_key = None
        if limits.concurrency is not None:
            key = self._key(limits.concurrency.key, payload)
            most = limits.concurrency.max_running
            taken = batch.slots.get(key)
            if taken is None:
                taken = rows.running_with_key(conn, key)
            if taken >= most:
                give_up = None
                if limits.max_wait is not None:
                    since = rows.waiter(conn, c.id)
                    give_up = since[1] if since else iso(now + limits.max_wait)
                queue.wait_for_limit_txn(conn, c.id, c.token, c.run_id, node_id, key, now_s)
                rows.add_waiter_txn(conn, c.id, key, most, now_s, give_up)
                self._waiting(conn, c, f"concurrencyKey {key!r}: {most} of {most} running", now_s)
                return Admission(WAIT)
            batch.slots[key] = taken + 1
            limit_key = key
        if limits.rate is not None and "tokenAt" not in payload:
            rate = limits.rate
            bucket = rows.bucket(conn, rate.key)
            if bucket is None:
                tokens, at = rate.burst, now
                rows.put_bucket_txn(conn, rate.key, tokens, rate.rate, rate.per, rate.burst,
                                    f"{plan.workflow_id}:{node_id}", now, now_s)
            else:
                tokens, at = bucket[0], bucket[4]
            # Counted from the later of now and the last count: a clock read that lost a race
            # for the write lock never earns tokens twice. Tokens below zero are promised to
            # parked nodes, each at its own time, in order.
            at = max(at, now)
            tokens = min(rate.burst, tokens + (at - bucket[4] if bucket else 0.0) * rate.rate / rate.per)
            if tokens < 1.0 - 1e-9:
                if limit_key is not None:
                    batch.slots[limit_key] -= 1
                    limit_key = None
                since = payload.get("limitSince", now)
                # The moment the token taken now is earned; a millisecond later, so the stored
                # visible time (to the millisecond) is never before it.
                when = at + (1.0 - tokens) * rate.per / rate.rate + 0.001
                if limits.max_wait is not None and when - since > limits.max_wait:
                    return Admission(FAIL, error=(
                        f"node '{node_id}' would wait longer than maxWait {limits.max_wait:g}s for a "
                        f"token of rateLimit {rate.key!r} (next at {iso(when)})"), error_type="LimitTimeout")
                rows.take_tokens_txn(conn, rate.key, tokens - 1.0, at, now_s)
                self._park(conn, c, now, when, f"rateLimit {rate.key!r}: its token comes at {iso(when)}",
                           keep={"limitSince": since, "tokenAt": when})
                return Admission(WAIT)
            rows.take_tokens_txn(conn, rate.key, tokens - 1.0, at, now_s)
        if limits.resources is not None and batch.free is not None:
            batch.free[0] -= limits.resources.cpu or 0.0
            batch.free[1] -= limits.resources.memory_mb or 0
        cleaned = None
        if "limitSince" in payload or "tokenAt" in payload:
            # What this wait took belongs to this attempt: a retry waits (and pays) afresh.
            cleaned = dumps({k: v for k, v in payload.items() if k not in _WAIT_KEYS})
            queue.set_message_payload_txn(conn, c.id, cleaned)
        return Admission(GO, limit_key, breaker_key, payload=cleaned,
                         breaker_closed=breaker_closed)

    def started(self, conn, c: Claimed, instance_id: int, admission: Admission) -> None:
        """The node holds its slot (node_start wrote limit_key): it waits for it no more."""
        if admission.limit_key is not None:
            rows.drop_waiter_txn(conn, c.id)

    def leave(self, conn, task: Task) -> None:
        """The attempt stopped running (ended, parked, given back, lost): its slot frees."""
        if task.limit_key is not None:
            rows.free_slots_txn(conn, task.limit_key, task.instance_id)

    # --- circuit breakers --------------------------------------------------------------------

    @staticmethod
    def declare_breaker(conn, breaker, declared_by: str, now_s: str) -> None:
        rows.declare_breaker_txn(conn, breaker.key, {
            "failure_threshold": breaker.failure_threshold, "minimum_calls": breaker.minimum_calls,
            "window_s": breaker.window, "open_duration_s": breaker.open_duration,
            "half_open_successes": breaker.half_open_successes}, declared_by, now_s)

    def _breaker_admits(self, conn, state: dict, now: float) -> str | None:
        """None when a call may go through (closed, or a half-open trial); else why not."""
        key, status = state["key"], state["status"]
        if status == "closed":
            return None
        now_s = iso(now)
        if status == "open":
            probe_at = parse_iso(state["opened_at"]) + state["open_duration_s"]
            if now < probe_at:
                return (f"circuit breaker {key!r} is open (since {state['opened_at']}); it lets a "
                        f"trial call through at {iso(probe_at)}")
            rows.breaker_transition_txn(conn, key, "probe", "open", now_s, opened_at=state["opened_at"],
                                        trials=1, successes=0)
            return None
        if state["trials"] < state["half_open_successes"]:
            rows.breaker_counts_txn(conn, key, state["trials"] + 1, state["successes"], now_s)
            return None
        return f"circuit breaker {key!r} is half-open and its trial calls are out; it closes when they succeed"

    def call(self, conn, task: Task, ok: bool, now: float) -> None:
        """An attempt that ran its body ended (a timeout is a failed call; a fast-fail is none)."""
        key = task.breaker_key
        if key is None:
            return
        now_s = iso(now)
        if ok and task.breaker_closed:
            # A success let through a closed breaker changes no state: it is counted, and the
            # calls that left the window are dropped now and then, not at every call.
            rows.record_call_txn(conn, key, now_s, True)
            self._successes += 1
            if self._successes % FORGET_EVERY:
                return
        state = rows.breaker(conn, key)
        if state is None:
            return
        if not (ok and task.breaker_closed):
            rows.record_call_txn(conn, key, now_s, ok)
        window_start = iso(now - state["window_s"])
        rows.forget_calls_txn(conn, key, window_start)
        if state["status"] == "closed":
            if ok:
                return
            calls, failed = rows.calls_in_window(conn, key, window_start)
            if calls >= state["minimum_calls"] and failed / calls >= state["failure_threshold"]:
                rows.breaker_transition_txn(conn, key, "trip", "closed", now_s, opened_at=now_s, data={
                    "calls": calls, "failed": failed, "window": state["window_s"]})
        elif state["status"] == "half_open":
            if not ok:
                rows.breaker_transition_txn(conn, key, "trip", "half_open", now_s, opened_at=now_s,
                                            data={"trial": "failed"})
            elif state["successes"] + 1 >= state["half_open_successes"]:
                rows.breaker_transition_txn(conn, key, "reset", "half_open", now_s, opened_at=None)
                rows.forget_calls_txn(conn, key, now_s)    # a fresh start: old failures do not count
            else:
                rows.breaker_counts_txn(conn, key, state["trials"], state["successes"] + 1, now_s)

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _key(key: str, payload: dict) -> str:
        text = template_expression(key)
        if text is None:
            return key
        names = {"input": payload.get("input"), "inputs": payload.get("inputs") or {}}
        try:
            value = compile_expression(text).evaluate(names, IN_TRANSACTION_CPU_BUDGET)
        except ExpressionError as exc:
            raise ExpressionError(f"concurrencyKey {key!r}: {exc}") from exc
        return value if isinstance(value, str) else dumps(value)

    def _park(self, conn, c: Claimed, now: float, until: float, reason: str, keep: dict | None = None) -> None:
        """Give the claimed message back until `until`, as the same attempt (no attempt counted)."""
        queue.nack_txn(conn, c.id, c.token, now, delay=max(0.0, until - now), run_id=c.run_id,
                       node_id=c.target_node_id)
        if keep:
            payload = _loads(c.payload)
            payload.update(keep)
            queue.set_message_payload_txn(conn, c.id, dumps(payload))
        self._waiting(conn, c, reason, iso(now))

    @staticmethod
    def _waiting(conn, c: Claimed, reason: str, now_s: str) -> None:
        row = nodes.open_node_of_message(conn, c.id)
        if row is None:
            return
        if row[1] == "pending":
            nodes.wait_node_txn(conn, row[0], c.run_id, c.target_node_id, "pending", reason, now_s)
        elif row[1] == "waiting":
            nodes.set_waiting_reason_txn(conn, row[0], reason)


def declare_txn(conn, defn: WorkflowDef, now: float) -> None:
    """At register: the rate-limit and breaker keys the workflow's nodes declare, with their
    settings. A key another workflow declared with other settings is refused, naming both (the
    workflow that declared it may change them in a new version)."""
    now_s = iso(now)
    for node in defn.nodes:
        limits = limits_of(node, defn.workflow_id)
        here = f"{defn.workflow_id}:{node.node_id}"
        if limits.rate is not None:
            rate = limits.rate
            row = rows.bucket(conn, rate.key)
            if row is None or (row[1], row[2], row[3]) != rate.settings():
                if row is not None:
                    _refuse_if_foreign(row[5], here, node.node_id, "rateLimit", rate.key,
                                       _rate_text(row[1], row[2], row[3]), _rate_text(*rate.settings()))
                tokens = rate.burst if row is None else min(row[0], rate.burst)
                rows.put_bucket_txn(conn, rate.key, tokens, rate.rate, rate.per, rate.burst, here,
                                    now if row is None else max(now, row[4]), now_s)
        if limits.breaker is not None:
            breaker = limits.breaker
            row = rows.breaker(conn, breaker.key)
            theirs = None if row is None else (row["failure_threshold"], row["minimum_calls"], row["window_s"],
                                               row["open_duration_s"], row["half_open_successes"])
            if theirs != breaker.settings():
                if row is not None:
                    _refuse_if_foreign(row["declared_by"], here, node.node_id, "circuitBreaker", breaker.key,
                                       _breaker_text(*theirs), _breaker_text(*breaker.settings()))
                LimitGate.declare_breaker(conn, breaker, here, now_s)


def _refuse_if_foreign(declared_by: str, here: str, node_id: str, field: str, key: str,
                       theirs: str, ours: str) -> None:
    if declared_by.split(":", 1)[0] == here.split(":", 1)[0]:
        return   # the same workflow changes its own settings
    raise ValidationError(f"workflow '{here.split(':', 1)[0]}': node '{node_id}': field '{field}': key "
                          f"{key!r} is declared by {declared_by} with {theirs}; here with {ours} "
                          f"(one key, one setting: give it another key, or the same settings)")


def _rate_text(rate: float, per: float, burst: float) -> str:
    return f"rate {rate:g} per {per:g}s, burst {burst:g}"


def _breaker_text(threshold: float, minimum: int, window: float, open_for: float, successes: int) -> str:
    return (f"failureThreshold {threshold:g}, minimumCalls {minimum}, window {window:g}s, "
            f"openDuration {open_for:g}s, halfOpenSuccesses {successes}")


def _loads(text: str | None) -> dict[str, Any]:
    import json
    return json.loads(text) if text else {}


def _resources(cpu: float, memory_mb: float) -> str:
    """What a node asks for (only what it names) or a worker offers."""
    parts = ([f"cpu {cpu:g}"] if cpu else []) + ([f"memory {memory_mb:g} MB"] if memory_mb else [])
    return ", ".join(parts) or "nothing"
