"""Limits in rows, so that every process sharing the file honours them: the running attempts of
each concurrency key and who waits for a slot, rate-limit token buckets, circuit breakers and
the calls they count."""

from __future__ import annotations

from durableflow import machines
from durableflow.errors import InvalidTransition
from durableflow.storage import queue
from durableflow.storage.events import event_txn

BREAKER_COLUMNS = ("key", "status", "failure_threshold", "minimum_calls", "window_s", "open_duration_s",
                   "half_open_successes", "opened_at", "trials", "successes", "declared_by", "updated_at")


# --- concurrency keys ------------------------------------------------------------------------------

def running_with_key(conn, key: str) -> int:
    return conn.execute(conn.sql.limits.running_with_key, (key,)).fetchone()[0]


def add_waiter_txn(conn, message_id: int, key: str, max_running: int, since: str,
                   give_up_at: str | None) -> None:
    conn.execute(conn.sql.limits.waiter_insert, (message_id, key, max_running, since, give_up_at))


def waiter(conn, message_id: int) -> tuple[str, str | None] | None:
    """(since, give_up_at) of a message that waited for a slot, or None."""
    return conn.execute(conn.sql.limits.waiter_get, (message_id,)).fetchone()


def drop_waiter_txn(conn, message_id: int) -> None:
    conn.execute(conn.sql.limits.waiter_delete, (message_id,))


def free_slots_txn(conn, key: str, leaving: int) -> int:
    """Attempt `leaving` gives back its slot of `key` (before or after its row stops saying
    running): the oldest waiters, as many as there are free slots, become claimable (oldest
    first: none is passed over for ever). Returns how many."""
    rows = conn.execute(conn.sql.limits.waiters_first, (key, 64)).fetchall()
    if not rows:
        return 0
    running = conn.execute(conn.sql.limits.running_with_key_but, (key, leaving)).fetchone()[0]
    free = rows[0][1] - running
    woken = 0
    for message_id, _max in rows[:max(0, free)]:
        woken += queue.limit_free_txn(conn, message_id)   # its waiter row goes when it starts
    return woken


def waiters_given_up(conn, now: str, limit: int = 100) -> list[tuple[int, str, str]]:
    """(message_id, key, since) of waiters past their maxWait."""
    return conn.execute(conn.sql.limits.waiters_given_up, (now, limit)).fetchall()


# --- rate limits -----------------------------------------------------------------------------------

def bucket(conn, key: str) -> tuple | None:
    """(tokens, rate, per_s, burst, tokens_at, declared_by) of a rate limit, or None."""
    return conn.execute(conn.sql.limits.bucket_get, (key,)).fetchone()


def put_bucket_txn(conn, key: str, tokens: float, rate: float, per_s: float, burst: float,
                   declared_by: str, at: float, now: str) -> None:
    conn.execute(conn.sql.limits.bucket_put, {"key": key, "tokens": tokens, "rate": rate, "per_s": per_s,
                                              "burst": burst, "declared_by": declared_by, "at": at,
                                              "now": now})


def take_tokens_txn(conn, key: str, tokens: float, at: float, now: str) -> None:
    """The bucket holds `tokens` as of `at` (epoch seconds)."""
    conn.execute(conn.sql.limits.bucket_take, {"key": key, "tokens": tokens, "at": at, "now": now})


# --- circuit breakers ------------------------------------------------------------------------------

def breaker(conn, key: str) -> dict | None:
    row = conn.execute(conn.sql.limits.breaker_get, (key,)).fetchone()
    return None if row is None else dict(zip(BREAKER_COLUMNS, row))


def all_breakers(conn) -> list[dict]:
    return [dict(zip(BREAKER_COLUMNS, r)) for r in conn.execute(conn.sql.limits.breakers_all)]


def declare_breaker_txn(conn, key: str, settings: dict, declared_by: str, now: str) -> None:
    conn.execute(conn.sql.limits.breaker_declare, {"key": key, **settings, "declared_by": declared_by, "now": now})


def breaker_transition_txn(conn, key: str, trigger: str, source: str, now: str, *,
                           opened_at: str | None, trials: int = 0, successes: int = 0,
                           data: dict | None = None) -> str:
    to = machines.target(machines.BREAKER, trigger, source)
    if conn.execute(conn.sql.limits.breaker_transition, {
            "to": to, "from": source, "key": key, "opened_at": opened_at, "trials": trials,
            "successes": successes, "now": now}).rowcount != 1:
        raise InvalidTransition(f"circuit breaker {key!r}: cannot '{trigger}', it is no longer {source}")
    event_txn(conn, None, None, f"breaker.{to}", {"key": key, "from": source, **(data or {})}, now)
    return to


def breaker_counts_txn(conn, key: str, trials: int, successes: int, now: str) -> None:
    conn.execute(conn.sql.limits.breaker_counts, {"key": key, "trials": trials, "successes": successes, "now": now})


def record_call_txn(conn, key: str, at: str, ok: bool) -> None:
    conn.execute(conn.sql.limits.breaker_call_insert, (key, at, 1 if ok else 0))


def calls_in_window(conn, key: str, since: str) -> tuple[int, int]:
    """(calls, failed calls) of a breaker after `since`."""
    calls, failed = conn.execute(conn.sql.limits.breaker_window, (key, since)).fetchone()
    return calls, failed


def forget_calls_txn(conn, key: str, until: str) -> None:
    conn.execute(conn.sql.limits.breaker_calls_forget, (key, until))
