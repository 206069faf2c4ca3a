"""Routing: a node's Complete or Fail message delivered over the connections that match it,
joins (`all`, `any`, `each`) counting what came, and dead-path elimination (a node none of whose
inputs will come is skipped, and so on down). Runs inside the transaction that records the node.
"""

from __future__ import annotations

import functools
from typing import Any

from durableflow.clock import iso
from durableflow.errors import ExpressionError
from durableflow.expressions import IN_TRANSACTION_CPU_BUDGET
from durableflow.plan import Edge, Plan
from durableflow.records import NewMessage
from durableflow.storage import handoff, joins, nodes, queue
from durableflow.storage.events import dumps
from durableflow.tasks import EnqueueAs


@functools.lru_cache(maxsize=1024)
def _key_json(key: str) -> str:
    """The JSON of an input key (a node id or a port): the same few, over and over."""
    return dumps(key)


def _payload(input_json: str, inputs_json: str) -> str:
    """A node message's payload: its input first (attempts._read_payload relies on it)."""
    return '{"input":' + input_json + ',"inputs":' + inputs_json + "}"


class Routing:
    def __init__(self, *, max_deliveries: int):
        self.max_deliveries = max_deliveries

    def enqueue_node(self, conn, plan: Plan, run_id: str, node_id: str, iteration: int,
                     input_json: str, inputs_json: str, how: EnqueueAs, now: float,
                     attempt: int = 1, extra: dict | None = None) -> int:
        """Queue a node of a run: its message and its `pending` attempt (whose id it returns).
        `extra`: more keys of the message's payload (a fallback's, say)."""
        payload = _payload(input_json, inputs_json)
        if extra:
            payload = payload[:-1] + "," + dumps(extra)[1:]
        (mid,) = queue.enqueue_txn(conn, [NewMessage(
            # Node priority first; the run's priority orders messages of equal node priority.
            "node", payload, run_id, node_id, iteration, plan.priorities[node_id] * 3 + how.priority,
            None, how.held, self.max_deliveries)], now)
        return nodes.insert_node_txn(conn, run_id, node_id, iteration, attempt, "pending", mid, input_json,
                                     iso(now))

    def queue_node(self, conn, plan: Plan, run_id: str, node_id: str, iteration: int,
                   input_json: str, inputs_json: str, how: EnqueueAs, now: float,
                   one: tuple | None = None) -> None:
        """enqueue_node, for a node a delivery sets off: offered instead (written only once it has
        run) when this transaction will take and run it itself (storage.handoff). `one`: (the
        input, its key) when the node has that one input and the caller has it as a value."""
        h = conn.handoff
        if h is not None and not h.backlog and not how.held and h.takes(plan, node_id):
            handoff.offer_txn(conn, handoff.Offer(
                plan, run_id, node_id, iteration, _payload(input_json, inputs_json),
                plan.priorities[node_id] * 3 + how.priority, self.max_deliveries, input_json, iso(now), one))
            return
        self.enqueue_node(conn, plan, run_id, node_id, iteration, input_json, inputs_json, how, now)

    @staticmethod
    def deliveries(plan: Plan, node_id: str, outcome: str, port: str | None,
                   names: dict) -> list[tuple[Edge, bool]]:
        """Each outgoing connection of the node, and whether it delivers this outcome."""
        out = []
        for edge in plan.outgoing[node_id]:
            ok = edge.matches(outcome, port)
            if ok and edge.condition is not None:
                try:
                    ok = bool(edge.condition.evaluate(names, IN_TRANSACTION_CPU_BUDGET))
                except ExpressionError as exc:
                    raise ExpressionError(f"connection {edge.conn.label}: condition "
                                          f"{edge.conn.condition!r} failed: {exc}") from exc
            out.append((edge, ok))
        return out

    def route(self, conn, plan: Plan, run_id: str, source: str, iteration: int,
              deliveries: list[tuple[Edge, bool]], value: Any, how: EnqueueAs, now: float,
              value_json: str | None = None) -> bool:
        """Deliver `value` (whose JSON the caller may have already) over the connections that
        match, rule the others out. Returns whether the run has more to come: a node was queued,
        or a join still waits for inputs (whose sources are open, or will be skipped), so the
        run cannot be finished and the caller need not look."""
        queued = False
        for edge, ok in deliveries:
            if ok and value_json is None:
                value_json = dumps(value)
            queued = self.resolve(conn, plan, run_id, edge, iteration, ok, value, value_json, how, now) or queued
        return queued

    def resolve(self, conn, plan: Plan, run_id: str, edge: Edge, iteration: int, delivered: bool,
                value: Any, value_json: str | None, how: EnqueueAs, now: float) -> bool:
        """One incoming connection of a node delivered or was ruled out: run, wait, or skip it.
        Returns whether the node was queued or waits for more inputs (see route)."""
        target = edge.conn.target_node_id
        incoming = plan.incoming[target]
        key = plan.input_key(edge)
        mode = plan.nodes[target].join_mode
        if len(incoming) == 1 and mode != "each":
            if delivered:
                inputs_json = "{" + _key_json(key) + ":" + value_json + "}"
                self.queue_node(conn, plan, run_id, target, iteration, value_json, inputs_json, how, now,
                                (value, key))
                return True
            self.skip(conn, plan, run_id, target, iteration, how, now)
            return False
        join_iteration = 0 if mode == "each" else iteration
        resolved, count, was_fired = joins.join_arrive(conn, run_id, target, join_iteration, delivered)
        fired = was_fired
        done = resolved >= len(incoming)
        one_input = "{" + _key_json(key) + ":" + value_json + "}" if delivered else None
        queued = False
        if mode == "each":
            if delivered:  # fires on every delivery
                fired = queued = True
                self.queue_node(conn, plan, run_id, target, count - 1, value_json, one_input, how, now,
                                (value, key))
            elif done and not fired:
                # Skipped once: behind another `each` node, every iteration up there rules this
                # connection out again, and each would rule everything below out once more.
                fired = True
                self.skip(conn, plan, run_id, target, 0, how, now)
        elif mode == "any":
            if delivered and not fired:
                fired = queued = True
                self.queue_node(conn, plan, run_id, target, iteration, value_json, one_input, how, now,
                                (value, key))
            elif done and not fired:
                fired = True
                self.skip(conn, plan, run_id, target, iteration, how, now)
        else:
            if delivered:
                joins.join_input_put(conn, run_id, target, join_iteration, key, value_json)
            if done and not fired:
                fired = True
                if count:
                    got = joins.join_inputs_get(conn, run_id, target, join_iteration)
                    inputs_json = "{" + ",".join(_key_json(k) + ":" + v for k, v in got) + "}"
                    self.queue_node(conn, plan, run_id, target, iteration,
                                    got[0][1] if len(got) == 1 else inputs_json, inputs_json, how, now)
                    queued = True
                else:
                    self.skip(conn, plan, run_id, target, iteration, how, now)
        if fired and not was_fired:
            joins.join_fire(conn, run_id, target, join_iteration)
        return queued or not done

    def skip(self, conn, plan: Plan, run_id: str, node_id: str, iteration: int, how: EnqueueAs,
             now: float) -> None:
        """Dead-path elimination: a node none of whose inputs will come is skipped, and so on down."""
        nodes.insert_node_txn(conn, run_id, node_id, iteration, 1, "skipped", None, None, iso(now))
        for edge in plan.outgoing[node_id]:
            self.resolve(conn, plan, run_id, edge, iteration, False, None, None, how, now)
