"""Hand-off: a node queued by a transaction that goes on to claim, run and record it.

A worker's claiming transaction (WorkerService._claim_rounds) runs cheap nodes (Noop, routing),
records them, and claims what they led to, for a few rounds. Written the ordinary way, a node one
of them queues costs four writes of two rows: its message (ready, leased, acked) and its attempt
(pending, then started and finished at once). When nothing in the database is claimable, the next
claim would take that node first anyway, so it is *offered* instead: kept here, claimed from
here, and written once, as it stands at the end (message acked, attempt completed), with the
events a written one gets, in the same order.

Whatever would need an offer's rows first writes them first:
- a claim that finds work in the database writes the offers as ready messages, then claims
  (queue.take_offers_txn): claims keep priority and arrival order;
- a message queued the ordinary way is written after the offers (queue.enqueue_txn);
- a run failed or cancelled (write_put_off), a node taken that does not complete at once
  (AttemptLifecycle.start_deferred), and the end of the claiming transaction.
Inside that transaction nothing else reads a run's messages or attempts but has_open_messages,
which counts the offers.

The state here changes inside savepoints; ROLLBACK TO one puts it back (TxnBuffers.on_rollback).
"""

from __future__ import annotations

import functools
import json
from typing import Callable

from durableflow.storage import nodes

NODE_PENDING = "node.pending"


class Offer:
    """A node queued in this transaction and not written: its message and its first attempt."""

    __slots__ = ("plan", "run_id", "node_id", "iteration", "payload", "priority", "max_attempts",
                 "input_json", "created_at", "one")

    def __init__(self, plan, run_id: str, node_id: str, iteration: int, payload: str, priority: int,
                 max_attempts: int, input_json: str, created_at: str, one: tuple | None = None):
        self.plan = plan
        self.run_id = run_id
        self.node_id = node_id
        self.iteration = iteration
        self.payload = payload
        self.priority = priority
        self.max_attempts = max_attempts
        self.input_json = input_json
        self.created_at = created_at
        # (input, its key) as a Python value, when the node has that one input and the sender had
        # it: the payload is not parsed back. Shared with the sender's output, which nothing
        # changes (cheap nodes only).
        self.one = one


class Handoff:
    """The offers of one claiming transaction. `takes(plan, node_id)`: whether that transaction
    runs and records the node itself (cheap, no limit applies)."""

    def __init__(self, takes: Callable):
        self.takes = takes
        self.offers: list[Offer] = []     # not taken yet, in arrival order
        self.open: dict[str, int] = {}    # run_id -> its offers and taken ones not written yet
        # Work was found waiting in the database: what is queued from now on would be written
        # at the next claim anyway, so it is not offered.
        self.backlog = False

    def _count(self, run_id: str, n: int) -> None:
        self.open[run_id] = self.open.get(run_id, 0) + n


def _taken_written(conn, run_id: str) -> None:
    """An offer taken was written: its run counts it no more."""
    h = conn.handoff
    h._count(run_id, -1)
    conn.on_rollback(functools.partial(h._count, run_id, 1))


def offer_txn(conn, offer: Offer) -> None:
    h = conn.handoff
    h.offers.append(offer)
    h._count(offer.run_id, 1)
    conn.on_rollback(functools.partial(_unoffer, h, offer))


def _unoffer(h: Handoff, offer: Offer) -> None:
    h.offers.remove(offer)
    h._count(offer.run_id, -1)


def take(h: Handoff, limit: int) -> list[Offer]:
    """Up to `limit` offers, highest priority first, then oldest (queue.take_offers_txn says when)."""
    offers = sorted(h.offers, key=_claim_order)[:limit]
    taken = set(map(id, offers))
    h.offers = [o for o in h.offers if id(o) not in taken]
    return offers


def _claim_order(offer: Offer) -> int:
    return -offer.priority   # sorted() is stable: arrival order within a priority


def write_offers_txn(conn) -> None:
    """Write the offers not taken as the ordinary ready messages and pending attempts."""
    h = conn.handoff
    offers, h.offers = h.offers, []
    if not offers:
        return
    conn.on_rollback(functools.partial(_restore_offers, h, offers))
    enqueue = conn.sql.queue.enqueue
    for o in offers:
        h._count(o.run_id, -1)
        mid = conn.execute(enqueue, (o.run_id, "node", o.node_id, o.iteration, o.payload, o.priority,
                                     o.created_at, 0, o.max_attempts, o.created_at)).lastrowid
        nodes.insert_node_txn(conn, o.run_id, o.node_id, o.iteration, 1, "pending", mid, o.input_json,
                              o.created_at)


def _restore_offers(h: Handoff, offers: list[Offer]) -> None:
    h.offers = offers + h.offers
    for o in offers:
        h._count(o.run_id, 1)


def write_taken_txn(conn, o: Offer, worker_id: str, token: str, expires_s: str,
                    started_s: str) -> tuple[int, int]:
    """An offer taken that does not finish in this transaction: its message leased (the lease as
    any claim's), its attempt running. (message id, attempt id)."""
    mid = conn.execute(conn.sql.queue.enqueue_handed, (o.run_id, o.node_id, o.iteration, o.payload, "leased",
                                                       o.priority, o.created_at, o.max_attempts,
                                                       o.created_at, None)).lastrowid
    iid = conn.execute(conn.sql.nodes.node_insert_handed, (o.run_id, o.node_id, o.iteration, 1, "running", mid,
                                                           o.input_json, None, None, worker_id, o.created_at,
                                                           started_s, None)).lastrowid
    conn.add_lease((mid, worker_id, token, started_s, expires_s))
    _started_events(conn, o, mid, iid, worker_id, started_s)
    _taken_written(conn, o.run_id)
    return mid, iid


def write_done_txn(conn, o: Offer, worker_id: str, started_s: str, now_s: str, output: str | None,
                   port: str | None, completed_event: Callable[[int], str]) -> tuple[int, int]:
    """An offer taken and completed in this transaction: its message acked and its attempt
    completed, each written once; `completed_event(attempt id)` is the data of node.completed.
    (message id, attempt id)."""
    mid = conn.execute(conn.sql.queue.enqueue_handed, (o.run_id, o.node_id, o.iteration, o.payload, "acked",
                                                       o.priority, o.created_at, o.max_attempts,
                                                       o.created_at, now_s)).lastrowid
    iid = conn.execute(conn.sql.nodes.node_insert_handed, (o.run_id, o.node_id, o.iteration, 1, "completed",
                                                           mid, o.input_json, output, port, worker_id,
                                                           o.created_at, started_s, now_s)).lastrowid
    _started_events(conn, o, mid, iid, worker_id, started_s)
    conn.add_events([(o.run_id, o.node_id, "message.acked", f'{{"id":{mid},"from":"leased"}}', now_s),
                     (o.run_id, o.node_id, "node.completed", completed_event(iid), now_s)])
    _taken_written(conn, o.run_id)
    return mid, iid


def _started_events(conn, o: Offer, mid: int, iid: int, worker_id: str, started_s: str) -> None:
    conn.add_events([
        (o.run_id, o.node_id, NODE_PENDING, f'{{"id":{iid},"attempt":1,"iteration":{o.iteration}}}',
         o.created_at),
        (o.run_id, o.node_id, "message.leased", f'{{"id":{mid},"from":"ready","worker":{json_text(worker_id)}}}',
         started_s),
        (o.run_id, o.node_id, "node.running", f'{{"id":{iid},"attempt":1}}', started_s),
    ])


@functools.lru_cache(maxsize=256)
def json_text(value: str) -> str:
    """A worker id as JSON text: the same few, over and over."""
    return json.dumps(value, ensure_ascii=False)
