"""The `workflows` table: registered versions of workflow definitions."""

from __future__ import annotations

from durableflow.errors import DefinitionError, WorkflowNotFound
from durableflow.storage.events import event_txn

WORKFLOW_COLUMNS = ("workflow_id", "version", "checksum", "definition", "source_path", "created_at")


def register_workflow_txn(conn, workflow_id: str, checksum: str, definition_json: str,
                          source_path: str | None, version: int | None, now: str) -> tuple[int, bool]:
    """Store a definition; returns (version, created). Same content = same version."""
    q = conn.sql.workflows
    if version is not None:
        row = conn.execute(q.workflow_version_get, (workflow_id, version)).fetchone()
        if row is not None:
            if row[0] != checksum:
                raise DefinitionError(
                    f"workflow '{workflow_id}' version {version} is already registered with a "
                    f"different definition; bump `version` or leave it out")
            return version, False
    else:
        row = conn.execute(q.workflow_by_checksum, (workflow_id, checksum)).fetchone()
        if row is not None:
            return row[0], False
        latest = conn.execute(q.workflow_latest, (workflow_id,)).fetchone()
        version = (latest[0] + 1) if latest else 1
    conn.execute(q.workflow_insert, (workflow_id, version, checksum, definition_json, source_path, now))
    event_txn(conn, None, None, "workflow.registered",
              {"workflowId": workflow_id, "version": version, "checksum": checksum}, now)
    return version, True


def get_workflow(conn, workflow_id: str, version: int | None = None) -> dict:
    q = conn.sql.workflows
    if version is None:
        row = conn.execute(q.workflow_latest, (workflow_id,)).fetchone()
        if row is None:
            raise WorkflowNotFound(f"workflow '{workflow_id}' is not registered")
        version = row[0]
    row = conn.execute(q.workflow_get, (workflow_id, version)).fetchone()
    if row is None:
        raise WorkflowNotFound(f"workflow '{workflow_id}' version {version} is not registered")
    return dict(zip(WORKFLOW_COLUMNS, row))


def checksum_of(conn, workflow_id: str, version: int) -> str | None:
    """The stored checksum of one version, or None when it is not registered."""
    row = conn.execute(conn.sql.workflows.workflow_version_get, (workflow_id, version)).fetchone()
    return None if row is None else row[0]


def list_workflows(conn) -> list[dict]:
    cols = ("workflow_id", "version", "checksum", "source_path", "created_at", "runs")
    return [dict(zip(cols, r)) for r in conn.execute(conn.sql.workflows.workflows_list)]
