-- metrics: the figures of `durableflow status` (run.progress) and `durableflow stats`.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py: each starts with
-- "-- name: NAME" and runs as one statement. Three or more status words are matched with OR, not
-- IN (see schema.sql).
--
-- run_figures, runs_by_status, throughput and slowest_nodes are the README's "History in SQL"
-- queries 11, 12, 13 and 4, word for word but for the time: the README asks SQLite for it
-- (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), and 'now', '-1 hour' / '-1 day' for :since), the
-- engine binds its clock's (tests/docs/test_readme.py checks they agree). Durations come from
-- the stored ISO timestamps, rounded to the millisecond they hold.
--
-- A window ("the last hour") is read through the runs it can concern: those that finished in it
-- (runs_by_finished) and those that have not finished (runs_by_status), then their completed
-- attempts (node_instances_one_completed). It costs what the window and the active runs hold,
-- not the history. A node attempt without a message_id is a rerun's copy of a node it kept:
-- the old run did that work, so it is left out.

-- name: run_figures
SELECT round((julianday(coalesce(r.finished_at, :now)) - julianday(r.started_at)) * 86400.0, 3) AS total_s,
       (SELECT round(avg((julianday(n.finished_at) - julianday(n.started_at)) * 86400.0), 3)
        FROM node_instances n INDEXED BY node_instances_one_completed
        WHERE n.run_id = r.run_id AND n.status = 'completed' AND n.compensates IS NULL AND n.message_id IS NOT NULL) AS avg_node_s,
       r.retries_used, q.ready, q.delayed, q.held, q.leased
FROM runs r, (
    SELECT coalesce(sum(status = 'ready' AND (held = 0 OR held = 3) AND visible_at <= :now), 0) AS ready,
           coalesce(sum(status = 'ready' AND (held = 0 OR held = 3) AND visible_at > :now), 0) AS delayed,
           coalesce(sum(status = 'ready' AND held <> 0 AND held <> 3), 0) AS held,
           coalesce(sum(status = 'leased'), 0) AS leased
    FROM messages INDEXED BY messages_open_by_run WHERE run_id = :run_id AND finished_at IS NULL) q
WHERE r.run_id = :run_id;

-- name: runs_by_status
-- Every run, child runs too, counted in runs_by_status: the index, not the table.
SELECT status, count(*) AS runs FROM runs INDEXED BY runs_by_status GROUP BY status ORDER BY status;

-- name: throughput
WITH recent(run_id) AS (
    SELECT run_id FROM runs INDEXED BY runs_by_finished WHERE finished_at >= :since
    UNION
    SELECT run_id FROM runs INDEXED BY runs_by_status
    WHERE status = 'pending' OR status = 'running' OR status = 'paused' OR status = 'compensating')
SELECT minute, sum(runs) AS runs_finished, sum(nodes) AS nodes_completed FROM (
    SELECT substr(finished_at, 1, 16) AS minute, 1 AS runs, 0 AS nodes
    FROM runs INDEXED BY runs_by_finished WHERE finished_at >= :since
    UNION ALL
    SELECT substr(n.finished_at, 1, 16), 0, 1
    FROM recent JOIN node_instances n INDEXED BY node_instances_one_completed ON n.run_id = recent.run_id
    WHERE n.status = 'completed' AND n.compensates IS NULL AND n.finished_at >= :since
      AND n.message_id IS NOT NULL)
GROUP BY minute ORDER BY minute;

-- name: slowest_nodes
WITH recent(run_id) AS (
    SELECT run_id FROM runs INDEXED BY runs_by_finished WHERE finished_at >= :since
    UNION
    SELECT run_id FROM runs INDEXED BY runs_by_status
    WHERE status = 'pending' OR status = 'running' OR status = 'paused' OR status = 'compensating')
SELECT r.workflow_id, n.node_id, count(*) AS completed,
       round(avg((julianday(n.finished_at) - julianday(n.started_at)) * 86400.0), 3) AS avg_s,
       round(max((julianday(n.finished_at) - julianday(n.started_at)) * 86400.0), 3) AS max_s
FROM recent JOIN runs r ON r.run_id = recent.run_id
JOIN node_instances n INDEXED BY node_instances_one_completed ON n.run_id = recent.run_id
WHERE n.status = 'completed' AND n.compensates IS NULL AND n.finished_at >= :since
      AND n.message_id IS NOT NULL
GROUP BY r.workflow_id, n.node_id ORDER BY avg_s DESC, r.workflow_id, n.node_id LIMIT 10;

-- The rest of `stats`: counts over the whole file.

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
