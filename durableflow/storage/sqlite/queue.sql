-- The queue: messages, leases and dead letters. Every statement that writes one of them is here.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py: each starts with
-- "-- name: NAME" and runs as one statement. Status changes are written `WHERE ... AND status = :from`
-- and the caller checks the row count. Three or more status words are matched with OR, not IN:
-- SQLite builds a temporary b-tree for an IN list each time the statement runs (see schema.sql).

-- name: enqueue
INSERT INTO messages (run_id, kind, target_node_id, iteration, payload, status, priority,
                      visible_at, held, max_attempts, created_at)
VALUES (?, ?, ?, ?, ?, 'ready', ?, ?, ?, ?, ?);

-- name: enqueue_handed
-- A message queued and taken in the same transaction (storage/handoff.py): written once, in the
-- status it has by the commit (leased, or acked with finished_at), never in the claim index.
INSERT INTO messages (run_id, kind, target_node_id, iteration, payload, status, priority,
                      visible_at, held, max_attempts, created_at, finished_at)
VALUES (?, 'node', ?, ?, ?, ?, ?, ?, 0, ?, ?, ?);

-- name: claimable_first
-- Is anything claimable now? What a message queued in this transaction would be claimed after.
SELECT 1 FROM messages INDEXED BY messages_claimable
WHERE status = 'ready' AND held = 0 AND visible_at <= ?
LIMIT 1;

-- name: last_insert_id
-- The id the last enqueue of this connection got (a batch got consecutive ids ending there).
SELECT last_insert_rowid();

-- `held` says why a ready message is not in the claim index: 0 it is claimable, 1 its run is
-- paused, 2 its run's maxConcurrency is reached, 3 it is parked until visible_at (a timer, a signal,
-- child runs, a retry's backoff). Parked messages wait in messages_due_later; the claim promotes
-- those that are due (promote_due) before it picks, so it never walks past future messages.

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

-- name: claim_oldest
-- The oldest claimable message whatever its priority: one in every FAIR_EVERY claims takes it,
-- so a steady stream of high-priority work cannot starve the rest. It walks the priorities
-- present (at most nine: node x 3 + run) one index seek each, and the oldest of each is one
-- more seek in messages_claimable: never a scan.
UPDATE messages SET status = 'leased'
WHERE id = (
    WITH RECURSIVE present(p) AS (
        SELECT max(priority) FROM messages INDEXED BY messages_claimable
        WHERE status = 'ready' AND held = 0
        UNION ALL
        SELECT (SELECT max(priority) FROM messages INDEXED BY messages_claimable
                WHERE status = 'ready' AND held = 0 AND priority < present.p)
        FROM present WHERE present.p IS NOT NULL)
    SELECT min((SELECT id FROM messages INDEXED BY messages_claimable
                WHERE status = 'ready' AND held = 0 AND priority = present.p AND visible_at <= :now
                ORDER BY id LIMIT 1))
    FROM present WHERE present.p IS NOT NULL)
RETURNING id, run_id, kind, target_node_id, iteration, payload, priority, attempts, max_attempts;

-- name: due_later_first
-- Is a parked message due? One probe of messages_due_later, in every claim transaction.
SELECT 1 FROM messages INDEXED BY messages_due_later
WHERE status = 'ready' AND held = 3 AND visible_at <= ?
LIMIT 1;

-- name: promote_due
-- Parked messages that are due join the claim index, oldest due first, :limit at a time.
UPDATE messages SET held = 0
WHERE id IN (
    SELECT id FROM messages INDEXED BY messages_due_later
    WHERE status = 'ready' AND held = 3 AND visible_at <= :now
    ORDER BY visible_at
    LIMIT :limit);

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
-- Held while its run is paused; else parked if it is given back for later (a backoff, a timer).
UPDATE messages SET status = 'ready', visible_at = :visible_at, last_error = :error,
                    attempts = attempts + :counted,
                    held = CASE
                        WHEN coalesce((SELECT r.status = 'paused' FROM runs r WHERE r.run_id = messages.run_id), 0) THEN 1
                        WHEN :visible_at > :now THEN 3
                        ELSE 0 END
WHERE id = :id AND status = 'leased'
RETURNING run_id, target_node_id;

-- name: message_bury
-- held = 0: only a ready message may be parked (held 3), see messages_due_later.
UPDATE messages SET status = 'dead', attempts = attempts + :counted, last_error = :error,
                    finished_at = :now, held = 0
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
-- The soonest a message is claimable: the claimable ones (visible now, unless another process's
-- clock runs ahead) and the first parked one. Held messages wait for their run, not the clock.
SELECT min(at) FROM (
    SELECT min(visible_at) AS at FROM messages INDEXED BY messages_claimable
    WHERE status = 'ready' AND held = 0
    UNION ALL
    SELECT min(visible_at) FROM messages INDEXED BY messages_due_later
    WHERE status = 'ready' AND held = 3);

-- name: leases_in_force
-- One lease row per leased message: cheap however much history messages holds.
SELECT count(*) FROM leases;

-- name: queue_counts
SELECT status, count(*) FROM messages GROUP BY status;

-- name: messages_hold_run
UPDATE messages INDEXED BY messages_open_by_run SET held = :held
WHERE run_id = :run_id AND finished_at IS NULL AND status = 'ready';

-- name: messages_unhold_run
-- A resumed run's messages: claimable if due, else parked until they are.
UPDATE messages INDEXED BY messages_open_by_run
SET held = CASE WHEN visible_at > :now THEN 3 ELSE 0 END
WHERE run_id = :run_id AND finished_at IS NULL AND status = 'ready';

-- name: run_open_messages
SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_open_by_run
               WHERE run_id = ? AND finished_at IS NULL);

-- name: run_messages_discard
-- held = 0: only a ready message may be parked (held 3), see messages_due_later.
UPDATE messages INDEXED BY messages_open_by_run SET status = 'acked', finished_at = :now, held = 0
WHERE run_id = :run_id AND finished_at IS NULL AND status = 'ready'
RETURNING id, target_node_id;

-- name: messages_wake_waiting
-- The messages of a run's waiting nodes become visible now; each looks again at what it waits for.
-- A parked one joins the claim index; one of a paused run stays held.
UPDATE messages INDEXED BY messages_open_by_run
SET visible_at = :now, held = CASE WHEN held = 3 THEN 0 ELSE held END
WHERE run_id = :run_id AND finished_at IS NULL AND status = 'ready' AND visible_at > :now
  AND id IN (SELECT message_id FROM node_instances WHERE run_id = :run_id AND status = 'waiting');

-- name: message_set_payload
UPDATE messages SET payload = ? WHERE id = ?;

-- name: messages_release_throttled
UPDATE messages INDEXED BY messages_open_by_run SET held = 0
WHERE run_id = ? AND finished_at IS NULL AND status = 'ready' AND held = 2;

-- name: message_throttle
UPDATE messages SET status = 'ready', held = 2 WHERE id = ? AND status = 'leased';

-- name: message_wait_for_limit
-- A claimed message whose concurrency key has no free slot waits (held 4) until one frees.
UPDATE messages SET status = 'ready', held = 4 WHERE id = ? AND status = 'leased';

-- name: message_limit_free
-- Its slot is free: claimable (held while its run is paused).
UPDATE messages SET held = coalesce((SELECT r.status = 'paused' FROM runs r WHERE r.run_id = messages.run_id), 0)
WHERE id = ? AND status = 'ready' AND held = 4;

-- name: message_discard
-- A ready message that will not be delivered (its node gave up waiting for a limit).
UPDATE messages SET status = 'acked', finished_at = :now, held = 0
WHERE id = :id AND status = 'ready'
RETURNING run_id, target_node_id;
