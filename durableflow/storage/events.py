"""The one way rows are appended to `events`, and the JSON spelling stored everywhere."""

from __future__ import annotations

import json
from typing import Any

from durableflow.storage.queries import Q


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_txn(conn, run_id, node_id, type_: str, data: dict | None, at: str, seq: int | None = None) -> None:
    """Append one event. `seq` is given only where the number itself matters (see prune)."""
    text = None if data is None else dumps(data)
    if seq is None:
        conn.execute(Q.event_insert, (run_id, node_id, type_, text, at))
    else:
        conn.execute(Q.event_insert_at, (seq, run_id, node_id, type_, text, at))
