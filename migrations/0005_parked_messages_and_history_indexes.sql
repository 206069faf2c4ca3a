-- Costs that grew with parked work and with history (issue 11, points 9, 13 and 19). Indexes
-- only, a view that gains a column, and one UPDATE: no table is rebuilt.
--
-- 1. Parked messages leave the claim index. A ready message visible only later (a Wait's timer,
--    a WaitForSignal, a Subflow or loop parent, a retry in backoff) has held = 3 and waits in
--    messages_due_later, keyed on its visible time; each claim transaction first promotes the
--    ones that are due (one probe of that index when none is), then picks from
--    messages_claimable as before. A claim used to walk past every parked message of its
--    priority under the write lock: 1.24 ms a claim+ack with 20,000 parked, 7.5 ms with 100,000.
--    :now is the engine's clock at migration time: messages already due stay claimable. Only a
--    ready message has held = 3 (discarding or burying one sets held = 0), so the index's WHERE
--    need not name status, which each claim and ack changes: they never touch this index.
-- 2. Upkeep reads what it looks for from partial indexes holding only that: runs that are active
--    with a deadline (runs_deadlines), paused runs that resume by themselves (runs_pause_ends),
--    live workers (workers_live). Each pass used to visit every running or paused run (17 ms
--    at 100,000 waiting runs); stopped workers are now pruned (workers_stopped finds them).
-- 3. Listings and history read runs newest first from an index: runs_top_level (what
--    `durableflow runs` shows by default), runs_by_created (every run, child runs included;
--    also what a time window of history starts from), runs_by_workflow (`runs --workflow`,
--    and the count of runs per version that `workflows` shows). "The last 20 runs" took
--    290 ms on 100,000 runs: run_summary was computed for every run before the LIMIT.
-- 4. run_summary shows parent_run_id, so the history can ask for top-level runs.

CREATE INDEX messages_due_later ON messages (visible_at) WHERE held = 3;
UPDATE messages SET held = 3 WHERE status = 'ready' AND held = 0 AND visible_at > :now;

CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_top_level ON runs (created_at) WHERE parent_run_id IS NULL;
CREATE INDEX runs_by_workflow ON runs (workflow_id, workflow_version, created_at);
CREATE INDEX runs_deadlines ON runs (deadline_at)
    WHERE deadline_at IS NOT NULL AND (status = 'running' OR status = 'paused');
CREATE INDEX runs_pause_ends ON runs (paused_until) WHERE paused_until IS NOT NULL AND status = 'paused';

CREATE INDEX workers_live ON workers (host) WHERE stopped_at IS NULL;
CREATE INDEX workers_stopped ON workers (stopped_at) WHERE stopped_at IS NOT NULL;

DROP VIEW run_summary;
CREATE VIEW run_summary AS
SELECT r.run_id, r.workflow_id, r.workflow_version, r.parent_run_id, r.status, r.created_at,
       r.started_at, r.finished_at,
       (julianday(r.finished_at) - julianday(r.started_at)) * 86400.0 AS duration_s,
       (SELECT count(*) FROM node_instances n WHERE n.run_id = r.run_id AND n.status = 'completed') AS nodes_completed,
       (SELECT count(*) FROM node_instances n WHERE n.run_id = r.run_id AND n.status = 'failed') AS attempts_failed,
       (SELECT count(*) FROM node_instances n WHERE n.run_id = r.run_id AND n.status = 'skipped') AS nodes_skipped,
       r.error
FROM runs r;
