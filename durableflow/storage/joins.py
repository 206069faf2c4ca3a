"""The `joins` and `join_inputs` tables: what the incoming connections of a node have brought."""

from __future__ import annotations


def join_get(conn, run_id: str, node_id: str, iteration: int) -> tuple[int, int, bool]:
    """(connections resolved, connections that delivered, fired) of one join."""
    row = conn.execute(conn.sql.joins.join_get, (run_id, node_id, iteration)).fetchone()
    if row is None:
        return 0, 0, False
    return row[0], row[1], bool(row[2])


def join_put(conn, run_id: str, node_id: str, iteration: int, resolved: int, delivered: int,
             fired: bool) -> None:
    conn.execute(conn.sql.joins.join_put, {"run_id": run_id, "node_id": node_id, "iteration": iteration,
                                           "resolved": resolved, "delivered": delivered,
                                           "fired": 1 if fired else 0})


def join_input_put(conn, run_id: str, node_id: str, iteration: int, key: str, payload_json: str) -> None:
    conn.execute(conn.sql.joins.join_input_put, (run_id, node_id, iteration, key, payload_json))


def join_inputs_get(conn, run_id: str, node_id: str, iteration: int) -> list[tuple[str, str]]:
    """(key, payload JSON) of the deliveries to a join, in delivery order."""
    return conn.execute(conn.sql.joins.join_inputs_get, (run_id, node_id, iteration)).fetchall()


def unfired_join(conn, run_id: str) -> tuple[str, int, int] | None:
    """A join of the run that holds deliveries but never ran or skipped its node."""
    return conn.execute(conn.sql.joins.join_unfired, (run_id,)).fetchone()
