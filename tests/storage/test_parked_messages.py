"""Parked messages (a Wait's timer, a WaitForSignal, a Subflow or loop parent, a retry in
backoff) are kept out of the claim index until they are due (issue 11, point 9).

A claim must cost the same with thousands of messages parked for later as with none, and a parked
message must still be claimed at its time, at its priority, and never while its run is paused.
Costs are counted in SQLite virtual-machine instructions, so they do not depend on the machine.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from durableflow.clock import iso
from durableflow.storage import NewMessage, Store, queue
from durableflow.storage.history import export_txn, import_txn

DAY = 86400.0
CLAIMABLE, PAUSED, THROTTLED, LATER = 0, 1, 2, 3


def msg(**kw) -> NewMessage:
    return NewMessage(kind="task", **kw)


def held_of(raw, message_id: int) -> tuple[str, int]:
    return raw.execute("SELECT status, held FROM messages WHERE id = ?", (message_id,)).fetchone()


def vm_ops(store: Store, fn) -> int:
    """SQLite VM instructions the store's writer runs while fn() runs."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    store._writer.set_progress_handler(tick, 1)
    try:
        fn()
    finally:
        store._writer.set_progress_handler(None, 1)
    return count[0]


def claim_cost(store: Store) -> int:
    """VM instructions of one claim (one ready message at the back of the queue) and its ack."""
    store.enqueue(msg())
    got = []
    ops = vm_ops(store, lambda: got.extend(store.claim("w", 1)))
    assert len(got) == 1
    store.ack(got[0].id, got[0].token)
    return ops


@pytest.mark.parametrize("parked_by", ["enqueue", "nack"])
def test_a_claim_costs_the_same_with_thousands_of_messages_parked(store, clock, parked_by, sqlite_only):
    empty = claim_cost(store)
    if parked_by == "enqueue":
        store.enqueue(*[msg(visible_at=clock.now() + DAY) for _ in range(3000)])
    else:   # retries in backoff, and nodes parked on a timer: given back with a delay
        store.enqueue(*[msg() for _ in range(3000)])
        for c in store.claim("w", 3000):
            store.nack(c.id, c.token, delay=DAY)
    parked = claim_cost(store)
    assert parked <= empty * 1.1, (empty, parked)   # before: about 40 instructions per parked message


def test_parked_messages_leave_the_claim_index_and_come_back_when_due(store, clock, raw):
    [later] = store.enqueue(msg(visible_at=clock.now() + 60))
    [now] = store.enqueue(msg())
    assert held_of(raw, later) == ("ready", LATER) and held_of(raw, now) == ("ready", CLAIMABLE)
    assert store.next_visible_at() == iso(clock.now())
    assert [m.id for m in store.claim("w", 10)] == [now]
    assert store.next_visible_at() == iso(clock.now() + 60)   # what `worker --until-idle` waits for
    clock.advance(59.999)
    assert store.claim("w", 10) == []
    clock.advance(0.001)
    [c] = store.claim("w", 10)
    assert c.id == later and held_of(raw, later) == ("leased", CLAIMABLE)


def test_a_due_message_competes_at_its_priority(store, clock):
    [retry] = store.enqueue(msg(priority=6))
    [c] = store.claim("w", 1)
    store.nack(c.id, c.token, delay=5)                    # a high-priority node in backoff
    [low] = store.enqueue(msg(priority=3))
    clock.advance(5)
    assert [m.id for m in store.claim("w", 1)] == [retry]  # due now, it goes first
    assert [m.id for m in store.claim("w", 1)] == [low]


def test_nack_without_delay_stays_claimable_and_with_delay_parks(store, clock, raw):
    a, b = store.enqueue(msg(), msg())
    ca, cb = store.claim("w", 2)
    store.nack(ca.id, ca.token)
    store.nack(cb.id, cb.token, delay=0.0005)            # less than the stored millisecond
    assert held_of(raw, a) == ("ready", CLAIMABLE) and held_of(raw, b) == ("ready", CLAIMABLE)
    [c] = store.claim("w", 1)
    store.nack(c.id, c.token, delay=1)
    assert held_of(raw, c.id) == ("ready", LATER)


def test_many_due_at_once_are_all_claimed_in_order(store, clock):
    ids = store.enqueue(*[msg(visible_at=clock.now() + 10 + i / 1000) for i in range(queue.PROMOTE_BATCH * 2 + 7)])
    clock.advance(3600)
    got = []
    while batch := store.claim("w", 50):
        got += [m.id for m in batch]
    assert got == ids


def test_a_paused_runs_parked_message_stays_unclaimable_until_resumed(store, clock, raw, run_factory):
    run_factory("r1")
    [mid] = store.enqueue(msg(run_id="r1", visible_at=clock.now() + 60))
    [soon] = store.enqueue(msg(run_id="r1", visible_at=clock.now() + 600))
    store.write(queue.hold_run_messages_txn, "r1", True)
    assert held_of(raw, mid) == ("ready", PAUSED)
    clock.advance(120)
    assert store.claim("w", 10) == []
    assert store.next_visible_at() is None
    store.write(queue.hold_run_messages_txn, "r1", False, clock.now_iso())
    assert held_of(raw, mid) == ("ready", CLAIMABLE) and held_of(raw, soon) == ("ready", LATER)
    assert [m.id for m in store.claim("w", 10)] == [mid]
    clock.advance(600)
    assert [m.id for m in store.claim("w", 10)] == [soon]


def test_resuming_needs_the_time(store):
    with pytest.raises(TypeError, match="now"):
        store.write(queue.hold_run_messages_txn, "r1", False)


def test_waking_a_run_makes_its_waiting_nodes_claimable_at_once(store, clock, raw, run_factory):
    run_factory("r1")
    [mid] = store.enqueue(msg(run_id="r1", visible_at=clock.now() + DAY))
    store.write(lambda c: c.execute(
        "INSERT INTO node_instances (run_id, node_id, status, message_id, created_at) "
        "VALUES ('r1', 'wait', 'waiting', ?, ?)", (mid, clock.now_iso())))
    assert store.write(queue.wake_waiting_txn, "r1", clock.now_iso()) == 1
    assert held_of(raw, mid) == ("ready", CLAIMABLE)
    assert [m.id for m in store.claim("w", 1)] == [mid]


def test_a_requeued_dead_letter_is_claimable_at_once(store, clock, raw):
    [mid] = store.enqueue(msg(visible_at=clock.now() + 5, max_attempts=1))
    clock.advance(5)
    [c] = store.claim("w", 1)
    store.nack(c.id, c.token, count_attempt=True, error="boom")
    assert held_of(raw, mid)[0] == "dead"
    store.requeue_dead(mid)
    assert held_of(raw, mid) == ("ready", CLAIMABLE)


def test_an_imported_run_parks_its_future_messages(store, clock, raw, run_factory):
    run_factory("r1")
    later, now = store.enqueue(msg(run_id="r1", visible_at=clock.now() + 60), msg(run_id="r1"))
    doc = store.read(export_txn, "r1")
    store.write(lambda c: c.execute("DELETE FROM runs WHERE run_id = 'r1'"))
    # An export written before parking existed says held 0 for a message due later.
    for m in doc["messages"]:
        m["held"] = 0
    doc = json.loads(json.dumps(doc))
    store.write(import_txn, doc, clock.now_iso())
    rows = raw.execute("SELECT visible_at, held FROM messages WHERE run_id = 'r1' ORDER BY id").fetchall()
    assert rows == [(iso(clock.now() + 60), LATER), (iso(clock.now()), CLAIMABLE)]
    assert len(store.claim("w", 10)) == 1
    clock.advance(60)
    assert len(store.claim("w", 10)) == 1


def test_only_ready_messages_stay_parked(store, clock, raw, run_factory):
    """messages_due_later's WHERE names held only (claims and acks, which change status, never
    touch it): whatever ends a parked message must take it out of the index."""
    run_factory("r1")
    discarded, buried = store.enqueue(msg(run_id="r1", visible_at=clock.now() + 60),
                                      msg(visible_at=clock.now() + 60))
    store.write(queue.discard_run_messages_txn, "r1", clock.now_iso())
    store.write(queue.bury_txn, buried, "ready", "gave up", clock.now())
    assert held_of(raw, discarded) == ("acked", CLAIMABLE) and held_of(raw, buried) == ("dead", CLAIMABLE)
    assert raw.execute("SELECT count(*) FROM messages WHERE held = 3").fetchone() == (0,)
    clock.advance(120)
    assert store.claim("w", 10) == [] and store.next_visible_at() is None


def test_claims_and_acks_never_touch_the_parked_index(tmp_path):
    """The index's WHERE leaves out status: an UPDATE of status alone costs the same with the
    index as without it (with `status = 'ready'` in its WHERE, each cost 7 instructions more)."""
    def ops(drop: bool) -> tuple[int, int]:
        path = tmp_path / f"drop{drop}.db"
        Store(path).close()
        conn = sqlite3.connect(path, isolation_level=None)
        if drop:
            conn.execute("DROP INDEX messages_due_later")
        conn.execute("INSERT INTO messages (kind, status, visible_at, created_at) VALUES ('t', 'ready', 'a', 'a')")
        out = []
        for sql in ("UPDATE messages SET status = 'leased' WHERE id = 1",
                    "UPDATE messages SET status = 'acked', finished_at = 'b' WHERE id = 1 AND status = 'leased'"):
            count = [0]

            def tick() -> int:
                count[0] += 1
                return 0
            conn.set_progress_handler(tick, 1)
            conn.execute(sql)
            conn.set_progress_handler(None, 1)
            out.append(count[0])
        conn.close()
        return tuple(out)

    assert ops(drop=False) == ops(drop=True)
