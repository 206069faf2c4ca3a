-- Reads and deletes across a run's tables: its tree of subruns, export and pruning.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/history.sql.

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
-- node_instances is read through its index by run (node_instances_by_run), one probe per run.
WITH RECURSIVE tree(run_id) AS (
    SELECT run_id FROM runs WHERE run_id = ?
    UNION ALL
    SELECT r.run_id FROM runs r JOIN tree t ON r.parent_run_id = t.run_id
)
SELECT n.run_id, n.node_id, n.status FROM tree t JOIN node_instances n ON n.run_id = t.run_id
ORDER BY n.id;

-- name: runs_prunable
-- Oldest finished first, from runs_by_finished.
SELECT run_id FROM runs
WHERE parent_run_id IS NULL AND finished_at IS NOT NULL AND finished_at < ?
  AND (status = 'completed' OR status = 'failed' OR status = 'cancelled')
ORDER BY finished_at LIMIT ?;

-- name: events_delete_of_runs
-- :run_ids is a JSON array of run ids.
DELETE FROM events WHERE run_id IN (SELECT jsonb_array_elements_text(:run_ids::jsonb));

-- name: run_delete
-- The rest of the run's rows go with it (foreign keys cascade, each through an index).
DELETE FROM runs WHERE run_id = :run_id;
