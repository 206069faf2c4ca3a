"""The `signals` table: signals sent to runs, and taken by their WaitForSignal nodes."""

from __future__ import annotations

from durableflow.storage.events import dumps


def insert_signal_txn(conn, run_id: str, name: str, payload_json: str, now: str) -> int:
    cur = conn.execute(conn.sql.signals.signal_insert, (run_id, name, payload_json, now))
    conn.add_event((run_id, None, "signal.received",
                                                dumps({"id": cur.lastrowid, "name": name}), now))
    return cur.lastrowid


def take_signal_txn(conn, run_id: str, name: str, instance_id: int) -> str | None:
    """The payload (JSON text) of the oldest signal `name` not yet taken, now taken; or None."""
    row = conn.execute(conn.sql.signals.signal_take,
                       {"run_id": run_id, "name": name, "instance": instance_id}).fetchone()
    return None if row is None else (row[0] if row[0] is not None else "null")
