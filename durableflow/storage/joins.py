"""The `joins` and `join_inputs` tables: what the incoming connections of a node have brought."""

from __future__ import annotations


def join_arrive(conn, run_id: str, node_id: str, iteration: int, delivered: bool) -> tuple[int, int, bool]:
    """Count one more incoming connection resolved; (connections resolved, connections that
    delivered, fired) of the join with it."""
    resolved, count, fired = conn.execute(conn.sql.joins.join_arrive, {
        "run_id": run_id, "node_id": node_id, "iteration": iteration,
        "delivered": 1 if delivered else 0}).fetchone()
    return resolved, count, bool(fired)


def join_fire(conn, run_id: str, node_id: str, iteration: int) -> None:
    """The join's node was queued or skipped: later arrivals only count."""
    conn.execute(conn.sql.joins.join_fire, (run_id, node_id, iteration))


def join_input_put(conn, run_id: str, node_id: str, iteration: int, key: str, payload_json: str) -> None:
    conn.execute(conn.sql.joins.join_input_put, (run_id, node_id, iteration, key, payload_json))


def join_inputs_get(conn, run_id: str, node_id: str, iteration: int) -> list[tuple[str, str]]:
    """(key, payload JSON) of the deliveries to a join, in delivery order."""
    return conn.execute(conn.sql.joins.join_inputs_get, (run_id, node_id, iteration)).fetchall()


def unfired_join(conn, run_id: str) -> tuple[str, int, int] | None:
    """A join of the run that holds deliveries but never ran or skipped its node."""
    return conn.execute(conn.sql.joins.join_unfired, (run_id,)).fetchone()
