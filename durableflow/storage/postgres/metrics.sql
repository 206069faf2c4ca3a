-- metrics: the figures of `durableflow status` (run.progress) and `durableflow stats`.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/metrics.sql.
--
-- run_figures, runs_by_status, throughput and slowest_nodes are the PostgreSQL forms of the
-- README's "History in SQL" queries 11, 12, 13 and 4, but for the time: the engine binds its
-- clock's. Durations: the stored ISO texts cast to timestamptz, their difference in seconds
-- (extract(epoch ...), exact), rounded to the millisecond they hold; SQLite takes julianday
-- differences. Sums of conditions are count(*) FILTER (PostgreSQL's comparisons are booleans);
-- averages and rounded figures come back as double precision, as SQLite's REAL.
--
-- A window ("the last hour") is read through the runs it can concern: those that finished in it
-- (runs_by_finished) and those that have not finished (runs_by_status), then their completed
-- attempts (node_instances_one_completed). A node attempt without a message_id is a rerun's copy
-- of a node it kept: the old run did that work, so it is left out.

-- name: run_figures
SELECT round(extract(epoch FROM coalesce(r.finished_at, :now)::timestamptz - r.started_at::timestamptz), 3)::double precision AS total_s,
       (SELECT round(avg(extract(epoch FROM n.finished_at::timestamptz - n.started_at::timestamptz)), 3)::double precision
        FROM node_instances n
        WHERE n.run_id = r.run_id AND n.status = 'completed' AND n.compensates IS NULL AND n.message_id IS NOT NULL) AS avg_node_s,
       r.retries_used, q.ready, q.delayed, q.held, q.leased
FROM runs r, (
    SELECT count(*) FILTER (WHERE status = 'ready' AND (held = 0 OR held = 3) AND visible_at <= :now) AS ready,
           count(*) FILTER (WHERE status = 'ready' AND (held = 0 OR held = 3) AND visible_at > :now) AS delayed,
           count(*) FILTER (WHERE status = 'ready' AND held <> 0 AND held <> 3) AS held,
           count(*) FILTER (WHERE status = 'leased') AS leased
    FROM messages WHERE run_id = :run_id AND finished_at IS NULL) q
WHERE r.run_id = :run_id;

-- name: runs_by_status
-- Every run, child runs too, counted in runs_by_status.
SELECT status, count(*) AS runs FROM runs GROUP BY status ORDER BY status;

-- name: throughput
-- The attempts are read per recent run (LATERAL, OFFSET 0 keeps the planner from flattening it
-- into a join it may answer with a scan of node_instances): SQLite's INDEXED BY, in PostgreSQL.
WITH recent(run_id) AS (
    SELECT run_id FROM runs WHERE finished_at >= :since
    UNION
    SELECT run_id FROM runs
    WHERE status = 'pending' OR status = 'running' OR status = 'paused' OR status = 'compensating')
SELECT minute, sum(runs) AS runs_finished, sum(nodes) AS nodes_completed FROM (
    SELECT substr(finished_at, 1, 16) AS minute, 1 AS runs, 0 AS nodes
    FROM runs WHERE finished_at >= :since
    UNION ALL
    SELECT substr(n.finished_at, 1, 16), 0, 1
    FROM recent CROSS JOIN LATERAL (
        SELECT finished_at FROM node_instances
        WHERE run_id = recent.run_id AND status = 'completed' AND compensates IS NULL
          AND finished_at >= :since AND message_id IS NOT NULL
        OFFSET 0) n) AS done
GROUP BY minute ORDER BY minute;

-- name: slowest_nodes
-- Each recent run's workflow and completed attempts, by run (see throughput).
WITH recent(run_id) AS (
    SELECT run_id FROM runs WHERE finished_at >= :since
    UNION
    SELECT run_id FROM runs
    WHERE status = 'pending' OR status = 'running' OR status = 'paused' OR status = 'compensating')
SELECT r.workflow_id, n.node_id, count(*) AS completed,
       round(avg(n.seconds), 3)::double precision AS avg_s,
       round(max(n.seconds), 3)::double precision AS max_s
FROM recent
CROSS JOIN LATERAL (SELECT workflow_id FROM runs WHERE run_id = recent.run_id OFFSET 0) r
CROSS JOIN LATERAL (
    SELECT node_id, extract(epoch FROM finished_at::timestamptz - started_at::timestamptz) AS seconds
    FROM node_instances
    WHERE run_id = recent.run_id AND status = 'completed' AND compensates IS NULL
      AND finished_at >= :since AND message_id IS NOT NULL
    OFFSET 0) n
GROUP BY r.workflow_id, n.node_id ORDER BY avg_s DESC, r.workflow_id, n.node_id LIMIT 10;

-- The rest of `stats`: counts over the whole database.

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
