-- Deleting a run cascades to its messages, and SQLite looks them up with `run_id = ?`. The only
-- index on messages.run_id was messages_open_by_run, partial on `finished_at IS NULL`, which that
-- lookup does not imply: every deleted run scanned the whole messages table, so `prune` grew with
-- runs x messages (18 s for 5,000 runs of 3 nodes, and it held the write lock all along).
-- This index is partial on `run_id IS NOT NULL`, which `run_id = ?` implies, so the cascade uses
-- it; a claim or an ack never changes run_id, so only enqueue and prune write it.
CREATE INDEX messages_by_run ON messages (run_id) WHERE run_id IS NOT NULL;
