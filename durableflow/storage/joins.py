"""The `joins` and `join_inputs` tables: what the incoming connections of a node have brought."""

from __future__ import annotations

import functools


def join_arrive(conn, run_id: str, node_id: str, iteration: int, delivered: bool) -> tuple[int, int, bool]:
    """Count one more incoming connection resolved; (connections resolved, connections that
    delivered, fired) of the join with it.

    The first arrival at a join in a transaction counts in the row and reads it back; later ones
    (a fan-in's other branches recorded in the same transaction) count in memory, and the row
    gets their sum in one UPDATE before anything reads it (flush_txn: at the commit, or before
    unfired_join)."""
    key = (run_id, node_id, iteration)
    d = 1 if delivered else 0
    cached = conn.joins
    entry = cached.get(key) if cached is not None else None
    if entry is None:
        resolved, count, fired = conn.execute(conn.sql.joins.join_arrive, {
            "run_id": run_id, "node_id": node_id, "iteration": iteration, "delivered": d}).fetchone()
        if cached is None:
            cached = conn.joins = {}
        # [resolved, delivered, fired] as they stand, [resolved, delivered] not yet in the row
        cached[key] = [resolved, count, bool(fired), 0, 0]
        conn.on_rollback(functools.partial(cached.pop, key, None))
        return resolved, count, bool(fired)
    _add(entry, 1, d)
    conn.on_rollback(functools.partial(_add, entry, -1, -d))
    return entry[0], entry[1], entry[2]


def _add(entry: list, resolved: int, delivered: int) -> None:
    entry[0] += resolved
    entry[1] += delivered
    entry[3] += resolved
    entry[4] += delivered


def flush_txn(conn) -> None:
    """Write the arrivals counted in memory (see join_arrive)."""
    for key, entry in conn.joins.items():
        resolved, delivered = entry[3], entry[4]
        if resolved:
            conn.execute(conn.sql.joins.join_add, (resolved, delivered) + key)
            entry[3] = entry[4] = 0
            conn.on_rollback(functools.partial(_owe, entry, resolved, delivered))


def _owe(entry: list, resolved: int, delivered: int) -> None:
    entry[3] += resolved
    entry[4] += delivered


def join_fire(conn, run_id: str, node_id: str, iteration: int) -> None:
    """The join's node was queued or skipped: later arrivals only count."""
    conn.execute(conn.sql.joins.join_fire, (run_id, node_id, iteration))
    entry = conn.joins.get((run_id, node_id, iteration)) if conn.joins is not None else None
    if entry is not None:
        entry[2] = True
        conn.on_rollback(functools.partial(entry.__setitem__, 2, False))


def join_input_put(conn, run_id: str, node_id: str, iteration: int, key: str, payload_json: str) -> None:
    conn.execute(conn.sql.joins.join_input_put, (run_id, node_id, iteration, key, payload_json))


def join_inputs_get(conn, run_id: str, node_id: str, iteration: int) -> list[tuple[str, str]]:
    """(key, payload JSON) of the deliveries to a join, in delivery order."""
    return conn.execute(conn.sql.joins.join_inputs_get, (run_id, node_id, iteration)).fetchall()


def unfired_join(conn, run_id: str) -> tuple[str, int, int] | None:
    """A join of the run that holds deliveries but never ran or skipped its node."""
    if conn.joins:
        flush_txn(conn)
    return conn.execute(conn.sql.joins.join_unfired, (run_id,)).fetchone()
