-- Reads and deletes across a run's tables: its tree of subruns, export and pruning.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py: each starts with
-- "-- name: NAME" and runs as one statement. Status changes are written `WHERE ... AND status = :from`
-- and the caller checks the row count. Three or more status words are matched with OR, not IN:
-- SQLite builds a temporary b-tree for an IN list each time the statement runs (see schema.sql).

-- name: run_tree
WITH RECURSIVE tree(run_id, depth) AS (
    SELECT run_id, 0 FROM runs WHERE run_id = ?
    UNION ALL
    SELECT r.run_id, t.depth + 1 FROM runs r JOIN tree t ON r.parent_run_id = t.run_id
)
SELECT run_id FROM tree ORDER BY depth;

-- name: run_tree_runs
-- A run and its descendants, parents first, each with the node that started it (`graph RUN`).
WITH RECURSIVE tree(run_id, depth) AS (
    SELECT run_id, 0 FROM runs WHERE run_id = ?
    UNION ALL
    SELECT r.run_id, t.depth + 1 FROM runs r JOIN tree t ON r.parent_run_id = t.run_id
)
SELECT r.run_id, r.parent_run_id, r.parent_node_id, r.workflow_id, r.workflow_version
FROM tree t JOIN runs r ON r.run_id = t.run_id
ORDER BY t.depth, r.created_at;

-- name: run_tree_nodes
-- The node attempts of a run and its descendants, oldest first (the latest attempt wins).
-- CROSS JOIN keeps the tree outside: node_instances is read through its index by run, never
-- scanned (the planner would otherwise scan it, the tree being a guess to it).
WITH RECURSIVE tree(run_id) AS (
    SELECT run_id FROM runs WHERE run_id = ?
    UNION ALL
    SELECT r.run_id FROM runs r JOIN tree t ON r.parent_run_id = t.run_id
)
SELECT n.run_id, n.node_id, n.status FROM tree t CROSS JOIN node_instances n ON n.run_id = t.run_id
ORDER BY n.id;

-- name: runs_prunable
-- Oldest finished first, straight from runs_by_finished: left to itself the planner may pick
-- runs_by_status and sort every finished run for each batch of a prune.
SELECT run_id FROM runs INDEXED BY runs_by_finished
WHERE parent_run_id IS NULL AND finished_at IS NOT NULL AND finished_at < ?
  AND (status = 'completed' OR status = 'failed' OR status = 'cancelled')
ORDER BY finished_at LIMIT ?;

-- name: events_delete_of_runs
DELETE FROM events WHERE run_id IN (SELECT value FROM json_each(:run_ids));

-- name: run_delete
-- The rest of the run's rows go with it (foreign keys cascade, each through an index).
DELETE FROM runs WHERE run_id = :run_id;
