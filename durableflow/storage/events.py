"""The one way rows are appended to `events`, and the JSON spelling stored everywhere."""

from __future__ import annotations

import json
from typing import Any

from durableflow.storage.queries import Q


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def event_txn(conn, run_id, node_id, type_: str, data: dict | None, at: str) -> None:
    conn.execute(Q.event_insert, (run_id, node_id, type_, None if data is None else dumps(data), at))
