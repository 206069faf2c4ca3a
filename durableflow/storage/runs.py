"""The `runs` table: inserting runs, their status transitions, and what the engine reads of them.

`*_txn` helpers run inside the caller's transaction; status changes are checked against the
run machine, applied with `WHERE status = :from`, row-count checked, and appended to `events`.
"""

from __future__ import annotations

import json
from typing import Iterable

from durableflow import machines
from durableflow.errors import InvalidTransition, RunNotFound
from durableflow.records import RunState
from durableflow.storage.events import event_txn

RUN_COLUMNS = ("run_id", "workflow_id", "workflow_version", "parent_run_id", "parent_node_id",
               "status", "inputs", "variables", "outputs", "error", "priority", "idempotency_key",
               "paused_until", "deadline_at", "retries_used", "created_at", "started_at",
               "finished_at", "scheduled_at")
_FINISHED = ("completed", "failed", "cancelled")


def insert_run_txn(conn, *, run_id: str, workflow_id: str, workflow_version: int, inputs: str,
                   variables: str, priority: int, idempotency_key: str | None,
                   deadline_at: str | None, parent_run_id: str | None, parent_node_id: str | None,
                   now: str, scheduled_at: str | None = None) -> None:
    _forget(conn, run_id)
    conn.execute(conn.sql.runs.run_insert, {
        "run_id": run_id, "workflow_id": workflow_id, "workflow_version": workflow_version,
        "parent_run_id": parent_run_id, "parent_node_id": parent_node_id, "inputs": inputs,
        "variables": variables, "priority": priority, "idempotency_key": idempotency_key,
        "deadline_at": deadline_at, "now": now, "scheduled_at": scheduled_at,
    })
    event_txn(conn, run_id, None, "run.pending",
              {"workflowId": workflow_id, "version": workflow_version}, now)


def run_transition_txn(conn, run_id: str, trigger: str, source: str, now: str, *,
                       outputs: str | None = None, error: str | None = None,
                       paused_until: str | None = None, data: dict | None = None) -> str:
    try:
        to = machines.target(machines.RUN, trigger, source)
    except InvalidTransition:
        raise InvalidTransition(f"run {run_id}: cannot {trigger} a run that is {source}") from None
    _forget(conn, run_id)
    cur = conn.execute(conn.sql.runs.run_transition, {
        "to": to, "from": source, "run_id": run_id,
        "started_at": now if to == "running" else None,
        "finished_at": now if to in _FINISHED else None,
        "outputs": outputs, "error": error, "paused_until": paused_until,
    })
    if cur.rowcount != 1:
        raise InvalidTransition(f"run {run_id}: cannot '{trigger}': it is no longer {source}")
    payload = {"from": source}
    if error:
        payload["error"] = error
    if data:
        payload.update(data)
    event_txn(conn, run_id, None, "run." + to, payload, now)
    return to


def _forget(conn, run_id: str) -> None:
    """The run is written: its state is read again when next asked for (the others' stay)."""
    seen = conn.run_states
    if seen:
        seen.pop(run_id, None)


def run_state(conn, run_id: str) -> RunState:
    """Read once per transaction until something writes the run (every write to `runs` is in
    this module, and forgets what was read)."""
    seen = conn.run_states
    if seen is None:
        seen = conn.run_states = {}
    else:
        state = seen.get(run_id)
        if state is not None:
            return state
    row = conn.execute(conn.sql.runs.run_state, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"run {run_id} not found")
    state = seen[run_id] = RunState(*row)
    return state


def read_run_states(conn, run_ids) -> None:
    """Read the states of several runs at once into this transaction's cache (a claimed batch's:
    one statement instead of one per run); runs read already are not read again."""
    seen = conn.run_states
    if seen is None:
        seen = conn.run_states = {}
    todo = [r for r in run_ids if r not in seen]
    if len(todo) > 1:
        for row in conn.execute(conn.sql.runs.run_states_of, (json.dumps(todo),)):
            seen[row[0]] = RunState(*row[1:])


def get_run_row(conn, run_id: str) -> dict:
    row = conn.execute(conn.sql.runs.run_get, (run_id,)).fetchone()
    if row is None:
        raise RunNotFound(f"run {run_id} not found")
    return dict(zip(RUN_COLUMNS, row))


def run_exists(conn, run_id: str) -> bool:
    return conn.execute(conn.sql.runs.run_get, (run_id,)).fetchone() is not None


def set_variables_txn(conn, run_id: str, variables_json: str) -> None:
    _forget(conn, run_id)
    conn.execute(conn.sql.runs.run_variables_set, (variables_json, run_id))


def count_retry_txn(conn, run_id: str) -> None:
    _forget(conn, run_id)
    conn.execute(conn.sql.runs.run_retry_used, (run_id,))


def pause_until_resumed_txn(conn, run_id: str, now: str) -> None:
    """A plain pause of a run paused for a while: it now waits for resume(), not for the clock."""
    _forget(conn, run_id)
    if conn.execute(conn.sql.runs.run_pause_until_resumed, (run_id,)).rowcount:
        event_txn(conn, run_id, None, "run.pause_extended", {"until": None}, now)


def run_id_for_key(conn, key: str) -> str | None:
    row = conn.execute(conn.sql.runs.run_by_idempotency_key, (key,)).fetchone()
    return row[0] if row else None


def parent_of(conn, run_id: str) -> str | None:
    row = conn.execute(conn.sql.runs.run_parent, (run_id,)).fetchone()
    return row[0] if row else None


def ancestry(conn, run_id: str, limit: int) -> list[str]:
    """The workflow ids of `run_id` and of the runs above it (its parent, theirs, ...), nearest
    first, at most `limit`."""
    return [r[0] for r in conn.execute(conn.sql.runs.run_ancestry, {"run_id": run_id, "limit": limit})]


def active_children(conn, run_id: str) -> list[tuple[str, str]]:
    """(run_id, status) of the run's child runs that have not finished."""
    return conn.execute(conn.sql.runs.runs_active_children, (run_id,)).fetchall()


def due_resumes(conn, now: str) -> list[str]:
    return [r[0] for r in conn.execute(conn.sql.runs.runs_due_resume, (now,))]


def past_deadline(conn, now: str) -> list[str]:
    return [r[0] for r in conn.execute(conn.sql.runs.runs_past_deadline, (now,))]


def next_run_due_at(conn) -> str | None:
    """When upkeep next has something to do for a run (a pause ends, a deadline passes)."""
    return conn.execute(conn.sql.runs.runs_next_due).fetchone()[0]


def run_statuses(conn, run_ids: Iterable[str]) -> dict[str, str]:
    ids = list(run_ids)
    if not ids:
        return {}
    return dict(conn.execute(conn.sql.runs.runs_status_of, (json.dumps(ids),)).fetchall())


LIST_COLUMNS = ("run_id", "workflow_id", "workflow_version", "status", "created_at", "started_at",
                "finished_at", "error", "parent_run_id", "parent_node_id", "rerun_of")


def list_runs(conn, status: str | None = None, workflow_id: str | None = None, limit: int = 100,
              top_level: bool = True) -> list[dict]:
    """Runs newest first (ties: the later insert first), at most `limit`; with `top_level`, no
    child runs (Subflow, ForEach and While bodies). Each list is read from an index in its
    order, so it costs the rows it returns, not the history there is."""
    if limit < 1:
        return []   # SQLite reads a negative LIMIT as "no limit"
    q = conn.sql.runs
    args = {"status": status, "workflow_id": workflow_id, "limit": limit, "top_level": 1 if top_level else 0}
    if workflow_id is not None:
        # One list per version of the workflow (each from runs_by_workflow), merged.
        rows = [r for (version,) in conn.execute(conn.sql.workflows.workflow_versions, (workflow_id,))
                for r in conn.execute(q.runs_latest_of_version, {**args, "version": version})]
        rows.sort(key=lambda r: (r[4], r[-1]), reverse=True)
        rows = rows[:limit]
    elif status is not None:
        rows = conn.execute(q.runs_latest_in_status, args).fetchall()
    else:
        rows = conn.execute(q.runs_latest_top if top_level else q.runs_latest, args).fetchall()
    return [dict(zip(LIST_COLUMNS, r)) for r in rows]   # the last column, rowid, left out


def has_child_runs(conn) -> bool:
    """Whether any run is a child run (what a top-level listing leaves out)."""
    return bool(conn.execute(conn.sql.runs.runs_have_children).fetchone()[0])


def record_rerun_txn(conn, run_id: str, rerun_of: str, from_node: str | None, fresh: bool) -> None:
    conn.execute(conn.sql.runs.rerun_insert, (run_id, rerun_of, from_node, 1 if fresh else 0))


def rerun_of(conn, run_id: str) -> dict | None:
    """{"run_id", "from", "fresh"} of the run this one repeats, or None."""
    row = conn.execute(conn.sql.runs.rerun_get, (run_id,)).fetchone()
    return None if row is None else {"run_id": row[0], "from": row[1], "fresh": bool(row[2])}


def completed_children(conn, run_id: str) -> list[tuple[str, str, int, str]]:
    """(run_id, workflow_id, version, finished_at) of the run's child runs that completed."""
    return conn.execute(conn.sql.runs.runs_children_completed, (run_id,)).fetchall()


def children_compensating(conn, run_id: str) -> bool:
    return conn.execute(conn.sql.runs.runs_children_compensating, (run_id,)).fetchone() is not None
