-- runs: one row per run.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py: each starts with
-- "-- name: NAME" and runs as one statement. Status changes are written `WHERE ... AND status = :from`
-- and the caller checks the row count. Three or more status words are matched with OR, not IN:
-- SQLite builds a temporary b-tree for an IN list each time the statement runs (see schema.sql).

-- name: run_insert
INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, status,
                  inputs, variables, priority, idempotency_key, deadline_at, created_at)
VALUES (:run_id, :workflow_id, :workflow_version, :parent_run_id, :parent_node_id, 'pending',
        :inputs, :variables, :priority, :idempotency_key, :deadline_at, :now);

-- name: run_by_idempotency_key
SELECT run_id FROM runs WHERE idempotency_key = ?;

-- name: run_get
SELECT run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, status, inputs,
       variables, outputs, error, priority, idempotency_key, paused_until, deadline_at,
       retries_used, created_at, started_at, finished_at
FROM runs WHERE run_id = ?;

-- name: run_state
SELECT status, workflow_id, workflow_version, variables, retries_used, priority FROM runs WHERE run_id = ?;

-- name: run_transition
UPDATE runs SET status = :to,
                started_at = coalesce(started_at, :started_at),
                finished_at = :finished_at,
                outputs = coalesce(:outputs, outputs),
                error = coalesce(:error, error),
                paused_until = :paused_until
WHERE run_id = :run_id AND status = :from;

-- name: run_variables_set
UPDATE runs SET variables = ? WHERE run_id = ?;

-- name: run_retry_used
UPDATE runs SET retries_used = retries_used + 1 WHERE run_id = ?;

-- name: runs_list
SELECT run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error
FROM runs WHERE (:status IS NULL OR status = :status) AND (:workflow_id IS NULL OR workflow_id = :workflow_id)
ORDER BY created_at DESC, run_id DESC LIMIT :limit;

-- name: runs_due_resume
SELECT run_id FROM runs WHERE status = 'paused' AND paused_until IS NOT NULL AND paused_until <= ?;

-- name: runs_past_deadline
SELECT run_id FROM runs WHERE status IN ('running', 'paused') AND deadline_at IS NOT NULL AND deadline_at <= ?;

-- name: runs_next_due
-- The soonest moment upkeep has something to do for a run: a pause that ends, a deadline.
SELECT min(at) FROM (
    SELECT min(paused_until) AS at FROM runs WHERE status = 'paused' AND paused_until IS NOT NULL
    UNION ALL
    SELECT min(deadline_at) FROM runs
    WHERE (status = 'running' OR status = 'paused') AND deadline_at IS NOT NULL);

-- name: runs_status_of
SELECT run_id, status FROM runs WHERE run_id IN (SELECT value FROM json_each(?));

-- name: run_parent
SELECT parent_run_id FROM runs WHERE run_id = ?;

-- name: runs_active_children
SELECT run_id, status FROM runs
WHERE parent_run_id = ?
  AND (status = 'pending' OR status = 'running' OR status = 'paused' OR status = 'compensating');

-- name: run_pause_until_resumed
-- A plain pause of a run paused for a while: it now waits for resume(), not for the clock.
UPDATE runs SET paused_until = NULL
WHERE run_id = ? AND status = 'paused' AND paused_until IS NOT NULL;

-- name: rerun_insert
INSERT INTO reruns (run_id, rerun_of, from_node, fresh) VALUES (?, ?, ?, ?);

-- name: rerun_get
SELECT rerun_of, from_node, fresh FROM reruns WHERE run_id = ?;
