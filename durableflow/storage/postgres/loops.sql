-- loop_items: the items of a ForEach attempt, one row each, written once when the loop starts;
-- each names the body run started for it.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/loops.sql.

-- name: loop_item_insert
INSERT INTO loop_items (run_id, node_id, iteration, attempt, idx, item, output) VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: loop_item_get
SELECT item FROM loop_items WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ? AND idx = ?;

-- name: loop_item_started
UPDATE loop_items SET child_run_id = :child
WHERE run_id = :run_id AND node_id = :node_id AND iteration = :iteration AND attempt = :attempt AND idx = :idx;

-- name: loop_results
-- Every item's body run as it ended, in item order (an item carried over from a loop started by
-- an older durableflow has its output and no run). A failed run's error type is that of its last
-- failed node attempt, the one that failed it (continueOnError reports it per item).
SELECT li.idx, coalesce(r.status, 'completed'), coalesce(r.outputs, li.output), r.error,
       CASE WHEN r.status = 'failed' THEN (
           SELECT ni.error_type FROM node_instances ni
           WHERE ni.run_id = r.run_id AND ni.status = 'failed' ORDER BY ni.id DESC LIMIT 1) END,
       li.child_run_id
FROM loop_items li LEFT JOIN runs r ON r.run_id = li.child_run_id
WHERE li.run_id = ? AND li.node_id = ? AND li.iteration = ? AND li.attempt = ?
ORDER BY li.idx;
