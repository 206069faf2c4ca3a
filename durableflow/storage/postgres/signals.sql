-- signals sent to runs, taken by WaitForSignal nodes.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/signals.sql.

-- name: signal_insert
-- RETURNING id: PostgreSQL has no lastrowid.
INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)
RETURNING id;

-- name: signal_take
UPDATE signals SET consumed_by = :instance
WHERE id = (SELECT id FROM signals WHERE run_id = :run_id AND name = :name AND consumed_by IS NULL
            ORDER BY id LIMIT 1 FOR UPDATE)
RETURNING payload;
