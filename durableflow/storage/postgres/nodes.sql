-- node_instances: one row per attempt of a node.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/nodes.sql. Inserts return the new id (no lastrowid here); a JSON
-- array parameter is read with jsonb_array_elements_text where SQLite uses json_each.

-- name: node_insert
INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, message_id, input, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: node_insert_handed
-- The attempt of a message queued and taken in the same transaction (storage/handoff.py): written
-- once, as it stands by the commit (running, or finished with its output).
INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, message_id, input, output,
                            port, worker_id, created_at, started_at, finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING id;

-- name: node_copy
INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, input, output, error,
                            error_type, port, worker_id, created_at, started_at, finished_at)
VALUES (:run_id, :node_id, :iteration, :attempt, :status, :input, :output, :error,
        :error_type, :port, :worker_id, :now, :started_at, :finished_at)
RETURNING id;

-- name: node_start
-- A node that waited (a timer, a signal, child runs) keeps the moment it first started: its
-- duration is the whole wait, not its last wake-up.
-- limit_key: the concurrency key whose slot it takes, if any (null for most nodes).
UPDATE node_instances SET status = 'running', started_at = coalesce(started_at, :now), worker_id = :worker_id,
                          waiting_reason = NULL, limit_key = :limit_key
WHERE message_id = :message_id AND status IN ('pending', 'waiting')
RETURNING id, attempt, status;

-- name: node_open_by_message
SELECT id, status, attempt, node_id, iteration, limit_key, compensates FROM node_instances
WHERE message_id = ? AND (status = 'pending' OR status = 'waiting' OR status = 'running')
ORDER BY id DESC LIMIT 1;

-- name: node_to_start
-- The attempt a message delivers, about to start; its row is written once, when it finishes
-- (node_start_finish), for a node run and recorded in the transaction that claimed it.
SELECT id, attempt, status FROM node_instances
WHERE message_id = ? AND (status = 'pending' OR status = 'waiting')
ORDER BY id DESC LIMIT 1;

-- name: nodes_to_start
-- node_to_start for the messages of a claimed batch at once; ? is a JSON array of message ids.
-- Unordered (a sort here costs a sorter per batch): the caller keeps the latest attempt.
SELECT message_id, id, attempt, status FROM node_instances
WHERE message_id IN (SELECT jsonb_array_elements_text(?::jsonb)::bigint)
  AND (status = 'pending' OR status = 'waiting');

-- name: node_start_deferred
-- The start node_to_start put off, written after all (the node does not finish at once).
UPDATE node_instances SET status = 'running', started_at = coalesce(started_at, :now), worker_id = :worker_id,
                          waiting_reason = NULL, limit_key = NULL
WHERE id = :id AND status = :from;

-- name: node_start_finish
-- Started and finished in one write: node_start and node_finish of the same transaction.
UPDATE node_instances SET status = :to, output = :output, error = :error,
                          error_type = :error_type, port = :port, finished_at = :now,
                          started_at = coalesce(started_at, :started_at), worker_id = :worker_id,
                          waiting_reason = NULL, limit_key = NULL
WHERE id = :id AND status = :from;

-- name: node_finish
UPDATE node_instances SET status = :to, output = :output, error = :error,
                          error_type = :error_type, port = :port, finished_at = :now,
                          waiting_reason = NULL
WHERE id = :id AND status = :from;

-- name: node_release
UPDATE node_instances SET status = 'pending', started_at = NULL, worker_id = NULL
WHERE id = ? AND status = 'running';

-- name: node_wait
UPDATE node_instances SET status = 'waiting', waiting_reason = :reason
WHERE id = :id AND status = :from;

-- name: node_progress
-- Only while its run goes on: a body that keeps reporting after its run was cancelled (or
-- failed) writes nothing after the run's end.
UPDATE node_instances SET progress = :percent, progress_message = :message
WHERE id = :id AND status = 'running'
  AND (SELECT r.status = 'running' OR r.status = 'paused' FROM runs r WHERE r.run_id = node_instances.run_id);

-- name: nodes_open_of_run
SELECT id, node_id, status, message_id FROM node_instances
WHERE run_id = ? AND (status = 'pending' OR status = 'waiting' OR status = 'running');

-- name: nodes_of_run
SELECT id, run_id, node_id, iteration, attempt, status, input, output, error, error_type, port,
       waiting_reason, progress, progress_message, worker_id, created_at, started_at, finished_at,
       compensates
FROM node_instances WHERE run_id = ? ORDER BY id;

-- name: node_completed_count
SELECT count(*) FROM node_instances WHERE run_id = ? AND node_id = ? AND iteration = ? AND status = 'completed';

-- name: node_last_attempt
SELECT max(attempt) FROM node_instances WHERE run_id = ? AND node_id = ? AND iteration = ?;

-- name: run_running_count
SELECT count(*) FROM node_instances WHERE run_id = ? AND status = 'running';

-- name: run_completed_outputs
-- In attempt order, which the caller sorts by id: an ORDER BY here costs a sorter per run.
SELECT id, node_id, output FROM node_instances
WHERE run_id = ? AND status = 'completed';

-- name: node_waiting_reason
UPDATE node_instances SET waiting_reason = :reason WHERE id = :id AND status = 'waiting';

-- Compensation ------------------------------------------------------------------------------

-- name: node_mark_compensation
UPDATE node_instances SET compensates = ? WHERE id = ?;

-- name: compensation_next
-- The last completed instances (those of the newest finish time), of the nodes given (a JSON
-- array: those with a compensationNodeId), that no compensation has taken up yet: compensations
-- run in reverse order of completion.
SELECT n.id, n.node_id, n.iteration, n.input, n.output, n.finished_at
FROM node_instances n
WHERE n.run_id = :run_id AND n.node_id IN (SELECT jsonb_array_elements_text(:nodes::jsonb))
  AND n.status = 'completed' AND n.compensates IS NULL
  AND NOT EXISTS (SELECT 1 FROM node_instances c
                  WHERE c.run_id = n.run_id AND c.compensates = n.node_id AND c.iteration = n.iteration)
ORDER BY n.finished_at DESC, n.id DESC LIMIT 16;

-- name: compensation_open
-- A compensation of the run not finished yet (they run one at a time).
SELECT 1 FROM node_instances
WHERE run_id = ? AND compensates IS NOT NULL
  AND (status = 'pending' OR status = 'waiting' OR status = 'running')
LIMIT 1;

-- name: nodes_running_plain
-- Attempts of the run's own nodes still running (told to stop when compensation began).
SELECT 1 FROM node_instances
WHERE run_id = ? AND status = 'running' AND compensates IS NULL LIMIT 1;

-- name: compensations_of_run
SELECT node_id, compensates, iteration, status, error FROM node_instances
WHERE run_id = ? AND compensates IS NOT NULL ORDER BY id;
