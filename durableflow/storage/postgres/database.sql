-- The database as a whole: how a write transaction begins, integrity checks, table columns.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py; the same names as
-- ../sqlite/database.sql, where SQLite's PRAGMAs get PostgreSQL meanings.

-- name: begin_write
-- SQLite's BEGIN IMMEDIATE: one writer at a time. READ COMMITTED (the default) plus one advisory
-- lock that every write transaction takes first, held until COMMIT or ROLLBACK: writers run one
-- after another as on SQLite, which joins, limits, schedules and reclaim rely on, and each
-- statement sees what the writer before committed. Two statements in one: run it without
-- parameters (psycopg then sends it as a simple query, one round trip). 1684406290 is
-- 0x64660012, postgres/connection.py's WRITE_LOCK.
BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(1684406290);

-- name: begin_read
-- A consistent snapshot across the reader's statements, as SQLite's read transaction gives.
BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: quick_check
-- SQLite's quick_check reads the file through; PostgreSQL checks its pages itself (checksums,
-- WAL). What can be wrong in this schema's place: an index left invalid (an interrupted CREATE
-- INDEX CONCURRENTLY, a failed REINDEX), which the planner then ignores. One row 'ok', or one
-- row per problem, as SQLite answers.
WITH problems(problem) AS (
    SELECT 'index ' || c.relname || ' is not valid: REINDEX INDEX ' || c.relname
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
      AND NOT (i.indisvalid AND i.indisready))
SELECT problem FROM problems
UNION ALL
SELECT 'ok' WHERE NOT EXISTS (SELECT 1 FROM problems);

-- name: integrity_check
-- What quick_check looks at, and the data pages' checksum failures the server has met in this
-- database (counted only when the cluster has data checksums on). Not amcheck: that extension
-- needs a superuser to install it.
WITH problems(problem) AS (
    SELECT 'index ' || c.relname || ' is not valid: REINDEX INDEX ' || c.relname
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
      AND NOT (i.indisvalid AND i.indisready)
    UNION ALL
    SELECT 'data page checksum failures in database ' || datname || ': ' || checksum_failures
    FROM pg_stat_database
    WHERE datname = current_database() AND coalesce(checksum_failures, 0) > 0)
SELECT problem FROM problems
UNION ALL
SELECT 'ok' WHERE NOT EXISTS (SELECT 1 FROM problems);

-- name: table_columns
-- In table order; runs.rowid is left out, as SQLite's table_info leaves out its rowid.
SELECT column_name::text FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = :table AND column_name <> 'rowid'
ORDER BY ordinal_position;

-- name: data_version
-- Moves when anything commits (a commit writes WAL), as SQLite's data_version does when another
-- connection commits; it may also move without news (other databases of the cluster, vacuum),
-- which costs the caller one look. No transaction, no lock. The insert position, not the write
-- position: with synchronous_commit off a commit is written out up to 200 ms later.
SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint;

-- name: server_time
-- The server's clock, epoch seconds: the one clock every host's workers read on PostgreSQL
-- (ServerClock measures this host's offset from it). clock_timestamp(), not now(): now() is the
-- start of the transaction.
SELECT extract(epoch FROM clock_timestamp())::double precision;
