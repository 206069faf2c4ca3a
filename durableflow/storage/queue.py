"""The leased message queue: enqueue, claim, ack, nack, extend, reclaim, dead letters.

`*_txn(conn, ...)` functions run inside a caller's transaction, so the engine can commit a node's
result and the messages it sends in one go; the `QueueOps` methods own a transaction each.
Every status change is checked against machines.MESSAGE, applied with `WHERE status = :from`,
row-count checked, and appended to `events` in the same transaction.
"""

from __future__ import annotations

import functools
import json
import secrets
from typing import Iterable, NamedTuple, Sequence

from durableflow import machines
from durableflow.clock import iso
from durableflow.errors import InvalidTransition, MessageNotFound, StaleLease
from durableflow.storage.events import event_txn
from durableflow.storage.queries import Q

MSG = machines.MESSAGE
_LEASE = machines.target(MSG, "lease", "ready")
_ACK = machines.target(MSG, "ack", "leased")
_NACK = machines.target(MSG, "nack", "leased")
_EXPIRE = machines.target(MSG, "expire", "leased")
_REQUEUE = machines.target(MSG, "requeue", "dead")
_LEASED_EVENT = "message." + _LEASE
_ACKED_EVENT = "message." + _ACK


class NewMessage(NamedTuple):
    """A message to enqueue. A NamedTuple, not a frozen dataclass: the engine builds one per node
    and a frozen dataclass's __init__ cost more than the INSERT's Python side."""

    kind: str
    payload: str | None = None            # JSON text
    run_id: str | None = None
    target_node_id: str | None = None
    iteration: int = 0
    priority: int = 1
    visible_at: float | None = None       # epoch seconds; None = now
    held: bool = False
    max_attempts: int = 5


class Claimed(NamedTuple):
    id: int
    run_id: str | None
    kind: str
    target_node_id: str | None
    iteration: int
    payload: str | None
    priority: int
    attempts: int
    max_attempts: int
    token: str
    worker_id: str
    expires_at: float


class Reclaimed(NamedTuple):
    message_id: int
    worker_id: str
    run_id: str | None
    target_node_id: str | None
    iteration: int
    dead: bool                            # True: buried in dead_letters; False: ready again
    deliveries: int = 0                   # deliveries lost so far, this one included


# --- transaction helpers -----------------------------------------------------------------------

def enqueue_txn(conn, messages: Sequence[NewMessage], now: float) -> list[int]:
    """Insert ready messages. Creating a message is not a status change, so no event is written:
    the row itself (created_at) records it, and the engine's `node.pending` names the node."""
    now_s = iso(now)
    if len(messages) == 1:  # one per transaction, the commonest call: no list to build
        return [conn.execute(Q.enqueue, _insert_values(messages[0], now_s)).lastrowid]
    rows = [_insert_values(m, now_s) for m in messages]
    if not rows:
        return []
    conn.executemany(Q.enqueue, rows)
    # messages.id has no AUTOINCREMENT: each insert takes max(id) + 1, and we hold the write lock,
    # so the batch got consecutive ids ending at the last one.
    last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
    return list(range(last - len(rows) + 1, last + 1))


def _insert_values(m: NewMessage, now_s: str) -> tuple:
    return (m.run_id, m.kind, m.target_node_id, m.iteration, m.payload, m.priority,
            now_s if m.visible_at is None else iso(m.visible_at), 1 if m.held else 0,
            m.max_attempts, now_s)


def claim_txn(conn, worker_id: str, limit: int, lease_seconds: float, now: float) -> list[Claimed]:
    if limit < 1:
        return []  # SQLite reads a negative LIMIT as "no limit": it would lease the whole queue
    now_s = iso(now)
    expires = now + lease_seconds
    expires_s = iso(expires)
    who = _json_text(worker_id)
    if limit == 1:  # the worker loop's case, kept lean: one row, no sort, no lists
        r = conn.execute(Q.claim_one, {"now": now_s}).fetchone()
        if r is None:
            return []
        token = secrets.token_hex(8)
        conn.execute(Q.lease_insert, (r[0], worker_id, token, now_s, expires_s))
        conn.execute(Q.event_insert, (r[1], r[3], _LEASED_EVENT,
                                      f'{{"id":{r[0]},"from":"ready","worker":{who}}}', now_s))
        return [Claimed(*r, token, worker_id, expires)]
    rows = conn.execute(Q.claim, {"now": now_s, "limit": limit}).fetchall()
    if not rows:
        return []
    # RETURNING gives no order guarantee; callers get the claim order.
    rows.sort(key=lambda r: (-r[6], r[0]))
    token = secrets.token_hex(8)
    conn.executemany(Q.lease_insert, [(r[0], worker_id, token, now_s, expires_s) for r in rows])
    conn.executemany(Q.event_insert, [
        (r[1], r[3], _LEASED_EVENT, f'{{"id":{r[0]},"from":"ready","worker":{who}}}', now_s)
        for r in rows
    ])
    return [Claimed(*r, token, worker_id, expires) for r in rows]


@functools.lru_cache(maxsize=256)
def _json_text(text: str) -> str:
    return json.dumps(text)


def release_txn(conn, message_id: int, token: str) -> None:
    """Drop our lease, refusing if it is no longer ours (expired and taken over, or released)."""
    if conn.execute(Q.lease_release, (message_id, token)).rowcount != 1:
        raise StaleLease(f"message {message_id}: lease token is stale (lease expired or taken over)")


_UNKNOWN = object()


def ack_txn(conn, message_id: int, token: str, now: float, run_id=_UNKNOWN, node_id=None) -> None:
    """Ack a leased message. Callers that claimed it pass its run and node (the event names
    them); without them the UPDATE returns them, at the price of RETURNING's temporary table."""
    release_txn(conn, message_id, token)
    now_s = iso(now)
    if run_id is _UNKNOWN:
        row = conn.execute(Q.message_ack, (now_s, message_id)).fetchone()
        if row is None:
            raise InvalidTransition(f"message {message_id}: cannot 'ack', it is not leased")
        run_id, node_id = row
    elif conn.execute(Q.message_ack_known, (now_s, message_id)).rowcount != 1:
        raise InvalidTransition(f"message {message_id}: cannot 'ack', it is not leased")
    conn.execute(Q.event_insert, (run_id, node_id, _ACKED_EVENT, f'{{"id":{message_id},"from":"leased"}}', now_s))


def _ack_and_claim_txn(conn, done: Claimed, limit: int, lease_seconds: float, now: float) -> list[Claimed]:
    ack_txn(conn, done.id, done.token, now, done.run_id, done.target_node_id)
    return claim_txn(conn, done.worker_id, limit, lease_seconds, now)


def ack_many_txn(conn, items: list[Claimed], now: float) -> None:
    """Ack a batch: all or nothing. A stale lease among them refuses the whole batch."""
    if not items:
        return
    now_s = iso(now)
    released = conn.executemany(Q.lease_release, [(c.id, c.token) for c in items]).rowcount
    if released != len(items):
        raise StaleLease(f"ack of {len(items)} messages refused: {len(items) - released} of their "
                         f"lease tokens are stale (expired or taken over); nothing was acked")
    if conn.executemany(Q.message_ack_known, [(now_s, c.id) for c in items]).rowcount != len(items):
        raise InvalidTransition(f"ack of {len(items)} messages refused: not all of them are leased")
    conn.executemany(Q.event_insert, [(c.run_id, c.target_node_id, "message." + _ACK,
                                       f'{{"id":{c.id},"from":"leased"}}', now_s) for c in items])


def nack_txn(conn, message_id: int, token: str, now: float, *, delay: float = 0.0,
             error: str | None = None, count_attempt: bool = False, run_id=None, node_id=None) -> None:
    """Give the message back, visible again after `delay` seconds: a stored backoff, no sleeping.

    With count_attempt, the delivery counts as lost; past max_attempts the message is buried.
    """
    release_txn(conn, message_id, token)
    if count_attempt:
        attempts, max_attempts = conn.execute(Q.message_attempts, (message_id,)).fetchone() or (0, 1)
        if attempts + 1 >= max_attempts:
            bury_txn(conn, message_id, "leased", error, now)
            return
    row = conn.execute(Q.message_nack, {
        "id": message_id, "visible_at": iso(now + delay), "error": error,
        "counted": 1 if count_attempt else 0,
    }).fetchone()
    if row is None:
        raise InvalidTransition(f"message {message_id}: cannot 'nack', it is not leased")
    if run_id is None and node_id is None:
        run_id, node_id = row
    event_txn(conn, run_id, node_id, "message." + _NACK,
           {"id": message_id, "from": "leased", "delay": delay, "error": error}, iso(now))


def bury_txn(conn, message_id: int, source: str, error: str | None, now: float,
             count_attempt: bool = True) -> tuple:
    """Move a message to dead_letters. Returns the message row as buried."""
    to = machines.target(MSG, "bury", source)
    now_s = iso(now)
    row = conn.execute(Q.message_bury, {"id": message_id, "from": source, "error": error,
                                        "counted": 1 if count_attempt else 0, "now": now_s}).fetchone()
    if row is None:
        raise InvalidTransition(f"message {message_id}: cannot 'bury', it is not {source}")
    if source == "leased":
        conn.execute(Q.lease_drop, (message_id,))  # an orphan lease would make reclaim fail later
    mid, run_id, kind, node_id, _iteration, payload, attempts = row
    conn.execute(Q.dead_letter_insert, {"id": mid, "run_id": run_id, "kind": kind,
                                        "target_node_id": node_id, "payload": payload,
                                        "error": error, "attempts": attempts, "now": now_s})
    event_txn(conn, run_id, node_id, "message." + to,
           {"id": mid, "from": source, "attempts": attempts, "error": error}, now_s)
    return row


def extend_txn(conn, worker_id: str, until: float) -> int:
    """Heartbeat: push back the expiry of every lease the worker holds. Returns how many."""
    return conn.execute(Q.lease_renew_worker, {"until": iso(until), "worker_id": worker_id}).rowcount


def extend_held_txn(conn, held: Iterable[tuple[int, str]], until: float) -> int:
    """Heartbeat for the deliveries a worker is running: (message_id, token) pairs. Renewing
    by pair, not by worker, lets a lease the worker gave up on expire as it should."""
    cur = conn.executemany(Q.lease_renew_one, [{"until": iso(until), "message_id": mid, "token": token}
                                               for mid, token in held])
    return cur.rowcount


def extend_one_txn(conn, message_id: int, token: str, until: float) -> None:
    cur = conn.execute(Q.lease_renew_one, {"until": iso(until), "message_id": message_id, "token": token})
    if cur.rowcount != 1:
        raise StaleLease(f"message {message_id}: cannot extend, lease token is stale")


def reclaim_txn(conn, now: float, *, dead_workers: Iterable[str] = (),
                reason: str = "lease expired") -> list[Reclaimed]:
    """Take back expired leases, and at once those of workers known dead.

    Each lost delivery counts an attempt; past max_attempts the message is dead-lettered.
    """
    now_s = iso(now)
    found = {r[0]: (r, reason) for r in conn.execute(Q.leases_expired, {"now": now_s})}
    for w in dead_workers:
        for r in conn.execute(Q.leases_of_worker, {"worker_id": w}):
            found[r[0]] = (r, "its worker's process is gone")
    out = []
    for mid in sorted(found):
        (mid, worker, _token, run_id, node_id, iteration, attempts, max_attempts), why = found[mid]
        conn.execute(Q.lease_drop, (mid,))
        error = f"{why} (held by {worker})"
        lost = attempts + 1
        if lost >= max_attempts:
            bury_txn(conn, mid, "leased", f"{error}; gave up after {lost} lost "
                                          f"deliver{'y' if lost == 1 else 'ies'}", now)
            out.append(Reclaimed(mid, worker, run_id, node_id, iteration, True, lost))
            continue
        if conn.execute(Q.message_nack, {"id": mid, "visible_at": now_s, "error": error,
                                         "counted": 1}).fetchone() is None:
            raise InvalidTransition(f"message {mid}: cannot 'expire', it is not leased")
        event_txn(conn, run_id, node_id, "message." + _EXPIRE,
               {"id": mid, "from": "leased", "worker": worker, "error": error}, now_s)
        out.append(Reclaimed(mid, worker, run_id, node_id, iteration, False, lost))
    return out


MESSAGE_COLUMNS = ("id", "run_id", "kind", "target_node_id", "iteration", "payload", "status",
                   "priority", "visible_at", "held", "attempts", "max_attempts", "last_error",
                   "created_at", "finished_at")


def message_row(conn, message_id: int) -> dict:
    row = conn.execute(Q.message_get, {"id": message_id}).fetchone()
    if row is None:
        raise MessageNotFound(f"message {message_id} not found")
    return dict(zip(MESSAGE_COLUMNS, row))


def requeue_dead_txn(conn, message_id: int, now: float) -> None:
    now_s = iso(now)
    row = conn.execute(Q.message_get, {"id": message_id}).fetchone()
    if row is None:
        raise MessageNotFound(f"message {message_id} not found")
    machines.target(MSG, "requeue", row[6])
    if conn.execute(Q.message_requeue, {"id": message_id, "now": now_s}).rowcount != 1:
        raise InvalidTransition(f"message {message_id}: cannot 'requeue', it is not dead")
    conn.execute(Q.dead_letter_delete, {"id": message_id})
    event_txn(conn, row[1], row[3], "message." + _REQUEUE, {"id": message_id, "from": "dead"}, now_s)


# --- public operations: one transaction each ---------------------------------------------------

class QueueOps:
    """Mixed into Store. Each method is one transaction."""

    def enqueue(self, *messages: NewMessage) -> list[int]:
        return self.write(enqueue_txn, messages, self.clock.now())

    def claim(self, worker_id: str, limit: int = 1, lease_seconds: float = 30.0) -> list[Claimed]:
        return self.write(claim_txn, worker_id, limit, lease_seconds, self.clock.now())

    def ack(self, message_id: int, token: str) -> None:
        self.write(ack_txn, message_id, token, self.clock.now())

    def ack_and_claim(self, done: Claimed, limit: int = 1, lease_seconds: float = 30.0) -> list[Claimed]:
        """Ack `done` and lease up to `limit` more to the same worker, in one transaction: the
        loop of a worker that takes one message at a time, at one commit per message."""
        return self.write(_ack_and_claim_txn, done, limit, lease_seconds, self.clock.now())

    def ack_many(self, claimed: Iterable[Claimed]) -> None:
        self.write(ack_many_txn, list(claimed), self.clock.now())

    def nack(self, message_id: int, token: str, *, delay: float = 0.0, error: str | None = None,
             count_attempt: bool = False) -> None:
        self.write(nack_txn, message_id, token, self.clock.now(), delay=delay, error=error,
                   count_attempt=count_attempt)

    def extend(self, worker_id: str, lease_seconds: float = 30.0) -> int:
        return self.write(extend_txn, worker_id, self.clock.now() + lease_seconds)

    def extend_lease(self, message_id: int, token: str, lease_seconds: float = 30.0) -> None:
        self.write(extend_one_txn, message_id, token, self.clock.now() + lease_seconds)

    def reclaim(self, dead_workers: Iterable[str] = ()) -> list[Reclaimed]:
        return self.write(reclaim_txn, self.clock.now(), dead_workers=list(dead_workers))

    def requeue_dead(self, message_id: int) -> None:
        self.write(requeue_dead_txn, message_id, self.clock.now())

    def dead_letters(self) -> list[dict]:
        cols = ("id", "message_id", "run_id", "kind", "target_node_id", "payload", "error",
                "attempts", "created_at")
        rows = self.read(lambda c: [dict(zip(cols, r)) for r in c.execute(Q.dead_letters)])
        for row in rows:
            row["payload"] = json.loads(row["payload"]) if row["payload"] else None
        return rows

    def message(self, message_id: int) -> dict:
        return self.read(message_row, message_id)

    def queue_counts(self) -> dict[str, int]:
        counts = {s: 0 for s in ("ready", "leased", "acked", "dead")}
        counts.update(self.read(lambda c: dict(c.execute(Q.queue_counts).fetchall())))
        return counts

    def deliveries_of_worker(self, worker_id: str) -> set[tuple[str, str, int]]:
        """(run_id, node_id, iteration) of the node messages a worker holds leases on."""
        rows = self.read(lambda c: c.execute(Q.leases_of_worker, {"worker_id": worker_id}).fetchall())
        return {(r[3], r[4], r[5]) for r in rows if r[3] is not None}

    def leased_count(self) -> int:
        """Messages out on a lease now: cheap however much history the table holds."""
        return self.read(lambda c: c.execute(Q.leases_in_force).fetchone()[0])

    def next_visible_at(self) -> str | None:
        return self.read(lambda c: c.execute(Q.next_visible).fetchone()[0])
