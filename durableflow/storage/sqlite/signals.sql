-- signals sent to runs, taken by WaitForSignal nodes.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py: each starts with
-- "-- name: NAME" and runs as one statement. Status changes are written `WHERE ... AND status = :from`
-- and the caller checks the row count. Three or more status words are matched with OR, not IN:
-- SQLite builds a temporary b-tree for an IN list each time the statement runs (see schema.sql).

-- name: signal_insert
INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?);

-- name: signal_take
UPDATE signals SET consumed_by = :instance
WHERE id = (SELECT id FROM signals WHERE run_id = :run_id AND name = :name AND consumed_by IS NULL
            ORDER BY id LIMIT 1)
RETURNING payload;
