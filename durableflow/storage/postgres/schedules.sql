-- schedules, schedule_fires, event_triggers and event_dedupe: what starts runs by itself.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/schedules.sql.

-- name: schedule_get
SELECT schedule_id, workflow_id, node_id, cron, interval_s, timezone, catch_up, misfire_grace_s,
       overlap, max_catch_up, paused, next_at, last_at, created_at, updated_at
FROM schedules WHERE schedule_id = ?;

-- name: schedules_of_workflow
SELECT schedule_id, workflow_id, node_id, cron, interval_s, timezone, catch_up, misfire_grace_s,
       overlap, max_catch_up, paused, next_at, last_at, created_at, updated_at
FROM schedules WHERE workflow_id = ?;

-- name: schedules_all
SELECT schedule_id, workflow_id, node_id, cron, interval_s, timezone, catch_up, misfire_grace_s,
       overlap, max_catch_up, paused, next_at, last_at, created_at, updated_at
FROM schedules ORDER BY schedule_id;

-- name: schedule_insert
INSERT INTO schedules (schedule_id, workflow_id, node_id, cron, interval_s, timezone, catch_up,
                       misfire_grace_s, overlap, max_catch_up, next_at, created_at, updated_at)
VALUES (:schedule_id, :workflow_id, :node_id, :cron, :interval_s, :timezone, :catch_up,
        :misfire_grace_s, :overlap, :max_catch_up, :next_at, :now, :now);

-- name: schedule_update
UPDATE schedules SET cron = :cron, interval_s = :interval_s, timezone = :timezone,
                     catch_up = :catch_up, misfire_grace_s = :misfire_grace_s, overlap = :overlap,
                     max_catch_up = :max_catch_up, next_at = :next_at, updated_at = :now
WHERE schedule_id = :schedule_id;

-- name: schedule_delete
DELETE FROM schedules WHERE schedule_id = ?;

-- name: schedule_set_paused
UPDATE schedules SET paused = :paused, next_at = coalesce(:next_at, next_at), updated_at = :now
WHERE schedule_id = :schedule_id AND paused <> :paused;

-- name: schedule_advance
-- Only forward: two workers that dealt with the same fire times write the same values.
-- SQLite's max(a, b) is NULL when b is: a NULL next_at (no fire time left) is written as NULL.
-- greatest() would skip the NULL, hence the CASEs.
UPDATE schedules SET last_at = CASE WHEN :last_at::text IS NULL THEN NULL
                                    ELSE greatest(coalesce(last_at, ''), :last_at) END,
                     next_at = CASE WHEN :next_at::text IS NULL THEN NULL
                                    ELSE greatest(coalesce(next_at, ''), :next_at) END
WHERE schedule_id = :schedule_id;

-- name: schedules_due
SELECT schedule_id FROM schedules
WHERE paused = 0 AND next_at <= :now ORDER BY next_at LIMIT :limit;

-- name: schedules_next_due
SELECT min(next_at) FROM schedules WHERE paused = 0;

-- name: fire_insert
-- DO NOTHING: a fire time another worker dealt with first is left as it is (the row count says so).
INSERT INTO schedule_fires (schedule_id, fire_at, status, run_id, reason, created_at)
VALUES (:schedule_id, :fire_at, :status, :run_id, :reason, :now)
ON CONFLICT DO NOTHING;

-- name: fire_get
SELECT status, run_id, reason FROM schedule_fires WHERE schedule_id = ? AND fire_at = ?;

-- name: fire_started
-- A fire that was skipped or buffered starts a run now (a backfill, or its turn came).
UPDATE schedule_fires SET status = 'started', run_id = :run_id, reason = :reason
WHERE schedule_id = :schedule_id AND fire_at = :fire_at AND status <> 'started';

-- name: fires_buffered
SELECT fire_at FROM schedule_fires
WHERE schedule_id = ? AND status = 'buffered' ORDER BY fire_at;

-- name: fires_buffered_any
SELECT DISTINCT schedule_id FROM schedule_fires
WHERE status = 'buffered';

-- name: fire_drop_buffered
UPDATE schedule_fires SET status = 'skipped', reason = :reason
WHERE schedule_id = :schedule_id AND fire_at = :fire_at AND status = 'buffered';

-- name: schedule_active_runs
-- The schedule's runs still going, oldest first.
SELECT f.run_id, r.status FROM schedule_fires f JOIN runs r ON r.run_id = f.run_id
WHERE f.schedule_id = ? AND f.status = 'started'
  AND (r.status = 'pending' OR r.status = 'running' OR r.status = 'paused' OR r.status = 'compensating')
ORDER BY f.fire_at;

-- name: fires_of_schedule
SELECT fire_at, status, run_id, reason, created_at FROM schedule_fires
WHERE schedule_id = ? ORDER BY fire_at DESC LIMIT ?;

-- name: event_triggers_of
SELECT workflow_id, node_id FROM event_triggers WHERE event = ? ORDER BY workflow_id, node_id;

-- name: event_triggers_of_workflow
SELECT event, node_id FROM event_triggers WHERE workflow_id = ?;

-- name: event_trigger_insert
INSERT INTO event_triggers (event, workflow_id, node_id) VALUES (?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: event_trigger_delete
DELETE FROM event_triggers WHERE event = ? AND workflow_id = ? AND node_id = ?;

-- name: dedupe_get
SELECT run_id FROM event_dedupe WHERE workflow_id = ? AND dedupe_key = ?;

-- name: dedupe_insert
INSERT INTO event_dedupe (workflow_id, dedupe_key, run_id, created_at) VALUES (?, ?, ?, ?);

-- name: fire_rebuffer
-- A fire recorded as skipped waits for its turn after all (a backfill of it met a run still going).
UPDATE schedule_fires SET status = 'buffered', reason = :reason
WHERE schedule_id = :schedule_id AND fire_at = :fire_at AND status = 'skipped';
