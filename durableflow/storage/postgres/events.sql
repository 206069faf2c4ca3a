-- events: the append-only audit trail, and the reads that tail it.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/events.sql.

-- name: event_insert
INSERT INTO events (run_id, node_id, type, data, at) VALUES (?, ?, ?, ?, ?);

-- name: event_insert_at
-- An event numbered by the caller (prune's history.pruned, above every number used): the
-- sequence moves past it in the same statement, so the next event_insert numbers above it, as
-- SQLite's max(seq) + 1 does. setval never moves it back.
WITH given(seq) AS (SELECT ?::bigint),
     moved AS (
        SELECT setval(pg_get_serial_sequence('events', 'seq'),
                      greatest(given.seq,
                               coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')::regclass), 0)))
        FROM given)
INSERT INTO events (seq, run_id, node_id, type, data, at)
SELECT given.seq, ?, ?, ?, ?, ? FROM given, moved;

-- name: events_after
SELECT seq, run_id, node_id, type, data, at FROM events
WHERE seq > :after ORDER BY seq LIMIT :limit;

-- name: events_of_run_after
SELECT seq, run_id, node_id, type, data, at FROM events
WHERE run_id = :run_id AND seq > :after ORDER BY seq LIMIT :limit;

-- name: last_event_seq
SELECT coalesce(max(seq), 0) FROM events;

-- name: node_completion_events
-- What each completion recorded (its "vars" change among it), in the order they committed.
SELECT node_id, data FROM events
WHERE run_id = ? AND type = 'node.completed' ORDER BY seq;

-- name: last_seq_of
-- Where in the order of everything that happened a run's (or one node's) newest event of a type
-- stands: which of two completions in the same millisecond came last.
SELECT max(seq) FROM events
WHERE run_id = :run_id AND type = :type AND (:node_id::text IS NULL OR node_id = :node_id);

-- name: last_event_of_type
-- The newest event of one type of a run (e.g. why it was last paused).
SELECT data FROM events
WHERE run_id = :run_id AND type = :type ORDER BY seq DESC LIMIT 1;
