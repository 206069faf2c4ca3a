"""Whole rows in, for imports: a run's rows arrive as dicts with the table's column names."""

from __future__ import annotations


def insert_rows(conn, table: str, rows: list[dict]) -> int | None:
    """Insert rows (all with the same keys); returns the last rowid. `table` and the keys come
    from the schema (checked by export_check), never from free text."""
    if not rows:
        return None
    cols = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    cur = None
    for row in rows:
        cur = conn.execute(sql, [row.get(c) for c in cols])
    return cur.lastrowid
