-- Issue 11, points 12, 2 and 5:
-- 1. A ForEach's state in proportion to its items: its items move out of the node's message,
--    which was rewritten whole at every wake-up, into rows of their own.
-- 2. Workers record their host identity (host name, boot id, PID namespace): a pid says whether a
--    worker lives only on the host and in the PID namespace it was recorded in.
-- 3. Which run a rerun repeats.

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

ALTER TABLE workers ADD COLUMN host_id TEXT;

-- Which run a rerun repeats (`durableflow rerun`), shown by `runs` and `status`.
CREATE TABLE reruns (
    run_id     TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    rerun_of   TEXT NOT NULL,             -- the run it repeats (which may be pruned since)
    from_node  TEXT,                      -- rerun --from NODE
    fresh      INTEGER NOT NULL DEFAULT 0 -- rerun --fresh: nothing kept
) WITHOUT ROWID;
