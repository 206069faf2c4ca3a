-- workflows: registered definition versions.
-- Named statements for PostgreSQL, loaded by durableflow/storage/statements.py: the same names
-- and parameters as ../sqlite/workflows.sql.

-- name: workflow_latest
SELECT version, checksum FROM workflows WHERE workflow_id = ? ORDER BY version DESC LIMIT 1;

-- name: workflow_by_checksum
SELECT version FROM workflows WHERE workflow_id = ? AND checksum = ? ORDER BY version DESC LIMIT 1;

-- name: workflow_version_get
SELECT checksum FROM workflows WHERE workflow_id = ? AND version = ?;

-- name: workflow_insert
INSERT INTO workflows (workflow_id, version, checksum, definition, source_path, created_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: workflow_get
SELECT workflow_id, version, checksum, definition, source_path, created_at
FROM workflows WHERE workflow_id = ? AND version = ?;

-- name: workflows_list
-- Each version's runs are counted in runs_by_workflow (a range of that index).
SELECT w.workflow_id, w.version, w.checksum, w.source_path, w.created_at,
       (SELECT count(*) FROM runs r
        WHERE r.workflow_id = w.workflow_id AND r.workflow_version = w.version) AS runs
FROM workflows w ORDER BY w.workflow_id, w.version;

-- name: workflow_versions
SELECT version FROM workflows WHERE workflow_id = ? ORDER BY version;
