"""The leased message queue: enqueue, claim, ack, nack, extend, reclaim, dead letters, and every
other statement that writes `messages`, `leases` or `dead_letters`.

`*_txn(conn, ...)` functions run inside a caller's transaction, so the engine can commit a node's
result and the messages it sends in one go; the Store's queue methods own a transaction each.
Every status change is checked against machines.MESSAGE, applied with `WHERE status = :from`,
row-count checked, and appended to `events` in the same transaction.
"""

from __future__ import annotations

import json
import secrets
from typing import Iterable, Sequence

from durableflow import machines
from durableflow.clock import iso
from durableflow.errors import InvalidTransition, MessageNotFound, StaleLease
from durableflow.records import Claimed, NewMessage, Reclaimed
from durableflow.storage.events import event_txn
from durableflow.storage import handoff
from durableflow.storage.handoff import json_text as _json_text, write_offers_txn
from durableflow.storage.rows import insert_rows

MSG = machines.MESSAGE
_LEASE = machines.target(MSG, "lease", "ready")
_ACK = machines.target(MSG, "ack", "leased")
_NACK = machines.target(MSG, "nack", "leased")
_EXPIRE = machines.target(MSG, "expire", "leased")
_REQUEUE = machines.target(MSG, "requeue", "dead")
_LEASED_EVENT = "message." + _LEASE
_ACKED_EVENT = "message." + _ACK

# messages.held: why a ready message is out of the claim index (see sqlite/queue.sql).
CLAIMABLE, PAUSED, THROTTLED, LATER, LIMITED = 0, 1, 2, 3, 4
# Parked messages that come due join the claim index this many per claim transaction, so a
# hundred thousand timers ringing at once cost a claim no more than this many row updates.
PROMOTE_BATCH = 500
# Priorities with aging: one claim transaction in this many (per connection) starts with the
# oldest claimable message whatever its priority. Under a steady high-priority load, normal and
# low work still gets a tenth of the claims, oldest first, so nothing waits forever.
FAIR_EVERY = 10


# --- transaction helpers -----------------------------------------------------------------------

def enqueue_txn(conn, messages: Sequence[NewMessage], now: float) -> list[int]:
    """Insert ready messages. Creating a message is not a status change, so no event is written:
    the row itself (created_at) records it, and the engine's `node.pending` names the node."""
    now_s = iso(now)
    if conn.handoff is not None and conn.handoff.offers:
        write_offers_txn(conn)   # queued before these: claimed before them too
    if len(messages) == 1:  # one per transaction, the commonest call: no list to build
        return [conn.execute(conn.sql.queue.enqueue, _insert_values(messages[0], now_s)).lastrowid]
    rows = [_insert_values(m, now_s) for m in messages]
    if not rows:
        return []
    conn.executemany(conn.sql.queue.enqueue, rows)
    # messages.id has no AUTOINCREMENT: each insert takes max(id) + 1, and we hold the write lock,
    # so the batch got consecutive ids ending at the last one.
    last = conn.execute(conn.sql.queue.last_insert_id).fetchone()[0]
    return list(range(last - len(rows) + 1, last + 1))


def _insert_values(m: NewMessage, now_s: str) -> tuple:
    if m.visible_at is None:
        visible_s, held = now_s, PAUSED if m.held else CLAIMABLE
    else:   # due later: parked, out of the claim index until then
        visible_s = iso(m.visible_at)
        held = PAUSED if m.held else LATER if visible_s > now_s else CLAIMABLE
    return (m.run_id, m.kind, m.target_node_id, m.iteration, m.payload, m.priority, visible_s, held,
            m.max_attempts, now_s)


def claim_txn(conn, worker_id: str, limit: int, lease_seconds: float, now: float) -> list[Claimed]:
    if limit < 1:
        return []  # SQLite reads a negative LIMIT as "no limit": it would lease the whole queue
    now_s = iso(now)
    expires = now + lease_seconds
    expires_s = iso(expires)
    who = _json_text(worker_id)
    q = conn.sql.queue
    promote_due_txn(conn, now_s)
    # Priority with aging: every FAIR_EVERY-th claim on a connection leads with the oldest
    # claimable message, whatever its priority.
    conn.claims += 1
    fair = conn.claims % FAIR_EVERY == 0
    if limit == 1:  # the worker loop's case, kept lean: one row, no sort, no lists
        r = conn.execute(q.claim_oldest, {"now": now_s}).fetchone() if fair else None
        if r is None:
            r = conn.execute(q.claim_one, {"now": now_s}).fetchone()
        if r is None:
            return []
        token = secrets.token_hex(8)
        conn.add_lease((r[0], worker_id, token, now_s, expires_s))
        conn.add_event((r[1], r[3], _LEASED_EVENT,
                                f'{{"id":{r[0]},"from":"ready","worker":{who}}}', now_s))
        return [Claimed(*r, token, worker_id, expires)]
    first = conn.execute(q.claim_oldest, {"now": now_s}).fetchall() if fair else []
    rows = conn.execute(q.claim, {"now": now_s, "limit": limit - len(first)}).fetchall()
    # RETURNING gives no order guarantee; callers get the claim order.
    rows.sort(key=lambda r: (-r[6], r[0]))
    rows = first + rows
    if not rows:
        return []
    token = secrets.token_hex(8)
    for r in rows:
        conn.add_lease((r[0], worker_id, token, now_s, expires_s))
    conn.add_events([
        (r[1], r[3], _LEASED_EVENT, f'{{"id":{r[0]},"from":"ready","worker":{who}}}', now_s)
        for r in rows
    ])
    return [Claimed(*r, token, worker_id, expires) for r in rows]


def promote_due_txn(conn, now_s: str) -> None:
    """Parked messages that are due join the claim index. Looked for once per transaction: a
    claiming transaction's rounds take milliseconds, and what comes due meanwhile is promoted
    by the next."""
    if conn.promoted:
        return
    conn.promoted = True
    q = conn.sql.queue
    if conn.execute(q.due_later_first, (now_s,)).fetchone() is not None:
        conn.execute(q.promote_due, {"now": now_s, "limit": PROMOTE_BATCH})


def take_offers_txn(conn, limit: int, now_s: str) -> list[handoff.Offer]:
    """Claim from this transaction's offers (storage.handoff) if nothing in the database is
    claimable now (it would come first); else take none, and write the offers as ready messages,
    for claim_txn to take in priority and arrival order."""
    promote_due_txn(conn, now_s)
    if conn.execute(conn.sql.queue.claimable_first, (now_s,)).fetchone() is not None:
        write_offers_txn(conn)
        conn.handoff.backlog = True
        return []
    return handoff.take(conn.handoff, limit)


def release_txn(conn, message_id: int, token: str) -> None:
    """Drop our lease, refusing if it is no longer ours (expired and taken over, or released).
    A lease taken in this same transaction was never written: nothing to delete."""
    if conn.give_back_lease(message_id, token):
        return
    if conn.execute(conn.sql.queue.lease_release, (message_id, token)).rowcount != 1:
        raise StaleLease(f"message {message_id}: lease token is stale (lease expired or taken over)")


_UNKNOWN = object()


def ack_txn(conn, message_id: int, token: str, now: float, run_id=_UNKNOWN, node_id=None) -> None:
    """Ack a leased message. Callers that claimed it pass its run and node (the event names
    them); without them the UPDATE returns them, at the price of RETURNING's temporary table."""
    release_txn(conn, message_id, token)
    now_s = iso(now)
    if run_id is _UNKNOWN:
        row = conn.execute(conn.sql.queue.message_ack, (now_s, message_id)).fetchone()
        if row is None:
            raise InvalidTransition(f"message {message_id}: cannot 'ack', it is not leased")
        run_id, node_id = row
    elif conn.execute(conn.sql.queue.message_ack_known, (now_s, message_id)).rowcount != 1:
        raise InvalidTransition(f"message {message_id}: cannot 'ack', it is not leased")
    conn.add_event((run_id, node_id, _ACKED_EVENT, f'{{"id":{message_id},"from":"leased"}}', now_s))


def ack_and_claim_txn(conn, done: Claimed, limit: int, lease_seconds: float, now: float) -> list[Claimed]:
    ack_txn(conn, done.id, done.token, now, done.run_id, done.target_node_id)
    return claim_txn(conn, done.worker_id, limit, lease_seconds, now)


def ack_many_txn(conn, items: list[Claimed], now: float) -> None:
    """Ack a batch: all or nothing. A stale lease among them refuses the whole batch."""
    if not items:
        return
    now_s = iso(now)
    written = [(c.id, c.token) for c in items if not conn.give_back_lease(c.id, c.token)]
    released = len(items) - len(written)
    if written:
        released += conn.executemany(conn.sql.queue.lease_release, written).rowcount
    if released != len(items):
        raise StaleLease(f"ack of {len(items)} messages refused: {len(items) - released} of their "
                         f"lease tokens are stale (expired or taken over); nothing was acked")
    if conn.executemany(conn.sql.queue.message_ack_known, [(now_s, c.id) for c in items]).rowcount != len(items):
        raise InvalidTransition(f"ack of {len(items)} messages refused: not all of them are leased")
    conn.add_events([(c.run_id, c.target_node_id, "message." + _ACK,
                                       f'{{"id":{c.id},"from":"leased"}}', now_s) for c in items])


def nack_txn(conn, message_id: int, token: str, now: float, *, delay: float = 0.0,
             error: str | None = None, count_attempt: bool = False, run_id=None, node_id=None) -> None:
    """Give the message back, visible again after `delay` seconds: a stored backoff, no sleeping.

    With count_attempt, the delivery counts as lost; past max_attempts the message is buried.
    """
    release_txn(conn, message_id, token)
    if count_attempt:
        attempts, max_attempts = conn.execute(conn.sql.queue.message_attempts, (message_id,)).fetchone() or (0, 1)
        if attempts + 1 >= max_attempts:
            bury_txn(conn, message_id, "leased", error, now)
            return
    row = conn.execute(conn.sql.queue.message_nack, {
        "id": message_id, "visible_at": iso(now + delay), "now": iso(now), "error": error,
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
    row = conn.execute(conn.sql.queue.message_bury, {"id": message_id, "from": source, "error": error,
                                        "counted": 1 if count_attempt else 0, "now": now_s}).fetchone()
    if row is None:
        raise InvalidTransition(f"message {message_id}: cannot 'bury', it is not {source}")
    if source == "leased":
        # An orphan lease would make reclaim fail later.
        if not conn.give_back_lease(message_id, None):
            conn.execute(conn.sql.queue.lease_drop, (message_id,))
    mid, run_id, kind, node_id, _iteration, payload, attempts = row
    conn.execute(conn.sql.queue.dead_letter_insert, {"id": mid, "run_id": run_id, "kind": kind,
                                        "target_node_id": node_id, "payload": payload,
                                        "error": error, "attempts": attempts, "now": now_s})
    event_txn(conn, run_id, node_id, "message." + to,
           {"id": mid, "from": source, "attempts": attempts, "error": error}, now_s)
    return row


def extend_txn(conn, worker_id: str, until: float) -> int:
    """Heartbeat: push back the expiry of every lease the worker holds. Returns how many."""
    conn.flush_leases()
    return conn.execute(conn.sql.queue.lease_renew_worker, {"until": iso(until), "worker_id": worker_id}).rowcount


def extend_held_txn(conn, held: Iterable[tuple[int, str]], until: float) -> int:
    """Heartbeat for the deliveries a worker is running: (message_id, token) pairs. Renewing
    by pair, not by worker, lets a lease the worker gave up on expire as it should."""
    conn.flush_leases()
    cur = conn.executemany(conn.sql.queue.lease_renew_one, [{"until": iso(until), "message_id": mid, "token": token}
                                               for mid, token in held])
    return cur.rowcount


def extend_one_txn(conn, message_id: int, token: str, until: float) -> None:
    conn.flush_leases()
    cur = conn.execute(conn.sql.queue.lease_renew_one, {"until": iso(until), "message_id": message_id, "token": token})
    if cur.rowcount != 1:
        raise StaleLease(f"message {message_id}: cannot extend, lease token is stale")


def reclaim_txn(conn, now: float, *, dead_workers: Iterable[str] = (),
                reason: str = "lease expired") -> list[Reclaimed]:
    """Take back expired leases, and at once those of workers known dead.

    Each lost delivery counts an attempt; past max_attempts the message is dead-lettered.
    """
    now_s = iso(now)
    conn.flush_leases()
    found = {r[0]: (r, reason) for r in conn.execute(conn.sql.queue.leases_expired, {"now": now_s})}
    for w in dead_workers:
        for r in conn.execute(conn.sql.queue.leases_of_worker, {"worker_id": w}):
            found[r[0]] = (r, "its worker's process is gone")
    out = []
    for mid in sorted(found):
        (mid, worker, _token, run_id, node_id, iteration, attempts, max_attempts), why = found[mid]
        conn.execute(conn.sql.queue.lease_drop, (mid,))
        error = f"{why} (held by {worker})"
        lost = attempts + 1
        if lost >= max_attempts:
            bury_txn(conn, mid, "leased", f"{error}; gave up after {lost} lost "
                                          f"deliver{'y' if lost == 1 else 'ies'}", now)
            out.append(Reclaimed(mid, worker, run_id, node_id, iteration, True, lost))
            continue
        if conn.execute(conn.sql.queue.message_nack, {"id": mid, "visible_at": now_s, "now": now_s,
                                                      "error": error, "counted": 1}).fetchone() is None:
            raise InvalidTransition(f"message {mid}: cannot 'expire', it is not leased")
        event_txn(conn, run_id, node_id, "message." + _EXPIRE,
               {"id": mid, "from": "leased", "worker": worker, "error": error}, now_s)
        out.append(Reclaimed(mid, worker, run_id, node_id, iteration, False, lost))
    return out


MESSAGE_COLUMNS = ("id", "run_id", "kind", "target_node_id", "iteration", "payload", "status",
                   "priority", "visible_at", "held", "attempts", "max_attempts", "last_error",
                   "created_at", "finished_at")


def message_row(conn, message_id: int) -> dict:
    row = conn.execute(conn.sql.queue.message_get, {"id": message_id}).fetchone()
    if row is None:
        raise MessageNotFound(f"message {message_id} not found")
    return dict(zip(MESSAGE_COLUMNS, row))


def requeue_dead_txn(conn, message_id: int, now: float) -> None:
    now_s = iso(now)
    row = conn.execute(conn.sql.queue.message_get, {"id": message_id}).fetchone()
    if row is None:
        raise MessageNotFound(f"message {message_id} not found")
    machines.target(MSG, "requeue", row[6])
    if conn.execute(conn.sql.queue.message_requeue, {"id": message_id, "now": now_s}).rowcount != 1:
        raise InvalidTransition(f"message {message_id}: cannot 'requeue', it is not dead")
    conn.execute(conn.sql.queue.dead_letter_delete, {"id": message_id})
    event_txn(conn, row[1], row[3], "message." + _REQUEUE, {"id": message_id, "from": "dead"}, now_s)




# --- a run's messages: holds, wake-ups, throttling, discards ---------------------------------------

def hold_run_messages_txn(conn, run_id: str, held: bool, now: str | None = None) -> int:
    """Make a run's ready messages unclaimable (its run is paused), or claimable again: those due
    by `now` (ISO text) at once, the others parked until their time."""
    if held:
        return conn.execute(conn.sql.queue.messages_hold_run, {"run_id": run_id, "held": PAUSED}).rowcount
    if now is None:
        raise TypeError("hold_run_messages_txn: releasing a run's messages needs now (its parked "
                        "ones stay parked until their time)")
    return conn.execute(conn.sql.queue.messages_unhold_run, {"run_id": run_id, "now": now}).rowcount


def wake_waiting_txn(conn, run_id: str, now: str) -> int:
    """The messages of a run's waiting nodes become visible now; each looks again at what it waits for."""
    return conn.execute(conn.sql.queue.messages_wake_waiting, {"run_id": run_id, "now": now}).rowcount


def set_message_payload_txn(conn, message_id: int, payload_json: str) -> None:
    conn.execute(conn.sql.queue.message_set_payload, (payload_json, message_id))


def release_throttled_txn(conn, run_id: str) -> int:
    """Messages parked by the run's maxConcurrency become claimable again."""
    return conn.execute(conn.sql.queue.messages_release_throttled, (run_id,)).rowcount


def throttle_message_txn(conn, message_id: int, token: str, run_id: str, node_id: str, now: str) -> None:
    """Give a claimed message back, parked until a running node of its run finishes."""
    release_txn(conn, message_id, token)
    machines.target(MSG, "nack", "leased")
    if conn.execute(conn.sql.queue.message_throttle, (message_id,)).rowcount != 1:
        raise InvalidTransition(f"message {message_id}: cannot 'nack', it is not leased")
    event_txn(conn, run_id, node_id, "message.ready", {"id": message_id, "from": "leased", "throttled": True}, now)


def wait_for_limit_txn(conn, message_id: int, token: str, run_id: str, node_id: str, key: str, now: str) -> None:
    """Give a claimed message back to wait (held, unclaimable) for a slot of concurrency key `key`."""
    release_txn(conn, message_id, token)
    machines.target(MSG, "nack", "leased")
    if conn.execute(conn.sql.queue.message_wait_for_limit, (message_id,)).rowcount != 1:
        raise InvalidTransition(f"message {message_id}: cannot 'nack', it is not leased")
    event_txn(conn, run_id, node_id, "message.ready", {"id": message_id, "from": "leased", "waitsFor": key}, now)


def limit_free_txn(conn, message_id: int) -> bool:
    """A message that waited for a concurrency slot is claimable again."""
    return conn.execute(conn.sql.queue.message_limit_free, (message_id,)).rowcount == 1


def discard_message_txn(conn, message_id: int, now: str) -> tuple[str, str] | None:
    """Ack a ready message that will not be delivered; (run_id, node_id), or None if it was not ready."""
    machines.target(MSG, "discard", "ready")
    row = conn.execute(conn.sql.queue.message_discard, {"id": message_id, "now": now}).fetchone()
    if row is not None:
        event_txn(conn, row[0], row[1], "message.acked", {"id": message_id, "from": "ready", "discarded": True}, now)
    return row


def discard_run_messages_txn(conn, run_id: str, now: str) -> list[tuple[int, str]]:
    """Ack every ready message of a run that will not run (cancelled or failed run)."""
    machines.target(MSG, "discard", "ready")
    rows = conn.execute(conn.sql.queue.run_messages_discard, {"run_id": run_id, "now": now}).fetchall()
    conn.add_events([
        (run_id, nid, "message.acked", f'{{"id":{mid},"from":"ready","discarded":true}}', now)
        for mid, nid in rows])
    return rows


def has_open_messages(conn, run_id: str) -> bool:
    """Whether any message of the run is still ready or leased (or queued in this transaction
    and not written yet: storage.handoff)."""
    if conn.handoff is not None and conn.handoff.open.get(run_id):
        return True
    return bool(conn.execute(conn.sql.queue.run_open_messages, (run_id,)).fetchone()[0])


# --- reads -------------------------------------------------------------------------------------------

DEAD_LETTER_COLUMNS = ("id", "message_id", "run_id", "kind", "target_node_id", "payload", "error",
                       "attempts", "created_at")


def dead_letters(conn) -> list[dict]:
    rows = [dict(zip(DEAD_LETTER_COLUMNS, r)) for r in conn.execute(conn.sql.queue.dead_letters)]
    for row in rows:
        row["payload"] = json.loads(row["payload"]) if row["payload"] else None
    return rows


def queue_counts(conn) -> dict[str, int]:
    counts = {s: 0 for s in ("ready", "leased", "acked", "dead")}
    counts.update(dict(conn.execute(conn.sql.queue.queue_counts).fetchall()))
    return counts


def leases_of_worker(conn, worker_id: str) -> list[tuple]:
    conn.flush_leases()
    return conn.execute(conn.sql.queue.leases_of_worker, {"worker_id": worker_id}).fetchall()


def leased_count(conn) -> int:
    """Messages out on a lease now: cheap however much history the table holds."""
    conn.flush_leases()
    return conn.execute(conn.sql.queue.leases_in_force).fetchone()[0]


def next_visible_at(conn) -> str | None:
    return conn.execute(conn.sql.queue.next_visible).fetchone()[0]


def import_message_txn(conn, row: dict, now: str) -> int:
    """Insert a message of an imported run (its old id left behind); returns the new id. A ready
    message due later is parked, whatever the export says (older ones did not park)."""
    if row.get("status") == "ready" and row.get("held") in (None, CLAIMABLE, LATER):
        row = dict(row, held=LATER if str(row.get("visible_at")) > now else CLAIMABLE)
    elif row.get("status") != "ready" and row.get("held") == LATER:
        row = dict(row, held=CLAIMABLE)   # only a ready message waits in messages_due_later
    return insert_rows(conn, "messages", [row], returning_id=True)


def import_dead_letters_txn(conn, rows: list[dict]) -> None:
    insert_rows(conn, "dead_letters", rows)
