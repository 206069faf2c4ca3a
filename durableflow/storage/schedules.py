"""The tables of what starts runs by itself: `schedules` (Timer nodes), `schedule_fires` (each
fire time dealt with, once), `event_triggers` (Event nodes) and `event_dedupe`."""

from __future__ import annotations

from durableflow.errors import ScheduleNotFound
from durableflow.storage.events import event_txn

SCHEDULE_COLUMNS = ("schedule_id", "workflow_id", "node_id", "cron", "interval_s", "timezone",
                    "catch_up", "misfire_grace_s", "overlap", "max_catch_up", "paused", "next_at",
                    "last_at", "created_at", "updated_at")
FIRE_COLUMNS = ("fire_at", "status", "run_id", "reason", "created_at")


def _row(row) -> dict | None:
    return None if row is None else dict(zip(SCHEDULE_COLUMNS, row))


def get_schedule(conn, schedule_id: str) -> dict:
    found = _row(conn.execute(conn.sql.schedules.schedule_get, (schedule_id,)).fetchone())
    if found is None:
        known = [r[0] for r in conn.execute(conn.sql.schedules.schedules_all)]
        hint = f" (schedules: {', '.join(known[:10])})" if known else " (there are none)"
        raise ScheduleNotFound(f"schedule {schedule_id!r} not found{hint}; a schedule's id is "
                               f"workflow_id:node_id")
    return found


def schedules_of_workflow(conn, workflow_id: str) -> list[dict]:
    return [_row(r) for r in conn.execute(conn.sql.schedules.schedules_of_workflow, (workflow_id,))]


def all_schedules(conn) -> list[dict]:
    return [_row(r) for r in conn.execute(conn.sql.schedules.schedules_all)]


def put_schedule_txn(conn, values: dict, now: str, *, new: bool) -> None:
    q = conn.sql.schedules
    conn.execute(q.schedule_insert if new else q.schedule_update, {**values, "now": now})
    event_txn(conn, None, None, "schedule.registered" if new else "schedule.updated",
              {k: values[k] for k in ("schedule_id", "cron", "interval_s", "timezone", "next_at")}, now)


def delete_schedule_txn(conn, schedule_id: str, now: str) -> None:
    conn.execute(conn.sql.schedules.schedule_delete, (schedule_id,))
    event_txn(conn, None, None, "schedule.removed", {"schedule_id": schedule_id}, now)


def set_paused_txn(conn, schedule_id: str, paused: bool, next_at: str | None, now: str) -> bool:
    changed = conn.execute(conn.sql.schedules.schedule_set_paused, {
        "schedule_id": schedule_id, "paused": 1 if paused else 0, "next_at": next_at, "now": now}).rowcount
    if changed:
        event_txn(conn, None, None, "schedule.paused" if paused else "schedule.resumed",
                  {"schedule_id": schedule_id}, now)
    return bool(changed)


def advance_txn(conn, schedule_id: str, last_at: str, next_at: str) -> None:
    conn.execute(conn.sql.schedules.schedule_advance,
                 {"schedule_id": schedule_id, "last_at": last_at, "next_at": next_at})


def due(conn, now: str, limit: int = 100) -> list[str]:
    return [r[0] for r in conn.execute(conn.sql.schedules.schedules_due, {"now": now, "limit": limit})]


def next_due(conn) -> str | None:
    return conn.execute(conn.sql.schedules.schedules_next_due).fetchone()[0]


def insert_fire_txn(conn, schedule_id: str, fire_at: str, status: str, run_id: str | None,
                    reason: str | None, now: str) -> bool:
    """Record what a fire time did; False when another worker (or an earlier call) did first."""
    return conn.execute(conn.sql.schedules.fire_insert, {
        "schedule_id": schedule_id, "fire_at": fire_at, "status": status, "run_id": run_id,
        "reason": reason, "now": now}).rowcount == 1


def buffer_fire_txn(conn, schedule_id: str, fire_at: str, reason: str, now: str) -> None:
    """The fire waits for the schedule's run still going (overlap bufferOne/bufferAll)."""
    if not insert_fire_txn(conn, schedule_id, fire_at, "buffered", None, reason, now):
        conn.execute(conn.sql.schedules.fire_rebuffer,
                     {"schedule_id": schedule_id, "fire_at": fire_at, "reason": reason})


def fire(conn, schedule_id: str, fire_at: str) -> tuple | None:
    """(status, run_id, reason) of a fire time dealt with, or None."""
    return conn.execute(conn.sql.schedules.fire_get, (schedule_id, fire_at)).fetchone()


def fire_started_txn(conn, schedule_id: str, fire_at: str, run_id: str, reason: str | None) -> bool:
    return conn.execute(conn.sql.schedules.fire_started, {
        "schedule_id": schedule_id, "fire_at": fire_at, "run_id": run_id, "reason": reason}).rowcount == 1


def buffered(conn, schedule_id: str) -> list[str]:
    return [r[0] for r in conn.execute(conn.sql.schedules.fires_buffered, (schedule_id,))]


def with_buffered_fires(conn) -> list[str]:
    return [r[0] for r in conn.execute(conn.sql.schedules.fires_buffered_any)]


def drop_buffered_txn(conn, schedule_id: str, fire_at: str, reason: str) -> None:
    conn.execute(conn.sql.schedules.fire_drop_buffered,
                 {"schedule_id": schedule_id, "fire_at": fire_at, "reason": reason})


def active_runs(conn, schedule_id: str) -> list[tuple[str, str]]:
    """(run_id, status) of the schedule's runs still going, oldest first."""
    return conn.execute(conn.sql.schedules.schedule_active_runs, (schedule_id,)).fetchall()


def recent_fires(conn, schedule_id: str, limit: int = 20) -> list[dict]:
    return [dict(zip(FIRE_COLUMNS, r)) for r in conn.execute(conn.sql.schedules.fires_of_schedule,
                                                             (schedule_id, limit))]


# --- events ------------------------------------------------------------------------------------------

def listeners(conn, event: str) -> list[tuple[str, str]]:
    """(workflow_id, node_id) of the Event entry nodes listening for `event`."""
    return conn.execute(conn.sql.schedules.event_triggers_of, (event,)).fetchall()


def event_triggers_of_workflow(conn, workflow_id: str) -> set[tuple[str, str]]:
    return set(conn.execute(conn.sql.schedules.event_triggers_of_workflow, (workflow_id,)).fetchall())


def put_event_trigger_txn(conn, event: str, workflow_id: str, node_id: str) -> None:
    conn.execute(conn.sql.schedules.event_trigger_insert, (event, workflow_id, node_id))


def delete_event_trigger_txn(conn, event: str, workflow_id: str, node_id: str) -> None:
    conn.execute(conn.sql.schedules.event_trigger_delete, (event, workflow_id, node_id))


def deduped_run(conn, workflow_id: str, key: str) -> str | None:
    row = conn.execute(conn.sql.schedules.dedupe_get, (workflow_id, key)).fetchone()
    return row[0] if row else None


def record_dedupe_txn(conn, workflow_id: str, key: str, run_id: str, now: str) -> None:
    conn.execute(conn.sql.schedules.dedupe_insert, (workflow_id, key, run_id, now))
