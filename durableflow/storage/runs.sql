-- Named queries for workflows, runs, node instances and joins (see queries.py).
-- Three or more status words are matched with OR, not IN: SQLite builds a temporary b-tree for
-- an IN list each time the statement runs (see the note at the top of schema.sql).

-- ===== workflows =================================================================================

-- name: workflow_latest
SELECT version, checksum FROM workflows WHERE workflow_id = ? ORDER BY version DESC LIMIT 1;

-- name: workflow_by_checksum
SELECT version FROM workflows WHERE workflow_id = ? AND checksum = ? ORDER BY version DESC LIMIT 1;

-- name: workflow_version_get
SELECT checksum FROM workflows WHERE workflow_id = ? AND version = ?;

-- name: workflow_insert
INSERT INTO workflows (workflow_id, version, checksum, definition, source_path, created_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: workflow_get
SELECT workflow_id, version, checksum, definition, source_path, created_at
FROM workflows WHERE workflow_id = ? AND version = ?;

-- name: workflows_list
SELECT w.workflow_id, w.version, w.checksum, w.source_path, w.created_at,
       (SELECT count(*) FROM runs r WHERE r.workflow_id = w.workflow_id AND r.workflow_version = w.version) AS runs
FROM workflows w ORDER BY w.workflow_id, w.version;

-- ===== runs ======================================================================================

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

-- name: run_open_messages
SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_open_by_run
               WHERE run_id = ? AND finished_at IS NULL);

-- name: run_messages_discard
UPDATE messages INDEXED BY messages_open_by_run SET status = 'acked', finished_at = :now
WHERE run_id = :run_id AND finished_at IS NULL AND status = 'ready'
RETURNING id, target_node_id;

-- name: run_completed_outputs
SELECT node_id, output FROM node_instances
WHERE run_id = ? AND status = 'completed' ORDER BY id;

-- ===== node instances ============================================================================

-- name: node_insert
INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, message_id, input, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?);

-- name: node_copy
INSERT INTO node_instances (run_id, node_id, iteration, attempt, status, input, output, error,
                            error_type, port, worker_id, created_at, started_at, finished_at)
VALUES (:run_id, :node_id, :iteration, :attempt, :status, :input, :output, :error,
        :error_type, :port, :worker_id, :now, :started_at, :finished_at);

-- name: node_start
-- A node that waited (a timer, a signal, child runs) keeps the moment it first started: its
-- duration is the whole wait, not its last wake-up.
UPDATE node_instances SET status = 'running', started_at = coalesce(started_at, :now), worker_id = :worker_id,
                          waiting_reason = NULL
WHERE message_id = :message_id AND status IN ('pending', 'waiting')
RETURNING id, attempt, status;

-- name: node_open_by_message
SELECT id, status, attempt, node_id, iteration FROM node_instances
WHERE message_id = ? AND (status = 'pending' OR status = 'waiting' OR status = 'running')
ORDER BY id DESC LIMIT 1;

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
UPDATE node_instances SET progress = :percent, progress_message = :message
WHERE id = :id AND status = 'running';

-- name: nodes_open_of_run
SELECT id, node_id, status, message_id FROM node_instances
WHERE run_id = ? AND (status = 'pending' OR status = 'waiting' OR status = 'running');

-- name: nodes_of_run
SELECT id, run_id, node_id, iteration, attempt, status, input, output, error, error_type, port,
       waiting_reason, progress, progress_message, worker_id, created_at, started_at, finished_at
FROM node_instances WHERE run_id = ? ORDER BY id;

-- name: node_completed_count
SELECT count(*) FROM node_instances WHERE run_id = ? AND node_id = ? AND iteration = ? AND status = 'completed';

-- ===== joins =====================================================================================

-- name: join_get
SELECT resolved, delivered, fired FROM joins WHERE run_id = ? AND node_id = ? AND iteration = ?;

-- name: join_put
INSERT INTO joins (run_id, node_id, iteration, resolved, delivered, fired)
VALUES (:run_id, :node_id, :iteration, :resolved, :delivered, :fired)
ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET
    resolved = excluded.resolved, delivered = excluded.delivered, fired = excluded.fired;

-- name: join_input_put
INSERT OR REPLACE INTO join_inputs (run_id, node_id, iteration, key, payload) VALUES (?, ?, ?, ?, ?);

-- name: join_inputs_get
SELECT key, payload FROM join_inputs WHERE run_id = ? AND node_id = ? AND iteration = ?;

-- name: join_unfired
SELECT node_id, iteration, resolved FROM joins WHERE run_id = ? AND fired = 0 AND delivered > 0 LIMIT 1;

-- ===== workers ===================================================================================

-- name: worker_register
INSERT INTO workers (worker_id, host, pid, pid_started, concurrency, started_at, heartbeat_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL;

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?;

-- name: worker_stopped
UPDATE workers SET stopped_at = ? WHERE worker_id = ?;

-- name: workers_live_on_host
SELECT worker_id, pid, pid_started FROM workers WHERE host = ? AND stopped_at IS NULL;

-- name: workers_mark_gone
UPDATE workers SET stopped_at = ? WHERE worker_id = ? AND stopped_at IS NULL;

-- name: run_running_count
SELECT count(*) FROM node_instances WHERE run_id = ? AND status = 'running';

-- name: signal_insert
INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?);

-- name: signal_take
UPDATE signals SET consumed_by = :instance
WHERE id = (SELECT id FROM signals WHERE run_id = :run_id AND name = :name AND consumed_by IS NULL
            ORDER BY id LIMIT 1)
RETURNING payload;

-- name: messages_wake_waiting
-- The messages of a run's waiting nodes become visible now; each looks again at what it waits for.
UPDATE messages INDEXED BY messages_open_by_run SET visible_at = :now
WHERE run_id = :run_id AND finished_at IS NULL AND status = 'ready' AND visible_at > :now
  AND id IN (SELECT message_id FROM node_instances WHERE run_id = :run_id AND status = 'waiting');

-- name: run_parent
SELECT parent_run_id FROM runs WHERE run_id = ?;

-- name: runs_active_children
SELECT run_id, status FROM runs
WHERE parent_run_id = ?
  AND (status = 'pending' OR status = 'running' OR status = 'paused' OR status = 'compensating');

-- name: message_set_payload
UPDATE messages SET payload = ? WHERE id = ?;

-- name: messages_release_throttled
UPDATE messages INDEXED BY messages_open_by_run SET held = 0
WHERE run_id = ? AND finished_at IS NULL AND status = 'ready' AND held = 2;

-- name: message_throttle
UPDATE messages SET status = 'ready', held = 2 WHERE id = ? AND status = 'leased';

-- name: node_last_attempt
SELECT max(attempt) FROM node_instances WHERE run_id = ? AND node_id = ? AND iteration = ?;

-- ===== stats

-- name: stats_runs
SELECT status, count(*) FROM runs GROUP BY status;

-- name: stats_nodes
SELECT status, count(*) FROM node_instances GROUP BY status;

-- name: stats_workers
SELECT count(*) FROM workers WHERE stopped_at IS NULL;

-- name: stats_dead_letters
SELECT count(*) FROM dead_letters;

-- name: stats_events
SELECT count(*) FROM events;

-- name: stats_workflows
SELECT count(DISTINCT workflow_id), count(*) FROM workflows;

-- ===== history ===================================================================================

-- name: run_tree
WITH RECURSIVE tree(run_id, depth) AS (
    SELECT run_id, 0 FROM runs WHERE run_id = ?
    UNION ALL
    SELECT r.run_id, t.depth + 1 FROM runs r JOIN tree t ON r.parent_run_id = t.run_id
)
SELECT run_id FROM tree ORDER BY depth;

-- name: runs_prunable
-- Oldest finished first, straight from runs_by_finished: left to itself the planner may pick
-- runs_by_status and sort every finished run for each batch of a prune.
SELECT run_id FROM runs INDEXED BY runs_by_finished
WHERE parent_run_id IS NULL AND finished_at IS NOT NULL AND finished_at < ?
  AND (status = 'completed' OR status = 'failed' OR status = 'cancelled')
ORDER BY finished_at LIMIT ?;

-- name: node_completion_events
-- What each completion recorded (its "vars" change among it), in the order they committed.
SELECT node_id, data FROM events INDEXED BY events_by_run
WHERE run_id = ? AND type = 'node.completed' ORDER BY seq;

-- name: run_pause_until_resumed
-- A plain pause of a run paused for a while: it now waits for resume(), not for the clock.
UPDATE runs SET paused_until = NULL
WHERE run_id = ? AND status = 'paused' AND paused_until IS NOT NULL;
