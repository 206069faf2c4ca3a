-- Fewer pages written per message (each page is a WAL frame on every commit that touches it).
--
-- 1. messages_open_by_run keys on run_id only and covers rows whose finished_at is NULL (ready
--    and leased). A claim changes status but neither run_id nor finished_at, so it no longer
--    rewrites this index; messages without a run (plain queue use) are not indexed at all.
-- 2. events loses AUTOINCREMENT, which cost a write of sqlite_sequence on every transaction.
--    Sequence numbers still never go back: nothing deletes the newest event except pruning, and
--    prune writes a `history.pruned` event numbered above the old maximum (storage/history.py).
--    events_by_run skips rows without a run.

-- A finished message always has finished_at; older code set it on every path, this makes sure.
UPDATE messages SET finished_at = created_at WHERE status IN ('acked', 'dead') AND finished_at IS NULL;

DROP INDEX messages_open_by_run;
CREATE INDEX messages_open_by_run ON messages (run_id) WHERE run_id IS NOT NULL AND finished_at IS NULL;

DROP INDEX events_by_run;
ALTER TABLE events RENAME TO events_0001;
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY,                 -- grows only; see migrations/0002
    run_id   TEXT,
    node_id  TEXT,
    type     TEXT NOT NULL,                       -- e.g. run.running, node.completed, message.leased
    data     TEXT,
    at       TEXT NOT NULL
);
INSERT INTO events (seq, run_id, node_id, type, data, at)
SELECT seq, run_id, node_id, type, data, at FROM events_0001 ORDER BY seq;
-- If the newest events had been pruned, AUTOINCREMENT still remembered their numbers: keep them
-- used, so a tail that saw them never misses what comes next.
INSERT INTO events (seq, run_id, node_id, type, data, at)
SELECT s.seq, NULL, NULL, 'history.pruned', '{"kept":"the numbers of pruned events"}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM sqlite_sequence s
WHERE s.name = 'events_0001' AND s.seq > (SELECT coalesce(max(seq), 0) FROM events);
DROP TABLE events_0001;
CREATE INDEX events_by_run ON events (run_id, seq) WHERE run_id IS NOT NULL;
