-- Limits: concurrency keys (node_instances.limit_key, limit_waiters), rate-limit buckets,
-- circuit breakers and their calls. Named statements for PostgreSQL (storage/statements.py): the
-- same names and parameters as ../sqlite/limits.sql.

-- name: running_with_key
SELECT count(*) FROM node_instances
WHERE limit_key = ? AND status = 'running';

-- name: running_with_key_but
-- The same, leaving out an attempt that is stopping (its row may still say running).
SELECT count(*) FROM node_instances
WHERE limit_key = ? AND status = 'running' AND id <> ?;

-- name: waiter_insert
-- A message waiting again keeps the moment it first waited (its maxWait counts from there).
INSERT INTO limit_waiters (message_id, limit_key, max_running, since, give_up_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (message_id) DO UPDATE SET limit_key = excluded.limit_key, max_running = excluded.max_running;

-- name: waiter_get
SELECT since, give_up_at FROM limit_waiters WHERE message_id = ?;

-- name: waiters_first
-- The oldest waiters of a key still held: the first to get a freed slot. The waiters are walked
-- in limit_waiters_by_key's order and each message looked up by its key (LATERAL, OFFSET 0: no
-- join the planner could answer by scanning messages for held = 4, which it counts as rare).
SELECT w.message_id, w.max_running FROM limit_waiters w
CROSS JOIN LATERAL (SELECT 1 FROM messages m
                    WHERE m.id = w.message_id AND m.status = 'ready' AND m.held = 4 OFFSET 0) AS held
WHERE w.limit_key = ? ORDER BY w.message_id LIMIT ?;

-- name: waiter_delete
DELETE FROM limit_waiters WHERE message_id = ?;

-- name: waiters_given_up
SELECT w.message_id, w.limit_key, w.since FROM limit_waiters w
WHERE w.give_up_at IS NOT NULL AND w.give_up_at <= ? ORDER BY w.give_up_at LIMIT ?;

-- name: bucket_get
SELECT tokens, rate, per_s, burst, tokens_at, declared_by FROM rate_limits WHERE key = ?;

-- name: bucket_put
INSERT INTO rate_limits (key, tokens, rate, per_s, burst, declared_by, tokens_at, updated_at)
VALUES (:key, :tokens, :rate, :per_s, :burst, :declared_by, :at, :now)
ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, rate = excluded.rate,
    per_s = excluded.per_s, burst = excluded.burst, declared_by = excluded.declared_by,
    tokens_at = excluded.tokens_at, updated_at = excluded.updated_at;

-- name: bucket_take
UPDATE rate_limits SET tokens = :tokens, tokens_at = :at, updated_at = :now WHERE key = :key;

-- name: breaker_get
SELECT key, status, failure_threshold, minimum_calls, window_s, open_duration_s,
       half_open_successes, opened_at, trials, successes, declared_by, updated_at
FROM circuit_breakers WHERE key = ?;

-- name: breakers_all
SELECT key, status, failure_threshold, minimum_calls, window_s, open_duration_s,
       half_open_successes, opened_at, trials, successes, declared_by, updated_at
FROM circuit_breakers ORDER BY key;

-- name: breaker_declare
INSERT INTO circuit_breakers (key, status, failure_threshold, minimum_calls, window_s,
                              open_duration_s, half_open_successes, declared_by, updated_at)
VALUES (:key, 'closed', :failure_threshold, :minimum_calls, :window_s, :open_duration_s,
        :half_open_successes, :declared_by, :now)
ON CONFLICT (key) DO UPDATE SET failure_threshold = excluded.failure_threshold,
    minimum_calls = excluded.minimum_calls, window_s = excluded.window_s,
    open_duration_s = excluded.open_duration_s, half_open_successes = excluded.half_open_successes,
    declared_by = excluded.declared_by;

-- name: breaker_transition
UPDATE circuit_breakers SET status = :to, opened_at = :opened_at, trials = :trials,
                            successes = :successes, updated_at = :now
WHERE key = :key AND status = :from;

-- name: breaker_counts
UPDATE circuit_breakers SET trials = :trials, successes = :successes, updated_at = :now
WHERE key = :key;

-- name: breaker_call_insert
INSERT INTO breaker_calls (key, at, ok) VALUES (?, ?, ?);

-- name: breaker_window
-- count(*) FILTER: SQLite sums the comparisons (1 or 0), PostgreSQL's are booleans.
SELECT count(*), count(*) FILTER (WHERE ok = 0) FROM breaker_calls
WHERE key = ? AND at > ?;

-- name: breaker_calls_forget
DELETE FROM breaker_calls WHERE key = ? AND at <= ?;
