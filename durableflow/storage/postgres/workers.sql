-- workers: the worker processes that have run on this database.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/workers.sql.

-- name: worker_register
INSERT INTO workers (worker_id, host, pid, pid_started, concurrency, started_at, heartbeat_at, host_id,
                     cpu, memory_mb)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL;

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?;

-- name: worker_stopped
UPDATE workers SET stopped_at = ? WHERE worker_id = ?;

-- name: workers_live_on_host
-- Same host name, boot and PID namespace: only there does a pid say whether a worker lives.
SELECT worker_id, pid, pid_started FROM workers WHERE host = ? AND host_id = ? AND stopped_at IS NULL;

-- name: workers_prune_stopped
-- Rows of workers stopped before :before: a worker's start drops them (see storage/workers.py).
DELETE FROM workers WHERE stopped_at IS NOT NULL AND stopped_at < :before;

-- name: workers_mark_gone
UPDATE workers SET stopped_at = ? WHERE worker_id = ? AND stopped_at IS NULL;

-- name: workers_live_fit
-- Does one live worker offer this much cpu and memory at once?
SELECT 1 FROM workers
WHERE stopped_at IS NULL AND cpu >= ? AND memory_mb >= ? LIMIT 1;

-- name: workers_largest_live
-- The most cpu and memory any live worker offers (for a node asking more than all of them).
SELECT max(cpu), max(memory_mb) FROM workers WHERE stopped_at IS NULL;
