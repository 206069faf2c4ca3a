-- joins and join_inputs: how many incoming connections of a node have delivered or been ruled out.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py: each starts with
-- "-- name: NAME" and runs as one statement. Status changes are written `WHERE ... AND status = :from`
-- and the caller checks the row count. Three or more status words are matched with OR, not IN:
-- SQLite builds a temporary b-tree for an IN list each time the statement runs (see schema.sql).

-- name: join_arrive
-- One incoming connection resolved (delivered = 1 if it delivered): counted, and the counts
-- after it returned, in one statement.
INSERT INTO joins (run_id, node_id, iteration, resolved, delivered, fired)
VALUES (:run_id, :node_id, :iteration, 1, :delivered, 0)
ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET
    resolved = resolved + 1, delivered = delivered + excluded.delivered
RETURNING resolved, delivered, fired;

-- name: join_add
-- Arrivals a transaction counted in memory after its first (storage/joins.py: join_arrive).
UPDATE joins SET resolved = resolved + ?, delivered = delivered + ?
WHERE run_id = ? AND node_id = ? AND iteration = ?;

-- name: join_fire
UPDATE joins SET fired = 1 WHERE run_id = ? AND node_id = ? AND iteration = ?;

-- name: join_input_put
INSERT OR REPLACE INTO join_inputs (run_id, node_id, iteration, key, payload) VALUES (?, ?, ?, ?, ?);

-- name: join_inputs_get
SELECT key, payload FROM join_inputs WHERE run_id = ? AND node_id = ? AND iteration = ?;

-- name: join_unfired
SELECT node_id, iteration, resolved FROM joins WHERE run_id = ? AND fired = 0 AND delivered > 0 LIMIT 1;
