-- Named queries of the storage layer, loaded by durableflow/storage/queries.py.
-- Each starts with "-- name: NAME" and runs as one statement. Parameters are named (:x).
-- Status changes are written `WHERE ... AND status = :from` and the caller checks the row count.

-- ===== queue =====================================================================================

-- name: enqueue
INSERT INTO messages (run_id, kind, target_node_id, iteration, payload, status, priority,
                      visible_at, held, max_attempts, created_at)
VALUES (?, ?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?);

-- name: claim
-- Claimable: ready, not held by a paused run, visible now; highest priority first, then oldest.
UPDATE messages SET status = 'leased'
WHERE id IN (
    SELECT id FROM messages INDEXED BY messages_claimable
    WHERE status = 'ready' AND held = 0 AND visible_at <= :now
    ORDER BY priority DESC, id
    LIMIT :limit)
RETURNING id, run_id, kind, target_node_id, iteration, payload, priority, attempts, max_attempts;

-- name: claim_one
-- The same for one message: `id = (subquery)` lets SQLite skip building the IN list.
UPDATE messages SET status = 'leased'
WHERE id = (
    SELECT id FROM messages INDEXED BY messages_claimable
    WHERE status = 'ready' AND held = 0 AND visible_at <= :now
    ORDER BY priority DESC, id
    LIMIT 1)
RETURNING id, run_id, kind, target_node_id, iteration, payload, priority, attempts, max_attempts;

-- name: lease_insert
INSERT INTO leases (message_id, worker_id, token, acquired_at, expires_at)
VALUES (?, ?, ?, ?, ?);

-- name: lease_release
DELETE FROM leases WHERE message_id = ? AND token = ?;

-- name: lease_drop
DELETE FROM leases WHERE message_id = ?;

-- name: lease_renew_worker
UPDATE leases SET expires_at = :until WHERE worker_id = :worker_id;

-- name: lease_renew_one
UPDATE leases SET expires_at = :until WHERE message_id = :message_id AND token = :token;

-- name: message_ack
-- RETURNING: the event names the message's run and node even when the caller did not.
UPDATE messages SET status = 'acked', finished_at = ? WHERE id = ? AND status = 'leased'
RETURNING run_id, target_node_id;

-- name: message_ack_known
-- For callers that know the message's run and node: no RETURNING, whose temporary table costs.
UPDATE messages SET status = 'acked', finished_at = ? WHERE id = ? AND status = 'leased';

-- name: message_nack
UPDATE messages SET status = 'ready', visible_at = :visible_at, last_error = :error,
                    attempts = attempts + :counted,
                    held = coalesce((SELECT r.status = 'paused' FROM runs r WHERE r.run_id = messages.run_id), 0)
WHERE id = :id AND status = 'leased'
RETURNING run_id, target_node_id;

-- name: message_bury
UPDATE messages SET status = 'dead', attempts = attempts + :counted, last_error = :error,
                    finished_at = :now
WHERE id = :id AND status = :from
RETURNING id, run_id, kind, target_node_id, iteration, payload, attempts;

-- name: dead_letter_insert
INSERT INTO dead_letters (message_id, run_id, kind, target_node_id, payload, error, attempts, created_at)
VALUES (:id, :run_id, :kind, :target_node_id, :payload, :error, :attempts, :now);

-- name: leases_expired
SELECT l.message_id, l.worker_id, l.token, m.run_id, m.target_node_id, m.iteration, m.attempts,
       m.max_attempts
FROM leases l JOIN messages m ON m.id = l.message_id
WHERE l.expires_at <= :now
ORDER BY l.message_id;

-- name: leases_of_worker
SELECT l.message_id, l.worker_id, l.token, m.run_id, m.target_node_id, m.iteration, m.attempts,
       m.max_attempts
FROM leases l JOIN messages m ON m.id = l.message_id
WHERE l.worker_id = :worker_id
ORDER BY l.message_id;

-- name: message_attempts
SELECT attempts, max_attempts FROM messages WHERE id = ?;

-- name: message_requeue
UPDATE messages SET status = 'ready', attempts = 0, visible_at = :now, finished_at = NULL,
                    held = coalesce((SELECT r.status = 'paused' FROM runs r WHERE r.run_id = messages.run_id), 0)
WHERE id = :id AND status = 'dead';

-- name: dead_letter_delete
DELETE FROM dead_letters WHERE message_id = :id;

-- name: dead_letters
SELECT d.id, d.message_id, d.run_id, d.kind, d.target_node_id, d.payload, d.error, d.attempts,
       d.created_at
FROM dead_letters d ORDER BY d.id;

-- name: message_get
SELECT id, run_id, kind, target_node_id, iteration, payload, status, priority, visible_at, held,
       attempts, max_attempts, last_error, created_at, finished_at
FROM messages WHERE id = :id;

-- name: next_visible
SELECT min(visible_at) FROM messages WHERE status = 'ready' AND held = 0;

-- name: leases_in_force
-- One lease row per leased message: cheap however much history messages holds.
SELECT count(*) FROM leases;

-- name: queue_counts
SELECT status, count(*) FROM messages GROUP BY status;

-- name: messages_hold_run
UPDATE messages INDEXED BY messages_open_by_run SET held = :held
WHERE run_id = :run_id AND finished_at IS NULL AND status = 'ready';

-- ===== events ====================================================================================

-- name: event_insert
INSERT INTO events (run_id, node_id, type, data, at) VALUES (?, ?, ?, ?, ?);

-- name: event_insert_at
INSERT INTO events (seq, run_id, node_id, type, data, at) VALUES (?, ?, ?, ?, ?, ?);

-- name: events_after
SELECT seq, run_id, node_id, type, data, at FROM events
WHERE seq > :after ORDER BY seq LIMIT :limit;

-- name: events_of_run_after
SELECT seq, run_id, node_id, type, data, at FROM events
WHERE run_id = :run_id AND seq > :after ORDER BY seq LIMIT :limit;

-- name: last_event_seq
SELECT coalesce(max(seq), 0) FROM events;
