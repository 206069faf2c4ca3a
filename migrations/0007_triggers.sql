-- Triggers (issue 13): Timer schedules that fire, Event entry nodes that emit() starts, and the
-- fire time a scheduled run stands for. The schedules table of 0001 was never written: it is
-- made again in the shape the scheduler needs.

DROP TABLE schedules;

-- One row per (workflow, Timer node) of each workflow's latest version: registering a changed
-- schedule updates it, a version without that Timer drops it. schedule_id is workflow_id:node_id.
CREATE TABLE schedules (
    schedule_id      TEXT PRIMARY KEY,
    workflow_id      TEXT NOT NULL,
    node_id          TEXT NOT NULL,
    cron             TEXT,
    interval_s       REAL,
    timezone         TEXT NOT NULL DEFAULT 'UTC',
    catch_up         TEXT NOT NULL DEFAULT 'none',   -- none, one, all
    misfire_grace_s  REAL NOT NULL DEFAULT 60,
    overlap          TEXT NOT NULL DEFAULT 'skip',   -- skip, bufferOne, bufferAll, allow, cancelOther
    max_catch_up     INTEGER NOT NULL DEFAULT 100,
    paused           INTEGER NOT NULL DEFAULT 0,
    next_at          TEXT,                           -- the next fire time
    last_at          TEXT,                           -- the latest fire time dealt with
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE paused = 0;
CREATE INDEX schedules_by_workflow ON schedules (workflow_id);

-- Every fire time a schedule dealt with, once: the primary key settles a race between workers
-- of any number of processes, so each fire time starts at most one run.
CREATE TABLE schedule_fires (
    schedule_id  TEXT NOT NULL,
    fire_at      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (
                     status = 'started' OR status = 'skipped' OR status = 'buffered'),
    run_id       TEXT,                               -- the run it started
    reason       TEXT,                               -- why it was skipped or buffered
    created_at   TEXT NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
) WITHOUT ROWID;
CREATE INDEX schedule_fires_buffered ON schedule_fires (schedule_id, fire_at) WHERE status = 'buffered';
CREATE INDEX schedule_fires_by_run ON schedule_fires (run_id) WHERE run_id IS NOT NULL;

-- The Event entry nodes of each workflow's latest version: who listens for an event name.
CREATE TABLE event_triggers (
    event        TEXT NOT NULL,
    workflow_id  TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    PRIMARY KEY (event, workflow_id, node_id)
) WITHOUT ROWID;
CREATE INDEX event_triggers_by_workflow ON event_triggers (workflow_id);

-- emit(..., dedupe_key): at most one run per workflow and key. Not pruned with the runs.
CREATE TABLE event_dedupe (
    workflow_id  TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (workflow_id, dedupe_key)
) WITHOUT ROWID;

ALTER TABLE runs ADD COLUMN scheduled_at TEXT;
