"""The `events` table: the one way rows are appended to it, the reads that tail it, and the JSON
spelling stored everywhere."""

from __future__ import annotations

import json
import json.scanner
from typing import Any

EVENT_COLUMNS = ("seq", "run_id", "node_id", "type", "data", "at")


def dumps(value: Any) -> str:
    """Compact JSON as stored: UTF-8 text (sqlite3 shows accents and emoji as they are), except a
    value holding a lone surrogate, which UTF-8 cannot store: that one keeps its escapes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text


_scan = json.scanner.make_scanner(json.JSONDecoder())


def loads_at(text: str, index: int) -> tuple[Any, int]:
    """The JSON value that starts at text[index], and the index where it ends (what follows is
    not read); ValueError if no value starts there."""
    try:
        return _scan(text, index)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None


def loads(text: str) -> Any:
    """JSON text as stored, read back. The decoder's scanner is called directly: on the small
    documents nodes pass around that is about five times as fast as json.loads, which wraps it
    in two Python calls and a regular expression (a 1,000-node run's snapshot decodes 2,000).
    Text it does not take whole (spaces around it, say) goes through json.loads, which
    raises as usual for what is not JSON."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def event_txn(conn, run_id, node_id, type_: str, data: dict | None, at: str, seq: int | None = None) -> None:
    """Append one event. `seq` is given only where the number itself matters (see prune)."""
    text = None if data is None else dumps(data)
    if seq is None:
        conn.add_event((run_id, node_id, type_, text, at))
    else:
        conn.flush_events()
        conn.execute(conn.sql.events.event_insert_at, (seq, run_id, node_id, type_, text, at))


def _event_row(row) -> dict:
    event = dict(zip(EVENT_COLUMNS, row))
    if event["data"] is not None:
        event["data"] = json.loads(event["data"])
    return event


def events_after(conn, after: int = 0, run_id: str | None = None, limit: int = 1000) -> list[dict]:
    _written(conn)
    if run_id is None:
        rows = conn.execute(conn.sql.events.events_after, {"after": after, "limit": limit})
    else:
        rows = conn.execute(conn.sql.events.events_of_run_after, {"run_id": run_id, "after": after, "limit": limit})
    return [_event_row(r) for r in rows]


def last_event_seq(conn) -> int:
    _written(conn)
    return conn.execute(conn.sql.events.last_event_seq).fetchone()[0]


def _written(conn) -> None:
    """Inside a write transaction, its events not yet written go in before this reads them."""
    flush = getattr(conn, "flush_events", None)
    if flush is not None:
        flush()


def node_completion_events(conn, run_id: str) -> list[tuple[str, str | None]]:
    """(node_id, data) of each completion of the run, in commit order."""
    _written(conn)
    return conn.execute(conn.sql.events.node_completion_events, (run_id,)).fetchall()


def last_seq(conn, run_id: str, type_: str, node_id: str | None = None) -> int:
    """The seq of the run's (or its node's) newest event of this type; 0 when there is none."""
    _written(conn)
    row = conn.execute(conn.sql.events.last_seq_of, {"run_id": run_id, "type": type_, "node_id": node_id}).fetchone()
    return row[0] or 0


def last_event_data(conn, run_id: str, type_: str) -> dict | None:
    """The data of the run's newest event of this type, or None."""
    _written(conn)
    row = conn.execute(conn.sql.events.last_event_of_type, {"run_id": run_id, "type": type_}).fetchone()
    return json.loads(row[0]) if row and row[0] else None
