-- The database as a whole: how a write transaction begins, integrity checks, table columns.
-- Named statements for SQLite, loaded by durableflow/storage/statements.py.

-- name: begin_write
-- Takes the write lock up front, so a writer never fails half-way with SQLITE_BUSY_SNAPSHOT.
BEGIN IMMEDIATE;

-- name: begin_read
BEGIN;

-- name: quick_check
PRAGMA quick_check;

-- name: integrity_check
PRAGMA integrity_check;

-- name: table_columns
SELECT name FROM pragma_table_info(:table);

-- name: data_version
-- Moves when another connection commits: a cheap look for news from other processes.
PRAGMA data_version;

-- name: server_time
-- The database's clock in epoch seconds. SQLite's is this host's own: unused there (the store
-- reads the wall clock directly); PostgreSQL's server clock is every host's clock.
SELECT (julianday('now') - 2440587.5) * 86400.0;
