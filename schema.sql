-- durableflow: the whole current schema, readable on its own.
--
-- A database built from this file and one built by applying migrations/ in order are identical
-- (tests/storage/test_migrations.py checks it). Change both together: add a numbered migration,
-- then edit this file to match.
--
-- Conventions: JSON columns hold JSON text; timestamps are ISO-8601 UTC text with milliseconds
-- ('2026-11-27T10:15:30.123Z'), so they sort and compare as text. Status columns hold the status
-- words of SPEC section 4 and change only through the lifecycles in durableflow/machines.py.
-- Their CHECKs say `status = 'a' OR status = 'b' ...`, not `status IN ('a', 'b', ...)`: SQLite
-- builds a temporary b-tree from an IN list of three or more on every insert and status update
-- (migrations/0003 has the figures).

CREATE TABLE schema_version (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL
);

-- One row per registered version of a workflow definition.
CREATE TABLE workflows (
    workflow_id  TEXT NOT NULL,
    version      INTEGER NOT NULL,
    checksum     TEXT NOT NULL,           -- sha256 of the canonical JSON definition
    definition   TEXT NOT NULL,           -- the definition as JSON (camelCase keys)
    source_path  TEXT,                    -- the file it was registered from, if any
    created_at   TEXT NOT NULL,
    PRIMARY KEY (workflow_id, version)
);
CREATE INDEX workflows_by_checksum ON workflows (workflow_id, checksum);

CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    workflow_id       TEXT NOT NULL,
    workflow_version  INTEGER NOT NULL,
    parent_run_id     TEXT REFERENCES runs (run_id) ON DELETE CASCADE,
    parent_node_id    TEXT,               -- the Subflow/ForEach/While node that started it
    status            TEXT NOT NULL CHECK (
                        status = 'pending' OR status = 'running' OR status = 'paused' OR
                        status = 'completed' OR status = 'failed' OR status = 'cancelled' OR
                        status = 'compensating'),
    inputs            TEXT,
    variables         TEXT,
    outputs           TEXT,
    error             TEXT,
    priority          INTEGER NOT NULL DEFAULT 1,   -- 2 high, 1 normal, 0 low
    idempotency_key   TEXT UNIQUE,
    paused_until      TEXT,               -- pause --for: resumes by itself at this time
    deadline_at       TEXT,               -- whole-run timeout
    retries_used      INTEGER NOT NULL DEFAULT 0,   -- counted against the run's retryBudget
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    scheduled_at      TEXT,               -- the fire time a scheduled run stands for
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflows (workflow_id, version)
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_by_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
-- Newest first, for listings and for history over a time window: every run, top-level runs (what
-- `durableflow runs` shows), and the runs of one workflow version (`workflows` counts them).
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_top_level ON runs (created_at) WHERE parent_run_id IS NULL;
CREATE INDEX runs_by_workflow ON runs (workflow_id, workflow_version, created_at);
-- What upkeep looks for each second, and only that: active runs with a deadline, and paused runs
-- that resume by themselves. A run without a timeout or a timed pause is in neither.
CREATE INDEX runs_deadlines ON runs (deadline_at)
    WHERE deadline_at IS NOT NULL AND (status = 'running' OR status = 'paused');
CREATE INDEX runs_pause_ends ON runs (paused_until) WHERE paused_until IS NOT NULL AND status = 'paused';

-- One row per attempt of a node in a run. At most one 'completed' row per (run, node, iteration).
CREATE TABLE node_instances (
    id                INTEGER PRIMARY KEY,
    run_id            TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    node_id           TEXT NOT NULL,
    iteration         INTEGER NOT NULL DEFAULT 0,
    attempt           INTEGER NOT NULL DEFAULT 1,
    status            TEXT NOT NULL CHECK (
                        status = 'pending' OR status = 'waiting' OR status = 'running' OR
                        status = 'completed' OR status = 'failed' OR status = 'cancelled' OR
                        status = 'skipped'),
    message_id        INTEGER,            -- the message whose delivery runs this attempt
    input             TEXT,
    output            TEXT,
    error             TEXT,
    error_type        TEXT,
    port              TEXT,               -- output port chosen (IfElse/Switch), if any
    waiting_reason    TEXT,
    progress          REAL,
    progress_message  TEXT,
    worker_id         TEXT,
    created_at        TEXT NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    limit_key         TEXT,               -- the concurrency key it holds a slot of while it runs
    compensates       TEXT                -- a compensation's attempt: the node id it undoes (its
                                          -- iteration is the undone instance's)
);
CREATE UNIQUE INDEX node_instances_one_completed
    ON node_instances (run_id, node_id, iteration) WHERE status = 'completed' AND compensates IS NULL;
CREATE UNIQUE INDEX node_instances_one_compensation
    ON node_instances (run_id, compensates, iteration) WHERE status = 'completed' AND compensates IS NOT NULL;
CREATE INDEX node_instances_compensations ON node_instances (run_id, compensates, iteration, status)
    WHERE compensates IS NOT NULL;
CREATE INDEX node_instances_by_run ON node_instances (run_id, node_id, iteration, attempt);
CREATE INDEX node_instances_by_message ON node_instances (message_id);
-- Keeps maxConcurrency checks cheap on runs with thousands of nodes.
CREATE INDEX node_instances_running ON node_instances (run_id) WHERE status = 'running';
-- The running attempts of a concurrency key: how many slots are taken.
CREATE INDEX node_instances_by_limit ON node_instances (limit_key)
    WHERE status = 'running' AND limit_key IS NOT NULL;

-- The queue. A message is one delivery of work: run a node (kind 'node'), or an engine task.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT REFERENCES runs (run_id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    target_node_id  TEXT,
    iteration       INTEGER NOT NULL DEFAULT 0,
    payload         TEXT,
    status          TEXT NOT NULL CHECK (
                        status = 'ready' OR status = 'leased' OR status = 'acked' OR
                        status = 'dead'),
    priority        INTEGER NOT NULL DEFAULT 1,
    visible_at      TEXT NOT NULL,
    held            INTEGER NOT NULL DEFAULT 0,   -- why a ready message is not claimable: 0 it is,
                                                  -- 1 its run is paused, 2 its run's maxConcurrency
                                                  -- is reached, 3 it is due later (visible_at),
                                                  -- 4 it waits for a concurrency key's slot
    attempts        INTEGER NOT NULL DEFAULT 0,   -- deliveries lost (lease expired or nacked as failed)
    max_attempts    INTEGER NOT NULL DEFAULT 5,   -- past this, the message is dead-lettered
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    finished_at     TEXT
);
-- Only claimable rows are indexed, so a million acked messages do not slow a claim.
CREATE INDEX messages_claimable ON messages (priority DESC, id, visible_at)
    WHERE status = 'ready' AND held = 0;
-- Messages parked until their visible time (timers, signals, child runs, retries in backoff):
-- out of the claim index, so a claim never walks past them; each claim transaction moves the
-- ones that are due into it (see migrations/0005). Only ready messages have held = 3 (what ends
-- one sets held = 0), so the WHERE leaves out status, which every claim and ack changes: SQLite
-- then never looks at this index for them.
CREATE INDEX messages_due_later ON messages (visible_at) WHERE held = 3;
-- Open (ready or leased) messages of a run. Keyed so that a claim, which changes only status,
-- does not rewrite it; finished_at is set exactly when a message is acked or dead.
CREATE INDEX messages_open_by_run ON messages (run_id) WHERE run_id IS NOT NULL AND finished_at IS NULL;
-- Every message of a run: what deleting a run (prune) cascades through; see migrations/0004.
CREATE INDEX messages_by_run ON messages (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE leases (
    message_id   INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    worker_id    TEXT NOT NULL,
    token        TEXT NOT NULL,           -- fencing token: a report must carry it
    acquired_at  TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
-- No secondary indexes: the table holds only the leases in force (one per message in flight),
-- so a scan is cheap, and every index would be written twice per delivery.

CREATE TABLE dead_letters (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    run_id          TEXT,
    kind            TEXT NOT NULL,
    target_node_id  TEXT,
    payload         TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);

-- Append-only audit trail: every status change, progress report and signal, in commit order.
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY,                 -- grows only; see migrations/0002
    run_id   TEXT,
    node_id  TEXT,
    type     TEXT NOT NULL,                       -- e.g. run.running, node.completed, message.leased
    data     TEXT,
    at       TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, seq) WHERE run_id IS NOT NULL;

-- Join bookkeeping: how many incoming connections of a node have delivered or been ruled out.
CREATE TABLE joins (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    node_id     TEXT NOT NULL,
    iteration   INTEGER NOT NULL DEFAULT 0,
    resolved    INTEGER NOT NULL DEFAULT 0,   -- connections delivered or ruled out
    delivered   INTEGER NOT NULL DEFAULT 0,   -- connections that delivered
    fired       INTEGER NOT NULL DEFAULT 0,   -- 1 once the node was enqueued or skipped
    PRIMARY KEY (run_id, node_id, iteration)
) WITHOUT ROWID;

-- What each delivered connection brought to a join, read once when the join fires.
CREATE TABLE join_inputs (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    node_id     TEXT NOT NULL,
    iteration   INTEGER NOT NULL DEFAULT 0,
    key         TEXT NOT NULL,                -- targetPort, else the source node id
    payload     TEXT,
    PRIMARY KEY (run_id, node_id, iteration, key)
) WITHOUT ROWID;

-- A ForEach attempt's items, written once when it starts, one row each, with the body run
-- started for each item. The loop node carries only the runs in flight from one wake-up to
-- the next, so what a loop writes grows with its items, not with their square.
CREATE TABLE loop_items (
    run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    node_id       TEXT NOT NULL,
    iteration     INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    idx           INTEGER NOT NULL,
    item          TEXT,                   -- the item, JSON
    child_run_id  TEXT,                   -- the body run started for it
    output        TEXT,                   -- its result, for an item done before this table existed
    PRIMARY KEY (run_id, node_id, iteration, attempt, idx)
) WITHOUT ROWID;

-- Which run a rerun repeats (`durableflow rerun`), shown by `runs` and `status`.
CREATE TABLE reruns (
    run_id     TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    rerun_of   TEXT NOT NULL,             -- the run it repeats (which may be pruned since)
    from_node  TEXT,                      -- rerun --from NODE
    fresh      INTEGER NOT NULL DEFAULT 0 -- rerun --fresh: nothing kept
) WITHOUT ROWID;

CREATE TABLE workers (
    worker_id     TEXT PRIMARY KEY,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    pid_started   TEXT,                   -- process start time, to tell a reused pid apart
    concurrency   INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL,
    stopped_at    TEXT,
    host_id       TEXT,                   -- host name/boot id/PID namespace (procs.host_identity)
    cpu           REAL,                   -- what the worker offers nodes' `resources`
    memory_mb     INTEGER
);
-- Upkeep looks for live workers of its host every second; a worker's start prunes the rows of
-- workers stopped long ago (storage/workers.py says how long).
CREATE INDEX workers_live ON workers (host) WHERE stopped_at IS NULL;
CREATE INDEX workers_stopped ON workers (stopped_at) WHERE stopped_at IS NOT NULL;

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

CREATE TABLE signals (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    payload      TEXT,
    consumed_by  INTEGER,                 -- node_instances.id that received it
    created_at   TEXT NOT NULL
);
CREATE INDEX signals_by_run ON signals (run_id, name);

-- Who waits for a concurrency key's slot (its message is held, 4, until a slot frees), oldest
-- first; give_up_at is the node's maxWait.
CREATE TABLE limit_waiters (
    message_id  INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    limit_key   TEXT NOT NULL,
    max_running INTEGER NOT NULL,
    since       TEXT NOT NULL,
    give_up_at  TEXT
);
CREATE INDEX limit_waiters_by_key ON limit_waiters (limit_key, message_id);
CREATE INDEX limit_waiters_give_up ON limit_waiters (give_up_at) WHERE give_up_at IS NOT NULL;

-- A token bucket per rate-limit key, refilled by the clock when a claim looks at it.
CREATE TABLE rate_limits (
    key          TEXT PRIMARY KEY,
    tokens       REAL NOT NULL,
    rate         REAL NOT NULL,          -- tokens added per `per_s` seconds
    per_s        REAL NOT NULL,
    burst        REAL NOT NULL,          -- the most tokens the bucket holds
    declared_by  TEXT NOT NULL,          -- workflow_id:node_id that declared these settings
    tokens_at    REAL NOT NULL,          -- when `tokens` was counted, epoch seconds: to the
                                         -- microsecond, a millisecond's tokens are not given twice
    updated_at   TEXT NOT NULL
);

-- A circuit breaker per key, shared by every process; calls are the recent attempts it counts.
CREATE TABLE circuit_breakers (
    key                  TEXT PRIMARY KEY,
    status               TEXT NOT NULL CHECK (
                             status = 'closed' OR status = 'open' OR status = 'half_open'),
    failure_threshold    REAL NOT NULL,
    minimum_calls        INTEGER NOT NULL,
    window_s             REAL NOT NULL,
    open_duration_s      REAL NOT NULL,
    half_open_successes  INTEGER NOT NULL,
    opened_at            TEXT,           -- when it last opened; it probes open_duration_s later
    trials               INTEGER NOT NULL DEFAULT 0,   -- half-open: trial calls let through
    successes            INTEGER NOT NULL DEFAULT 0,   -- half-open: of those, succeeded
    declared_by          TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE TABLE breaker_calls (
    key  TEXT NOT NULL,
    at   TEXT NOT NULL,
    ok   INTEGER NOT NULL
);
CREATE INDEX breaker_calls_by_key ON breaker_calls (key, at);

-- What happened in a run, one row per run (parent_run_id: NULL for a top-level run).
CREATE VIEW run_summary AS
SELECT r.run_id, r.workflow_id, r.workflow_version, r.parent_run_id, r.status, r.created_at,
       r.started_at, r.finished_at,
       (julianday(r.finished_at) - julianday(r.started_at)) * 86400.0 AS duration_s,
       (SELECT count(*) FROM node_instances n WHERE n.run_id = r.run_id AND n.status = 'completed') AS nodes_completed,
       (SELECT count(*) FROM node_instances n WHERE n.run_id = r.run_id AND n.status = 'failed') AS attempts_failed,
       (SELECT count(*) FROM node_instances n WHERE n.run_id = r.run_id AND n.status = 'skipped') AS nodes_skipped,
       r.error
FROM runs r;

-- Every attempt of every node, with how long it took.
CREATE VIEW node_history AS
SELECT n.run_id, n.node_id, n.iteration, n.attempt, n.status, n.worker_id, n.started_at,
       n.finished_at,
       (julianday(n.finished_at) - julianday(n.started_at)) * 86400.0 AS duration_s,
       n.error_type, n.error, n.waiting_reason, n.compensates
FROM node_instances n;
