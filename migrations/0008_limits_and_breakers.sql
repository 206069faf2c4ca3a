-- Limits and circuit breakers (issue 14): concurrency keys across runs and workers, token-bucket
-- rate limits, resources against what workers offer, and breakers shared by every process.
-- rate_limits and circuit_breakers of 0001 were never written: they are made again.

DROP TABLE rate_limits;
DROP TABLE circuit_breakers;

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

ALTER TABLE node_instances ADD COLUMN limit_key TEXT;
CREATE INDEX node_instances_by_limit ON node_instances (limit_key)
    WHERE status = 'running' AND limit_key IS NOT NULL;
ALTER TABLE workers ADD COLUMN cpu REAL;
ALTER TABLE workers ADD COLUMN memory_mb INTEGER;
