-- durableflow: rebuilds tables
--
-- Status CHECKs written with OR instead of IN. For `status IN ('a', 'b', 'c', ...)` SQLite builds
-- a temporary b-tree of the list on every INSERT and on every UPDATE of status (EXPLAIN shows
-- OpenEphemeral + IdxInsert per value): 1.2 us a row on this machine, 6% of an enqueue, paid
-- again at each claim, ack and node or run transition. The OR form costs nothing measurable.
--
-- SQLite cannot alter a CHECK, so each table is set aside under another name, created again,
-- copied and dropped; its indexes are created again. The first line above makes the migrator
-- run this with foreign keys off (dropping the old table must not cascade to leases, dead
-- letters or child runs) and legacy ALTER TABLE (renaming must not rewrite the references other
-- tables and views make to these names); it runs PRAGMA foreign_key_check before COMMIT.

-- runs
ALTER TABLE runs RENAME TO runs_before_0003;
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
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflows (workflow_id, version)
);
INSERT INTO runs SELECT * FROM runs_before_0003;
DROP TABLE runs_before_0003;
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_by_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- node_instances
ALTER TABLE node_instances RENAME TO node_instances_before_0003;
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
    finished_at       TEXT
);
INSERT INTO node_instances SELECT * FROM node_instances_before_0003;
DROP TABLE node_instances_before_0003;
CREATE UNIQUE INDEX node_instances_one_completed
    ON node_instances (run_id, node_id, iteration) WHERE status = 'completed';
CREATE INDEX node_instances_by_run ON node_instances (run_id, node_id, iteration, attempt);
CREATE INDEX node_instances_by_message ON node_instances (message_id);
CREATE INDEX node_instances_running ON node_instances (run_id) WHERE status = 'running';

-- messages
ALTER TABLE messages RENAME TO messages_before_0003;
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
    held            INTEGER NOT NULL DEFAULT 0,   -- 1 while its run is paused: not claimable
    attempts        INTEGER NOT NULL DEFAULT 0,   -- deliveries lost (lease expired or nacked as failed)
    max_attempts    INTEGER NOT NULL DEFAULT 5,   -- past this, the message is dead-lettered
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    finished_at     TEXT
);
INSERT INTO messages SELECT * FROM messages_before_0003;
DROP TABLE messages_before_0003;
CREATE INDEX messages_claimable ON messages (priority DESC, id, visible_at)
    WHERE status = 'ready' AND held = 0;
CREATE INDEX messages_open_by_run ON messages (run_id) WHERE run_id IS NOT NULL AND finished_at IS NULL;

-- circuit_breakers
ALTER TABLE circuit_breakers RENAME TO circuit_breakers_before_0003;
CREATE TABLE circuit_breakers (
    key            TEXT PRIMARY KEY,
    status         TEXT NOT NULL CHECK (
                        status = 'closed' OR status = 'open' OR status = 'half_open'),
    calls          TEXT NOT NULL DEFAULT '[]',   -- recent outcomes in the window: [[at, ok], ...]
    opened_at      TEXT,
    half_open_ok   INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT NOT NULL
);
INSERT INTO circuit_breakers SELECT * FROM circuit_breakers_before_0003;
DROP TABLE circuit_breakers_before_0003;
