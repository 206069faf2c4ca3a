-- ui: what the web dashboard (`durableflow ui`) reads. Reads only: its controls go through the
-- Engine like any other caller.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/ui.sql.
--
-- Pages of runs are read from an index in its order and continue after a cursor, the
-- (created_at, rowid) of the last row read. SQLite spells the condition
-- `created_at <= :at AND (created_at < :at OR rowid < :rowid)`; here it is the row comparison
-- `(created_at, rowid) < (:at, :rowid)`, the same rows, which PostgreSQL reads as one range of
-- an index ending in (created_at, rowid). No OFFSET and no count(*) of the whole history.

-- name: runs_page_top
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE parent_run_id IS NULL AND (created_at, r.rowid) < (:at::text, :rowid::bigint)
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_page_all
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE (created_at, r.rowid) < (:at::text, :rowid::bigint)
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_page_in_status
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE status = :status AND (created_at, r.rowid) < (:at::text, :rowid::bigint)
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_page_of_version
-- One version of a workflow; a workflow's page merges its versions' pages.
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE workflow_id = :workflow_id AND workflow_version = :version
  AND (created_at, r.rowid) < (:at::text, :rowid::bigint)
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_by_id_prefix
-- Search: run ids from :low (the text typed) up to, not including, :high (the first id past that
-- prefix, or the last id read), a range of the primary key (byte order: COLLATE "C"). Run ids are
-- time-ordered, so the newest come first.
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE r.run_id >= :low AND r.run_id < :high
ORDER BY r.run_id DESC LIMIT :limit;

-- name: workflow_ids
SELECT DISTINCT workflow_id FROM workflows ORDER BY workflow_id;

-- name: attempts_of_run
-- Every attempt of the run's nodes, in index order (node, iteration, attempt), each value cut to
-- :cap characters with its full length beside it: an output may be megabytes.
SELECT id, node_id, iteration, attempt, status,
       substr(input, 1, :cap), length(input), substr(output, 1, :cap), length(output),
       substr(error, 1, :cap), length(error), error_type, port, waiting_reason, progress,
       progress_message, worker_id, created_at, started_at, finished_at
FROM node_instances
WHERE run_id = :run_id ORDER BY node_id, iteration, attempt LIMIT :limit;

-- name: attempt_values
SELECT input, output, error FROM node_instances WHERE id = :id AND run_id = :run_id;

-- name: run_events_before
-- A run's timeline, newest first from :before back (the page shows them oldest first).
SELECT seq, node_id, type, substr(data, 1, :cap), at FROM events
WHERE run_id = :run_id AND seq < :before ORDER BY seq DESC LIMIT :limit;

-- name: child_runs
-- The child runs of a run (Subflow, ForEach and While bodies) in the order they started.
SELECT run_id, workflow_id, workflow_version, status, parent_node_id, created_at, finished_at, error
FROM runs WHERE parent_run_id = :run_id ORDER BY rowid LIMIT :limit;

-- name: child_run_count
SELECT count(*) FROM runs WHERE parent_run_id = :run_id;

-- name: dead_letters_page
SELECT id, message_id, run_id, kind, target_node_id, substr(payload, 1, :cap), substr(error, 1, :cap),
       attempts, created_at
FROM dead_letters WHERE id < :before ORDER BY id DESC LIMIT :limit;

-- name: breakers_all
-- Whatever columns the table has: the dashboard shows them as they are.
SELECT * FROM circuit_breakers ORDER BY 1 LIMIT :limit;

-- name: stats_runs_by_status
-- Every run, counted in runs_by_status.
SELECT status, count(*) FROM runs GROUP BY status;

-- name: stats_finished_by_hour
-- Runs finished since :since, per hour and how they ended.
SELECT substr(finished_at, 1, 13) AS hour, status, count(*) FROM runs
WHERE finished_at IS NOT NULL AND finished_at >= :since
GROUP BY hour, status ORDER BY hour;

-- name: stats_slowest_nodes
-- Completed attempts of the runs started since :since, per workflow and node, slowest on average
-- first (a Wait or a Subflow counts its whole wait).
SELECT r.workflow_id, n.node_id, count(*) AS completed,
       avg(extract(epoch FROM n.finished_at::timestamptz - n.started_at::timestamptz))::double precision AS avg_s,
       max(extract(epoch FROM n.finished_at::timestamptz - n.started_at::timestamptz))::double precision AS max_s
FROM runs r JOIN node_instances n ON n.run_id = r.run_id
WHERE r.created_at >= :since AND n.status = 'completed' AND n.started_at IS NOT NULL
GROUP BY r.workflow_id, n.node_id ORDER BY avg_s DESC LIMIT :limit;

-- name: run_events_after
-- What the live view sends: the run's events after the last one the page has, oldest first.
SELECT seq, node_id, type, substr(data, 1, :cap), at FROM events
WHERE run_id = :run_id AND seq > :after ORDER BY seq LIMIT :limit;

-- name: run_status
SELECT status FROM runs WHERE run_id = :run_id;
