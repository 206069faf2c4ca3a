-- runs: one row per run.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/runs.sql. runs.rowid is a column here (SQLite's is hidden), the
-- order runs were inserted in; json_each over a JSON array of ids is jsonb_array_elements_text.

-- name: run_insert
INSERT INTO runs (run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, status,
                  inputs, variables, priority, idempotency_key, deadline_at, created_at, scheduled_at)
VALUES (:run_id, :workflow_id, :workflow_version, :parent_run_id, :parent_node_id, 'pending',
        :inputs, :variables, :priority, :idempotency_key, :deadline_at, :now, :scheduled_at);

-- name: run_by_idempotency_key
SELECT run_id FROM runs WHERE idempotency_key = ?;

-- name: run_get
SELECT run_id, workflow_id, workflow_version, parent_run_id, parent_node_id, status, inputs,
       variables, outputs, error, priority, idempotency_key, paused_until, deadline_at,
       retries_used, created_at, started_at, finished_at, scheduled_at
FROM runs WHERE run_id = ?;

-- name: run_state
SELECT status, workflow_id, workflow_version, variables, retries_used, priority, scheduled_at
FROM runs WHERE run_id = ?;

-- name: run_states_of
-- run_state for the runs of a claimed batch at once; ? is a JSON array of run ids.
SELECT run_id, status, workflow_id, workflow_version, variables, retries_used, priority, scheduled_at
FROM runs WHERE run_id IN (SELECT jsonb_array_elements_text(?::jsonb));

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

-- Listings, newest first, each straight from an index in its order, (created_at, rowid)
-- descending, so `LIMIT` stops the walk. :top_level 1 leaves out child runs. rerun_of: the run a
-- rerun repeats.

-- name: runs_latest_top
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE parent_run_id IS NULL
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_latest
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_latest_in_status
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE status = :status AND (:top_level = 0 OR parent_run_id IS NULL)
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_latest_of_version
-- One version of a workflow; `--workflow` merges its versions' lists.
SELECT r.run_id, workflow_id, workflow_version, status, created_at, started_at, finished_at, error,
       parent_run_id, parent_node_id, x.rerun_of, r.rowid
FROM runs r LEFT JOIN reruns x ON x.run_id = r.run_id
WHERE workflow_id = :workflow_id AND workflow_version = :version
  AND (:status::text IS NULL OR status = :status) AND (:top_level = 0 OR parent_run_id IS NULL)
ORDER BY created_at DESC, r.rowid DESC LIMIT :limit;

-- name: runs_have_children
-- min(): the first entry of runs_by_parent, where EXISTS may walk the table until a child turns up.
SELECT min(parent_run_id) IS NOT NULL FROM runs;

-- Upkeep, every second: each reads a partial index that holds only what it looks for.

-- name: runs_due_resume
SELECT run_id FROM runs
WHERE paused_until IS NOT NULL AND status = 'paused' AND paused_until <= ?;

-- name: runs_past_deadline
SELECT run_id FROM runs
WHERE deadline_at IS NOT NULL AND (status = 'running' OR status = 'paused') AND deadline_at <= ?;

-- name: runs_next_due
-- The soonest moment upkeep has something to do for a run: a pause that ends, a deadline.
SELECT min(at) FROM (
    SELECT min(paused_until) AS at FROM runs
    WHERE paused_until IS NOT NULL AND status = 'paused'
    UNION ALL
    SELECT min(deadline_at) FROM runs
    WHERE deadline_at IS NOT NULL AND (status = 'running' OR status = 'paused')) AS soonest;

-- name: runs_status_of
-- ? is a JSON array of run ids.
SELECT run_id, status FROM runs WHERE run_id IN (SELECT jsonb_array_elements_text(?::jsonb));

-- name: run_parent
SELECT parent_run_id FROM runs WHERE run_id = ?;

-- name: run_ancestry
-- The workflow of a run and of each run above it, nearest first, at most :limit of them
-- (a bound, not a guess: parent links written by hand could loop).
WITH RECURSIVE up(run_id, workflow_id, depth) AS (
    SELECT parent_run_id, workflow_id, 0 FROM runs WHERE run_id = :run_id
    UNION ALL
    SELECT r.parent_run_id, r.workflow_id, up.depth + 1 FROM runs r JOIN up ON r.run_id = up.run_id
    WHERE up.depth + 1 < :limit
)
SELECT workflow_id FROM up ORDER BY depth;

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

-- name: runs_children_completed
-- Child runs of a run that completed: compensated, in their place, when it compensates.
SELECT run_id, workflow_id, workflow_version, finished_at FROM runs
WHERE parent_run_id = ? AND status = 'completed';

-- name: runs_children_compensating
SELECT 1 FROM runs
WHERE parent_run_id = ? AND status = 'compensating' LIMIT 1;
