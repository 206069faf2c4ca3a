"""The `loop_items` table: a ForEach attempt's items, and the body run started for each."""

from __future__ import annotations

from typing import Iterable


def insert_items_txn(conn, run_id: str, node_id: str, iteration: int, attempt: int,
                     items_json: Iterable[str], outputs_json: Iterable[str | None] = ()) -> int:
    """One row per item; `outputs_json` gives the result of items already done (a loop state
    carried over from an older durableflow), by position."""
    done = list(outputs_json)
    rows = [(run_id, node_id, iteration, attempt, idx, item, done[idx] if idx < len(done) else None)
            for idx, item in enumerate(items_json)]
    conn.executemany(conn.sql.loops.loop_item_insert, rows)
    return len(rows)


def item_json(conn, run_id: str, node_id: str, iteration: int, attempt: int, idx: int) -> str:
    return conn.execute(conn.sql.loops.loop_item_get, (run_id, node_id, iteration, attempt, idx)).fetchone()[0]


def item_started_txn(conn, run_id: str, node_id: str, iteration: int, attempt: int, idx: int,
                     child_run_id: str) -> None:
    conn.execute(conn.sql.loops.loop_item_started, {"child": child_run_id, "run_id": run_id,
                                                    "node_id": node_id, "iteration": iteration,
                                                    "attempt": attempt, "idx": idx})


def results(conn, run_id: str, node_id: str, iteration: int, attempt: int) -> list[tuple]:
    """(idx, status, outputs JSON, error, error type, body run id) of every item's body run,
    in item order."""
    return conn.execute(conn.sql.loops.loop_results, (run_id, node_id, iteration, attempt)).fetchall()
