"""Whole rows in, for imports: a run's rows arrive as dicts with the table's column names."""

from __future__ import annotations


def insert_rows(conn, table: str, rows: list[dict], *, returning_id: bool = False) -> int | None:
    """Insert rows (all with the same keys); with returning_id, returns the id the last one got
    (`RETURNING id`: PostgreSQL has no rowid to ask for afterwards). `table` and the keys come
    from the schema (checked by export_check), never from free text."""
    if not rows:
        return None
    cols = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    if not returning_id:
        conn.executemany(sql, [[row.get(c) for c in cols] for row in rows])
        return None
    last = None
    for row in rows:
        last = conn.execute(sql + " RETURNING id", [row.get(c) for c in cols]).fetchone()[0]
    return last
