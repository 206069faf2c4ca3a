-- Compensation (issue 15): a compensation node's attempts are node instances of their own,
-- marked with the node they undo. Its iteration is that of the instance it undoes, so
-- (run, compensates, iteration) names the undone instance, in an export as here.

ALTER TABLE node_instances ADD COLUMN compensates TEXT;   -- node id this attempt compensates

-- One completed attempt per (run, node, iteration) still holds for the workflow's own nodes;
-- a compensation node may undo several nodes (one completed attempt for each).
DROP INDEX node_instances_one_completed;
CREATE UNIQUE INDEX node_instances_one_completed
    ON node_instances (run_id, node_id, iteration) WHERE status = 'completed' AND compensates IS NULL;
CREATE UNIQUE INDEX node_instances_one_compensation
    ON node_instances (run_id, compensates, iteration) WHERE status = 'completed' AND compensates IS NOT NULL;
-- Has this instance been compensated, or is a compensation running: one seek per step.
CREATE INDEX node_instances_compensations ON node_instances (run_id, compensates, iteration, status)
    WHERE compensates IS NOT NULL;

DROP VIEW node_history;
CREATE VIEW node_history AS
SELECT n.run_id, n.node_id, n.iteration, n.attempt, n.status, n.worker_id, n.started_at,
       n.finished_at,
       (julianday(n.finished_at) - julianday(n.started_at)) * 86400.0 AS duration_s,
       n.error_type, n.error, n.waiting_reason, n.compensates
FROM node_instances n;
