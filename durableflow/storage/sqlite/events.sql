-- events: the append-only audit trail, and the reads that tail it.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py: each starts with
-- "-- name: NAME" and runs as one statement. Status changes are written `WHERE ... AND status = :from`
-- and the caller checks the row count. Three or more status words are matched with OR, not IN:
-- SQLite builds a temporary b-tree for an IN list each time the statement runs (see schema.sql).

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

-- name: node_completion_events
-- What each completion recorded (its "vars" change among it), in the order they committed.
SELECT node_id, data FROM events INDEXED BY events_by_run
WHERE run_id = ? AND type = 'node.completed' ORDER BY seq;

-- name: last_seq_of
-- Where in the order of everything that happened a run's (or one node's) newest event of a type
-- stands: which of two completions in the same millisecond came last.
SELECT max(seq) FROM events INDEXED BY events_by_run
WHERE run_id = :run_id AND type = :type AND (:node_id IS NULL OR node_id = :node_id);

-- name: last_event_of_type
-- The newest event of one type of a run (e.g. why it was last paused).
SELECT data FROM events INDEXED BY events_by_run
WHERE run_id = :run_id AND type = :type ORDER BY seq DESC LIMIT 1;
