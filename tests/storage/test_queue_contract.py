"""The storage contract of the leased queue, written once and run against every connection mode.

Each test works on a real SQLite file and looks at the rows themselves, not only at return values.
"""

from __future__ import annotations

import itertools
import re

import pytest

from durableflow import machines
from durableflow.clock import iso
from durableflow.errors import (
    InvalidTransition,
    MessageNotFound,
    StaleLease,
    StorageError,
)
from durableflow.storage import Claimed, NewMessage, Reclaimed, Store
from durableflow.storage.statements import SQLITE
from durableflow.storage.queue import bury_txn


# The contract holds whatever the durability setting: rerun the whole suite under both.
@pytest.fixture(params=["NORMAL", "FULL"])
def store(request, db_path, clock):
    s = Store(db_path, clock=clock, synchronous=request.param)
    try:
        yield s
    finally:
        s.close()


def msg(kind="task", **kw) -> NewMessage:
    return NewMessage(kind=kind, **kw)


def transaction_statements(store, statements: list[str]) -> list[str]:
    """The statements that began ("begin") and ended a transaction, in order (PostgreSQL's
    COMMIT comes after a NOTIFY in the same round trip)."""
    begin = store._writer.sql.database.begin_write
    ends = [s.rsplit(";", 1)[-1].strip() for s in statements]
    return ["begin" if s == begin else end for s, end in zip(statements, ends)
            if s == begin or end in ("COMMIT", "ROLLBACK")]


def row(raw, message_id: int) -> dict:
    cur = raw.execute("SELECT * FROM messages WHERE id = ?", (message_id,))
    r = cur.fetchone()
    return None if r is None else dict(zip([d[0] for d in cur.description], r))


def lease(raw, message_id: int):
    return raw.execute("SELECT worker_id, token, acquired_at, expires_at FROM leases WHERE message_id = ?",
                       (message_id,)).fetchone()


def types(events) -> list[str]:
    return [t for t, _ in events]


# --- enqueue -----------------------------------------------------------------------------------

def test_enqueue_one_stores_a_ready_message_and_no_event(store, raw, clock, msg_events):
    [mid] = store.enqueue(msg(payload='{"a": 1}', target_node_id="n1", priority=2))
    r = row(raw, mid)
    assert r["status"] == "ready" and r["kind"] == "task" and r["payload"] == '{"a": 1}'
    assert r["visible_at"] == r["created_at"] == iso(clock.now())
    assert (r["attempts"], r["max_attempts"], r["held"], r["priority"]) == (0, 5, 0, 2)
    # Creation is not a status change: the row (created_at) records it, no event is written.
    assert msg_events(mid) == []
    assert store.message(mid)["status"] == "ready"


def test_enqueue_many_is_one_transaction_in_order(store, raw, msg_events):
    statements = []
    store._writer.set_trace_callback(statements.append)
    try:
        ids = store.enqueue(*[msg(payload=str(i)) for i in range(50)])
    finally:
        store._writer.set_trace_callback(None)
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert transaction_statements(store, statements) == ["begin", "COMMIT"]
    assert [r[0] for r in raw.execute("SELECT payload FROM messages ORDER BY id")] == [str(i) for i in range(50)]
    assert [r[0] for r in raw.execute("SELECT id FROM messages ORDER BY id")] == ids
    assert all(msg_events(i) == [] for i in ids)


@pytest.mark.parametrize("bad", [
    msg(run_id="no-such-run"),               # foreign key
    NewMessage(kind=None),                   # NOT NULL
    msg(priority="high", payload=object()),  # not bindable
])
def test_enqueue_failure_inside_the_batch_rolls_everything_back(store, snap, bad):
    store.enqueue(msg())
    before = snap()
    with pytest.raises(StorageError) as exc:
        store.enqueue(msg(), msg(), bad, msg())
    assert "\n" not in str(exc.value)
    assert snap() == before
    assert not store._writer.in_transaction
    store.enqueue(msg())  # the store is still usable
    assert store.queue_counts()["ready"] == 2


def test_enqueue_nothing_is_a_no_op(store, snap):
    before = snap()
    assert store.enqueue() == []
    assert snap() == before


# --- claim -------------------------------------------------------------------------------------

def test_claim_takes_highest_priority_first_then_oldest(store):
    ids = store.enqueue(msg(priority=1), msg(priority=0), msg(priority=2), msg(priority=1), msg(priority=2))
    a, b, c, d, e = ids
    first = store.claim("w1", limit=3)
    assert [m.id for m in first] == [c, e, a]
    assert [m.id for m in store.claim("w1", limit=10)] == [d, b]
    assert store.claim("w1", limit=10) == []


def test_a_steady_high_priority_load_does_not_starve_lower_priorities(store):
    """Aging: one claim in FAIR_EVERY takes the oldest claimable message whatever its priority
    (0..8: node x 3 + run), so under a stream of top-priority work the rest is served, oldest
    first."""
    from durableflow.storage.queue import FAIR_EVERY
    low, normal = store.enqueue(msg(priority=0), msg(priority=4))
    store.enqueue(*[msg(priority=8) for _ in range(FAIR_EVERY)])
    served = []
    for _ in range(4 * FAIR_EVERY):
        store.enqueue(msg(priority=8))   # the high-priority stream never dries up
        [claimed] = store.claim("w1", limit=1)
        served.append(claimed.id)
    assert low in served and normal in served
    assert served.index(low) < served.index(normal) < 2 * FAIR_EVERY
    # Between those, the stream's own order holds: highest priority, oldest first.
    highs = [i for i in served if i not in (low, normal)]
    assert highs == sorted(highs)


@pytest.mark.parametrize("limit", [1, 3])
def test_the_oldest_first_claim_leads_a_batch_and_finds_any_priority(store, limit):
    from durableflow.storage.queue import FAIR_EVERY
    [old] = store.enqueue(msg(priority=5))
    for _ in range(FAIR_EVERY - 1):
        store.enqueue(msg(priority=7))
        assert [m.priority for m in store.claim("w1", limit=1)] == [7]
    store.enqueue(*[msg(priority=p) for p in (7, 6, 2)])
    batch = store.claim("w1", limit=limit)
    assert [m.priority for m in batch] == [5, 7, 6][:limit] and batch[0].id == old


def test_an_oldest_first_claim_on_an_empty_queue_claims_nothing(store):
    from durableflow.storage.queue import FAIR_EVERY
    assert [store.claim("w1", limit=1) for _ in range(FAIR_EVERY)] == [[]] * FAIR_EVERY
    [only] = store.enqueue(msg(priority=3))
    assert [m.id for m in store.claim("w1", limit=1)] == [only]


def test_claim_returns_up_to_n_and_never_the_same_message_twice(store):
    ids = store.enqueue(*[msg() for _ in range(7)])
    got = [store.claim(f"w{i}", limit=3) for i in range(4)]
    assert [len(g) for g in got] == [3, 3, 1, 0]
    assert sorted(m.id for g in got for m in g) == ids


def test_claim_returns_the_message_fields(store, clock, run_factory):
    run_factory("r1")
    [mid] = store.enqueue(msg(kind="node", run_id="r1", target_node_id="n", iteration=3,
                              payload='"p"', priority=2, max_attempts=7))
    [c] = store.claim("w1", lease_seconds=12.5)
    assert isinstance(c, Claimed)
    assert (c.id, c.run_id, c.kind, c.target_node_id, c.iteration, c.payload, c.priority,
            c.attempts, c.max_attempts, c.worker_id) == (mid, "r1", "node", "n", 3, '"p"', 2, 0, 7, "w1")
    assert c.expires_at == clock.now() + 12.5


@pytest.mark.parametrize("limit", [0, -1])
def test_claim_with_no_room_claims_nothing(store, snap, limit):
    store.enqueue(msg(), msg())
    before = snap()
    assert store.claim("w1", limit=limit) == []
    assert snap() == before


def test_future_messages_are_claimed_only_once_the_clock_reaches_them(store, clock, raw):
    later = clock.now() + 60
    [mid] = store.enqueue(msg(visible_at=later))
    [now_mid] = store.enqueue(msg())
    assert row(raw, mid)["visible_at"] == iso(later)
    assert [m.id for m in store.claim("w", limit=10)] == [now_mid]
    clock.advance(59.999)
    assert store.claim("w", limit=10) == []
    assert store.next_visible_at() == iso(later)
    clock.advance(0.001)
    assert [m.id for m in store.claim("w", limit=10)] == [mid]


def test_held_messages_are_not_claimed_until_released(store, raw, run_factory):
    run_factory("r1", status="paused")
    [held] = store.enqueue(msg(run_id="r1", held=True))
    [free] = store.enqueue(msg())
    assert [m.id for m in store.claim("w", limit=10)] == [free]
    assert store.claim("w", limit=10) == []
    assert store.next_visible_at() is None
    assert store.write(lambda c: c.execute(c.sql.queue.messages_hold_run, {"held": 0, "run_id": "r1"}).rowcount) == 1
    assert [m.id for m in store.claim("w", limit=10)] == [held]


def test_claim_creates_one_lease_row_per_message_with_its_token(store, raw, clock, msg_events):
    ids = store.enqueue(msg(), msg(), msg())
    claimed = store.claim("w1", limit=2, lease_seconds=30)
    for c in claimed:
        assert row(raw, c.id)["status"] == "leased"
        assert lease(raw, c.id) == ("w1", c.token, iso(clock.now()), iso(clock.now() + 30))
        assert len(c.token) >= 16
        evs = msg_events(c.id)
        assert types(evs) == ["message.leased"]
        assert evs[0][1]["worker"] == "w1" and evs[0][1]["from"] == "ready"
    assert lease(raw, ids[2]) is None and row(raw, ids[2])["status"] == "ready"
    assert raw.execute("SELECT count(*) FROM leases").fetchone()[0] == 2
    [other] = store.claim("w2")
    assert other.token != claimed[0].token


# --- ack ---------------------------------------------------------------------------------------

def test_ack_finishes_the_message_and_drops_the_lease(store, raw, clock, msg_events):
    [mid] = store.enqueue(msg())
    [c] = store.claim("w1")
    clock.advance(2)
    store.ack(c.id, c.token)
    r = row(raw, mid)
    assert r["status"] == "acked" and r["finished_at"] == iso(clock.now())
    assert lease(raw, mid) is None
    assert types(msg_events(mid)) == ["message.leased", "message.acked"]
    assert store.queue_counts() == {"ready": 0, "leased": 0, "acked": 1, "dead": 0}


@pytest.mark.parametrize("how", ["wrong token", "twice", "never claimed", "unknown id"])
def test_ack_with_a_stale_token_raises_and_changes_nothing(store, snap, how):
    [mid] = store.enqueue(msg())
    store.enqueue(msg())
    if how == "never claimed":
        target, token = mid, "0" * 16
    elif how == "unknown id":
        target, token = 999_999, "0" * 16
    else:
        [c] = store.claim("w1")
        target, token = c.id, c.token
        if how == "wrong token":
            token = "f" * 16
        else:
            store.ack(c.id, c.token)
    before = snap()
    with pytest.raises(StaleLease) as exc:
        store.ack(target, token)
    assert isinstance(exc.value, InvalidTransition) and "\n" not in str(exc.value)
    assert snap() == before


def test_ack_and_claim_acks_one_and_leases_the_next_in_one_transaction(store, raw, clock, msg_events,
                                                                        run_factory):
    run_factory("r1")
    first, second = store.enqueue(msg(run_id="r1", target_node_id="a"), msg(target_node_id="b"))
    [held] = store.claim("w1", lease_seconds=10)
    statements = []
    store._writer.set_trace_callback(statements.append)
    try:
        [nxt] = store.ack_and_claim(held, lease_seconds=20)
    finally:
        store._writer.set_trace_callback(None)
    assert transaction_statements(store, statements) == ["begin", "COMMIT"]
    assert row(raw, first)["status"] == "acked" and lease(raw, first) is None
    assert [(t, e["_run"], e["_node"]) for t, e in msg_events(first)] == [
        ("message.leased", "r1", "a"), ("message.acked", "r1", "a")]
    assert (nxt.id, nxt.worker_id, nxt.target_node_id) == (second, "w1", "b")
    assert lease(raw, second) == ("w1", nxt.token, iso(clock.now()), iso(clock.now() + 20))
    assert nxt.token != held.token
    assert store.ack_and_claim(nxt) == []          # the queue is empty: ack only
    assert row(raw, second)["status"] == "acked"


def test_ack_and_claim_with_a_stale_lease_changes_nothing(store, clock, snap):
    store.enqueue(msg(), msg())
    [held] = store.claim("w1", lease_seconds=1)
    clock.advance(2)
    store.reclaim()
    [taken] = store.claim("w2")
    before = snap()
    with pytest.raises(StaleLease):
        store.ack_and_claim(held)
    assert snap() == before                       # nothing acked, nothing new leased
    assert taken.id == held.id


def test_ack_many_is_all_or_nothing(store, raw, snap):
    store.enqueue(*[msg() for _ in range(4)])
    claimed = store.claim("w1", limit=4)
    bad = claimed[2]._replace(token="f" * 16)
    before = snap()
    with pytest.raises(StaleLease):
        store.ack_many([claimed[0], claimed[1], bad, claimed[3]])
    assert snap() == before
    store.ack_many(claimed)
    assert store.queue_counts() == {"ready": 0, "leased": 0, "acked": 4, "dead": 0}
    assert raw.execute("SELECT count(*) FROM leases").fetchone()[0] == 0


# --- nack --------------------------------------------------------------------------------------

def test_nack_with_delay_makes_the_message_visible_only_after_it(store, raw, clock, msg_events):
    [mid] = store.enqueue(msg())
    [c] = store.claim("w1")
    store.nack(c.id, c.token, delay=10, error="boom")
    r = row(raw, mid)
    assert r["status"] == "ready" and r["visible_at"] == iso(clock.now() + 10)
    assert r["last_error"] == "boom" and r["attempts"] == 0
    assert lease(raw, mid) is None
    evs = msg_events(mid)
    assert types(evs) == ["message.leased", "message.ready"]
    assert evs[-1][1]["from"] == "leased" and evs[-1][1]["delay"] == 10
    clock.advance(9.9)
    assert store.claim("w1") == []
    clock.advance(0.1)
    [again] = store.claim("w2")
    assert again.id == mid and again.token != c.token


def test_nack_counting_an_attempt(store, raw):
    [mid] = store.enqueue(msg())
    [c] = store.claim("w1")
    store.nack(c.id, c.token, count_attempt=True)
    assert row(raw, mid)["attempts"] == 1
    [c] = store.claim("w1")
    assert c.attempts == 1


def test_nack_with_a_stale_token_raises_and_changes_nothing(store, snap):
    store.enqueue(msg())
    [c] = store.claim("w1")
    before = snap()
    with pytest.raises(StaleLease):
        store.nack(c.id, "f" * 16, delay=5)
    assert snap() == before


def test_nack_into_a_paused_run_holds_the_message(store, raw, run_factory):
    run_factory("r1")
    [mid] = store.enqueue(msg(run_id="r1"))
    [c] = store.claim("w1")
    store.write(lambda conn: conn.execute("UPDATE runs SET status = 'paused' WHERE run_id = 'r1'"))
    store.nack(c.id, c.token)
    assert row(raw, mid)["held"] == 1
    assert store.claim("w1") == []


# --- extend (heartbeat) ------------------------------------------------------------------------

def test_extend_pushes_back_every_lease_of_the_worker(store, raw, clock):
    store.enqueue(msg(), msg(), msg())
    mine = store.claim("w1", limit=2, lease_seconds=30)
    [theirs] = store.claim("w2", lease_seconds=30)
    clock.advance(20)
    assert store.extend("w1", lease_seconds=30) == 2
    for c in mine:
        assert lease(raw, c.id)[3] == iso(clock.now() + 30)
    assert lease(raw, theirs.id)[3] == iso(clock.now() - 20 + 30)
    clock.advance(25)  # past the original expiry, inside the renewed one
    assert [r.message_id for r in store.reclaim()] == [theirs.id]
    assert {row(raw, c.id)["status"] for c in mine} == {"leased"}


def test_extend_one_lease_checks_the_token(store, raw, clock, snap):
    store.enqueue(msg())
    [c] = store.claim("w1", lease_seconds=30)
    clock.advance(10)
    store.extend_lease(c.id, c.token, lease_seconds=60)
    assert lease(raw, c.id)[3] == iso(clock.now() + 60)
    before = snap()
    with pytest.raises(StaleLease):
        store.extend_lease(c.id, "f" * 16)
    assert snap() == before


# --- reclaim, dead letters, requeue -------------------------------------------------------------

def test_reclaim_returns_expired_leases_to_ready_and_counts_an_attempt(store, raw, clock, msg_events):
    [old, fresh] = store.enqueue(msg(), msg())
    store.claim("w1", lease_seconds=10)
    clock.advance(5)
    store.claim("w2", lease_seconds=10)
    clock.advance(5)  # old expires exactly now; fresh has 5 s left
    got = store.reclaim()
    assert got == [Reclaimed(old, "w1", None, None, 0, False, 1)]
    r = row(raw, old)
    assert (r["status"], r["attempts"], r["visible_at"]) == ("ready", 1, iso(clock.now()))
    assert "w1" in r["last_error"]
    assert lease(raw, old) is None and lease(raw, fresh) is not None
    assert types(msg_events(old))[-1] == "message.ready" and msg_events(old)[-1][1]["from"] == "leased"
    assert store.reclaim() == []
    [c] = store.claim("w3")
    assert (c.id, c.attempts) == (old, 1)


def test_reclaim_takes_back_the_leases_of_dead_workers_at_once(store, raw):
    store.enqueue(msg(), msg())
    [a] = store.claim("dead-worker")
    [b] = store.claim("live-worker")
    got = store.reclaim(dead_workers=["dead-worker"])
    assert [(r.message_id, r.dead) for r in got] == [(a.id, False)]
    assert "gone" in row(raw, a.id)["last_error"]
    assert row(raw, b.id)["status"] == "leased"


def test_past_max_attempts_the_message_is_dead_lettered(store, raw, clock, msg_events, run_factory):
    run_factory("r1")
    [mid] = store.enqueue(msg(run_id="r1", target_node_id="n", payload='{"x":1}', max_attempts=3))
    for attempt in (1, 2, 3):
        [c] = store.claim("w1", lease_seconds=5)
        assert c.attempts == attempt - 1
        clock.advance(6)
        [r] = store.reclaim()
        assert r.dead == (attempt == 3)
    m = row(raw, mid)
    assert m["status"] == "dead" and m["attempts"] == 3 and m["finished_at"] == iso(clock.now())
    [dl] = store.dead_letters()
    assert (dl["message_id"], dl["run_id"], dl["kind"], dl["target_node_id"], dl["payload"], dl["attempts"]) == (
        mid, "r1", "task", "n", {"x": 1}, 3)
    assert "gave up after 3" in dl["error"]
    assert types(msg_events(mid))[-1] == "message.dead"
    assert store.claim("w1") == [] and store.queue_counts()["dead"] == 1


def test_requeue_from_dead_letters(store, raw, clock, msg_events):
    [mid] = store.enqueue(msg(max_attempts=1))
    store.claim("w1", lease_seconds=1)
    clock.advance(2)
    assert store.reclaim()[0].dead
    clock.advance(100)
    store.requeue_dead(mid)
    m = row(raw, mid)
    assert (m["status"], m["attempts"], m["visible_at"], m["finished_at"]) == ("ready", 0, iso(clock.now()), None)
    assert store.dead_letters() == []
    evs = msg_events(mid)
    assert types(evs)[-2:] == ["message.dead", "message.ready"] and evs[-1][1]["from"] == "dead"
    [c] = store.claim("w2")
    assert c.id == mid and c.attempts == 0


@pytest.mark.parametrize("state", ["ready", "leased", "acked"])
def test_requeue_of_a_message_that_is_not_dead_is_refused(store, snap, state):
    [mid] = store.enqueue(msg())
    if state != "ready":
        [c] = store.claim("w1")
        if state == "acked":
            store.ack(c.id, c.token)
    before = snap()
    with pytest.raises(InvalidTransition):
        store.requeue_dead(mid)
    assert snap() == before


def test_requeue_of_an_unknown_message(store, snap):
    before = snap()
    with pytest.raises(MessageNotFound):
        store.requeue_dead(12345)
    assert snap() == before


# --- a lease taken over after expiry ---------------------------------------------------------------

def test_old_holder_cannot_ack_or_nack_after_takeover(store, raw, clock, snap, msg_events):
    [mid] = store.enqueue(msg())
    [a] = store.claim("A", lease_seconds=10)
    clock.advance(11)
    store.reclaim()
    [b] = store.claim("B", lease_seconds=10)
    assert b.id == mid and b.token != a.token
    before = snap()
    with pytest.raises(StaleLease):
        store.ack(mid, a.token)
    with pytest.raises(StaleLease):
        store.nack(mid, a.token, delay=1)
    with pytest.raises(StaleLease):
        store.extend_lease(mid, a.token)
    assert store.extend("A") == 0
    assert snap() == before
    assert lease(raw, mid)[:2] == ("B", b.token)
    store.ack(mid, b.token)
    assert row(raw, mid)["status"] == "acked"
    assert [(t, e.get("worker")) for t, e in msg_events(mid)] == [
        ("message.leased", "A"), ("message.ready", "A"),
        ("message.leased", "B"), ("message.acked", None)]


def test_old_holder_nack_after_takeover_leaves_new_lease_intact(store, raw, clock):
    store.enqueue(msg())
    [a] = store.claim("A", lease_seconds=1)
    clock.advance(2)
    store.reclaim()
    [b] = store.claim("B")
    with pytest.raises(StaleLease):
        store.nack(a.id, a.token)
    store.nack(b.id, b.token, delay=3)
    assert row(raw, b.id)["status"] == "ready"


# --- events -------------------------------------------------------------------------------------

def test_every_transition_has_one_event_naming_its_run_and_node(store, clock, msg_events, run_factory):
    run_factory("r1")
    [mid] = store.enqueue(msg(run_id="r1", target_node_id="n1", max_attempts=2))
    [c] = store.claim("w1", lease_seconds=5)
    store.nack(c.id, c.token)                        # ready
    [c] = store.claim("w1", lease_seconds=5)
    clock.advance(6)
    store.reclaim()                                  # expire -> ready
    [c] = store.claim("w1", lease_seconds=5)
    clock.advance(6)
    store.reclaim()                                  # bury -> dead
    store.requeue_dead(mid)                          # ready
    [c] = store.claim("w1")
    store.ack(c.id, c.token)
    evs = msg_events(mid)
    assert types(evs) == ["message.leased", "message.ready", "message.leased",
                          "message.ready", "message.leased", "message.dead", "message.ready",
                          "message.leased", "message.acked"]
    assert [e["from"] for _, e in evs] == ["ready", "leased", "ready", "leased", "ready", "leased",
                                           "dead", "ready", "leased"]
    assert {(e["_run"], e["_node"]) for _, e in evs} == {("r1", "n1")}


# A trigger that refuses the ack's event, in each database's dialect.
REFUSE_ACK_EVENTS = {
    "sqlite": ["CREATE TRIGGER no_acks BEFORE INSERT ON events WHEN NEW.type = 'message.acked' "
               "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"],
    "postgres": ["CREATE FUNCTION refuse_acks() RETURNS trigger LANGUAGE plpgsql AS "
                 "'BEGIN RAISE EXCEPTION ''refused by test''; END'",
                 "CREATE TRIGGER no_acks BEFORE INSERT ON events FOR EACH ROW "
                 "WHEN (NEW.type = 'message.acked') EXECUTE FUNCTION refuse_acks()"],
}
DROP_REFUSAL = {"sqlite": "DROP TRIGGER no_acks", "postgres": "DROP TRIGGER no_acks ON events"}


def test_event_and_status_change_commit_together(store, raw, snap, backend):
    store.enqueue(msg())
    [c] = store.claim("w1")
    for statement in REFUSE_ACK_EVENTS[backend]:
        raw.execute(statement)
    before = snap()
    with pytest.raises(StorageError, match="refused by test"):
        store.ack(c.id, c.token)
    assert snap() == before  # no status change, lease kept, no event
    raw.execute(DROP_REFUSAL[backend])
    store.ack(c.id, c.token)
    assert store.queue_counts()["acked"] == 1


def test_burying_a_leased_message_drops_its_lease(store, raw, clock, msg_events):
    [mid] = store.enqueue(msg())
    [c] = store.claim("w1", lease_seconds=5)
    store.write(bury_txn, mid, "leased", "poison", clock.now())
    assert row(raw, mid)["status"] == "dead" and lease(raw, mid) is None
    assert types(msg_events(mid))[-1] == "message.dead"
    with pytest.raises(StaleLease):
        store.ack(c.id, c.token)
    clock.advance(10)
    assert store.reclaim() == []  # no orphan lease for reclaim to trip over
    store.requeue_dead(mid)
    assert [m.id for m in store.claim("w2")] == [mid]


# --- illegal transitions -------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["acked", "dead"])
def test_bury_from_a_state_that_does_not_allow_it(store, raw, snap, clock, source):
    [mid] = store.enqueue(msg(max_attempts=1))
    [c] = store.claim("w1", lease_seconds=1)
    if source == "acked":
        store.ack(c.id, c.token)
    else:
        clock.advance(2)
        store.reclaim()
    before = snap()
    with pytest.raises(InvalidTransition):
        store.write(bury_txn, mid, source, "x", clock.now())
    assert snap() == before


def test_bury_when_the_stored_state_moved_on(store, snap, clock):
    [mid] = store.enqueue(msg())
    before = snap()
    with pytest.raises(InvalidTransition):  # allowed by the lifecycle, but the row is not leased
        store.write(bury_txn, mid, "leased", "x", clock.now())
    assert snap() == before


# --- lifecycles ----------------------------------------------------------------------------------

# What each lifecycle allows, written out independently of durableflow/machines.py.
LIFECYCLES = {
    "RUN": {
        "start": {"pending": "running"},
        "pause": {"pending": "paused", "running": "paused"},
        "resume": {"paused": "running"},
        "complete": {"running": "completed"},
        "fail": {"pending": "failed", "running": "failed", "paused": "failed"},
        "compensate": {"running": "compensating", "paused": "compensating", "completed": "compensating"},
        "compensated": {"compensating": "failed"},
        "cancel": {s: "cancelled" for s in ("pending", "running", "paused", "compensating")},
    },
    "NODE": {
        "start": {"pending": "running", "waiting": "running"},
        "release": {"running": "pending"},
        "wait": {"pending": "waiting", "running": "waiting"},
        "complete": {"running": "completed", "waiting": "completed"},
        "fail": {"running": "failed", "waiting": "failed", "pending": "failed"},
        "cancel": {"pending": "cancelled", "waiting": "cancelled", "running": "cancelled"},
        "skip": {"pending": "skipped"},
    },
    "MESSAGE": {
        "lease": {"ready": "leased"},
        "ack": {"leased": "acked"},
        "nack": {"leased": "ready"},
        "expire": {"leased": "ready"},
        "bury": {"leased": "dead", "ready": "dead"},
        "discard": {"ready": "acked"},
        "requeue": {"dead": "ready"},
    },
    "LEASE": {
        "renew": {"held": "held"},
        "release": {"held": "released"},
        "expire": {"held": "expired"},
    },
    "BREAKER": {
        "trip": {"closed": "open", "half_open": "open"},
        "probe": {"open": "half_open"},
        "reset": {"half_open": "closed"},
        "close": {"open": "closed", "half_open": "closed"},
    },
}
STATES = {
    "RUN": {"pending", "running", "paused", "completed", "failed", "cancelled", "compensating"},
    "NODE": {"pending", "waiting", "running", "completed", "failed", "cancelled", "skipped"},
    "MESSAGE": {"ready", "leased", "acked", "dead"},
    "LEASE": {"held", "released", "expired"},
    "BREAKER": {"closed", "open", "half_open"},
}
TERMINAL = {"RUN": {"completed", "failed", "cancelled"},
            "NODE": {"completed", "failed", "cancelled", "skipped"},
            "MESSAGE": {"acked"}, "LEASE": {"released", "expired"}, "BREAKER": set()}

CASES = [
    (name, trigger, state)
    for name in LIFECYCLES
    for trigger, state in itertools.product(sorted(LIFECYCLES[name]), sorted(STATES[name]))
]


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_lifecycle_declares_exactly_the_expected_states_and_triggers(name):
    machine = getattr(machines, name)
    assert set(machine.states) == STATES[name]
    assert set(machine.events) == set(LIFECYCLES[name])  # no auto `to_*` triggers


@pytest.mark.parametrize("name,trigger,state", CASES)
def test_lifecycle_table(name, trigger, state):
    machine = getattr(machines, name)
    expected = LIFECYCLES[name][trigger].get(state)
    if expected is None:
        with pytest.raises(InvalidTransition) as exc:
            machines.target(machine, trigger, state)
        assert f"cannot '{trigger}' from '{state}'" in str(exc.value)
    else:
        assert machines.target(machine, trigger, state) == expected


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_lifecycle_rejects_unknown_triggers_and_states_without_growing(name):
    machine = getattr(machines, name)
    sizes = {t: len(e.transitions) for t, e in machine.events.items()}
    for trigger, state in [("explode", "ready"), (next(iter(machine.events)), "no-such-state")]:
        with pytest.raises(InvalidTransition):
            machines.target(machine, trigger, state)
    assert {t: len(e.transitions) for t, e in machine.events.items()} == sizes


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
def test_terminal_states_have_no_way_out(name):
    """Except one: a completed child run is compensated when its parent compensates."""
    machine = getattr(machines, name)
    for state in TERMINAL[name]:
        for trigger in machine.events:
            if (name, trigger, state) == ("RUN", "compensate", "completed"):
                assert machines.target(machine, trigger, state) == "compensating"
                continue
            with pytest.raises(InvalidTransition):
                machines.target(machine, trigger, state)


def test_allowed_sources():
    assert set(machines.allowed_sources(machines.MESSAGE, "bury")) == {"leased", "ready"}


def test_stored_status_words_match_the_lifecycles(store, raw, sqlite_only):
    """The schema's CHECK constraints accept exactly the lifecycle's states."""
    for table, name in [("runs", "RUN"), ("node_instances", "NODE"), ("messages", "MESSAGE"),
                        ("circuit_breakers", "BREAKER")]:
        sql = raw.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        found = re.search(r"CHECK\s*\(([^)]*)\)", sql)
        assert found, table
        # `status = 'a' OR status = 'b' ...`: an IN list would cost a temporary b-tree per row.
        terms = [t.strip() for t in re.split(r"\s+OR\s+", found.group(1))]
        assert all(re.fullmatch(r"status = '[a-z_]+'", t) for t in terms), (table, terms)
        assert {t.split("'")[1] for t in terms} == STATES[name], table


def test_reclaim_reports_how_many_deliveries_were_lost(store, clock):
    [mid] = store.enqueue(msg(max_attempts=2))
    store.claim("w1", lease_seconds=1)
    clock.advance(2)
    [first] = store.reclaim()
    store.claim("w2", lease_seconds=1)
    clock.advance(2)
    [second] = store.reclaim()
    assert (first.message_id, first.dead, first.deliveries) == (mid, False, 1)
    assert (second.message_id, second.dead, second.deliveries) == (mid, True, 2)
